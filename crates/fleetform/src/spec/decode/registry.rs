//! `registry "name" address=… username=… password=…`: credentials the agent pulls images
//! with, in `runtime` of a standard deployment or directly in a layered one.

use kdl::KdlNode;
use serde_json::Value;

use super::Cx;
use crate::spec::diag::Code;
use crate::spec::model::*;
use crate::spec::rules::*;

impl Cx<'_> {
    pub(super) fn registry(&mut self, node: &KdlNode) -> Option<Registry> {
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
}
