//! Property tests: printing round-trips, evaluation is total, and condition sets agree with
//! single conditions.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// Names likely to collide with real twin keys, keywords and case variants, plus names that
/// need `[[ ]]`.
const NAMES: [&str; 16] = [
    "tags",
    "Tags",
    "properties",
    "reported",
    "location",
    "building",
    "$version",
    "deviceId",
    "a.b",
    "my-config",
    "and",
    "null",
    "x y",
    "é",
    "IS_DEFINED",
    "10",
];

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&NAMES[..]).prop_map(str::to_string),
        1 => "[a-zA-Z_$][a-zA-Z0-9_$]{0,5}",
        // Anything but ']' (which cannot be written inside [[ ]]).
        1 => "[^\\]]{1,6}",
    ]
}

fn arb_path() -> impl Strategy<Value = Path> {
    prop::collection::vec(arb_name(), 1..4).prop_map(|names| Path::from_names(&names))
}

fn arb_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        (-1000i32..1000).prop_map(|n| Literal::Number(f64::from(n))),
        prop::num::f64::NORMAL.prop_map(Literal::Number),
        Just(Literal::Number(-0.0)),
        prop_oneof![Just("20".to_string()), Just("prod".to_string()), Just("it's".to_string()), "\\PC{0,6}"]
            .prop_map(Literal::String),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        2 => arb_literal().prop_map(|l| Expr::new(ExprKind::Literal(l))),
        3 => arb_path().prop_map(|p| Expr::new(ExprKind::Path(p))),
        1 => prop::collection::vec(arb_literal(), 0..3).prop_map(|l| Expr::new(ExprKind::Array(l))),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        let cmp = prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge]);
        let arith = prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div, ArithOp::Rem]);
        prop_oneof![
            inner.clone().prop_map(|e| Expr::new(ExprKind::Not(Box::new(e)))),
            inner.clone().prop_map(|e| Expr::new(ExprKind::Neg(Box::new(e)))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| Expr::new(ExprKind::And(v))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| Expr::new(ExprKind::Or(v))),
            (cmp, inner.clone(), inner.clone()).prop_map(|(op, a, b)| Expr::new(ExprKind::Compare(
                op,
                Box::new(a),
                Box::new(b)
            ))),
            (arith, inner.clone(), inner.clone()).prop_map(|(op, a, b)| Expr::new(ExprKind::Arith(
                op,
                Box::new(a),
                Box::new(b)
            ))),
            (inner.clone(), prop::collection::vec(arb_literal(), 0..4), any::<bool>())
                .prop_map(|(e, list, negated)| Expr::new(ExprKind::In { operand: Box::new(e), list, negated })),
            (prop::sample::select(&Function::ALL[..]), prop::collection::vec(inner, 2)).prop_map(|(f, mut args)| {
                args.truncate(f.arity());
                Expr::new(ExprKind::Call(f, args))
            }),
        ]
    })
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        1 => Just(Condition::all()),
        12 => arb_expr().prop_map(Condition::from_expr),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-50i64..50).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![Just("20".to_string()), Just("prod".to_string()), "\\PC{0,4}"].prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_name(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_query() -> impl Strategy<Value = Query> {
    let alias = prop::option::of("[a-z][a-zA-Z0-9]{0,4}".prop_filter("reserved", |a| !super::ast::is_reserved(a)));
    let plain = (
        prop::option::of(0u64..50),
        prop::option::of(prop::collection::vec((arb_expr(), alias.clone()), 1..3)),
        any::<bool>(),
        prop::option::of(arb_expr()),
    )
        .prop_map(|(top, items, modules, filter)| Query {
            top,
            selection: match items {
                None => Selection::All,
                Some(items) => Selection::Items(
                    items
                        .into_iter()
                        .map(|(e, alias)| SelectItem { expr: SelectExpr::Expr(e), alias, span: Span::default() })
                        .collect(),
                ),
            },
            from: if modules { Collection::Modules } else { Collection::Devices },
            filter,
            group_by: Vec::new(),
            source: String::new(),
        });
    let grouped = (arb_path(), alias, prop::option::of(arb_expr())).prop_map(|(path, alias, filter)| Query {
        top: None,
        selection: Selection::Items(vec![
            SelectItem {
                expr: SelectExpr::Expr(Expr::new(ExprKind::Path(path.clone()))),
                alias,
                span: Span::default(),
            },
            SelectItem { expr: SelectExpr::Count, alias: Some("n".into()), span: Span::default() },
        ]),
        from: Collection::Devices,
        filter,
        group_by: vec![path],
        source: String::new(),
    });
    prop_oneof![plain, grouped]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn condition_print_parse_round_trip(c in arb_condition()) {
        let text = c.to_string();
        let reparsed = parse_condition(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e} {:?}", e.help())))?;
        prop_assert_eq!(&reparsed, &c, "text: {}", text);
        // Canonical text is a fixed point.
        prop_assert_eq!(reparsed.to_string(), text);
    }

    #[test]
    fn query_print_parse_round_trip(q in arb_query()) {
        let text = q.to_string();
        let reparsed = parse_query(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&reparsed, &q, "text: {}", text);
    }

    #[test]
    fn evaluation_is_total_and_sets_agree(
        conds in prop::collection::vec(arb_condition(), 1..6),
        twins in prop::collection::vec(arb_json(), 1..4),
    ) {
        let mut set = ConditionSet::new();
        let compiled: Vec<CompiledCondition> = conds.iter().map(CompiledCondition::new).collect();
        for c in &conds {
            set.add(c);
        }
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        for twin in &twins {
            set.evaluate_all(twin, &mut scratch, &mut out);
            for (i, c) in compiled.iter().enumerate() {
                let single = c.evaluate(twin);
                prop_assert_eq!(out[i], single, "condition {}", conds[i]);
                // The AND of the explained clauses is the condition's value.
                let clauses = c.explain(twin);
                let folded = clauses.iter().fold(Tri::True, |acc, o| match (acc, o.value) {
                    (Tri::False, _) | (_, Tri::False) => Tri::False,
                    (Tri::Undefined, _) | (_, Tri::Undefined) => Tri::Undefined,
                    _ => Tri::True,
                });
                prop_assert_eq!(folded, single);
            }
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
        if let Ok(c) = parse_condition(&s) {
            let _ = CompiledCondition::new(&c).evaluate(&Value::Null);
            prop_assert!(parse_condition(&c.to_string()).is_ok());
        }
        if let Err(e) = parse_query(&s) {
            prop_assert!(e.offset + e.len <= s.len());
            prop_assert!(s.is_char_boundary(e.offset));
        }
    }

    #[test]
    fn queries_run_on_arbitrary_twins(q in arb_query(), twins in prop::collection::vec(arb_json(), 0..4)) {
        let rows = q.run(&twins);
        if let Some(n) = q.top {
            prop_assert!(rows.len() as u64 <= n);
        }
        if q.group_by.is_empty() && !q.is_aggregate() {
            prop_assert!(rows.len() <= twins.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The plan's fast path (read only the conditions' paths from the twin's JSON, then
    /// evaluate once per distinct combination of values) against plain evaluation of each
    /// condition on the whole twin. Every twin is seen twice, once with a member no
    /// condition reads, so that most of them hit the memo.
    #[test]
    fn projected_memo_agrees_with_plain_evaluation(
        conds in prop::collection::vec(arb_condition(), 1..8),
        twins in prop::collection::vec(arb_json(), 1..6),
        unread in arb_json(),
    ) {
        let mut set = ConditionSet::new();
        let compiled: Vec<CompiledCondition> = conds.iter().map(CompiledCondition::new).collect();
        for c in &conds {
            set.add(c);
        }
        let projector = TwinProjector::new(&set.read_paths());
        let mut memo = ConditionMemo::new(&set);
        let variants = twins.iter().cloned().chain(twins.iter().map(|t| match t {
            Value::Object(m) => {
                let mut m = m.clone();
                m.insert("\u{1F4A4}unread".into(), unread.clone());
                Value::Object(m)
            }
            other => other.clone(),
        }));
        for twin in variants {
            let projected = projector.parse(twin.to_string().as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{twin}: {e}")))?;
            prop_assert_eq!(is_edge_device(&projected), is_edge_device(&twin));
            let combination = memo.classify(&projected);
            let outcomes = memo.outcomes(combination);
            prop_assert_eq!(outcomes.len(), compiled.len());
            for (i, c) in compiled.iter().enumerate() {
                prop_assert_eq!(outcomes[i], c.evaluate(&twin), "condition {} on {}", conds[i], twin);
            }
        }
        prop_assert!(memo.combinations() <= twins.len() * 2);
    }
}
