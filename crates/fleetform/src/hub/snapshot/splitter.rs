//! Cutting a twin file into records, one twin's bytes each, before serde_json sees them.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{SnapshotError, TwinFile, TwinFormat};

pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// Read buffer for twin files: large enough that `fill_buf` rarely splits a twin.
const READ_BUFFER: usize = 256 * 1024;

/// Where a record starts in its file (1-based line and byte column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordPos {
    pub(super) line: u64,
    pub(super) column: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrayState {
    Start,
    First,
    AfterElement,
    Done,
}

/// Cuts a twin file into records, one twin's bytes each, without parsing them.
///
/// serde_json has no pull iterator over the elements of an array read from a stream (its
/// `StreamDeserializer` takes whitespace-separated values, and a `SeqAccess` visitor is
/// push-only), so for `.json` the array's framing is scanned here: commas, brackets and
/// strings are tracked just enough to find where each top-level object ends. What is
/// inside an object is left to serde_json, which reports any error in it.
pub(super) struct Splitter<R> {
    reader: R,
    pub(super) path: PathBuf,
    pub(super) format: TwinFormat,
    state: ArrayState,
    /// Current line (1-based) and bytes consumed on it.
    line: u64,
    column: u64,
}

impl<R: BufRead> Splitter<R> {
    fn new(reader: R, path: PathBuf, format: TwinFormat) -> Self {
        Splitter {
            reader,
            path,
            format,
            state: ArrayState::Start,
            line: match format {
                TwinFormat::Json => 1,
                TwinFormat::JsonLines => 0,
            },
            column: 0,
        }
    }

    /// Appends the next record's bytes to `out` and returns where it starts, or `None`
    /// at the end of the file.
    pub(super) fn next_record(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        match self.format {
            TwinFormat::JsonLines => self.next_line(out),
            TwinFormat::Json => self.next_element(out),
        }
    }

    fn next_line(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        loop {
            let start = out.len();
            let n = self.reader.read_until(b'\n', out).map_err(|source| self.read_error(source))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            // `out` may already hold earlier records of the batch: only this line's own
            // bytes may be trimmed, or a blank line would eat the `\r` before it.
            if out.len() > start && out.last() == Some(&b'\n') {
                out.pop();
            }
            if out.len() > start && out.last() == Some(&b'\r') {
                out.pop();
            }
            let mut column = 1;
            if self.line == 1 && out[start..].starts_with(UTF8_BOM) {
                out.drain(start..start + UTF8_BOM.len());
                column += UTF8_BOM.len() as u64;
            }
            if out[start..].iter().all(u8::is_ascii_whitespace) {
                out.truncate(start);
                continue;
            }
            return Ok(Some(RecordPos { line: self.line, column }));
        }
    }

    fn next_element(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        loop {
            match self.state {
                ArrayState::Start => {
                    let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
                    if buf.starts_with(UTF8_BOM) {
                        self.reader.consume(UTF8_BOM.len());
                    }
                    match self.peek_non_ws()? {
                        Some(b'[') => {
                            self.bump();
                            self.state = ArrayState::First;
                        }
                        found => return Err(self.unexpected(found, "a JSON array of twins `[`")),
                    }
                }
                ArrayState::First => match self.peek_non_ws()? {
                    Some(b']') => {
                        self.bump();
                        self.state = ArrayState::Done;
                    }
                    Some(b'{') => return self.element(out).map(Some),
                    found => return Err(self.unexpected(found, "a twin object `{` or `]`")),
                },
                ArrayState::AfterElement => match self.peek_non_ws()? {
                    Some(b',') => {
                        self.bump();
                        match self.peek_non_ws()? {
                            Some(b'{') => return self.element(out).map(Some),
                            found => {
                                return Err(self.unexpected(found, "a twin object `{` after `,`"));
                            }
                        }
                    }
                    Some(b']') => {
                        self.bump();
                        self.state = ArrayState::Done;
                    }
                    found => return Err(self.unexpected(found, "`,` or `]`")),
                },
                ArrayState::Done => {
                    return match self.peek_non_ws()? {
                        None => Ok(None),
                        found => Err(self.unexpected(found, "the end of the file after `]`")),
                    };
                }
            }
        }
    }

    /// Copies one object, starting at the `{` under the cursor, into `out`.
    fn element(&mut self, out: &mut Vec<u8>) -> Result<RecordPos, SnapshotError> {
        let pos = RecordPos { line: self.line, column: self.column + 1 };
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
            if buf.is_empty() {
                return Err(SnapshotError::Syntax {
                    file: self.path.clone(),
                    line: pos.line,
                    column: pos.column,
                    message: "end of file inside this twin object".into(),
                    help: "the file was probably cut short; re-export it".into(),
                });
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' {
                    self.line += 1;
                    self.column = 0;
                } else {
                    self.column += 1;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    // Brackets are counted without matching `{` to `}`: a mismatch is
                    // still inside this record, and serde_json reports it precisely.
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(buf.len());
            out.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if end.is_some() {
                self.state = ArrayState::AfterElement;
                return Ok(pos);
            }
        }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn peek_non_ws(&mut self) -> Result<Option<u8>, SnapshotError> {
        loop {
            let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut skipped = 0;
            for &b in buf {
                match b {
                    b'\n' => {
                        self.line += 1;
                        self.column = 0;
                    }
                    b' ' | b'\t' | b'\r' => self.column += 1,
                    other => {
                        self.reader.consume(skipped);
                        return Ok(Some(other));
                    }
                }
                skipped += 1;
            }
            self.reader.consume(skipped);
        }
    }

    /// Consumes the (non-newline) byte `peek_non_ws` returned.
    fn bump(&mut self) {
        self.reader.consume(1);
        self.column += 1;
    }

    fn unexpected(&self, found: Option<u8>, expected: &str) -> SnapshotError {
        let found = match found {
            None => "the end of the file".to_string(),
            Some(b) if b.is_ascii_graphic() => format!("`{}`", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        };
        SnapshotError::Syntax {
            file: self.path.clone(),
            line: self.line,
            column: self.column + 1,
            message: format!("expected {expected}, found {found}"),
            help: "a .json twin file holds one JSON array of twin objects: [{\"deviceId\": ...}, ...]".into(),
        }
    }

    fn read_error(&self, source: io::Error) -> SnapshotError {
        Self::io(&self.path, source)
    }

    fn io(path: &Path, source: io::Error) -> SnapshotError {
        SnapshotError::Read { path: path.to_path_buf(), source }
    }
}

pub(super) fn open_splitter(file: &TwinFile) -> Result<Splitter<BufReader<File>>, SnapshotError> {
    let handle = File::open(&file.path).map_err(|source| SnapshotError::Read { path: file.path.clone(), source })?;
    Ok(Splitter::new(BufReader::with_capacity(READ_BUFFER, handle), file.path.clone(), file.format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(format: TwinFormat, text: &str) -> Result<Vec<(RecordPos, String)>, SnapshotError> {
        let mut s = Splitter::new(text.as_bytes(), PathBuf::from("t"), format);
        let mut out = Vec::new();
        let mut records = Vec::new();
        while let Some(pos) = s.next_record(&mut out)? {
            records.push((pos, String::from_utf8(std::mem::take(&mut out)).unwrap()));
        }
        Ok(records)
    }

    fn pos(line: u64, column: u64) -> RecordPos {
        RecordPos { line, column }
    }

    /// The batch reader appends several records to one buffer; a blank line after a
    /// record ending in `\r\r` once trimmed into the record before it (found by fuzzing).
    #[test]
    fn blank_lines_never_trim_the_record_before_them() {
        let text = b"M\xff3\r\r\n\n#\xff\r";
        let mut s = Splitter::new(&text[..], PathBuf::from("t"), TwinFormat::JsonLines);
        let mut out = Vec::new();
        let mut starts = Vec::new();
        while let Some(pos) = s.next_record(&mut out).unwrap() {
            starts.push(pos);
        }
        assert_eq!(starts, vec![pos(1, 1), pos(3, 1)]);
        assert_eq!(out, b"M\xff3\r#\xff");
    }

    #[test]
    fn splits_array_elements_with_positions_and_tricky_strings() {
        let text = "\u{feff} [\n  {\"deviceId\":\"a\",\"s\":\"}]\\\"{\"},\n  {\"deviceId\":\"b\",\n \"x\":[{}]}\n]\n";
        let records = split_all(TwinFormat::Json, text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, pos(2, 3));
        assert_eq!(records[0].1, r#"{"deviceId":"a","s":"}]\"{"}"#);
        assert_eq!(records[1].0, pos(3, 3));
        assert_eq!(records[1].1, "{\"deviceId\":\"b\",\n \"x\":[{}]}");
        assert!(split_all(TwinFormat::Json, " [ ] ").unwrap().is_empty());
    }

    #[test]
    fn array_framing_errors_point_at_the_byte() {
        let cases = [
            ("", 1, 1, "expected a JSON array"),
            ("{\"deviceId\":\"a\"}", 1, 1, "found `{`"),
            ("[{\"deviceId\":\"a\"},\n ]", 2, 2, "after `,`"),
            ("[{\"deviceId\":\"a\"} {}]", 1, 19, "expected `,` or `]`"),
            ("[{\"deviceId\":\"a\"}] x", 1, 20, "end of the file after"),
            ("[1]", 1, 2, "a twin object"),
            ("[{\"deviceId\":\"a\"", 1, 2, "end of file inside"),
        ];
        for (text, line, column, needle) in cases {
            match split_all(TwinFormat::Json, text) {
                Err(SnapshotError::Syntax { line: l, column: c, message, .. }) => {
                    assert_eq!((l, c), (line, column), "{text:?}: {message}");
                    assert!(message.contains(needle), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn splits_lines_skipping_blank_ones_and_crlf() {
        let records = split_all(TwinFormat::JsonLines, "{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}").unwrap();
        let lines: Vec<_> = records.iter().map(|(p, r)| (p.line, r.as_str())).collect();
        assert_eq!(lines, [(1, "{\"a\":1}"), (4, "{\"b\":2}"), (5, "{\"c\":3}")]);
    }
}
