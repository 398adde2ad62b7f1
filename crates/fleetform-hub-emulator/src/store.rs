//! Twins held as compressed JSON text, so that a million-device hub fits a laptop.
//!
//! A `serde_json::Value` tree costs several times the twin's text in allocations; the text
//! itself (about 1 KB a twin) still makes 2 GB for a million devices with their `$edgeAgent`
//! twins. Twins of one hub share nearly all their keys and many values, so each is compressed
//! on its own (LZ4, fast enough to decompress on every read) against a dictionary of a few
//! sample twins of the same kind, which is what makes records this small compress at all.
//! Reads decompress into a caller's buffer; only changed twins are ever parsed into a tree.

use serde_json::Value;

/// LZ4 hashes the whole dictionary again for every twin it compresses, so the dictionary
/// is a few twins (enough for every key spelling) rather than the 64 KiB LZ4 could use:
/// with 60 KiB, loading a million devices took over a minute.
const DICTIONARY_BYTES: usize = 6 * 1024;

/// One kind of twins (device or module), in insertion order.
#[derive(Default)]
pub struct TwinStore {
    dict: Vec<u8>,
    /// Each: the uncompressed length (LZ4's size prefix) and the block.
    packed: Vec<Box<[u8]>>,
    packed_bytes: usize,
}

/// A stored twin failed to decompress: memory corruption or a bug, never user input.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("stored twin {index} does not decompress: {source}")]
#[diagnostic(code(fleetform::emulator::store))]
pub struct CorruptTwin {
    pub index: usize,
    #[source]
    pub source: lz4_flex::block::DecompressError,
}

impl TwinStore {
    /// A store whose dictionary is made of `samples` (typically the first twins of the file).
    pub fn with_samples<'s>(samples: impl IntoIterator<Item = &'s [u8]>) -> TwinStore {
        let mut dict = Vec::new();
        for s in samples {
            if dict.len() + s.len() > DICTIONARY_BYTES {
                break;
            }
            dict.extend_from_slice(s);
        }
        TwinStore { dict, packed: Vec::new(), packed_bytes: 0 }
    }

    pub fn len(&self) -> usize {
        self.packed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// Compressed bytes held (without the per-twin allocation overhead).
    pub fn packed_bytes(&self) -> usize {
        self.packed_bytes
    }

    fn pack(&self, json: &[u8]) -> Box<[u8]> {
        lz4_flex::block::compress_prepend_size_with_dict(json, &self.dict).into_boxed_slice()
    }

    /// Appends one twin given as its JSON text.
    pub fn push_bytes(&mut self, json: &[u8]) {
        let packed = self.pack(json);
        self.packed_bytes += packed.len();
        self.packed.push(packed);
    }

    pub fn push_value(&mut self, twin: &Value) {
        let text = serde_json::to_vec(twin).expect("a Value always serializes");
        self.push_bytes(&text);
    }

    /// Replaces twin `index` (which must exist).
    pub fn set_value(&mut self, index: usize, twin: &Value) {
        let text = serde_json::to_vec(twin).expect("a Value always serializes");
        let packed = self.pack(&text);
        self.packed_bytes = self.packed_bytes + packed.len() - self.packed[index].len();
        self.packed[index] = packed;
    }

    /// Writes twin `index`'s JSON text into `out` (replacing what it held).
    pub fn read_into(&self, index: usize, out: &mut Vec<u8>) -> Result<(), CorruptTwin> {
        let corrupt = |source| CorruptTwin { index, source };
        let (size, block) = lz4_flex::block::uncompressed_size(&self.packed[index]).map_err(corrupt)?;
        out.clear();
        out.resize(size, 0);
        let n = lz4_flex::block::decompress_into_with_dict(block, out, &self.dict).map_err(corrupt)?;
        out.truncate(n);
        Ok(())
    }

    /// Twin `index` as a tree, for the code paths that change or project it.
    pub fn value(&self, index: usize, scratch: &mut Vec<u8>) -> Result<Value, CorruptTwin> {
        self.read_into(index, scratch)?;
        // Only text that came from a Value or was checked on load is stored.
        Ok(serde_json::from_slice(scratch).unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn twins_come_back_byte_for_byte_and_similar_twins_shrink() {
        let twin = |i: usize| {
            format!(
                r#"{{"deviceId":"device-{i:06}","etag":"AAAAAAAAAAE=","status":"enabled","tags":{{"environment":"prod","location":{{"building":"{}"}}}},"capabilities":{{"iotEdge":true}}}}"#,
                i % 7
            )
        };
        let samples: Vec<String> = (0..4).map(twin).collect();
        let mut store = TwinStore::with_samples(samples.iter().map(|s| s.as_bytes()));
        for i in 0..100 {
            store.push_bytes(twin(i).as_bytes());
        }
        let mut out = Vec::new();
        for i in [0, 42, 99] {
            store.read_into(i, &mut out).unwrap();
            assert_eq!(out, twin(i).as_bytes());
        }
        let raw: usize = (0..100).map(|i| twin(i).len()).sum();
        assert!(store.packed_bytes() * 3 < raw, "{} packed of {raw}", store.packed_bytes());
        store.set_value(42, &json!({"deviceId": "changed"}));
        assert_eq!(store.value(42, &mut out).unwrap(), json!({"deviceId": "changed"}));
        assert_eq!(store.len(), 100);
    }
}
