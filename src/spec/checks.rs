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
