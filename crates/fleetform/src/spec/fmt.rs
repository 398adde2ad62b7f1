//! `fleetform fmt`: one canonical layout for deployment files, keeping every comment.
//!
//! The `kdl` crate's own autoformat drops end-of-line comments and rewrites raw strings
//! (which makes JSON create options unreadable), so the layout is printed here from the
//! parsed document and the decoration it preserves: indentation is four spaces per level,
//! one node per line (a `\` line continuation keeps its line break, and the continued
//! line is indented one level deeper), one space between entries, at most one blank line
//! in a row, and values exactly as written.

use kdl::{KdlDocument, KdlEntry, KdlError, KdlNode};

const INDENT: &str = "    ";

/// Formats a whole file. Errors when the text is not valid KDL (nothing is changed then).
pub fn format_source(text: &str) -> Result<String, KdlError> {
    let doc: KdlDocument = text.parse()?;
    let mut out = String::with_capacity(text.len());
    write_nodes(&doc, 0, true, &mut out);
    if let Some(fmt) = doc.format() {
        // The parser gives a document's leading comments to its first node; with no node
        // (a file of comments, or of slashdashed nodes only) they stay here.
        if doc.nodes().is_empty() {
            write_comment_lines(&fmt.leading, 0, false, true, &mut out);
        }
        write_comment_lines(&fmt.trailing, 0, !doc.nodes().is_empty(), true, &mut out);
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn write_nodes(doc: &KdlDocument, level: usize, mut at_line_start: bool, out: &mut String) {
    for (i, node) in doc.nodes().iter().enumerate() {
        let fmt = node.format();
        let leading = fmt.map_or("", |f| f.leading.as_str());
        write_comment_lines(leading, level, i > 0, at_line_start, out);
        write_node(node, level, out);
        at_line_start = fmt.is_none_or(|f| f.terminator.is_empty() || lines(&f.terminator).nth(1).is_some());
    }
}

/// Writes the comments (and at most one blank line) held in whitespace-and-comment text.
/// `blank_ok` says whether a blank line may be kept before the first comment;
/// `at_line_start` says whether the text starts on a fresh line.
fn write_comment_lines(text: &str, level: usize, blank_ok: bool, at_line_start: bool, out: &mut String) {
    let segments: Vec<&str> = lines(text).collect();
    let last = segments.len() - 1;
    let mut pending_blank = false;
    let mut emitted_any = false;
    let mut base_indent: Option<usize> = None;
    for (i, seg) in segments.iter().enumerate() {
        // The first segment is the rest of the previous line unless that line had ended.
        let whole_line = i < last && (i > 0 || at_line_start);
        let trimmed = seg.trim();
        if trimmed.is_empty() {
            if whole_line {
                pending_blank = true;
                base_indent = None;
            }
            continue;
        }
        if pending_blank && (emitted_any || blank_ok) {
            out.push('\n');
        }
        pending_blank = false;
        emitted_any = true;
        let indent = seg.len() - seg.trim_start().len();
        let base = *base_indent.get_or_insert(indent);
        // Byte counts of different lines' whitespace: cut on a character (a no-break
        // space is two bytes).
        let mut cut = indent.min(base);
        while !seg.is_char_boundary(cut) {
            cut -= 1;
        }
        let keep = &seg[cut..];
        for _ in 0..level {
            out.push_str(INDENT);
        }
        out.push_str(keep.trim_end());
        out.push('\n');
    }
    if pending_blank && (emitted_any || blank_ok) {
        out.push('\n');
    }
}

fn write_node(node: &KdlNode, level: usize, out: &mut String) {
    indent(level, out);
    let mut line = NodeLine { out, level, fresh: true };
    let fmt = node.format();
    let around_ty = fmt.map(|f| [f.before_ty_name.as_str(), f.after_ty_name.as_str(), f.after_ty.as_str()]);
    line.annotated(node.ty(), around_ty, &node.name().to_string());
    for entry in node.entries() {
        write_entry(entry, &mut line);
    }
    if let Some(f) = fmt
        && node.children().is_none()
    {
        line.decoration(&f.before_terminator);
    }
    if let Some(children) = node.children() {
        if let Some(f) = fmt {
            line.decoration(&f.before_children);
        }
        let doc_fmt = children.format();
        let inner_trailing = doc_fmt.map_or("", |f| f.trailing.as_str());
        if children.nodes().is_empty() && inner_trailing.trim().is_empty() {
            let inner_leading = doc_fmt.map_or("", |f| f.leading.trim());
            if inner_leading.is_empty() {
                line.token("{}");
            } else {
                line.token("{");
                let out = &mut *line.out;
                out.push('\n');
                write_comment_lines(inner_leading, level + 1, false, false, out);
                indent(level, out);
                out.push('}');
            }
        } else {
            line.token("{");
            let out = &mut *line.out;
            out.push('\n');
            // The parser gives the text after `{` to the first child, as its leading
            // comments: a comment there is written on the line after `{`.
            let leading = doc_fmt.map_or("", |f| f.leading.as_str());
            write_comment_lines(leading, level + 1, false, true, out);
            write_nodes(children, level + 1, false, out);
            write_comment_lines(inner_trailing, level + 1, true, true, out);
            while out.ends_with("\n\n") {
                out.pop();
            }
            indent(level, out);
            out.push('}');
        }
        line.fresh = false;
        if let Some(f) = fmt {
            line.decoration(&f.before_terminator);
        }
    }
    if let Some(f) = fmt {
        // An end-of-line comment is kept by the parser in the terminator.
        line.token(f.terminator.trim_end_matches('\n').trim_start_matches(';').trim());
        line.token(f.trailing.trim());
    }
    // A line continuation right before the end leaves an empty continuation line.
    while line.out.ends_with(' ') {
        line.out.pop();
    }
    line.out.push('\n');
}

/// The text of one node: its tokens one space apart, and the line breaks that line
/// continuations (`\`) inside it bring, each continued line indented one level deeper.
struct NodeLine<'a> {
    out: &'a mut String,
    level: usize,
    /// At the start of a (continued) line, where a token needs no space before it.
    fresh: bool,
}

impl NodeLine<'_> {
    /// [`NodeLine::decoration`], after which the next token follows without a space
    /// when the decoration was only spaces.
    fn tight_after(&mut self, text: &str) {
        self.decoration(text);
        if text.trim().is_empty() {
            self.fresh = true;
        }
    }

    /// `(type)text`, tight as usual; spaced, keeping them, when comments or a line
    /// continuation sit inside or after the type annotation (`around`: before the type's
    /// name, after it, after the `)`).
    fn annotated(&mut self, ty: Option<&kdl::KdlIdentifier>, around: Option<[&str; 3]>, text: &str) {
        let Some(ty) = ty else {
            self.token(text);
            return;
        };
        let name = ty.repr().unwrap_or(ty.value());
        match around {
            Some([before, after, outside]) if [before, after, outside].iter().any(|d| !d.trim().is_empty()) => {
                self.token("(");
                self.fresh = before.trim().is_empty();
                self.decoration(before);
                self.token(name);
                self.tight_after(after);
                self.token(")");
                self.tight_after(outside);
                self.token(text);
            }
            _ => self.token(&format!("({name}){text}")),
        }
    }

    fn token(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.fresh {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.fresh = false;
    }

    /// Whitespace, comments, slashdashed items and line continuations between tokens.
    /// Only the space at either end of each line changes: a continuation's `\` keeps
    /// the line break it needs, and a slashdashed string stays a valid (unused) string.
    fn decoration(&mut self, text: &str) {
        for (i, segment) in lines(text).enumerate() {
            if i > 0 {
                while self.out.ends_with(' ') {
                    self.out.pop();
                }
                self.out.push('\n');
                indent(self.level + 1, self.out);
                self.fresh = true;
            }
            self.token(segment.trim());
        }
    }
}

/// `text` cut at every KDL newline (CRLF as one; CR, LF, NEL, VT, FF, LS and PS alone):
/// a continuation may end with any of them, and a line cut only at `\n` would run the
/// next line into it.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s
            .char_indices()
            .find(|&(_, c)| matches!(c, '\r' | '\n' | '\u{85}' | '\u{b}' | '\u{c}' | '\u{2028}' | '\u{2029}'))
        {
            None => {
                rest = None;
                Some(s)
            }
            Some((at, c)) => {
                let width = if s[at..].starts_with("\r\n") { 2 } else { c.len_utf8() };
                rest = Some(&s[at + width..]);
                Some(&s[..at])
            }
        }
    })
}

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str(INDENT);
    }
}

fn write_entry(entry: &KdlEntry, line: &mut NodeLine) {
    let fmt = entry.format();
    // Inline comments and slashdashed values written before the entry.
    if let Some(f) = fmt {
        line.decoration(&f.leading);
    }
    let value = match fmt {
        Some(f) if !f.value_repr.is_empty() => f.value_repr.clone(),
        _ => entry.value().to_string(),
    };
    let around_ty = fmt.map(|f| [f.before_ty_name.as_str(), f.after_ty_name.as_str(), f.after_ty.as_str()]);
    match entry.name() {
        None => line.annotated(entry.ty(), around_ty, &value),
        Some(name) => {
            let around_eq = fmt.map_or(["", ""], |f| [f.after_key.as_str(), f.after_eq.as_str()]);
            if around_eq.iter().all(|d| d.trim().is_empty()) {
                line.token(&format!("{name}="));
                line.fresh = true;
            } else {
                // Comments or a line continuation around `=`: kept, spaced.
                line.token(&name.to_string());
                line.tight_after(around_eq[0]);
                line.token("=");
                line.tight_after(around_eq[1]);
            }
            line.annotated(entry.ty(), around_ty, &value);
        }
    }
    if let Some(f) = fmt {
        line.decoration(&f.trailing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSY: &str = "// head comment\n\n  deployment   \"a\"   {\n  target  \"tags.x='1'\" // why this target\n /- priority 3\n  reg password=(env)\"X\"    k=#\"raw\"# \n\n\n  bad \"x\" /* inline */ y=1 ; z 2\n   // before close\n}\n\n// between\nlayered b { priority 1; }\nempty {}\n";

    #[test]
    fn canonical_layout_keeps_comments_and_raw_strings() {
        let out = format_source(MESSY).unwrap();
        let expected = "// head comment\n\ndeployment \"a\" {\n    target \"tags.x='1'\" // why this target\n    /- priority 3\n    reg password=(env)\"X\" k=#\"raw\"#\n\n    bad \"x\" /* inline */ y=1\n    z 2\n    // before close\n}\n\n// between\nlayered b {\n    priority 1\n}\nempty {}\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn formatting_is_idempotent_and_meaning_preserving() {
        let once = format_source(MESSY).unwrap();
        let twice = format_source(&once).unwrap();
        assert_eq!(once, twice);
        assert_eq!(bare(MESSY), bare(&once));
    }

    #[test]
    fn invalid_kdl_is_an_error() {
        assert!(format_source("node {").is_err());
    }

    /// The meaning of a document: its nodes and values without any layout.
    fn bare(text: &str) -> String {
        let mut doc: KdlDocument = text.parse().unwrap();
        doc.clear_format_recursive();
        doc.to_string()
    }

    #[test]
    fn a_line_continuation_keeps_its_line_break() {
        // Found by fuzzing: `priority 1 \<newline> target ...` came out as one line with
        // the `\` in the middle, which is not KDL.
        let out = format_source("deployment a {\n  priority 1 \\ // why\n     target \"x\"\n}\n").unwrap();
        assert_eq!(out, "deployment a {\n    priority 1 \\ // why\n        target \"x\"\n}\n");
        let cases = [
            "a 1 \\\n  target \"x\"\n",
            "a 1 \\ // c\n  target \"x\"\n",
            "a 1 \\\n\nb 2\n",
            "a 1 \\ // c\n\nb 2\n",
            "a \\\n {\n b\n}\n",
            "a 1 \\\n /- 2 \\\n 3\n",
            "\\\na 1\n",
            "a 1 \\\n;b\n",
            "a 1 \\\n {\n}\n",
            "a {\n b 1 \\\n 2\n}\n",
            "a 1 /* x\n y */ 2\n",
            "a 1 \\   \n 2\n",
            "a 1; \\\n b\n",
            "a { // c\n b\n}\n",
            "a { \\\n b\n}\n",
            "a 1 /- \"x\\\\\" \\\n 2\n",
            "a 1 /- {\n  b \"\\\\\"\n }\n",
            "a \\\n (t)1 \\ // c\n k=2\n",
            // Every KDL newline ends a continuation, not only LF.
            "a 1 \\\r\n 2\r\nb\r\n",
            "a 1 \\\u{b}@\n",
            "q\n.......... \\\u{b}@",
            "a 1 \\ // c\u{c} 2\u{2028}b \\\u{85}3\u{2029}",
            "a 1 \\\r 2\r",
            // Found by review: whitespace of two bytes before a comment, comments around
            // `=` and type annotations, blank lines after other newlines.
            " // a\n\u{a0}// b\nn\n",
            "a k= \\ // why\n 1\n",
            "(t) \\ // c\n a\n",
            "a ( /* c */ t)1 k=(u) /* d */ 2\n",
            "a\r\rb\n",
        ];
        for case in cases {
            let once = format_source(case).unwrap();
            for comment in ["// why", "// c", "/* c */", "/* d */"] {
                assert_eq!(case.contains(comment), once.contains(comment), "{case:?} gave {once:?}");
            }
            let twice = format_source(&once).unwrap_or_else(|e| panic!("{case:?} gave {once:?}, not KDL: {e}"));
            assert_eq!(once, twice, "{case:?}");
            assert_eq!(bare(case), bare(&once), "{case:?} gave {once:?}");
        }
    }

    #[test]
    fn a_file_of_comments_keeps_them() {
        // Found by review: with no node the parser keeps the comments on the document,
        // and `fmt` wrote an empty file.
        assert_eq!(format_source("// TODO\n\n  // later\n").unwrap(), "// TODO\n\n// later\n");
        let skipped = "/- deployment a {\n    b\n}\n";
        assert_eq!(format_source(skipped).unwrap(), skipped);
        assert_eq!(format_source("a { // c\n b\n}\n").unwrap(), "a {\n    // c\n    b\n}\n");
    }
}
