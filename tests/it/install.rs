//! Installing racelab (README "Installing"): shell completions and the man page come out of the
//! binary, `cargo package` ships the program and nothing else, and the GitHub Actions workflow
//! the README offers users is valid YAML whose racelab commands are real ones.

use clap::Parser;

use crate::common::racelab;

#[test]
fn completions_for_every_shell_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = racelab(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.len() > 500, "{shell}: {script}");
        for subcommand in ["run", "prove", "bench", "worker", "tui", "completions"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
        // Option values too, where the shell completes them: --format's four.
        if matches!(shell, "bash" | "zsh" | "fish") {
            assert!(
                script.contains("markdown") && script.contains("junit"),
                "{shell}"
            );
        }
    }
    let output = racelab(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("tcsh") && !err.contains("panicked"), "{err}");
    let output = racelab(&["completions"]);
    assert_eq!(output.status.code(), Some(2), "a shell or --man is needed");
}

#[test]
fn the_man_page_is_roff_that_renders() {
    let output = racelab(&["completions", "--man"]);
    assert_eq!(output.status.code(), Some(0));
    let roff = String::from_utf8(output.stdout).unwrap();
    assert!(
        roff.lines().any(|l| l.starts_with(".TH racelab 1")),
        "{roff}"
    );
    assert!(
        roff.contains(".SH SUBCOMMANDS") || roff.contains(".SH SUBCOMMAND"),
        "{roff}"
    );
    // nroff (Debian's groff-base, which .ci/run installs) turns it into the page man shows.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("racelab.1");
    std::fs::write(&page, &roff).unwrap();
    let rendered = std::process::Command::new("nroff")
        .args(["-man", "-Tutf8"])
        // Overstrikes for bold, never colour escapes, whatever groff's default.
        .env("GROFF_NO_SGR", "1")
        .arg(&page)
        .output()
        .expect("nroff must be installed for the tests (apt install groff-base)");
    assert!(rendered.status.success());
    // Bold and underline come as overstrikes (`R\x08R`); the text is what is left.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&rendered.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(text.contains("racelab"), "{text}");
    assert!(text.contains("prove"), "{text}");
    // Each subcommand's options are on the page: what people look up is run's --format.
    assert!(roff.contains(".SH \"RACELAB RUN\""), "{roff}");
    let run = &text[text.find("RACELAB RUN").unwrap()..];
    assert!(run.contains("--format") && run.contains("junit"), "{run}");
    assert!(text.contains("RACELAB COMPLETIONS"), "{text}");
    let output = racelab(&["completions", "bash", "--man"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a shell or the man page, not both"
    );
}

#[test]
fn the_package_ships_the_program_and_nothing_else() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list = String::from_utf8(output.stdout).unwrap();
    let files: Vec<&str> = list.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "src/main.rs",
        "assets/update_segment.lua",
        "assets/journey.json",
        "assets/report.schema.json",
    ] {
        assert!(files.contains(&needed), "{needed} missing from {files:?}");
    }
    for file in &files {
        assert!(
            !file.starts_with("tests/")
                && !file.starts_with("target/")
                && !file.starts_with(".ci/")
                && !file.starts_with("benches/"),
            "{file} should not ship"
        );
    }
}

/// The README's GitHub Actions workflow: the one ```yaml block.
fn readme_workflow() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```yaml\n")
        .expect("a ```yaml block in the README")
        + 8;
    let end = start + readme[start..].find("\n```").unwrap();
    readme[start..end].to_owned()
}

#[test]
fn the_readme_workflow_is_valid_yaml_running_real_racelab_commands() {
    let yaml: serde_norway::Value = serde_norway::from_str(&readme_workflow()).unwrap();
    assert!(
        yaml["on"].is_mapping() || yaml["on"].is_sequence(),
        "{yaml:?}"
    );
    let jobs = yaml["jobs"].as_mapping().unwrap();
    assert_eq!(jobs.len(), 1);
    let steps = jobs.values().next().unwrap()["steps"]
        .as_sequence()
        .unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(
        runs.iter().any(|r| r.contains("redis-server")),
        "installs redis-server: {runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("racelab run -s all --format junit -o racelab.xml")),
        "{runs:?}"
    );
    assert!(
        uses.iter()
            .any(|u| u.starts_with("actions/upload-artifact@")),
        "{uses:?}"
    );
    // Every racelab command in it is one racelab accepts.
    let mut commands = 0;
    for line in runs.iter().flat_map(|r| r.lines()) {
        let Some(at) = line.find("racelab ") else {
            continue;
        };
        let command = line[at..].split(['>', '|', '#']).next().unwrap().trim();
        let words: Vec<String> = command
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_owned())
            .collect();
        if let Err(e) = racelab::Cli::try_parse_from(&words) {
            panic!("{command}: {e}");
        }
        commands += 1;
    }
    assert!(commands >= 2, "{runs:?}");
}
