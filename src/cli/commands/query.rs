//! `fleetform query`.

use std::io::Write;
use std::process::ExitCode;

use fleetform::hub::Fleet;
use fleetform::query::QueryOutput;
use fleetform::render::plural;

use crate::cli::args::{Format, HubArgs};
use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    /// `SELECT … FROM devices …`, or a condition such as "tags.location.building='20'".
    pub text: String,
    #[command(flatten)]
    pub hub: HubArgs,
    /// text: one device id per line (or one JSON row per line); json: a JSON array.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let hub = args.hub.open_shape_checked()?;
    let mut out = fleetform::query::run_on_hub(&Fleet(hub.as_ref()), &args.text)?;
    // Rows can hold the hub's registry passwords and tokens (`SELECT properties.desired
    // FROM devices.modules`): masked by place (registry passwords, credential-named
    // settings), which needs no further request to the hub.
    if let QueryOutput::Rows(rows) = &mut out {
        let redactor = fleetform::plan::Redactor::default();
        rows.iter_mut().for_each(|r| redactor.mask_in_place(r));
    }
    crate::cli::ui::warn_wrong_shapes(&hub);
    let mut stdout = std::io::stdout().lock();
    match (out, args.format) {
        (QueryOutput::Targeted(ids), Format::Text) => {
            for id in &ids {
                let _ = writeln!(stdout, "{id}");
            }
            eprintln!("{} IoT Edge device{} targeted", ids.len(), plural(ids.len()));
        }
        (QueryOutput::Targeted(ids), Format::Json) => {
            let rows = fleetform::render::json::targeted_json(ids);
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        }
        (QueryOutput::Rows(rows), Format::Text) => {
            for row in &rows {
                // A row of just an id prints as the id, like the targeting form.
                match row.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("deviceId")).and_then(|v| v.as_str())
                {
                    Some(id) => {
                        let _ = writeln!(stdout, "{id}");
                    }
                    None => {
                        let _ = writeln!(stdout, "{}", serde_json::to_string(row).unwrap_or_default());
                    }
                }
            }
            eprintln!("{} row{}", rows.len(), plural(rows.len()));
        }
        (QueryOutput::Rows(rows), Format::Json) => {
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
