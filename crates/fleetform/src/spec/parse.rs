//! KDL -> typed model. Every problem is collected (never just the first), each with a span.

use std::collections::BTreeMap;
use std::sync::Arc;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use serde_json::{Map, Value};

use super::diag::{Code, Problem, did_you_mean};
use super::model::*;
use super::rules::{self, *};
use super::source::{SourceFile, string_offsets};

const DEPLOYMENT_CHILDREN: &[&str] =
    &["priority", "target", "label", "metric", "runtime", "module", "route", "twin", "adopt"];
const LAYERED_CHILDREN: &[&str] =
    &["priority", "target", "label", "metric", "registry", "module", "route", "twin", "adopt"];
const RUNTIME_PROPS: &[&str] = &["schema", "min-docker-version", "logging-options"];
const RUNTIME_CHILDREN: &[&str] = &["registry", "edge-agent", "edge-hub", "integrity"];
const AGENT_CHILDREN: &[&str] = &["create-options", "env", "image-pull-policy", "digest"];
const HUB_CHILDREN: &[&str] = &[
    "create-options",
    "env",
    "image-pull-policy",
    "startup-order",
    "status",
    "restart-policy",
    "store-and-forward",
    "digest",
    "mqtt-broker",
    "integrity",
];
const MODULE_CHILDREN: &[&str] =
    &["status", "restart-policy", "startup-order", "image-pull-policy", "env", "create-options", "twin", "digest"];
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
            Problem::new(Code::Syntax, file, d.span, message, d.label.unwrap_or_default()).with_help(
                d.help.unwrap_or_else(|| "fix the KDL syntax; see https://kdl.dev for the language".to_string()),
            )
        })
        .collect()
}

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

    fn json_scalar(&mut self, entry: &KdlEntry, what: &str) -> Option<Value> {
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

    // ---- deployments --------------------------------------------------------------------

    fn deployment(&mut self, node: &KdlNode, kind: DeploymentKind) -> Option<Deployment> {
        let kw = kind.node_name();
        self.check_entries(node, 1, &[]);
        let (name, name_span) = self.named_arg(node, "a name", &format!("{kw} \"my-deployment\" {{ … }}"))?;
        let name_ok = self.check_deployment_name(&name, name_span);

        // `runtime` is accepted here in layered deployments only to say why it can't be.
        let layered_allowed: Vec<&str> = LAYERED_CHILDREN.iter().copied().chain(["runtime"]).collect();
        let allowed = match kind {
            DeploymentKind::Standard => DEPLOYMENT_CHILDREN,
            DeploymentKind::Layered => &layered_allowed[..],
        };
        let children = self.children(node, allowed, |child| match (kind, child) {
            (DeploymentKind::Standard, "registry") => {
                Some("registry credentials of a standard deployment go inside `runtime { registry … }`".into())
            }
            (_, "edge-agent" | "edge-hub") => {
                Some(format!("`{child}` belongs inside `runtime {{ … }}` of a standard deployment"))
            }
            (_, "routes") => Some("write one `route \"name\" \"FROM … INTO …\"` per route".into()),
            (_, "modules") => Some("write one `module \"name\" image=\"…\" { … }` per module".into()),
            _ => None,
        });
        let mut priority = None;
        let mut target: Option<Option<QueryText>> = None;
        let mut labels = BTreeMap::new();
        let mut metrics: Vec<Metric> = Vec::new();
        let mut runtime = None;
        let mut registries = BTreeMap::new();
        let mut modules: BTreeMap<String, Module> = BTreeMap::new();
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        let mut twins = Vec::new();
        let mut adopt: Option<String> = None;
        let mut module_count = 0;

        for child in children {
            match child.name().value() {
                "priority" => {
                    if self.once(child, priority.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 1, &[]);
                    self.no_children(child);
                    if let Some(e) = self.single_arg(child, "a priority", "priority 10") {
                        priority = self.integer(e, "priority", 0, i32::MAX as i128).map(|p| Priority(p as i32));
                    }
                }
                "adopt" => {
                    if self.once(child, adopt.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 1, &[]);
                    self.no_children(child);
                    if let Some(e) = self.single_arg(child, "the hub id to adopt", "adopt \"legacy-deployment-1\"") {
                        adopt = self.string(e, "a hub configuration id");
                    }
                }
                "target" => {
                    if self.once(child, target.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 1, &[]);
                    self.no_children(child);
                    if let Some(e) = self.single_arg(child, "a target condition", "target \"tags.environment='prod'\"")
                    {
                        if matches!(e.value(), KdlValue::Null) {
                            target = Some(None);
                        } else if let Some(q) = self.query_text(e, "the target condition") {
                            if q.text.trim().is_empty() {
                                let span = self.value_span(e);
                                self.err(Code::InvalidQuery, span, "empty target condition", "targets no device", Some("write a condition such as \"tags.environment='prod'\" or \"*\" for every device; write `target #null` if this deployment should target nothing".into()));
                            } else {
                                target = Some(Some(q));
                            }
                        }
                    }
                }
                "label" => {
                    self.no_children(child);
                    for e in child.entries() {
                        let Some(key) = e.name() else {
                            self.err(
                                Code::MissingValue,
                                e.span(),
                                "labels are written as key=\"value\"",
                                "no key",
                                Some("write `label team=\"platform\"`".into()),
                            );
                            continue;
                        };
                        let Some(value) = self.string(e, "a label value") else {
                            continue;
                        };
                        let k = key.value().to_string();
                        if k.starts_with(RESERVED_LABEL_PREFIX) {
                            self.err(
                                Code::InvalidName,
                                key.span(),
                                format!("label `{k}` is reserved"),
                                "reserved by fleetform",
                                Some("fleetform writes `fleetform-*` labels itself; choose another key".into()),
                            );
                        } else if labels.insert(k.clone(), value).is_some() {
                            self.err(
                                Code::Duplicate,
                                key.span(),
                                format!("label `{k}` is set twice"),
                                "second value",
                                Some("keep one of them".into()),
                            );
                        }
                    }
                }
                "metric" => {
                    self.check_entries(child, 2, &[]);
                    self.no_children(child);
                    let args = self.args(child);
                    if args.len() < 2 {
                        self.err(
                            Code::MissingValue,
                            child.name().span(),
                            "`metric` needs a name and a query",
                            "incomplete metric",
                            Some("write `metric \"healthy\" \"SELECT deviceId FROM devices.modules WHERE …\"`".into()),
                        );
                        continue;
                    }
                    let (Some(mname), Some(q)) =
                        (self.string(args[0], "a metric name"), self.query_text(args[1], "a metric query"))
                    else {
                        continue;
                    };
                    let span = self.value_span(args[0]);
                    if q.text.trim().is_empty() {
                        let qspan = self.value_span(args[1]);
                        self.err(
                            Code::InvalidQuery,
                            qspan,
                            "empty metric query",
                            "empty",
                            Some("write a query such as \"SELECT deviceId FROM devices WHERE …\"".into()),
                        );
                        continue;
                    }
                    if mname.is_empty() || mname.chars().any(|c| c.is_whitespace() || ".$#".contains(c)) {
                        self.err(
                            Code::InvalidName,
                            span,
                            format!("\"{mname}\" is not a valid metric name"),
                            "invalid name",
                            Some("use letters, digits, `-` and `_`".into()),
                        );
                        continue;
                    }
                    if metrics.iter().any(|m| m.name == mname) {
                        self.err(
                            Code::Duplicate,
                            span,
                            format!("metric \"{mname}\" is declared twice"),
                            "second declaration",
                            Some("give each metric its own name".into()),
                        );
                        continue;
                    }
                    if metrics.len() == MAX_METRICS {
                        self.err(
                            Code::TooMany,
                            child.name().span(),
                            format!("more than {MAX_METRICS} metrics"),
                            "one too many",
                            Some(format!("the hub allows at most {MAX_METRICS} custom metrics per deployment")),
                        );
                        continue;
                    }
                    metrics.push(Metric { name: mname, query: q, origin: self.origin(child.span()) });
                }
                "runtime" if kind == DeploymentKind::Layered => {
                    self.err(Code::NotInLayered, child.name().span(), "a layered deployment can't set the runtime", "runtime in a layered deployment", Some("the runtime and system modules come from the standard deployment under it; move this into a `deployment`, or add only modules, routes and twin settings here".into()));
                }
                "runtime" => {
                    if self.once(child, runtime.is_some()) {
                        continue;
                    }
                    runtime = self.runtime(child);
                }
                "registry" => {
                    if let Some(r) = self.registry(child) {
                        self.add_registry(&mut registries, r);
                    }
                }
                "module" => {
                    module_count += 1;
                    if module_count == MAX_MODULES + 1 {
                        self.err(Code::TooMany, child.name().span(), format!("more than {MAX_MODULES} modules"), "module 51", Some(format!("the hub allows at most {MAX_MODULES} modules per deployment; split it into layered deployments")));
                    }
                    if let Some((m, m_twins)) = self.module(child, kind) {
                        if let Some(first) = modules.get(&m.name) {
                            let at = first.origin.location();
                            self.err(
                                Code::Duplicate,
                                m.origin.span,
                                format!("module \"{}\" is declared twice", m.name),
                                "second declaration",
                                Some(format!("first declared at {at}")),
                            );
                        } else {
                            twins.extend(m_twins);
                            modules.insert(m.name.clone(), m);
                        }
                    }
                }
                "route" => {
                    if let Some(r) = self.route(child) {
                        if let Some(first) = routes.get(&r.name) {
                            let at = first.origin.location();
                            self.err(
                                Code::Duplicate,
                                r.origin.span,
                                format!("route \"{}\" is declared twice", r.name),
                                "second declaration",
                                Some(format!("first declared at {at}")),
                            );
                        } else {
                            routes.insert(r.name.clone(), r);
                        }
                    }
                }
                "twin" => {
                    self.check_entries(child, 2, &["path"]);
                    let Some((module, span)) = self.named_arg(
                        child,
                        "the module whose twin it sets",
                        "twin \"MyModule\" path=\"settings\" { … }",
                    ) else {
                        continue;
                    };
                    if !valid_module_name(&module) {
                        self.err(
                            Code::InvalidName,
                            span,
                            format!("\"{module}\" is not a module name"),
                            "invalid module name",
                            Some(
                                "module twins are set for custom modules; routes and runtime have their own nodes"
                                    .into(),
                            ),
                        );
                        continue;
                    }
                    if let Some(t) = self.twin(child, module, 1) {
                        twins.push(t);
                    }
                }
                _ => {}
            }
        }

        if priority.is_none()
            && !node.children().is_some_and(|c| c.nodes().iter().any(|n| n.name().value() == "priority"))
        {
            self.err(
                Code::MissingValue,
                name_span,
                format!("{kw} \"{name}\" has no priority"),
                "priority missing",
                Some(
                    "add `priority 10` (higher wins; layered deployments must be above the standard one they extend)"
                        .into(),
                ),
            );
        }
        if target.is_none() && !node.children().is_some_and(|c| c.nodes().iter().any(|n| n.name().value() == "target"))
        {
            self.err(
                Code::MissingValue,
                name_span,
                format!("{kw} \"{name}\" has no target condition"),
                "target missing",
                Some("add `target \"tags.environment='prod'\"` (or `target #null` to target nothing)".into()),
            );
        }
        if kind == DeploymentKind::Standard
            && runtime.is_none()
            && !node.children().is_some_and(|c| c.nodes().iter().any(|n| n.name().value() == "runtime"))
        {
            self.err(Code::MissingValue, name_span, format!("standard deployment \"{name}\" has no runtime"), "runtime missing", Some("add `runtime { edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"; edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\" }`, or make it `layered`".into()));
        }
        self.check_twins(kind, &modules, &twins);
        self.check_routes_schema(runtime.as_ref(), &routes);

        Some(Deployment {
            name: DeploymentName(name),
            kind,
            priority: priority?,
            target: target?,
            labels,
            metrics,
            runtime: if kind == DeploymentKind::Standard { Some(runtime?) } else { None },
            registries,
            modules,
            routes,
            twins,
            adopt,
            origin: self.origin(name_span),
        })
        .filter(|_| name_ok)
    }

    /// Reports a node given twice; returns true when it was.
    fn once(&mut self, node: &KdlNode, seen: bool) -> bool {
        if seen {
            let name = node.name().value();
            self.err(
                Code::Duplicate,
                node.name().span(),
                format!("`{name}` is given twice"),
                "second one",
                Some(format!("a deployment has one `{name}`; keep one")),
            );
        }
        seen
    }

    fn check_deployment_name(&mut self, name: &str, span: SourceSpan) -> bool {
        if name.is_empty() {
            self.err(
                Code::InvalidName,
                span,
                "empty deployment name",
                "empty",
                Some("name it with lowercase letters, digits and `-`".into()),
            );
            return false;
        }
        if let Some((i, c)) = rules::first_bad_char(name, valid_deployment_char) {
            let at = span.offset() + 1 + i;
            let help = if c.is_ascii_uppercase() {
                format!("hub ids are lowercase; write \"{}\"", name.to_ascii_lowercase())
            } else {
                "use lowercase letters, digits and `- + % _ * ! '`".to_string()
            };
            self.err(
                Code::InvalidName,
                SourceSpan::new(at.into(), c.len_utf8()),
                format!("deployment name \"{name}\" contains '{c}'"),
                "not allowed in a hub id",
                Some(help),
            );
            return false;
        }
        if name.len() > MAX_NAME_LEN {
            self.err(Code::InvalidName, span, format!("deployment name is {} characters long", name.len()), format!("at most {MAX_NAME_LEN}"), Some(format!("hub ids have at most {MAX_ID_LEN} characters and fleetform appends `-` and an 8-digit content hash; shorten the name to {MAX_NAME_LEN}")));
            return false;
        }
        true
    }

    /// Keeps the first of two registries of one name, reporting the second.
    fn add_registry(&mut self, registries: &mut BTreeMap<String, Registry>, r: Registry) {
        if registries.contains_key(&r.name) {
            self.err(
                Code::Duplicate,
                r.origin.span,
                format!("registry \"{}\" is declared twice", r.name),
                "second declaration",
                Some("keep one".into()),
            );
        } else {
            registries.insert(r.name.clone(), r);
        }
    }

    fn registry(&mut self, node: &KdlNode) -> Option<Registry> {
        self.check_entries(node, 1, &["address", "username", "password"]);
        self.no_children(node);
        let example =
            "registry \"contoso\" address=\"contoso.azurecr.io\" username=\"contoso\" password=(env)\"ACR_PASSWORD\"";
        let (name, span) = self.named_arg(node, "a name", example)?;
        if !valid_route_or_registry_name(&name) {
            self.err(
                Code::InvalidName,
                span,
                format!("registry name \"{name}\" is not allowed"),
                "invalid name",
                Some("registry names can't contain `.`, `$`, `#` or spaces; the address goes in `address=`".into()),
            );
        }
        let address = self
            .required_prop(node, "address", example)
            .and_then(|e| self.string_scalar(e, "the registry address", false));
        let username = self
            .required_prop(node, "username", example)
            .and_then(|e| self.string_scalar(e, "the registry username", false));
        let password_entry = self.required_prop(node, "password", example);
        let password = password_entry.and_then(|e| self.string_scalar(e, "the registry password", true));
        if let (Some(e), Some(p)) = (password_entry, password.as_ref())
            && p.source == ValueSource::Literal
        {
            let span = self.value_span(e);
            self.err(
                Code::WrongType,
                span,
                "registry password written in the file",
                "secret in plain text",
                Some("read it from the environment: `password=(env)\"ACR_PASSWORD\"`".into()),
            );
        }
        if let Some(a) = &address
            && let Value::String(s) = &a.value
            && a.source == ValueSource::Literal
            && (s.is_empty() || s.chars().any(char::is_whitespace))
        {
            self.err(
                Code::InvalidName,
                a.origin.span,
                format!("registry address \"{s}\" is not a host name"),
                "invalid address",
                Some("write the registry host, e.g. \"contoso.azurecr.io\"".into()),
            );
        }
        Some(Registry {
            name,
            address: address?,
            username: username?,
            password: password?,
            origin: self.origin(node.span()),
        })
    }

    fn runtime(&mut self, node: &KdlNode) -> Option<Runtime> {
        self.check_entries(node, 0, RUNTIME_PROPS);
        let agent_schema = match self.prop(node, "schema") {
            Some(e) => self.enumerated(e, "edgeAgent schema version", AGENT_SCHEMAS)?,
            None => "1.1".to_string(),
        };
        let min_docker_version = match self.prop(node, "min-docker-version") {
            Some(e) => self.string(e, "min-docker-version")?,
            None => "v1.25".to_string(),
        };
        let logging_options = match self.prop(node, "logging-options") {
            Some(e) => self.string(e, "logging-options")?,
            None => String::new(),
        };
        let children = self.children(node, RUNTIME_CHILDREN, |c| match c {
            "module" => Some("custom modules go in the deployment, beside `runtime`".into()),
            _ => None,
        });
        let mut registries = BTreeMap::new();
        let mut agent = None;
        let mut hub = None;
        let mut hub_schema = "1.2".to_string();
        let mut ttl = 7200;
        let mut max_size = None;
        let mut mqtt_broker = None;
        let mut integrity = None;
        let mut hub_integrity = None;
        let mut ok = true;
        for child in children {
            match child.name().value() {
                "registry" => {
                    if let Some(r) = self.registry(child) {
                        self.add_registry(&mut registries, r);
                    } else {
                        ok = false;
                    }
                }
                "integrity" => {
                    if self.once(child, integrity.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 1, &[]);
                    if agent_schema != "1.3" {
                        self.err(
                            Code::OutOfRange,
                            child.name().span(),
                            format!("integrity needs edgeAgent schema 1.3 (this runtime has {agent_schema})"),
                            "needs schema 1.3",
                            Some("set `runtime schema=\"1.3\"`".into()),
                        );
                        ok = false;
                        continue;
                    }
                    match self.json_object_node(child, "integrity", "integrity { header { … } signature { … } }") {
                        Some(v) => integrity = Some(v),
                        None => ok = false,
                    }
                }
                "edge-agent" => {
                    if self.once(child, agent.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 0, &["image"]);
                    let image = self
                        .required_prop(child, "image", "edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"")
                        .and_then(|e| self.string_scalar(e, "the image", false));
                    let mut s = ModuleSettings { image, ..Default::default() };
                    let kids = self.children(child, AGENT_CHILDREN, |c| match c {
                        "status" | "restart-policy" | "startup-order" => {
                            Some("the agent always runs; it takes no status, restart policy or startup order".into())
                        }
                        _ => None,
                    });
                    ok &= self.settings_children(&kids, &mut s);
                    ok &= s.image.is_some();
                    agent = Some(s);
                }
                "edge-hub" => {
                    if self.once(child, hub.is_some()) {
                        continue;
                    }
                    self.check_entries(child, 0, &["image", "schema"]);
                    let image = self
                        .required_prop(child, "image", "edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\"")
                        .and_then(|e| self.string_scalar(e, "the image", false));
                    if let Some(e) = self.prop(child, "schema") {
                        match self.enumerated(e, "edgeHub schema version", HUB_SCHEMAS) {
                            Some(s) => hub_schema = s,
                            None => ok = false,
                        }
                    }
                    let mut s = ModuleSettings { image, ..Default::default() };
                    let kids = self.children(child, HUB_CHILDREN, |_| None);
                    for k in &kids {
                        if k.name().value() == "store-and-forward" {
                            self.check_entries(k, 0, &["ttl", "max-size-bytes"]);
                            self.no_children(k);
                            // edgeHub reads timeToLiveSecs as a 32-bit and maxSizeBytes as a
                            // 64-bit signed integer.
                            if let Some(e) = self.required_prop(k, "ttl", "store-and-forward ttl=7200") {
                                match self.integer(e, "store-and-forward ttl", 0, i32::MAX as i128) {
                                    Some(v) => ttl = v as u32,
                                    None => ok = false,
                                }
                            }
                            if let Some(e) = self.prop(k, "max-size-bytes") {
                                // edgeHub reads `storeLimits` from schema 1.2 on; an older
                                // hub would silently store without a limit.
                                if matches!(hub_schema.as_str(), "1.0" | "1.1") {
                                    self.err(
                                        Code::OutOfRange,
                                        e.span(),
                                        format!(
                                            "store-and-forward max-size-bytes needs edgeHub schema 1.2 or later (this edge-hub has {hub_schema})"
                                        ),
                                        "needs schema 1.2+",
                                        Some("set `edge-hub … schema=\"1.2\"`, or drop max-size-bytes".into()),
                                    );
                                    ok = false;
                                } else {
                                    match self.integer(e, "store-and-forward max-size-bytes", 0, i64::MAX as i128) {
                                        Some(v) => max_size = Some(v as u64),
                                        None => ok = false,
                                    }
                                }
                            }
                        }
                    }
                    for k in kids.iter().filter(|k| k.name().value() == "integrity") {
                        if self.once(k, hub_integrity.is_some()) {
                            continue;
                        }
                        self.check_entries(k, 1, &[]);
                        if hub_schema != "1.3" {
                            self.err(
                                Code::OutOfRange,
                                k.name().span(),
                                format!("edge-hub integrity needs edgeHub schema 1.3 (this edge-hub has {hub_schema})"),
                                "needs schema 1.3",
                                Some("set `edge-hub … schema=\"1.3\"`".into()),
                            );
                            ok = false;
                            continue;
                        }
                        match self.json_object_node(k, "integrity", "integrity { header { … } signature { … } }") {
                            Some(v) => hub_integrity = Some(v),
                            None => ok = false,
                        }
                    }
                    for k in kids.iter().filter(|k| k.name().value() == "mqtt-broker") {
                        if self.once(k, mqtt_broker.is_some()) {
                            continue;
                        }
                        match self.mqtt_broker(k, &hub_schema) {
                            Some(v) => mqtt_broker = Some(v),
                            None => ok = false,
                        }
                    }
                    ok &= self.settings_children(&kids, &mut s);
                    ok &= s.image.is_some();
                    hub = Some(s);
                }
                _ => {}
            }
        }
        for (which, value) in [("edge-agent", &agent), ("edge-hub", &hub)] {
            if value.is_none() {
                let example = if which == "edge-agent" {
                    "mcr.microsoft.com/azureiotedge-agent:1.5"
                } else {
                    "mcr.microsoft.com/azureiotedge-hub:1.5"
                };
                self.err(
                    Code::MissingValue,
                    node.name().span(),
                    format!("runtime has no `{which}`"),
                    format!("{which} missing"),
                    Some(format!("add `{which} image=\"{example}\"` inside `runtime {{ … }}`")),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Runtime {
            agent_schema,
            hub_schema,
            min_docker_version,
            logging_options,
            registries,
            edge_agent: agent?,
            edge_hub: hub?,
            store_and_forward_ttl: ttl,
            store_max_size_bytes: max_size,
            mqtt_broker,
            integrity,
            hub_integrity,
            origin: self.origin(node.span()),
        })
    }

    /// Children shared by modules and system modules. Returns false when any was invalid.
    fn settings_children(&mut self, kids: &[&KdlNode], s: &mut ModuleSettings) -> bool {
        let before = self.problems.len();
        let mut seen: Vec<&str> = Vec::new();
        for k in kids {
            let name = k.name().value();
            if matches!(name, "env" | "twin" | "store-and-forward" | "mqtt-broker" | "integrity") {
                // `env` may repeat; the others are handled by the caller.
                if name == "env" {
                    self.env(k, &mut s.env);
                }
                continue;
            }
            if seen.contains(&name) {
                self.err(
                    Code::Duplicate,
                    k.name().span(),
                    format!("`{name}` is given twice"),
                    "second one",
                    Some("keep one".into()),
                );
                continue;
            }
            seen.push(name);
            match name {
                "status" | "restart-policy" | "image-pull-policy" | "startup-order" => {
                    self.check_entries(k, 1, &[]);
                    self.no_children(k);
                    let Some(e) = self.single_arg(k, "a value", &format!("{name} …")) else {
                        continue;
                    };
                    match name {
                        "status" => s.status = self.enumerated(e, "status", STATUSES),
                        "restart-policy" => s.restart_policy = self.enumerated(e, "restart policy", RESTART_POLICIES),
                        "image-pull-policy" => {
                            s.image_pull_policy = self.enumerated(e, "image pull policy", IMAGE_PULL_POLICIES)
                        }
                        _ => s.startup_order = self.integer(e, "startup order", 0, u32::MAX as i128).map(|v| v as u32),
                    }
                }
                "create-options" => s.create_options = self.create_options(k),
                "digest" => {
                    self.check_entries(k, 1, &[]);
                    self.no_children(k);
                    if let Some(e) = self.single_arg(k, "a digest", "digest \"sha256:…\"") {
                        s.digest = self.string(e, "digest");
                    }
                }
                _ => {}
            }
        }
        self.problems.len() == before
    }

    fn env(&mut self, node: &KdlNode, env: &mut BTreeMap<String, Scalar>) {
        self.no_children(node);
        for e in node.entries() {
            let Some(key) = e.name() else {
                self.err(
                    Code::MissingValue,
                    e.span(),
                    "environment variables are written as NAME=value",
                    "no name",
                    Some("write `env SEND_INTERVAL=\"5\"`".into()),
                );
                continue;
            };
            let k = key.value();
            if let Some((i, c)) =
                rules::first_bad_char(k, |c| !("+#$.".contains(c) || c.is_whitespace())).filter(|_| !k.is_empty())
            {
                let _ = i;
                self.err(
                    Code::InvalidName,
                    key.span(),
                    format!("environment variable name \"{k}\" contains '{c}'"),
                    "invalid name",
                    Some("names can't contain `+`, `#`, `$`, `.` or white space".into()),
                );
                continue;
            }
            let Some(v) = self.scalar(e, "an environment value", false) else {
                continue;
            };
            if v.source == ValueSource::Literal && !(v.value.is_string() || v.value.is_number() || v.value.is_boolean())
            {
                self.wrong_type(e, "an environment value", "a string, number or boolean", e.value());
                continue;
            }
            if env.insert(k.to_string(), v).is_some() {
                self.err(
                    Code::Duplicate,
                    key.span(),
                    format!("environment variable {k} is set twice"),
                    "second value",
                    Some("keep one".into()),
                );
            }
        }
    }

    /// `mqtt-broker { … }` or `mqtt-broker "{json}"`: a JSON object, edgeHub schema 1.2+.
    fn mqtt_broker(&mut self, node: &KdlNode, hub_schema: &str) -> Option<Value> {
        self.check_entries(node, 1, &[]);
        if matches!(hub_schema, "1.0" | "1.1") {
            self.err(
                Code::OutOfRange,
                node.name().span(),
                format!("mqtt-broker needs edgeHub schema 1.2 or later (this edge-hub has {hub_schema})"),
                "needs schema 1.2+",
                Some("set `edge-hub … schema=\"1.2\"`".into()),
            );
            return None;
        }
        self.json_object_node(node, "mqtt-broker", "mqtt-broker { authorizations { … } bridges { … } }")
    }

    /// A node holding one JSON object: a JSON string argument, or JSON-in-KDL children.
    fn json_object_node(&mut self, node: &KdlNode, what: &str, example: &str) -> Option<Value> {
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

    fn create_options(&mut self, node: &KdlNode) -> Option<CreateOptions> {
        self.check_entries(node, 1, &[]);
        let args = self.args(node);
        let origin = self.origin(node.span());
        if let Some(e) = args.first() {
            if node.children().is_some() {
                self.err(
                    Code::ExtraValue,
                    node.name().span(),
                    "create-options is given both as a string and as children",
                    "both forms",
                    Some("keep one: a JSON string, or KDL children".into()),
                );
                return None;
            }
            let text = self.string(e, "create-options")?;
            let doc = self.raw_json(e, &text, "create-options")?;
            if !doc.is_object() {
                let span = self.value_span(e);
                self.err(
                    Code::InvalidJson,
                    span,
                    "create-options must be a JSON object",
                    "not an object",
                    Some("write the Docker create options as {\"HostConfig\": {…}}".into()),
                );
                return None;
            }
            self.create_options_size(&doc, node)?;
            return Some(CreateOptions { doc: JsonDoc { value: doc, scalars: Vec::new() }, origin });
        }
        let Some(children) = node.children() else {
            self.err(
                Code::MissingValue,
                node.name().span(),
                "create-options is empty",
                "no value",
                Some("write a JSON string (`create-options #\"{…}\"#`) or KDL children".into()),
            );
            return None;
        };
        let mut scalars = Vec::new();
        let before = self.problems.len();
        let value = Value::Object(self.jik_object(children, "", &mut scalars, false));
        if self.problems.len() != before {
            return None;
        }
        if !scalars.is_empty() {
            let span = scalars[0].1.origin.span;
            self.err(Code::UnknownAnnotation, span, "create-options can't read values from the environment or hold secrets", "annotated value", Some("create options are stored in clear on the hub; pass secrets to the module through `env` with `(secret-env)`".into()));
            return None;
        }
        self.create_options_size(&value, node)?;
        Some(CreateOptions { doc: JsonDoc { value, scalars }, origin })
    }

    /// The agent joins at most 100 pieces of 512 characters.
    fn create_options_size(&mut self, value: &Value, node: &KdlNode) -> Option<()> {
        let chars = serde_json::to_string(value).map_or(0, |s| s.chars().count());
        let max = CREATE_OPTIONS_CHUNK * MAX_CREATE_OPTIONS_CHUNKS;
        if chars > max {
            self.err(
                Code::TooMany,
                node.name().span(),
                format!("create-options is {chars} characters long once compacted"),
                format!("at most {max}"),
                Some("the agent joins at most 100 pieces of 512 characters; move large configuration into the module twin".into()),
            );
            return None;
        }
        Some(())
    }

    /// Parses a JSON string written in KDL, pointing a syntax error at the exact character.
    fn raw_json(&mut self, entry: &KdlEntry, text: &str, what: &str) -> Option<Value> {
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

    fn module(&mut self, node: &KdlNode, kind: DeploymentKind) -> Option<(Module, Vec<TwinSetting>)> {
        self.check_entries(node, 1, &["image", "version"]);
        let (name, span) =
            self.named_arg(node, "a name", "module \"Monitor\" image=\"contoso.azurecr.io/monitor:2.1\"")?;
        let mut ok = true;
        if SYSTEM_MODULES.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            let help = match kind {
                DeploymentKind::Layered => {
                    "layered deployments can't change system modules; set edgeAgent and edgeHub in the standard deployment's `runtime`"
                }
                DeploymentKind::Standard => "system modules are set in `runtime { edge-agent …; edge-hub … }`",
            };
            let code = if kind == DeploymentKind::Layered { Code::NotInLayered } else { Code::InvalidName };
            self.err(code, span, format!("\"{name}\" is a system module"), "system module", Some(help.into()));
            ok = false;
        } else if let Some((i, c)) = rules::first_bad_char(&name, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(
                Code::InvalidName,
                SourceSpan::new((span.offset() + 1 + i).into(), c.len_utf8()),
                format!("module name \"{name}\" contains '{c}'"),
                "not allowed",
                Some("module names use letters, digits, `_` and `-`".into()),
            );
            ok = false;
        }
        let image = self
            .required_prop(node, "image", &format!("module \"{name}\" image=\"registry/image:tag\""))
            .and_then(|e| self.string_scalar(e, "the image", false));
        let version = match self.prop(node, "version") {
            Some(e) => Some(self.string(e, "the module version")?),
            None => None,
        };
        let kids = self.children(node, MODULE_CHILDREN, |c| match c {
            "image" => Some(format!("the image is a property: `module \"{name}\" image=\"…\"`")),
            _ => None,
        });
        let mut settings = ModuleSettings { image, ..Default::default() };
        ok &= self.settings_children(&kids, &mut settings);
        let mut twins = Vec::new();
        for k in kids.iter().filter(|k| k.name().value() == "twin") {
            self.check_entries(k, 1, &["path"]);
            match self.twin(k, name.clone(), 0) {
                Some(t) => twins.push(t),
                None => ok = false,
            }
        }
        if !ok || settings.image.is_none() {
            return None;
        }
        Some((Module { name, version, settings, origin: self.origin(span) }, twins))
    }

    /// A `twin` node: desired properties for a module twin, whole or under `path=`.
    /// `arg_index` is where the optional raw-JSON argument sits (after the module name at top level).
    fn twin(&mut self, node: &KdlNode, module: String, arg_index: usize) -> Option<TwinSetting> {
        let mut path = Vec::new();
        if let Some(e) = self.prop(node, "path") {
            let p = self.string(e, "the twin path")?;
            let span = self.value_span(e);
            for seg in p.split('.') {
                if seg.is_empty() || seg.chars().any(|c| c == '$' || c == ' ' || c.is_control()) {
                    self.err(Code::InvalidName, span, format!("twin path \"{p}\" is not valid"), "invalid path", Some("write dotted property names, e.g. path=\"settings.camera\"; names can't be empty or contain `$` or spaces".into()));
                    return None;
                }
                path.push(seg.to_string());
            }
            if path.first().is_some_and(|s| s == "properties") {
                self.err(
                    Code::InvalidName,
                    span,
                    "twin path starts with `properties`",
                    "already inside properties.desired",
                    Some("paths are relative to properties.desired; drop the `properties.desired.` prefix".into()),
                );
                return None;
            }
        }
        let args = self.args(node);
        let mut scalars = Vec::new();
        let before = self.problems.len();
        let value = if let Some(e) = args.get(arg_index) {
            if node.children().is_some() {
                self.err(
                    Code::ExtraValue,
                    node.name().span(),
                    "twin is given both as a JSON string and as children",
                    "both forms",
                    Some("keep one".into()),
                );
                return None;
            }
            let text = self.string(e, "twin properties")?;
            let v = self.raw_json(e, &text, "twin properties")?;
            self.check_twin_keys(&v, self.value_span(e));
            v
        } else if let Some(children) = node.children() {
            Value::Object(self.jik_object(children, "", &mut scalars, true))
        } else {
            self.err(
                Code::MissingValue,
                node.name().span(),
                "twin sets no properties",
                "empty",
                Some("write properties as children: `twin { interval 30 }` (or `twin {}` to clear them)".into()),
            );
            return None;
        };
        if path.is_empty() && !value.is_object() {
            self.err(
                Code::WrongType,
                node.name().span(),
                "the whole desired-properties document must be an object",
                "not an object",
                Some("give properties as children, or add path=\"name\" to set one property".into()),
            );
            return None;
        }
        if self.problems.len() != before {
            return None;
        }
        Some(TwinSetting { module, path, doc: JsonDoc { value, scalars }, origin: self.origin(node.span()) })
    }

    fn check_twin_keys(&mut self, v: &Value, span: SourceSpan) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                if k.is_empty() || k.chars().any(|c| c == '.' || c == '$' || c == ' ' || c.is_control()) {
                    self.err(
                        Code::InvalidName,
                        span,
                        format!("twin property name \"{k}\" is not allowed"),
                        "invalid property name",
                        Some("twin property names can't contain `.`, `$`, spaces or control characters".into()),
                    );
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
    fn jik_object(
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
            if twin_keys && (key.is_empty() || key.chars().any(|c| c == '.' || c == '$' || c == ' ' || c.is_control()))
            {
                self.err(
                    Code::InvalidName,
                    node.name().span(),
                    format!("twin property name \"{key}\" is not allowed"),
                    "invalid property name",
                    Some("twin property names can't contain `.`, `$`, spaces or control characters".into()),
                );
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

    fn route(&mut self, node: &KdlNode) -> Option<Route> {
        self.check_entries(node, 2, &["priority", "ttl"]);
        self.no_children(node);
        let example = "route \"upstream\" \"FROM /messages/* INTO $upstream\"";
        let args = self.args(node);
        if args.len() < 2 {
            self.err(
                Code::MissingValue,
                node.name().span(),
                "`route` needs a name and the route",
                "incomplete route",
                Some(format!("write `{example}`")),
            );
            return None;
        }
        let name = self.string(args[0], "a route name")?;
        let name_span = self.value_span(args[0]);
        if !valid_route_or_registry_name(&name) {
            self.err(
                Code::InvalidName,
                name_span,
                format!("route name \"{name}\" is not allowed"),
                "invalid name",
                Some("route names can't contain `.`, `$`, `#` or spaces".into()),
            );
            return None;
        }
        let text = self.query_text(args[1], "the route")?;
        let priority = match self.prop(node, "priority") {
            Some(e) => Some(self.integer(e, "route priority", 0, 9)? as u8),
            None => None,
        };
        let ttl = match self.prop(node, "ttl") {
            Some(e) => Some(self.integer(e, "route ttl", 0, u32::MAX as i128)? as u32),
            None => None,
        };
        Some(Route { name, text, priority, ttl, origin: self.origin(name_span) })
    }

    fn check_twins(&mut self, kind: DeploymentKind, modules: &BTreeMap<String, Module>, twins: &[TwinSetting]) {
        for (i, t) in twins.iter().enumerate() {
            if kind == DeploymentKind::Standard && !modules.contains_key(&t.module) {
                self.err(
                    Code::UnknownNode,
                    t.origin.span,
                    format!("twin settings for module \"{}\", which this deployment does not declare", t.module),
                    "unknown module",
                    Some("declare the module here, or set its twin from a layered deployment".into()),
                );
            }
            for earlier in &twins[..i] {
                if earlier.module != t.module {
                    continue;
                }
                let overlap = earlier.path.is_empty()
                    || t.path.is_empty()
                    || earlier.path.starts_with(&t.path)
                    || t.path.starts_with(&earlier.path);
                if overlap {
                    let at = earlier.origin.location();
                    self.err(Code::Duplicate, t.origin.span, format!("twin settings for \"{}\" overlap", t.module), "overlaps an earlier twin node", Some(format!("the earlier one is at {at}; merge them into one node or use paths that don't contain each other")));
                }
            }
        }
    }

    fn check_routes_schema(&mut self, runtime: Option<&Runtime>, routes: &BTreeMap<String, Route>) {
        let Some(rt) = runtime else { return };
        if rt.hub_schema != "1.0" {
            return;
        }
        for r in routes.values() {
            if r.priority.is_some() || r.ttl.is_some() {
                self.err(
                    Code::OutOfRange,
                    r.origin.span,
                    format!("route \"{}\" has a priority or ttl, which edgeHub schema 1.0 does not support", r.name),
                    "needs schema 1.1 or later",
                    Some("set `edge-hub … schema=\"1.2\"` or drop priority= and ttl=".into()),
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(doc: &KdlDocument, kind: &str, out: &mut std::collections::BTreeSet<String>) {
        for n in doc.nodes() {
            if n.name().value() == kind
                && let Some(KdlValue::String(s)) = n.entries().first().filter(|e| e.name().is_none()).map(|e| e.value())
            {
                out.insert(s.clone());
            }
            if let Some(c) = n.children() {
                names_in(c, kind, out);
            }
        }
    }

    fn runtime_with(hub_body: &str, module_body: &str) -> (Vec<Deployment>, Vec<Problem>) {
        let text = format!(
            "deployment \"d\" {{\n    priority 1\n    target \"*\"\n    runtime schema=\"1.3\" {{\n        edge-agent image=\"a:1\"\n        edge-hub image=\"h:1\" {{\n            {hub_body}\n        }}\n    }}\n    module \"m\" image=\"m:1\" {{\n        {module_body}\n    }}\n}}\n"
        );
        let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text));
        let mut problems = Vec::new();
        let ds = parse_file(&file, &mut problems);
        (ds, problems)
    }

    /// Numbers are checked against the width edgeHub reads them with: timeToLiveSecs is
    /// an int32, storeLimits.maxSizeBytes an int64.
    #[test]
    fn store_and_forward_numbers_fit_the_hubs_types() {
        let (ds, p) = runtime_with("store-and-forward ttl=2147483647 max-size-bytes=9223372036854775807", "");
        assert!(p.is_empty(), "{p:?}");
        let rt = ds[0].runtime.as_ref().unwrap();
        assert_eq!((rt.store_and_forward_ttl, rt.store_max_size_bytes), (i32::MAX as u32, Some(i64::MAX as u64)));
        for bad in ["store-and-forward ttl=3000000000", "store-and-forward ttl=1 max-size-bytes=9223372036854775808"] {
            let (_, p) = runtime_with(bad, "");
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].to_string().contains("store-and-forward"), "{bad}: {}", p[0]);
        }
    }

    #[test]
    fn store_limits_need_edge_hub_schema_1_2() {
        let file = Arc::new(SourceFile::new(
            "t.kdl",
            "t.kdl",
            "deployment \"d\" {\n priority 1\n target \"*\"\n runtime {\n edge-agent image=\"a:1\"\n edge-hub image=\"h:1\" schema=\"1.1\" {\n store-and-forward ttl=10 max-size-bytes=100\n }\n }\n}\n".to_string(),
        ));
        let mut p = Vec::new();
        parse_file(&file, &mut p);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].to_string().contains("max-size-bytes needs edgeHub schema 1.2"), "{}", p[0]);
        // Line 7, at `max-size-bytes=100`.
        assert_eq!(file.line_col(p[0].span.offset()).0, 7);
    }

    #[test]
    fn mqtt_broker_is_an_edge_hub_json_object() {
        let (ds, p) = runtime_with("mqtt-broker {\n bridges {\n - endpoint=\"$upstream\"\n }\n }", "");
        assert!(p.is_empty(), "{p:?}");
        let rt = ds[0].runtime.as_ref().unwrap();
        assert_eq!(rt.mqtt_broker, Some(serde_json::json!({ "bridges": [{ "endpoint": "$upstream" }] })));
        // The edge hub reads `integrity` only from schema 1.3 (the default here is 1.2).
        let (_, p) = runtime_with("integrity {\n signature bytes=\"b\"\n }", "");
        assert!(p.len() == 1 && p[0].to_string().contains("needs edgeHub schema 1.3"), "{p:?}");
        for bad in ["mqtt-broker \"[1]\"", "mqtt-broker", "mqtt-broker (env)\"X\""] {
            let (_, p) = runtime_with(bad, "");
            assert!(!p.is_empty(), "{bad}");
        }
    }

    #[test]
    fn integrity_needs_agent_schema_1_3() {
        let text = |schema: &str| {
            format!(
                "deployment \"d\" {{\n priority 1\n target \"*\"\n runtime schema=\"{schema}\" {{\n integrity {{\n signature bytes=\"b\" algorithm=\"ES256\"\n }}\n edge-agent image=\"a:1\"\n edge-hub image=\"h:1\"\n }}\n}}\n"
            )
        };
        let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text("1.3")));
        let mut p = Vec::new();
        let ds = parse_file(&file, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            ds[0].runtime.as_ref().unwrap().integrity,
            Some(serde_json::json!({ "signature": { "bytes": "b", "algorithm": "ES256" } }))
        );
        let file = Arc::new(SourceFile::new("t.kdl", "t.kdl", text("1.1")));
        let mut p = Vec::new();
        parse_file(&file, &mut p);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].to_string().contains("integrity needs edgeAgent schema 1.3"), "{}", p[0]);
    }

    #[test]
    fn digest_is_a_module_setting() {
        let (ds, p) = runtime_with("", "digest \"sha256:abc\"");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(ds[0].modules["m"].settings.digest.as_deref(), Some("sha256:abc"));
        let (_, p) = runtime_with("", "digest 5");
        assert_eq!(p.len(), 1, "{p:?}");
    }

    /// schema/fleetform.kdl documents exactly the nodes and properties the parser accepts.
    #[test]
    fn schema_file_matches_the_parser() {
        let doc: KdlDocument = include_str!("../../../../schema/fleetform.kdl").parse().unwrap();
        let mut nodes = std::collections::BTreeSet::new();
        names_in(&doc, "node", &mut nodes);
        let mut props = std::collections::BTreeSet::new();
        names_in(&doc, "prop", &mut props);
        let parser_nodes: std::collections::BTreeSet<String> = [
            DEPLOYMENT_CHILDREN,
            LAYERED_CHILDREN,
            RUNTIME_CHILDREN,
            AGENT_CHILDREN,
            HUB_CHILDREN,
            MODULE_CHILDREN,
            &["deployment", "layered"],
        ]
        .concat()
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(nodes, parser_nodes);
        let parser_props: std::collections::BTreeSet<String> = [
            RUNTIME_PROPS,
            &[
                "image",
                "version",
                "schema",
                "ttl",
                "max-size-bytes",
                "path",
                "priority",
                "address",
                "username",
                "password",
            ],
        ]
        .concat()
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(props, parser_props);
    }
}
