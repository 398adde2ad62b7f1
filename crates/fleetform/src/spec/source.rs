//! Source files and positions inside them, down to the bytes of a KDL string's contents.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents};

/// One `.kdl` file as read, shared by every diagnostic that points into it.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user should see it (relative to where they ran the command).
    pub name: String,
    pub path: PathBuf,
    pub text: Arc<String>,
    named: NamedSource<Arc<String>>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let name = name.into();
        let text = Arc::new(text);
        let named = NamedSource::new(&name, text.clone()).with_language("kdl");
        SourceFile { name, path: path.into(), text, named, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The file as miette renders it: contents with the file name in the header.
    pub fn named_source(&self) -> &NamedSource<Arc<String>> {
        &self.named
    }

    pub fn slice(&self, span: SourceSpan) -> &str {
        self.text.get(span.offset()..span.offset() + span.len()).unwrap_or("")
    }
}

/// Bytes of source a snippet may show; past that (a 1 MB `create-options` on one line) only
/// the span's own line is shown, cut to a window around the span's start.
const MAX_SNIPPET: usize = 4096;
const CLIP_CONTEXT: usize = 80;

impl SourceFile {
    fn clipped(&self, span: &SourceSpan, line: usize, left_context: bool) -> MietteSpanContents<'_> {
        let line_start = self.line_starts[line];
        let line_end = self.line_starts.get(line + 1).map_or(self.text.len(), |&s| s - 1);
        let floor = |mut at: usize| {
            while !self.text.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        // Without context miette expects the contents to start at the span: it reads the
        // header's `line:col` from there.
        let before = if left_context { CLIP_CONTEXT } else { 0 };
        let from = floor(span.offset().saturating_sub(before).max(line_start));
        let to = floor((span.offset() + span.len().min(CLIP_CONTEXT) + CLIP_CONTEXT).min(line_end).max(from));
        let column = self.text[line_start..from].chars().count();
        MietteSpanContents::new_named(
            self.name.clone(),
            &self.text.as_bytes()[from..to],
            SourceSpan::new(from.into(), to - from),
            line,
            column,
            1,
        )
        .with_language("kdl")
    }
}

/// miette's own `SourceCode` for a string scans from the start of the text for every
/// snippet, so rendering N problems cost O(N × file size): 8,000 problems took 34 s. This
/// hands miette only the lines around the span, found with the line index, and shifts the
/// answer back, so each snippet costs what its lines cost and the output is unchanged.
impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let end = span.offset() + span.len();
        if end > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let line_of = |at: usize| self.line_starts.partition_point(|&s| s <= at) - 1;
        // One spare line each side, so miette sees the same context it would in the whole text.
        let first = line_of(span.offset()).saturating_sub(context_lines_before + 1);
        let last = line_of(end) + context_lines_after + 2;
        let start = self.line_starts[first];
        let stop = self.line_starts.get(last).copied().unwrap_or(self.text.len());
        if stop - start > MAX_SNIPPET {
            return Ok(Box::new(self.clipped(span, line_of(span.offset()), context_lines_before > 0)));
        }
        let window = &self.text.as_bytes()[start..stop];
        let local = SourceSpan::new((span.offset() - start).into(), span.len());
        let inner = window.read_span(&local, context_lines_before, context_lines_after)?;
        let shifted = SourceSpan::new((inner.span().offset() + start).into(), inner.span().len());
        let contents = MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            shifted,
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )
        .with_language("kdl");
        Ok(Box::new(contents))
    }
}

/// Maps each byte of a KDL string value's decoded contents to its byte offset in the
/// source, so that an error found inside the string (a target condition, a route) can be
/// labelled at the exact character. `repr_start` is where the value's text begins and
/// `repr` is that text as written. Returns `None` for multi-line strings, whose
/// dedenting makes the mapping ambiguous; callers then label the whole value.
pub fn string_offsets(repr: &str, repr_start: usize) -> Option<Vec<usize>> {
    let mut map = Vec::with_capacity(repr.len() + 1);
    let hashes = repr.bytes().take_while(|&b| b == b'#').count();
    let rest = &repr[hashes..];
    if rest.starts_with("\"\"\"") {
        return None;
    }
    if !rest.starts_with('"') {
        // A bare identifier string: bytes map one to one.
        map.extend((0..=repr.len()).map(|i| repr_start + i));
        return Some(map);
    }
    let body_start = hashes + 1;
    let body_end = repr.len().checked_sub(hashes + 1)?;
    let body = repr.get(body_start..body_end)?;
    if hashes > 0 {
        // Raw strings have no escapes.
        map.extend((0..=body.len()).map(|i| repr_start + body_start + i));
        return Some(map);
    }
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at = repr_start + body_start + i;
        if bytes[i] != b'\\' {
            let ch_len = body[i..].chars().next().map_or(1, char::len_utf8);
            map.extend(std::iter::repeat_n(at, ch_len));
            i += ch_len;
            continue;
        }
        let next = *bytes.get(i + 1)?;
        match next {
            b'n' | b't' | b'r' | b'b' | b'f' | b's' | b'"' | b'\\' => {
                map.push(at);
                i += 2;
            }
            b'u' => {
                let close = body[i..].find('}')? + i;
                let code = u32::from_str_radix(body.get(i + 3..close)?, 16).ok()?;
                let ch = char::from_u32(code)?;
                map.extend(std::iter::repeat_n(at, ch.len_utf8()));
                i = close + 1;
            }
            // A backslash before whitespace swallows the whitespace: nothing decoded.
            _ => {
                i += 1;
                while i < bytes.len() && (bytes[i] as char).is_whitespace() {
                    i += 1;
                }
            }
        }
    }
    map.push(repr_start + body_start + bytes.len());
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("a.kdl", "a.kdl", "ab\néé x\n".to_string());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(8), (2, 4));
    }

    #[test]
    fn maps_escapes_and_raw_strings() {
        // "a\"b" written at offset 10: decoded a " b
        let m = string_offsets(r#""a\"b""#, 10).unwrap();
        assert_eq!(m, vec![11, 12, 14, 15]);
        let m = string_offsets(r##"#"x"y"#"##, 0).unwrap();
        assert_eq!(m, vec![2, 3, 4, 5]);
        let m = string_offsets(r#""\u{41}z""#, 0).unwrap();
        assert_eq!(m, vec![1, 7, 8]);
        assert!(string_offsets("\"\"\"\nx\n\"\"\"", 0).is_none());
    }
}
