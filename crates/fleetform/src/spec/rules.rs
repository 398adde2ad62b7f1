//! The hub's and the agent's rules, checked before anything is sent (docs/hub-semantics.md#names-and-enums, #query-language, #limits, #ids).

/// Configuration ids are at most 128 characters; `-` and 8 hex digits of content hash
/// are appended to the name, so the name gets the rest.
pub const MAX_ID_LEN: usize = 128;
pub const HASH_SUFFIX_LEN: usize = 9;
pub const MAX_NAME_LEN: usize = MAX_ID_LEN - HASH_SUFFIX_LEN;
pub const MAX_MODULES: usize = 50;
pub const MAX_METRICS: usize = 5;
pub const MAX_QUERY_LEN: usize = 8192;
/// The agent reads at most this many characters of one twin string value.
pub const CREATE_OPTIONS_CHUNK: usize = 512;
/// `createOptions` plus `createOptions01`…`createOptions99`.
pub const MAX_CREATE_OPTIONS_CHUNKS: usize = 100;

pub const STATUSES: &[&str] = &["running", "stopped"];
pub const RESTART_POLICIES: &[&str] = &["never", "on-failure", "on-unhealthy", "always"];
pub const IMAGE_PULL_POLICIES: &[&str] = &["on-create", "never"];
pub const AGENT_SCHEMAS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];
pub const HUB_SCHEMAS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];
/// Module names the runtime reserves for itself.
pub const SYSTEM_MODULES: &[&str] = &["edgeAgent", "edgeHub", "$edgeAgent", "$edgeHub"];
/// Label keys fleetform writes; users may not set them.
pub const RESERVED_LABEL_PREFIX: &str = "fleetform-";

/// Deployment ids: lowercase letters, digits and `- + % _ * ! '` (cli help).
pub fn valid_deployment_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "-+%_*!'".contains(c)
}

/// Module names: `^[a-zA-Z0-9_-]+$`.
pub fn valid_module_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Environment variable names: `^[^+#$\s.]+$`.
pub fn valid_env_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| "+#$.".contains(c) || c.is_whitespace())
}

/// Route and registry names: `^[^.$# ]+$`.
pub fn valid_route_or_registry_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| ".$# ".contains(c))
}

/// The first character of a name that breaks its pattern, with its byte offset.
pub fn first_bad_char(s: &str, ok: impl Fn(char) -> bool) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| !ok(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        assert!(valid_module_name("Sim_Temp-1"));
        assert!(!valid_module_name("sim.temp"));
        assert!(valid_env_name("SEND_INTERVAL"));
        assert!(!valid_env_name("A.B"));
        assert!(!valid_env_name("$X"));
        assert!(valid_route_or_registry_name("upstream"));
        assert!(!valid_route_or_registry_name("to upstream"));
        assert!("campus-base".chars().all(valid_deployment_char));
        assert!(!"Campus".chars().all(valid_deployment_char));
        assert_eq!(first_bad_char("ab c", |c| c != ' '), Some((2, ' ')));
    }
}
