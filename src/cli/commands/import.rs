//! `fleetform import`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fleetform::render::plural;

use crate::cli::args::HubArgs;
use crate::cli::error::CommandError;
use crate::cli::files::write_atomically;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub hub: HubArgs,
    /// Convert this deployment manifest instead of reading a hub: a deployment.json
    /// (standard or layered), `az iot edge deployment show` output, or an iotedgedev
    /// deployment.template.json (${VAR} from the environment and the .env beside it,
    /// read as python-dotenv reads it; ${MODULES.Name} from modules/Name/module.json).
    /// Nothing is written when a placeholder is unresolved or the result would not
    /// validate.
    /// At most 4 MiB: larger is refused before reading (no deployment the hub accepts is
    /// that large).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// With --manifest: the deployment's name (default: a whole configuration's id,
    /// else the file name).
    #[arg(long, requires = "manifest")]
    pub name: Option<String>,
    /// With --manifest: the deployment's priority (default: a whole configuration's
    /// priority, else 10).
    #[arg(long, requires = "manifest")]
    pub priority: Option<i32>,
    /// With --manifest: the target condition (default: a whole configuration's
    /// targetCondition, else `target #null`, no device).
    #[arg(long, requires = "manifest", value_name = "CONDITION")]
    pub target: Option<String>,
    /// The directory to write one <name>.kdl per deployment into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace files that already exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { hub, manifest, name, priority, target, out, force } = args;
    let (imported, skipped) = match manifest.as_deref() {
        Some(file) => {
            let display = file.display().to_string();
            let text = fleetform::import::read_manifest_file(file, &display)?;
            let opts = fleetform::import::ManifestOptions {
                name,
                default_name: default_name(file),
                priority,
                target,
                dir: file.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf)),
            };
            (vec![fleetform::import::from_manifest(&display, &text, &opts)?], Vec::new())
        }
        None => fleetform::import::from_hub(&hub.open_hub()?.configurations()?),
    };
    std::fs::create_dir_all(&out).map_err(|reason| CommandError::CreateDir { path: out.clone(), reason })?;
    let mut written = 0;
    let mut variables: Vec<String> = Vec::new();
    for i in &imported {
        let file = out.join(format!("{}.kdl", i.name));
        if file.exists() && !force {
            eprintln!("{} exists; left alone (--force replaces it)", file.display());
            continue;
        }
        write_atomically(&file, &i.text)?;
        eprintln!("wrote {}", file.display());
        written += 1;
        for note in &i.notes {
            eprintln!("  note: {note}");
        }
        for (var, _) in &i.env {
            if !variables.contains(var) {
                variables.push(var.clone());
            }
        }
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.id, s.reason);
    }
    eprintln!("{written} deployment{} imported into {}", plural(written), out.display());
    if !variables.is_empty() {
        variables.sort();
        eprintln!("set these before plan/apply: {}", variables.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The name a manifest's deployment gets without `--name`: the file's stem, or the folder's
/// name for `deployment.template.json` and `deployment.amd64.json`.
fn default_name(file: &Path) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    match stem.split('.').next() {
        Some("deployment") | None => file
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "deployment".to_string()),
        Some(s) => s.to_string(),
    }
}
