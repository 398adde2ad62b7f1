//! The GitHub Action and the example pipelines: every input documented in the README,
//! the examples passing only inputs the action has, no expression spliced into a script,
//! and (where check-jsonschema is installed) each file against its published schema.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The keys of a top-level YAML mapping (`inputs:`, `outputs:`): the lines indented by
/// two spaces up to the next top-level key. The action is written in that plain block
/// style, which this reads without a YAML parser.
fn top_level_keys(yaml: &str, section: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            inside = line == format!("{section}:");
            continue;
        }
        if inside
            && let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !key.starts_with(' ')
        {
            keys.push(key.to_string());
        }
    }
    keys
}

/// The README's "GitHub Action" section, up to the next `## ` heading.
fn readme_action_section() -> String {
    let readme = read("README.md");
    let start = readme.find("## GitHub Action").expect("README has a \"GitHub Action\" section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

#[test]
fn every_action_input_and_output_is_documented_in_the_readme() {
    let action = read("action.yml");
    let inputs = top_level_keys(&action, "inputs");
    // Those the README promises, written out so that dropping one from action.yml fails.
    for wanted in ["command", "paths", "hub", "format", "base-ref", "prune", "wait", "args", "comment", "github-token"]
    {
        assert!(inputs.iter().any(|i| i == wanted), "action.yml has no input {wanted}: {inputs:?}");
    }
    let section = readme_action_section();
    for key in inputs.iter().chain(&top_level_keys(&action, "outputs")) {
        assert!(section.contains(&format!("| `{key}` |")), "README \"GitHub Action\" has no table row for `{key}`");
    }
    // The placeholder owner the examples use is explained where they are described.
    assert!(section.contains("your-org/fleetform@"), "README does not explain the your-org placeholder");
}

/// `with:` keys of every step that uses the action, per workflow file.
fn action_uses(workflow: &str) -> Vec<Vec<String>> {
    let mut uses = Vec::new();
    let mut lines = workflow.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if !(trimmed.starts_with("- uses: your-org/fleetform@") || trimmed == "- uses: ./") {
            continue;
        }
        let step_indent = line.len() - trimmed.len() + 2;
        let mut with = Vec::new();
        let mut in_with = false;
        while let Some(next) = lines.peek() {
            let indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && indent < step_indent {
                break;
            }
            let next = lines.next().unwrap();
            if indent == step_indent {
                in_with = next.trim() == "with:";
            } else if in_with
                && indent == step_indent + 2
                && let Some((key, _)) = next.trim().split_once(':')
            {
                with.push(key.to_string());
            }
        }
        uses.push(with);
    }
    uses
}

#[test]
fn the_github_examples_use_the_action_with_inputs_it_has() {
    let inputs = top_level_keys(&read("action.yml"), "inputs");
    for (file, command) in [("examples/ci/github-pr-plan.yml", "plan"), ("examples/ci/github-apply.yml", "apply")] {
        let workflow = read(file);
        let uses = action_uses(&workflow);
        assert_eq!(uses.len(), 1, "{file} uses the action {} times", uses.len());
        for key in &uses[0] {
            assert!(inputs.contains(key), "{file} passes `{key}`, which action.yml does not declare");
        }
        assert!(workflow.contains(&format!("command: {command}")), "{file} does not run {command}");
        // A workflow that builds fleetform by hand instead would drift from the action.
        assert!(!workflow.contains("cargo install"), "{file} builds fleetform itself");
    }
}

#[test]
fn no_expression_is_spliced_into_the_actions_scripts() {
    // `${{ … }}` inside `run:` is pasted into the script before bash sees it: a branch
    // name or an input could become code. Inputs reach the scripts through `env:`.
    let action = read("action.yml");
    let mut in_run = None;
    for (n, line) in action.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        if let Some(run_indent) = in_run {
            if line.trim().is_empty() || indent > run_indent {
                assert!(!line.contains("${{"), "action.yml:{}: expression inside a run script: {line}", n + 1);
                continue;
            }
            in_run = None;
        }
        if line.trim_start().starts_with("run:") {
            assert!(!line.contains("${{"), "action.yml:{}: expression inside a run script: {line}", n + 1);
            in_run = Some(indent);
        }
    }
}

fn check_jsonschema() -> Option<PathBuf> {
    let ok = Command::new("check-jsonschema").arg("--version").output().is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("check-jsonschema"))
}

#[test]
fn the_action_and_every_pipeline_match_their_published_schemas() {
    // .ci/run installs check-jsonschema and runs the same checks, failing when it cannot;
    // here they run wherever the tool happens to be installed.
    let Some(tool) = check_jsonschema() else {
        eprintln!("check-jsonschema is not installed: .ci/run checks the schemas");
        return;
    };
    let mut checks = vec![(PathBuf::from("action.yml"), vec!["--builtin-schema", "vendor.github-actions"])];
    for entry in std::fs::read_dir(root().join("examples/ci")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let args = if name.starts_with("github-") {
            vec!["--builtin-schema", "vendor.github-workflows"]
        } else if name.starts_with("azure-pipelines") {
            vec!["--builtin-schema", "vendor.azure-pipelines", "--regex-variant", "nonunicode"]
        } else {
            panic!("examples/ci/{name}: no published schema is known for it");
        };
        checks.push((Path::new("examples/ci").join(name), args));
    }
    for (file, args) in checks {
        let out = Command::new(&tool).current_dir(root()).args(&args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
