//! `fleetform explain DEVICE`: one device's view of the deployments — what its twin says,
//! which deployments target it and why the others don't, the stack the hub builds, and
//! where every module, route, runtime setting and twin property comes from.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value, json};

use crate::hub::{Hub, Projection};
use crate::manifest::Rendered;
use crate::merge::{self, MatchSet, MergeDeployment};
use crate::plan::compute::{after_state, before_state};
use crate::plan::{PlanError, Redactor, classify, steps};
use crate::query::{CompiledCondition, eq_ignore_case, is_edge_device, parse_condition};

/// Which set of deployments to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The repository's deployments as they will be on the hub after apply.
    Declared,
    /// The hub's configurations as they are now.
    Current,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExplainError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    #[error("no device {device} on {hub}")]
    #[diagnostic(
        code(fleetform::explain::no_device),
        help("device ids are case-sensitive; `fleetform query --hub … \"*\"` lists the IoT Edge devices")
    )]
    NoDevice { device: String, hub: String },
}

/// One clause of a target condition and its value on the device.
#[derive(Clone, Debug, Serialize)]
pub struct Clause {
    pub text: String,
    /// `true`, `false` or `undefined` (a property the twin does not have).
    pub value: &'static str,
}

/// A deployment and whether it targets the device.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub id: String,
    pub kind: &'static str,
    pub priority: i64,
    pub created: String,
    pub target: String,
    pub matched: bool,
    /// For a deployment that does not match: the clauses, with the false or undefined ones.
    pub clauses: Vec<Clause>,
}

/// Everything `explain` shows.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub device: String,
    pub state: State,
    pub is_edge: bool,
    /// The twin values the target conditions read (path → value, `None` = undefined).
    pub reads: BTreeMap<String, Option<Value>>,
    pub candidates: Vec<Candidate>,
    pub view: merge::ExplainView,
    pub redactor: Redactor,
}

/// Looks a dotted path up the way the hub does (exact name first, then ignoring case).
fn lookup<'v>(twin: &'v Value, segments: &[String]) -> Option<&'v Value> {
    let mut cur = twin;
    for seg in segments {
        let map = cur.as_object()?;
        cur = match map.get(seg) {
            Some(v) => v,
            None => map.iter().find(|(k, _)| eq_ignore_case(k, seg)).map(|(_, v)| v)?,
        };
    }
    Some(cur)
}

/// Explains `device` against the hub's configurations (`State::Current`) or against the
/// state apply would leave from `declared` (`State::Declared`).
pub fn explain_device(
    hub: &dyn Hub,
    mut declared: Vec<Rendered>,
    device: &str,
    state: State,
) -> Result<Explanation, ExplainError> {
    let current = hub.configurations().map_err(PlanError::from)?;
    // As in plan: deployments adopting a hub configuration keep its id.
    crate::plan::adopt_ids(&mut declared, &current);
    let redactor = Redactor::new(&declared, &current);
    let deployments: Vec<(MergeDeployment, String)> = match state {
        State::Current => before_state(&current)?,
        State::Declared => {
            let actions = classify(&declared, &current, false);
            let steps = steps(&actions);
            after_state(&current, &declared, &actions, &steps)?
        }
    };
    let found: Mutex<Option<Value>> = Mutex::new(None);
    hub.device_batches(Projection::Full, &|batch| {
        if let Some(t) = batch.into_iter().find(|t| t.device_id() == device) {
            *found.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.into_value());
        }
        Ok(())
    })
    .map_err(PlanError::from)?;
    let Some(twin) = found.into_inner().unwrap_or_else(|e| e.into_inner()) else {
        return Err(ExplainError::NoDevice { device: device.to_string(), hub: hub.describe() });
    };
    let is_edge = is_edge_device(&twin);

    let mut reads = BTreeMap::new();
    let mut candidates = Vec::new();
    let mut matches = MatchSet::new();
    for (i, (d, target)) in deployments.iter().enumerate() {
        let compiled = parse_condition(target).ok().map(|c| CompiledCondition::new(&c));
        let matched = is_edge && compiled.as_ref().is_some_and(|c| c.matches(&twin));
        if matched {
            matches.insert(i as u32);
        }
        let mut clauses = Vec::new();
        if let Some(c) = &compiled {
            for p in c.paths() {
                let segments: Vec<String> = p.segments.iter().map(|s| s.name.clone()).collect();
                reads.insert(segments.join("."), lookup(&twin, &segments).cloned());
            }
            if !matched {
                clauses =
                    c.explain(&twin).into_iter().map(|o| Clause { text: o.text, value: o.value.as_str() }).collect();
            }
        }
        candidates.push(Candidate {
            id: d.id.clone(),
            kind: crate::render::kind_name(d.kind),
            priority: d.priority,
            created: d.created.to_string(),
            target: target.clone(),
            matched,
            clauses,
        });
    }
    // Highest priority first, as the hub considers them.
    candidates.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let merge_deps: Vec<MergeDeployment> = deployments.into_iter().map(|(d, _)| d).collect();
    let stack = merge::stack(&merge_deps, &matches);
    let manifest = merge::merge(&merge_deps, &stack);
    let view = merge::explain(&merge_deps, &stack, &manifest);
    Ok(Explanation { device: device.to_string(), state, is_edge, reads, candidates, view, redactor })
}

impl Explanation {
    /// The JSON `explain --format json` prints (documented in `schema/explain.md`).
    pub fn to_json(&self) -> Value {
        let mut view = self.redactor.value(&self.view.to_json());
        if let Some(skipped) = view.pointer_mut("/stack/skipped").and_then(Value::as_array_mut) {
            for (s, orig) in skipped.iter_mut().zip(&self.view.stack.skipped) {
                if let Value::Object(m) = s {
                    m.insert("reason_text".into(), Value::String(orig.reason.to_string()));
                }
            }
        }
        json!({
            "format_version": 1,
            "device": self.device,
            "state": self.state,
            "is_edge": self.is_edge,
            "reads": self.reads,
            "deployments": self.candidates,
            "stack": view["stack"],
            "manifest": view["manifest"],
            "checks": self.view.checks.iter().map(|c| json!({"check": serde_json::to_value(c).unwrap_or(Value::Null), "text": c.to_string()})).collect::<Vec<_>>(),
        })
    }

    /// The text `explain` prints.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let r = &self.redactor;
        let mut out = String::new();
        let state = match self.state {
            State::Declared => "as declared (after apply)",
            State::Current => "as on the hub now",
        };
        let edge = if self.is_edge { "IoT Edge device" } else { "not an IoT Edge device: no deployment targets it" };
        let _ = writeln!(out, "Device {} ({edge}), deployments {state}\n", self.device);
        if !self.reads.is_empty() {
            let _ = writeln!(out, "Twin values the target conditions read:");
            let width = self.reads.keys().map(|k| k.len()).max().unwrap_or(0);
            for (path, value) in &self.reads {
                let v = value
                    .as_ref()
                    .map_or("(undefined)".to_string(), |v| serde_json::to_string(&r.value(v)).unwrap_or_default());
                let _ = writeln!(out, "  {path:<width$}  {v}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "Deployments:");
        let width = self.candidates.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in &self.candidates {
            let mark = if c.matched { "✓" } else { "✗" };
            let _ = writeln!(out, "  {mark} {:<width$}  {:<8} p{:<4} {}", c.id, c.kind, c.priority, c.target);
            for cl in c.clauses.iter().filter(|cl| cl.value != "true") {
                let _ = writeln!(out, "      {} is {}", cl.text, cl.value);
            }
            if !c.matched && !self.is_edge && c.clauses.iter().all(|cl| cl.value == "true") {
                let _ = writeln!(out, "      the condition holds, but deployments target IoT Edge devices only");
            }
        }
        let stack = &self.view.stack;
        let _ = writeln!(out, "\nStack:");
        let _ = writeln!(out, "  standard: {}", stack.standard.as_deref().unwrap_or("(none)"));
        if !stack.layered.is_empty() {
            let _ = writeln!(out, "  layered, in the order applied: {}", stack.layered.join(", "));
        }
        for s in &stack.skipped {
            let _ = writeln!(out, "  skipped {}: {}", s.id, s.reason);
        }
        let m = &self.view.manifest;
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
                    let _ = writeln!(
                        out,
                        "    {}  from {}",
                        d.path.strip_prefix("runtime.").unwrap_or(&d.path),
                        d.origin.from
                    );
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
        if !self.view.checks.is_empty() {
            let _ = writeln!(out, "\nWarnings:");
            for c in &self.view.checks {
                let _ = writeln!(out, "  ! {c}");
            }
        }
        out
    }
}
