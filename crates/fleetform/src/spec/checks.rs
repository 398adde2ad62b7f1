//! Every rule that weighs one part of a deployment against another, or one deployment
//! against the workspace: unique names, references between twins and modules, what a
//! schema version or a deployment kind allows, the hub's counts and sizes, and the grammar
//! of target conditions, metric queries and routes (each error placed on the exact
//! character inside the KDL string).
//!
//! The decoder ([`super::decode`]) only reads nodes. It calls the rules here that decide
//! whether a part is kept (a second module of one name, a feature the schema lacks) at the
//! moment it reads that part, so that diagnostics stay in file order; the rest run once a
//! deployment, or the whole workspace, is decoded.

use std::collections::BTreeMap;

use super::diag::{Code, Problem};
use super::model::*;
use super::rules::{MAX_METRICS, MAX_MODULES, SYSTEM_MODULES};
use crate::query::{self, QueryError};

pub(super) fn check_workspace(deployments: &[Deployment], problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<&str, &Deployment> = BTreeMap::new();
    for d in deployments {
        if let Some(first) = seen.get(d.name.0.as_str()) {
            problems.push(
                Problem::new(
                    Code::Duplicate,
                    &d.origin.file,
                    d.origin.span,
                    format!("deployment \"{}\" is declared twice", d.name),
                    "second declaration",
                )
                .with_help(format!(
                    "first declared at {}; deployment names are unique across all files",
                    first.origin.location()
                )),
            );
        } else {
            seen.insert(&d.name.0, d);
        }
        check_twin_sizes(d, problems);
    }
}

/// The queries and routes of one deployment, checked from its parts whether or not the
/// deployment itself could be built: a bad priority must not hide a broken target.
pub(super) fn check_queries(
    target: Option<&QueryText>,
    metrics: &[Metric],
    routes: &BTreeMap<String, Route>,
    problems: &mut Vec<Problem>,
) {
    if let Some(t) = target {
        check_target(t, problems);
        check_self_refs(t, false, problems);
    }
    for m in metrics {
        check_metric(&m.query, problems);
        check_self_refs(&m.query, true, problems);
    }
    for r in routes.values() {
        check_route(&r.text, problems);
    }
}

/// A part of a deployment whose name is unique within it.
pub(super) trait Declared {
    /// The node's name in a message: "module", "route", "registry".
    const WHAT: &'static str;
    fn name(&self) -> &str;
    fn origin(&self) -> &Origin;
    /// What to do about a second declaration of the same name as `first`.
    fn twice_help(first: &Self) -> String {
        format!("first declared at {}", first.origin().location())
    }
}

/// The accessors every [`Declared`] part has under the same field names.
macro_rules! declared {
    ($ty:ty, $what:literal $(, $help:item)?) => {
        impl Declared for $ty {
            const WHAT: &'static str = $what;
            fn name(&self) -> &str {
                &self.name
            }
            fn origin(&self) -> &Origin {
                &self.origin
            }
            $($help)?
        }
    };
}

declared!(Module, "module");
declared!(Route, "route");
declared!(
    Registry,
    "registry",
    fn twice_help(_: &Self) -> String {
        "keep one".into()
    }
);

/// A second declaration of a name already in `declared`; the first one stays.
pub(super) fn declared_twice<T: Declared>(declared: &BTreeMap<String, T>, item: &T) -> Option<Problem> {
    let first = declared.get(item.name())?;
    let at = item.origin();
    Some(
        Problem::new(
            Code::Duplicate,
            &at.file,
            at.span,
            format!("{} \"{}\" is declared twice", T::WHAT, item.name()),
            "second declaration",
        )
        .with_help(T::twice_help(first)),
    )
}

/// Whether one more metric named `name` may join `metrics`: names are unique and the hub
/// takes at most [`MAX_METRICS`]. `name_at` is the metric's name, `node_at` its node name.
pub(super) fn metric_fits(
    metrics: &[Metric],
    name: &str,
    name_at: &Origin,
    node_at: miette::SourceSpan,
) -> Option<Problem> {
    if metrics.iter().any(|m| m.name == name) {
        return Some(
            Problem::new(
                Code::Duplicate,
                &name_at.file,
                name_at.span,
                format!("metric \"{name}\" is declared twice"),
                "second declaration",
            )
            .with_help("give each metric its own name"),
        );
    }
    if metrics.len() == MAX_METRICS {
        return Some(
            Problem::new(
                Code::TooMany,
                &name_at.file,
                node_at,
                format!("more than {MAX_METRICS} metrics"),
                "one too many",
            )
            .with_help(format!("the hub allows at most {MAX_METRICS} custom metrics per deployment")),
        );
    }
    None
}

/// The hub's limit on modules per deployment, reported once, at the first module over it.
/// `count` counts every `module` node so far, valid or not.
pub(super) fn module_count(count: usize, at: &Origin) -> Option<Problem> {
    (count == MAX_MODULES + 1).then(|| {
        Problem::new(Code::TooMany, &at.file, at.span, format!("more than {MAX_MODULES} modules"), "module 51")
            .with_help(format!(
                "the hub allows at most {MAX_MODULES} modules per deployment; split it into layered deployments"
            ))
    })
}

/// A custom module named like one of the runtime's own; the help depends on the kind,
/// since only a standard deployment may set the system modules (in `runtime`).
pub(super) fn system_module(kind: DeploymentKind, name: &str, at: &Origin) -> Option<Problem> {
    if !SYSTEM_MODULES.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        return None;
    }
    let (code, help) = match kind {
        DeploymentKind::Layered => (
            Code::NotInLayered,
            "layered deployments can't change system modules; set edgeAgent and edgeHub in the standard deployment's `runtime`",
        ),
        DeploymentKind::Standard => {
            (Code::InvalidName, "system modules are set in `runtime { edge-agent …; edge-hub … }`")
        }
    };
    Some(
        Problem::new(code, &at.file, at.span, format!("\"{name}\" is a system module"), "system module")
            .with_help(help),
    )
}

/// A runtime feature that exists only from some schema version of the agent or the hub on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SchemaGate {
    /// `runtime { integrity … }`: edgeAgent schema 1.3.
    AgentIntegrity,
    /// `edge-hub { integrity … }`: edgeHub schema 1.3.
    HubIntegrity,
    /// `store-and-forward max-size-bytes=`: edgeHub reads `storeLimits` from schema 1.2 on;
    /// an older hub would silently store without a limit.
    StoreLimits,
    /// `edge-hub { mqtt-broker … }`: edgeHub schema 1.2.
    MqttBroker,
}

impl SchemaGate {
    /// The problem when `schema`, the version in force, lacks the feature at `at`.
    pub(super) fn check(self, schema: &str, at: &Origin) -> Option<Problem> {
        let before_1_2 = matches!(schema, "1.0" | "1.1");
        let (lacking, message, label, help) = match self {
            SchemaGate::AgentIntegrity => (
                schema != "1.3",
                format!("integrity needs edgeAgent schema 1.3 (this runtime has {schema})"),
                "needs schema 1.3",
                "set `runtime schema=\"1.3\"`",
            ),
            SchemaGate::HubIntegrity => (
                schema != "1.3",
                format!("edge-hub integrity needs edgeHub schema 1.3 (this edge-hub has {schema})"),
                "needs schema 1.3",
                "set `edge-hub … schema=\"1.3\"`",
            ),
            SchemaGate::StoreLimits => (
                before_1_2,
                format!(
                    "store-and-forward max-size-bytes needs edgeHub schema 1.2 or later (this edge-hub has {schema})"
                ),
                "needs schema 1.2+",
                "set `edge-hub … schema=\"1.2\"`, or drop max-size-bytes",
            ),
            SchemaGate::MqttBroker => (
                before_1_2,
                format!("mqtt-broker needs edgeHub schema 1.2 or later (this edge-hub has {schema})"),
                "needs schema 1.2+",
                "set `edge-hub … schema=\"1.2\"`",
            ),
        };
        lacking.then(|| Problem::new(Code::OutOfRange, &at.file, at.span, message, label).with_help(help))
    }
}

/// The parts of one decoded deployment against each other: twin settings against the
/// modules they name and against each other, routes against the edge hub's schema.
pub(super) fn check_deployment_parts(
    kind: DeploymentKind,
    modules: &BTreeMap<String, Module>,
    twins: &[TwinSetting],
    runtime: Option<&Runtime>,
    routes: &BTreeMap<String, Route>,
    problems: &mut Vec<Problem>,
) {
    check_twins(kind, modules, twins, problems);
    check_routes_schema(runtime, routes, problems);
}

/// A standard deployment sets twins only of its own modules (a layered one may set any
/// module's, as the standard one under it declares them); no two settings of one module may
/// write the same or nested paths.
fn check_twins(
    kind: DeploymentKind,
    modules: &BTreeMap<String, Module>,
    twins: &[TwinSetting],
    problems: &mut Vec<Problem>,
) {
    for (i, t) in twins.iter().enumerate() {
        let at = &t.origin;
        if kind == DeploymentKind::Standard && !modules.contains_key(&t.module) {
            problems.push(
                Problem::new(
                    Code::UnknownNode,
                    &at.file,
                    at.span,
                    format!("twin settings for module \"{}\", which this deployment does not declare", t.module),
                    "unknown module",
                )
                .with_help("declare the module here, or set its twin from a layered deployment"),
            );
        }
        for earlier in &twins[..i] {
            if earlier.module != t.module {
                continue;
            }
            let overlap = earlier.path.is_empty()
                || t.path.is_empty()
                || earlier.path.starts_with(&t.path)
                || t.path.starts_with(&earlier.path);
            if overlap {
                let first = earlier.origin.location();
                problems.push(Problem::new(Code::Duplicate, &at.file, at.span, format!("twin settings for \"{}\" overlap", t.module), "overlaps an earlier twin node").with_help(format!("the earlier one is at {first}; merge them into one node or use paths that don't contain each other")));
            }
        }
    }
}

/// edgeHub schema 1.0 has no route priority or time to live.
fn check_routes_schema(runtime: Option<&Runtime>, routes: &BTreeMap<String, Route>, problems: &mut Vec<Problem>) {
    let Some(rt) = runtime else { return };
    if rt.hub_schema != "1.0" {
        return;
    }
    for r in routes.values() {
        if r.priority.is_some() || r.ttl.is_some() {
            problems.push(
                Problem::new(
                    Code::OutOfRange,
                    &r.origin.file,
                    r.origin.span,
                    format!("route \"{}\" has a priority or ttl, which edgeHub schema 1.0 does not support", r.name),
                    "needs schema 1.1 or later",
                )
                .with_help("set `edge-hub … schema=\"1.2\"` or drop priority= and ttl="),
            );
        }
    }
}

/// Each twin's desired properties as this deployment renders them must fit the hub's
/// 32 KB, counted by the hub's own rule. (Plan warns again for the merged stack on each
/// device, where several deployments add up.)
fn check_twin_sizes(d: &Deployment, problems: &mut Vec<Problem>) {
    use super::limits::{TWIN_DESIRED_LIMIT, hub_twin_size};
    for (twin, doc) in crate::manifest::desired_documents(d) {
        let bytes = hub_twin_size(&doc);
        if bytes <= TWIN_DESIRED_LIMIT {
            continue;
        }
        let message = format!(
            "deployment \"{}\" writes {bytes} bytes of desired properties into `{twin}`; the hub allows {TWIN_DESIRED_LIMIT}",
            d.name
        );
        let problem = match twin.as_str() {
            "$edgeAgent" => {
                // The agent's twin holds every module's settings: point at the biggest.
                let biggest = doc
                    .get("modules")
                    .and_then(|m| m.as_object())
                    .and_then(|m| m.iter().map(|(k, v)| (k, k.len() + hub_twin_size(v))).max_by_key(|&(_, n)| n));
                match biggest.and_then(|(name, n)| d.modules.get(name.as_str()).map(|m| (m, n))) {
                    Some((m, n)) => Problem::new(Code::TooMany, &m.origin.file, m.origin.span, message, format!("largest module: {n} bytes")),
                    None => Problem::new(Code::TooMany, &d.origin.file, d.origin.span, message, "this deployment"),
                }
                .with_help("module settings (create-options, env) are all stored in $edgeAgent's twin; shorten them, or move modules into a layered deployment of their own")
            }
            "$edgeHub" => {
                let origin = d.runtime.as_ref().map_or(&d.origin, |r| &r.origin);
                Problem::new(Code::TooMany, &origin.file, origin.span, message, "routes and settings of $edgeHub")
                    .with_help("shorten the routes, or split them across layered deployments")
            }
            module => {
                let origin = d.twins.iter().find(|t| t.module == module).map_or(&d.origin, |t| &t.origin);
                // The node's name, not its whole (large) body, carries the label.
                let span = if origin.file.text.get(origin.span.offset()..).is_some_and(|t| t.starts_with("twin")) {
                    miette::SourceSpan::new(origin.span.offset().into(), "twin".len())
                } else {
                    origin.span
                };
                Problem::new(Code::TooMany, &origin.file, span, message, format!("{bytes} bytes by the hub's size rule"))
                    .with_help("the hub counts each key's UTF-8 bytes plus each value (string characters, 8 per number, 4 per boolean); keep large data out of the twin, or split it across layered deployments")
            }
        };
        problems.push(problem);
    }
}

fn query_problem(q: &QueryText, err: &QueryError, what: &str) -> Problem {
    Problem::new(
        Code::InvalidQuery,
        &q.origin.file,
        q.span_of(err.offset, err.len.max(1)),
        format!("{what}: {}", err.message()),
        "here",
    )
    .with_help(err.help().unwrap_or_else(|| {
        "conditions compare paths with values, e.g. tags.location.floor = 3 AND tags.roomtype IN ['lab', 'office']"
            .to_string()
    }))
}

/// What a newcomer most likely meant by a path a target condition may not read: a bare
/// word is a path in the query language, so `= conference` reads a property named
/// `conference`; `tag.x` is one letter off `tags.x`.
fn forbidden_path_hint(path: &str) -> Option<String> {
    let (first, rest) = path.split_once('.').map_or((path, None), |(f, r)| (f, Some(r)));
    match rest {
        None => Some(format!(
            "a bare word is a property path; to compare with the text, quote it: '{path}' (or use tags.{path}, properties.reported.{path} to read a property)"
        )),
        // `properties.desired.x` is spelt right and read from the wrong place: the general help says so.
        Some(_) if first.eq_ignore_ascii_case("properties") || first.eq_ignore_ascii_case("tags") => None,
        Some(rest) => crate::suggest::did_you_mean(first, ["tags", "properties"]).map(|near| {
            let rest = if near == "properties" && !rest.to_ascii_lowercase().starts_with("reported") {
                format!("reported.{rest}")
            } else {
                rest.to_string()
            };
            format!(
                "did you mean `{near}.{rest}`? target conditions may only use tags, properties.reported and deviceId"
            )
        }),
    }
}

fn check_target(q: &QueryText, problems: &mut Vec<Problem>) {
    check_condition(q, "target condition", problems);
}

/// A condition in the target grammar, named in messages as `what`: a wave's condition
/// is checked like a target (it becomes part of one on the hub) but is not the target,
/// and a reader must be sent to the right line of the rollout.
pub(super) fn check_condition(q: &QueryText, what: &str, problems: &mut Vec<Problem>) {
    if let Some(err) = query::check_query_length(&q.text) {
        problems.push(query_problem(q, &err, what));
        return;
    }
    match query::parse_condition(&q.text) {
        Ok(cond) => {
            for err in query::check_target_condition(&cond) {
                let mut p = query_problem(q, &err, what);
                if let query::QueryErrorKind::ForbiddenPath(path) = &err.kind
                    && let Some(hint) = forbidden_path_hint(path)
                {
                    p = p.with_help(hint);
                }
                problems.push(p);
            }
        }
        Err(err) => problems.push(query_problem(q, &err, what)),
    }
}

fn check_metric(q: &QueryText, problems: &mut Vec<Problem>) {
    if let Some(err) = query::check_query_length(&q.text) {
        problems.push(query_problem(q, &err, "metric query"));
        return;
    }
    if let Err(err) = query::parse_query(&q.text) {
        problems.push(query_problem(q, &err, "metric query"));
    }
}

fn check_route(q: &QueryText, problems: &mut Vec<Problem>) {
    if let Err(err) = crate::route::parse_route(&q.text) {
        let mut p = Problem::new(
            Code::InvalidRoute,
            &q.origin.file,
            q.span_of(err.offset, err.len.max(1)),
            format!("route: {}", err.message),
            "here",
        );
        p.help = err.help.clone();
        // `$upstrem` and friends: the one `$` sink there is.
        let end = (err.offset + err.len.max(1)).min(q.text.len());
        let word = q.text.get(err.offset..end).unwrap_or_default().trim();
        if word.starts_with('$')
            && let Some(near) = crate::suggest::did_you_mean(word, ["$upstream"])
        {
            p.help = Some(
                format!("did you mean `{near}`? {}", p.help.as_deref().unwrap_or_default()).trim_end().to_string(),
            );
        }
        problems.push(p);
    }
}

/// `$self` (schema/language.md "Target conditions and metric queries"): written
/// `configurations.[[$self]]`, in metric queries only, and filled in by render with the
/// deployment's id. Anything close to it is almost surely meant to be it, and would
/// otherwise read a configuration that never exists, so a metric that counts 0 forever.
pub(super) fn check_self_refs(q: &QueryText, in_metric: bool, problems: &mut Vec<Problem>) {
    const SELF: &str = "$self";
    let text = q.text.as_str();
    let mut bracketed = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("[[").map(|i| from + i) {
        let Some(close) = text[open + 2..].find("]]").map(|i| open + 2 + i) else { break };
        bracketed.push((open, close + 2));
        let inner = &text[open + 2..close];
        let span = q.span_of(open, close + 2 - open);
        let before = text[..open].trim_end();
        let after_configurations = before.len() >= "configurations.".len()
            && before[before.len() - "configurations.".len()..].eq_ignore_ascii_case("configurations.");
        if inner == SELF {
            if !in_metric {
                problems.push(self_outside_metric(q, span));
            } else if !after_configurations {
                problems.push(
                    Problem::new(Code::InvalidQuery, &q.origin.file, span, "`[[$self]]` names this deployment's configuration", "not after `configurations.`")
                        .with_help("write `configurations.[[$self]].status = 'Applied'`: $self is a configuration id, so it stands only after `configurations.`"),
                );
            }
        } else if near_self(inner) && (after_configurations || inner.starts_with('$')) {
            problems.push(
                Problem::new(Code::InvalidQuery, &q.origin.file, span, format!("`[[{inner}]]` is not a deployment reference"), "did you mean `[[$self]]`?")
                    .with_help("write `configurations.[[$self]]` for this deployment's own id; fleetform fills it in when it renders the deployment"),
            );
        }
        from = close + 2;
    }
    // `$self` outside `[[ ]]`: the query language reads `configurations.$self` as a
    // property named `$self`, which no twin has.
    for (at, word) in dollar_words(text) {
        if bracketed.iter().any(|&(a, b)| at >= a && at < b) || !(word == SELF || near_self(word)) {
            continue;
        }
        let span = q.span_of(at, word.len());
        if !in_metric {
            problems.push(self_outside_metric(q, span));
        } else {
            problems.push(
                Problem::new(
                    Code::InvalidQuery,
                    &q.origin.file,
                    span,
                    format!("`{word}` outside `[[ ]]` reads a property of that name"),
                    "write `[[$self]]`",
                )
                .with_help("write `configurations.[[$self]].status = 'Applied'`"),
            );
        }
    }
}

/// Whether `word` is a misspelling or another case of `$self` (not `$self` itself).
fn near_self(word: &str) -> bool {
    word != "$self"
        && (word.eq_ignore_ascii_case("self")
            || word.eq_ignore_ascii_case("$self")
            || (word.starts_with('$') && crate::suggest::did_you_mean(word, ["$self"]).is_some()))
}

/// Each `$word` of a query with its byte offset (inside strings too: a reference there is
/// as wrong as anywhere).
fn dollar_words(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c != '$' {
            continue;
        }
        let end =
            text[i + 1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |n| i + 1 + n);
        if end > i + 1 {
            out.push((i, &text[i..end]));
        }
    }
    out
}

fn self_outside_metric(q: &QueryText, span: miette::SourceSpan) -> Problem {
    Problem::new(Code::InvalidQuery, &q.origin.file, span, "`$self` may only appear in metric queries", "in a target condition")
        .with_help("a target condition selects devices by their twins; `configurations.[[$self]]` is for metrics that count this deployment's devices")
}
