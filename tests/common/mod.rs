//! Shared helpers for the integration tests: run the real binary, as a user would, in one
//! sealed environment.
//!
//! Every run of the binary starts from an empty environment, so nothing on the developer's
//! or the CI machine (a `FLEETFORM_HUB`, an `IOTHUB_CONNECTION_STRING`, a proxy that
//! reqwest would honour, a `~/.gitconfig` that git2 would read, `NO_COLOR`) can change
//! what a test sees. A test adds exactly the variables it is about.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use assert_cmd::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetform");

/// The secrets the examples read, with values the tests can look for in output.
pub const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ACR_PASSWORD", "acr-secret-9f3b"),
    ("VISION_REGISTRY_PASSWORD", "vision-secret-77c1"),
    ("CAMERA_API_TOKEN", "camera-token-4e2a"),
    // The content hash's MAC key: a secret too, so tests look for it in output.
    ("FLEETFORM_HASH_KEY", "hash-key-for-the-tests-5d0c1b7a9e"),
];

/// The README's secrets: what the example hub's configurations were rendered with, so a
/// plan of the example against `examples/campus/hub` sees their real ids.
pub const DEMO_ENV: &[(&str, &str)] = &[
    ("ACR_PASSWORD", "demo"),
    ("VISION_REGISTRY_PASSWORD", "demo"),
    ("CAMERA_API_TOKEN", "demo"),
    ("FLEETFORM_HASH_KEY", "demo-hash-key-for-the-example-hub"),
];

/// A home with nothing in it: git2 reads the global git configuration from `$HOME`, and a
/// user's settings must not reach the binary. Under cargo's per-target temp dir, so runs
/// leave nothing in /tmp.
fn empty_home() -> PathBuf {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-home");
    std::fs::create_dir_all(&home).expect("the test home can be created");
    home
}

/// Clears `cmd`'s environment down to what the binary needs to run the same everywhere.
/// No `PATH`: the binary starts no other program (git is git2, in process).
pub fn seal(cmd: &mut std::process::Command) -> &mut std::process::Command {
    // COLUMNS and NO_COLOR: output is never a terminal here, but a library that sizes or
    // colours output from them must see the same values on every machine.
    cmd.env_clear().env("HOME", empty_home()).env("COLUMNS", "100").env("NO_COLOR", "1")
}

/// The binary in the sealed environment, as a `std::process::Command` (for `spawn`).
pub fn sealed() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    seal(&mut cmd);
    cmd
}

/// The binary in the sealed environment, with no secrets set.
pub fn fleetform() -> Command {
    Command::from_std(sealed())
}

/// The binary in the sealed environment with the demo secrets, stdin closed: what the
/// plan, apply and guard tests run against copies of the example hub.
pub fn cli() -> std::process::Command {
    let mut cmd = sealed();
    cmd.envs(DEMO_ENV.iter().copied()).stdin(Stdio::null());
    cmd
}

pub fn with_example_env(cmd: &mut Command) -> &mut Command {
    cmd.envs(EXAMPLE_ENV.iter().copied())
}

pub fn with_demo_env(cmd: &mut Command) -> &mut Command {
    cmd.envs(DEMO_ENV.iter().copied())
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
    /// What it prints on stdout after its banner, line by line (read on, so it never blocks).
    lines: std::sync::mpsc::Receiver<String>,
}

impl EmulatorProcess {
    pub fn start(state: &Path, flags: &[&str]) -> EmulatorProcess {
        use std::io::{BufRead, BufReader};
        let mut child = sealed()
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
        EmulatorProcess { child, url, connection: connection.unwrap_or_default(), lines: rx }
    }

    /// The next line it prints on stdout, if one comes within `wait`.
    pub fn next_line(&self, wait: std::time::Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
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
