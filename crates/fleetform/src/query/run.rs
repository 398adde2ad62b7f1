//! Running full queries over twins: WHERE, projection, COUNT(), TOP and GROUP BY.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::ast::{Aggregate, ExprKind, Query, SelectExpr, Selection};
use super::compile::{DirectEnv, PathTable, compile_expr};
use super::eval::{Node, Val, eval, resolve_entry};

/// How a projected column gets its value.
enum Column {
    Count,
    Aggregate(Aggregate, Node),
    Node(Node),
}

/// A running AVG/SUM/MIN/MAX over the numbers of one group; rows where the argument is not a
/// number do not count.
#[derive(Clone, Default)]
struct Accumulator {
    numbers: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Accumulator {
    fn add(&mut self, n: f64) {
        self.numbers += 1;
        self.sum += n;
        self.min = Some(self.min.map_or(n, |m| m.min(n)));
        self.max = Some(self.max.map_or(n, |m| m.max(n)));
    }

    /// The result, or `None` (the column is left out) when no row had a number.
    fn finish(&self, agg: Aggregate) -> Option<Value> {
        if self.numbers == 0 {
            return None;
        }
        let n = match agg {
            Aggregate::Avg => self.sum / self.numbers as f64,
            Aggregate::Sum => self.sum,
            Aggregate::Min => self.min?,
            Aggregate::Max => self.max?,
        };
        number(n)
    }
}

/// A JSON number, integral values as integers (`6`, not `6.0`), as the hub prints them.
fn number(n: f64) -> Option<Value> {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        return Some(Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(Value::Number)
}

struct Compiled {
    filter: Option<Node>,
    /// (output key, how to compute it)
    columns: Vec<(String, Column)>,
    /// For each column, whether it is an unaliased path, named after the key the twin holds
    /// rather than as written in the query.
    twin_named: Vec<bool>,
    /// Slots of the GROUP BY paths.
    groups: Vec<u32>,
    /// For each column that is a grouped path, which GROUP BY entry it shows.
    column_group: Vec<Option<usize>>,
    table: PathTable,
}

impl Query {
    fn compile(&self) -> Compiled {
        let mut table = PathTable::default();
        let filter = self.filter.as_ref().map(|f| compile_expr(f, &mut |p| table.slot(p)));
        let mut columns = Vec::new();
        let mut column_group = Vec::new();
        let mut twin_named = Vec::new();
        let mut unnamed = 0;
        if let Selection::Items(items) = &self.selection {
            for item in items {
                let (default_name, column, group) = match &item.expr {
                    SelectExpr::Count => (None, Column::Count, None),
                    SelectExpr::Aggregate(agg, e) => {
                        (None, Column::Aggregate(*agg, compile_expr(e, &mut |p| table.slot(p))), None)
                    }
                    SelectExpr::Expr(e) => {
                        let (name, group) = match &e.kind {
                            ExprKind::Path(p) => {
                                (Some(p.leaf().to_string()), self.group_by.iter().position(|g| g.eq_ignore_case(p)))
                            }
                            _ => (None, None),
                        };
                        (name, Column::Node(compile_expr(e, &mut |p| table.slot(p))), group)
                    }
                };
                // Columns with neither alias nor a path name are numbered `$1`, `$2`, ... (the
                // convention of the document-database SQL the hub's language derives from).
                twin_named.push(item.alias.is_none() && default_name.is_some());
                let key = match (&item.alias, default_name) {
                    (Some(a), _) => a.clone(),
                    (None, Some(n)) => n,
                    (None, None) => {
                        unnamed += 1;
                        format!("${unnamed}")
                    }
                };
                columns.push((key, column));
                column_group.push(group);
            }
        }
        let groups = self.group_by.iter().map(|g| table.slot(g)).collect();
        Compiled { filter, columns, twin_named, groups, column_group, table }
    }

    /// Runs the query over `rows` (device twins for `FROM devices`, module twins for
    /// `FROM devices.modules`; see [`Query::from_modules`]) and returns the result rows as the
    /// hub would: whole twins for `SELECT *`, objects keyed by alias or by the path's last
    /// segment otherwise (undefined values are left out), one row per group for `COUNT()`.
    /// Groups come out in order of first appearance.
    pub fn run<'a>(&self, rows: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
        let c = self.compile();
        let limit = self.top.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let passing = rows.into_iter().filter(|row| match &c.filter {
            None => true,
            Some(f) => {
                let env = DirectEnv { twin: row, segments: &c.table.segments };
                eval(f, &env) == Val::Bool(true)
            }
        });
        if !self.is_aggregate() && self.group_by.is_empty() {
            return passing
                .take(limit)
                .map(|row| match self.selection {
                    Selection::All => row.clone(),
                    Selection::Items(_) => project(&c, row),
                })
                .collect();
        }
        // Aggregation: one group per distinct tuple of GROUP BY values (a single group without
        // GROUP BY, reported even when no row passed).
        let mut index: HashMap<String, usize> = HashMap::new();
        // Per group: the GROUP BY values, the twin's spelling of each path's last key (from the
        // group's first row), and the row count.
        let mut groups: Vec<Group> = Vec::new();
        // Per group, one accumulator per column (only aggregate columns use theirs).
        let mut sums: Vec<Vec<Accumulator>> = Vec::new();
        let fresh = || vec![Accumulator::default(); c.columns.len()];
        if self.group_by.is_empty() {
            groups.push((Vec::new(), Vec::new(), 0));
            sums.push(fresh());
            index.insert(String::new(), 0);
        }
        let mut key = String::new();
        for row in passing {
            let entries: Vec<Option<(&str, &Value)>> =
                c.groups.iter().map(|&s| resolve_entry(row, &c.table.segments[s as usize])).collect();
            let values: Vec<Option<&Value>> = entries.iter().map(|e| e.map(|(_, v)| v)).collect();
            key.clear();
            for v in &values {
                match v {
                    // serde_json's compact text is a faithful key for any JSON value.
                    Some(v) => key.push_str(&v.to_string()),
                    None => key.push('\u{0}'),
                }
                key.push('\u{1}');
            }
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let names = entries.iter().map(|e| e.map(|(k, _)| k.to_string())).collect();
                    groups.push((values.iter().map(|v| v.cloned()).collect(), names, 0));
                    sums.push(fresh());
                    index.insert(key.clone(), groups.len() - 1);
                    groups.len() - 1
                }
            };
            groups[i].2 += 1;
            let env = DirectEnv { twin: row, segments: &c.table.segments };
            for ((_, column), acc) in c.columns.iter().zip(sums[i].iter_mut()) {
                if let Column::Aggregate(_, node) = column
                    && let Val::Num(n) = eval(node, &env)
                {
                    acc.add(n);
                }
            }
        }
        groups
            .into_iter()
            .take(limit)
            .zip(sums)
            .map(|((values, names, count), sums)| {
                let mut out = Map::new();
                for (i, (((name, column), group), &twin_named)) in
                    c.columns.iter().zip(&c.column_group).zip(&c.twin_named).enumerate()
                {
                    let v = match (column, group) {
                        (Column::Count, _) => Some(Value::from(count)),
                        (Column::Aggregate(agg, _), _) => sums.get(i).and_then(|a| a.finish(*agg)),
                        (Column::Node(_), Some(g)) => values.get(*g).cloned().flatten(),
                        // The parser only lets grouped paths and COUNT() into aggregate queries.
                        (Column::Node(_), None) => None,
                    };
                    let name = match group {
                        Some(g) if twin_named => names.get(*g).cloned().flatten().unwrap_or_else(|| name.clone()),
                        _ => name.clone(),
                    };
                    if let Some(v) = v {
                        out.insert(name, v);
                    }
                }
                Value::Object(out)
            })
            .collect()
    }
}

/// One GROUP BY group: its values, the twin's spelling of each grouped path's last key, and
/// its row count.
type Group = (Vec<Option<Value>>, Vec<Option<String>>, u64);

fn env_path<'a>(env: &DirectEnv<'a>, slot: u32) -> Option<&'a Value> {
    use super::eval::Env;
    env.path(slot)
}

fn project(c: &Compiled, row: &Value) -> Value {
    let env = DirectEnv { twin: row, segments: &c.table.segments };
    let mut out = Map::new();
    for ((name, column), &twin_named) in c.columns.iter().zip(&c.twin_named) {
        let (name, v) = match column {
            Column::Count | Column::Aggregate(..) => (name.as_str(), None),
            Column::Node(Node::Path(slot)) if twin_named => {
                match resolve_entry(row, &c.table.segments[*slot as usize]) {
                    Some((key, v)) => (key, Some(v.clone())),
                    None => (name.as_str(), None),
                }
            }
            // Paths and literals keep their full JSON (objects and arrays included).
            Column::Node(Node::Path(slot)) => (name.as_str(), env_path(&env, *slot).cloned()),
            Column::Node(n) => (name.as_str(), eval(n, &env).to_json()),
        };
        if let Some(v) = v {
            out.insert(name.to_string(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::super::parse_query;
    use serde_json::{Value, json};

    fn twins() -> Vec<Value> {
        vec![
            json!({"deviceId": "a", "tags": {"b": "20"}, "properties": {"reported": {"s": "Success"}}}),
            json!({"deviceId": "b", "tags": {"b": "20"}, "properties": {"reported": {"s": "Error"}}}),
            json!({"deviceId": "c", "tags": {"b": "40"}, "properties": {"reported": {"s": "Success"}}}),
            json!({"deviceId": "d", "tags": {}}),
        ]
    }

    fn run(q: &str) -> Vec<Value> {
        parse_query(q).unwrap().run(&twins())
    }

    #[test]
    fn projection_and_top() {
        assert_eq!(
            run("SELECT deviceId, tags.b AS building FROM devices WHERE tags.b = '20'"),
            vec![json!({"deviceId": "a", "building": "20"}), json!({"deviceId": "b", "building": "20"})]
        );
        assert_eq!(run("SELECT TOP 1 * FROM devices").len(), 1);
        let q = parse_query("SELECT * FROM devices WHERE tags.b = '40' AND deviceId = 'c'").unwrap();
        let w = q.where_condition();
        assert_eq!(w.clauses().len(), 2);
        assert_eq!(w.text_of(w.clauses()[0]), "tags.b = '40'");
        assert_eq!(run("SELECT deviceId FROM devices WHERE tags.b = '20'").len(), 2);
        assert_eq!(run("SELECT tags.x FROM devices WHERE deviceId = 'd'"), vec![json!({})]);
        assert_eq!(run("SELECT 1 + 2, 'x' FROM devices WHERE deviceId = 'a'"), vec![json!({"$1": 3, "$2": "x"})]);
    }

    #[test]
    fn count_and_group_by() {
        assert_eq!(run("SELECT COUNT() AS n FROM devices WHERE tags.b = '20'"), vec![json!({"n": 2})]);
        assert_eq!(run("SELECT COUNT() AS n FROM devices WHERE tags.b = 'none'"), vec![json!({"n": 0})]);
        assert_eq!(
            run("SELECT properties.reported.s AS status, COUNT() AS n FROM devices GROUP BY properties.reported.s"),
            vec![json!({"status": "Success", "n": 2}), json!({"status": "Error", "n": 1}), json!({"n": 1})]
        );
        assert_eq!(
            run("SELECT TOP 1 tags.b, COUNT() AS n FROM devices GROUP BY tags.b"),
            vec![json!({"b": "20", "n": 2})]
        );
    }
}
