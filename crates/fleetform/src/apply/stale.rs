//! Saved plans: recognising a plan file, and refusing one that no longer describes the
//! hub or the repository (a stale plan would write what nobody reviewed).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::ApplyError;
use crate::manifest::{LABEL_HASH, LABEL_NAME, Rendered};
use crate::model::{Configuration, Etag};
use crate::plan::saved::{MacProblem, SAVED_KIND, SAVED_VERSION};
use crate::plan::{SavedPlan, Step, StepOp};

/// One way a saved plan no longer matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Staleness {
    #[error("the plan was made against {planned}, not {now}")]
    OtherHub { planned: String, now: String },
    #[error("the plan does not record which hub it was made against ({planned}; saved by an older fleetform)")]
    NoHubIdentity { planned: String },
    #[error("configuration {id} changed on the hub (etag {planned} is now {now})")]
    EtagChanged { id: String, planned: String, now: String },
    #[error("configuration {id} appeared on the hub")]
    Appeared { id: String },
    #[error("configuration {id} is no longer on the hub")]
    Vanished { id: String },
    #[error("deployment {name} ({id}) now renders to hash {now}, the plan recorded {planned}")]
    ContentChanged { name: String, id: String, planned: String, now: String },
    #[error("deployment {name} is no longer declared")]
    NoLongerDeclared { name: String },
    #[error("deployment {name} is declared but not in the plan")]
    NewlyDeclared { name: String },
}

/// Reads `path` as a saved plan if it is one: a regular file whose first non-blank byte is
/// `{`, whatever the file is called (`p.plan`, `plan.json`, even `saved.kdl`: no KDL
/// document starts with `{`). Such a file must then be a complete plan: broken JSON, or
/// JSON of another kind, is an error saying so with its line and column, not a KDL file.
/// Anything else (a directory, a KDL file) is `Ok(None)`: a path of deployment files.
///
/// The plan's MAC is checked against `FLEETFORM_HASH_KEY` ([`crate::plan::saved::verify_mac`]).
pub fn load_plan_file(path: &Path) -> Result<Option<SavedPlan>, ApplyError> {
    let key = std::env::var_os(crate::manifest::HASH_KEY_VAR).filter(|k| !k.is_empty());
    let key = key.as_ref().map(|k| k.as_encoded_bytes());
    load_plan_file_with_key(path, key)
}

/// [`load_plan_file`] with the MAC key given (`None`: no key is set).
pub fn load_plan_file_with_key(path: &Path, key: Option<&[u8]>) -> Result<Option<SavedPlan>, ApplyError> {
    use std::io::Read;
    // `is_file` follows links and is false for FIFOs and devices, which are never read
    // here (reading a FIFO would block); the deployment loader rejects those by name.
    if !path.is_file() {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let read_error = |e: std::io::Error| ApplyError::PlanFile { path: shown.clone(), message: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    // Looking at the start is enough to tell; a large KDL file is not read twice in full.
    let mut head = Vec::new();
    (&mut file).take(4096).read_to_end(&mut head).map_err(read_error)?;
    match head.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF) {
        Some(b'{') => {}
        _ => return Ok(None),
    }
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_PLAN_BYTES {
        return Err(ApplyError::PlanFile {
            path: shown,
            message: format!("{size} bytes; a saved plan may be at most {MAX_PLAN_BYTES} bytes"),
        });
    }
    let mut bytes = head;
    file.read_to_end(&mut bytes).map_err(read_error)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ApplyError::NotAPlanFile { path: shown.clone(), message: "not UTF-8 text".to_string() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApplyError::NotAPlanFile { path: shown.clone(), message: e.to_string() })?;
    let kind = value.get("kind").and_then(|k| k.as_str());
    if kind != Some(SAVED_KIND) {
        return Err(ApplyError::NotAPlanFile {
            path: shown,
            message: match kind {
                Some(k) => format!("its kind is `{k}`, not `{SAVED_KIND}`"),
                None => format!("it has no `kind` member (a saved plan's is `{SAVED_KIND}`)"),
            },
        });
    }
    let version = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version != u64::from(SAVED_VERSION) {
        return Err(ApplyError::PlanVersion {
            path: shown,
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: SAVED_VERSION,
        });
    }
    if let Err(problem) = crate::plan::saved::verify_mac(&value, key) {
        return Err(match problem {
            MacProblem::NoKey => ApplyError::PlanNeedsKey { path: shown },
            MacProblem::Missing => ApplyError::PlanMac {
                path: shown,
                reason: "it has no MAC, but FLEETFORM_HASH_KEY is set: it was made without the key, or the MAC \
                         was removed"
                    .to_string(),
            },
            MacProblem::Mismatch => ApplyError::PlanMac {
                path: shown,
                reason: "its MAC does not match its content under FLEETFORM_HASH_KEY: the file was edited, or \
                         made with another key"
                    .to_string(),
            },
        });
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ApplyError::NotAPlanFile { path: shown, message: format!("{e}") })
}

/// Saved plans are a few kilobytes per deployment; far past that a file is not one.
const MAX_PLAN_BYTES: u64 = 256 * 1024 * 1024;

/// Everything that makes `saved` stale, given the hub's configurations now (`current`),
/// the declared deployments re-rendered now with secrets from the environment, and the
/// identity ([`crate::hub::HubRead::identity`]) of the hub apply talks to. Empty when the plan
/// can be carried out.
pub fn check_saved(saved: &SavedPlan, hub: &str, current: &[Configuration], declared: &[Rendered]) -> Vec<Staleness> {
    let mut out = Vec::new();
    match &saved.hub_id {
        Some(planned) if planned != hub => {
            out.push(Staleness::OtherHub { planned: planned.clone(), now: hub.to_string() });
        }
        Some(_) => {}
        // Its display text cannot tell two hubs apart (nor one hub named two ways).
        None => out.push(Staleness::NoHubIdentity { planned: saved.hub.clone() }),
    }
    // The same notion of "managed" as the plan's hub_etags.
    let now: BTreeMap<&str, Option<&Etag>> = current
        .iter()
        .filter(|c| c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH))
        .map(|c| (c.id.as_str(), c.etag.as_ref()))
        .collect();
    for (id, planned) in &saved.hub_etags {
        match now.get(id.as_str()) {
            None => out.push(Staleness::Vanished { id: id.clone() }),
            Some(etag) if *etag != planned.as_ref() => out.push(Staleness::EtagChanged {
                id: id.clone(),
                planned: planned.as_ref().map_or_else(|| "(none)".into(), Etag::to_string),
                now: etag.map_or_else(|| "(none)".into(), Etag::to_string),
            }),
            Some(_) => {}
        }
    }
    for id in now.keys().filter(|id| !saved.hub_etags.contains_key(**id)) {
        out.push(Staleness::Appeared { id: id.to_string() });
    }
    let rendered: BTreeMap<&str, &Rendered> = declared
        .iter()
        .map(|r| (r.configuration.labels.get(LABEL_NAME).map_or(r.configuration.id.as_str(), String::as_str), r))
        .collect();
    for c in &saved.configurations {
        match rendered.get(c.name.as_str()) {
            None => out.push(Staleness::NoLongerDeclared { name: c.name.clone() }),
            Some(r) if r.hash != c.hash || r.configuration.id != c.id => out.push(Staleness::ContentChanged {
                name: c.name.clone(),
                id: c.id.to_string(),
                planned: c.hash.clone(),
                now: r.hash.clone(),
            }),
            Some(_) => {}
        }
    }
    for name in rendered.keys().filter(|n| !saved.configurations.iter().any(|c| c.name == **n)) {
        out.push(Staleness::NewlyDeclared { name: name.to_string() });
    }
    out
}

/// The saved plan's steps that the plan re-derived now (from the same files and the hub,
/// with pruning on) does not contain, and the re-derived steps the saved plan leaves out.
/// A saved plan can only choose to leave out prune deletes (a plan made without
/// `--prune`); every other step must be there, identical and in the same order. This,
/// not the file's integrity, is what stops a hand-edited plan: an added `delete` of an
/// unmanaged deployment, an `update` turned into a `delete`, a dropped `create` whose
/// `replace` delete would then remove the deployment — none is in the re-derived plan.
pub fn unjustified_steps(saved: &[Step], rederived: &[Step]) -> Vec<String> {
    let same = |a: &Step, b: &Step| {
        a.op == b.op
            && a.name == b.name
            && a.id == b.id
            && a.priority == b.priority
            && a.etag == b.etag
            && a.reason == b.reason
    };
    let optional = |s: &Step| s.op == StepOp::Delete && s.reason == "delete";
    let mut out = Vec::new();
    let mut next = 0;
    for step in saved {
        match rederived[next..].iter().position(|r| same(r, step)) {
            Some(at) => {
                for skipped in &rederived[next..next + at] {
                    if !optional(skipped) {
                        out.push(format!("the plan leaves out {}", describe(skipped)));
                    }
                }
                next += at + 1;
            }
            None => out.push(format!("{} is not what planning now would do", describe(step))),
        }
    }
    for skipped in &rederived[next..] {
        if !optional(skipped) {
            out.push(format!("the plan leaves out {}", describe(skipped)));
        }
    }
    out
}

fn describe(step: &Step) -> String {
    format!("step {} ({} {} ({}), {})", step.number, step.op, step.name, step.id, step.reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HubRead, HubWrite, SnapshotHub};
    use crate::manifest::{MapEnv, SecretMode, render};
    use crate::model::Priority;
    use crate::spec::{SourceFile, Workspace};

    const BASE: &str = r#"
deployment "base" {
    priority 10
    target "tags.env='prod'"
    runtime {
        registry "r" address="r.azurecr.io" username="u" password=(env)"PW"
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
}
"#;

    fn rendered(pw: &str) -> Vec<Rendered> {
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", BASE.to_string())]);
        let env = MapEnv(
            [("PW", pw), (crate::manifest::HASH_KEY_VAR, "a-hash-key-for-the-unit-tests-0000")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        vec![render(&ws.deployments[0], &env, SecretMode::Reveal).unwrap()]
    }

    fn saved_against(hub: &SnapshotHub, declared: Vec<Rendered>) -> SavedPlan {
        let current = hub.configurations().unwrap();
        let plan = crate::plan::plan(declared, current, &crate::hub::Fleet(hub), &Default::default()).unwrap();
        SavedPlan::new(&plan, None, String::new())
    }

    fn hub() -> (tempfile::TempDir, SnapshotHub) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        std::fs::write(dir.path().join("devices.json"), "[]").unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        (dir, hub)
    }

    #[test]
    fn a_fresh_plan_is_not_stale() {
        let (_d, hub) = hub();
        let saved = saved_against(&hub, rendered("a"));
        assert_eq!(check_saved(&saved, &hub.identity(), &hub.configurations().unwrap(), &rendered("a")), []);
    }

    #[test]
    fn a_changed_secret_or_hub_makes_it_stale() {
        let (_d, hub) = hub();
        let saved = saved_against(&hub, rendered("a"));
        let problems = check_saved(&saved, &hub.identity(), &[], &rendered("b"));
        assert!(matches!(&problems[..], [Staleness::ContentChanged { name, .. }] if name == "base"), "{problems:?}");
        let mut created = rendered("a")[0].configuration.clone();
        created.id = "base-other".into();
        let created = hub.create_configuration(&created).unwrap();
        let problems = check_saved(&saved, &hub.identity(), &[created], &rendered("a"));
        assert_eq!(problems, [Staleness::Appeared { id: "base-other".into() }]);
        assert!(problems[0].to_string().contains("base-other appeared"));
        let other = check_saved(&saved, "hub elsewhere", &[], &rendered("a"));
        assert!(matches!(&other[..], [Staleness::OtherHub { .. }]));
    }

    #[test]
    fn plans_without_a_hub_identity_are_refused() {
        let (_d, hub) = hub();
        let mut saved = saved_against(&hub, rendered("a"));
        assert_eq!(saved.hub_id.as_deref(), Some(hub.identity().as_str()));
        saved.hub_id = None;
        let problems = check_saved(&saved, &hub.identity(), &[], &rendered("a"));
        assert!(matches!(&problems[..], [Staleness::NoHubIdentity { .. }]), "{problems:?}");
        assert!(problems[0].to_string().contains("older fleetform"), "{}", problems[0]);
    }

    #[test]
    fn changed_and_vanished_etags_are_named() {
        let (_d, hub) = hub();
        let first = saved_against(&hub, rendered("a"));
        let created = hub.create_configuration(&rendered("a")[0].configuration).unwrap();
        let saved = saved_against(&hub, rendered("a"));
        assert!(first.hub_etags.is_empty() && saved.hub_etags.len() == 1);
        let mut touched = created.clone();
        touched.etag = Some("\"new\"".parse().unwrap());
        let problems = check_saved(&saved, &hub.identity(), &[touched], &rendered("a"));
        assert!(matches!(&problems[..], [Staleness::EtagChanged { id, .. }] if *id == created.id), "{problems:?}");
        let problems = check_saved(&saved, &hub.identity(), &[], &rendered("a"));
        assert_eq!(problems, [Staleness::Vanished { id: created.id.to_string() }]);
    }

    #[test]
    fn plan_files_are_told_from_paths() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("x.json");
        let load = |p: &Path| load_plan_file_with_key(p, None);
        // JSON, but not a plan: an error, not a path of deployment files.
        std::fs::write(&other, r#"{"kind":"something-else"}"#).unwrap();
        assert!(matches!(load(&other), Err(ApplyError::NotAPlanFile { .. })));
        assert!(load(dir.path()).unwrap().is_none());
        let kdl = dir.path().join("a.kdl");
        std::fs::write(&kdl, "\n  // {\ndeployment \"a\" {}\n").unwrap();
        assert!(load(&kdl).unwrap().is_none());
        let future = dir.path().join("p.json");
        std::fs::write(&future, r#"{"kind":"fleetform-plan","format_version":9}"#).unwrap();
        assert!(matches!(load(&future), Err(ApplyError::PlanVersion { found: 9, .. })));
        let (_d, hub) = hub();
        let saved = saved_against(&hub, rendered("a"));
        let text = serde_json::to_string_pretty(&saved).unwrap();
        // Named like KDL, read by content.
        let good = dir.path().join("plan.kdl");
        std::fs::write(&good, &text).unwrap();
        assert_eq!(load(&good).unwrap().unwrap(), saved);
        let cut = dir.path().join("cut.json");
        std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
        match load(&cut) {
            Err(ApplyError::NotAPlanFile { message, .. }) => assert!(message.contains("line"), "{message}"),
            other => panic!("{other:?}"),
        }
        // Sealed: checked with the key, refused without one.
        let mut sealed = saved.clone();
        sealed.seal(b"k").unwrap();
        std::fs::write(&good, serde_json::to_string_pretty(&sealed).unwrap()).unwrap();
        assert_eq!(load_plan_file_with_key(&good, Some(b"k")).unwrap().unwrap(), sealed);
        assert!(matches!(load_plan_file_with_key(&good, Some(b"j")), Err(ApplyError::PlanMac { .. })));
        assert!(matches!(load(&good), Err(ApplyError::PlanNeedsKey { .. })));
    }

    fn step(number: usize, op: StepOp, id: &str, reason: &str) -> Step {
        Step { number, op, name: id.into(), id: id.into(), priority: Priority(1), etag: None, reason: reason.into() }
    }

    #[test]
    fn only_prune_deletes_may_be_left_out() {
        let derived = vec![
            step(1, StepOp::Create, "new", "replace"),
            step(2, StepOp::Delete, "old", "replace"),
            step(3, StepOp::Delete, "gone", "delete"),
        ];
        assert!(unjustified_steps(&derived[..2], &derived).is_empty(), "a plan made without --prune");
        assert!(unjustified_steps(&derived, &derived).is_empty());
        assert_eq!(unjustified_steps(&derived[1..2], &derived).len(), 1, "the replace's create is missing");
        let swapped = vec![derived[1].clone(), derived[0].clone()];
        assert!(!unjustified_steps(&swapped, &derived).is_empty(), "order matters");
        let extra = vec![derived[0].clone(), derived[1].clone(), step(3, StepOp::Delete, "manual-hotfix", "delete")];
        assert_eq!(
            unjustified_steps(&extra, &derived),
            vec!["step 3 (delete manual-hotfix (manual-hotfix), delete) is not what planning now would do"]
        );
    }
}
