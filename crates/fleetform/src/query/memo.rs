//! Evaluating a condition set once per distinct combination of the values it reads, not
//! once per twin.
//!
//! A fleet of a million devices has a few thousand distinct combinations of the tags and
//! reported properties its target conditions look at (buildings × hardware × firmware
//! ...). The values at the set's deciding paths are interned (per path, a small number
//! for each distinct value), the tuple of numbers is looked up, and only a new tuple
//! evaluates the conditions, on the twin that brought it.
//!
//! Why that is exact: a condition only sees the twin through lookups of its paths
//! ([`ConditionSet::deciding_nodes`]: every path some condition reads, or a prefix of it
//! that is itself read). Two twins whose values at those nodes are identical give every
//! lookup the same answer, hence every condition the same value. Identical means: the
//! same missing/null/boolean, the same number as the evaluator sees it (an `f64`), the
//! same string, or for arrays and objects the same JSON text with members in the same
//! order (the case-insensitive scan takes the first matching member in order).

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::compile::{ConditionSet, Scratch};
use super::eval::Tri;

/// A distinct combination of deciding values, numbered from 0 in order of first sight.
pub type Combination = u32;

const MISSING: u32 = 0;
const NULL: u32 = 1;
const FALSE: u32 = 2;
const TRUE: u32 = 3;
const FIRST_FREE: u32 = 4;

/// The distinct values seen at one deciding path.
#[derive(Debug, Default)]
struct Interner {
    strings: FxHashMap<Box<str>, u32>,
    numbers: FxHashMap<u64, u32>,
    /// Arrays and objects, by their JSON text (rare: conditions compare scalars).
    composites: FxHashMap<String, u32>,
    next: u32,
}

impl Interner {
    fn id(&mut self, value: Option<&Value>) -> u32 {
        let fresh = |next: &mut u32| {
            let id = FIRST_FREE + *next;
            *next += 1;
            id
        };
        match value {
            None => MISSING,
            Some(Value::Null) => NULL,
            Some(Value::Bool(false)) => FALSE,
            Some(Value::Bool(true)) => TRUE,
            Some(Value::String(s)) => match self.strings.get(s.as_str()) {
                Some(&id) => id,
                None => {
                    let id = fresh(&mut self.next);
                    self.strings.insert(s.as_str().into(), id);
                    id
                }
            },
            // The evaluator reads every number as an f64 (`Val::of_json`), so numbers with
            // the same f64 behave alike; one that has none is read as undefined.
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) => *self.numbers.entry(f.to_bits()).or_insert_with(|| fresh(&mut self.next)),
                None => MISSING,
            },
            Some(composite) => {
                let text = composite.to_string();
                *self.composites.entry(text).or_insert_with(|| fresh(&mut self.next))
            }
        }
    }
}

/// A [`ConditionSet`]'s outcomes per distinct combination of the values its conditions
/// read. Keep one per thread (it is a cache that grows with the combinations, not with the
/// twins) and pass every twin through [`ConditionMemo::classify`].
///
/// ```
/// use fleetform::query::{ConditionMemo, ConditionSet, Tri, parse_condition};
/// use serde_json::json;
///
/// let mut set = ConditionSet::new();
/// let prod = set.add(&parse_condition("tags.env = 'prod'")?);
/// let mut memo = ConditionMemo::new(&set);
/// let a = memo.classify(&json!({"deviceId": "a", "tags": {"env": "prod", "n": 1}}));
/// let b = memo.classify(&json!({"deviceId": "b", "tags": {"env": "prod", "n": 2}}));
/// assert_eq!(a, b); // `tags.n` is read by no condition
/// assert_eq!(memo.outcomes(a)[prod], Tri::True);
/// assert_eq!(memo.combinations(), 1);
/// # Ok::<(), fleetform::query::QueryError>(())
/// ```
pub struct ConditionMemo<'s> {
    set: &'s ConditionSet,
    /// Trie nodes whose values decide every condition.
    deciding: Vec<u32>,
    interners: Vec<Interner>,
    combinations: FxHashMap<Box<[u32]>, Combination>,
    /// `set.len()` outcomes per combination, back to back.
    outcomes: Vec<Tri>,
    /// The current twin's tuple, reused.
    key: Vec<u32>,
    scratch: Option<Scratch<'static>>,
}

impl<'s> ConditionMemo<'s> {
    pub fn new(set: &'s ConditionSet) -> ConditionMemo<'s> {
        let deciding = set.deciding_nodes();
        let interners = deciding.iter().map(|_| Interner::default()).collect();
        ConditionMemo {
            set,
            deciding,
            interners,
            combinations: FxHashMap::default(),
            outcomes: Vec::new(),
            key: Vec::new(),
            scratch: Some(Scratch::new()),
        }
    }

    /// The combination `twin` belongs to; the first twin of a new combination evaluates
    /// every condition of the set.
    pub fn classify(&mut self, twin: &Value) -> Combination {
        let mut scratch: Scratch<'_> = self.scratch.take().unwrap_or_default().recycle();
        let resolved = self.set.resolve(twin, &mut scratch);
        self.key.clear();
        for (node, interner) in self.deciding.iter().zip(&mut self.interners) {
            self.key.push(interner.id(resolved.slot(*node)));
        }
        let found = match self.combinations.get(self.key.as_slice()) {
            Some(&c) => c,
            None => {
                let c = self.combinations.len() as Combination;
                self.outcomes.extend((0..self.set.len()).map(|id| resolved.evaluate(id)));
                self.combinations.insert(self.key.as_slice().into(), c);
                c
            }
        };
        self.scratch = Some(scratch.recycle());
        found
    }

    /// Every condition's value (indexed by [`super::ConditionId`]) for the twins of
    /// `combination`; empty for a combination this memo never gave out.
    pub fn outcomes(&self, combination: Combination) -> &[Tri] {
        let n = self.set.len();
        let start = combination as usize * n;
        self.outcomes.get(start..start + n).unwrap_or(&[])
    }

    /// How many distinct combinations have been seen (the evaluations done).
    pub fn combinations(&self) -> usize {
        self.combinations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_condition;
    use serde_json::json;

    fn set(conditions: &[&str]) -> ConditionSet {
        let mut set = ConditionSet::new();
        for c in conditions {
            set.add(&parse_condition(c).unwrap());
        }
        set
    }

    #[test]
    fn twins_differing_only_in_unread_paths_share_a_combination() {
        let s = set(&["tags.building = '20'", "properties.reported.fw >= '2.0'"]);
        let mut memo = ConditionMemo::new(&s);
        let a = memo.classify(&json!({"tags": {"building": "20", "x": 1}, "properties": {"reported": {"fw": "2.1"}}}));
        let b = memo.classify(&json!({"tags": {"building": "20", "x": 2}, "properties": {"reported": {"fw": "2.1"}}}));
        let c = memo.classify(&json!({"tags": {"building": "21"}, "properties": {"reported": {"fw": "2.1"}}}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(memo.outcomes(a), [Tri::True, Tri::True]);
        assert_eq!(memo.outcomes(c), [Tri::False, Tri::True]);
        assert_eq!(memo.combinations(), 2);
        assert!(memo.outcomes(7).is_empty());
    }

    #[test]
    fn types_stay_apart_and_numbers_compare_as_the_evaluator_reads_them() {
        let s = set(&["tags.n = 1"]);
        let mut memo = ConditionMemo::new(&s);
        let one = memo.classify(&json!({"tags": {"n": 1}}));
        assert_eq!(memo.classify(&json!({"tags": {"n": 1.0}})), one);
        let text = memo.classify(&json!({"tags": {"n": "1"}}));
        let missing = memo.classify(&json!({"tags": {}}));
        let null = memo.classify(&json!({"tags": {"n": null}}));
        let object = memo.classify(&json!({"tags": {"n": {"a": 1}}}));
        assert_eq!(memo.outcomes(one), [Tri::True]);
        assert_eq!(memo.outcomes(text), [Tri::False]);
        assert_eq!(memo.outcomes(missing), [Tri::Undefined]);
        assert_eq!(memo.outcomes(null), [Tri::False]);
        assert_eq!(memo.outcomes(object), [Tri::Undefined]);
        assert_eq!(memo.combinations(), 5);
    }

    #[test]
    fn spellings_that_differ_in_case_are_decided_apart() {
        // `tags.Env` finds `Env` exactly, `tags.env` finds `env`: the same twin gives the two
        // conditions different values, and a twin changing only `env` must not share a
        // combination with one changing only `Env`.
        let s = set(&["tags.Env = 'a'", "tags.env = 'a'"]);
        let mut memo = ConditionMemo::new(&s);
        let both = memo.classify(&json!({"tags": {"Env": "a", "env": "b"}}));
        assert_eq!(memo.outcomes(both), [Tri::True, Tri::False]);
        let other = memo.classify(&json!({"tags": {"Env": "b", "env": "a"}}));
        assert_eq!(memo.outcomes(other), [Tri::False, Tri::True]);
    }

    #[test]
    fn a_read_prefix_decides_the_paths_below_it() {
        let s = set(&["is_object(tags.location)", "tags.location.building = '20'"]);
        let mut memo = ConditionMemo::new(&s);
        let a = memo.classify(&json!({"tags": {"location": {"building": "20"}}}));
        let b = memo.classify(&json!({"tags": {"location": {"building": "21"}}}));
        assert_ne!(a, b);
        assert_eq!(memo.outcomes(b), [Tri::True, Tri::False]);
    }
}
