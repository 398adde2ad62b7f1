//! `deployment "name" { … }` and `layered "name" { … }`: the node, its name, and each of
//! its direct children that is not a node of its own (priority, target, labels, metrics,
//! adopt, top-level twin settings).

use std::collections::BTreeMap;

use kdl::{KdlNode, KdlValue};
use miette::SourceSpan;

use super::Cx;
use crate::spec::checks;
use crate::spec::diag::Code;
use crate::spec::model::*;
use crate::spec::rules::{self, *};

pub(super) const DEPLOYMENT_CHILDREN: &[&str] =
    &["priority", "target", "label", "metric", "runtime", "module", "route", "twin", "adopt", "rollout"];
pub(super) const LAYERED_CHILDREN: &[&str] =
    &["priority", "target", "label", "metric", "registry", "module", "route", "twin", "adopt", "rollout"];

/// What the children of one deployment node decoded to so far. `None` is "not given, or
/// given but invalid"; the node's own text tells the two apart where it matters.
#[derive(Default)]
struct Parts {
    priority: Option<Priority>,
    /// `Some(None)` is `target #null`.
    target: Option<Option<QueryText>>,
    labels: BTreeMap<String, String>,
    metrics: Vec<Metric>,
    runtime: Option<Runtime>,
    registries: BTreeMap<String, Registry>,
    modules: BTreeMap<String, Module>,
    routes: BTreeMap<String, Route>,
    twins: Vec<TwinSetting>,
    adopt: Option<String>,
    /// `Some(None)`: a `rollout` node that was reported broken.
    rollout: Option<Option<Rollout>>,
    /// Every `module` node seen, valid or not: the hub's limit counts what is written.
    module_count: usize,
}

impl Cx<'_> {
    pub(super) fn deployment(&mut self, node: &KdlNode, kind: DeploymentKind) -> Option<Deployment> {
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
        let children = self.children(node, allowed, |child| misplaced_child_help(kind, child));
        let mut parts = Parts::default();
        for child in children {
            match child.name().value() {
                "priority" => self.priority(child, &mut parts),
                "adopt" => self.adopt(child, &mut parts),
                "target" => self.target(child, &mut parts),
                "label" => self.labels(child, &mut parts),
                "metric" => self.metric(child, &mut parts),
                "runtime" if kind == DeploymentKind::Layered => self.runtime_in_layered(child),
                "runtime" => self.standard_runtime(child, &mut parts),
                "registry" => {
                    if let Some(r) = self.registry(child) {
                        self.add_unique(&mut parts.registries, r);
                    }
                }
                "module" => self.deployment_module(child, kind, &mut parts),
                "route" => {
                    if let Some(r) = self.route(child) {
                        self.add_unique(&mut parts.routes, r);
                    }
                }
                "twin" => self.top_level_twin(child, &mut parts),
                "rollout" if !self.once(child, parts.rollout.is_some()) => parts.rollout = Some(self.rollout(child)),
                _ => {}
            }
        }
        self.required_children(node, kind, &name, name_span, &parts);
        if let (Some(Some(r)), Some(target)) = (&parts.rollout, &parts.target) {
            self.rollout_fits_target(r, target.as_ref());
        }
        checks::check_deployment_parts(
            kind,
            &parts.modules,
            &parts.twins,
            parts.runtime.as_ref(),
            &parts.routes,
            self.problems,
        );
        checks::check_queries(
            parts.target.as_ref().and_then(Option::as_ref),
            &parts.metrics,
            &parts.routes,
            self.problems,
        );

        let Parts {
            priority,
            target,
            labels,
            metrics,
            runtime,
            registries,
            modules,
            routes,
            twins,
            adopt,
            rollout,
            ..
        } = parts;
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
            rollout: match rollout {
                None => None,
                Some(r) => Some(r?),
            },
            origin: self.origin(name_span),
        })
        .filter(|_| name_ok)
    }

    fn priority(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.priority.is_some()) {
            return;
        }
        self.check_entries(child, 1, &[]);
        self.no_children(child);
        if let Some(e) = self.single_arg(child, "a priority", "priority 10") {
            parts.priority = self.integer(e, "priority", 0, i32::MAX as i128).map(|p| Priority(p as i32));
        }
    }

    fn adopt(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.adopt.is_some()) {
            return;
        }
        self.check_entries(child, 1, &[]);
        self.no_children(child);
        if let Some(e) = self.single_arg(child, "the hub id to adopt", "adopt \"legacy-deployment-1\"") {
            parts.adopt = self.string(e, "a hub configuration id");
        }
    }

    fn target(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.target.is_some()) {
            return;
        }
        self.check_entries(child, 1, &[]);
        self.no_children(child);
        let Some(e) = self.single_arg(child, "a target condition", "target \"tags.environment='prod'\"") else {
            return;
        };
        if matches!(e.value(), KdlValue::Null) {
            parts.target = Some(None);
        } else if let Some(q) = self.query_text(e, "the target condition") {
            if q.text.trim().is_empty() {
                let span = self.value_span(e);
                self.err(Code::InvalidQuery, span, "empty target condition", "targets no device", Some("write a condition such as \"tags.environment='prod'\" or \"*\" for every device; write `target #null` if this deployment should target nothing".into()));
            } else {
                parts.target = Some(Some(q));
            }
        }
    }

    /// `label key="value" …`; several `label` nodes add up.
    fn labels(&mut self, child: &KdlNode, parts: &mut Parts) {
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
            } else if parts.labels.insert(k.clone(), value).is_some() {
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

    fn metric(&mut self, child: &KdlNode, parts: &mut Parts) {
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
            return;
        }
        let (Some(name), Some(query)) =
            (self.string(args[0], "a metric name"), self.query_text(args[1], "a metric query"))
        else {
            return;
        };
        let span = self.value_span(args[0]);
        if query.text.trim().is_empty() {
            let qspan = self.value_span(args[1]);
            self.err(
                Code::InvalidQuery,
                qspan,
                "empty metric query",
                "empty",
                Some("write a query such as \"SELECT deviceId FROM devices WHERE …\"".into()),
            );
            return;
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || ".$#".contains(c)) {
            self.err(
                Code::InvalidName,
                span,
                format!("\"{name}\" is not a valid metric name"),
                "invalid name",
                Some("use letters, digits, `-` and `_`".into()),
            );
            return;
        }
        if let Some(p) = checks::metric_fits(&parts.metrics, &name, &self.origin(span), child.name().span()) {
            self.problems.push(p);
            return;
        }
        parts.metrics.push(Metric { name, query, origin: self.origin(child.span()) });
    }

    fn runtime_in_layered(&mut self, child: &KdlNode) {
        self.err(Code::NotInLayered, child.name().span(), "a layered deployment can't set the runtime", "runtime in a layered deployment", Some("the runtime and system modules come from the standard deployment under it; move this into a `deployment`, or add only modules, routes and twin settings here".into()));
    }

    fn standard_runtime(&mut self, child: &KdlNode, parts: &mut Parts) {
        if !self.once(child, parts.runtime.is_some()) {
            parts.runtime = self.runtime(child);
        }
    }

    fn deployment_module(&mut self, child: &KdlNode, kind: DeploymentKind, parts: &mut Parts) {
        parts.module_count += 1;
        if let Some(p) = checks::module_count(parts.module_count, &self.origin(child.name().span())) {
            self.problems.push(p);
        }
        if let Some((m, m_twins)) = self.module(child, kind)
            && self.add_unique(&mut parts.modules, m)
        {
            parts.twins.extend(m_twins);
        }
    }

    /// `twin "Module" path="…" { … }` beside the modules, for any module of the device.
    fn top_level_twin(&mut self, child: &KdlNode, parts: &mut Parts) {
        self.check_entries(child, 2, &["path"]);
        let Some((module, span)) =
            self.named_arg(child, "the module whose twin it sets", "twin \"MyModule\" path=\"settings\" { … }")
        else {
            return;
        };
        if !valid_module_name(&module) {
            self.err(
                Code::InvalidName,
                span,
                format!("\"{module}\" is not a module name"),
                "invalid module name",
                Some("module twins are set for custom modules; routes and runtime have their own nodes".into()),
            );
            return;
        }
        if let Some(t) = self.twin(child, module, 1) {
            parts.twins.push(t);
        }
    }

    /// Priority, target and (for standard deployments) the runtime must be written; one
    /// that is written but invalid was reported where it stands.
    fn required_children(
        &mut self,
        node: &KdlNode,
        kind: DeploymentKind,
        name: &str,
        name_span: SourceSpan,
        parts: &Parts,
    ) {
        let kw = kind.node_name();
        if parts.priority.is_none() && !has_child(node, "priority") {
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
        if parts.target.is_none() && !has_child(node, "target") {
            self.err(
                Code::MissingValue,
                name_span,
                format!("{kw} \"{name}\" has no target condition"),
                "target missing",
                Some("add `target \"tags.environment='prod'\"` (or `target #null` to target nothing)".into()),
            );
        }
        if kind == DeploymentKind::Standard && parts.runtime.is_none() && !has_child(node, "runtime") {
            self.err(Code::MissingValue, name_span, format!("standard deployment \"{name}\" has no runtime"), "runtime missing", Some("add `runtime { edge-agent image=\"mcr.microsoft.com/azureiotedge-agent:1.5\"; edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\" }`, or make it `layered`".into()));
        }
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
}

/// Where a child that does not belong directly in a deployment goes instead.
fn misplaced_child_help(kind: DeploymentKind, child: &str) -> Option<String> {
    match (kind, child) {
        (DeploymentKind::Standard, "registry") => {
            Some("registry credentials of a standard deployment go inside `runtime { registry … }`".into())
        }
        (_, "edge-agent" | "edge-hub") => {
            Some(format!("`{child}` belongs inside `runtime {{ … }}` of a standard deployment"))
        }
        (_, "routes") => Some("write one `route \"name\" \"FROM … INTO …\"` per route".into()),
        (_, "modules") => Some("write one `module \"name\" image=\"…\" { … }` per module".into()),
        _ => None,
    }
}

/// Whether the node has a child of that name, valid or not.
fn has_child(node: &KdlNode, name: &str) -> bool {
    node.children().is_some_and(|c| c.nodes().iter().any(|n| n.name().value() == name))
}
