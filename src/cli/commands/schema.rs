//! `fleetform schema plan|explain`: the JSON Schema of a command's `--format json`
//! output, generated from the types the output is serialized from. `schema/*.schema.json`
//! are this command's output (`tests/json_schema.rs` fails when they are stale).

use std::process::ExitCode;

use clap::ValueEnum;

use crate::cli::error::CommandError;

#[derive(Clone, Copy, ValueEnum)]
pub enum Document {
    /// `fleetform plan --format json` (schema/plan.schema.json)
    Plan,
    /// `fleetform explain --format json` (schema/explain.schema.json)
    Explain,
}

#[derive(clap::Args)]
pub struct Args {
    /// Whose output to describe.
    #[arg(value_enum)]
    pub document: Document,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let schema = match args.document {
        Document::Plan => fleetform::render::output::plan_schema(),
        Document::Explain => fleetform::render::output::explain_schema(),
    };
    super::print_json(&schema);
    Ok(ExitCode::SUCCESS)
}
