//! `--format json`: the whole plan for machines. The shape is documented in
//! `schema/plan.md`; `format_version` changes when it changes incompatibly.

use serde_json::{Value, json};

use crate::plan::{ActionKind, Change, Plan};

pub const FORMAT_VERSION: u32 = 1;

fn change_json(c: &Change) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("text".into(), Value::String(c.to_string()));
    }
    v
}

pub fn plan_json(plan: &Plan) -> Value {
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "action": a.action,
                "kind": a.kind.word(),
                "priority": a.priority,
                "before": a.before.iter().map(|b| &b.id).collect::<Vec<_>>(),
                "after": a.after,
                "field_changes": a.field_changes.iter().map(|f| json!({
                    "field": f.field,
                    "before": f.before.as_ref().map(|v| plan.redactor.value(v)),
                    "after": f.after.as_ref().map(|v| plan.redactor.value(v)),
                })).collect::<Vec<_>>(),
                "content_changes": plan.content_changes.get(&a.name).map(|cs| cs.iter().map(change_json).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    let count = |k| plan.count(k);
    json!({
        "format_version": FORMAT_VERSION,
        "hub": plan.hub,
        "summary": {
            "text": super::summary_line(plan),
            "changes": plan.has_changes(),
            "create": count(ActionKind::Create),
            "update": count(ActionKind::Update),
            "replace": count(ActionKind::Replace),
            "delete": count(ActionKind::Delete),
            "orphan": count(ActionKind::Orphan),
            "unmanaged": count(ActionKind::Unmanaged),
            "no_op": count(ActionKind::NoOp),
            "devices": plan.totals.devices,
            "edge_devices": plan.totals.edge_devices,
            "devices_changed": plan.totals.changed,
            "devices_restacked": plan.totals.restacked,
        },
        "actions": actions,
        "steps": plan.steps,
        "cohorts": plan.cohorts.iter().map(|c| json!({
            "count": c.count,
            "samples": c.samples,
            "stack_before": c.stack_before,
            "stack_after": c.stack_after,
            "changes": c.changes.iter().map(change_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "warnings": plan.warnings.iter().map(|w| {
            let mut v = serde_json::to_value(w).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("text".into(), Value::String(w.to_string()));
            }
            v
        }).collect::<Vec<_>>(),
    })
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
