//! Model -> KDL text: the inverse of the parser, for `fleetform import`.
//!
//! The text is printed in the canonical layout (`fleetform fmt`'s) and in the order the
//! examples use: adopt, priority, target, labels, runtime, registries, modules (with their
//! settings and twins), module twins of modules declared elsewhere, routes, metrics.
//! JSON documents (create options, twin properties) are written as JSON-in-KDL children
//! when every part of them has a KDL form, and as a raw JSON string otherwise (an empty
//! array, a key named `-`, a twin value that is not an object).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::spec::model::*;

/// Prints one deployment as KDL, formatted.
pub fn to_kdl(d: &Deployment) -> String {
    let mut w = Writer { out: String::new() };
    w.deployment(d);
    // The printer already writes the canonical layout; running it through the formatter
    // keeps the two from ever drifting apart.
    crate::spec::fmt::format_source(&w.out).unwrap_or(w.out)
}

/// A KDL v2 string literal: a raw string when the text needs no escapes beyond quotes and
/// backslashes (JSON reads best that way), a quoted string otherwise.
pub fn kdl_string(s: &str) -> String {
    let plain = s.chars().all(|c| !is_disallowed(c) && c != '\n' && c != '\r' && c != '\t');
    if plain && (s.contains('"') || s.contains('\\')) {
        let mut hashes = 1;
        while s.contains(&format!("\"{}", "#".repeat(hashes))) {
            hashes += 1;
        }
        let h = "#".repeat(hashes);
        return format!("{h}\"{s}\"{h}");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_disallowed(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Code points KDL v2 does not allow literally in a document.
fn is_disallowed(c: char) -> bool {
    matches!(c as u32, 0..=0x08 | 0x0b..=0x1f | 0x7f | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069 | 0xfeff)
        || c == '\u{85}'
        || c == '\u{2028}'
        || c == '\u{2029}'
}

/// A node name or property key: bare when KDL reads it back as the same identifier.
pub fn kdl_ident(s: &str) -> String {
    let bare = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !matches!(s, "true" | "false" | "null" | "inf" | "nan");
    if bare { s.to_string() } else { kdl_string(s) }
}

fn json_scalar(v: &Value) -> String {
    match v {
        Value::Null => "#null".into(),
        Value::Bool(b) => if *b { "#true" } else { "#false" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => kdl_string(s),
        // Callers only pass scalars here.
        other => kdl_string(&other.to_string()),
    }
}

/// A model scalar with its annotation. Registry passwords are written by
/// [`Writer::registry`], whose slot is sensitive by itself.
fn scalar(s: &Scalar) -> String {
    match (&s.source, s.sensitive) {
        (ValueSource::Env(var), true) => format!("(secret-env){}", kdl_string(var)),
        (ValueSource::Env(var), false) => format!("(env){}", kdl_string(var)),
        (ValueSource::Literal, true) => format!("(secret){}", json_scalar(&s.value)),
        (ValueSource::Literal, false) => json_scalar(&s.value),
    }
}

/// Whether a JSON value can be written as JSON-in-KDL children and read back unchanged.
fn jik_safe(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().all(|(k, v)| k != "-" && !k.is_empty() && jik_safe(v)),
        Value::Array(items) => !items.is_empty() && items.iter().all(jik_safe),
        _ => true,
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn deployment(&mut self, d: &Deployment) {
        self.line(0, &format!("{} {} {{", d.kind.node_name(), kdl_string(&d.name.0)));
        if let Some(id) = &d.adopt {
            self.line(1, &format!("adopt {}", kdl_string(id)));
        }
        self.line(1, &format!("priority {}", d.priority.0));
        match &d.target {
            Some(t) => self.line(1, &format!("target {}", kdl_string(&t.text))),
            None => self.line(1, "target #null"),
        }
        if !d.labels.is_empty() {
            let labels: Vec<String> =
                d.labels.iter().map(|(k, v)| format!("{}={}", kdl_ident(k), kdl_string(v))).collect();
            self.line(1, &format!("label {}", labels.join(" ")));
        }
        if let Some(r) = &d.runtime {
            self.out.push('\n');
            self.runtime(r);
        }
        if !d.registries.is_empty() {
            self.out.push('\n');
            for r in d.registries.values() {
                self.registry(1, r);
            }
        }
        let mut twins_by_module: BTreeMap<&str, Vec<&TwinSetting>> = BTreeMap::new();
        for t in &d.twins {
            twins_by_module.entry(t.module.as_str()).or_default().push(t);
        }
        for m in d.modules.values() {
            self.out.push('\n');
            let mut head = format!("module {}", kdl_string(&m.name));
            if let Some(img) = &m.settings.image {
                let _ = write!(head, " image={}", scalar(img));
            }
            if let Some(v) = &m.version {
                let _ = write!(head, " version={}", kdl_string(v));
            }
            let twins = twins_by_module.remove(m.name.as_str()).unwrap_or_default();
            let mut body = Writer { out: String::new() };
            body.settings(2, &m.settings);
            for t in twins {
                body.twin(2, t, false);
            }
            self.block(1, &head, &body.out);
        }
        let orphans: Vec<&TwinSetting> = twins_by_module.into_values().flatten().collect();
        if !orphans.is_empty() {
            self.out.push('\n');
            for t in orphans {
                self.twin(1, t, true);
            }
        }
        if !d.routes.is_empty() {
            self.out.push('\n');
            for r in d.routes.values() {
                let mut line = format!("route {} {}", kdl_string(&r.name), kdl_string(&r.text.text));
                if let Some(p) = r.priority {
                    let _ = write!(line, " priority={p}");
                }
                if let Some(t) = r.ttl {
                    let _ = write!(line, " ttl={t}");
                }
                self.line(1, &line);
            }
        }
        if !d.metrics.is_empty() {
            self.out.push('\n');
            for m in &d.metrics {
                self.line(1, &format!("metric {} {}", kdl_string(&m.name), kdl_string(&m.query.text)));
            }
        }
        self.line(0, "}");
    }

    /// `head { body }`, or just `head` when the body is empty.
    fn block(&mut self, level: usize, head: &str, body: &str) {
        if body.is_empty() {
            self.line(level, head);
        } else {
            self.line(level, &format!("{head} {{"));
            self.out.push_str(body);
            self.line(level, "}");
        }
    }

    fn registry(&mut self, level: usize, r: &Registry) {
        // The password slot is sensitive by itself: `(env)` is enough, as in the examples.
        let password = match &r.password.source {
            ValueSource::Env(var) => format!("(env){}", kdl_string(var)),
            ValueSource::Literal => scalar(&r.password),
        };
        self.line(
            level,
            &format!(
                "registry {} address={} username={} password={}",
                kdl_string(&r.name),
                scalar(&r.address),
                scalar(&r.username),
                password
            ),
        );
    }

    fn runtime(&mut self, r: &Runtime) {
        let mut head = format!("runtime schema={}", kdl_string(&r.agent_schema));
        let _ = write!(head, " min-docker-version={}", kdl_string(&r.min_docker_version));
        if !r.logging_options.is_empty() {
            let _ = write!(head, " logging-options={}", kdl_string(&r.logging_options));
        }
        let mut body = Writer { out: String::new() };
        for reg in r.registries.values() {
            body.registry(2, reg);
        }
        let mut agent = Writer { out: String::new() };
        agent.settings(3, &r.edge_agent);
        let agent_head = match &r.edge_agent.image {
            Some(img) => format!("edge-agent image={}", scalar(img)),
            None => "edge-agent".to_string(),
        };
        body.block(2, &agent_head, &agent.out);
        if let Some(integrity) = &r.integrity {
            body.json_object_node(2, "integrity", integrity);
        }
        let mut hub = Writer { out: String::new() };
        hub.settings(3, &r.edge_hub);
        let mut store = format!("store-and-forward ttl={}", r.store_and_forward_ttl);
        if let Some(max) = r.store_max_size_bytes {
            let _ = write!(store, " max-size-bytes={max}");
        }
        hub.line(3, &store);
        if let Some(mqtt) = &r.mqtt_broker {
            hub.json_object_node(3, "mqtt-broker", mqtt);
        }
        if let Some(integrity) = &r.hub_integrity {
            hub.json_object_node(3, "integrity", integrity);
        }
        let mut hub_head = match &r.edge_hub.image {
            Some(img) => format!("edge-hub image={}", scalar(img)),
            None => "edge-hub".to_string(),
        };
        let _ = write!(hub_head, " schema={}", kdl_string(&r.hub_schema));
        body.block(2, &hub_head, &hub.out);
        self.block(1, &head, &body.out);
    }

    fn settings(&mut self, level: usize, s: &ModuleSettings) {
        if let Some(v) = &s.status {
            self.line(level, &format!("status {}", kdl_string(v)));
        }
        if let Some(v) = &s.restart_policy {
            self.line(level, &format!("restart-policy {}", kdl_string(v)));
        }
        if let Some(v) = s.startup_order {
            self.line(level, &format!("startup-order {v}"));
        }
        if let Some(v) = &s.image_pull_policy {
            self.line(level, &format!("image-pull-policy {}", kdl_string(v)));
        }
        if !s.env.is_empty() {
            let vars: Vec<String> = s.env.iter().map(|(k, v)| format!("{}={}", kdl_ident(k), scalar(v))).collect();
            self.line(level, &format!("env {}", vars.join(" ")));
        }
        if let Some(d) = &s.digest {
            self.line(level, &format!("digest {}", kdl_string(d)));
        }
        if let Some(co) = &s.create_options {
            let empty = co.doc.value.as_object().is_some_and(|m| m.is_empty());
            if co.doc.value.is_object() && !empty && jik_safe(&co.doc.value) {
                let mut body = Writer { out: String::new() };
                body.jik_members(level + 1, &co.doc.value, "", &BTreeMap::new());
                self.block(level, "create-options", &body.out);
            } else {
                // `create-options` needs a value or children: `{}` and JSON without a KDL
                // form are written as a JSON string.
                let json = serde_json::to_string(&co.doc.value).unwrap_or_default();
                self.line(level, &format!("create-options {}", kdl_string(&json)));
            }
        }
    }

    /// `name { JSON-in-KDL }`, or `name "{json}"` when the value has no KDL form.
    fn json_object_node(&mut self, level: usize, name: &str, v: &Value) {
        let empty = v.as_object().is_some_and(|m| m.is_empty());
        if !empty && jik_safe(v) {
            let mut body = Writer { out: String::new() };
            body.jik_members(level + 1, v, "", &BTreeMap::new());
            self.block(level, name, &body.out);
        } else {
            let json = serde_json::to_string(v).unwrap_or_default();
            self.line(level, &format!("{name} {}", kdl_string(&json)));
        }
    }

    /// A twin setting: inside its module (`inside` false) or at deployment level.
    fn twin(&mut self, level: usize, t: &TwinSetting, top_level: bool) {
        let mut head = "twin".to_string();
        if top_level {
            let _ = write!(head, " {}", kdl_string(&t.module));
        }
        if !t.path.is_empty() {
            let _ = write!(head, " path={}", kdl_string(&t.path.join(".")));
        }
        let scalars: BTreeMap<&str, &Scalar> = t.doc.scalars.iter().map(|(p, s)| (p.as_str(), s)).collect();
        if t.doc.value.is_object() && jik_safe(&t.doc.value) {
            let mut body = Writer { out: String::new() };
            body.jik_members(level + 1, &t.doc.value, "", &scalars);
            if body.out.is_empty() {
                self.line(level, &format!("{head} {{}}"));
            } else {
                self.block(level, &head, &body.out);
            }
        } else {
            let json = serde_json::to_string(&t.doc.value).unwrap_or_default();
            self.line(level, &format!("{head} {}", kdl_string(&json)));
        }
    }

    /// The members of a JSON object as JSON-in-KDL nodes. `scalars` are the annotated
    /// values, by JSON pointer below the document.
    fn jik_members(&mut self, level: usize, v: &Value, pointer: &str, scalars: &BTreeMap<&str, &Scalar>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let ptr = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                self.jik_node(level, &kdl_ident(k), child, &ptr, scalars);
            }
        }
    }

    fn jik_node(&mut self, level: usize, name: &str, v: &Value, pointer: &str, scalars: &BTreeMap<&str, &Scalar>) {
        match v {
            Value::Object(m) if m.is_empty() => self.line(level, &format!("{name} {{}}")),
            Value::Object(_) => {
                let mut body = Writer { out: String::new() };
                body.jik_members(level + 1, v, pointer, scalars);
                self.block(level, name, &body.out);
            }
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) && items.len() > 1 => {
                let values: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| match scalars.get(format!("{pointer}/{i}").as_str()) {
                        Some(s) => scalar(s),
                        None => json_scalar(item),
                    })
                    .collect();
                self.line(level, &format!("{name} {}", values.join(" ")));
            }
            Value::Array(items) => {
                let mut body = Writer { out: String::new() };
                for (i, item) in items.iter().enumerate() {
                    body.jik_node(level + 1, "-", item, &format!("{pointer}/{i}"), scalars);
                }
                self.block(level, name, &body.out);
            }
            leaf => {
                let text = match scalars.get(pointer) {
                    Some(s) => scalar(s),
                    None => json_scalar(leaf),
                };
                self.line(level, &format!("{name} {text}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MapEnv, SecretMode, render};
    use crate::spec::{SourceFile, Workspace};

    /// Every variable is set, to its own name.
    struct AnyEnv;
    impl crate::manifest::Env for AnyEnv {
        fn var(&self, name: &str) -> Option<String> {
            // Long enough to be a usable FLEETFORM_HASH_KEY too.
            Some(format!("value-of-{name}-for-the-round-trip-tests"))
        }
    }

    fn parse(text: &str) -> Workspace {
        Workspace::from_sources(vec![SourceFile::new("t.kdl", "t.kdl", text.to_string())])
    }

    #[test]
    fn strings_and_identifiers() {
        assert_eq!(kdl_string("plain"), "\"plain\"");
        assert_eq!(kdl_string(r#"{"a":1}"#), r##"#"{"a":1}"#"##);
        assert_eq!(kdl_string("x\"#y"), "##\"x\"#y\"##");
        assert_eq!(kdl_string("a\nb"), "\"a\\nb\"");
        assert_eq!(kdl_ident("HostConfig"), "HostConfig");
        assert_eq!(kdl_ident("443/tcp"), "\"443/tcp\"");
        assert_eq!(kdl_ident("true"), "\"true\"");
    }

    #[test]
    fn examples_round_trip_through_the_writer() {
        let env = AnyEnv;
        for file in ["base.kdl", "monitoring.kdl", "conference-camera.kdl", "route-override.kdl", "canary.kdl"] {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/campus/deployments").join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let ws = parse(&text);
            assert!(ws.problems.is_empty(), "{file}: {:?}", ws.problems);
            for d in &ws.deployments {
                let written = to_kdl(d);
                let again = parse(&written);
                assert!(again.problems.is_empty(), "{file}:\n{written}\n{:?}", again.problems);
                assert_eq!(again.deployments.len(), 1);
                let a = render(d, &env, SecretMode::Reveal).unwrap();
                let b = render(&again.deployments[0], &env, SecretMode::Reveal).unwrap();
                assert_eq!(a.configuration, b.configuration, "{file}:\n{written}");
                assert_eq!(crate::spec::fmt::format_source(&written).unwrap(), written, "canonical layout");
            }
        }
    }

    #[test]
    fn awkward_json_falls_back_to_strings_and_keeps_env_references() {
        let text = r##"
layered "x" {
    priority 5
    target "*"
    module "M" image=(env)"IMAGE" {
        env TOKEN=(secret-env)"TOKEN" PLAIN="p"
        create-options #"{"a":[],"-":1,"443/tcp":{}}"#
        twin path="cfg" {
            list "a" "b"
            one { - 1 }
            nested { - { k (env)"K" } }
            nothing #null
            empty {}
        }
        twin path="n" "5"
    }
}
"##;
        let ws = parse(text);
        assert!(ws.problems.is_empty(), "{:?}", ws.problems);
        let written = to_kdl(&ws.deployments[0]);
        assert!(written.contains("image=(env)\"IMAGE\""), "{written}");
        assert!(written.contains("TOKEN=(secret-env)\"TOKEN\""), "{written}");
        assert!(written.contains("k (env)\"K\""), "{written}");
        let again = parse(&written);
        assert!(again.problems.is_empty(), "{written}\n{:?}", again.problems);
        let env = MapEnv(
            [
                ("IMAGE", "i:1"),
                ("TOKEN", "t"),
                ("K", "k"),
                (crate::manifest::HASH_KEY_VAR, "a-hash-key-for-the-round-trip-tests"),
            ]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
        );
        let a = render(&ws.deployments[0], &env, SecretMode::Reveal).unwrap();
        let b = render(&again.deployments[0], &env, SecretMode::Reveal).unwrap();
        assert_eq!(a.configuration, b.configuration, "{written}");
        assert_eq!(a.sensitive, b.sensitive);
    }
}
