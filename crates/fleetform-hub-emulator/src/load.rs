//! Loading a snapshot's twins into [`TwinStore`]s without building a tree per twin.
//!
//! A `.jsonl` file is read line by line: each line is checked as JSON while only its ids are
//! taken out (borrowed, the rest skipped), and its text is stored as it is. Anything the fast
//! path does not accept (a broken line, a missing id, a duplicate, a pretty `.json` array)
//! is read again by the snapshot reader, whose errors name the file, line and column.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use fleetform::hub::snapshot::{SnapshotError, TwinFile, TwinFormat};

use crate::store::TwinStore;

/// How many leading twins make the compression dictionary.
const SAMPLES: usize = 8;

#[derive(serde::Deserialize)]
struct Ids<'a> {
    #[serde(rename = "deviceId", borrow, default)]
    device_id: Option<Cow<'a, str>>,
    #[serde(rename = "moduleId", borrow, default)]
    module_id: Option<Cow<'a, str>>,
}

/// Loaded twins and the position of each by key (`deviceId`, or `deviceId` + `moduleId`).
pub struct Loaded {
    pub store: TwinStore,
    pub positions: HashMap<Box<str>, u32>,
}

/// The key of a module twin in a position map: ids cannot hold a newline.
pub fn module_key(device: &str, module: &str) -> Box<str> {
    let mut key = String::with_capacity(device.len() + module.len() + 1);
    key.push_str(device);
    key.push('\n');
    key.push_str(module);
    key.into_boxed_str()
}

/// Loads a twin file; `modules` says whether records are module twins.
pub fn load(
    file: Option<&TwinFile>,
    modules: bool,
    slow: impl FnOnce() -> Result<Vec<serde_json::Value>, SnapshotError>,
) -> Result<Loaded, SnapshotError> {
    let Some(file) = file else {
        return Ok(Loaded { store: TwinStore::default(), positions: HashMap::new() });
    };
    if file.format == TwinFormat::JsonLines
        && let Some(loaded) = fast(file, modules)?
    {
        return Ok(loaded);
    }
    let twins = slow()?;
    let samples: Vec<Vec<u8>> = twins.iter().take(SAMPLES).map(|t| serde_json::to_vec(t).unwrap_or_default()).collect();
    let mut store = TwinStore::with_samples(samples.iter().map(Vec::as_slice));
    let mut positions = HashMap::with_capacity(twins.len());
    for twin in &twins {
        let key = key_of(twin, modules);
        store.push_value(twin);
        if let Some(key) = key {
            positions.insert(key, (store.len() - 1) as u32);
        }
    }
    Ok(Loaded { store, positions })
}

fn key_of(twin: &serde_json::Value, modules: bool) -> Option<Box<str>> {
    let device = twin.get("deviceId")?.as_str()?;
    if modules { Some(module_key(device, twin.get("moduleId")?.as_str()?)) } else { Some(device.into()) }
}

/// `Ok(None)` when the file needs the snapshot reader (which then reports what is wrong).
fn fast(file: &TwinFile, modules: bool) -> Result<Option<Loaded>, SnapshotError> {
    let read_error = |source| SnapshotError::Read { path: file.path.clone(), source };
    let handle = std::fs::File::open(&file.path).map_err(read_error)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
    let mut line = Vec::new();
    let mut head: Vec<Vec<u8>> = Vec::new();
    let mut store: Option<TwinStore> = None;
    let mut positions: HashMap<Box<str>, u32> = HashMap::new();
    let mut count = 0u32;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(read_error)?;
        if n == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if text.first() != Some(&b'{') {
            return Ok(None);
        }
        let Ok(ids) = serde_json::from_slice::<Ids>(text) else {
            return Ok(None);
        };
        let key = match (ids.device_id.as_deref(), ids.module_id.as_deref(), modules) {
            (Some(d), _, false) => Box::<str>::from(d),
            (Some(d), Some(m), true) => module_key(d, m),
            _ => return Ok(None),
        };
        if positions.insert(key, count).is_some() {
            return Ok(None);
        }
        count += 1;
        match &mut store {
            Some(store) => store.push_bytes(text),
            None => {
                head.push(text.to_vec());
                if head.len() == SAMPLES {
                    store = Some(start(&mut head));
                }
            }
        }
    }
    let store = match store {
        Some(store) => store,
        None => start(&mut head),
    };
    Ok(Some(Loaded { store, positions }))
}

fn start(head: &mut Vec<Vec<u8>>) -> TwinStore {
    let mut store = TwinStore::with_samples(head.iter().map(Vec::as_slice));
    for twin in head.drain(..) {
        store.push_bytes(&twin);
    }
    store
}
