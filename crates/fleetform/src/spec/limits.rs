//! Limits checked on a file's text before it reaches the KDL parser.
//!
//! The kdl crate's parser, our decoder and the formatter all recurse once per level of
//! `{ … }` children, so a file nested some thousands of levels deep overflows the stack and
//! aborts the process. Counting braces first, outside strings and comments, turns that into
//! an ordinary spanned problem.

use std::sync::Arc;

use miette::SourceSpan;

use super::diag::{Code, Problem};
use super::source::SourceFile;

/// Deepest `{ … }` nesting a file may have. A deployment needs about six levels plus the
/// twin's own depth, and the hub refuses twins nested deeper than ten levels, so 128 leaves
/// plenty of room while staying far below where the recursive parsers run out of stack.
pub const MAX_NESTING: usize = 128;

/// Largest `.kdl` file read. The KDL document tree costs up to ~95 bytes of memory per
/// byte of input (a 15 MiB twin of 565,000 small keys peaked at 1.4 GB and took 10 s), so
/// the limit is set by what a file can usefully hold: one deployment at the hub's ceiling
/// is `$edgeAgent`, `$edgeHub` and 50 module twins of 32 KB each (1.7 MB of content, about
/// 2–3 MB as indented KDL), and the hub holds at most 100 deployments, normally one per
/// file. 4 MiB fits such a deployment with room to spare and bounds a file to under 0.5 GB
/// and about 3 s.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The hub's limit on one twin's `properties.desired` (and on `properties.reported`), by
/// [`hub_twin_size`].
pub const TWIN_DESIRED_LIMIT: usize = 32 * 1024;

/// Largest deployment manifest `import --manifest` reads. The most a deployment can carry
/// is `$edgeAgent`, `$edgeHub` and one twin per module (50), 32 KB each by the hub's size
/// rule: 52 × 32 KiB = 1.6 MiB. Pretty-printed JSON spends roughly as much again on
/// quotes, colons, indentation and escapes, so 4 MiB admits every manifest the hub could
/// accept while keeping a 52 MB file from costing a minute and gigabytes.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The size the hub charges a JSON document against its twin limits: for each property
/// the UTF-8 length of its key plus the size of its value, where a string counts its
/// characters except Unicode control characters (C0 and C1), a number 8 bytes, a boolean
/// 4 bytes and a nested object the sum of its properties. Quotes, colons and braces are
/// not counted, so this differs from the length of the JSON text.
pub fn hub_twin_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + hub_twin_size(v)).sum(),
        // ASCII (nearly every string) has only C0 controls and DEL: count bytes, not
        // chars; a plan counts every string of every merged document.
        Value::String(s) if s.is_ascii() => s.bytes().filter(|b| !b.is_ascii_control()).count(),
        Value::String(s) => s.chars().filter(|c| !c.is_control()).count(),
        Value::Number(_) => 8,
        Value::Bool(_) => 4,
        // Twins hold no arrays of their own (createOptions are strings); if a document
        // has one, charging its elements keeps the estimate from being too low.
        Value::Array(items) => items.iter().map(hub_twin_size).sum(),
        // A desired `null` deletes a property: it stores nothing.
        Value::Null => 0,
    }
}

/// Refuses a file of `size` bytes over `max`, before it is read.
pub fn check_file_size(path: &str, size: u64, max: u64) -> Result<(), super::LoadError> {
    if size > max {
        return Err(super::LoadError::TooLarge { path: path.to_string(), size, max });
    }
    Ok(())
}

/// The first `{` that opens a level deeper than [`MAX_NESTING`], as a byte offset.
pub fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Block comments nest in KDL.
                let mut level = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        level += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        level -= 1;
                        i += 2;
                        if level == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'#' | b'"' => i = skip_string(b, i),
            _ => i += 1,
        }
    }
    None
}

/// Skips a quoted or raw string starting at `i` (a `#` not followed by `#`s and a quote
/// is a keyword such as `#true`, and is skipped as one byte).
fn skip_string(b: &[u8], start: usize) -> usize {
    let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
    let mut i = start + hashes;
    if b.get(i) != Some(&b'"') {
        return start + hashes.max(1);
    }
    let triple = b[i..].starts_with(b"\"\"\"");
    let quote: &[u8] = if triple { b"\"\"\"" } else { b"\"" };
    i += quote.len();
    while i < b.len() {
        if hashes == 0 && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i..].starts_with(quote)
            && b[i + quote.len()..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes
        {
            return i + quote.len() + hashes;
        }
        i += 1;
    }
    b.len()
}

/// The problem for a file nested too deeply, or `None` if it is within the limit.
pub fn nesting_problem(file: &Arc<SourceFile>) -> Option<Problem> {
    let at = too_deep(&file.text)?;
    Some(
        Problem::new(
            Code::TooMany,
            file,
            SourceSpan::new(at.into(), 1),
            format!("children are nested more than {MAX_NESTING} levels deep"),
            format!("level {} starts here", MAX_NESTING + 1),
        )
        .with_help(format!(
            "fleetform reads at most {MAX_NESTING} levels of `{{ … }}`; flatten the structure \
             (the hub itself accepts twins at most 10 levels deep)"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_size_follows_the_hub_rule() {
        // Worked by hand: "a" (1) + "héllo" (5 characters, 6 bytes) = 6; "n" (1) + 8 = 9;
        // "flag" (4) + 4 = 8; "obj" (3) + ["x" (1) + "t\u{1}ab\u{85}" (3 after dropping
        // a C0 and a C1 control)] = 7; "ünï" (5 UTF-8 bytes) + "" (0) = 5; "z" (1) + null
        // (0) = 1; "q" (1) + "a\u{7f}\tb" (2: ASCII, DEL and tab are controls) = 3.
        // Total 6 + 9 + 8 + 7 + 5 + 1 + 3 = 39.
        let doc = serde_json::json!({
            "a": "héllo",
            "n": 12345.5,
            "flag": true,
            "obj": { "x": "t\u{1}ab\u{85}" },
            "ünï": "",
            "z": null,
            "q": "a\u{7f}\tb",
        });
        assert_eq!(hub_twin_size(&doc), 39);
        // The JSON text is longer: the rule is not the serialised length.
        assert!(serde_json::to_string(&doc).unwrap().len() > 39);
    }

    #[test]
    fn counts_braces_outside_strings_and_comments() {
        let ok = "a {".repeat(MAX_NESTING) + &"}".repeat(MAX_NESTING);
        assert_eq!(too_deep(&ok), None);
        let deep = "a {".repeat(MAX_NESTING + 1);
        assert_eq!(too_deep(&deep), Some(3 * MAX_NESTING + 2));
        let quoted = format!(
            "a \"{}\" #\"{}\"# /* {} /* */ {} */ // {}\n",
            "{".repeat(999),
            "{\"".repeat(999),
            "{".repeat(999),
            "{".repeat(999),
            "{".repeat(999)
        );
        assert_eq!(too_deep(&quoted), None);
        let multi = format!("a \"\"\"\n{}\n\"\"\" #true", "{".repeat(999));
        assert_eq!(too_deep(&multi), None);
        assert_eq!(too_deep(r#"a "\"{""#), None);
    }
}
