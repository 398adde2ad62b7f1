//! Shared helpers for the integration tests: run the real binary, as a user would.

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

/// The secrets the examples read, with values the tests can look for in output.
pub const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ACR_PASSWORD", "acr-secret-9f3b"),
    ("VISION_REGISTRY_PASSWORD", "vision-secret-77c1"),
    ("CAMERA_API_TOKEN", "camera-token-4e2a"),
    // The content hash's MAC key: a secret too, so tests look for it in output.
    ("FLEETFORM_HASH_KEY", "hash-key-for-the-tests-5d0c1b7a9e"),
];

pub fn fleetform() -> Command {
    let mut cmd = Command::cargo_bin("fleetform").expect("the fleetform binary is built");
    cmd.env_remove("NO_COLOR").env("COLUMNS", "100");
    for (k, _) in EXAMPLE_ENV {
        cmd.env_remove(k);
    }
    cmd
}

pub fn with_example_env(cmd: &mut Command) -> &mut Command {
    for (k, v) in EXAMPLE_ENV {
        cmd.env(k, v);
    }
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What a user sees: exit code, then stdout and stderr.
pub fn transcript(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status.code().map_or("signal".to_string(), |c| c.to_string()),
        stdout(o),
        stderr(o)
    )
}

pub const EXAMPLE_DEPLOYMENTS: &str = "examples/campus/deployments";

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `fleetform hub serve` on 127.0.0.1 (a free port the server picks) over `state`,
/// killed and reaped on drop, so a failing test leaves no process behind.
pub struct EmulatorProcess {
    child: std::process::Child,
    pub url: String,
    pub connection: String,
}

impl EmulatorProcess {
    pub fn start(state: &Path, flags: &[&str]) -> EmulatorProcess {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetform"))
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(state)
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the fleetform binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut url, mut connection) = (None, None);
        while url.is_none() || connection.is_none() {
            let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the emulator did not print its banner within 30 s");
            };
            if let Some(u) = line.strip_prefix("fleetform hub emulator listening on ") {
                url = Some(u.to_string());
            }
            if let Some(c) = line.strip_prefix("connection string: ") {
                connection = Some(c.to_string());
            }
        }
        let url = url.unwrap_or_default();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        EmulatorProcess { child, url, connection: connection.unwrap_or_default() }
    }
}

impl EmulatorProcess {
    /// SIGKILL, as a crash would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp copy of the example hub: its devices, module twins and configurations.
pub fn campus_hub_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/campus/hub");
    for name in ["configurations.json", "devices.json", "modules.json"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    dir
}
