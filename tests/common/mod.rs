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
