//! `route "name" "FROM … INTO …" priority=… ttl=…`: one edge hub route. The route's own
//! grammar is checked in [`crate::spec::checks`], against the whole text.

use kdl::KdlNode;

use super::Cx;
use crate::spec::diag::Code;
use crate::spec::model::*;
use crate::spec::rules::*;

impl Cx<'_> {
    pub(super) fn route(&mut self, node: &KdlNode) -> Option<Route> {
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
}
