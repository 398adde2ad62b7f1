//! `fleetform explain`: one device's [`Explanation`] as text for a terminal and as JSON.

use std::fmt::Write;

use serde_json::Value;

use super::output::{CheckOutput, ExplainOutput};

use crate::explain::{Explanation, State, lookup};
use crate::merge;

/// The JSON `explain --format json` prints: [`ExplainOutput`] (schema in
/// `schema/explain.schema.json`, described in `schema/explain.md`).
pub fn explain_output(ex: &Explanation) -> ExplainOutput<'_> {
    let mut view = ex.redactor.value(&ex.view.to_json());
    if let Some(skipped) = view.pointer_mut("/stack/skipped").and_then(Value::as_array_mut) {
        for (s, orig) in skipped.iter_mut().zip(&ex.view.stack.skipped) {
            if let Value::Object(m) = s {
                m.insert("reason_text".into(), Value::String(orig.reason.to_string()));
            }
        }
    }
    ExplainOutput {
        format_version: 1,
        device: &ex.device,
        state: ex.state,
        is_edge: ex.is_edge,
        reads: &ex.reads,
        deployments: &ex.candidates,
        stack: view["stack"].take(),
        manifest: view["manifest"].take(),
        checks: ex.view.checks.iter().map(|c| CheckOutput { check: c, text: c.to_string() }).collect(),
    }
}

pub fn explain_json(ex: &Explanation) -> Value {
    serde_json::to_value(explain_output(ex)).unwrap_or(Value::Null)
}

/// The text `explain` prints.
pub fn explain_text(ex: &Explanation) -> String {
    let r = &ex.redactor;
    let mut out = String::new();
    let state = match ex.state {
        State::Declared => "as declared (after apply)",
        State::Current => "as on the hub now",
    };
    let edge = if ex.is_edge { "IoT Edge device" } else { "not an IoT Edge device: no deployment targets it" };
    let _ = writeln!(out, "Device {} ({edge}), deployments {state}\n", ex.device);
    if !ex.reads.is_empty() {
        let _ = writeln!(out, "Twin values the target conditions read:");
        let width = ex.reads.keys().map(|k| k.len()).max().unwrap_or(0);
        for (path, value) in &ex.reads {
            let v = value
                .as_ref()
                .map_or("(undefined)".to_string(), |v| serde_json::to_string(&r.value(v)).unwrap_or_default());
            let _ = writeln!(out, "  {path:<width$}  {v}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Deployments:");
    let width = ex.candidates.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &ex.candidates {
        let mark = if c.matched { "✓" } else { "✗" };
        let _ = writeln!(out, "  {mark} {:<width$}  {:<8} p{:<4} {}", c.id, c.kind, c.priority, c.target);
        for cl in c.clauses.iter().filter(|cl| cl.value != "true") {
            let _ = writeln!(out, "      {} is {}", cl.text, cl.value);
        }
        if !c.matched && !ex.is_edge && c.clauses.iter().all(|cl| cl.value == "true") {
            let _ = writeln!(out, "      the condition holds, but deployments target IoT Edge devices only");
        }
    }
    let stack = &ex.view.stack;
    let _ = writeln!(out, "\nStack:");
    let _ = writeln!(out, "  standard: {}", stack.standard.as_deref().unwrap_or("(none)"));
    if !stack.layered.is_empty() {
        let _ = writeln!(out, "  layered, in the order applied: {}", stack.layered.join(", "));
    }
    for s in &stack.skipped {
        let _ = writeln!(out, "  skipped {}: {}", s.id, s.reason);
    }
    let m = &ex.view.manifest;
    let _ = writeln!(out, "\nEffective manifest:");
    if m.unmanaged {
        let _ = writeln!(out, "  unmanaged: no deployment applies, the device keeps running what it runs now");
    } else if m.no_standard {
        let _ = writeln!(
            out,
            "  no standard deployment applies: layered ones alone give no manifest (the agent reports 417)"
        );
    }
    let from = |e: &merge::Entry| {
        let mut s = e.from.as_deref().map_or(String::new(), |f| format!("from {f}"));
        if !e.overrode.is_empty() {
            s.push_str(&format!(" (overrode {})", e.overrode.join(", ")));
        }
        s
    };
    let image = |v: &Value| v.pointer("/settings/image").map(|i| r.text(i)).unwrap_or_default();
    for (title, map) in [("system modules", &m.system_modules), ("modules", &m.modules)] {
        if map.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        let w = map.keys().map(|k| k.len()).max().unwrap_or(0);
        for (name, e) in map {
            let _ = writeln!(out, "    {name:<w$}  {}  {}", image(&e.value), from(e));
        }
    }
    if let Some(rt) = &m.runtime {
        if rt.details.is_empty() || rt.from.is_some() {
            let _ = writeln!(out, "  runtime: {}", from(rt));
        } else {
            let _ = writeln!(out, "  runtime:");
            for d in rt.details.iter().filter(|d| !d.origin.removed) {
                let _ =
                    writeln!(out, "    {}  from {}", d.path.strip_prefix("runtime.").unwrap_or(&d.path), d.origin.from);
            }
        }
    }
    if !m.routes.is_empty() {
        let _ = writeln!(out, "  routes:");
        for (name, e) in &m.routes {
            let _ = writeln!(
                out,
                "    {name}: {}  {}",
                r.text(&Value::String(e.route.clone().unwrap_or_default())),
                from(&e.entry)
            );
        }
    }
    for (twin, t) in &m.twins {
        let _ = writeln!(out, "  twin {twin}:");
        for p in &t.provenance {
            let value = lookup(&t.desired, &p.path.split('.').map(str::to_string).collect::<Vec<_>>());
            let shown =
                value.map_or("(removed)".to_string(), |v| serde_json::to_string(&r.value(v)).unwrap_or_default());
            let mut line = format!("    {} = {shown}  from {}", p.path, p.origin.from);
            if !p.origin.overrode.is_empty() {
                line.push_str(&format!(" (overrode {})", p.origin.overrode.join(", ")));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !ex.view.checks.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for c in &ex.view.checks {
            let _ = writeln!(out, "  ! {c}");
        }
    }
    out
}
