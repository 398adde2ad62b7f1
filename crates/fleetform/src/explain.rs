//! `fleetform explain DEVICE`: one device's view of the deployments — what its twin says,
//! which deployments target it and why the others don't, the stack the hub builds, and
//! where every module, route, runtime setting and twin property comes from.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::Rendered;
use crate::merge::{self, MatchSet};
use crate::model::{Configuration, DeploymentId, FleetRead, Priority, Projection, ReadError};
use crate::plan::{self, PlanError, Redactor};
use crate::query::{CompiledCondition, eq_ignore_case, is_edge_device, parse_condition};

/// Which set of deployments to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// Reading the fleet's devices failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ReadError),
    #[error("no device {device} on {hub}")]
    #[diagnostic(
        code(fleetform::explain::no_device),
        help("device ids are case-sensitive; `fleetform query --hub … \"*\"` lists the IoT Edge devices")
    )]
    NoDevice { device: String, hub: String },
}

/// One clause of a target condition and its value on the device.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Clause {
    pub text: String,
    /// `true`, `false` or `undefined` (a property the twin does not have).
    pub value: &'static str,
}

/// A deployment and whether it targets the device.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Candidate {
    pub id: DeploymentId,
    pub kind: &'static str,
    pub priority: Priority,
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
pub(crate) fn lookup<'v>(twin: &'v Value, segments: &[String]) -> Option<&'v Value> {
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

/// Explains `device` of `fleet` against the hub's `current` configurations
/// (`State::Current`) or against the state apply would leave from `declared`
/// (`State::Declared`).
pub fn explain_device(
    fleet: &dyn FleetRead,
    current: &[Configuration],
    mut declared: Vec<Rendered>,
    device: &str,
    state: State,
) -> Result<Explanation, ExplainError> {
    // As in plan: deployments adopting a hub configuration keep its id.
    plan::adopt_ids(&mut declared, current);
    let redactor = Redactor::new(&declared, current);
    let deployments = match state {
        State::Current => plan::state::before(current)?,
        State::Declared => {
            let actions = plan::classify(&declared, current, false);
            let steps = plan::steps(&actions);
            plan::state::after(current, &declared, &actions, &steps)?
        }
    };
    let found: Mutex<Option<Value>> = Mutex::new(None);
    fleet.device_batches(Projection::Full, &|batch| {
        if let Some(t) = batch.into_iter().find(|t| t.device_id() == device) {
            *found.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.into_value());
        }
        Ok(())
    })?;
    let Some(twin) = found.into_inner().unwrap_or_else(|e| e.into_inner()) else {
        return Err(ExplainError::NoDevice { device: device.to_string(), hub: fleet.describe() });
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
            kind: d.kind.word(),
            priority: d.priority,
            created: d.created.to_string(),
            target: target.to_string(),
            matched,
            clauses,
        });
    }
    // Highest priority first, as the hub considers them.
    candidates.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let merge_deps = deployments.deployments;
    let stack = merge::stack(&merge_deps, &matches);
    let manifest = merge::merge(&merge_deps, &stack);
    let view = merge::explain(&merge_deps, &stack, &manifest);
    Ok(Explanation { device: device.to_string(), state, is_edge, reads, candidates, view, redactor })
}

impl Explanation {
    /// The JSON `explain --format json` prints (documented in `schema/explain.md`).
    pub fn to_json(&self) -> Value {
        crate::render::explain::explain_json(self)
    }

    /// The text `explain` prints.
    pub fn to_text(&self) -> String {
        crate::render::explain::explain_text(self)
    }
}
