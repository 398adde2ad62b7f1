//! Checks that look across a whole deployment or workspace, after parsing: unique names,
//! and the grammar of target conditions, metric queries and routes, each error placed on
//! the exact character inside the KDL string.

use std::collections::BTreeMap;

use super::diag::{Code, Problem};
use super::model::*;
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
        if let Some(t) = &d.target {
            check_target(t, problems);
        }
        for m in &d.metrics {
            check_metric(&m.query, problems);
        }
        for r in d.routes.values() {
            check_route(&r.text, problems);
        }
        check_twin_sizes(d, problems);
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

fn check_target(q: &QueryText, problems: &mut Vec<Problem>) {
    if let Some(err) = query::check_query_length(&q.text) {
        problems.push(query_problem(q, &err, "target condition"));
        return;
    }
    match query::parse_condition(&q.text) {
        Ok(cond) => {
            for err in query::check_target_condition(&cond) {
                problems.push(query_problem(q, &err, "target condition"));
            }
        }
        Err(err) => problems.push(query_problem(q, &err, "target condition")),
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
        problems.push(p);
    }
}
