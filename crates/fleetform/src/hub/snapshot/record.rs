//! One record, one twin: parsing a record's bytes (whole or projected), errors placed at
//! the record's position in its file, and the duplicate-id check.

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use crate::model::twin::{TwinRecord, TwinShapeError};

use super::projection::Reading;
use super::splitter::RecordPos;
use super::{SnapshotError, TwinFormat};

/// The part of a serde_json error message without its " at line L column C" suffix,
/// which would be wrong here since serde_json only saw one record.
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// Maps a serde_json error inside a record to a position in the file.
pub(super) fn syntax_error(file: &Path, pos: RecordPos, e: &serde_json::Error, help: String) -> SnapshotError {
    let (line, column) = (e.line() as u64, e.column() as u64);
    let (line, column) =
        if line <= 1 { (pos.line, pos.column + column.saturating_sub(1)) } else { (pos.line + line - 1, column) };
    SnapshotError::Syntax { file: file.to_path_buf(), line, column, message: serde_message(e), help }
}

pub(super) fn parse_record<T: TwinRecord>(
    bytes: &[u8],
    pos: RecordPos,
    file: &Path,
    format: TwinFormat,
    reading: &Reading,
) -> Result<T, SnapshotError> {
    let value = reading.parse(bytes).map_err(|e| {
        let help = match format {
            TwinFormat::JsonLines => {
                "each line of a .jsonl file is one complete twin object; a pretty-printed array belongs in a .json file"
            }
            TwinFormat::Json => "fix the twin object at this position or re-export the file",
        };
        syntax_error(file, pos, &e, help.into())
    })?;
    T::from_value(value).map_err(|e| match e {
        TwinShapeError::NotAnObject => {
            SnapshotError::NotAnObject { what: T::WHAT, file: file.to_path_buf(), line: pos.line }
        }
        TwinShapeError::MissingField(field) => {
            SnapshotError::MissingId { what: T::WHAT, field, file: file.to_path_buf(), line: pos.line }
        }
    })
}

/// Ids seen so far and the line each was first seen at, the one per-device cost the
/// readers keep. An id is kept as its 128-bit XXH3 hash, not its text: a boxed id beside
/// its entry was 30 MB of a million-device plan's peak, and a duplicate's text is the
/// record at hand when it is found. Two different ids sharing a hash (odds about
/// n²/2¹²⁹, 10⁻²⁷ for a million) would be reported as a duplicate: the check fails closed.
/// Fx over the hash, not SipHash: the ids come from the user's own snapshot file, not from
/// a peer choosing collisions.
#[derive(Default)]
pub(super) struct SeenIds {
    lines: FxHashMap<[u64; 2], u64>,
    key: String,
}

impl SeenIds {
    /// Records `twin` seen at `line`; on a duplicate returns (key, first line, later line).
    /// Lines may arrive out of order (parallel workers), so the earliest is kept.
    pub(super) fn check<T: TwinRecord>(&mut self, twin: &T, line: u64) -> Option<(String, u64, u64)> {
        self.key.clear();
        twin.write_key(&mut self.key);
        let hash = twox_hash::XxHash3_128::oneshot(self.key.as_bytes());
        match self.lines.entry([hash as u64, (hash >> 64) as u64]) {
            Entry::Occupied(mut first) => {
                let pair = ((*first.get()).min(line), (*first.get()).max(line));
                first.insert(pair.0);
                Some((self.key.clone(), pair.0, pair.1))
            }
            Entry::Vacant(slot) => {
                slot.insert(line);
                None
            }
        }
    }
}

pub(super) fn duplicate(what: &'static str, file: &Path, (key, first_line, line): (String, u64, u64)) -> SnapshotError {
    SnapshotError::Duplicate { what, key, file: file.to_path_buf(), line, first_line }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fleet::Projection;
    use crate::model::twin::Twin;
    use serde_json::json;

    fn pos(line: u64, column: u64) -> RecordPos {
        RecordPos { line, column }
    }

    #[test]
    fn error_inside_a_record_is_mapped_to_file_position() {
        let file = Path::new("devices.json");
        let e = parse_record::<Twin>(
            b"{\"deviceId\":\n  \"a\" x}",
            pos(10, 5),
            file,
            TwinFormat::Json,
            &Reading::new(&Projection::Full),
        )
        .unwrap_err();
        match e {
            SnapshotError::Syntax { line, column, message, .. } => {
                assert_eq!((line, column), (11, 7));
                assert!(!message.contains("at line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = parse_record::<Twin>(
            b"{\"deviceId\": x}",
            pos(10, 5),
            file,
            TwinFormat::Json,
            &Reading::new(&Projection::Full),
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { line: 10, column: 18, .. }), "{e:?}");
    }

    #[test]
    fn targeting_projection_keeps_what_conditions_can_reference() {
        let file = Path::new("devices.jsonl");
        let text = br#"{"deviceId":"d","etag":"AAA=","Tags":{"a":{"b":1}},"capabilities":{"iotEdge":true},
            "properties":{"desired":{"x":1,"$version":2},"reported":{"fw":"2.4.1"}},"x509Thumbprint":{"p":null}}"#;
        let twin: Twin =
            parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, &Reading::new(&Projection::Targeting)).unwrap();
        assert_eq!(
            twin.value(),
            &json!({"deviceId":"d","Tags":{"a":{"b":1}},"capabilities":{"iotEdge":true},
                "properties":{"reported":{"fw":"2.4.1"}}})
        );
        assert!(twin.is_edge());
        // Skipped members are still checked as JSON, and positions stay exact.
        let e = parse_record::<Twin>(
            br#"{"deviceId":"d","etag":[1,}"#,
            pos(4, 1),
            file,
            TwinFormat::JsonLines,
            &Reading::new(&Projection::Targeting),
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { line: 4, column: 27, .. }), "{e:?}");
        let e =
            parse_record::<Twin>(b"[1]", pos(2, 1), file, TwinFormat::JsonLines, &Reading::new(&Projection::Targeting))
                .unwrap_err();
        assert!(matches!(e, SnapshotError::NotAnObject { line: 2, .. }), "{e:?}");
        let e = parse_record::<Twin>(
            b"{} x",
            pos(2, 1),
            file,
            TwinFormat::JsonLines,
            &Reading::new(&Projection::Targeting),
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { column: 4, .. }), "{e:?}");
        // `desired` is dropped by the projection, but a wrong shape of it is still seen.
        for (text, wrong) in [
            (&br#"{"deviceId":"d","properties":{"desired":"x","reported":{}}}"#[..], true),
            (br#"{"deviceId":"d","properties":{"desired":[1],"reported":{}}}"#, true),
            (br#"{"deviceId":"d","properties":{"desired":{"a":{"b":1}},"reported":{}}}"#, false),
        ] {
            let twin: Twin =
                parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, &Reading::new(&Projection::Targeting))
                    .unwrap();
            let full: Twin =
                parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, &Reading::new(&Projection::Full)).unwrap();
            assert_eq!(crate::hub::shape::issues(&twin), crate::hub::shape::issues(&full));
            assert_eq!(
                crate::hub::shape::issues(&twin).contains(&crate::hub::shape::ShapeIssue::DesiredNotObject),
                wrong
            );
        }
        let e = parse_record::<Twin>(
            br#"{"tags":{}}"#,
            pos(3, 1),
            file,
            TwinFormat::JsonLines,
            &Reading::new(&Projection::Targeting),
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::MissingId { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn seen_ids_keep_the_earliest_line() {
        let twin = |id: &str| Twin::from_value(json!({"deviceId": id})).unwrap();
        let mut seen = SeenIds::default();
        assert_eq!(seen.check(&twin("a"), 9), None);
        assert_eq!(seen.check(&twin("a"), 4), Some(("a".into(), 4, 9)));
        assert_eq!(seen.check(&twin("a"), 7), Some(("a".into(), 4, 7)));
        assert_eq!(seen.check(&twin("b"), 1), None);
    }
}
