//! One module per command: its arguments (`Args`, flattened into the clap tree in
//! [`crate::cli`]) and `run`, which returns the exit code.

pub mod apply;
pub mod completions;
pub mod explain;
pub mod fmt;
pub mod hub;
pub mod import;
pub mod init;
pub mod man;
pub mod plan;
pub mod query;
pub mod render;
pub mod schema;
pub mod snapshot;
pub mod status;
pub mod validate;

/// Prints a JSON document on stdout, pretty.
fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}
