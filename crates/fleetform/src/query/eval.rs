//! Evaluation semantics: values, three-valued logic, property lookup, and the evaluator over
//! compiled nodes.
//!
//! Evaluation never allocates: values borrow from the twin or from the compiled literals, and
//! every operator produces a scalar.

use serde_json::Value;

use super::ast::{ArithOp, CmpOp, Function};

/// The outcome of a condition on one twin, in the hub's three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tri {
    /// The condition is exactly `true`: the row matches.
    True,
    /// The condition is `false`.
    False,
    /// The condition is undefined (a missing property, a comparison across types, or a
    /// non-boolean result). Never matches.
    Undefined,
}

impl Tri {
    /// True only for [`Tri::True`].
    pub fn is_true(self) -> bool {
        self == Tri::True
    }

    pub(crate) fn of(v: Val<'_>) -> Tri {
        match v {
            Val::Bool(true) => Tri::True,
            Val::Bool(false) => Tri::False,
            _ => Tri::Undefined,
        }
    }
}

impl Tri {
    /// `true`, `false` or `undefined`, as reports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tri::True => "true",
            Tri::False => "false",
            Tri::Undefined => "undefined",
        }
    }
}

impl std::fmt::Display for Tri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value during evaluation. Arrays and objects carry no payload: no twin-query operator looks
/// inside them, they only make comparisons undefined and type tests true.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    Undef,
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Array,
    Object,
}

impl<'a> Val<'a> {
    #[inline]
    pub(crate) fn of_json(v: Option<&'a Value>) -> Val<'a> {
        match v {
            None => Val::Undef,
            Some(Value::Null) => Val::Null,
            Some(Value::Bool(b)) => Val::Bool(*b),
            Some(Value::Number(n)) => n.as_f64().map_or(Val::Undef, Val::Num),
            Some(Value::String(s)) => Val::Str(s),
            Some(Value::Array(_)) => Val::Array,
            Some(Value::Object(_)) => Val::Object,
        }
    }

    /// The JSON form of a scalar result; `None` for undefined (the hub omits such fields).
    pub(crate) fn to_json(self) -> Option<Value> {
        match self {
            Val::Undef | Val::Array | Val::Object => None,
            Val::Null => Some(Value::Null),
            Val::Bool(b) => Some(Value::Bool(b)),
            Val::Num(n) => Some(number_json(n)),
            Val::Str(s) => Some(Value::String(s.to_string())),
        }
    }
}

/// Integers print as integers (`3`, not `3.0`), as the hub's JSON does.
pub(crate) fn number_json(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Property names compare ignoring case (the hub's rule); ASCII takes the fast path.
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// Looks up `key` in an object: the exact key first (one map lookup, the common case), then a
/// case-insensitive scan.
#[inline]
pub(crate) fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Object(map) = v else {
        return None;
    };
    if let Some(found) = map.get(key) {
        return Some(found);
    }
    map.iter().find(|(k, _)| eq_ignore_case(k, key)).map(|(_, v)| v)
}

/// Like [`resolve`], but also returns the last key as the twin spells it, which is what the
/// hub names a projected column after (`SELECT DeviceId` gives `deviceId`).
pub(crate) fn resolve_entry<'a>(twin: &'a Value, segments: &[Box<str>]) -> Option<(&'a str, &'a Value)> {
    let (leaf, parents) = segments.split_last()?;
    let mut cur = twin;
    for s in parents {
        cur = lookup(cur, s)?;
    }
    let Value::Object(map) = cur else {
        return None;
    };
    if let Some((k, v)) = map.get_key_value(&**leaf) {
        return Some((k.as_str(), v));
    }
    map.iter().find(|(k, _)| eq_ignore_case(k, leaf)).map(|(k, v)| (k.as_str(), v))
}

/// Resolves a whole path from the twin root.
pub(crate) fn resolve<'a>(twin: &'a Value, segments: &[Box<str>]) -> Option<&'a Value> {
    let mut cur = twin;
    for s in segments {
        cur = lookup(cur, s)?;
    }
    Some(cur)
}

/// True when the twin is an IoT Edge device (`capabilities.iotEdge == true`).
pub fn is_edge_device(twin: &Value) -> bool {
    lookup(twin, "capabilities").and_then(|c| lookup(c, "iotEdge")).and_then(Value::as_bool).unwrap_or(false)
}

/// Comparison with the hub's rules: undefined if either side is undefined or not primitive;
/// values of different types are never equal; ordering only between two numbers or two strings.
#[inline]
pub(crate) fn compare(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Val<'static> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Undef | Val::Array | Val::Object, _) | (_, Val::Undef | Val::Array | Val::Object) => {
            return Val::Undef;
        }
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(&y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => {
            return match op {
                CmpOp::Eq => Val::Bool(x == y),
                CmpOp::Ne => Val::Bool(x != y),
                _ => Val::Undef,
            };
        }
        (Val::Null, Val::Null) => {
            return match op {
                CmpOp::Eq => Val::Bool(true),
                CmpOp::Ne => Val::Bool(false),
                _ => Val::Undef,
            };
        }
        // Two primitives of different types.
        _ => {
            return match op {
                CmpOp::Eq => Val::Bool(false),
                CmpOp::Ne => Val::Bool(true),
                _ => Val::Undef,
            };
        }
    };
    let Some(ord) = ord else {
        return Val::Undef;
    };
    Val::Bool(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

/// Arithmetic on two numbers; anything else, division by zero and non-finite results are
/// undefined (JSON has no infinities).
#[inline]
pub(crate) fn arith(op: ArithOp, a: Val<'_>, b: Val<'_>) -> Val<'static> {
    let (Val::Num(x), Val::Num(y)) = (a, b) else {
        return Val::Undef;
    };
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return Val::Undef,
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    };
    if r.is_finite() { Val::Num(r) } else { Val::Undef }
}

/// A literal, pre-converted for evaluation.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<str>),
    /// An array constant used as a value (not as the list of IN).
    Array,
}

impl Lit {
    #[inline]
    pub(crate) fn val(&self) -> Val<'_> {
        match self {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Num(n) => Val::Num(*n),
            Lit::Str(s) => Val::Str(s),
            Lit::Array => Val::Array,
        }
    }
}

/// The list of an IN/NIN, built into a set once at compile time.
#[derive(Debug, Clone, Default)]
pub(crate) struct LitSet {
    /// Sorted, for binary search on long lists.
    pub strs: Box<[Box<str>]>,
    pub nums: Box<[f64]>,
    pub null: bool,
    pub t: bool,
    pub f: bool,
}

/// Below this many strings a linear scan beats binary search.
const LINEAR_SCAN_MAX: usize = 8;

impl LitSet {
    /// `IN`: undefined for undefined or non-primitive operands, else membership with the same
    /// typed equality as `=`.
    #[inline]
    pub(crate) fn contains(&self, v: Val<'_>) -> Val<'static> {
        Val::Bool(match v {
            Val::Undef | Val::Array | Val::Object => return Val::Undef,
            Val::Null => self.null,
            Val::Bool(true) => self.t,
            Val::Bool(false) => self.f,
            Val::Num(n) => self.nums.contains(&n),
            Val::Str(s) => {
                if self.strs.len() <= LINEAR_SCAN_MAX {
                    self.strs.iter().any(|x| &**x == s)
                } else {
                    self.strs.binary_search_by(|x| (**x).cmp(s)).is_ok()
                }
            }
        })
    }
}

/// A compiled expression. Paths are slot numbers resolved through an [`Env`].
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Lit(Lit),
    Path(u32),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `path op literal`, the shape of nearly every target-condition clause: no boxes to chase.
    PathCmp(CmpOp, u32, Lit),
    Arith(ArithOp, Box<Node>, Box<Node>),
    In(Box<Node>, LitSet, bool),
    Func(Function, Box<[Node]>),
}

/// Where path slots get their values.
pub(crate) trait Env<'a> {
    fn path(&self, slot: u32) -> Option<&'a Value>;
}

/// Evaluates `node`. Recursion depth is bounded by the parser's nesting limit.
pub(crate) fn eval<'a, E: Env<'a>>(node: &'a Node, env: &E) -> Val<'a> {
    match node {
        Node::Lit(l) => l.val(),
        Node::Path(slot) => Val::of_json(env.path(*slot)),
        Node::PathCmp(op, slot, lit) => compare(*op, Val::of_json(env.path(*slot)), lit.val()),
        Node::Cmp(op, a, b) => compare(*op, eval(a, env), eval(b, env)),
        Node::And(items) => {
            let mut undefined = false;
            for item in items.iter() {
                match eval(item, env) {
                    Val::Bool(false) => return Val::Bool(false),
                    Val::Bool(true) => {}
                    _ => undefined = true,
                }
            }
            if undefined { Val::Undef } else { Val::Bool(true) }
        }
        Node::Or(items) => {
            let mut undefined = false;
            for item in items.iter() {
                match eval(item, env) {
                    Val::Bool(true) => return Val::Bool(true),
                    Val::Bool(false) => {}
                    _ => undefined = true,
                }
            }
            if undefined { Val::Undef } else { Val::Bool(false) }
        }
        Node::Not(inner) => match eval(inner, env) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Undef,
        },
        Node::Neg(inner) => match eval(inner, env) {
            Val::Num(n) => Val::Num(-n),
            _ => Val::Undef,
        },
        Node::Arith(op, a, b) => arith(*op, eval(a, env), eval(b, env)),
        Node::In(operand, set, negated) => match set.contains(eval(operand, env)) {
            Val::Bool(b) => Val::Bool(b != *negated),
            other => other,
        },
        Node::Func(func, args) => call(*func, args, env),
    }
}

fn call<'a, E: Env<'a>>(func: Function, args: &'a [Node], env: &E) -> Val<'a> {
    let arg = |i: usize| args.get(i).map_or(Val::Undef, |n| eval(n, env));
    let v = arg(0);
    let b = match func {
        Function::IsDefined => v != Val::Undef,
        Function::IsNull => v == Val::Null,
        Function::IsBool => matches!(v, Val::Bool(_)),
        Function::IsNumber => matches!(v, Val::Num(_)),
        Function::IsString => matches!(v, Val::Str(_)),
        Function::IsObject => v == Val::Object,
        Function::IsArray => v == Val::Array,
        Function::IsPrimitive => {
            matches!(v, Val::Null | Val::Bool(_) | Val::Num(_) | Val::Str(_))
        }
        Function::StartsWith | Function::EndsWith => {
            let (Val::Str(s), Val::Str(affix)) = (v, arg(1)) else {
                return Val::Undef;
            };
            if func == Function::StartsWith { s.starts_with(affix) } else { s.ends_with(affix) }
        }
    };
    Val::Bool(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_prefers_exact_then_ignores_case() {
        let v = json!({"Env": 1, "env": 2, "Région": 3});
        assert_eq!(lookup(&v, "env"), Some(&json!(2)));
        assert_eq!(lookup(&v, "Env"), Some(&json!(1)));
        assert_eq!(lookup(&v, "ENV").and_then(Value::as_i64).map(|n| n == 1 || n == 2), Some(true));
        assert_eq!(lookup(&v, "RÉGION"), Some(&json!(3)));
        assert_eq!(lookup(&v, "missing"), None);
        assert_eq!(lookup(&json!([1]), "0"), None);
    }

    #[test]
    fn comparisons_follow_type_rules() {
        use CmpOp::*;
        assert_eq!(compare(Eq, Val::Num(1.0), Val::Str("1")), Val::Bool(false));
        assert_eq!(compare(Ne, Val::Num(1.0), Val::Str("1")), Val::Bool(true));
        assert_eq!(compare(Lt, Val::Num(1.0), Val::Str("1")), Val::Undef);
        assert_eq!(compare(Lt, Val::Str("10"), Val::Str("9")), Val::Bool(true));
        assert_eq!(compare(Eq, Val::Null, Val::Null), Val::Bool(true));
        assert_eq!(compare(Lt, Val::Null, Val::Null), Val::Undef);
        assert_eq!(compare(Eq, Val::Undef, Val::Undef), Val::Undef);
        assert_eq!(compare(Eq, Val::Object, Val::Object), Val::Undef);
        assert_eq!(compare(Ge, Val::Num(2.0), Val::Num(2.0)), Val::Bool(true));
        assert_eq!(compare(Lt, Val::Bool(false), Val::Bool(true)), Val::Undef);
    }

    #[test]
    fn arithmetic_edges() {
        assert_eq!(arith(ArithOp::Div, Val::Num(1.0), Val::Num(0.0)), Val::Undef);
        assert_eq!(arith(ArithOp::Rem, Val::Num(7.0), Val::Num(4.0)), Val::Num(3.0));
        assert_eq!(arith(ArithOp::Add, Val::Str("a"), Val::Num(1.0)), Val::Undef);
        assert_eq!(arith(ArithOp::Mul, Val::Num(1e308), Val::Num(10.0)), Val::Undef);
    }

    #[test]
    fn numbers_print_as_integers_when_whole() {
        assert_eq!(number_json(3.0), json!(3));
        assert_eq!(number_json(2.5), json!(2.5));
        assert_eq!(number_json(-0.0), json!(0));
    }

    #[test]
    fn edge_detection() {
        assert!(is_edge_device(&json!({"capabilities": {"iotEdge": true}})));
        assert!(is_edge_device(&json!({"Capabilities": {"IOTEDGE": true}})));
        assert!(!is_edge_device(&json!({"capabilities": {"iotEdge": "true"}})));
        assert!(!is_edge_device(&json!({})));
    }
}
