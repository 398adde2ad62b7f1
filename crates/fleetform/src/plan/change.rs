//! "What this change does": the declared deployments at a base commit compared with the
//! head (a pull request's review view), with the device impact of moving from one to the
//! other computed against the hub's twins.
//!
//! It is an ordinary plan of the head's deployments against a [`BaseHub`]: a hub whose
//! configurations are the base's rendered deployments and whose devices are the real
//! hub's. Whatever the real hub currently runs does not enter into it, so the section
//! shows the change under review alone, and it works offline against a snapshot.

use crate::hub::{Hub, HubError, HubRead, HubWrite, Projection, Twin};
use crate::manifest::{Env, Rendered};
use crate::model::Configuration;

use super::compute::{Plan, PlanError, PlanOptions, plan};

/// An [`Env`] that never fails: unset variables read as a fixed placeholder. Both sides of
/// a change are rendered with it, so a secret changes neither side's hash, and a pull
/// request can be reviewed without the hub's secrets.
pub struct PlaceholderEnv<'e>(pub &'e dyn Env);

impl Env for PlaceholderEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if name == crate::manifest::HASH_KEY_VAR {
            // A placeholder key would be public, turning ids made with real secrets into
            // a guessing oracle; a key known to this process alone keeps base and head
            // comparable here and publishes nothing anyone can test guesses against.
            return Some(self.0.var(name).unwrap_or_else(|| process_hash_key().to_string()));
        }
        Some(self.0.var(name).unwrap_or_else(|| format!("(unset {name})")))
    }
}

fn process_hash_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        // Fail closed: a process without entropy must not fall back to a guessable key.
        getrandom::getrandom(&mut bytes).expect("the operating system's random number generator is available");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The base commit's deployments as a hub's configurations, over the real hub's devices.
/// Read-only: every write fails.
pub struct BaseHub<'h> {
    label: String,
    configurations: Vec<Configuration>,
    devices: &'h dyn Hub,
}

impl<'h> BaseHub<'h> {
    /// `label` names the base in output (`main@1a2b3c4d`). Each configuration gets the
    /// creation time and etag of the real hub's configuration with the same id when there
    /// is one (so equal-priority ties break as they do on the hub), else a synthetic time
    /// in declaration order.
    pub fn new(label: impl Into<String>, base: &[Rendered], devices: &'h dyn Hub) -> Result<Self, HubError> {
        let real = devices.configurations()?;
        let configurations = base
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c = r.configuration.clone();
                let on_hub = real.iter().find(|h| h.id == c.id);
                c.created_time_utc = Some(on_hub.and_then(|h| h.created_time_utc.clone()).unwrap_or_else(|| {
                    format!("2000-01-01T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60)
                }));
                c.etag = Some(format!("\"base-{i}\""));
                c
            })
            .collect();
        Ok(BaseHub { label: label.into(), configurations, devices })
    }
}

impl HubRead for BaseHub<'_> {
    fn describe(&self) -> String {
        format!("declared at {}, devices of {}", self.label, self.devices.describe())
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        Ok(self.configurations.clone())
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.devices.device_batches(projection, visit)
    }

    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        self.devices.module_batches(visit)
    }
}

impl HubWrite for BaseHub<'_> {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        Err(read_only(&config.id))
    }

    fn update_configuration(&self, config: &Configuration, _etag: &str) -> Result<Configuration, HubError> {
        Err(read_only(&config.id))
    }

    fn delete_configuration(&self, id: &str, _etag: &str) -> Result<(), HubError> {
        Err(read_only(id))
    }
}

fn read_only(id: &str) -> HubError {
    HubError::Other(format!("{id}: the base of a change is read-only"))
}

/// Plans `head` against `base` over the devices of `hub`: created, deleted, replaced and
/// updated deployments, and the device cohorts that change. Deployments removed by the
/// change are deletions (not orphans): removing them is what the change declares.
pub fn change_plan(label: &str, base: &[Rendered], head: Vec<Rendered>, hub: &dyn Hub) -> Result<Plan, PlanError> {
    let base_hub = BaseHub::new(label, base, hub)?;
    plan(head, &base_hub, &PlanOptions { prune: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MapEnv, SecretMode, render_all};
    use crate::plan::ActionKind;
    use crate::spec::{SourceFile, Workspace};

    fn rendered(text: &str) -> Vec<Rendered> {
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text.to_string())]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        render_all(&ws.deployments, &PlaceholderEnv(&MapEnv::default()), SecretMode::Reveal).unwrap()
    }

    const BASE: &str = r#"
deployment "a" {
    priority 10
    target "tags.environment='prod'"
    runtime {
        registry "r" address="r.io" username="u" password=(env)"UNSET_IN_TESTS"
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
}
layered "gone" {
    priority 20
    target "tags.environment='prod'"
    module "G" image="g:1"
}
"#;

    #[test]
    fn change_against_the_campus_snapshot() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/campus/hub");
        let hub = crate::hub::open(Some(dir.to_str().unwrap()), None).unwrap();
        let base = rendered(BASE);
        let head_text = BASE.replace("m:1.0", "m:2.0").replace("layered \"gone\"", "layered \"new\"");
        let head = rendered(&head_text);
        let p = change_plan("main", &base, head, hub.as_ref()).unwrap();
        let kinds: Vec<(&str, ActionKind)> = p.actions.iter().map(|a| (a.name.as_str(), a.action)).collect();
        assert_eq!(kinds, [("a", ActionKind::Replace), ("gone", ActionKind::Delete), ("new", ActionKind::Create)]);
        assert!(p.hub.starts_with("declared at main, devices of"), "{}", p.hub);
        // Every production IoT Edge device moves from m:1.0 to m:2.0 and from G to G.
        assert!(p.totals.changed > 0);
        let text = format!("{:?}", p.cohorts[0].changes);
        assert!(text.contains("m:2.0"), "{text}");
        // Nothing on the real hub (its unmanaged or orphaned deployments) appears.
        assert!(p.actions.iter().all(|a| a.action != ActionKind::Unmanaged));
        assert!(BaseHub::new("x", &base, hub.as_ref()).unwrap().delete_configuration("a", "*").is_err());
    }
}
