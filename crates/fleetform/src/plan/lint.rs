//! Checks of the declared queries against the fleet they will run on: what the grammar
//! accepts but the twins contradict. A condition that compares a number-valued tag with a
//! string, reads a misspelt tag, or matches no device is valid KDL and a valid query, and
//! a plan that only reads "0 devices change" hides all three.
//!
//! The statistics are a fold over device twins ([`FleetStats::observe`] takes one
//! `&Twin`, [`FleetStats::merge`] joins two folds), so they can run inside any pass over
//! the fleet: [`Lint`] rides on the impact's pass (which also counts whom each target
//! matches), and reads the fleet again only to suggest names for a path no twin has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::manifest::Rendered;
use crate::merge::{Check, DeviceSample, JsonType, QueryKind, TypeCount, Warning};
use crate::model::{FleetRead, Projection, ReadError, ReadPaths, Twin, TwinPath};
use crate::query::{
    Condition, ConditionId, ConditionMemo, ConditionRoot, ConditionSet, Expr, ExprKind, Literal, Path, eq_ignore_case,
    is_edge_device,
};

/// How many distinct property names are kept per object a watched path passes through:
/// enough to suggest a near name, bounded however many distinct keys a fleet's tags have.
const MAX_KEYS: usize = 256;

/// One query of one deployment.
#[derive(Debug)]
struct Query {
    deployment: String,
    /// Only target conditions count as targeting (a metric matching nothing is normal
    /// before rollout).
    kind: QueryKind,
    metric: Option<String>,
    wave: Option<String>,
    /// Comparisons of a path with a literal: (watched path index, comparison text, type).
    comparisons: Vec<(usize, String, JsonType)>,
    /// Every path the query reads (watched path indexes).
    reads: Vec<usize>,
}

/// What the declared queries read, collected once before the fold.
#[derive(Debug, Default)]
pub struct Watches {
    queries: Vec<Query>,
    /// Distinct paths, as segments (matched ignoring case, as the hub does).
    paths: Vec<Vec<String>>,
}

impl Watches {
    fn path_index(&mut self, path: &Path) -> usize {
        let segments: Vec<String> = path.segments.iter().map(|s| s.name.clone()).collect();
        let same =
            |p: &Vec<String>| p.len() == segments.len() && p.iter().zip(&segments).all(|(a, b)| eq_ignore_case(a, b));
        if let Some(i) = self.paths.iter().position(same) {
            return i;
        }
        self.paths.push(segments);
        self.paths.len() - 1
    }

    /// One query: `name` is the metric's or the wave's.
    fn add(&mut self, deployment: &str, kind: QueryKind, name: Option<&str>, condition: Condition) {
        let mut comparisons = Vec::new();
        let mut reads = Vec::new();
        if let ConditionRoot::Expr(e) = &condition.root {
            let mut found = Vec::new();
            comparisons_in(e, &mut found);
            for (path, cmp, ty) in found {
                let i = self.path_index(path);
                comparisons.push((i, condition.text_of(cmp), ty));
            }
            let mut paths = Vec::new();
            crate::query::visit_paths(e, &mut |p| paths.push(p.clone()));
            for p in &paths {
                // Only what a twin carries under `tags` and `properties` can be looked for:
                // `deviceId` and the hub's own fields are always there.
                if p.segments.len() > 1 {
                    let i = self.path_index(p);
                    if !reads.contains(&i) {
                        reads.push(i);
                    }
                }
            }
        }
        self.queries.push(Query {
            deployment: deployment.to_owned(),
            kind,
            metric: name.filter(|_| kind == QueryKind::Metric).map(str::to_owned),
            wave: name.filter(|_| kind == QueryKind::Wave).map(str::to_owned),
            comparisons,
            reads,
        });
    }

    /// The target condition, every `FROM devices` metric and every rollout wave's condition
    /// of each declared deployment.
    /// Text that does not parse is left to `validate`, which reports it with its position.
    pub fn of(declared: &[Rendered]) -> Watches {
        let mut w = Watches::default();
        for r in declared {
            let c = &r.configuration;
            let id = c.id.to_string();
            if let Ok(condition) = crate::query::parse_condition(&c.target_condition) {
                w.add(&id, QueryKind::Target, None, condition);
            }
            for wave in r.rollout.iter().flat_map(|r| &r.waves) {
                if let Some(text) = &wave.condition
                    && let Ok(condition) = crate::query::parse_condition(&text.text)
                {
                    w.add(&id, QueryKind::Wave, Some(&wave.name), condition);
                }
            }
            for (name, text) in c.metrics.iter().flat_map(|m| &m.queries) {
                // Module-twin metrics read module twins, which this fold does not see.
                if let Ok(q) = crate::query::parse_query(text)
                    && !q.from_modules()
                {
                    w.add(&id, QueryKind::Metric, Some(name), q.where_condition());
                }
            }
        }
        w
    }
}

fn literal_type(l: &Literal) -> Option<JsonType> {
    match l {
        // `= null` is about presence, not type.
        Literal::Null => None,
        Literal::Bool(_) => Some(JsonType::Boolean),
        Literal::Number(_) => Some(JsonType::Number),
        Literal::String(_) => Some(JsonType::String),
    }
}

fn literal_of(e: &Expr) -> Option<JsonType> {
    match &e.kind {
        ExprKind::Literal(l) => literal_type(l),
        ExprKind::Neg(x) => literal_of(x),
        _ => None,
    }
}

/// Every `path <op> literal` (either side) and `path IN [literals of one type]` in `e`.
fn comparisons_in<'e>(e: &'e Expr, out: &mut Vec<(&'e Path, &'e Expr, JsonType)>) {
    match &e.kind {
        ExprKind::Compare(_, a, b) => match (&a.kind, &b.kind) {
            (ExprKind::Path(p), _) => {
                if let Some(t) = literal_of(b) {
                    out.push((p, e, t));
                }
            }
            (_, ExprKind::Path(p)) => {
                if let Some(t) = literal_of(a) {
                    out.push((p, e, t));
                }
            }
            _ => {}
        },
        ExprKind::In { operand, list, .. } => {
            if let ExprKind::Path(p) = &operand.kind {
                let types: BTreeSet<JsonType> = list.iter().filter_map(literal_type).collect();
                if let (1, Some(t)) = (types.len(), types.first()) {
                    out.push((p, e, *t));
                }
            }
        }
        ExprKind::Not(x) | ExprKind::Neg(x) => comparisons_in(x, out),
        ExprKind::And(items) | ExprKind::Or(items) | ExprKind::Call(_, items) => {
            for i in items {
                comparisons_in(i, out);
            }
        }
        ExprKind::Arith(_, a, b) => {
            comparisons_in(a, out);
            comparisons_in(b, out);
        }
        ExprKind::Literal(_) | ExprKind::Array(_) | ExprKind::Path(_) => {}
    }
}

/// What the IoT Edge twins hold at one watched path.
#[derive(Clone, Debug, Default)]
struct PathStats {
    /// Twins holding the path, by [`JsonType::ALL`] index, with samples.
    by_type: [DeviceSample; 6],
    /// For each segment, the property names seen in the object it is looked up in (as
    /// long as the path up to it exists), for "did you mean".
    keys: Vec<BTreeSet<String>>,
}

fn child<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    map.get(name).or_else(|| map.iter().find(|(k, _)| eq_ignore_case(k, name)).map(|(_, v)| v))
}

/// The fold: statistics of the watched paths over the IoT Edge twins (the only ones a
/// deployment targets). Which devices a target matches is the impact's pass's to say: it
/// evaluates every target once per combination of values already.
#[derive(Clone, Debug, Default)]
pub struct FleetStats {
    edge_twins: u64,
    paths: Vec<PathStats>,
    /// Whether [`PathStats::keys`] are collected. The plan's own pass reads a projection
    /// that holds only the watched paths, so the names it could collect there are not the
    /// fleet's: "did you mean" needs a second, wider read ([`Lint::finish`]) that collects
    /// them afresh. Collecting them in the first pass too was 5% of a 100k-device plan.
    with_keys: bool,
}

impl FleetStats {
    pub fn new(watches: &Watches) -> FleetStats {
        FleetStats { with_keys: true, ..FleetStats::counting(watches) }
    }

    /// Statistics by type only, without the names seen beside each segment.
    fn counting(watches: &Watches) -> FleetStats {
        FleetStats {
            with_keys: false,
            edge_twins: 0,
            paths: watches
                .paths
                .iter()
                .map(|p| PathStats { by_type: Default::default(), keys: vec![BTreeSet::new(); p.len()] })
                .collect(),
        }
    }

    pub fn observe(&mut self, watches: &Watches, twin: &Twin) {
        if !twin.is_edge() {
            return;
        }
        self.edge_twins += 1;
        for (path, stats) in watches.paths.iter().zip(&mut self.paths) {
            let mut at = twin.value();
            let mut found = true;
            for (depth, segment) in path.iter().enumerate() {
                let Value::Object(map) = at else {
                    found = false;
                    break;
                };
                if self.with_keys {
                    let keys = &mut stats.keys[depth];
                    for k in map.keys() {
                        if keys.len() >= MAX_KEYS {
                            break;
                        }
                        if !keys.contains(k) {
                            keys.insert(k.clone());
                        }
                    }
                }
                match child(map, segment) {
                    Some(v) => at = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if found {
                let ty = JsonType::of(at);
                if let Some(i) = JsonType::ALL.iter().position(|t| *t == ty) {
                    stats.by_type[i].add(twin.device_id());
                }
            }
        }
    }

    pub fn merge(&mut self, other: &FleetStats) {
        self.edge_twins += other.edge_twins;
        for (a, b) in self.paths.iter_mut().zip(&other.paths) {
            for (x, y) in a.by_type.iter_mut().zip(&b.by_type) {
                x.merge(y);
            }
            for (x, y) in a.keys.iter_mut().zip(&b.keys) {
                for k in y {
                    if x.len() >= MAX_KEYS {
                        break;
                    }
                    x.insert(k.clone());
                }
            }
        }
    }

    /// The findings; `targeted` counts the IoT Edge devices each deployment's (by id)
    /// target matches. A fleet without IoT Edge twins tells nothing about paths or targets.
    pub fn warnings(&self, watches: &Watches, targeted: &BTreeMap<String, u64>) -> Vec<Warning> {
        let mut out = Vec::new();
        if self.edge_twins == 0 {
            return out;
        }
        for query in &watches.queries {
            if query.kind == QueryKind::Target && targeted.get(&query.deployment).copied().unwrap_or(0) == 0 {
                out.push(Warning::new(
                    Check::TargetsNoDevice { deployment: query.deployment.clone() },
                    &DeviceSample::default(),
                ));
            }
            let mut reported_missing = BTreeSet::new();
            for &i in &query.reads {
                let stats = &self.paths[i];
                if stats.by_type.iter().any(|s| s.count > 0) || !reported_missing.insert(i) {
                    continue;
                }
                out.push(Warning::new(
                    Check::PathOnNoTwin {
                        deployment: query.deployment.clone(),
                        query: query.kind,
                        metric: query.metric.clone(),
                        wave: query.wave.clone(),
                        path: watches.paths[i].join("."),
                        did_you_mean: suggestion(&watches.paths[i], stats),
                    },
                    &DeviceSample::default(),
                ));
            }
            for (i, comparison, literal) in &query.comparisons {
                if let Some(w) = type_mismatch(query, &watches.paths[*i], comparison, *literal, &self.paths[*i]) {
                    out.push(w);
                }
            }
        }
        // In code order, then by deployment: the order every output lists them in.
        out.sort_by(|a, b| a.check.cmp(&b.check));
        out
    }
}

/// The warning when `literal` is not the type most twins hold at the path; its devices are
/// the twins holding another type, which the comparison can never match.
fn type_mismatch(
    query: &Query,
    path: &[String],
    comparison: &str,
    literal: JsonType,
    stats: &PathStats,
) -> Option<Warning> {
    let mut fleet_types: Vec<TypeCount> = JsonType::ALL
        .iter()
        .zip(&stats.by_type)
        .filter(|(_, s)| s.count > 0)
        .map(|(t, s)| TypeCount { json_type: *t, twins: s.count })
        .collect();
    // Most first; equal counts in the fixed type order, so the output never depends on the fleet's order.
    fleet_types.sort_by(|a, b| b.twins.cmp(&a.twins).then(a.json_type.cmp(&b.json_type)));
    let most = fleet_types.first()?;
    if most.json_type == literal {
        return None;
    }
    let mut missed = DeviceSample::default();
    for (t, s) in JsonType::ALL.iter().zip(&stats.by_type) {
        if *t != literal {
            missed.merge(s);
        }
    }
    Some(Warning::new(
        Check::LiteralTypeMismatch {
            deployment: query.deployment.clone(),
            query: query.kind,
            metric: query.metric.clone(),
            wave: query.wave.clone(),
            path: path.join("."),
            comparison: comparison.to_owned(),
            literal_type: literal,
            fleet_types,
        },
        &missed,
    ))
}

/// The path with its first segment no twin has replaced by the closest name seen there.
fn suggestion(path: &[String], stats: &PathStats) -> Option<String> {
    for (depth, segment) in path.iter().enumerate() {
        let keys = &stats.keys[depth];
        if keys.iter().any(|k| eq_ignore_case(k, segment)) {
            continue;
        }
        let near = crate::suggest::did_you_mean(segment, keys.iter().map(String::as_str))?;
        let mut fixed = path.to_vec();
        fixed[depth] = near.to_owned();
        return Some(fixed.join("."));
    }
    None
}

/// The fleet-aware checks of one plan: fed by the impact's pass over the fleet
/// ([`Lint::paths`], [`Lint::observe`]), then [`Lint::finish`]ed.
pub struct Lint {
    watches: Watches,
    total: Mutex<FleetStats>,
}

impl Lint {
    pub fn new(declared: &[Rendered]) -> Lint {
        let watches = Watches::of(declared);
        let total = Mutex::new(FleetStats::counting(&watches));
        Lint { watches, total }
    }

    /// The paths the watched queries read, for the pass's projection.
    pub fn paths(&self) -> Vec<TwinPath> {
        self.watches.paths.iter().map(|p| TwinPath::from_segments(p.clone())).collect()
    }

    pub fn observe(&self, batch: &[Twin]) {
        if !self.watches.queries.is_empty() {
            fold_into(&self.watches, &self.total, batch, false);
        }
    }

    /// The warnings. The pass read only the watched paths, so the names beside a path no
    /// twin has were not seen: only then is the fleet read again, whole, for "did you mean".
    /// `targeted`: [`super::impact::Impact::targeted`] of the same pass.
    pub fn finish(self, fleet: &dyn FleetRead, targeted: &BTreeMap<String, u64>) -> Result<Vec<Warning>, ReadError> {
        let mut stats = self.total.into_inner().unwrap_or_else(|e| e.into_inner());
        if stats.edge_twins > 0 && stats.paths.iter().any(|p| p.by_type.iter().all(|s| s.count == 0)) {
            let keys = Mutex::new(FleetStats::new(&self.watches));
            fleet.device_batches(Projection::Targeting, &|batch| {
                fold_into(&self.watches, &keys, &batch, true);
                Ok(())
            })?;
            let keys = keys.into_inner().unwrap_or_else(|e| e.into_inner());
            for (kept, seen) in stats.paths.iter_mut().zip(keys.paths) {
                kept.keys = seen.keys;
            }
        }
        Ok(stats.warnings(&self.watches, targeted))
    }
}

/// The fleet checks alone, without a plan (`validate --hub`): the same [`Lint`] over one
/// pass that reads what the declared targets and watched queries read, counting the IoT
/// Edge devices each declared target matches as the plan's pass does (a condition that is
/// empty or does not parse matches nothing, as on the hub).
pub fn check_fleet(declared: &[Rendered], fleet: &dyn FleetRead) -> Result<Vec<Warning>, ReadError> {
    let lint = Lint::new(declared);
    let mut set = ConditionSet::new();
    let targets: Vec<Option<ConditionId>> = declared
        .iter()
        .map(|r| {
            let text = &r.configuration.target_condition;
            if text.trim().is_empty() {
                return None;
            }
            crate::query::parse_condition(text).ok().map(|c| set.add(&c))
        })
        .collect();
    let paths = ReadPaths::new(set.read_paths().paths().iter().cloned().chain(lint.paths()));
    let matched = Mutex::new(vec![0u64; declared.len()]);
    fleet.device_batches(Projection::Paths(paths), &|batch| {
        lint.observe(&batch);
        let mut memo = ConditionMemo::new(&set);
        let mut here = vec![0u64; declared.len()];
        for twin in &batch {
            if !is_edge_device(twin.value()) {
                continue;
            }
            let combination = memo.classify(twin.value());
            let outcomes = memo.outcomes(combination);
            for (n, c) in here.iter_mut().zip(&targets) {
                if c.is_some_and(|c| outcomes.get(c).is_some_and(|t| t.is_true())) {
                    *n += 1;
                }
            }
        }
        let mut total = matched.lock().unwrap_or_else(|e| e.into_inner());
        for (t, h) in total.iter_mut().zip(here) {
            *t += h;
        }
        Ok(())
    })?;
    let matched = matched.into_inner().unwrap_or_else(|e| e.into_inner());
    let targeted: BTreeMap<String, u64> =
        declared.iter().zip(matched).map(|(r, n)| (r.configuration.id.to_string(), n)).collect();
    lint.finish(fleet, &targeted)
}

/// Folds `batch` into `total`, one lock per batch.
fn fold_into(watches: &Watches, total: &Mutex<FleetStats>, batch: &[Twin], with_keys: bool) {
    let mut part = FleetStats { with_keys, ..FleetStats::counting(watches) };
    for twin in batch {
        part.observe(watches, twin);
    }
    // A poisoned lock means another batch panicked; its partial sums are still sums.
    total.lock().unwrap_or_else(|e| e.into_inner()).merge(&part);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::CompiledCondition;
    use serde_json::json;

    fn twin(id: &str, tags: Value) -> Twin {
        Twin::from_value(json!({"deviceId": id, "capabilities": {"iotEdge": true}, "tags": tags})).unwrap()
    }

    /// The watches of one deployment's target, and the target itself.
    struct Case {
        w: Watches,
        target: CompiledCondition,
    }

    fn watches(condition: &str) -> Case {
        let mut w = Watches::default();
        let parsed = crate::query::parse_condition(condition).unwrap();
        let target = CompiledCondition::new(&parsed);
        w.add("dep-1", QueryKind::Target, None, parsed);
        Case { w, target }
    }

    fn run(case: &Case, twins: &[Twin]) -> Vec<Warning> {
        let w = &case.w;
        // What the impact's pass counts, here from the plain evaluator.
        let targeted = twins.iter().filter(|t| t.is_edge() && case.target.matches(t.value())).count() as u64;
        let targeted = BTreeMap::from([("dep-1".to_string(), targeted)]);
        // Two folds merged, as batches from two threads are.
        let (a, b) = twins.split_at(twins.len() / 2);
        let mut left = FleetStats::new(w);
        a.iter().for_each(|t| left.observe(w, t));
        let mut right = FleetStats::new(w);
        b.iter().for_each(|t| right.observe(w, t));
        left.merge(&right);
        left.warnings(w, &targeted)
    }

    #[test]
    fn a_string_literal_against_number_valued_twins_is_a_mismatch_with_counts() {
        let mut twins: Vec<Twin> = (0..4).map(|i| twin(&format!("n{i}"), json!({"floor": 2}))).collect();
        twins.extend((0..2).map(|i| twin(&format!("s{i}"), json!({"floor": "2"}))));
        let w = watches("tags.floor = '2'");
        let found = run(&w, &twins);
        assert_eq!(found.len(), 1, "{found:?}");
        let Check::LiteralTypeMismatch { literal_type, fleet_types, comparison, .. } = &found[0].check else {
            panic!("{found:?}")
        };
        assert_eq!(*literal_type, JsonType::String);
        assert_eq!(comparison, "tags.floor = '2'");
        assert_eq!(
            fleet_types,
            &vec![
                TypeCount { json_type: JsonType::Number, twins: 4 },
                TypeCount { json_type: JsonType::String, twins: 2 }
            ]
        );
        // The devices are the number-valued ones: those the condition silently leaves out.
        assert_eq!(found[0].devices, 4);
        assert_eq!(found[0].samples, vec!["n0", "n1", "n2", "n3"]);
        // Matching the majority type is no finding.
        assert!(run(&watches("tags.floor = 2"), &twins).is_empty());
    }

    #[test]
    fn a_misspelt_tag_is_on_no_twin_and_the_deployment_targets_nothing() {
        let twins = vec![twin("a", json!({"environment": "prod"})), twin("b", json!({"environment": "dev"}))];
        let found = run(&watches("tags.enviroment = 'prod'"), &twins);
        let checks: Vec<&Check> = found.iter().map(|w| &w.check).collect();
        assert_eq!(
            checks,
            vec![
                &Check::PathOnNoTwin {
                    deployment: "dep-1".into(),
                    query: QueryKind::Target,
                    metric: None,
                    wave: None,
                    path: "tags.enviroment".into(),
                    did_you_mean: Some("tags.environment".into()),
                },
                &Check::TargetsNoDevice { deployment: "dep-1".into() },
            ]
        );
        // A misspelt root is suggested too.
        let found = run(&watches("tag.environment = 'prod'"), &twins);
        assert!(found.iter().any(|w| matches!(&w.check,
            Check::PathOnNoTwin { did_you_mean: Some(p), .. } if p == "tags.environment")));
    }

    #[test]
    fn property_names_match_ignoring_case_and_non_edge_twins_are_not_counted() {
        let leaf = Twin::from_value(json!({"deviceId": "leaf", "tags": {"Floor": "2"}})).unwrap();
        let twins = vec![twin("a", json!({"Floor": 2})), leaf];
        let found = run(&watches("tags.floor = 2"), &twins);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_fleet_without_edge_twins_gives_no_findings() {
        assert!(run(&watches("tags.x = 'y'"), &[]).is_empty());
    }
}
