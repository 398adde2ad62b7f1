//! The shape `fleetform explain --format json` prints for one device: its stack, and its
//! merged manifest organised the way a reader asks about it (modules, routes, twins), each
//! part carrying where it came from.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::checks::{Check, device_checks};
use super::{EDGE_AGENT, EDGE_HUB, EffectiveManifest, MergeDeployment, PathOrigin, Stack, route_text};

/// One part of the manifest with its provenance.
///
/// JSON: `value` (the merged JSON of this part), `from` (the deployment that supplied it,
/// or null when several supplied pieces and none the whole: see `details`), `overrode`
/// (deployments whose writes it replaced, oldest first), `details` (finer-grained
/// provenance below this part: a layered deployment patching one field of a module, a
/// runtime setting, a removed key).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub value: Value,
    pub from: Option<String>,
    pub overrode: Vec<String>,
    pub details: Vec<PathOrigin>,
}

/// A route with its provenance. JSON: `route` (the route text, null if the value has
/// none), then the [`Entry`] fields (`value` is the string or the `{route, priority,
/// timeToLiveSecs}` object as deployed).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RouteEntry {
    pub route: Option<String>,
    #[serde(flatten)]
    pub entry: Entry,
}

/// A module twin's merged desired properties. JSON: `desired`, `provenance` (every
/// written path, dotted, with `from`/`overrode`/`removed`).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TwinView {
    pub desired: Value,
    pub provenance: Vec<PathOrigin>,
}

/// The merged manifest as explain shows it.
///
/// JSON: `no_standard`, `unmanaged`, `runtime` (Entry or null), `system_modules`
/// (name → Entry), `modules` (name → Entry), `routes` (name → RouteEntry),
/// `store_and_forward` (Entry or null), `twins` (module → TwinView), `removed` (modules,
/// routes and settings a later deployment deleted: `{twin, path, from, overrode}`).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ManifestView {
    pub no_standard: bool,
    pub unmanaged: bool,
    pub runtime: Option<Entry>,
    pub system_modules: BTreeMap<String, Entry>,
    pub modules: BTreeMap<String, Entry>,
    pub routes: BTreeMap<String, RouteEntry>,
    pub store_and_forward: Option<Entry>,
    pub twins: BTreeMap<String, TwinView>,
    pub removed: Vec<RemovedPart>,
}

/// A part of `$edgeAgent` or `$edgeHub` a deployment deleted.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RemovedPart {
    pub twin: String,
    #[serde(flatten)]
    pub origin: PathOrigin,
}

/// One device's explanation. JSON: `stack` (`standard`, `layered`, `skipped`),
/// `manifest` ([`ManifestView`]), `checks` (this device's findings).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainView {
    pub stack: Stack,
    pub manifest: ManifestView,
    pub checks: Vec<Check>,
}

impl ExplainView {
    /// The explain document as JSON.
    pub fn to_json(&self) -> Value {
        // Every map here is keyed by strings, so conversion cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn entry(manifest: &EffectiveManifest, twin: &str, path: &[&str], value: &Value) -> Entry {
    let prov = &manifest.provenance;
    let covering = prov.origin(twin, path).map(|(_, o)| o);
    let details: Vec<PathOrigin> = prov
        .under(twin, path)
        .filter(|(k, _)| k.depth() > path.len())
        .map(|(k, o)| PathOrigin { path: k.dotted(), origin: o.clone() })
        .collect();
    let (from, overrode) = match covering {
        Some(o) => (Some(o.from.clone()), o.overrode.clone()),
        None => {
            // No single write supplied the whole part: name a supplier only if every
            // piece came from the same deployment.
            let mut froms = details.iter().filter(|d| !d.origin.removed).map(|d| d.origin.from.as_str());
            let first = froms.next();
            let from = first.filter(|f| froms.all(|x| x == *f)).map(str::to_owned);
            let mut overrode: Vec<String> = Vec::new();
            for d in &details {
                for id in &d.origin.overrode {
                    if !overrode.contains(id) {
                        overrode.push(id.clone());
                    }
                }
            }
            (from, overrode)
        }
    };
    Entry { value: value.clone(), from, overrode, details }
}

fn entries(
    manifest: &EffectiveManifest,
    twin: &str,
    section: &str,
    map: Option<&serde_json::Map<String, Value>>,
) -> BTreeMap<String, Entry> {
    map.into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), entry(manifest, twin, &[section, name], value)))
        .collect()
}

/// Builds the explain view of one device from its stack and manifest.
pub fn explain(deployments: &[MergeDeployment], stack: &Stack, manifest: &EffectiveManifest) -> ExplainView {
    let part = |twin: &str, doc: &Value, key: &str| doc.get(key).map(|v| entry(manifest, twin, &[key], v));
    let routes = manifest
        .routes()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            (
                name.clone(),
                RouteEntry {
                    route: route_text(value).map(str::to_owned),
                    entry: entry(manifest, EDGE_HUB, &["routes", name], value),
                },
            )
        })
        .collect();
    let twins = manifest
        .twins
        .iter()
        .map(|(name, desired)| {
            (name.clone(), TwinView { desired: desired.clone(), provenance: manifest.provenance.path_origins(name) })
        })
        .collect();
    let removed = [EDGE_AGENT, EDGE_HUB]
        .into_iter()
        .flat_map(|twin| {
            manifest
                .provenance
                .path_origins(twin)
                .into_iter()
                .filter(|p| p.origin.removed)
                .map(move |origin| RemovedPart { twin: twin.to_owned(), origin })
        })
        .collect();
    ExplainView {
        stack: stack.clone(),
        manifest: ManifestView {
            no_standard: manifest.no_standard,
            unmanaged: manifest.unmanaged,
            runtime: part(EDGE_AGENT, &manifest.edge_agent, "runtime"),
            system_modules: entries(manifest, EDGE_AGENT, "systemModules", manifest.system_modules()),
            modules: entries(manifest, EDGE_AGENT, "modules", manifest.modules()),
            routes,
            store_and_forward: part(EDGE_HUB, &manifest.edge_hub, "storeAndForwardConfiguration"),
            twins,
            removed,
        },
        checks: device_checks(deployments, stack, manifest),
    }
}
