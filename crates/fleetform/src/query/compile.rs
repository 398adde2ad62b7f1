//! Compiling conditions once and evaluating them many times.
//!
//! [`CompiledCondition`] is the one-condition convenience. [`ConditionSet`] is the engine the
//! planner uses: many conditions share one trie of distinct property paths, and per twin each
//! trie node is resolved at most once, lazily, into a caller-owned [`Scratch`] buffer.

use std::cell::Cell;
use std::collections::HashMap;

use serde_json::Value;

use super::ast::{Condition, ConditionRoot, Expr, ExprKind, Literal, Path};
use super::eval::{Env, Lit, LitSet, Node, Tri, eval, is_edge_device, lookup, resolve};

/// Turns an expression into evaluator nodes; `slot` maps each path to its slot number.
pub(crate) fn compile_expr(e: &Expr, slot: &mut dyn FnMut(&Path) -> u32) -> Node {
    match &e.kind {
        ExprKind::Literal(l) => Node::Lit(lit(l)),
        ExprKind::Array(_) => Node::Lit(Lit::Array),
        ExprKind::Path(p) => Node::Path(slot(p)),
        ExprKind::Not(inner) => Node::Not(Box::new(compile_expr(inner, slot))),
        ExprKind::Neg(inner) => Node::Neg(Box::new(compile_expr(inner, slot))),
        ExprKind::And(items) => Node::And(items.iter().map(|i| compile_expr(i, slot)).collect()),
        ExprKind::Or(items) => Node::Or(items.iter().map(|i| compile_expr(i, slot)).collect()),
        ExprKind::Compare(op, l, r) => match (&l.kind, &r.kind) {
            (ExprKind::Path(p), ExprKind::Literal(v)) => Node::PathCmp(*op, slot(p), lit(v)),
            (ExprKind::Literal(v), ExprKind::Path(p)) => Node::PathCmp(op.flipped(), slot(p), lit(v)),
            _ => Node::Cmp(*op, Box::new(compile_expr(l, slot)), Box::new(compile_expr(r, slot))),
        },
        ExprKind::Arith(op, l, r) => Node::Arith(*op, Box::new(compile_expr(l, slot)), Box::new(compile_expr(r, slot))),
        ExprKind::In { operand, list, negated } => {
            Node::In(Box::new(compile_expr(operand, slot)), lit_set(list), *negated)
        }
        ExprKind::Call(f, args) => Node::Func(*f, args.iter().map(|a| compile_expr(a, slot)).collect()),
    }
}

fn lit(l: &Literal) -> Lit {
    match l {
        Literal::Null => Lit::Null,
        Literal::Bool(b) => Lit::Bool(*b),
        Literal::Number(n) => Lit::Num(*n),
        Literal::String(s) => Lit::Str(s.as_str().into()),
    }
}

fn lit_set(list: &[Literal]) -> LitSet {
    let mut strs: Vec<Box<str>> = Vec::new();
    let mut nums = Vec::new();
    let mut set = LitSet::default();
    for l in list {
        match l {
            Literal::Null => set.null = true,
            Literal::Bool(true) => set.t = true,
            Literal::Bool(false) => set.f = true,
            Literal::Number(n) => nums.push(*n),
            Literal::String(s) => strs.push(s.as_str().into()),
        }
    }
    strs.sort();
    strs.dedup();
    set.strs = strs.into();
    set.nums = nums.into();
    set
}

impl super::ast::CmpOp {
    /// The operator with its operands swapped (`1 < x` is `x > 1`).
    pub fn flipped(self) -> Self {
        use super::ast::CmpOp::*;
        match self {
            Eq => Eq,
            Ne => Ne,
            Lt => Gt,
            Le => Ge,
            Gt => Lt,
            Ge => Le,
        }
    }
}

#[derive(Debug, Clone)]
enum Root {
    Nothing,
    All,
    Node(Node),
}

impl Root {
    fn eval<'a, E: Env<'a>>(&'a self, env: &E) -> Tri {
        match self {
            Root::Nothing => Tri::False,
            Root::All => Tri::True,
            Root::Node(n) => Tri::of(eval(n, env)),
        }
    }
}

/// Distinct paths of one condition, in order of first use, with their segments pre-split.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathTable {
    pub paths: Vec<Path>,
    pub segments: Vec<Box<[Box<str>]>>,
}

impl PathTable {
    pub(crate) fn slot(&mut self, p: &Path) -> u32 {
        if let Some(i) = self.paths.iter().position(|q| q == p) {
            return i as u32;
        }
        self.paths.push(p.clone());
        self.segments.push(p.segments.iter().map(|s| s.name.as_str().into()).collect());
        (self.paths.len() - 1) as u32
    }
}

/// Resolves paths straight from the twin on each use (for single conditions, where a path is
/// rarely read twice).
pub(crate) struct DirectEnv<'a> {
    pub twin: &'a Value,
    pub segments: &'a [Box<[Box<str>]>],
}

impl<'a> Env<'a> for DirectEnv<'a> {
    #[inline]
    fn path(&self, slot: u32) -> Option<&'a Value> {
        self.segments.get(slot as usize).and_then(|segs| resolve(self.twin, segs))
    }
}

/// One clause of a condition and its value on a twin, for `fleetform explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClauseOutcome {
    /// The clause as written (or canonical text when the condition was built in code).
    pub text: String,
    /// Byte offset of the clause in the condition text.
    pub offset: usize,
    /// Byte length of the clause.
    pub len: usize,
    /// Its value on the twin.
    pub value: Tri,
}

/// A condition compiled for repeated evaluation.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    condition: Condition,
    root: Root,
    table: PathTable,
}

impl CompiledCondition {
    /// Compiles a parsed condition.
    pub fn new(condition: &Condition) -> Self {
        let mut table = PathTable::default();
        let root = match &condition.root {
            ConditionRoot::Nothing => Root::Nothing,
            ConditionRoot::All => Root::All,
            ConditionRoot::Expr(e) => Root::Node(compile_expr(e, &mut |p| table.slot(p))),
        };
        CompiledCondition { condition: condition.clone(), root, table }
    }

    /// Parses and compiles condition text.
    pub fn parse(text: &str) -> Result<Self, super::QueryError> {
        super::parse_condition(text).map(|c| Self::new(&c))
    }

    /// The condition this was compiled from.
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// The condition's value on `twin`.
    pub fn evaluate(&self, twin: &Value) -> Tri {
        self.root.eval(&DirectEnv { twin, segments: &self.table.segments })
    }

    /// True when the condition is exactly true on `twin`.
    pub fn matches(&self, twin: &Value) -> bool {
        self.evaluate(twin).is_true()
    }

    /// The distinct property paths the condition reads, in order of first use.
    pub fn paths(&self) -> &[Path] {
        &self.table.paths
    }

    /// The value of each top-level AND-ed clause (or of the whole condition when it is not an
    /// AND) on `twin`, so a caller can say which clause was false or undefined. `*` gives one
    /// true clause; the empty condition gives none.
    pub fn explain(&self, twin: &Value) -> Vec<ClauseOutcome> {
        match &self.condition.root {
            ConditionRoot::Nothing => Vec::new(),
            ConditionRoot::All => {
                vec![ClauseOutcome { text: "*".into(), offset: 0, len: self.condition.source.len(), value: Tri::True }]
            }
            ConditionRoot::Expr(_) => self
                .condition
                .clauses()
                .into_iter()
                .map(|clause| {
                    let mut table = PathTable::default();
                    let node = compile_expr(clause, &mut |p| table.slot(p));
                    let value = Tri::of(eval(&node, &DirectEnv { twin, segments: &table.segments }));
                    ClauseOutcome {
                        text: self.condition.text_of(clause),
                        offset: clause.span.offset,
                        len: clause.span.len,
                        value,
                    }
                })
                .collect(),
        }
    }
}

/// True when a deployment with this target condition targets `twin`: the twin is an IoT Edge
/// device (`capabilities.iotEdge = true`) and the condition is exactly true. The empty
/// condition targets nothing; `*` targets every IoT Edge device.
pub fn targets_device(condition: &CompiledCondition, twin: &Value) -> bool {
    is_edge_device(twin) && condition.matches(twin)
}

// ---------------------------------------------------------------------------------------------
// Condition sets.

const NO_PARENT: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct TrieNode {
    parent: u32,
    segment: Box<str>,
}

/// The index of a condition in a [`ConditionSet`].
pub type ConditionId = usize;

/// Many conditions compiled against one shared table of distinct paths.
///
/// Paths are stored as a trie (`tags`, `tags.location`, `tags.location.building`, ...), so a
/// twin is walked once per distinct prefix however many conditions read below it. Evaluation
/// resolves each trie node at most once per twin, on first use, into a [`Scratch`] the caller
/// owns and reuses: evaluating allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct ConditionSet {
    roots: Vec<Root>,
    trie: Vec<TrieNode>,
    index: HashMap<(u32, Box<str>), u32>,
    /// The nodes that end a path some condition reads (a prefix may be read too).
    ends: Vec<u32>,
}

impl ConditionSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `conditions`, with ids in iteration order.
    pub fn with_conditions<'c>(conditions: impl IntoIterator<Item = &'c Condition>) -> Self {
        let mut set = Self::new();
        for c in conditions {
            set.add(c);
        }
        set
    }

    /// Adds a condition; returns its id (ids count up from 0 in insertion order).
    pub fn add(&mut self, condition: &Condition) -> ConditionId {
        let root = match &condition.root {
            ConditionRoot::Nothing => Root::Nothing,
            ConditionRoot::All => Root::All,
            ConditionRoot::Expr(e) => {
                let node = compile_expr(e, &mut |p| self.intern(p));
                Root::Node(node)
            }
        };
        self.roots.push(root);
        self.roots.len() - 1
    }

    fn intern(&mut self, p: &Path) -> u32 {
        let mut parent = NO_PARENT;
        for seg in &p.segments {
            let key = (parent, Box::<str>::from(seg.name.as_str()));
            parent = match self.index.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.trie.len() as u32;
                    self.trie.push(TrieNode { parent, segment: key.1.clone() });
                    self.index.insert(key, id);
                    id
                }
            };
        }
        self.ends.push(parent);
        parent
    }

    /// How many conditions the set holds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True when the set holds no condition.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The paths the conditions read, for a reader that fetches only those.
    pub fn read_paths(&self) -> crate::model::ReadPaths {
        let path_of = |mut id: u32| {
            let mut segments = Vec::new();
            while id != NO_PARENT {
                let node = &self.trie[id as usize];
                segments.push(node.segment.to_string());
                id = node.parent;
            }
            segments.reverse();
            crate::model::TwinPath::from_segments(segments)
        };
        crate::model::ReadPaths::new(self.ends.iter().map(|&id| path_of(id)))
    }

    /// The trie nodes of the paths conditions read, each once, without those below another
    /// one: the values at these nodes decide every condition of the set. Unlike
    /// [`ConditionSet::read_paths`] spellings that differ only in case stay apart, since the
    /// lookup tries the exact name first and so may find different members for them.
    pub(crate) fn deciding_nodes(&self) -> Vec<u32> {
        let mut ends = self.ends.clone();
        ends.sort_unstable();
        ends.dedup();
        let below_another = |&id: &u32| {
            let mut up = self.trie[id as usize].parent;
            while up != NO_PARENT {
                if ends.binary_search(&up).is_ok() {
                    return true;
                }
                up = self.trie[up as usize].parent;
            }
            false
        };
        ends.iter().copied().filter(|id| !below_another(id)).collect()
    }

    /// How many distinct path prefixes the conditions read (the slots resolved per twin).
    pub fn slot_count(&self) -> usize {
        self.trie.len()
    }

    /// Prepares `scratch` for `twin` and returns a view that evaluates conditions on it.
    pub fn resolve<'s, 't>(&'s self, twin: &'t Value, scratch: &'s mut Scratch<'t>) -> Resolved<'s, 't> {
        scratch.slots.clear();
        scratch.slots.resize(self.trie.len(), Cell::new(None));
        Resolved { set: self, twin, slots: &scratch.slots }
    }

    /// Evaluates every condition on `twin` into `out` (cleared first, one entry per condition).
    pub fn evaluate_all<'t>(&self, twin: &'t Value, scratch: &mut Scratch<'t>, out: &mut Vec<Tri>) {
        let r = self.resolve(twin, scratch);
        out.clear();
        out.extend((0..self.roots.len()).map(|id| r.evaluate(id)));
    }
}

/// Per-twin slot buffer for [`ConditionSet`]; create one and reuse it for every twin.
///
/// It borrows the twins it is used with (`'t`). To reuse the buffer with twins of a shorter
/// lifetime, for example while streaming twins from a file, call [`Scratch::recycle`].
#[derive(Debug, Default)]
pub struct Scratch<'t> {
    /// `None`: not resolved yet for this twin; `Some(None)`: missing.
    slots: Vec<Cell<Option<Option<&'t Value>>>>,
}

impl<'t> Scratch<'t> {
    /// An empty buffer (it grows to the set's slot count on first use, then stays).
    pub fn new() -> Self {
        Scratch { slots: Vec::new() }
    }

    /// The same buffer, emptied and retyped for twins of another lifetime. The allocation is
    /// kept: the standard library collects a `vec::IntoIter` into a `Vec` of a same-sized type
    /// in place.
    pub fn recycle<'u>(mut self) -> Scratch<'u> {
        self.slots.clear();
        Scratch { slots: self.slots.into_iter().map(|_| Cell::new(None)).collect() }
    }
}

/// A [`ConditionSet`] bound to one twin; cheap to create, see [`ConditionSet::resolve`].
pub struct Resolved<'s, 't> {
    set: &'s ConditionSet,
    twin: &'t Value,
    slots: &'s [Cell<Option<Option<&'t Value>>>],
}

impl<'s, 't> Resolved<'s, 't> {
    /// The value at trie node `id` (a path prefix), resolved on first use.
    #[inline]
    pub(crate) fn slot(&self, id: u32) -> Option<&'t Value> {
        let cell = self.slots.get(id as usize)?;
        if let Some(v) = cell.get() {
            return v;
        }
        let node = &self.set.trie[id as usize];
        let parent = if node.parent == NO_PARENT { Some(self.twin) } else { self.slot(node.parent) };
        let v = parent.and_then(|p| lookup(p, &node.segment));
        cell.set(Some(v));
        v
    }

    /// The value of condition `id` on this twin ([`Tri::False`] for an unknown id).
    #[inline]
    pub fn evaluate(&self, id: ConditionId) -> Tri {
        match self.set.roots.get(id) {
            Some(root) => root.eval(self),
            None => Tri::False,
        }
    }

    /// True when condition `id` is exactly true on this twin.
    #[inline]
    pub fn matches(&self, id: ConditionId) -> bool {
        self.evaluate(id).is_true()
    }

    /// True when the twin is an IoT Edge device.
    pub fn is_edge(&self) -> bool {
        is_edge_device(self.twin)
    }

    /// True when a deployment with condition `id` targets this twin (see [`targets_device`]).
    pub fn targets(&self, id: ConditionId) -> bool {
        self.is_edge() && self.matches(id)
    }
}

impl<'v, 's: 'v, 't: 'v> Env<'v> for Resolved<'s, 't> {
    #[inline]
    fn path(&self, slot: u32) -> Option<&'v Value> {
        self.slot(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_condition;
    use serde_json::json;

    fn twin() -> Value {
        json!({
            "deviceId": "d1",
            "capabilities": {"iotEdge": true},
            "tags": {"environment": "prod", "location": {"building": "20", "floor": 3}},
            "properties": {"reported": {"firmware": "2.1", "temp": 21.5}, "desired": {}}
        })
    }

    #[test]
    fn read_paths_are_the_leaves_once_each() {
        let conditions = [
            "tags.location.building='20' AND tags.environment='prod'",
            "TAGS.Location.building='21' OR properties.reported.firmware='2.1'",
            "tags.location = 'x' AND deviceId = 'd1'",
        ];
        let parsed: Vec<_> = conditions.iter().map(|c| parse_condition(c).unwrap()).collect();
        let set = ConditionSet::with_conditions(&parsed);
        let paths: Vec<String> = set.read_paths().paths().iter().map(|p| p.to_string()).collect();
        // `tags.location` holds `tags.location.building`, whatever the spelling.
        assert_eq!(paths, ["deviceId", "properties.reported.firmware", "tags.environment", "tags.location"]);
    }

    #[test]
    fn set_shares_prefixes() {
        let mut set = ConditionSet::new();
        set.add(&parse_condition("tags.location.building = '20'").unwrap());
        set.add(&parse_condition("tags.location.floor > 2 AND tags.environment = 'prod'").unwrap());
        // tags, tags.location, .building, .floor, tags.environment
        assert_eq!(set.slot_count(), 5);
        let t = twin();
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        set.evaluate_all(&t, &mut scratch, &mut out);
        assert_eq!(out, vec![Tri::True, Tri::True]);
    }

    #[test]
    fn resolved_targets_require_edge() {
        let mut set = ConditionSet::new();
        let all = set.add(&Condition::all());
        let none = set.add(&Condition::nothing());
        let t = twin();
        let mut scratch = Scratch::new();
        let r = set.resolve(&t, &mut scratch);
        assert!(r.targets(all));
        assert!(!r.targets(none));
        assert_eq!(r.evaluate(99), Tri::False);
        let leaf = json!({"deviceId": "x"});
        let mut scratch = scratch.recycle();
        let r = set.resolve(&leaf, &mut scratch);
        assert!(!r.targets(all));
        assert!(r.matches(all));
    }

    #[test]
    fn literal_on_the_left_is_flipped() {
        let c = CompiledCondition::parse("2 < tags.location.floor").unwrap();
        assert!(c.matches(&twin()));
        let c = CompiledCondition::parse("4 < tags.location.floor").unwrap();
        assert!(!c.matches(&twin()));
    }

    #[test]
    fn explain_reports_each_clause() {
        let c = CompiledCondition::parse(
            "tags.environment = 'prod' AND tags.missing = 1 AND properties.reported.temp < 20",
        )
        .unwrap();
        let out = c.explain(&twin());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].text, "tags.environment = 'prod'");
        assert_eq!(out[0].value, Tri::True);
        assert_eq!((out[1].offset, out[1].len), (30, 16));
        assert_eq!(out[1].value, Tri::Undefined);
        assert_eq!(out[2].value, Tri::False);
        assert_eq!(c.evaluate(&twin()), Tri::False);
        let paths: Vec<String> = c.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(paths, ["tags.environment", "tags.missing", "properties.reported.temp"]);
    }

    #[test]
    fn targets_device_rules() {
        let t = twin();
        assert!(targets_device(&CompiledCondition::new(&Condition::all()), &t));
        assert!(!targets_device(&CompiledCondition::new(&Condition::nothing()), &t));
        let mut leaf = t.clone();
        leaf["capabilities"]["iotEdge"] = json!(false);
        assert!(!targets_device(&CompiledCondition::parse("*").unwrap(), &leaf));
    }
}
