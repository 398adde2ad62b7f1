//! Copying any hub into a snapshot directory (`fleetform snapshot`).

use std::path::Path;
use std::sync::Mutex;

use crate::hub::{Hub, HubError, Projection};

use super::{SnapshotWriter, TwinFormat};

/// What [`snapshot_from`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub configurations: usize,
    pub devices: u64,
    pub module_twins: u64,
}

/// Writes a snapshot directory from any hub: `configurations.json`, `devices.jsonl` and
/// `modules.jsonl` (every module twin: `$edgeAgent`, `$edgeHub` and custom modules). Each
/// file appears atomically, so an interrupted run leaves the previous files whole.
pub fn snapshot_from(hub: &dyn Hub, out: &Path) -> Result<SnapshotSummary, HubError> {
    snapshot_with(hub, out, false)
}

/// [`snapshot_from`], optionally redacted (`snapshot --redact`): every value that is a
/// secret by its place or is one of the hub's secrets becomes
/// [`crate::plan::redact::REDACTED`], in configurations and twins alike. The directory
/// and its files are owner-only either way.
pub fn snapshot_with(hub: &dyn Hub, out: &Path, redact: bool) -> Result<SnapshotSummary, HubError> {
    let writer = SnapshotWriter::create(out)?;
    writer.restrict_dir()?;
    let mut configurations = hub.configurations()?;
    let redactor = redact.then(|| crate::plan::Redactor::new(&[], &configurations));
    fn scrub<'a>(
        r: Option<&crate::plan::Redactor>,
        v: &'a serde_json::Value,
    ) -> std::borrow::Cow<'a, serde_json::Value> {
        match r {
            Some(r) => {
                let mut v = v.clone();
                r.redact_in_place(&mut v);
                std::borrow::Cow::Owned(v)
            }
            None => std::borrow::Cow::Borrowed(v),
        }
    }
    let devices = Mutex::new(writer.devices_file(TwinFormat::JsonLines)?);
    // Taken before the first page: every twin in the file is at least this recent, so an
    // age computed from it is never understated.
    let read_at = std::time::SystemTime::now();
    hub.device_batches(Projection::Full, &|batch| {
        let mut file = devices.lock().unwrap_or_else(|e| e.into_inner());
        batch.iter().try_for_each(|t| file.push(scrub(redactor.as_ref(), t.value()).as_ref())).map_err(HubError::from)
    })?;
    let modules = Mutex::new(writer.module_twins_file(TwinFormat::JsonLines)?);
    hub.module_batches(&|batch| {
        let mut file = modules.lock().unwrap_or_else(|e| e.into_inner());
        batch.iter().try_for_each(|t| file.push(scrub(redactor.as_ref(), t).as_ref())).map_err(HubError::from)
    })?;
    if let Some(r) = &redactor {
        for c in &mut configurations {
            if let Some(mc) = c.content.modules_content.as_mut() {
                for twin in mc.values_mut() {
                    twin.values_mut().for_each(|v| r.redact_in_place(v));
                }
            }
        }
    }
    // Twins first, configurations last: a directory with configurations.json is only ever
    // a complete snapshot of this run or an older one.
    let devices = devices.into_inner().unwrap_or_else(|e| e.into_inner());
    let device_count = devices.records();
    devices.commit()?;
    let modules = modules.into_inner().unwrap_or_else(|e| e.into_inner());
    let module_count = modules.records();
    modules.commit()?;
    writer.write_twins_read_at(read_at)?;
    writer.write_configurations(&configurations)?;
    Ok(SnapshotSummary { configurations: configurations.len(), devices: device_count, module_twins: module_count })
}
