//! `--hub` and `--endpoint` values that name no hub: the library says what is wrong with the
//! value, the CLI names the flag and what it takes, and a value that may hold a key is
//! never echoed.

mod common;

use common::{fleetform, stderr};

fn status(args: &[&str]) -> (i32, String) {
    let out = fleetform().arg("status").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        stderr(&out).split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" "),
    )
}

#[test]
fn no_hub_names_the_flag_and_the_variables() {
    let (code, err) = status(&[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no hub given: no --hub, and neither FLEETFORM_HUB nor IOTHUB_CONNECTION_STRING is set"),
        "{err}"
    );
    assert!(err.contains("--hub takes a snapshot directory"), "{err}");
}

#[test]
fn each_bad_value_is_named_by_its_flag() {
    let (_, err) = status(&["--hub", "/no/such/dir"]);
    assert!(err.contains("--hub /no/such/dir: no such directory"), "{err}");
    let (_, err) = status(&["--hub", "env:FLEETFORM_SURELY_UNSET_NAME"]);
    assert!(
        err.contains(
            "--hub env:FLEETFORM_SURELY_UNSET_NAME: environment variable FLEETFORM_SURELY_UNSET_NAME is not set"
        ),
        "{err}"
    );
    assert!(err.contains("export FLEETFORM_SURELY_UNSET_NAME"), "{err}");
    let hub = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/campus/hub");
    let (_, err) = status(&["--hub", hub, "--endpoint", "http://127.0.0.1:1"]);
    assert!(
        err.contains("--endpoint applies to a hub reached by connection string, not to the snapshot directory"),
        "{err}"
    );
    assert!(err.contains("drop --endpoint"), "{err}");
}

#[test]
fn a_mangled_connection_string_is_not_echoed() {
    let mangled = "token=c2VjcmV0LWtleS0xMjM0NQ==;x";
    let (code, err) = status(&["--hub", mangled]);
    assert_eq!(code, 1);
    assert!(err.contains("--hub: the value is not a directory and not a connection string (not shown"), "{err}");
    assert!(!err.contains("c2VjcmV0") && !err.contains("token="), "{err}");
}
