//! The model <-> the hub's Configuration JSON, both ways.
//!
//! [`render`] produces exactly what is sent to the hub (and the id it gets); [`read`]
//! turns a Configuration back into the model, so that plan and import can compare and
//! convert. `render(read(render(d)))` is byte-identical to `render(d)`.

mod equiv;
mod kdl;
mod lint;
mod read;
mod render;

pub use equiv::same_content;
pub use kdl::{kdl_ident, kdl_string, to_kdl};
pub use lint::{lint, lint_declared};
pub use read::{ReadError, read};
pub use render::{
    Env, HASH_KEY_MIN_CHARS, HASH_KEY_VAR, HASH_SCHEME, MapEnv, ProcessEnv, Rendered, SELF_SEGMENT, SecretMode,
    desired_documents, fill_self, legacy_hash, render, render_all, set_path,
};

/// What a sensitive value is replaced with in every output.
pub const MASK: &str = "(sensitive)";

/// Labels fleetform writes onto every configuration it manages.
pub const LABEL_NAME: &str = "fleetform-name";
pub const LABEL_HASH: &str = "fleetform-hash";
pub const LABEL_COMMIT: &str = "fleetform-commit";
/// Which content-hash scheme `fleetform-hash` follows (absent: scheme 1, see
/// [`legacy_hash`]).
pub const LABEL_HASH_SCHEME: &str = "fleetform-hash-scheme";

/// Splits a compact createOptions string into the agent's 512-character pieces
/// (`createOptions`, `createOptions01`, …), counting characters, not bytes.
pub fn chunk_create_options(compact: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = compact.chars().collect();
    if chars.is_empty() {
        return vec![("createOptions".to_string(), String::new())];
    }
    chars
        .chunks(crate::spec::rules::CREATE_OPTIONS_CHUNK)
        .enumerate()
        .map(|(i, piece)| {
            let key = if i == 0 { "createOptions".to_string() } else { format!("createOptions{i:02}") };
            (key, piece.iter().collect())
        })
        .collect()
}

/// Joins createOptions pieces back, as the agent does. Returns `None` when a piece is
/// missing from the sequence.
pub fn join_create_options(settings: &serde_json::Map<String, serde_json::Value>) -> Option<Result<String, String>> {
    let first = settings.get("createOptions")?;
    let mut out = match first {
        serde_json::Value::String(s) => s.clone(),
        // The agent reads a `null` createOptions as no options, as `--manifest` does.
        serde_json::Value::Null => String::new(),
        _ => return Some(Err("createOptions is not a string".to_string())),
    };
    for i in 1..crate::spec::rules::MAX_CREATE_OPTIONS_CHUNKS {
        match settings.get(&format!("createOptions{i:02}")) {
            Some(serde_json::Value::String(s)) => out.push_str(s),
            Some(_) => return Some(Err(format!("createOptions{i:02} is not a string"))),
            None => break,
        }
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_options_chunk_and_join_on_characters() {
        let long: String = std::iter::repeat_n('é', 1100).collect();
        let pieces = chunk_create_options(&long);
        assert_eq!(
            pieces.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["createOptions", "createOptions01", "createOptions02"]
        );
        assert_eq!(pieces[0].1.chars().count(), 512);
        assert_eq!(pieces[2].1.chars().count(), 1100 - 1024);
        let map: serde_json::Map<_, _> = pieces.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        assert_eq!(join_create_options(&map).unwrap().unwrap(), long);
    }
}
