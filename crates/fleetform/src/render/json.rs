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
        cohorts: plan.cohorts.iter().map(CohortOutput::of).collect(),
        warnings: plan.warnings.iter().map(WarningOutput::of).collect(),
        change: change.map(|c| Box::new(plan_output(c, None))),
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
