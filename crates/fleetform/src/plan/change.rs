//! "What this change does": the declared deployments at a base commit compared with the
//! head (a pull request's review view), with the device impact of moving from one to the
//! other computed against the hub's twins.
//!
//! It is an ordinary plan of the head's deployments against the base's rendered
//! deployments as the current configurations ([`base_configurations`]), over the real
//! fleet. Whatever the real hub currently runs does not enter into it, so the section
//! shows the change under review alone, and it works offline against a snapshot.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Env, HASH_KEY_VAR, LABEL_HASH, Rendered, SecretMode};
use crate::model::{Configuration, DeploymentId, FleetRead};
use crate::spec::Problem;
use crate::spec::model::Deployment;

use super::{Plan, PlanError, PlanOptions, plan};

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

/// What a plan made without some `(env)` / `(secret-env)` values could not know
/// (`plan --without-secrets`, for reviewers and pull requests from forks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WithoutSecrets {
    /// The variables the deployments read that were not set, sorted: names only.
    pub missing: Vec<String>,
    /// Deployments whose id depends on a missing value, by name, with the variables it
    /// depends on. The id is a hash over the content, so it is unknown without them.
    pub unknown_ids: BTreeMap<String, Vec<String>>,
}

impl WithoutSecrets {
    /// Whether anything was missing: such a plan cannot be saved or applied.
    pub fn is_partial(&self) -> bool {
        !self.missing.is_empty()
    }
}

/// The id shown (and planned with) for a deployment whose id depends on `vars`: unique
/// per name, not a valid hub id, so it can never be written.
pub fn unknown_id(name: &str, vars: &[String]) -> DeploymentId {
    DeploymentId(format!("{name}-<unknown: depends on {}>", vars.join(", ")))
}

/// An [`Env`] that answers as [`PlaceholderEnv`] and records which variables `real` lacks.
struct Recording<'e> {
    real: &'e dyn Env,
    missing: RefCell<BTreeSet<String>>,
}

impl Env for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if self.real.var(name).is_none() {
            self.missing.borrow_mut().insert(name.to_string());
        }
        PlaceholderEnv(self.real).var(name)
    }
}

/// Renders every deployment with the variables `env` lacks read as placeholders (a
/// secret's under a key known to this process alone). A deployment that read a missing
/// variable gets [`unknown_id`] and an unknown hash label in place of the hash of the
/// placeholder, so no hash over a guessable value is ever shown or planned with. The
/// hash key counts as missing only for deployments that hold secrets (the only ones
/// whose hash it keys).
pub fn render_without_secrets(
    deployments: &[Deployment],
    env: &dyn Env,
) -> Result<(Vec<Rendered>, WithoutSecrets), Vec<Problem>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut info = WithoutSecrets::default();
    let mut all_missing = BTreeSet::new();
    for d in deployments {
        let rec = Recording { real: env, missing: RefCell::new(BTreeSet::new()) };
        match crate::manifest::render(d, &rec, SecretMode::Reveal) {
            Ok(mut r) => {
                let mut missing = rec.missing.into_inner();
                if r.sensitive.is_empty() {
                    missing.remove(HASH_KEY_VAR);
                }
                if !missing.is_empty() {
                    let vars: Vec<String> = missing.iter().cloned().collect();
                    r.configuration.id = unknown_id(&d.name.0, &vars);
                    r.hash = "(unknown)".to_string();
                    r.configuration.labels.insert(LABEL_HASH.to_string(), r.hash.clone());
                    info.unknown_ids.insert(d.name.0.clone(), vars);
                }
                all_missing.extend(missing);
                out.push(r);
            }
            Err(p) => problems.extend(p),
        }
    }
    info.missing = all_missing.into_iter().collect();
    if problems.is_empty() { Ok((out, info)) } else { Err(problems) }
}

/// The base commit's deployments as the hub's configurations would be had the base been
/// applied. Each gets the creation time and etag of the hub's configuration with the same
/// id in `on_hub` when there is one (so equal-priority ties break as they do on the hub),
/// else a synthetic time in declaration order.
pub fn base_configurations(base: &[Rendered], on_hub: &[Configuration]) -> Vec<Configuration> {
    base.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut c = r.configuration.clone();
            let real = on_hub.iter().find(|h| h.id == c.id);
            c.created_time_utc =
                Some(real.and_then(|h| h.created_time_utc.clone()).unwrap_or_else(|| {
                    format!("2000-01-01T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60)
                }));
            c.etag = Some(format!("\"base-{i}\"").parse().expect("a quoted word is an etag"));
            c
        })
        .collect()
}

/// Plans `head` against `base` over the devices of `fleet`: created, deleted, replaced and
/// updated deployments, and the device cohorts that change. Deployments removed by the
/// change are deletions (not orphans): removing them is what the change declares.
/// `label` names the base in output (`main@1a2b3c4d`); `on_hub` are the hub's
/// configurations, read for their creation times only (see [`base_configurations`]).
pub fn change_plan(
    label: &str,
    base: &[Rendered],
    head: Vec<Rendered>,
    on_hub: &[Configuration],
    fleet: &dyn FleetRead,
) -> Result<Plan, PlanError> {
    let mut p = plan(
        head,
        base_configurations(base, on_hub),
        fleet,
        &PlanOptions { prune: true, without_running_before: true, ..Default::default() },
    )?;
    // The base is not a hub anyone can apply to: the plan names it, not the fleet.
    p.hub = format!("declared at {label}, devices of {}", fleet.describe());
    p.hub_id = p.hub.clone();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Twin, Twins};
    use crate::plan::ActionKind;
    use crate::test_support::{campus_fleet, rendered};

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
        let fleet = campus_fleet();
        let base = rendered(BASE);
        let head_text = BASE.replace("m:1.0", "m:2.0").replace("layered \"gone\"", "layered \"new\"");
        let head = rendered(&head_text);
        let p = change_plan("main", &base, head, &[], &fleet).unwrap();
        let kinds: Vec<(&str, ActionKind)> = p.actions.iter().map(|a| (a.name.as_str(), a.action)).collect();
        assert_eq!(kinds, [("a", ActionKind::Replace), ("gone", ActionKind::Delete), ("new", ActionKind::Create)]);
        assert!(p.hub.starts_with("declared at main, devices of"), "{}", p.hub);
        // Every production IoT Edge device moves from m:1.0 to m:2.0 and from G to G.
        assert!(p.totals.changed > 0);
        let text = format!("{:?}", p.cohorts[0].changes);
        assert!(text.contains("m:2.0"), "{text}");
        // Nothing on the real hub (its unmanaged or orphaned deployments) appears.
        assert!(p.actions.iter().all(|a| a.action != ActionKind::Unmanaged));
    }

    fn twin(id: &str, edge: bool, environment: &str) -> Twin {
        let v = serde_json::json!({
            "deviceId": id,
            "capabilities": {"iotEdge": edge},
            "tags": {"environment": environment},
        });
        Twin::from_value(v).unwrap()
    }

    #[test]
    fn plans_over_a_fleet_in_memory() {
        let devices = vec![twin("d1", true, "prod"), twin("d2", true, "test"), twin("d3", false, "prod")];
        let p = plan(rendered(BASE), Vec::new(), &Twins::new("three devices", devices), &PlanOptions::default());
        let p = p.unwrap();
        assert_eq!((p.hub.as_str(), p.hub_id.as_str()), ("three devices", "three devices"));
        assert_eq!(p.count(ActionKind::Create), 2);
        assert_eq!(p.totals, crate::plan::DeviceTotals { devices: 3, edge_devices: 2, changed: 1, restacked: 0 });
        assert_eq!(p.cohorts.len(), 1);
        assert_eq!(p.cohorts[0].samples, ["d1"]);
        assert_eq!(p.expected_applied.values().copied().collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn the_base_keeps_the_hubs_creation_times() {
        let base = rendered(BASE);
        let mut on_hub = base[0].configuration.clone();
        on_hub.created_time_utc = Some("2026-01-02T03:04:05Z".into());
        let configs = base_configurations(&base, &[on_hub]);
        assert_eq!(configs[0].created_time_utc.as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(configs[1].created_time_utc.as_deref(), Some("2000-01-01T00:00:01Z"));
        assert_eq!(configs[1].etag.as_ref().map(|e| e.as_str()), Some("\"base-1\""));
    }
}
