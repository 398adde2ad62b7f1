//! Configuration JSON -> model: the inverse of `render`, for plan and import.

use std::collections::BTreeMap;
use std::sync::Arc;

use miette::SourceSpan;
use serde_json::{Map, Value};

use super::{LABEL_NAME, join_create_options};
use crate::model::{Configuration, ConfigurationKind, TwinPath, TwinPathError};
use crate::spec::model::*;
use crate::spec::source::SourceFile;

/// A configuration that can't be expressed in the language.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReadError {
    #[error("configuration {id} is not an IoT Edge deployment (it has no modulesContent)")]
    #[diagnostic(code(fleetform::not_edge), help("automatic device management configurations are left alone"))]
    NotEdge { id: String },
    #[error("configuration {id}: {path}: {problem}")]
    #[diagnostic(
        code(fleetform::unsupported_content),
        help(
            "this part of the deployment has no KDL form yet; keep managing it outside fleetform, or simplify it on the hub"
        )
    )]
    Unsupported { id: String, path: String, problem: String },
}

/// Reads a Configuration (standard or layered) into a [`Deployment`].
pub fn read(config: &Configuration) -> Result<Deployment, ReadError> {
    let r = Reader::new(config);
    r.deployment()
}

struct Reader<'a> {
    config: &'a Configuration,
    origin: Origin,
}

type R<T> = Result<T, ReadError>;

impl<'a> Reader<'a> {
    fn new(config: &'a Configuration) -> Self {
        let file = Arc::new(SourceFile::new(format!("hub:{}", config.id), "", String::new()));
        Reader { config, origin: Origin { file, span: SourceSpan::new(0.into(), 0) } }
    }

    fn bad(&self, path: &str, problem: impl Into<String>) -> ReadError {
        ReadError::Unsupported { id: self.config.id.to_string(), path: path.to_string(), problem: problem.into() }
    }

    fn literal(&self, v: Value) -> Scalar {
        Scalar::literal(v, self.origin.clone())
    }

    fn str_at<'v>(&self, m: &'v Map<String, Value>, key: &str, path: &str) -> R<Option<&'v str>> {
        match m.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(&format!("{path}.{key}"), "expected a string")),
        }
    }

    fn obj<'v>(&self, v: &'v Value, path: &str) -> R<&'v Map<String, Value>> {
        v.as_object().ok_or_else(|| self.bad(path, "expected an object"))
    }

    fn deployment(&self) -> R<Deployment> {
        let c = self.config;
        let kind = match c.kind() {
            ConfigurationKind::Standard => DeploymentKind::Standard,
            ConfigurationKind::Layered => DeploymentKind::Layered,
            ConfigurationKind::DeviceManagement => {
                return Err(ReadError::NotEdge { id: c.id.to_string() });
            }
        };
        let content = c.content.modules_content.as_ref().ok_or_else(|| ReadError::NotEdge { id: c.id.to_string() })?;
        let name = c.labels.get(LABEL_NAME).cloned().unwrap_or_else(|| c.id.to_string());
        let labels = c
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with(crate::spec::rules::RESERVED_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metrics = c
            .metrics
            .iter()
            .flat_map(|m| m.queries.iter())
            .map(|(n, q)| Metric { name: n.clone(), query: self.query(q), origin: self.origin.clone() })
            .collect();
        let target = (!c.target_condition.is_empty()).then(|| self.query(&c.target_condition));
        let mut d = Deployment {
            name: DeploymentName(name),
            kind,
            priority: c.priority,
            target,
            labels,
            metrics,
            runtime: None,
            registries: BTreeMap::new(),
            modules: BTreeMap::new(),
            routes: BTreeMap::new(),
            twins: Vec::new(),
            adopt: None,
            rollout: None,
            origin: self.origin.clone(),
        };
        match kind {
            DeploymentKind::Standard => self.standard(content, &mut d)?,
            DeploymentKind::Layered => self.layered(content, &mut d)?,
        }
        Ok(d)
    }

    fn query(&self, text: &str) -> QueryText {
        QueryText { text: text.to_string(), offsets: None, origin: self.origin.clone() }
    }

    fn standard(&self, content: &BTreeMap<String, Map<String, Value>>, d: &mut Deployment) -> R<()> {
        let agent_twin = &content["$edgeAgent"];
        only_keys(self, agent_twin, &["properties.desired"], "$edgeAgent")?;
        let agent = self.obj(&agent_twin["properties.desired"], "$edgeAgent.properties.desired")?;
        const AGENT_KEYS: &[&str] = &["schemaVersion", "runtime", "systemModules", "modules", "integrity"];
        let agent = &self.canonical_keys(agent, AGENT_KEYS, "$edgeAgent.properties.desired")?;
        let p = "$edgeAgent.properties.desired";
        only_keys(self, agent, AGENT_KEYS, p)?;
        let integrity = match agent.get("integrity") {
            Some(v) => Some(Value::Object(self.obj(v, &format!("{p}.integrity"))?.clone())),
            None => None,
        };
        let agent_schema = self.str_at(agent, "schemaVersion", p)?.unwrap_or("1.1").to_string();
        let runtime = &self.canonical_keys(
            self.obj(agent.get("runtime").unwrap_or(&Value::Null), &format!("{p}.runtime"))?,
            &["type", "settings"],
            &format!("{p}.runtime"),
        )?;
        only_keys(self, runtime, &["type", "settings"], &format!("{p}.runtime"))?;
        let empty = Map::new();
        let rs = match runtime.get("settings") {
            Some(v) => self.obj(v, &format!("{p}.runtime.settings"))?,
            None => &empty,
        };
        let rsp = format!("{p}.runtime.settings");
        let rs = &self.canonical_keys(rs, &["minDockerVersion", "loggingOptions", "registryCredentials"], &rsp)?;
        only_keys(self, rs, &["minDockerVersion", "loggingOptions", "registryCredentials"], &rsp)?;
        let mut registries = BTreeMap::new();
        if let Some(creds) = rs.get("registryCredentials") {
            for (name, r) in self.obj(creds, &format!("{rsp}.registryCredentials"))? {
                registries.insert(name.clone(), self.registry(name, r, &format!("{rsp}.registryCredentials.{name}"))?);
            }
        }
        let system = &self.canonical_keys(
            self.obj(agent.get("systemModules").unwrap_or(&Value::Null), &format!("{p}.systemModules"))?,
            &["edgeAgent", "edgeHub"],
            &format!("{p}.systemModules"),
        )?;
        only_keys(self, system, &["edgeAgent", "edgeHub"], &format!("{p}.systemModules"))?;
        let edge_agent = self
            .settings(system.get("edgeAgent").unwrap_or(&Value::Null), &format!("{p}.systemModules.edgeAgent"), false)?
            .0;
        let edge_hub = self
            .settings(system.get("edgeHub").unwrap_or(&Value::Null), &format!("{p}.systemModules.edgeHub"), false)?
            .0;
        if let Some(mods) = agent.get("modules") {
            for (name, m) in self.obj(mods, &format!("{p}.modules"))? {
                let (settings, version) = self.settings(m, &format!("{p}.modules.{name}"), true)?;
                d.modules.insert(
                    name.clone(),
                    Module { name: name.clone(), version, settings, origin: self.origin.clone() },
                );
            }
        }
        let mut hub_schema = "1.2".to_string();
        let mut ttl = 7200;
        let mut max_size = None;
        let mut mqtt_broker = None;
        let mut hub_integrity = None;
        if let Some(hub_twin) = content.get("$edgeHub") {
            only_keys(self, hub_twin, &["properties.desired"], "$edgeHub")?;
            let hp = "$edgeHub.properties.desired";
            let hub = self.obj(hub_twin.get("properties.desired").unwrap_or(&Value::Null), hp)?;
            const HUB_KEYS: &[&str] =
                &["schemaVersion", "routes", "storeAndForwardConfiguration", "mqttBroker", "integrity"];
            let hub = &self.canonical_keys(hub, HUB_KEYS, hp)?;
            only_keys(self, hub, HUB_KEYS, hp)?;
            if let Some(m) = hub.get("integrity") {
                hub_integrity = Some(Value::Object(self.obj(m, &format!("{hp}.integrity"))?.clone()));
            }
            if let Some(m) = hub.get("mqttBroker") {
                mqtt_broker = Some(Value::Object(self.obj(m, &format!("{hp}.mqttBroker"))?.clone()));
            }
            if let Some(s) = self.str_at(hub, "schemaVersion", hp)? {
                hub_schema = s.to_string();
            }
            if let Some(routes) = hub.get("routes") {
                for (name, r) in self.obj(routes, &format!("{hp}.routes"))? {
                    d.routes.insert(name.clone(), self.route(name, r, &format!("{hp}.routes.{name}"))?);
                }
            }
            if let Some(sf) = hub.get("storeAndForwardConfiguration") {
                let sfp = format!("{hp}.storeAndForwardConfiguration");
                let sf = &self.canonical_keys(self.obj(sf, &sfp)?, &["timeToLiveSecs", "storeLimits"], &sfp)?;
                only_keys(self, sf, &["timeToLiveSecs", "storeLimits"], &sfp)?;
                if let Some(v) = sf.get("timeToLiveSecs") {
                    // edgeHub reads it as a 32-bit signed integer.
                    ttl = v.as_u64().filter(|v| *v <= i32::MAX as u64).map(|v| v as u32).ok_or_else(|| {
                        self.bad(&format!("{sfp}.timeToLiveSecs"), "expected a whole number from 0 to 2147483647")
                    })?;
                }
                if let Some(limits) = sf.get("storeLimits") {
                    let lp = format!("{sfp}.storeLimits");
                    let limits = &self.canonical_keys(self.obj(limits, &lp)?, &["maxSizeBytes"], &lp)?;
                    only_keys(self, limits, &["maxSizeBytes"], &lp)?;
                    if let Some(v) = limits.get("maxSizeBytes") {
                        // A signed 64-bit integer on the hub.
                        max_size = Some(v.as_u64().filter(|v| *v <= i64::MAX as u64).ok_or_else(|| {
                            self.bad(&format!("{lp}.maxSizeBytes"), "expected a whole number from 0 to 2^63-1")
                        })?);
                    }
                }
            }
        }
        d.runtime = Some(Runtime {
            agent_schema,
            hub_schema,
            min_docker_version: self.str_at(rs, "minDockerVersion", &rsp)?.unwrap_or("v1.25").to_string(),
            logging_options: self.str_at(rs, "loggingOptions", &rsp)?.unwrap_or("").to_string(),
            registries,
            edge_agent,
            edge_hub,
            store_and_forward_ttl: ttl,
            store_max_size_bytes: max_size,
            mqtt_broker,
            integrity,
            hub_integrity,
            origin: self.origin.clone(),
        });
        for (module, twin) in content.iter().filter(|(k, _)| !k.starts_with('$')) {
            for (key, value) in twin {
                d.twins.push(self.twin(module, key, value)?);
            }
        }
        Ok(())
    }

    fn layered(&self, content: &BTreeMap<String, Map<String, Value>>, d: &mut Deployment) -> R<()> {
        const MODULE: &str = "properties.desired.modules.";
        const REGISTRY: &str = "properties.desired.runtime.settings.registryCredentials.";
        const ROUTE: &str = "properties.desired.routes.";
        for (key, v) in content.get("$edgeAgent").into_iter().flatten() {
            let path = format!("$edgeAgent.{key}");
            if let Some(name) = key.strip_prefix(MODULE).filter(|n| !n.contains('.')) {
                let (settings, version) = self.settings(v, &path, true)?;
                d.modules.insert(
                    name.to_string(),
                    Module { name: name.to_string(), version, settings, origin: self.origin.clone() },
                );
            } else if let Some(name) = key.strip_prefix(REGISTRY).filter(|n| !n.contains('.')) {
                d.registries.insert(name.to_string(), self.registry(name, v, &path)?);
            } else {
                return Err(
                    self.bad(&path, "layered deployments may only add modules and registry credentials to $edgeAgent")
                );
            }
        }
        for (key, v) in content.get("$edgeHub").into_iter().flatten() {
            let path = format!("$edgeHub.{key}");
            let Some(name) = key.strip_prefix(ROUTE).filter(|n| !n.contains('.')) else {
                return Err(self.bad(&path, "layered deployments may only add routes to $edgeHub"));
            };
            d.routes.insert(name.to_string(), self.route(name, v, &path)?);
        }
        for (module, twin) in content.iter().filter(|(k, _)| !k.starts_with('$')) {
            for (key, value) in twin {
                d.twins.push(self.twin(module, key, value)?);
            }
        }
        Ok(())
    }

    fn twin(&self, module: &str, key: &str, value: &Value) -> R<TwinSetting> {
        let path = match TwinPath::from_desired_key(key) {
            Ok(path) => path.into_segments(),
            Err(TwinPathError::NotDesired { .. }) => {
                return Err(self.bad(&format!("{module}.{key}"), "module content keys start with properties.desired"));
            }
            Err(TwinPathError::EmptySegment { .. }) => {
                return Err(self.bad(&format!("{module}.{key}"), "module content keys have no empty path segment"));
            }
        };
        Ok(TwinSetting {
            module: module.to_string(),
            path,
            doc: JsonDoc { value: value.clone(), scalars: Vec::new() },
            origin: self.origin.clone(),
        })
    }

    fn registry(&self, name: &str, v: &Value, path: &str) -> R<Registry> {
        let m = &self.canonical_keys(self.obj(v, path)?, &["address", "username", "password"], path)?;
        only_keys(self, m, &["address", "username", "password"], path)?;
        let field = |k: &str| -> R<String> {
            self.str_at(m, k, path)?.map(str::to_string).ok_or_else(|| self.bad(&format!("{path}.{k}"), "missing"))
        };
        let mut password = self.literal(Value::String(field("password")?));
        password.sensitive = true;
        Ok(Registry {
            name: name.to_string(),
            address: self.literal(Value::String(field("address")?)),
            username: self.literal(Value::String(field("username")?)),
            password,
            origin: self.origin.clone(),
        })
    }

    fn route(&self, name: &str, v: &Value, path: &str) -> R<Route> {
        let (text, priority, ttl) = match v {
            Value::String(s) => (s.clone(), None, None),
            Value::Object(m) => {
                let m = &self.canonical_keys(m, &["route", "priority", "timeToLiveSecs"], path)?;
                only_keys(self, m, &["route", "priority", "timeToLiveSecs"], path)?;
                let text =
                    self.str_at(m, "route", path)?.ok_or_else(|| self.bad(path, "route object without `route`"))?;
                let priority = match m.get("priority") {
                    Some(p) => Some(
                        p.as_u64()
                            .filter(|p| *p <= 9)
                            .ok_or_else(|| self.bad(&format!("{path}.priority"), "expected 0..9"))?
                            as u8,
                    ),
                    None => None,
                };
                let ttl = match m.get("timeToLiveSecs") {
                    Some(t) => Some(
                        t.as_u64()
                            .and_then(|t| u32::try_from(t).ok())
                            .ok_or_else(|| self.bad(&format!("{path}.timeToLiveSecs"), "expected a whole number"))?,
                    ),
                    None => None,
                };
                (text.to_string(), priority, ttl)
            }
            _ => return Err(self.bad(path, "a route is a string or an object")),
        };
        Ok(Route { name: name.to_string(), text: self.query(&text), priority, ttl, origin: self.origin.clone() })
    }

    /// A module's (or system module's) JSON -> settings and version.
    fn settings(&self, v: &Value, path: &str, allow_version: bool) -> R<(ModuleSettings, Option<String>)> {
        let m = self.obj(v, path)?;
        let mut allowed = vec!["type", "status", "restartPolicy", "startupOrder", "imagePullPolicy", "settings", "env"];
        if allow_version {
            allowed.push("version");
        }
        let m = &self.canonical_keys(m, &allowed, path)?;
        only_keys(self, m, &allowed, path)?;
        if let Some(t) = self.str_at(m, "type", path)?
            && t != "docker"
        {
            return Err(self.bad(&format!("{path}.type"), format!("module type \"{t}\" (only docker exists)")));
        }
        let settings_map = &self.canonical_settings(
            self.obj(m.get("settings").unwrap_or(&Value::Null), &format!("{path}.settings"))?,
            &format!("{path}.settings"),
        )?;
        let sp = format!("{path}.settings");
        for k in settings_map.keys() {
            let chunk = k
                .strip_prefix("createOptions")
                .is_some_and(|n| n.is_empty() || (n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit())));
            if k != "image" && k != "digest" && !chunk {
                return Err(self.bad(&format!("{sp}.{k}"), "unknown setting"));
            }
        }
        let image = self.str_at(settings_map, "image", &sp)?.map(|s| self.literal(Value::String(s.to_string())));
        let create_options = match join_create_options(settings_map) {
            None => None,
            Some(Err(e)) => return Err(self.bad(&sp, e)),
            // The agent treats empty, blank and `null` createOptions as no options.
            Some(Ok(text)) if text.trim().is_empty() || text.trim() == "null" => None,
            Some(Ok(text)) => {
                let doc: Value = serde_json::from_str(&text)
                    .map_err(|e| self.bad(&format!("{sp}.createOptions"), format!("not JSON: {e}")))?;
                if !doc.is_object() {
                    // The agent hands it to Docker as the container's create options.
                    return Err(self.bad(
                        &format!("{sp}.createOptions"),
                        format!("must hold a JSON object of Docker create options, not {}", json_kind(&doc)),
                    ));
                }
                Some(CreateOptions { doc: JsonDoc { value: doc, scalars: Vec::new() }, origin: self.origin.clone() })
            }
        };
        let mut env = BTreeMap::new();
        if let Some(e) = m.get("env") {
            for (k, v) in self.obj(e, &format!("{path}.env"))? {
                let ep = format!("{path}.env.{k}");
                let v = &self.canonical_keys(self.obj(v, &ep)?, &["value"], &ep)?;
                let val =
                    v.get("value").filter(|v| v.is_string() || v.is_number() || v.is_boolean()).ok_or_else(|| {
                        self.bad(&format!("{path}.env.{k}"), "expected {\"value\": string, number or boolean}")
                    })?;
                env.insert(k.clone(), self.literal(val.clone()));
            }
        }
        let startup_order = match m.get("startupOrder") {
            Some(v) => Some(
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| self.bad(&format!("{path}.startupOrder"), "expected a whole number"))?,
            ),
            None => None,
        };
        let version = self.str_at(m, "version", path)?.map(str::to_string);
        let settings = ModuleSettings {
            image,
            create_options,
            env,
            status: self.str_at(m, "status", path)?.map(str::to_string),
            restart_policy: self.str_at(m, "restartPolicy", path)?.map(str::to_string),
            startup_order,
            image_pull_policy: self.str_at(m, "imagePullPolicy", path)?.map(str::to_string),
            digest: self.str_at(settings_map, "digest", &sp)?.map(str::to_string),
        };
        Ok((settings, version))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn only_keys(r: &Reader<'_>, m: &Map<String, Value>, allowed: &[&str], path: &str) -> R<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(r.bad(&format!("{path}.{k}"), "not understood by fleetform")),
        None => Ok(()),
    }
}

/// The edge runtime matches field names case-insensitively (Newtonsoft's default), so a
/// manifest may say `createoptions` or `RestartPolicy`: such keys are renamed to the
/// spelling fleetform renders. Unknown keys are kept as they are, to be refused by name.
/// Two keys that differ only in case would be one field to the agent, which keeps one of
/// them silently; that is refused, naming both.
fn canonical_with(
    r: &Reader<'_>,
    m: &Map<String, Value>,
    path: &str,
    rename: impl Fn(&str) -> String,
) -> R<Map<String, Value>> {
    let mut out = Map::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (k, v) in m {
        if let Some(first) = seen.insert(k.to_ascii_lowercase(), k) {
            return Err(r.bad(
                &format!("{path}.{k}"),
                format!(
                    "keys \"{first}\" and \"{k}\" differ only in case, and the edge runtime reads them as one; keep one"
                ),
            ));
        }
        out.insert(rename(k), v.clone());
    }
    Ok(out)
}

impl Reader<'_> {
    fn canonical_keys(&self, m: &Map<String, Value>, known: &[&str], path: &str) -> R<Map<String, Value>> {
        canonical_with(self, m, path, |k| {
            known.iter().find(|n| n.eq_ignore_ascii_case(k)).map_or_else(|| k.to_string(), |n| n.to_string())
        })
    }

    /// [`Self::canonical_keys`] for a module's `settings`, whose createOptions pieces are numbered.
    fn canonical_settings(&self, m: &Map<String, Value>, path: &str) -> R<Map<String, Value>> {
        canonical_with(self, m, path, |k| {
            let lower = k.to_ascii_lowercase();
            match lower.strip_prefix("createoptions") {
                Some(n) => format!("createOptions{n}"),
                None if lower == "image" || lower == "digest" => lower,
                None => k.to_string(),
            }
        })
    }
}
