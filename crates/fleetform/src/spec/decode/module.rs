//! `module "name" image=… { … }`: a custom module, the settings it shares with the system
//! modules (status, policies, env, create-options, digest), and `twin` settings of a
//! module's desired properties, nested in the module or beside it.

use std::collections::BTreeMap;

use kdl::KdlNode;
use miette::SourceSpan;
use serde_json::Value;

use super::Cx;
use crate::spec::checks;
use crate::spec::diag::Code;
use crate::spec::model::*;
use crate::spec::rules::{self, *};

pub(super) const MODULE_CHILDREN: &[&str] =
    &["status", "restart-policy", "startup-order", "image-pull-policy", "env", "create-options", "twin", "digest"];

impl Cx<'_> {
    /// Children shared by modules and system modules. Returns false when any was invalid.
    pub(super) fn settings_children(&mut self, kids: &[&KdlNode], s: &mut ModuleSettings) -> bool {
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
            if let Some((_, c)) =
                rules::first_bad_char(k, |c| !("+#$.".contains(c) || c.is_whitespace())).filter(|_| !k.is_empty())
            {
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

    pub(super) fn module(&mut self, node: &KdlNode, kind: DeploymentKind) -> Option<(Module, Vec<TwinSetting>)> {
        self.check_entries(node, 1, &["image", "version"]);
        let (name, span) =
            self.named_arg(node, "a name", "module \"Monitor\" image=\"contoso.azurecr.io/monitor:2.1\"")?;
        let mut ok = true;
        if let Some(p) = checks::system_module(kind, &name, &self.origin(span)) {
            self.problems.push(p);
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
    pub(super) fn twin(&mut self, node: &KdlNode, module: String, arg_index: usize) -> Option<TwinSetting> {
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
}
