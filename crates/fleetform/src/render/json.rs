//! `--format json`: the whole plan for machines, as [`PlanOutput`] (its JSON Schema is
//! `schema/plan.schema.json`, described in `schema/plan.md`); `format_version` changes when
//! it changes incompatibly.

use serde_json::{Value, json};

use super::output::{
    ActionOutput, ChangeOutput, CohortOutput, FieldChangeOutput, PlanOutput, Summary, WarningOutput,
    WithoutSecretsOutput,
};
use crate::plan::{ActionKind, Plan};

pub const FORMAT_VERSION: u32 = 1;

/// The plan as [`PlanOutput`] borrows it; `change` is the `--base` plan, if any.
pub fn plan_output<'a>(plan: &'a Plan, change: Option<&'a Plan>) -> PlanOutput<'a> {
    let mut output = plan_output_without_cohorts(plan, change.map(|c| plan_output(c, None)));
    output.cohorts = plan.cohorts.iter().map(CohortOutput::of).collect();
    output
}

/// [`plan_output`] with `cohorts` left empty, and `change` as given.
fn plan_output_without_cohorts<'a>(plan: &'a Plan, change: Option<PlanOutput<'a>>) -> PlanOutput<'a> {
    let actions = plan
        .actions
        .iter()
        .map(|a| ActionOutput {
            name: &a.name,
            action: a.action,
            kind: a.kind.word(),
            priority: a.priority,
            before: a.before.iter().map(|b| &b.id).collect(),
            after: a.after.as_ref(),
            field_changes: a
                .field_changes
                .iter()
                .map(|f| FieldChangeOutput {
                    field: &f.field,
                    before: f.before.as_ref().map(|v| plan.redactor.value(v)),
                    after: f.after.as_ref().map(|v| plan.redactor.value(v)),
                })
                .collect(),
            content_changes: plan
                .content_changes
                .get(&a.name)
                .map(|cs| cs.iter().map(ChangeOutput::of).collect())
                .unwrap_or_default(),
        })
        .collect();
    let count = |k| plan.count(k);
    PlanOutput {
        format_version: FORMAT_VERSION,
        hub: &plan.hub,
        summary: Summary {
            text: super::summary_line(plan),
            changes: plan.has_changes(),
            create: count(ActionKind::Create),
            update: count(ActionKind::Update),
            replace: count(ActionKind::Replace),
            delete: count(ActionKind::Delete),
            orphan: count(ActionKind::Orphan),
            unmanaged: count(ActionKind::Unmanaged),
            no_op: count(ActionKind::NoOp),
            devices: plan.totals.devices,
            edge_devices: plan.totals.edge_devices,
            devices_changed: plan.totals.changed,
            devices_restacked: plan.totals.restacked,
        },
        actions,
        steps: &plan.steps,
        cohorts: Vec::new(),
        warnings: plan.warnings.iter().map(WarningOutput::of).collect(),
        change: change.map(Box::new),
        without_secrets: plan
            .without_secrets
            .as_ref()
            .map(|w| WithoutSecretsOutput { missing: &w.missing, unknown_ids: &w.unknown_ids }),
        rollouts: &plan.rollouts,
    }
}

/// `plan --format json` (with `--base`: `change` holds the change's own plan).
pub fn plan_json_with_change(plan: &Plan, change: Option<&Plan>) -> Value {
    // Every map in the output is keyed by strings, so conversion cannot fail.
    serde_json::to_value(plan_output(plan, change)).unwrap_or(Value::Null)
}

pub fn plan_json(plan: &Plan) -> Value {
    plan_json_with_change(plan, None)
}

/// Writes `plan --format json` to `out`, pretty, byte for byte what
/// [`plan_json_with_change`] pretty-prints, cohort by cohort. A cohort lists every change
/// its devices see, so at fleet scale the cohorts are almost all of the document (33.6 of
/// 35.9 MB at 100k devices, 164,756 changes of which few are distinct); as one `Value` tree
/// they were the plan's peak memory and a seventh of its CPU. Each distinct change is made
/// a `Value` once and printed by reference wherever it occurs; the rest of a cohort is a
/// small `Value` of its own, freed before the next. Printing `Value`s keeps every object's
/// keys sorted, as the plan JSON has always been printed.
pub fn write_plan_json(plan: &Plan, change: Option<&Plan>, out: impl std::io::Write) -> serde_json::Result<()> {
    use serde::Serialize as _;
    let mut ser = serde_json::Serializer::pretty(out);
    Streamed::of(plan, change)?.serialize(&mut ser)
}

/// A plan's [`PlanOutput`] as its `Value` would print: the members in sorted order, all but
/// the cohorts (of the plan and of its `change`) made a `Value` together.
struct Streamed<'a> {
    rest: serde_json::Map<String, Value>,
    cohorts: &'a [crate::plan::Cohort],
    /// Every distinct change of the cohorts, as [`ChangeOutput`] makes it.
    changes: rustc_hash::FxHashMap<&'a crate::plan::Change, Value>,
    change: Option<Box<Streamed<'a>>>,
}

impl<'a> Streamed<'a> {
    fn of(plan: &'a Plan, change: Option<&'a Plan>) -> serde_json::Result<Self> {
        let Value::Object(mut rest) = serde_json::to_value(plan_output_without_cohorts(plan, None))? else {
            return Err(serde::ser::Error::custom("the plan output is not an object"));
        };
        // Placed again below, in their sorted place.
        rest.remove("cohorts");
        let mut changes = rustc_hash::FxHashMap::default();
        for c in plan.cohorts.iter().flat_map(|c| &c.changes) {
            if !changes.contains_key(c) {
                changes.insert(c, serde_json::to_value(ChangeOutput::of(c))?);
            }
        }
        let change = change.map(|c| Streamed::of(c, None).map(Box::new)).transpose()?;
        Ok(Streamed { rest, cohorts: &plan.cohorts, changes, change })
    }
}

/// One member's value of an object printed as its `Value` would be.
enum Member<'m> {
    Value(&'m Value),
    Values(Vec<&'m Value>),
    Cohorts(&'m Streamed<'m>),
    Change(&'m Streamed<'m>),
}

impl serde::Serialize for Member<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        match self {
            Member::Value(v) => v.serialize(s),
            Member::Values(vs) => vs.serialize(s),
            Member::Change(c) => c.serialize(s),
            Member::Cohorts(plan) => {
                let mut seq = s.serialize_seq(Some(plan.cohorts.len()))?;
                for c in plan.cohorts {
                    let shell = CohortOutput::of_unchanged(c);
                    let Value::Object(mut rest) = serde_json::to_value(&shell).map_err(S::Error::custom)? else {
                        return Err(S::Error::custom("a cohort's output is not an object"));
                    };
                    rest.remove("changes");
                    let changes = c.changes.iter().map(|c| plan.changes.get(c)).collect::<Option<Vec<_>>>();
                    let changes = changes.ok_or_else(|| S::Error::custom("a cohort's change was not prepared"))?;
                    seq.serialize_element(&Sorted::of(&rest, [("changes", Member::Values(changes))]))?;
                }
                seq.end()
            }
        }
    }
}

/// An object's members in sorted key order: those of `rest` and the `extra` ones.
struct Sorted<'m>(Vec<(&'m str, Member<'m>)>);

impl<'m> Sorted<'m> {
    fn of<const N: usize>(rest: &'m serde_json::Map<String, Value>, extra: [(&'m str, Member<'m>); N]) -> Self {
        let mut members: Vec<(&str, Member<'_>)> = rest.iter().map(|(k, v)| (k.as_str(), Member::Value(v))).collect();
        members.extend(extra);
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // An extra member must not also be in `rest`: a `Value` would hold it once.
        debug_assert!(members.windows(2).all(|w| w[0].0 != w[1].0), "a member twice");
        Sorted(members)
    }
}

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, member) in &self.0 {
            map.serialize_entry(key, member)?;
        }
        map.end()
    }
}

impl serde::Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.change {
            Some(c) => {
                Sorted::of(&self.rest, [("cohorts", Member::Cohorts(self)), ("change", Member::Change(c))]).serialize(s)
            }
            None => Sorted::of(&self.rest, [("cohorts", Member::Cohorts(self))]).serialize(s),
        }
    }
}

/// `validate --format json`: whether the files are valid, what they declare, every problem.
pub fn validate_json(ws: &crate::spec::Workspace) -> Value {
    json!({
        "valid": ws.problems.is_empty(),
        "files": ws.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "deployments": ws.deployments.iter().map(|d| json!({"name": d.name, "kind": d.kind, "priority": d.priority})).collect::<Vec<_>>(),
        "problems": ws.problems.iter().map(crate::spec::Problem::to_json).collect::<Vec<_>>(),
    })
}

/// `query --format json` of a target condition: the targeted devices as rows, like a
/// `SELECT deviceId` gives them.
pub fn targeted_json(ids: Vec<String>) -> Value {
    Value::Array(ids.into_iter().map(|id| json!({ "deviceId": id })).collect())
}

/// `apply --format json` when there is nothing to do. `source` is `plan` (a saved plan)
/// or `repository`.
pub fn apply_unchanged_json(source: &str) -> Value {
    json!({"changes": false, "steps": [], "source": source})
}

/// `apply --format json` after the writes (and the wait, if any).
pub fn apply_json(source: &str, report: &crate::apply::ApplyReport, wait: Option<&crate::apply::WaitOutcome>) -> Value {
    json!({
        "changes": true,
        "source": source,
        "completed": report.completed(),
        "stopped": report.stopped,
        "steps": report.results,
        "wait": wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanOptions, change_plan, plan};
    use crate::test_support::{PROD_STANDARD, campus_fleet, rendered};

    /// [`PROD_STANDARD`] and a layered deployment for building 20.
    fn base() -> String {
        let layered = r#"
layered "b" {
    priority 20
    target "tags.location.building='20'"
    module "G" image="g:1"
}
"#;
        format!("{PROD_STANDARD}{layered}")
    }

    #[test]
    fn the_streamed_plan_is_the_value_pretty_printed() {
        let mut fleet = campus_fleet();
        let prod = fleet.devices.iter().find(|t| t.value()["tags"]["environment"] == "prod").unwrap().device_id();
        let prod = prod.to_string();
        // One agent that reports a module: its cohort prints what its devices run today.
        fleet.modules = vec![serde_json::json!({"deviceId": prod, "moduleId": "$edgeAgent",
            "properties": {"reported": {"modules": {"X": {"settings": {"image": "x:1"}}}}}})];
        // A route added: its own `text` member gives way to the change's line in the JSON.
        let head_text = base().replace("m:1.0", "m:2.0").replace(
            "    module \"M\" image=\"m:2.0\"\n",
            "    module \"M\" image=\"m:2.0\"\n    route \"r\" \"FROM /messages/* INTO $upstream\"\n",
        );
        let mut head = plan(rendered(&head_text), Vec::new(), &fleet, &PlanOptions::default()).unwrap();
        let change = change_plan("main", &rendered(&base()), rendered(&head_text), &[], &fleet).unwrap();
        assert!(head.cohorts.len() > 1 && !change.cohorts.is_empty(), "the fixture must have cohorts to stream");
        assert!(head.cohorts.iter().any(|c| !c.running_before.is_empty()), "a cohort must show what it runs");
        let text = format!("{:?}", head.cohorts);
        assert!(text.contains("RouteAdded") && text.contains("ModuleAdded"), "{text}");
        let plain = head.clone();
        head.without_secrets = Some(crate::plan::WithoutSecrets {
            missing: vec!["TOKEN".into()],
            unknown_ids: [("a".to_string(), vec!["TOKEN".to_string()])].into(),
        });
        for (head, with) in [(&plain, None), (&plain, Some(&change)), (&head, Some(&change))] {
            let mut streamed = Vec::new();
            write_plan_json(head, with, &mut streamed).unwrap();
            let whole = serde_json::to_vec_pretty(&plan_json_with_change(head, with)).unwrap();
            assert_eq!(String::from_utf8(streamed).unwrap(), String::from_utf8(whole).unwrap());
        }
    }
}
