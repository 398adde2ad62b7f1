//! `runtime { … }` of a standard deployment: the schemas, the registries the agent pulls
//! with, the two system modules and the edge hub's own settings.

use std::collections::BTreeMap;

use kdl::KdlNode;
use serde_json::Value;

use super::Cx;
use crate::spec::checks::SchemaGate;
use crate::spec::model::*;
use crate::spec::rules::*;

pub(super) const RUNTIME_PROPS: &[&str] = &["schema", "min-docker-version", "logging-options"];
pub(super) const RUNTIME_CHILDREN: &[&str] = &["registry", "edge-agent", "edge-hub", "integrity"];
pub(super) const AGENT_CHILDREN: &[&str] = &["create-options", "env", "image-pull-policy", "digest"];
pub(super) const HUB_CHILDREN: &[&str] = &[
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

const INTEGRITY_EXAMPLE: &str = "integrity { header { … } signature { … } }";

/// What the children of `runtime` decoded to so far; `ok` is false once any was invalid.
struct Parts {
    agent_schema: String,
    hub_schema: String,
    registries: BTreeMap<String, Registry>,
    agent: Option<ModuleSettings>,
    hub: Option<ModuleSettings>,
    ttl: u32,
    max_size: Option<u64>,
    mqtt_broker: Option<Value>,
    integrity: Option<Value>,
    hub_integrity: Option<Value>,
    ok: bool,
}

impl Cx<'_> {
    pub(super) fn runtime(&mut self, node: &KdlNode) -> Option<Runtime> {
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
        let mut parts = Parts {
            agent_schema,
            hub_schema: "1.2".to_string(),
            registries: BTreeMap::new(),
            agent: None,
            hub: None,
            ttl: 7200,
            max_size: None,
            mqtt_broker: None,
            integrity: None,
            hub_integrity: None,
            ok: true,
        };
        for child in children {
            match child.name().value() {
                "registry" => match self.registry(child) {
                    Some(r) => {
                        self.add_unique(&mut parts.registries, r);
                    }
                    None => parts.ok = false,
                },
                "integrity" => self.agent_integrity(child, &mut parts),
                "edge-agent" => self.edge_agent(child, &mut parts),
                "edge-hub" => self.edge_hub(child, &mut parts),
                _ => {}
            }
        }
        self.system_modules_present(node, &mut parts);
        if !parts.ok {
            return None;
        }
        Some(Runtime {
            agent_schema: parts.agent_schema,
            hub_schema: parts.hub_schema,
            min_docker_version,
            logging_options,
            registries: parts.registries,
            edge_agent: parts.agent?,
            edge_hub: parts.hub?,
            store_and_forward_ttl: parts.ttl,
            store_max_size_bytes: parts.max_size,
            mqtt_broker: parts.mqtt_broker,
            integrity: parts.integrity,
            hub_integrity: parts.hub_integrity,
            origin: self.origin(node.span()),
        })
    }

    /// `integrity` of the agent, directly in `runtime`.
    fn agent_integrity(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.integrity.is_some()) {
            return;
        }
        parts.integrity = self.integrity(child, SchemaGate::AgentIntegrity, &parts.agent_schema);
        parts.ok &= parts.integrity.is_some();
    }

    /// An `integrity { … }` block (of the agent or of the edge hub), once `once` let it by.
    fn integrity(&mut self, node: &KdlNode, gate: SchemaGate, schema: &str) -> Option<Value> {
        self.check_entries(node, 1, &[]);
        if !self.schema_allows(gate, schema, node.name().span()) {
            return None;
        }
        self.json_object_node(node, "integrity", INTEGRITY_EXAMPLE)
    }

    fn edge_agent(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.agent.is_some()) {
            return;
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
        parts.ok &= self.settings_children(&kids, &mut s);
        parts.ok &= s.image.is_some();
        parts.agent = Some(s);
    }

    /// `edge-hub`: its module settings and the hub's own children, which are read against
    /// its `schema=` and so after it.
    fn edge_hub(&mut self, child: &KdlNode, parts: &mut Parts) {
        if self.once(child, parts.hub.is_some()) {
            return;
        }
        self.check_entries(child, 0, &["image", "schema"]);
        let image = self
            .required_prop(child, "image", "edge-hub image=\"mcr.microsoft.com/azureiotedge-hub:1.5\"")
            .and_then(|e| self.string_scalar(e, "the image", false));
        if let Some(e) = self.prop(child, "schema") {
            match self.enumerated(e, "edgeHub schema version", HUB_SCHEMAS) {
                Some(s) => parts.hub_schema = s,
                None => parts.ok = false,
            }
        }
        let mut s = ModuleSettings { image, ..Default::default() };
        let kids = self.children(child, HUB_CHILDREN, |_| None);
        let named = |name: &'static str| kids.iter().filter(move |k| k.name().value() == name);
        for k in named("store-and-forward") {
            self.store_and_forward(k, parts);
        }
        for k in named("integrity") {
            if !self.once(k, parts.hub_integrity.is_some()) {
                parts.hub_integrity = self.integrity(k, SchemaGate::HubIntegrity, &parts.hub_schema);
                parts.ok &= parts.hub_integrity.is_some();
            }
        }
        for k in named("mqtt-broker") {
            if !self.once(k, parts.mqtt_broker.is_some()) {
                parts.mqtt_broker = self.mqtt_broker(k, &parts.hub_schema);
                parts.ok &= parts.mqtt_broker.is_some();
            }
        }
        parts.ok &= self.settings_children(&kids, &mut s);
        parts.ok &= s.image.is_some();
        parts.hub = Some(s);
    }

    fn store_and_forward(&mut self, k: &KdlNode, parts: &mut Parts) {
        self.check_entries(k, 0, &["ttl", "max-size-bytes"]);
        self.no_children(k);
        // edgeHub reads timeToLiveSecs as a 32-bit and maxSizeBytes as a 64-bit signed integer.
        if let Some(e) = self.required_prop(k, "ttl", "store-and-forward ttl=7200") {
            match self.integer(e, "store-and-forward ttl", 0, i32::MAX as i128) {
                Some(v) => parts.ttl = v as u32,
                None => parts.ok = false,
            }
        }
        if let Some(e) = self.prop(k, "max-size-bytes") {
            if !self.schema_allows(SchemaGate::StoreLimits, &parts.hub_schema, e.span()) {
                parts.ok = false;
                return;
            }
            match self.integer(e, "store-and-forward max-size-bytes", 0, i64::MAX as i128) {
                Some(v) => parts.max_size = Some(v as u64),
                None => parts.ok = false,
            }
        }
    }

    /// `mqtt-broker { … }` or `mqtt-broker "{json}"`: a JSON object, edgeHub schema 1.2+.
    fn mqtt_broker(&mut self, node: &KdlNode, hub_schema: &str) -> Option<Value> {
        self.check_entries(node, 1, &[]);
        if !self.schema_allows(SchemaGate::MqttBroker, hub_schema, node.name().span()) {
            return None;
        }
        self.json_object_node(node, "mqtt-broker", "mqtt-broker { authorizations { … } bridges { … } }")
    }

    /// Reports a feature the schema in force does not have; true when it has it.
    fn schema_allows(&mut self, gate: SchemaGate, schema: &str, span: miette::SourceSpan) -> bool {
        match gate.check(schema, &self.origin(span)) {
            Some(p) => {
                self.problems.push(p);
                false
            }
            None => true,
        }
    }

    fn system_modules_present(&mut self, node: &KdlNode, parts: &mut Parts) {
        for (which, present) in [("edge-agent", parts.agent.is_some()), ("edge-hub", parts.hub.is_some())] {
            if present {
                continue;
            }
            let example = if which == "edge-agent" {
                "mcr.microsoft.com/azureiotedge-agent:1.5"
            } else {
                "mcr.microsoft.com/azureiotedge-hub:1.5"
            };
            self.err(
                crate::spec::diag::Code::MissingValue,
                node.name().span(),
                format!("runtime has no `{which}`"),
                format!("{which} missing"),
                Some(format!("add `{which} image=\"{example}\"` inside `runtime {{ … }}`")),
            );
            parts.ok = false;
        }
    }
}
