//! The documents `plan --format json` and `explain --format json` print, as types: the
//! output is their serialization, and `schema/plan.schema.json` and
//! `schema/explain.schema.json` are generated from them ([`plan_schema`],
//! [`explain_schema`]), so the schema cannot drift from what is printed.
//!
//! Parts that are the library's own types (steps, changes, checks, the merged manifest)
//! are borrowed as they are; these types add what the JSON has beyond them (`text`, the
//! summary counts) and decide the top-level shape.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::explain::{Candidate, State};
use crate::merge::{Check, ManifestView, Skipped, Warning};
use crate::model::{DeploymentId, Priority};
use crate::plan::{ActionKind, Change, Cohort, Running, StackIds, Step};

/// `plan --format json`.
#[derive(Serialize, JsonSchema)]
#[schemars(title = "fleetform plan --format json", rename = "Plan")]
pub struct PlanOutput<'a> {
    /// Changes when the shape changes incompatibly.
    pub format_version: u32,
    /// The fleet planned against: a snapshot directory or a hub's host name.
    pub hub: &'a str,
    pub summary: Summary,
    /// One per deployment, declared or on the hub.
    pub actions: Vec<ActionOutput<'a>>,
    /// The writes apply runs, in order.
    pub steps: &'a [Step],
    /// Devices grouped by stack before, stack after and change; largest first.
    pub cohorts: Vec<CohortOutput<'a>>,
    /// Findings on the state after apply.
    pub warnings: Vec<WarningOutput<'a>>,
    /// With `--base REV`: what the change itself does (the deployments at the merge base
    /// against the head), as a plan of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Box<PlanOutput<'a>>>,
    /// Present when planned without some `(env)` / `(secret-env)` values
    /// (`plan --without-secrets`): such a plan cannot be saved or applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_secrets: Option<WithoutSecretsOutput<'a>>,
    /// Deployments with `rollout` whose content rolls out wave by wave: the next
    /// transition and every wave's devices (docs/rollouts.md). Absent when there is none.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub rollouts: &'a [crate::plan::RolloutPlan],
}

/// What a plan made without secrets could not know.
#[derive(Serialize, JsonSchema)]
pub struct WithoutSecretsOutput<'a> {
    /// The variables the deployments read that were not set (names only), sorted.
    pub missing: &'a [String],
    /// Deployments whose new id depends on a missing value (the id hashes the content),
    /// by name, with the variables; their `after` id is a marker
    /// `<name>-<unknown: depends on VAR>`, not a hub id.
    pub unknown_ids: &'a BTreeMap<String, Vec<String>>,
}

/// The plan in numbers.
#[derive(Serialize, JsonSchema)]
pub struct Summary {
    /// The plan's last line, as the text output prints it.
    pub text: String,
    /// Whether apply would write anything.
    pub changes: bool,
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub orphan: usize,
    pub unmanaged: usize,
    pub no_op: usize,
    /// Device twins read.
    pub devices: u64,
    /// IoT Edge devices among them.
    pub edge_devices: u64,
    /// Devices whose effective manifest changes.
    pub devices_changed: u64,
    /// Devices that move to other deployments with the same manifest.
    pub devices_restacked: u64,
}

/// One deployment's action.
#[derive(Serialize, JsonSchema)]
pub struct ActionOutput<'a> {
    /// The deployment's name (an unmanaged configuration's id).
    pub name: &'a str,
    pub action: ActionKind,
    /// `standard`, `layered` or `device management`.
    pub kind: &'static str,
    pub priority: Priority,
    /// The hub configurations it starts from (several after an interrupted replace).
    pub before: Vec<&'a DeploymentId>,
    /// The configuration id it ends as; null when deleted.
    pub after: Option<&'a DeploymentId>,
    /// Mutable fields that change (`priority`, `targetCondition`, `labels.<key>`,
    /// `metrics.<name>`), values redacted; null where the field is absent.
    pub field_changes: Vec<FieldChangeOutput<'a>>,
    /// For a replace: what the content change means for a device.
    pub content_changes: Vec<ChangeOutput<'a>>,
}

#[derive(Serialize, JsonSchema)]
pub struct FieldChangeOutput<'a> {
    pub field: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The part's own fields, and `text`: the line the text output shows for it.
// Flattened, so a field added to the part (a warning's code, say) appears in the output
// and in the schema by itself.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{T}Output")]
pub struct WithText<'a, T: std::fmt::Display + JsonSchema> {
    #[serde(flatten)]
    pub part: &'a T,
    pub text: String,
}

impl<'a, T: std::fmt::Display + JsonSchema> WithText<'a, T> {
    pub fn of(part: &'a T) -> Self {
        WithText { part, text: part.to_string() }
    }
}

/// A change a device sees.
pub type ChangeOutput<'a> = WithText<'a, Change>;

/// A warning: its check's fields (`check` names it), the devices it concerns (`devices`,
/// `samples`), and its text.
pub type WarningOutput<'a> = WithText<'a, Warning>;

#[derive(Serialize, JsonSchema)]
pub struct CohortOutput<'a> {
    pub count: u64,
    /// Up to 5 device ids, smallest first.
    pub samples: &'a [String],
    pub stack_before: &'a StackIds,
    pub stack_after: &'a StackIds,
    /// Empty when only the stack changes.
    pub changes: Vec<ChangeOutput<'a>>,
    /// What the devices run today, from their `$edgeAgent` twins, in groups of devices that
    /// run the same modules, largest first. Present only where the deployments cannot tell:
    /// devices no standard deployment reaches today that get one, and devices that get a
    /// deployment without modules.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub running_before: &'a [Running],
}

impl<'a> CohortOutput<'a> {
    pub fn of(c: &'a Cohort) -> Self {
        CohortOutput { changes: c.changes.iter().map(ChangeOutput::of).collect(), ..CohortOutput::of_unchanged(c) }
    }

    /// All but the changes, which are left empty.
    pub(crate) fn of_unchanged(c: &'a Cohort) -> Self {
        CohortOutput {
            count: c.count,
            samples: &c.samples,
            stack_before: &c.stack_before,
            stack_after: &c.stack_after,
            changes: Vec::new(),
            running_before: &c.running_before,
        }
    }
}

/// `explain --format json`.
#[derive(Serialize, JsonSchema)]
#[schemars(title = "fleetform explain --format json", rename = "Explanation")]
pub struct ExplainOutput<'a> {
    pub format_version: u32,
    pub device: &'a str,
    pub state: State,
    pub is_edge: bool,
    /// The twin values the target conditions read, by dotted path; null where the twin
    /// has no such property.
    pub reads: &'a BTreeMap<String, Option<Value>>,
    /// Every deployment, with whether it targets the device.
    pub deployments: &'a [Candidate],
    /// The deployments applied to the device, in order, and the matching ones skipped.
    /// Held as JSON because it is redacted as JSON (like `manifest`); its shape is
    /// [`StackShape`].
    #[schemars(with = "StackShape")]
    pub stack: Value,
    /// The merged manifest with the provenance of every part, redacted.
    #[schemars(with = "ManifestView")]
    pub manifest: Value,
    /// This device's findings.
    pub checks: Vec<CheckOutput<'a>>,
}

/// What `stack` holds: [`crate::merge::Stack`]'s JSON with each skip's reason as text.
/// Only the schema is built from it; the value is the redacted stack itself.
#[derive(JsonSchema)]
#[schemars(rename = "Stack")]
#[allow(dead_code)]
pub struct StackShape {
    /// The standard deployment applied; null when none is.
    standard: Option<DeploymentId>,
    /// Layered deployments in the order applied: the last wins where two write a path.
    layered: Vec<DeploymentId>,
    /// Every other matching deployment, by id.
    skipped: Vec<SkippedShape>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct SkippedShape {
    #[serde(flatten)]
    skipped: Skipped,
    /// The reason as the text output says it.
    reason_text: String,
}

#[derive(Serialize, JsonSchema)]
pub struct CheckOutput<'a> {
    pub check: &'a Check,
    pub text: String,
}

/// The JSON Schema (draft 2020-12) of [`PlanOutput`], as `schema/plan.schema.json` holds it.
pub fn plan_schema() -> Value {
    output_schema::<PlanOutput<'static>>()
}

/// The JSON Schema (draft 2020-12) of [`ExplainOutput`].
pub fn explain_schema() -> Value {
    output_schema::<ExplainOutput<'static>>()
}

/// The schema of what serializing `T` writes (not of what deserializing accepts): fields
/// left out when empty are optional, and types serialized through another (`Etag` as a
/// string, `Priority` as a number) are described as that one.
fn output_schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().for_serialize().into_generator();
    generator.into_root_schema_for::<T>().to_value()
}
