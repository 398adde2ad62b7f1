//! Which values are secrets by their name. The hub never says which of a deployment's
//! values are secret, so the renderer, `import` and the redactor all guess from the name.

/// Whether a setting's name says its value is a credential (an env variable, a field).
/// The hub never says which values are secret, so `import` and the redactor both guess
/// from the name; one list, so that what `import` turns into `(secret-env)` is exactly
/// what plans mask.
pub fn name_looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const WORDS: [&str; 12] = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "accesskey",
        "access_key",
        "privatekey",
        "private_key",
        "connectionstring",
        "connection_string",
    ];
    // "key" alone only as a whole word (SAS_KEY, key), not inside "keyboard" or "monkey".
    WORDS.iter().any(|w| lower.contains(w))
        || lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| matches!(w, "key" | "pwd" | "sas"))
}
