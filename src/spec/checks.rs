//! Checks that look across a whole deployment or workspace, after parsing.

use std::collections::BTreeMap;

use super::diag::{Code, Problem};
use super::model::*;
use super::rules::MAX_QUERY_LEN;

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
            check_query_text(t, "target condition", problems);
        }
        for m in &d.metrics {
            check_query_text(&m.query, "metric query", problems);
        }
    }
}

/// What can be checked without the grammar: length, double quotes, balanced quotes.
fn check_query_text(q: &QueryText, what: &str, problems: &mut Vec<Problem>) {
    let file = &q.origin.file;
    if q.text.len() > MAX_QUERY_LEN {
        problems.push(
            Problem::new(
                Code::InvalidQuery,
                file,
                q.origin.span,
                format!("{what} is {} characters long", q.text.len()),
                format!("at most {MAX_QUERY_LEN}"),
            )
            .with_help(
                "the hub accepts queries of at most 8192 characters; split the deployment or simplify the condition",
            ),
        );
        return;
    }
    if let Some(i) = q.text.find('"') {
        problems.push(
            Problem::new(Code::InvalidQuery, file, q.span_of(i, 1), format!("double quote in {what}"), "double quote")
                .with_help("double quotes are not allowed in target conditions; use single quotes"),
        );
        return;
    }
    let mut open: Option<usize> = None;
    let bytes = q.text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            match open {
                None => open = Some(i),
                // `''` inside a string is an escaped quote.
                Some(_) if bytes.get(i + 1) == Some(&b'\'') => i += 1,
                Some(_) => open = None,
            }
        }
        i += 1;
    }
    if let Some(start) = open {
        problems.push(
            Problem::new(
                Code::InvalidQuery,
                file,
                q.span_of(start, 1),
                format!("unclosed string in {what}"),
                "this quote is never closed",
            )
            .with_help("close the string with `'`; write `''` for a quote inside a string"),
        );
    }
}
