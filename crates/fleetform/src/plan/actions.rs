//! Deployment actions: what apply will do to each configuration on the hub, and why.

use crate::model::DeploymentId;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::{LABEL_COMMIT, LABEL_HASH, LABEL_NAME, Rendered};
use crate::model::{Configuration, ConfigurationKind, Etag, Priority};

/// What happens to one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Declared, not on the hub: created.
    Create,
    /// Only mutable fields differ: updated in place (etag-guarded).
    Update,
    /// Content differs: the new id is created, then the old one deleted.
    Replace,
    /// Managed on the hub, no longer declared, and `--prune` given: deleted.
    Delete,
    /// Managed on the hub, no longer declared, no `--prune`: kept and reported.
    Orphan,
    /// An IoT Edge deployment fleetform does not manage: never touched.
    Unmanaged,
    NoOp,
    /// A content change rolled out wave by wave (`rollout { … }`, docs/rollouts.md): the
    /// next transition of its rollout, or a rollout that waits, is refused or was rolled back.
    Rollout,
}

impl ActionKind {
    pub fn symbol(self) -> &'static str {
        match self {
            ActionKind::Create => "+",
            ActionKind::Update => "~",
            ActionKind::Replace => "+/-",
            ActionKind::Delete => "-",
            ActionKind::Orphan => "!",
            ActionKind::Unmanaged => "?",
            ActionKind::NoOp => "=",
            ActionKind::Rollout => "~>",
        }
    }

    pub fn changes_hub(self) -> bool {
        matches!(
            self,
            ActionKind::Create | ActionKind::Update | ActionKind::Replace | ActionKind::Delete | ActionKind::Rollout
        )
    }
}

/// A mutable field that changes in an update (or alongside a replace).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// `priority`, `targetCondition`, `labels.<key>` or `metrics.<name>`.
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The configuration on the hub an action starts from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HubRef {
    pub id: DeploymentId,
    pub etag: Option<Etag>,
    pub priority: Priority,
    pub kind: ConfigurationKind,
}

impl HubRef {
    fn of(c: &Configuration) -> Self {
        HubRef { id: c.id.clone(), etag: c.etag.clone(), priority: c.priority, kind: c.kind() }
    }
}

/// One deployment's action.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub name: String,
    pub action: ActionKind,
    /// The hub configuration(s) it starts from: usually one; several when an earlier
    /// apply stopped between creating a replacement and deleting the old one.
    pub before: Vec<HubRef>,
    /// The id it ends as (`None` when deleted).
    pub after: Option<DeploymentId>,
    pub priority: Priority,
    pub kind: ConfigurationKind,
    pub field_changes: Vec<FieldChange>,
    /// For [`ActionKind::Rollout`]: the writes of the transition (the plan's JSON shows
    /// them as steps and the rollout itself under `rollouts`).
    #[serde(skip)]
    pub writes: Vec<super::rollout::PlannedWrite>,
}

/// Classifies every declared and every hub deployment. `hub` is the hub's whole list;
/// device-management configurations are ignored.
pub fn classify(declared: &[Rendered], hub: &[Configuration], prune: bool) -> Vec<Action> {
    let mut managed: BTreeMap<&str, Vec<&Configuration>> = BTreeMap::new();
    let mut actions = Vec::new();
    // `adopt "<id>"` hands an unmanaged configuration to a declared name.
    let adopted: BTreeMap<&str, &str> = declared
        .iter()
        .filter_map(|r| Some((r.adopt.as_deref()?, r.configuration.labels.get(LABEL_NAME)?.as_str())))
        .collect();
    for c in hub.iter().filter(|c| c.is_edge()) {
        match c.labels.get(LABEL_NAME) {
            Some(name) if c.labels.contains_key(LABEL_HASH) => managed.entry(name.as_str()).or_default().push(c),
            _ if adopted.contains_key(c.id.as_str()) => {
                managed.entry(adopted[c.id.as_str()]).or_default().push(c);
            }
            _ => actions.push(Action {
                name: c.id.to_string(),
                action: ActionKind::Unmanaged,
                before: vec![HubRef::of(c)],
                after: Some(c.id.clone()),
                priority: c.priority,
                kind: c.kind(),
                field_changes: Vec::new(),
                writes: Vec::new(),
            }),
        }
    }
    for r in declared {
        let c = &r.configuration;
        let name = c.labels.get(LABEL_NAME).cloned().unwrap_or_else(|| c.id.to_string());
        let on_hub = managed.remove(name.as_str()).unwrap_or_default();
        let same_content = on_hub.iter().find(|h| h.id == c.id);
        let (action, field_changes) = match same_content {
            Some(h) => {
                let mut changes = field_changes(h, c);
                // Same content under another hash: a hash-scheme or hash-key change. The
                // label is rewritten in place; replacing would recreate identical content.
                if h.labels.contains_key(LABEL_HASH) && h.labels.get(LABEL_HASH) != c.labels.get(LABEL_HASH) {
                    changes.push(FieldChange {
                        field: format!("labels.{LABEL_HASH}"),
                        before: h.labels.get(LABEL_HASH).map(|v| v.clone().into()),
                        after: c.labels.get(LABEL_HASH).map(|v| v.clone().into()),
                    });
                }
                let stale_halves = on_hub.len() > 1;
                let kind = if changes.is_empty() && !stale_halves { ActionKind::NoOp } else { ActionKind::Update };
                (kind, changes)
            }
            None if on_hub.is_empty() => (ActionKind::Create, Vec::new()),
            None => {
                let newest = newest(&on_hub);
                (ActionKind::Replace, field_changes(newest, c))
            }
        };
        // With the same content already on the hub, any other managed copy is a leftover
        // of an interrupted replace: it is deleted as part of this deployment's action.
        let before = on_hub.iter().map(|h| HubRef::of(h)).collect();
        actions.push(Action {
            name,
            action,
            before,
            after: Some(c.id.clone()),
            priority: c.priority,
            kind: c.kind(),
            field_changes,
            writes: Vec::new(),
        });
    }
    for (name, configs) in managed {
        let newest = newest(&configs);
        actions.push(Action {
            name: name.to_string(),
            action: if prune { ActionKind::Delete } else { ActionKind::Orphan },
            before: configs.iter().map(|h| HubRef::of(h)).collect(),
            after: if prune { None } else { Some(newest.id.clone()) },
            priority: newest.priority,
            kind: newest.kind(),
            field_changes: Vec::new(),
            writes: Vec::new(),
        });
    }
    actions.sort_by(|a, b| a.name.cmp(&b.name).then(a.action.cmp(&b.action)));
    actions
}

/// Gives a declared deployment the id of the hub configuration that already holds exactly
/// its content, when that id is not the usual `<name>-<hash>`: a configuration it adopts
/// (`adopt "<id>"`, written by `fleetform import`), one adopted earlier, or one written
/// under an older hash scheme or another hash key (labelled with its name; the content,
/// secrets included, is compared, not the hash). Content is immutable on the hub, so the
/// existing object is kept and only its mutable fields (and hash labels) are updated;
/// without this, adoption or a hash-scheme change would be a replace that recreates
/// identical content under a new id. Run before [`classify`].
pub fn adopt_ids(declared: &mut [Rendered], hub: &[Configuration]) {
    for r in declared.iter_mut() {
        let c = &r.configuration;
        if hub.iter().any(|h| h.id == c.id) {
            continue;
        }
        let Some(name) = c.labels.get(LABEL_NAME) else { continue };
        // Content the agent reads identically (createOptions spelling) is the same content.
        let alike = |h: &&Configuration| crate::manifest::same_content(&h.content, &c.content);
        let same = hub.iter().filter(|h| h.is_edge() && h.kind() == c.kind() && alike(h)).find(|h| {
            let labelled = h.labels.get(LABEL_NAME) == Some(name) && h.labels.contains_key(LABEL_HASH);
            let unmanaged = !h.labels.contains_key(LABEL_HASH) && h.labels.get(LABEL_NAME).is_none_or(|n| n == name);
            labelled || (unmanaged && r.adopt.as_deref() == Some(h.id.as_str()))
        });
        if let Some(h) = same {
            r.configuration.id = h.id.clone();
        }
    }
}

/// The most recently created of several configurations (by `createdTimeUtc`, then id);
/// `configs` is not empty.
pub(crate) fn newest<'a>(configs: &[&'a Configuration]) -> &'a Configuration {
    let key = |c: &&Configuration| {
        (crate::merge::HubTime::parse(c.created_time_utc.as_deref().unwrap_or("")).ok(), c.id.clone())
    };
    configs.iter().copied().max_by_key(key).unwrap_or(configs[0])
}

/// The mutable fields that differ. `fleetform-commit` is refreshed by every write and is
/// not a difference on its own.
pub fn field_changes(hub: &Configuration, declared: &Configuration) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if hub.priority != declared.priority {
        out.push(FieldChange {
            field: "priority".into(),
            before: Some(i64::from(hub.priority).into()),
            after: Some(i64::from(declared.priority).into()),
        });
    }
    if hub.target_condition != declared.target_condition {
        out.push(FieldChange {
            field: "targetCondition".into(),
            before: Some(hub.target_condition.clone().into()),
            after: Some(declared.target_condition.clone().into()),
        });
    }
    let keys: std::collections::BTreeSet<&String> = hub.labels.keys().chain(declared.labels.keys()).collect();
    for k in keys {
        if k == LABEL_COMMIT || k == LABEL_HASH {
            continue;
        }
        let (a, b) = (hub.labels.get(k), declared.labels.get(k));
        if a != b {
            out.push(FieldChange {
                field: format!("labels.{k}"),
                before: a.map(|v| v.clone().into()),
                after: b.map(|v| v.clone().into()),
            });
        }
    }
    let empty = BTreeMap::new();
    let hq = hub.metrics.as_ref().map_or(&empty, |m| &m.queries);
    let dq = declared.metrics.as_ref().map_or(&empty, |m| &m.queries);
    let names: std::collections::BTreeSet<&String> = hq.keys().chain(dq.keys()).collect();
    for n in names {
        let (a, b) = (hq.get(n), dq.get(n));
        if a != b {
            out.push(FieldChange {
                field: format!("metrics.{n}"),
                before: a.map(|v| v.clone().into()),
                after: b.map(|v| v.clone().into()),
            });
        }
    }
    out
}

impl std::fmt::Display for ActionKind {
    /// The serde name (`create`, …, `no-op`), so text and JSON name an action alike.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ActionKind::Create => "create",
            ActionKind::Update => "update",
            ActionKind::Replace => "replace",
            ActionKind::Delete => "delete",
            ActionKind::Orphan => "orphan",
            ActionKind::Unmanaged => "unmanaged",
            ActionKind::NoOp => "no-op",
            ActionKind::Rollout => "rollout",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MapEnv, SecretMode, render};
    use crate::plan::{StepOp, steps};
    use crate::spec::{SourceFile, Workspace};

    const BASE: &str = r#"
deployment "base" {
    priority 10
    target "tags.env='prod'"
    label team="a"
    runtime {
        registry "r" address="r.azurecr.io" username="u" password=(env)"PW"
        edge-agent image="agent:1.5"
        edge-hub image="hub:1.5"
    }
    module "M" image="m:1.0"
    metric "ok" "SELECT deviceId FROM devices WHERE tags.x = 1"
}
"#;

    fn rendered(text: &str, pw: &str) -> Rendered {
        let ws = Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text.to_string())]);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        let env = MapEnv(
            [("PW", pw), (crate::manifest::HASH_KEY_VAR, "a-hash-key-for-the-unit-tests-0000")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        render(&ws.deployments[0], &env, SecretMode::Reveal).unwrap()
    }

    /// The hub's copy of a rendered deployment: hub-set fields added.
    fn on_hub(r: &Rendered) -> Configuration {
        let mut c = r.configuration.clone();
        c.etag = Some("\"etag-1\"".parse().unwrap());
        c.created_time_utc = Some("2026-01-01T00:00:00Z".into());
        c
    }

    fn only(declared: &Rendered, hub: &[Configuration], prune: bool) -> Action {
        let actions: Vec<Action> =
            classify(std::slice::from_ref(declared), hub, prune).into_iter().filter(|a| a.name == "base").collect();
        assert_eq!(actions.len(), 1);
        actions.into_iter().next().unwrap()
    }

    #[test]
    fn same_content_and_fields_is_a_no_op() {
        let r = rendered(BASE, "s1");
        let a = only(&r, &[on_hub(&r)], false);
        assert_eq!(a.action, ActionKind::NoOp);
        assert!(steps(&[a]).is_empty());
    }

    #[test]
    fn each_mutable_field_is_an_update() {
        let r = rendered(BASE, "s1");
        let hub = on_hub(&r);
        for (from, to, field) in [
            ("priority 10", "priority 11", "priority"),
            ("tags.env='prod'", "tags.env='dev'", "targetCondition"),
            ("team=\"a\"", "team=\"b\"", "labels.team"),
            ("tags.x = 1", "tags.x = 2", "metrics.ok"),
        ] {
            let changed = rendered(&BASE.replace(from, to), "s1");
            assert_eq!(changed.configuration.id, r.configuration.id, "{field} is not content");
            let a = only(&changed, std::slice::from_ref(&hub), false);
            assert_eq!(a.action, ActionKind::Update, "{field}");
            assert_eq!(a.field_changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), [field]);
            let s = steps(&[a]);
            assert_eq!(
                (s.len(), s[0].op, s[0].etag.as_ref().map(|e| e.as_str())),
                (1, StepOp::Update, Some("\"etag-1\""))
            );
        }
    }

    #[test]
    fn content_change_is_a_replace_creating_before_deleting() {
        let r = rendered(BASE, "s1");
        let changed = rendered(&BASE.replace("m:1.0", "m:1.1"), "s1");
        let a = only(&changed, &[on_hub(&r)], false);
        assert_eq!(a.action, ActionKind::Replace);
        assert_eq!(a.after.as_deref(), Some(changed.configuration.id.as_str()));
        let s = steps(&[a]);
        assert_eq!(
            s.iter().map(|s| (s.op, s.id.as_str())).collect::<Vec<_>>(),
            [(StepOp::Create, changed.configuration.id.as_str()), (StepOp::Delete, r.configuration.id.as_str())]
        );
        assert_eq!(s[1].etag.as_ref().map(|e| e.as_str()), Some("\"etag-1\""));
    }

    #[test]
    fn a_changed_secret_replaces_without_showing_it() {
        let r = rendered(BASE, "old-secret-value");
        let changed = rendered(BASE, "new-secret-value");
        let a = only(&changed, &[on_hub(&r)], false);
        assert_eq!(a.action, ActionKind::Replace);
        let text = serde_json::to_string(&a).unwrap() + &serde_json::to_string(&steps(&[a])).unwrap();
        assert!(!text.contains("secret-value"));
    }

    #[test]
    fn undeclared_managed_is_orphaned_or_pruned_and_unmanaged_is_untouched() {
        let r = rendered(BASE, "s1");
        let mut unmanaged = on_hub(&r);
        unmanaged.id = "hand-made".into();
        unmanaged.labels.clear();
        let mut adm = Configuration { id: "adm".into(), ..Default::default() };
        adm.content.device_content = Some(serde_json::json!({"properties.desired.x": 1}));
        let hub = [on_hub(&r), unmanaged, adm];
        let kept = classify(&[], &hub, false);
        assert_eq!(
            kept.iter().map(|a| (a.name.as_str(), a.action)).collect::<Vec<_>>(),
            [("base", ActionKind::Orphan), ("hand-made", ActionKind::Unmanaged)]
        );
        assert!(steps(&kept).is_empty());
        let pruned = classify(&[], &hub, true);
        assert_eq!(pruned[0].action, ActionKind::Delete);
        assert_eq!(pruned[1].action, ActionKind::Unmanaged);
        assert_eq!(steps(&pruned).iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [r.configuration.id.as_str()]);
    }

    #[test]
    fn a_leftover_of_an_interrupted_replace_is_deleted() {
        let old = rendered(BASE, "s1");
        let new = rendered(&BASE.replace("m:1.0", "m:1.1"), "s1");
        let mut new_on_hub = on_hub(&new);
        new_on_hub.etag = Some("\"etag-2\"".parse().unwrap());
        let a = only(&new, &[on_hub(&old), new_on_hub], false);
        assert_eq!(a.action, ActionKind::Update);
        let s = steps(&[a]);
        assert_eq!(
            s.iter().map(|s| (s.op, s.id.as_str(), s.reason.as_str())).collect::<Vec<_>>(),
            [(StepOp::Delete, old.configuration.id.as_str(), "stale copy")]
        );
    }

    #[test]
    fn steps_run_writes_high_to_low_then_deletes_low_to_high() {
        let mk = |name: &str, prio: i32, kind: ActionKind, before: &[(&str, i32)]| Action {
            name: name.into(),
            action: kind,
            before: before
                .iter()
                .map(|(id, p)| HubRef {
                    id: id.to_string().into(),
                    etag: Some("e".parse().unwrap()),
                    priority: Priority(*p),
                    kind: ConfigurationKind::Standard,
                })
                .collect(),
            after: (kind != ActionKind::Delete).then(|| format!("{name}-new").into()),
            priority: Priority(prio),
            kind: ConfigurationKind::Standard,
            field_changes: vec![],
            writes: vec![],
        };
        let s = steps(&[
            mk("a", 10, ActionKind::Create, &[]),
            mk("b", 30, ActionKind::Replace, &[("b-old", 30)]),
            mk("c", 20, ActionKind::Delete, &[("c-old", 20)]),
            mk("d", 5, ActionKind::Replace, &[("d-old", 5)]),
        ]);
        let order: Vec<(usize, StepOp, &str)> = s.iter().map(|s| (s.number, s.op, s.id.as_str())).collect();
        assert_eq!(
            order,
            [
                (1, StepOp::Create, "b-new"),
                (2, StepOp::Create, "a-new"),
                (3, StepOp::Create, "d-new"),
                (4, StepOp::Delete, "d-old"),
                (5, StepOp::Delete, "c-old"),
                (6, StepOp::Delete, "b-old")
            ]
        );
    }

    /// A hand-made configuration on the hub: BASE's content under another id, no labels.
    fn legacy(content_of: &Rendered) -> Configuration {
        let mut c = on_hub(content_of);
        c.id = "Legacy_1".into();
        c.labels = [("team".to_string(), "a".to_string())].into_iter().collect();
        c
    }

    #[test]
    fn adoption_with_identical_content_is_a_label_update() {
        let text = BASE.replace("    label team=\"a\"", "    adopt \"Legacy_1\"\n    label team=\"a\"");
        let mut declared = vec![rendered(&text, "pw")];
        assert_eq!(declared[0].adopt.as_deref(), Some("Legacy_1"));
        let hub = vec![legacy(&declared[0])];
        adopt_ids(&mut declared, &hub);
        assert_eq!(declared[0].configuration.id, "Legacy_1", "keeps the hub object");
        let actions = classify(&declared, &hub, false);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(actions[0].action, ActionKind::Update);
        let fields: Vec<&str> = actions[0].field_changes.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["labels.fleetform-hash-scheme", "labels.fleetform-name"]);
        let s = steps(&actions);
        assert_eq!((s.len(), s[0].op, s[0].id.as_str()), (1, StepOp::Update, "Legacy_1"));

        // Once adopted (labels written), the next plan is a no-op, not a replace.
        let mut adopted = hub[0].clone();
        adopted.labels = declared[0].configuration.labels.clone();
        let mut again = vec![rendered(&text, "pw")];
        adopt_ids(&mut again, std::slice::from_ref(&adopted));
        assert_eq!(classify(&again, &[adopted], false)[0].action, ActionKind::NoOp);
    }

    #[test]
    fn adoption_with_other_content_replaces_and_without_adopt_nothing_is_touched() {
        let text = BASE.replace("    label team=\"a\"", "    adopt \"Legacy_1\"\n    label team=\"a\"");
        let hub = vec![legacy(&rendered(&text, "pw"))];
        let mut changed = vec![rendered(&text.replace("m:1.0", "m:2.0"), "pw")];
        adopt_ids(&mut changed, &hub);
        assert_ne!(changed[0].configuration.id, "Legacy_1");
        let actions = classify(&changed, &hub, false);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(actions[0].action, ActionKind::Replace);
        assert_eq!(actions[0].before[0].id, "Legacy_1");

        let mut plain = vec![rendered(BASE, "pw")];
        adopt_ids(&mut plain, &hub);
        let kinds: Vec<ActionKind> = classify(&plain, &hub, false).iter().map(|a| a.action).collect();
        assert_eq!(kinds, [ActionKind::Unmanaged, ActionKind::Create], "sorted by name: Legacy_1, base");
    }

    /// BASE as an older fleetform wrote it: hash scheme 1 (unkeyed, no scheme label).
    fn scheme_1(r: &Rendered) -> Configuration {
        let mut c = on_hub(r);
        let old = crate::manifest::legacy_hash(c.content.modules_content.as_ref().unwrap());
        c.labels.remove(crate::manifest::LABEL_HASH_SCHEME);
        c.labels.insert(LABEL_HASH.into(), old.clone());
        c.id = format!("base-{}", &old[..8]).into();
        c
    }

    #[test]
    fn a_scheme_1_deployment_with_the_same_content_adopts_the_new_hash_in_place() {
        let r = rendered(BASE, "s1");
        let hub = vec![scheme_1(&r)];
        assert_ne!(hub[0].id, r.configuration.id, "the scheme changes the id");
        let mut declared = vec![r.clone()];
        adopt_ids(&mut declared, &hub);
        let actions = classify(&declared, &hub, false);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!((actions[0].action, actions[0].after.as_deref()), (ActionKind::Update, Some(hub[0].id.as_str())));
        let fields: Vec<(&str, Option<&Value>)> =
            actions[0].field_changes.iter().map(|f| (f.field.as_str(), f.after.as_ref())).collect();
        assert_eq!(
            fields,
            [
                ("labels.fleetform-hash-scheme", Some(&Value::from("2"))),
                ("labels.fleetform-hash", Some(&Value::from(r.hash.clone())))
            ]
        );
        let s = steps(&actions);
        assert_eq!((s.len(), s[0].op, s[0].id.as_str()), (1, StepOp::Update, hub[0].id.as_str()));

        // After the update (the hub keeps the id, takes the labels), nothing is left to do.
        let mut updated = hub[0].clone();
        updated.labels = r.configuration.labels.clone();
        let mut again = vec![r.clone()];
        adopt_ids(&mut again, std::slice::from_ref(&updated));
        assert_eq!(classify(&again, &[updated], false)[0].action, ActionKind::NoOp);
    }

    #[test]
    fn a_scheme_1_deployment_holding_another_secret_is_replaced() {
        // Rotated since the old fleetform wrote it: the content (secret included) differs.
        let hub = vec![scheme_1(&rendered(BASE, "old-secret"))];
        let mut declared = vec![rendered(BASE, "new-secret")];
        adopt_ids(&mut declared, &hub);
        let a = only(&declared[0], &hub, false);
        assert_eq!(a.action, ActionKind::Replace);
        assert_eq!(a.before[0].id, hub[0].id);
        assert_eq!(a.after.as_deref(), Some(rendered(BASE, "new-secret").configuration.id.as_str()));
    }

    #[test]
    fn a_new_hash_key_relabels_in_place() {
        let r = rendered(BASE, "s1");
        let mut other_key = on_hub(&r);
        other_key.labels.insert(LABEL_HASH.into(), "00112233deadbeef".into());
        other_key.id = "base-00112233".into();
        let mut declared = vec![r];
        adopt_ids(&mut declared, std::slice::from_ref(&other_key));
        let a = only(&declared[0], &[other_key], false);
        assert_eq!(a.action, ActionKind::Update);
        assert_eq!(a.field_changes.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["labels.fleetform-hash"]);
    }
}
