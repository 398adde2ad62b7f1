//! The GitHub Action and the example pipelines: every input documented in the README,
//! the examples passing only inputs the action has, no expression spliced into a script,
//! and (where check-jsonschema is installed) each file against its published schema.

mod common;

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

/// The `run: |` script of the action step named `name`, dedented.
fn action_script(name: &str) -> String {
    let action = read("action.yml");
    let mut lines = action.lines().skip_while(|l| l.trim() != format!("- name: {name}"));
    assert!(lines.next().is_some(), "action.yml has no step {name:?}");
    let run = lines.find(|l| l.trim() == "run: |").unwrap_or_else(|| panic!("step {name:?} has no run block"));
    let indent = run.len() - run.trim_start().len() + 2;
    let mut script = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        script.push_str(line.get(indent..).unwrap_or(""));
        script.push('\n');
    }
    script
}

/// Runs one of the action's scripts as the runner would: bash, with the step's `env:`
/// given as `env`, `GITHUB_OUTPUT` and friends in `tmp`, and `bin` first on `PATH`.
fn run_action_script(script: &str, tmp: &Path, bin: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        bin.display(),
        Path::new(env!("CARGO_BIN_EXE_fleetform")).parent().unwrap().display()
    );
    Command::new("bash")
        .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script])
        .current_dir(root())
        .env_clear()
        .env("PATH", path)
        .env("HOME", tmp)
        .env("RUNNER_TEMP", tmp)
        .env("GITHUB_OUTPUT", tmp.join("output"))
        .env("GITHUB_STEP_SUMMARY", tmp.join("summary"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn step_outputs(tmp: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(tmp.join("output")).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn the_action_plans_and_posts_then_edits_one_comment() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("bash is not installed: skipping the action's scripts");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A stand-in for the GitHub CLI: records its arguments, and lists one comment of ours
    // when GH_EXISTING_ID is set (with the marker checked as the real jq filter would).
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        "#!/bin/bash\nprintf '%s\\n' \"$*\" >> \"$GH_LOG\"\n\
         case \"$*\" in *--paginate*) [ -n \"${GH_EXISTING_ID:-}\" ] && [ \"$MARKER\" = '<!-- fleetform-plan -->' ] && echo \"$GH_EXISTING_ID\" ;; esac\nexit 0\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let inputs = [
        ("INPUT_COMMAND", "plan"),
        ("INPUT_PATHS", "examples/campus/deployments"),
        ("INPUT_HUB", "examples/campus/hub"),
        ("INPUT_FORMAT", ""),
        ("INPUT_BASE_REF", ""),
        ("INPUT_PRUNE", "false"),
        ("INPUT_WAIT", "false"),
        ("INPUT_ARGS", ""),
        ("INPUT_MARKER", "<!-- fleetform-plan -->"),
        ("PR_BASE_REF", ""),
        ("ACR_PASSWORD", "demo"),
        ("VISION_REGISTRY_PASSWORD", "demo"),
        ("CAMERA_API_TOKEN", "demo"),
        ("FLEETFORM_HASH_KEY", "demo-hash-key-for-the-example-hub"),
    ];
    let out = run_action_script(&action_script("fleetform ${{ inputs.command }}"), tmp.path(), &bin, &inputs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The hub is masked before anything can print it.
    assert!(stdout.starts_with("::add-mask::examples/campus/hub\n"), "{stdout}");
    let outputs = step_outputs(tmp.path());
    let get = |k: &str| outputs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("exitcode"), "2", "the example plan has changes: {outputs:?}");
    assert_eq!(get("changes"), "true");
    let comment_file = get("comment-file");
    let comment = std::fs::read_to_string(&comment_file).unwrap();
    assert!(comment.starts_with("<!-- fleetform-plan -->\n"), "{comment}");
    assert!(comment.contains("Plan: 1 to create, 2 to update, 1 to replace, 0 to delete."), "{comment}");
    assert!(!comment.contains("\"demo\""), "the comment holds the registry password");
    assert_eq!(std::fs::read_to_string(tmp.path().join("summary")).unwrap(), comment);

    let log = tmp.path().join("gh.log");
    let comment_env = |existing: &'static str| {
        vec![
            ("GH_TOKEN", "token-never-printed"),
            ("PR", "17"),
            ("REPO", "contoso/edge-deployments"),
            ("MARKER", "<!-- fleetform-plan -->"),
            ("COMMENT_FILE", comment_file.as_str()),
            ("GH_LOG", log.to_str().unwrap()),
            ("GH_EXISTING_ID", existing),
        ]
    };
    let script = action_script("Post or update the plan comment");
    // The first run finds no comment of ours and posts one.
    let first = run_action_script(&script, tmp.path(), &bin, &comment_env(""));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // A later push finds it and edits it in place.
    let second = run_action_script(&script, tmp.path(), &bin, &comment_env("4242"));
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let calls: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    let body = format!("-F body=@{comment_file}");
    assert_eq!(
        calls,
        [
            "api --paginate repos/contoso/edge-deployments/issues/17/comments --jq .[] | select(.body | startswith(env.MARKER)) | .id".to_string(),
            format!("api --method POST repos/contoso/edge-deployments/issues/17/comments {body}"),
            "api --paginate repos/contoso/edge-deployments/issues/17/comments --jq .[] | select(.body | startswith(env.MARKER)) | .id".to_string(),
            format!("api --method PATCH repos/contoso/edge-deployments/issues/comments/4242 {body}"),
        ]
    );
    for run in [&first, &second] {
        assert!(!String::from_utf8_lossy(&run.stdout).contains("token-never-printed"));
    }
}

#[test]
fn the_action_applies_and_refuses_an_unknown_command() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("bash is not installed: skipping the action's scripts");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hub = common::campus_hub_copy();
    let hub_path = hub.path().to_str().unwrap().to_string();
    let script = action_script("fleetform ${{ inputs.command }}");
    let inputs = |command: &'static str, args: &'static str| {
        vec![
            ("INPUT_COMMAND", command),
            ("INPUT_PATHS", "examples/campus/deployments"),
            ("INPUT_HUB", hub_path.as_str()),
            ("INPUT_FORMAT", ""),
            ("INPUT_BASE_REF", ""),
            ("INPUT_PRUNE", "false"),
            ("INPUT_WAIT", "false"),
            ("INPUT_ARGS", args),
            ("INPUT_MARKER", "<!-- fleetform-plan -->"),
            ("PR_BASE_REF", ""),
            ("ACR_PASSWORD", "demo"),
            ("VISION_REGISTRY_PASSWORD", "demo"),
            ("CAMERA_API_TOKEN", "demo"),
            ("FLEETFORM_HASH_KEY", "demo-hash-key-for-the-example-hub"),
        ]
    };
    // --allow-dirty: the examples in this checkout may be edited while the tests run.
    let out = run_action_script(&script, tmp.path(), tmp.path(), &inputs("apply", "--allow-dirty"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("fleetform apply examples/campus/deployments --auto-approve --format text --allow-dirty"),
        "{stdout}"
    );
    assert!(stdout.contains("Apply complete: 2 created, 2 updated, 1 deleted."), "{stdout}");
    let outputs = step_outputs(tmp.path());
    assert!(outputs.contains(&("exitcode".to_string(), "0".to_string())), "{outputs:?}");
    assert!(!outputs.iter().any(|(k, _)| k == "comment-file"), "apply wrote a plan comment");
    // The hub now matches: the same step as plan has nothing to do (exit 0, not 2).
    std::fs::remove_file(tmp.path().join("output")).unwrap();
    let again = run_action_script(&script, tmp.path(), tmp.path(), &inputs("plan", ""));
    assert!(again.status.success());
    let outputs = step_outputs(tmp.path());
    assert!(outputs.contains(&("exitcode".to_string(), "0".to_string())), "{outputs:?}");
    assert!(outputs.contains(&("changes".to_string(), "false".to_string())), "{outputs:?}");

    // A flag plan does not have: clap's usage error also exits 2, which must not read as
    // "changes".
    std::fs::remove_file(tmp.path().join("output")).unwrap();
    let typo = run_action_script(&script, tmp.path(), tmp.path(), &inputs("plan", "--allow-dirty"));
    assert!(typo.status.success());
    let outputs = step_outputs(tmp.path());
    assert!(outputs.contains(&("exitcode".to_string(), "1".to_string())), "{outputs:?}");
    let comment = std::fs::read_to_string(tmp.path().join("fleetform-comment.md")).unwrap();
    assert!(comment.contains("### fleetform plan failed") && comment.contains("--allow-dirty"), "{comment}");

    std::fs::remove_file(tmp.path().join("output")).unwrap();
    let wrong = run_action_script(&script, tmp.path(), tmp.path(), &inputs("destroy", ""));
    assert!(
        String::from_utf8_lossy(&wrong.stdout)
            .contains("::error title=fleetform::input command must be plan or apply, not destroy")
    );
    assert_eq!(step_outputs(tmp.path()), [("exitcode".to_string(), "1".to_string())]);
}
