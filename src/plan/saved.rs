//! Saved plans (`plan --out FILE`): exactly what apply will do, and what it was computed
//! from, so that apply can carry it out and refuse it once the hub or the repository has
//! moved on. Secrets are left out: contents are stored redacted, with the content hash
//! the resolved (secret-bearing) content must still have at apply time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compute::Plan;
use super::steps::Step;
use crate::hub::wire::Configuration;
use crate::manifest::{LABEL_HASH, LABEL_NAME};

pub const SAVED_KIND: &str = "fleetform-plan";
pub const SAVED_VERSION: u32 = 1;

/// One declared deployment as the plan rendered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedConfiguration {
    pub name: String,
    pub id: String,
    /// `fleetform-hash`: SHA-256 of the resolved content (first 16 hex digits).
    pub hash: String,
    /// The configuration with every sensitive value masked.
    pub configuration: Configuration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    /// When the plan was made (UTC, RFC 3339).
    pub created: String,
    /// The git commit the deployment files came from, when they are in a repository.
    pub source_commit: Option<String>,
    /// The hub as the user named it, for messages.
    pub hub: String,
    /// The hub's stable identity ([`crate::hub::Hub::identity`]): what apply compares.
    /// Missing in plans saved before it existed; apply refuses those.
    #[serde(default)]
    pub hub_id: Option<String>,
    pub steps: Vec<Step>,
    pub configurations: Vec<SavedConfiguration>,
    /// Every managed configuration on the hub when planned: id → etag. Apply refuses the
    /// plan when this no longer matches.
    pub hub_etags: BTreeMap<String, Option<String>>,
    pub summary: String,
    /// Devices each deployment (by id) should be applied to after apply (for `--wait`).
    #[serde(default)]
    pub expected_applied: BTreeMap<String, u64>,
    /// The deployment paths the plan was made from, as given; `apply PLANFILE` re-renders
    /// these when no paths follow the plan file.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Whether the plan deletes undeclared managed deployments. Apply re-derives the plan
    /// with this setting, so a delete added by hand to a plan made without `--prune` is not
    /// a step of the re-derived plan and is refused.
    #[serde(default)]
    pub prune: bool,
}

impl SavedPlan {
    pub fn new(plan: &Plan, source_commit: Option<String>, summary: String) -> Self {
        let configurations = plan
            .declared
            .iter()
            .map(|r| SavedConfiguration {
                name: r.configuration.labels.get(LABEL_NAME).cloned().unwrap_or_default(),
                id: r.configuration.id.clone(),
                hash: r.configuration.labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                configuration: plan.redactor.configuration(&r.configuration),
            })
            .collect();
        let hub_etags = plan
            .current
            .iter()
            .filter(|c| c.labels.contains_key(LABEL_NAME) && c.labels.contains_key(LABEL_HASH))
            .map(|c| (c.id.clone(), c.etag.clone()))
            .collect();
        SavedPlan {
            kind: SAVED_KIND.to_string(),
            format_version: SAVED_VERSION,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source_commit,
            hub: plan.hub.clone(),
            hub_id: Some(plan.hub_id.clone()),
            prune: plan.count(crate::plan::ActionKind::Delete) > 0,
            steps: plan.steps.clone(),
            configurations,
            hub_etags,
            summary,
            expected_applied: plan.expected_applied.clone(),
            paths: Vec::new(),
        }
    }
}
