//! Code comments point into `docs/hub-semantics.md` by anchor; a renamed or removed section
//! would leave them pointing nowhere. Every anchor named in a comment must exist.

use std::collections::BTreeSet;
use std::path::Path;

fn anchors_in_doc(doc: &str) -> BTreeSet<String> {
    doc.split("<a id=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
}

/// `docs/hub-semantics.md#a, #b, #c` names three anchors: the first after the file name,
/// the others as `#name` in the same parenthesis or sentence.
fn anchors_cited(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("hub-semantics.md#") {
        let tail = &text[i + "hub-semantics.md".len()..];
        let end = tail.find([')', '\n']).unwrap_or(tail.len());
        for part in tail[..end].split(',') {
            let part = part.trim().trim_end_matches(['.', ';']);
            if let Some(name) = part.strip_prefix('#') {
                out.push(
                    name.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next().unwrap_or("").to_string(),
                );
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target" && n != "snapshots") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests/doc_anchors.rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_cited_anchor_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/hub-semantics.md")).unwrap();
    let anchors = anchors_in_doc(&doc);
    assert!(anchors.len() > 20, "{anchors:?}");
    let mut files = Vec::new();
    for dir in ["crates", "src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut cited = 0;
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in anchors_cited(&text) {
            cited += 1;
            if !anchors.contains(&name) {
                missing.push(format!("{}: #{name}", file.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(cited >= 20, "only {cited} citations found: the scanner is broken");
    assert!(missing.is_empty(), "anchors cited but not in docs/hub-semantics.md:\n{}", missing.join("\n"));
}

#[test]
fn the_scanner_reads_lists_of_anchors() {
    assert_eq!(anchors_cited("(docs/hub-semantics.md#a, #b-c, #d)."), ["a", "b-c", "d"]);
    assert_eq!(anchors_cited("see docs/hub-semantics.md#x; and more"), ["x"]);
    assert!(anchors_cited("docs/hub-semantics.md without anchor").is_empty());
}
