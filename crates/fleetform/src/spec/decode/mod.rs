//! KDL -> typed model, one file per node: [`deployment`], [`runtime`], [`module`],
//! [`registry`], [`route`], and [`json`] for JSON written in KDL. This module holds the
//! document entry and the context every node decodes with.
//!
//! The decoder reports what is wrong with the node at hand (unknown children, wrong types,
//! bad names); rules that weigh one node against others live in [`super::checks`].
//! Every problem is collected (never just the first), each with a span, in file order.

mod deployment;
mod json;
mod module;
mod registry;
mod rollout;
mod route;
mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use serde_json::Value;

use super::checks::{self, Declared};
use super::diag::{Code, Problem};
use super::model::*;
use super::source::{SourceFile, string_offsets};
use crate::suggest::did_you_mean;

const ANNOTATIONS: &[&str] = &["env", "secret", "secret-env"];

/// Parses one file into deployments, appending every problem found to `problems`.
pub fn parse_file(file: &Arc<SourceFile>, problems: &mut Vec<Problem>) -> Vec<Deployment> {
    if let Some(p) = super::limits::nesting_problem(file) {
        problems.push(p);
        return Vec::new();
    }
    let doc: KdlDocument = match file.text.parse() {
        Ok(doc) => doc,
        Err(err) => {
            problems.extend(syntax_problems(file, err));
            return Vec::new();
        }
    };
    let mut cx = Cx { file: file.clone(), problems };
    let mut out = Vec::new();
    for node in doc.nodes() {
        let kind = match node.name().value() {
            "deployment" => DeploymentKind::Standard,
            "layered" => DeploymentKind::Layered,
            other => {
                let help = match did_you_mean(other, ["deployment", "layered"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a file holds `deployment \"name\" { … }` (standard) and `layered \"name\" { … }` nodes"
                        .to_string(),
                };
                cx.err(
                    Code::UnknownNode,
                    node.name().span(),
                    format!("unknown node `{other}`"),
                    "not a deployment",
                    Some(help),
                );
                continue;
            }
        };
        if let Some(d) = cx.deployment(node, kind) {
            out.push(d);
        }
    }
    out
}

/// A file that is not valid KDL, as problems in the same form as every other.
pub fn syntax_problems(file: &Arc<SourceFile>, err: kdl::KdlError) -> Vec<Problem> {
    err.diagnostics
        .into_iter()
        .map(|d| {
            let message = d.message.unwrap_or_else(|| "invalid KDL".to_string());
            let help = keyword_hint(file.slice(d.span)).map(str::to_string).or(d.help);
            Problem::new(Code::Syntax, file, d.span, message, d.label.unwrap_or_default()).with_help(
                help.unwrap_or_else(|| "fix the KDL syntax; see https://kdl.dev for the language".to_string()),
            )
        })
        .collect()
}

/// KDL 2 spells its keywords with `#`; a bare `true` is what a newcomer writes first, and
/// the parser only says it is not an identifier.
fn keyword_hint(token: &str) -> Option<&'static str> {
    match token.trim() {
        "true" | "false" => Some("booleans are written `#true` and `#false` in KDL 2 (a quoted \"true\" is a string)"),
        "null" => Some("null is written `#null` in KDL 2"),
        "inf" | "-inf" | "nan" => Some("KDL 2 writes these as `#inf`, `#-inf` and `#nan`"),
        _ => None,
    }
}

/// The file being decoded and the problems found in it so far.
struct Cx<'a> {
    file: Arc<SourceFile>,
    problems: &'a mut Vec<Problem>,
}

impl Cx<'_> {
    fn err(
        &mut self,
        code: Code,
        span: SourceSpan,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        self.problems.push(Problem::new(code, &self.file, span, message, label).with_help_opt(help));
    }

    fn origin(&self, span: SourceSpan) -> Origin {
        Origin { file: self.file.clone(), span }
    }

    /// The span of an entry's value alone (not `key=` or the annotation).
    fn value_span(&self, entry: &KdlEntry) -> SourceSpan {
        let whole = entry.span();
        if let Some(fmt) = entry.format() {
            let text = self.file.slice(whole);
            if let Some(pos) = text.rfind(fmt.value_repr.as_str()) {
                return SourceSpan::new((whole.offset() + pos).into(), fmt.value_repr.len());
            }
        }
        whole
    }

    /// Byte-to-source map of a string entry's contents.
    fn string_map(&self, entry: &KdlEntry) -> Option<Arc<[usize]>> {
        let fmt = entry.format()?;
        let span = self.value_span(entry);
        string_offsets(&fmt.value_repr, span.offset()).map(Arc::from)
    }

    // ---- entry bookkeeping --------------------------------------------------------------

    /// Checks a node's entries: at most `max_args` positional values and only the listed
    /// properties, each at most once. Reports the rest.
    fn check_entries(&mut self, node: &KdlNode, max_args: usize, props: &[&str]) {
        let mut args = 0;
        let mut seen: Vec<&str> = Vec::new();
        for entry in node.entries() {
            match entry.name() {
                None => {
                    args += 1;
                    if args > max_args {
                        let what = node.name().value();
                        let msg = if max_args == 0 {
                            format!("`{what}` takes no positional values")
                        } else {
                            format!(
                                "`{what}` takes at most {max_args} positional value{}",
                                if max_args == 1 { "" } else { "s" }
                            )
                        };
                        self.err(
                            Code::ExtraValue,
                            entry.span(),
                            msg,
                            "unexpected value",
                            Some("remove it, or give it as a property (`key=value`)".into()),
                        );
                    }
                }
                Some(name) => {
                    let key = name.value();
                    if !props.contains(&key) {
                        let help = match did_you_mean(key, props.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None if props.is_empty() => {
                                format!("`{}` takes no properties", node.name().value())
                            }
                            None => {
                                format!("`{}` takes: {}", node.name().value(), props.join(", "))
                            }
                        };
                        self.err(
                            Code::UnknownProperty,
                            name.span(),
                            format!("unknown property `{key}` on `{}`", node.name().value()),
                            "unknown property",
                            Some(help),
                        );
                    } else if seen.contains(&key) {
                        self.err(
                            Code::Duplicate,
                            name.span(),
                            format!("property `{key}` is given twice"),
                            "second value",
                            Some("keep one of them".into()),
                        );
                    } else {
                        seen.push(key);
                    }
                }
            }
        }
    }

    fn args<'n>(&self, node: &'n KdlNode) -> Vec<&'n KdlEntry> {
        node.entries().iter().filter(|e| e.name().is_none()).collect()
    }

    fn prop<'n>(&self, node: &'n KdlNode, key: &str) -> Option<&'n KdlEntry> {
        node.entries().iter().find(|e| e.name().map(|n| n.value()) == Some(key))
    }

    /// The node's children, reporting any that are not in `allowed`.
    fn children<'n>(
        &mut self,
        node: &'n KdlNode,
        allowed: &[&str],
        extra_help: impl Fn(&str) -> Option<String>,
    ) -> Vec<&'n KdlNode> {
        let Some(doc) = node.children() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for child in doc.nodes() {
            let name = child.name().value();
            if allowed.contains(&name) {
                out.push(child);
                continue;
            }
            let help = extra_help(name)
                .or_else(|| did_you_mean(name, allowed.iter().copied()).map(|s| format!("did you mean `{s}`?")));
            let help = help.unwrap_or_else(|| format!("`{}` may contain: {}", node.name().value(), allowed.join(", ")));
            self.err(
                Code::UnknownNode,
                child.name().span(),
                format!("unknown node `{name}` in `{}`", node.name().value()),
                "unknown node",
                Some(help),
            );
        }
        out
    }

    fn no_children(&mut self, node: &KdlNode) {
        if let Some(doc) = node.children() {
            let span = doc.nodes().first().map_or(node.span(), |n| n.span());
            self.err(
                Code::ExtraValue,
                span,
                format!("`{}` takes no children", node.name().value()),
                "unexpected block",
                Some("remove the `{ … }` block".into()),
            );
        }
    }

    fn no_annotation(&mut self, entry: &KdlEntry, what: &str) -> bool {
        if let Some(ty) = entry.ty() {
            self.err(
                Code::UnknownAnnotation,
                ty.span(),
                format!("{what} can't be annotated with `({})`", ty.value()),
                "not allowed here",
                Some("remove the annotation; `(env)` and `(secret)` are for values sent to the device".into()),
            );
            return false;
        }
        true
    }

    // ---- typed values -------------------------------------------------------------------

    fn string(&mut self, entry: &KdlEntry, what: &str) -> Option<String> {
        if !self.no_annotation(entry, what) {
            return None;
        }
        match entry.value() {
            KdlValue::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(entry, what, "a string", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, entry: &KdlEntry, what: &str, expected: &str, got: &KdlValue) {
        let got = type_name(got);
        let span = self.value_span(entry);
        let help = if expected == "a string" {
            "put the value in double quotes".to_string()
        } else {
            format!("write {expected}")
        };
        self.err(
            Code::WrongType,
            span,
            format!("{what} must be {expected}, not {got}"),
            format!("this is {got}"),
            Some(help),
        );
    }

    fn integer(&mut self, entry: &KdlEntry, what: &str, min: i128, max: i128) -> Option<i128> {
        if !self.no_annotation(entry, what) {
            return None;
        }
        match entry.value() {
            KdlValue::Integer(i) if (min..=max).contains(i) => Some(*i),
            KdlValue::Integer(i) => {
                let span = self.value_span(entry);
                self.err(
                    Code::OutOfRange,
                    span,
                    format!("{what} {i} is out of range"),
                    format!("must be {min}..={max}"),
                    Some(format!("use a whole number from {min} to {max}")),
                );
                None
            }
            other => {
                self.wrong_type(entry, what, "a whole number", other);
                None
            }
        }
    }

    fn enumerated(&mut self, entry: &KdlEntry, what: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(entry, what)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let span = self.value_span(entry);
        let help = match did_you_mean(&s, allowed.iter().copied()) {
            Some(m) => format!("did you mean \"{m}\"? ({what} is one of: {})", allowed.join(", ")),
            None => format!("{what} is one of: {}", allowed.join(", ")),
        };
        self.err(Code::InvalidEnum, span, format!("\"{s}\" is not a valid {what}"), "not allowed", Some(help));
        None
    }

    /// The node's single positional value, reporting when it is missing.
    fn single_arg<'n>(&mut self, node: &'n KdlNode, what: &str, example: &str) -> Option<&'n KdlEntry> {
        let args = self.args(node);
        if args.is_empty() {
            self.err(
                Code::MissingValue,
                node.name().span(),
                format!("`{}` needs {what}", node.name().value()),
                "value missing",
                Some(format!("write `{example}`")),
            );
            return None;
        }
        Some(args[0])
    }

    fn named_arg(&mut self, node: &KdlNode, what: &str, example: &str) -> Option<(String, SourceSpan)> {
        let entry = self.single_arg(node, what, example)?;
        let s = self.string(entry, what)?;
        Some((s, self.value_span(entry)))
    }

    /// A value sent to the device: literal, `(env)`, `(secret)` or `(secret-env)`.
    fn scalar(&mut self, entry: &KdlEntry, what: &str, sensitive_slot: bool) -> Option<Scalar> {
        let span = self.value_span(entry);
        let origin = self.origin(entry.span());
        let annotation = entry.ty().map(|t| (t.value().to_string(), t.span()));
        let (source, sensitive) = match annotation.as_ref().map(|(a, s)| (a.as_str(), *s)) {
            None => (None, sensitive_slot),
            Some(("env", _)) => (Some(()), sensitive_slot),
            Some(("secret", _)) => (None, true),
            Some(("secret-env", _)) => (Some(()), true),
            Some((other, ty_span)) => {
                let help = match did_you_mean(other, ANNOTATIONS.iter().copied()) {
                    Some(s) => format!("did you mean `({s})`?"),
                    None => "use `(env)\"VAR\"`, `(secret)\"value\"` or `(secret-env)\"VAR\"`".to_string(),
                };
                self.err(
                    Code::UnknownAnnotation,
                    ty_span,
                    format!("unknown annotation `({other})` on {what}"),
                    "unknown annotation",
                    Some(help),
                );
                return None;
            }
        };
        if source.is_some() {
            let KdlValue::String(var) = entry.value() else {
                self.err(
                    Code::WrongType,
                    span,
                    format!("`(env)` on {what} must name a variable in a string"),
                    "not a string",
                    Some("write `(env)\"VARIABLE_NAME\"`".into()),
                );
                return None;
            };
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                self.err(
                    Code::InvalidName,
                    span,
                    format!("\"{var}\" is not an environment variable name"),
                    "invalid variable name",
                    Some("write `(env)\"VARIABLE_NAME\"`".into()),
                );
                return None;
            }
            return Some(Scalar {
                value: Value::String(var.clone()),
                source: ValueSource::Env(var.clone()),
                sensitive,
                origin,
            });
        }
        let value = self.json_scalar(entry, what)?;
        Some(Scalar { value, source: ValueSource::Literal, sensitive, origin })
    }

    /// A scalar that must end up a string (images, registry fields).
    fn string_scalar(&mut self, entry: &KdlEntry, what: &str, sensitive_slot: bool) -> Option<Scalar> {
        let s = self.scalar(entry, what, sensitive_slot)?;
        if !s.value.is_string() {
            self.wrong_type(entry, what, "a string", entry.value());
            return None;
        }
        Some(s)
    }

    fn required_prop<'n>(&mut self, node: &'n KdlNode, key: &str, example: &str) -> Option<&'n KdlEntry> {
        let found = self.prop(node, key);
        // A misspelling of `key` was already reported with a suggestion; don't pile on.
        let misspelled = node
            .entries()
            .iter()
            .filter_map(|e| e.name())
            .any(|n| n.value() != key && did_you_mean(n.value(), [key]).is_some());
        if found.is_none() && !misspelled {
            self.err(
                Code::MissingValue,
                node.name().span(),
                format!("`{}` needs `{key}=`", node.name().value()),
                format!("{key} missing"),
                Some(format!("write `{example}`")),
            );
        }
        found
    }

    fn query_text(&mut self, entry: &KdlEntry, what: &str) -> Option<QueryText> {
        let text = self.string(entry, what)?;
        Some(QueryText { text, offsets: self.string_map(entry), origin: self.origin(self.value_span(entry)) })
    }

    /// Keeps the first of two items of one name, reporting the second; true when it was kept.
    fn add_unique<T: Declared>(&mut self, items: &mut BTreeMap<String, T>, item: T) -> bool {
        if let Some(p) = checks::declared_twice(items, &item) {
            self.problems.push(p);
            return false;
        }
        items.insert(item.name().to_string(), item);
        true
    }

    /// Reports a node given twice in a deployment; returns true when it was.
    fn once(&mut self, node: &KdlNode, seen: bool) -> bool {
        let help = format!("a deployment has one `{}`; keep one", node.name().value());
        self.once_in(node, seen, &help)
    }

    /// Reports a node given twice, with `help` saying what its parent allows.
    fn once_in(&mut self, node: &KdlNode, seen: bool, help: &str) -> bool {
        if seen {
            self.err(
                Code::Duplicate,
                node.name().span(),
                format!("`{}` is given twice", node.name().value()),
                "second one",
                Some(help.to_owned()),
            );
        }
        seen
    }
}

fn type_name(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "a whole number",
        KdlValue::Float(_) => "a decimal number",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

#[cfg(test)]
mod tests;
