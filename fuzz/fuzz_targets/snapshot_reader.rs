//! The snapshot directory reader on arbitrary files: it must never panic; a directory
//! missing configurations.json or the device twins must be refused (never read as an
//! empty hub or fleet); the serial and the parallel twin readers must agree on the twins
//! or on the first error; and the twin-shape check must accept every twin read.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use fleetform::hub::shape::ShapeReport;
use fleetform::hub::snapshot::{Projection, Snapshot, SnapshotError};
use libfuzzer_sys::fuzz_target;

/// One scratch directory per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fleetform-fuzz-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

const FILES: [&str; 5] = ["configurations.json", "devices.json", "devices.jsonl", "modules.json", "modules.jsonl"];

fuzz_target!(|data: &[u8]| {
    let Some((&layout, rest)) = data.split_first() else { return };
    let dir = scratch();
    for f in FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    // The layout byte says which files exist; the rest is split between them on 0xFF.
    let mut parts = rest.split(|&b| b == 0xFF);
    let mut present = [false; 5];
    for (i, f) in FILES.iter().enumerate() {
        if layout & (1 << i) != 0 {
            std::fs::write(dir.join(f), parts.next().unwrap_or_default()).expect("write scratch file");
            present[i] = true;
        }
    }
    let projection = if layout & 0x80 != 0 { Projection::Targeting } else { Projection::Full };
    let snap = match Snapshot::open(dir) {
        Ok(s) => s.with_projection(projection),
        Err(SnapshotError::Ambiguous { .. }) => {
            assert!((present[1] && present[2]) || (present[3] && present[4]));
            return;
        }
        Err(_) => {
            assert!(!present[0] || !(present[1] || present[2]), "a complete snapshot was refused");
            return;
        }
    };
    assert!(present[0] && (present[1] || present[2]), "a half snapshot was opened");
    let _ = snap.configurations();

    let serial: Result<Vec<String>, u64> = match snap.devices() {
        Ok(reader) => {
            let mut ids = Vec::new();
            let mut failed = None;
            for twin in reader {
                match twin {
                    Ok(t) => {
                        let mut report = ShapeReport::default();
                        report.add(&t);
                        let _ = report.to_string();
                        ids.push(t.device_id().to_string());
                    }
                    Err(e) => {
                        failed = Some(e.to_string().len() as u64);
                        break;
                    }
                }
            }
            match failed {
                Some(n) => Err(n),
                None => Ok(ids),
            }
        }
        Err(_) => return,
    };
    let parallel = snap.par_fold_devices(2, Vec::new, |ids: &mut Vec<String>, t| ids.push(t.device_id().to_string()));
    match (serial, parallel) {
        (Ok(mut a), Ok(parts)) => {
            let mut b: Vec<String> = parts.into_iter().flatten().collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "the serial and parallel readers read different twins");
        }
        (Err(_), Err(_)) => {}
        (s, p) => panic!("serial {:?} but parallel {:?}", s.map(|v| v.len()), p.map(|v| v.len())),
    }
    for m in snap.module_twins().into_iter().flatten() {
        let _ = m.map(|m| m.module_id().len());
    }
});
