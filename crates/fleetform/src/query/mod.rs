//! The IoT Hub query language: target conditions, metric queries and twin queries.
//!
//! ```
//! use fleetform::query::{parse_condition, CompiledCondition, targets_device};
//! use serde_json::json;
//!
//! let cond = parse_condition("tags.environment = 'prod' AND properties.reported.fw >= '2.0'")?;
//! let compiled = CompiledCondition::new(&cond);
//! let twin = json!({
//!     "deviceId": "d1",
//!     "capabilities": {"iotEdge": true},
//!     "tags": {"environment": "prod"},
//!     "properties": {"reported": {"fw": "2.1"}}
//! });
//! assert!(targets_device(&compiled, &twin));
//! # Ok::<(), fleetform::query::QueryError>(())
//! ```
//!
//! # Language
//! - Full queries: `SELECT [TOP n] * | <expr> [AS alias], ... FROM devices | devices.modules
//!   [WHERE <cond>] [GROUP BY <path>, ...]`, with the aggregates `COUNT()`, `AVG(x)`, `SUM(x)`,
//!   `MIN(x)`, `MAX(x)`. Conditions alone are target conditions; `*` alone targets every device.
//! - Literals: strings in `'...'` (and `"..."` in full queries; IoT Edge rejects double quotes
//!   in target conditions) with the escapes `\'`, `\"`, `\\`, `\uXXXX` and `''`, numbers (integer, fraction, exponent, `0x` hex,
//!   negative via `-`), `true`, `false`, `null`, arrays of constants `['a', 1]`.
//! - Operators, loosest first: `OR`, `AND`, `NOT`, comparisons (`= != <> < > <= >=`, `IN [..]`,
//!   `NIN [..]`), `+ -`, `* / %`, unary `-`. Comparison binds tighter than `NOT`, so
//!   `NOT a = 1` is `NOT (a = 1)`.
//! - Paths: `tags.location.building`, `properties.desired.$version`, and `[[...]]` for awkward
//!   segments (`configurations.[[my-config]].status`, `tags.[[a.b]]`).
//! - Functions: `IS_DEFINED`, `IS_NULL`, `IS_BOOL`, `IS_NUMBER`, `IS_STRING`, `IS_OBJECT`,
//!   `IS_ARRAY`, `IS_PRIMITIVE` (type tests; false on undefined, `IS_DEFINED` true on null),
//!   `STARTSWITH(x, 'p')`, `ENDSWITH(x, 's')` (case-sensitive; undefined unless both are strings).
//!   The type tests are the ones the public query-language reference lists; it names
//!   `IS_DEFINED` for twin queries and the others for routing queries.
//! - Keywords, function names and property names are case-insensitive (a lookup tries the exact
//!   key first, then a case-insensitive scan); string comparison is case-sensitive.
//!
//! # Semantics
//! - A missing property is *undefined*. Logic is three-valued: `NOT undefined` is undefined,
//!   `false AND undefined` is false, `true OR undefined` is true. A row matches only when the
//!   condition is exactly `true` ([`Tri::True`]).
//! - Values of different types are never equal (`1 = '1'` is false, `1 != '1'` is true);
//!   `< <= > >=` compare two numbers or two strings (ordinal), anything else is undefined.
//!   Comparisons involving objects or arrays are undefined. `IN` uses the same equality.
//! - Arithmetic works on numbers only; division by zero and overflow are undefined.
//!
//! # Performance
//! [`ConditionSet`] compiles many conditions against one trie of distinct paths; per twin each
//! path prefix is resolved at most once, lazily, into a reusable [`Scratch`], and evaluation
//! allocates nothing (`tests/query_cases.rs` checks this with a counting allocator).

mod ast;
mod compile;
mod error;
mod eval;
mod lexer;
mod memo;
mod on_hub;
mod parser;
pub(crate) mod project;
#[cfg(test)]
mod proptests;
mod run;

pub use ast::{
    Aggregate, ArithOp, CmpOp, Collection, Condition, ConditionRoot, Expr, ExprKind, Function, Literal, Path, Query,
    Segment, SelectExpr, SelectItem, Selection, Span,
};
pub use compile::{ClauseOutcome, CompiledCondition, ConditionId, ConditionSet, Resolved, Scratch, targets_device};
pub use error::{QueryError, QueryErrorKind};
pub use eval::{Tri, eq_ignore_case, is_edge_device};
pub use memo::{Combination, ConditionMemo};
pub use on_hub::{QueryOutput, QueryRunError, is_full_query, run_on_hub};
pub use parser::{MAX_DEPTH, parse_condition, parse_query};
pub use project::TwinProjector;

/// The longest query text, in characters, the hub accepts (target conditions and metrics).
pub const MAX_QUERY_CHARS: usize = 8192;

/// Checks the rules the hub applies to IoT Edge target conditions beyond grammar: at most
/// [`MAX_QUERY_CHARS`] characters, and only `tags.*`, `properties.reported.*` and `deviceId` may
/// be read. Returns every violation, each with a span into the condition text.
pub fn check_target_condition(condition: &Condition) -> Vec<QueryError> {
    let mut errors = Vec::new();
    let chars = condition.source.chars().count();
    if chars > MAX_QUERY_CHARS {
        // Point at the first character past the limit.
        let offset = condition.source.char_indices().nth(MAX_QUERY_CHARS).map_or(condition.source.len(), |(i, _)| i);
        errors.push(QueryError {
            offset,
            len: condition.source.len() - offset,
            kind: QueryErrorKind::TooLong { len: chars, max: MAX_QUERY_CHARS },
        });
    }
    if let ConditionRoot::Expr(e) = &condition.root {
        visit_paths(e, &mut |p| {
            if !target_path_allowed(p) {
                errors.push(QueryError {
                    offset: p.span.offset,
                    len: p.span.len,
                    kind: QueryErrorKind::ForbiddenPath(p.to_string()),
                });
            }
        });
    }
    errors
}

/// Checks a metric query's length against [`MAX_QUERY_CHARS`].
pub fn check_query_length(text: &str) -> Option<QueryError> {
    let chars = text.chars().count();
    (chars > MAX_QUERY_CHARS).then(|| {
        let offset = text.char_indices().nth(MAX_QUERY_CHARS).map_or(text.len(), |(i, _)| i);
        QueryError {
            offset,
            len: text.len() - offset,
            kind: QueryErrorKind::TooLong { len: chars, max: MAX_QUERY_CHARS },
        }
    })
}

fn target_path_allowed(p: &Path) -> bool {
    let seg = |i: usize| p.segments.get(i).map(|s| s.name.as_str());
    match (seg(0), seg(1)) {
        (Some(first), _) if eq_ignore_case(first, "tags") => true,
        (Some(first), Some(second)) if eq_ignore_case(first, "properties") => eq_ignore_case(second, "reported"),
        (Some(first), None) => eq_ignore_case(first, "deviceId"),
        _ => false,
    }
}

/// Calls `f` on every path in `e`, in source order.
pub fn visit_paths<'e>(e: &'e Expr, f: &mut dyn FnMut(&'e Path)) {
    match &e.kind {
        ExprKind::Path(p) => f(p),
        ExprKind::Literal(_) | ExprKind::Array(_) => {}
        ExprKind::Not(x) | ExprKind::Neg(x) => visit_paths(x, f),
        ExprKind::In { operand, .. } => visit_paths(operand, f),
        ExprKind::And(items) | ExprKind::Or(items) | ExprKind::Call(_, items) => {
            for i in items {
                visit_paths(i, f);
            }
        }
        ExprKind::Compare(_, a, b) | ExprKind::Arith(_, a, b) => {
            visit_paths(a, f);
            visit_paths(b, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_rules() {
        let c = parse_condition(
            "tags.a = 1 AND properties.reported.x = 2 AND deviceId = 'd' AND properties.desired.y = 3 \
             AND capabilities.iotEdge = true",
        )
        .unwrap();
        let errs = check_target_condition(&c);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].offset, 64);
        assert_eq!(errs[0].kind, QueryErrorKind::ForbiddenPath("properties.desired.y".into()));
        assert_eq!(errs[0].help().unwrap(), "target conditions may only use tags, properties.reported and deviceId");
        assert_eq!(errs[1].kind, QueryErrorKind::ForbiddenPath("capabilities.iotEdge".into()));
        assert!(check_target_condition(&parse_condition("*").unwrap()).is_empty());
        assert!(check_target_condition(&parse_condition("TAGS.x = 1 and DEVICEID = 'a'").unwrap()).is_empty());
        assert_eq!(check_target_condition(&parse_condition("deviceId.x = 1").unwrap()).len(), 1);
    }

    #[test]
    fn length_limit() {
        let long = format!("tags.a = '{}'", "x".repeat(9000));
        let errs = check_target_condition(&parse_condition(&long).unwrap());
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, 8192);
        assert!(check_query_length(&long).is_some());
        assert!(check_query_length("SELECT * FROM devices").is_none());
    }
}
