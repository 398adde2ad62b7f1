//! JSON written in KDL (create options, twin properties, integrity, the MQTT broker): as
//! KDL nodes, where each child is a key, or as a JSON string, whose syntax errors point at
//! the character inside the KDL string.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use serde_json::{Map, Value};

use super::Cx;
use crate::spec::diag::Code;
use crate::spec::model::*;

impl Cx<'_> {
    pub(super) fn json_scalar(&mut self, entry: &KdlEntry, what: &str) -> Option<Value> {
        let span = self.value_span(entry);
        match entry.value() {
            KdlValue::String(s) => Some(Value::String(s.clone())),
            KdlValue::Bool(b) => Some(Value::Bool(*b)),
            KdlValue::Null => Some(Value::Null),
            KdlValue::Integer(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    Some(Value::from(v))
                } else if let Ok(v) = u64::try_from(*i) {
                    Some(Value::from(v))
                } else {
                    self.err(
                        Code::OutOfRange,
                        span,
                        format!("{what} {i} does not fit in 64 bits"),
                        "too large",
                        Some("JSON numbers on the hub are 64-bit; write it as a string".into()),
                    );
                    None
                }
            }
            KdlValue::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Some(Value::Number(n)),
                None => {
                    self.err(
                        Code::OutOfRange,
                        span,
                        format!("{what} must be a finite number"),
                        "not representable in JSON",
                        Some("JSON has no infinity or NaN; write a finite number or a string".into()),
                    );
                    None
                }
            },
        }
    }

    /// A node holding one JSON object: a JSON string argument, or JSON-in-KDL children.
    pub(super) fn json_object_node(&mut self, node: &KdlNode, what: &str, example: &str) -> Option<Value> {
        let value = match (self.args(node).first(), node.children()) {
            (Some(e), None) => {
                let text = self.string(e, what)?;
                self.raw_json(e, &text, what)?
            }
            (None, Some(children)) => {
                let mut scalars = Vec::new();
                let before = self.problems.len();
                let v = Value::Object(self.jik_object(children, "", &mut scalars, false));
                if self.problems.len() != before {
                    return None;
                }
                if let Some((_, s)) = scalars.first() {
                    let span = s.origin.span;
                    self.err(
                        Code::UnknownAnnotation,
                        span,
                        format!("{what} can't read values from the environment or hold secrets"),
                        "annotated value",
                        Some("write the value in the file".into()),
                    );
                    return None;
                }
                v
            }
            _ => {
                self.err(
                    Code::MissingValue,
                    node.name().span(),
                    format!("{what} needs one JSON string or KDL children"),
                    "no single value",
                    Some(format!("write `{example}`")),
                );
                return None;
            }
        };
        if !value.is_object() {
            self.err(
                Code::InvalidJson,
                node.name().span(),
                format!("{what} must be a JSON object"),
                "not an object",
                Some(format!("write `{example}`")),
            );
            return None;
        }
        Some(value)
    }
    /// Parses a JSON string written in KDL, pointing a syntax error at the exact character.
    pub(super) fn raw_json(&mut self, entry: &KdlEntry, text: &str, what: &str) -> Option<Value> {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Some(v),
            Err(err) => {
                let offset = offset_of_line_col(text, err.line(), err.column());
                let span = match self.string_map(entry) {
                    Some(map) if offset < map.len() => SourceSpan::new(map[offset].into(), 1),
                    _ => self.value_span(entry),
                };
                let msg = strip_position(&err.to_string());
                self.err(Code::InvalidJson, span, format!("{what} is not valid JSON: {msg}"), "here", Some("write valid JSON (a raw string `#\"{…}\"#` avoids escaping quotes), or write it as KDL children".into()));
                None
            }
        }
    }

    fn bad_twin_key(&mut self, key: &str, span: SourceSpan) {
        self.err(
            Code::InvalidName,
            span,
            format!("twin property name \"{key}\" is not allowed"),
            "invalid property name",
            Some("twin property names can't contain `.`, `$`, spaces or control characters".into()),
        );
    }

    /// Reports every key of a raw-JSON twin document the hub would refuse.
    pub(super) fn check_twin_keys(&mut self, v: &Value, span: SourceSpan) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                if !valid_twin_key(k) {
                    self.bad_twin_key(k, span);
                }
                self.check_twin_keys(child, span);
            }
        } else if let Value::Array(items) = v {
            for item in items {
                self.check_twin_keys(item, span);
            }
        }
    }

    /// JSON-in-KDL: each child node is a key; its value is its argument(s), its properties,
    /// or its children (nodes named `-` make an array).
    pub(super) fn jik_object(
        &mut self,
        doc: &KdlDocument,
        pointer: &str,
        scalars: &mut Vec<(String, Scalar)>,
        twin_keys: bool,
    ) -> Map<String, Value> {
        let mut map = Map::new();
        for node in doc.nodes() {
            let key = node.name().value().to_string();
            if key == "-" {
                self.err(
                    Code::WrongType,
                    node.name().span(),
                    "`-` items belong in an array",
                    "array item in an object",
                    Some("put `-` items under a key: `ports { - 80; - 443 }`".into()),
                );
                continue;
            }
            if twin_keys && !valid_twin_key(&key) {
                self.bad_twin_key(&key, node.name().span());
                continue;
            }
            let child_ptr = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            let Some(v) = self.jik_value(node, &child_ptr, scalars, twin_keys) else {
                continue;
            };
            if map.insert(key.clone(), v).is_some() {
                self.err(
                    Code::Duplicate,
                    node.name().span(),
                    format!("\"{key}\" is given twice"),
                    "second value",
                    Some("keep one".into()),
                );
            }
        }
        map
    }

    fn jik_value(
        &mut self,
        node: &KdlNode,
        pointer: &str,
        scalars: &mut Vec<(String, Scalar)>,
        twin_keys: bool,
    ) -> Option<Value> {
        let args = self.args(node);
        let props: Vec<&KdlEntry> = node.entries().iter().filter(|e| e.name().is_some()).collect();
        if let Some(children) = node.children() {
            if !args.is_empty() {
                self.err(
                    Code::ExtraValue,
                    args[0].span(),
                    "a node with children can't also have values",
                    "extra value",
                    Some("move the value into the block, or drop the block".into()),
                );
                return None;
            }
            let kids = children.nodes();
            if !kids.is_empty() && kids.iter().all(|k| k.name().value() == "-") {
                if !props.is_empty() {
                    self.err(
                        Code::ExtraValue,
                        props[0].span(),
                        "an array can't have properties",
                        "extra property",
                        None,
                    );
                    return None;
                }
                let mut items = Vec::new();
                for (i, k) in kids.iter().enumerate() {
                    items.push(self.jik_value(k, &format!("{pointer}/{i}"), scalars, twin_keys)?);
                }
                return Some(Value::Array(items));
            }
            let mut map = self.jik_props(&props, pointer, scalars)?;
            for (k, v) in self.jik_object(children, pointer, scalars, twin_keys) {
                map.insert(k, v);
            }
            return Some(Value::Object(map));
        }
        if !props.is_empty() {
            if !args.is_empty() {
                self.err(
                    Code::ExtraValue,
                    args[0].span(),
                    "a node can't mix values and properties",
                    "value beside properties",
                    Some("write either `key value` or `key a=1 b=2`".into()),
                );
                return None;
            }
            return self.jik_props(&props, pointer, scalars).map(Value::Object);
        }
        match args.len() {
            0 => {
                self.err(
                    Code::MissingValue,
                    node.name().span(),
                    format!("\"{}\" has no value", node.name().value()),
                    "no value",
                    Some("give it a value (`key 5`), properties, or `{}` for an empty object".into()),
                );
                None
            }
            1 => self.jik_scalar(args[0], pointer, scalars),
            _ => {
                let mut items = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    items.push(self.jik_scalar(a, &format!("{pointer}/{i}"), scalars)?);
                }
                Some(Value::Array(items))
            }
        }
    }

    fn jik_props(
        &mut self,
        props: &[&KdlEntry],
        pointer: &str,
        scalars: &mut Vec<(String, Scalar)>,
    ) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        for p in props {
            let key = p.name().map(|n| n.value().to_string()).unwrap_or_default();
            let ptr = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            let v = self.jik_scalar(p, &ptr, scalars)?;
            map.insert(key, v);
        }
        Some(map)
    }

    fn jik_scalar(&mut self, entry: &KdlEntry, pointer: &str, scalars: &mut Vec<(String, Scalar)>) -> Option<Value> {
        let s = self.scalar(entry, "a value", false)?;
        let v = s.value.clone();
        if s.source != ValueSource::Literal || s.sensitive {
            scalars.push((pointer.to_string(), s));
        }
        Some(v)
    }
}

/// Byte offset of a 1-based (line, column) position as serde_json reports it.
fn offset_of_line_col(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

/// serde_json appends " at line L column C"; the span already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Twin property names the hub accepts: not empty, no `.`, `$`, space or control character.
fn valid_twin_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c == '.' || c == '$' || c == ' ' || c.is_control())
}
