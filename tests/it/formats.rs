//! The reports for CI (README "Reports for CI"): `--format junit` and `--format markdown` of `run`
//! and `prove`, made by real runs against a real redis-server, read back with an XML parser
//! (and checked against `tests/it/junit.xsd` with xmllint) and a CommonMark renderer; `-o` with
//! every format; and long work that stays silent on stderr when it is not a terminal.

use std::path::Path;
use std::process::Output;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::common::{TestRedis, racelab};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Validates `file` against the JUnit schema of the tests with xmllint (`.ci/run` installs it:
/// Debian's libxml2-utils).
fn assert_valid_junit(file: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/junit.xsd");
    let output = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(file)
        .output()
        .expect("xmllint must be installed for the tests (apt install libxml2-utils)");
    assert!(
        output.status.success(),
        "{} does not validate: {}",
        file.display(),
        stderr(&output)
    );
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()))
}

fn count(node: roxmltree::Node, name: &str) -> usize {
    attr(node, name).parse().unwrap()
}

fn children<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> Vec<roxmltree::Node<'a, 'i>> {
    node.children()
        .filter(|n| n.tag_name().name() == name)
        .collect()
}

#[test]
fn junit_of_a_run_has_a_case_per_strategy_and_a_failure_in_the_seed_tests_words() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("racelab.xml");
    let output = racelab(&[
        "run",
        "-s",
        "naive,hash",
        "-n",
        "4",
        "--expect",
        "intact",
        "--redis-url",
        &redis.url(),
        "--format",
        "junit",
        "-o",
        file.to_str().unwrap(),
    ]);
    // naive loses updates, which --expect intact calls a failure: exit 1, and a <failure>.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert_valid_junit(&file);

    let xml = std::fs::read_to_string(&file).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites = children(root, "testsuite");
    assert_eq!(suites.len(), 1, "one testsuite per run");
    let suite = suites[0];
    for node in [root, suite] {
        assert_eq!(count(node, "tests"), 2);
        assert_eq!(count(node, "failures"), 1);
        assert_eq!(count(node, "errors"), 0);
    }
    assert_eq!(count(suite, "skipped"), 0);
    let cases = children(suite, "testcase");
    assert_eq!(cases.len(), 2);
    let total: f64 = cases
        .iter()
        .map(|c| attr(*c, "time").parse::<f64>().unwrap())
        .sum();
    let suite_time: f64 = attr(suite, "time").parse().unwrap();
    // Seconds, not milliseconds: four updaters thinking 10 ms take well under a second.
    assert!(suite_time > 0.0 && suite_time < 5.0, "{suite_time}");
    assert!((total - suite_time).abs() < 0.01, "{total} vs {suite_time}");
    let properties = children(children(suite, "properties")[0], "property");
    assert!(
        properties
            .iter()
            .any(|p| attr(*p, "name") == "seed" && attr(*p, "value").parse::<u64>().is_ok())
    );

    let naive = cases[0];
    assert_eq!(attr(naive, "classname"), "racelab.naive");
    assert_eq!(attr(naive, "name"), "naive");
    let failure = children(naive, "failure");
    assert_eq!(failure.len(), 1);
    let message = attr(failure[0], "message");
    assert!(
        message.starts_with("Segment SEG-00") && message.contains("got 'Scheduled'"),
        "the seed test's words: {message}"
    );
    assert_eq!(attr(failure[0], "type"), "lost-update");
    let body = failure[0].text().unwrap();
    assert!(body.contains("Race condition detected!"), "{body}");
    assert!(body.contains("was erased by #"), "{body}");

    let hash = cases[1];
    assert_eq!(attr(hash, "classname"), "racelab.hash");
    assert!(children(hash, "failure").is_empty());
    assert!(children(hash, "error").is_empty());
    let out = children(hash, "system-out")[0].text().unwrap();
    assert!(out.contains("applied 4"), "{out}");
}

#[test]
fn junit_calls_an_inconclusive_run_an_error_and_passes_an_expected_loss() {
    let redis = TestRedis::start();
    // One updater makes one update: too little for a verdict (README "Exit codes of run").
    let output = racelab(&[
        "run",
        "-s",
        "hash",
        "-n",
        "1",
        "--redis-url",
        &redis.url(),
        "--format",
        "junit",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let xml = String::from_utf8(output.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = children(doc.root_element(), "testsuite")[0];
    assert_eq!(count(suite, "errors"), 1);
    assert_eq!(count(suite, "failures"), 0);
    let case = children(suite, "testcase")[0];
    let error = children(case, "error");
    assert_eq!(attr(error[0], "type"), "inconclusive");
    assert!(attr(error[0], "message").contains("needs two"));

    // naive losing updates is what it is expected to do: a passed case listing the losses.
    let output = racelab(&[
        "run",
        "-s",
        "naive",
        "-n",
        "3",
        "--redis-url",
        &redis.url(),
        "--format",
        "junit",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let xml = String::from_utf8(output.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = children(doc.root_element(), "testsuite")[0];
    assert_eq!(count(suite, "failures") + count(suite, "errors"), 0);
    let case = children(suite, "testcase")[0];
    let out = children(case, "system-out")[0].text().unwrap();
    assert!(out.contains("ok (lost, expected lost)"), "{out}");
    assert!(out.contains("got 'Scheduled'"), "{out}");
}

#[tokio::test]
async fn junit_calls_a_strategy_that_could_not_run_an_error_and_skips_the_rest() {
    let redis = TestRedis::start();
    // A user without FUNCTION: the function strategy cannot load its library.
    let url = redis
        .acl_user("nofunction", "pw", &["~*", "+@all", "-function"])
        .await;
    let output = racelab(&[
        "run",
        "-s",
        "naive,function,hash",
        "-n",
        "3",
        "--redis-url",
        &url,
        "--format",
        "junit",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let xml = String::from_utf8(output.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = children(doc.root_element(), "testsuite")[0];
    assert_eq!(count(suite, "tests"), 3);
    assert_eq!(count(suite, "errors"), 1);
    assert_eq!(count(suite, "skipped"), 1);
    let cases = children(suite, "testcase");
    assert!(children(cases[0], "error").is_empty(), "naive ran: {xml}");
    let error = children(cases[1], "error")[0];
    assert_eq!(attr(error, "type"), "not-run");
    assert!(attr(error, "message").contains("FUNCTION"), "{xml}");
    let skipped = children(cases[2], "skipped")[0];
    assert!(attr(skipped, "message").contains("function could not be run"));
    assert!(!xml.contains(":pw@"), "no password in the report: {xml}");

    // Markdown says the same: a row for each strategy, those not run marked so.
    let output = racelab(&[
        "run",
        "-s",
        "naive,function,hash",
        "-n",
        "3",
        "--redis-url",
        &url,
        "--format",
        "markdown",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let markdown = String::from_utf8(output.stdout).unwrap();
    let (tables, _, _) = render(&markdown);
    let rows = &tables[0];
    assert_eq!(rows.len(), 4, "{markdown}");
    assert_eq!(rows[2][0], "function");
    assert_eq!(rows[2][1], "⚠️ not run");
    assert_eq!(rows[3][1], "⚠️ not run");
    assert!(markdown.contains("FUNCTION LOAD"), "{markdown}");
}

#[test]
fn junit_of_prove_has_a_case_per_strategy_and_layout() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prove.xml");
    let output = racelab(&[
        "prove",
        "-s",
        "naive,watch",
        "--redis-url",
        &redis.url(),
        "--format",
        "junit",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_valid_junit(&file);
    let xml = std::fs::read_to_string(&file).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = children(doc.root_element(), "testsuite")[0];
    assert_eq!(attr(suite, "name"), "racelab prove");
    assert_eq!(count(suite, "tests"), 4);
    let names: Vec<(&str, &str)> = children(suite, "testcase")
        .iter()
        .map(|c| (attr(*c, "classname"), attr(*c, "name")))
        .collect();
    assert_eq!(
        names,
        [
            ("racelab.naive", "naive different-segments"),
            ("racelab.naive", "naive same-segment"),
            ("racelab.watch", "watch different-segments"),
            ("racelab.watch", "watch same-segment"),
        ]
    );
    let naive = children(suite, "testcase")[0];
    let out = children(naive, "system-out")[0].text().unwrap();
    assert!(out.contains("6 schedules, 4 losing"), "{out}");
}

/// The Markdown rendered by a CommonMark renderer with GitHub's tables: the rows of its tables'
/// cells as plain text, and the text of its list items.
fn render(markdown: &str) -> (Vec<Vec<Vec<String>>>, Vec<String>, String) {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut items = Vec::new();
    let mut html = String::new();
    let mut cell: Option<String> = None;
    let mut item: Option<String> = None;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => tables.push(Vec::new()),
            Event::Start(Tag::TableHead) | Event::Start(Tag::TableRow) => {
                tables.last_mut().unwrap().push(Vec::new())
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                let text = cell.take().unwrap();
                tables.last_mut().unwrap().last_mut().unwrap().push(text);
            }
            Event::Start(Tag::Item) => item = Some(String::new()),
            Event::End(TagEnd::Item) => items.push(item.take().unwrap()),
            Event::Text(text) | Event::Code(text) => {
                for open in [&mut cell, &mut item].into_iter().flatten() {
                    open.push_str(&text);
                }
            }
            Event::Html(text) | Event::InlineHtml(text) => html.push_str(&text),
            _ => {}
        }
    }
    (tables, items, html)
}

#[test]
fn markdown_of_a_run_is_a_real_table_and_lists_the_lost_updates() {
    let redis = TestRedis::start();
    let output = racelab(&[
        "run",
        "-s",
        "naive,hash",
        "-n",
        "4",
        "--expect",
        "intact",
        "--redis-url",
        &redis.url(),
        "--format",
        "markdown",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let markdown = String::from_utf8(output.stdout).unwrap();
    let (tables, items, _) = render(&markdown);
    assert_eq!(tables.len(), 1, "{markdown}");
    let table = &tables[0];
    assert_eq!(
        table.len(),
        3,
        "a header and a row per strategy: {markdown}"
    );
    let header = &table[0];
    assert_eq!(header[0], "strategy");
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let naive = &table[1];
    assert_eq!(naive[0], "naive");
    assert!(naive[column("verdict")].contains("FAIL (lost, expected intact)"));
    let lost: u64 = naive[column("lost")].parse().unwrap();
    assert!(lost > 0, "{markdown}");
    let hash = &table[2];
    assert_eq!(hash[0], "hash");
    assert!(hash[column("verdict")].contains("ok (intact, expected intact)"));
    assert_eq!(hash[column("applied")], "4");
    // A failed strategy's lost updates are listed, in the seed test's words.
    assert!(
        markdown.contains("### naive: Race condition detected!"),
        "{markdown}"
    );
    assert_eq!(items.len() as u64, lost, "{markdown}");
    for item in &items {
        assert!(item.starts_with("Segment SEG-00"), "{item}");
        assert!(item.contains("got 'Scheduled'"), "{item}");
        assert!(item.contains("erased by #"), "{item}");
    }
}

#[test]
fn markdown_folds_an_expected_loss_away() {
    let redis = TestRedis::start();
    let output = racelab(&[
        "run",
        "-s",
        "naive",
        "-n",
        "3",
        "--redis-url",
        &redis.url(),
        "--format",
        "markdown",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let markdown = String::from_utf8(output.stdout).unwrap();
    let (tables, items, html) = render(&markdown);
    assert_eq!(tables.len(), 1);
    assert!(
        html.contains("<details><summary>naive: Race condition detected!"),
        "{html}"
    );
    assert!(html.contains("</details>"), "{html}");
    assert!(!items.is_empty(), "{markdown}");
    assert!(markdown.starts_with("## racelab run: every strategy behaved as expected"));
}

#[test]
fn markdown_of_prove_has_its_table_and_replayable_shortest_schedules() {
    let redis = TestRedis::start();
    let output = racelab(&[
        "prove",
        "-s",
        "naive,hash",
        "--redis-url",
        &redis.url(),
        "--format",
        "markdown",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let markdown = String::from_utf8(output.stdout).unwrap();
    let (tables, items, _) = render(&markdown);
    assert_eq!(tables.len(), 1, "{markdown}");
    let rows: Vec<Vec<&str>> = tables[0]
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "strategy",
            "layout",
            "schedules",
            "losing",
            "shortest losing",
            "expected",
            "verdict"
        ]
    );
    assert_eq!(
        rows[1],
        [
            "naive",
            "different-segments",
            "6",
            "4",
            "1 2 1 2",
            "lost",
            "✅ ok"
        ]
    );
    assert_eq!(rows.len(), 5);
    // Each shortest losing schedule is a command that replays it, and it does lose.
    assert_eq!(items.len(), 2, "{markdown}");
    let command = items[0].split_once(": ").unwrap().1;
    assert!(command.starts_with("racelab run -s naive"), "{command}");
    let schedule = command.split('"').nth(1).unwrap();
    let mut args: Vec<&str> = command
        .split('"')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    let url = redis.url();
    args.extend([schedule, "--redis-url", &url, "--format", "json"]);
    let replay = racelab(&args);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["runs"][0]["lost"], 1, "{report}");
}

#[test]
fn every_format_goes_to_the_output_file() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    for (format, starts) in [
        ("text", "racelab · seed"),
        ("json", "{"),
        ("junit", "<?xml"),
        ("markdown", "## racelab run"),
    ] {
        let file = dir.path().join(format!("report.{format}"));
        let output = racelab(&[
            "run",
            "-s",
            "hash",
            "-n",
            "2",
            "--redis-url",
            &redis.url(),
            "--format",
            format,
            "-o",
            file.to_str().unwrap(),
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{format}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{format}");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(starts), "{format}: {text}");
        // A path that cannot be written is one sentence and exit 2, before anything runs.
        let output = racelab(&[
            "run",
            "--format",
            format,
            "-o",
            "/nonexistent-dir/report",
            "--redis-url",
            &redis.url(),
        ]);
        assert_eq!(output.status.code(), Some(2), "{format}");
        let err = stderr(&output);
        assert!(err.contains("/nonexistent-dir/report"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let prove_file = dir.path().join(format!("prove.{format}"));
        let output = racelab(&[
            "prove",
            "-s",
            "hash",
            "--redis-url",
            &redis.url(),
            "--format",
            format,
            "-o",
            prove_file.to_str().unwrap(),
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{format}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{format}");
        assert!(!std::fs::read_to_string(&prove_file).unwrap().is_empty());
    }
    // prove too opens its output before it tries a schedule.
    let output = racelab(&[
        "prove",
        "--format",
        "junit",
        "-o",
        "/nonexistent-dir/prove.xml",
        "--redis-url",
        &redis.url(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("/nonexistent-dir/prove.xml"), "{err}");
    assert!(!err.contains("schedules"), "nothing was tried: {err}");
    let output = racelab(&["run", "--format", "html"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--format"));
    let output = racelab(&["bench", "--format", "junit"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bench's figures are not tests"
    );
}

#[test]
fn long_work_is_silent_on_stderr_when_it_is_not_a_terminal() {
    let redis = TestRedis::start();
    for args in [
        vec!["run", "-s", "all", "-n", "10", "--think", "50ms"],
        vec!["prove", "-s", "naive,lock"],
        vec![
            "bench",
            "-s",
            "hash",
            "-n",
            "1,4",
            "--duration",
            "300ms",
            "--no-redis-benchmark",
        ],
    ] {
        let mut args = args.clone();
        let url = redis.url();
        args.extend(["--redis-url", &url, "-o", "/dev/null"]);
        let output = racelab(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}: stderr is a pipe here");
    }
}

#[test]
fn long_work_shows_one_line_of_progress_on_a_terminal() {
    let redis = TestRedis::start();
    // `script` gives racelab a terminal for stderr; the run takes over a second.
    let command = format!(
        "{} run -s naive -n 2 --think 1500ms --redis-url {} -o /dev/null",
        env!("CARGO_BIN_EXE_racelab"),
        redis.url()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .expect("script (util-linux) gives the run a terminal");
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(
        seen.contains("\r\x1b[2Krun: naive (1 of 1)"),
        "progress on the terminal: {seen:?}"
    );
    // Wiped once the run is done, so the terminal is left clean.
    let last = seen.rfind("run: naive").unwrap();
    assert!(seen[last..].contains("\r\x1b[2K"), "{seen:?}");
}
