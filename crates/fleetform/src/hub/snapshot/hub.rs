//! A snapshot directory as a hub: reads stream from its files, writes rewrite
//! `configurations.json` like the hub's own API would change its registry.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde_json::Value;

use crate::hub::{Configuration, Etag, HubError, HubRead, HubWrite, IfMatch, MAX_CONFIGURATIONS, Projection, Twin};
use crate::model::twin::ModuleTwin;
use crate::model::{AgentReport, EDGE_AGENT};

use super::{CONFIGURATIONS_FILE, Snapshot, SnapshotWriter, read_configurations};

/// A snapshot directory as a hub. Writes rewrite `configurations.json` atomically (temp
/// file, fsync, rename), so a crash leaves either the old or the new file, never a mix.
pub struct SnapshotHub {
    snapshot: Snapshot,
    dir: PathBuf,
    /// Serialises writers within this process; each write re-reads the file first.
    write_lock: Mutex<()>,
}

impl SnapshotHub {
    pub fn open(dir: &Path) -> Result<SnapshotHub, HubError> {
        Ok(SnapshotHub { snapshot: Snapshot::open(dir)?, dir: dir.to_path_buf(), write_lock: Mutex::new(()) })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn modify<T>(&self, change: impl FnOnce(&mut Vec<Configuration>) -> Result<T, HubError>) -> Result<T, HubError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut configs = self.configurations()?;
        let out = change(&mut configs)?;
        SnapshotWriter::create(&self.dir)?.write_configurations(&configs)?;
        Ok(out)
    }
}

/// A fresh etag, quoted as the hub sends it.
fn new_etag(id: &str, now: &str) -> Etag {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{id}\n{now}\n{}", std::process::id()).as_bytes());
    format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(&digest[..9]))
        .parse()
        .expect("quoted base64 is an etag")
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl HubRead for SnapshotHub {
    fn describe(&self) -> String {
        format!("snapshot {}", self.dir.display())
    }

    /// The canonical path: symlinks, `.` and `..` resolved, so every spelling of the
    /// directory is one hub.
    fn identity(&self) -> String {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("snapshot {}", dir.display())
    }

    fn configurations(&self) -> Result<Vec<Configuration>, HubError> {
        // Read every time (apply writes it) and never defaulted: a file removed since
        // `open` is an error, not a hub without deployments.
        let path = self.dir.join(CONFIGURATIONS_FILE);
        Ok(read_configurations(&path)?)
    }

    fn device_batches(
        &self,
        projection: Projection,
        visit: &(dyn Fn(Vec<Twin>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        const BATCH: usize = 2048;
        let snapshot = Snapshot::open(&self.dir)?.with_projection(projection);
        if snapshot.devices_file().is_none() {
            return Ok(());
        }
        let failure: Mutex<Option<HubError>> = Mutex::new(None);
        let leftovers = snapshot.par_fold_devices(0, Vec::new, |batch: &mut Vec<Twin>, twin| {
            batch.push(twin);
            if batch.len() == BATCH {
                let full = std::mem::take(batch);
                if let Err(e) = visit(full) {
                    failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                }
            }
        })?;
        for batch in leftovers.into_iter().filter(|b| !b.is_empty()) {
            visit(batch)?;
        }
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn module_batches(
        &self,
        visit: &(dyn Fn(Vec<serde_json::Value>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        const BATCH: usize = 2048;
        if self.snapshot.modules_file().is_none() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(BATCH);
        for twin in self.snapshot.module_twins()? {
            batch.push(twin?.into_value());
            if batch.len() == BATCH {
                visit(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            visit(batch)?;
        }
        Ok(())
    }

    /// Reads `modules.jsonl` on all cores keeping only what the agents report (ids and
    /// `properties.reported.modules`), instead of the default's serial scan of whole
    /// module twins: at 100k devices that scan was a fifth of an empty-hub plan's
    /// instructions, on one core. Reports reach `visit` in no particular order.
    fn agent_reports(
        &self,
        devices: &crate::model::DeviceIds,
        edge_devices: u64,
        visit: &(dyn Fn(Vec<AgentReport>) -> Result<(), HubError> + Sync),
    ) -> Result<(), HubError> {
        const BATCH: usize = 2048;
        let _ = edge_devices;
        if self.snapshot.modules_file().is_none() || devices.is_empty() {
            return Ok(());
        }
        let failure: Mutex<Option<HubError>> = Mutex::new(None);
        let leftovers = self.snapshot.par_fold_agent_twins(0, Vec::new, |batch: &mut Vec<AgentReport>, twin| {
            let Some(report) = agent_report(twin, devices) else { return };
            batch.push(report);
            if batch.len() == BATCH
                && let Err(e) = visit(std::mem::take(batch))
            {
                failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        })?;
        for batch in leftovers.into_iter().filter(|b| !b.is_empty()) {
            visit(batch)?;
        }
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// [`AgentReport::of_module_twin`] taking the reported modules out of the twin instead of
/// cloning them.
fn agent_report(twin: ModuleTwin, wanted: &crate::model::DeviceIds) -> Option<AgentReport> {
    if twin.module_id() != EDGE_AGENT || !wanted.contains(twin.device_id()) {
        return None;
    }
    let device_id = twin.device_id().to_string();
    let mut value = twin.into_value();
    let modules = value.pointer_mut("/properties/reported/modules").filter(|m| m.is_object()).map(Value::take);
    Some(AgentReport { device_id, modules })
}

impl HubWrite for SnapshotHub {
    fn create_configuration(&self, config: &Configuration) -> Result<Configuration, HubError> {
        self.modify(|configs| {
            if configs.iter().any(|c| c.id == config.id) {
                return Err(HubError::AlreadyExists { id: config.id.to_string() });
            }
            if configs.len() >= MAX_CONFIGURATIONS {
                return Err(HubError::TooManyConfigurations { limit: MAX_CONFIGURATIONS });
            }
            let now = now_utc();
            let mut created = config.clone();
            created.created_time_utc = Some(now.clone());
            created.last_updated_time_utc = Some(now.clone());
            created.etag = Some(new_etag(&config.id, &now));
            configs.push(created.clone());
            Ok(created)
        })
    }

    fn update_configuration(&self, config: &Configuration, etag: &Etag) -> Result<Configuration, HubError> {
        self.modify(|configs| {
            let existing = configs
                .iter_mut()
                .find(|c| c.id == config.id)
                .ok_or_else(|| HubError::NotFound { id: config.id.to_string() })?;
            if existing.etag.as_ref() != Some(etag) {
                return Err(HubError::PreconditionFailed { id: config.id.to_string() });
            }
            // Content and id are immutable on the hub; only these fields change.
            let now = now_utc();
            existing.labels = config.labels.clone();
            existing.priority = config.priority;
            existing.target_condition = config.target_condition.clone();
            existing.metrics = config.metrics.clone();
            existing.last_updated_time_utc = Some(now.clone());
            existing.etag = Some(new_etag(&config.id, &now));
            Ok(existing.clone())
        })
    }

    fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), HubError> {
        self.modify(|configs| {
            let pos =
                configs.iter().position(|c| c.id == id).ok_or_else(|| HubError::NotFound { id: id.to_string() })?;
            if !if_match.admits(configs[pos].etag.as_ref()) {
                return Err(HubError::PreconditionFailed { id: id.to_string() });
            }
            configs.remove(pos);
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::SnapshotError;
    use crate::model::Priority;

    pub(crate) fn hub_with_devices() -> (tempfile::TempDir, SnapshotHub) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("configurations.json"), "[]").unwrap();
        let devices: String =
            (0..5000).map(|i| format!("{{\"deviceId\":\"d{i}\",\"capabilities\":{{\"iotEdge\":true}}}}\n")).collect();
        std::fs::write(dir.path().join("devices.jsonl"), devices).unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        (dir, hub)
    }

    #[test]
    fn writes_are_guarded_by_etags_and_ids() {
        let (_dir, hub) = hub_with_devices();
        let c = Configuration { id: "a-1".into(), priority: Priority(1), ..Default::default() };
        let created = hub.create_configuration(&c).unwrap();
        assert!(created.created_time_utc.is_some());
        assert!(matches!(hub.create_configuration(&c), Err(HubError::AlreadyExists { .. })));
        let etag = created.etag.clone().unwrap();
        assert!(Etag::is_quoted(etag.as_str()));
        let mut changed = created.clone();
        changed.priority = Priority(5);
        let updated = hub.update_configuration(&changed, &etag).unwrap();
        assert_eq!(updated.priority, Priority(5));
        assert_ne!(updated.etag.as_ref(), Some(&etag));
        assert!(matches!(hub.update_configuration(&changed, &etag), Err(HubError::PreconditionFailed { .. })));
        assert!(matches!(
            hub.delete_configuration("a-1", &IfMatch::Etag(etag.clone())),
            Err(HubError::PreconditionFailed { .. })
        ));
        hub.delete_configuration("a-1", &IfMatch::Etag(updated.etag.clone().unwrap())).unwrap();
        assert!(matches!(hub.delete_configuration("a-1", &IfMatch::Any), Err(HubError::NotFound { .. })));
        assert!(hub.configurations().unwrap().is_empty());
    }

    #[test]
    fn the_configuration_limit_is_enforced() {
        let (_dir, hub) = hub_with_devices();
        for i in 0..MAX_CONFIGURATIONS {
            hub.create_configuration(&Configuration { id: format!("c{i}").into(), ..Default::default() }).unwrap();
        }
        let over = hub.create_configuration(&Configuration { id: "one-more".into(), ..Default::default() });
        assert!(matches!(over, Err(HubError::TooManyConfigurations { limit: 100 })));
    }

    #[test]
    fn agent_reports_keep_only_the_wanted_agents_modules() {
        let (dir, _) = hub_with_devices();
        let lines = [
            r#"{"deviceId":"d1","moduleId":"$edgeAgent","properties":{"desired":{"big":[1,2,{"x":"y"}]},"reported":{"runtime":{"t":1},"modules":{"web":{"settings":{"image":"nginx:1.24"}}}}}}"#,
            r#"{"deviceId":"d1","moduleId":"web","properties":{"reported":{"modules":{"no":{}}}}}"#,
            r#"{"properties":{"reported":{"modules":"not a map"}},"moduleId":"$edgeAgent","deviceId":"d2"}"#,
            r#"{"deviceId":"d3","moduleId":"$edgeAgent","properties":{"reported":{"modules":{"a":{}}}}}"#,
            r#"{"deviceId":"d4","moduleId":"$edgeAgent","properties":{"reported":{"Modules":{"a":{}},"modules":{"old":{}}},"reported":{"modules":{"new":{}}}}}"#,
            r#"{"deviceId":"d5","moduleId":"$edgeAgent","properties":[1]}"#,
        ];
        std::fs::write(dir.path().join("modules.jsonl"), lines.join("\n")).unwrap();
        let hub = SnapshotHub::open(dir.path()).unwrap();
        let wanted: crate::model::DeviceIds = ["d5", "d2", "d4", "d1"].map(String::from).into_iter().collect();
        let got = Mutex::new(Vec::new());
        hub.agent_reports(&wanted, 5, &|batch| {
            got.lock().unwrap().extend(batch);
            Ok(())
        })
        .unwrap();
        let mut got = got.into_inner().unwrap();
        got.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let want = |id: &str, modules: Option<Value>| AgentReport { device_id: id.into(), modules };
        assert_eq!(
            got,
            [
                want("d1", Some(serde_json::json!({"web":{"settings":{"image":"nginx:1.24"}}}))),
                want("d2", None),
                // The later of two `reported` members counts, as in a full read.
                want("d4", Some(serde_json::json!({"new":{}}))),
                want("d5", None),
            ]
        );

        // A member that is skipped is still checked, and the error placed in the file.
        std::fs::write(
            dir.path().join("modules.jsonl"),
            format!("{}\n{}\n", lines[0], r#"{"deviceId":"d2","moduleId":"m","etag":[1,}"#),
        )
        .unwrap();
        let e = hub.agent_reports(&wanted, 5, &|_| Ok(())).unwrap_err();
        assert!(matches!(e, HubError::Snapshot(SnapshotError::Syntax { line: 2, column: 43, .. })), "{e:?}");
        // So is a twin given twice.
        std::fs::write(dir.path().join("modules.jsonl"), format!("{}\n{}\n", lines[0], lines[0])).unwrap();
        let e = hub.agent_reports(&wanted, 5, &|_| Ok(())).unwrap_err();
        assert!(
            matches!(&e, HubError::Snapshot(SnapshotError::Duplicate { key, line: 2, first_line: 1, .. }) if key == "d1/$edgeAgent"),
            "{e:?}"
        );
    }

    #[test]
    fn every_device_is_visited_once_in_batches() {
        let (_dir, hub) = hub_with_devices();
        let seen = Mutex::new(Vec::new());
        hub.device_batches(Projection::Targeting, &|batch| {
            seen.lock().unwrap().extend(batch.into_iter().map(|t| t.device_id().to_string()));
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5000);
    }
}
