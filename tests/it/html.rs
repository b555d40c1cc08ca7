//! `--html FILE` (README "HTML timeline"): real runs and proofs against a real redis-server, their
//! pages read back: the data block parsed and set against the JSON report of the same run, the
//! page checked to fetch nothing, and (where a chromium is installed) loaded in a headless
//! browser whose script must run to its end.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestRedis, assert_schema, racelab};

const DATA_TAG: &str = r#"<script type="application/json" id="racelab-data">"#;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The page's embedded data, parsed back, and the page around it.
fn page(file: &Path) -> (Value, String) {
    let html = std::fs::read_to_string(file).unwrap();
    let start = html.find(DATA_TAG).expect("the page has its data block") + DATA_TAG.len();
    let end = start + html[start..].find("</script>").unwrap();
    let data = serde_json::from_str(&html[start..end]).unwrap_or_else(|e| {
        panic!("the data block is not JSON ({e})");
    });
    let around = format!("{}{}", &html[..start], &html[end..]);
    (data, around)
}

fn named<'a>(list: &'a Value, field: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|item| item[field] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Who lost what and who erased it, as a comparable list.
fn losses(list: &Value) -> Vec<(String, u64, u64, Option<u64>)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["segment"].as_str().unwrap().to_owned(),
                l["updater"].as_u64().unwrap(),
                l["round"].as_u64().unwrap(),
                l["erased_by"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn the_page_of_a_run_carries_the_json_reports_strategies_counts_and_erasers() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("racelab.html");
    let output = racelab(&[
        "run",
        "-s",
        "naive,hash,watch",
        "-n",
        "6",
        "--seed",
        "7",
        "--redis-url",
        &redis.url(),
        "--format",
        "json",
        "--html",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The report still goes to stdout, as it would without --html.
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_schema(&report);

    let (data, _) = page(&file);
    assert_eq!(data["command"], "run");
    let run = &data["run"];
    assert_eq!(run["seed"], report["seed"]);
    assert_eq!(run["ok"], report["ok"]);
    let names: Vec<&Value> = run["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["strategy"])
        .collect();
    let reported: Vec<&Value> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["strategy"])
        .collect();
    assert_eq!(names, reported);
    for shown in run["strategies"].as_array().unwrap() {
        let name = shown["strategy"].as_str().unwrap();
        let reported = named(&report["runs"], "strategy", name);
        for field in [
            "updaters",
            "acknowledged",
            "applied",
            "lost",
            "unknown",
            "errors",
            "retries",
            "give_ups",
            "ok",
            "lost_unlisted",
        ] {
            assert_eq!(shown[field], reported[field], "{name}: {field}");
        }
        assert_eq!(
            losses(&shown["lost_updates"]),
            losses(&reported["lost_updates"]),
            "{name}"
        );
        // A lane per updater, each with its read and its acknowledged write.
        let lanes = shown["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), 6, "{name}");
        for (i, lane) in lanes.iter().enumerate() {
            assert_eq!(lane["updater"], i as u64 + 1);
            let spans = lane["spans"].as_array().unwrap();
            // hash writes its field without reading the journey first.
            if name != "hash" {
                assert!(spans.iter().any(|s| s["kind"] == "read"), "{name}: {lane}");
            }
            assert!(
                spans
                    .iter()
                    .any(|s| s["kind"] == "write" && s["outcome"] == "acknowledged"),
                "{name}: {lane}"
            );
            for s in spans {
                assert!(s["from_us"].as_u64().unwrap() <= s["to_us"].as_u64().unwrap());
            }
        }
        // The grid: every segment, lost exactly where the report lists a loss.
        let cells = shown["cells"].as_array().unwrap();
        assert_eq!(cells.len() as u64, reported["segments"].as_u64().unwrap());
        for cell in cells {
            let lost_here = reported["lost_updates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["segment"] == cell["id"]);
            assert_eq!(cell["state"] == "lost", lost_here, "{name}: {cell}");
        }
    }
    // naive lost updates, each erased by someone the page names.
    let naive = named(&run["strategies"], "strategy", "naive");
    assert!(naive["lost"].as_u64().unwrap() > 0);
    assert!(
        naive["lost_updates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["erased_by"].is_u64())
    );
    // watch retried: its lanes show it.
    let watch = named(&run["strategies"], "strategy", "watch");
    if watch["retries"].as_u64().unwrap() > 0 {
        assert!(watch["lanes"].as_array().unwrap().iter().any(|lane| {
            lane["spans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "retry")
        }));
    }
}

#[test]
fn the_page_fetches_nothing() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("racelab.html");
    let output = racelab(&[
        "run",
        "-s",
        "naive",
        "-n",
        "4",
        "--redis-url",
        &redis.url(),
        "--html",
        file.to_str().unwrap(),
        "-o",
        dir.path().join("report.txt").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (_, page) = page(&file);
    let lower = page.to_lowercase();
    assert!(lower.starts_with("<!doctype html>"));
    for banned in ["<link", "@import", "url(", "http://", "https://", "//cdn"] {
        assert!(!lower.contains(banned), "the page holds {banned:?}");
    }
    // Every script is inline.
    for tag in lower.split("<script").skip(1) {
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(!tag.contains("src"), "<script{tag}>");
    }
    for attribute in [" src=", " href="] {
        assert!(!lower.contains(attribute), "the page holds {attribute:?}");
    }
}

#[test]
fn a_scheduled_run_shows_each_steps_command_and_reply() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("racelab.html");
    let output = racelab(&[
        "run",
        "-s",
        "naive",
        "-n",
        "2",
        "--schedule",
        "1 2 1 2",
        "--redis-url",
        &redis.url(),
        "--html",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (data, _) = page(&file);
    let naive = &data["run"]["strategies"][0];
    let taken: Vec<u64> = naive["taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["updater"].as_u64().unwrap())
        .collect();
    assert_eq!(taken, [1, 2, 1, 2]);
    let read = naive["lanes"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "read")
        .unwrap();
    assert_eq!(read["command"], "GET journey", "{read}");
    assert!(
        read["reply"].as_str().unwrap().contains("Scheduled"),
        "{read}"
    );
    // #2's stale copy erased #1's update.
    assert_eq!(losses(&naive["lost_updates"])[0].3, Some(2));
}

#[test]
fn prove_draws_each_shortest_losing_schedule_step_by_step() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prove.html");
    let output = racelab(&[
        "prove",
        "-s",
        "naive,hash",
        "--redis-url",
        &redis.url(),
        "--format",
        "json",
        "--html",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (data, _) = page(&file);
    assert_eq!(data["command"], "prove");
    let results = data["prove"]["results"].as_array().unwrap();
    assert_eq!(results.len(), report["results"].as_array().unwrap().len());
    for (shown, reported) in results.iter().zip(report["results"].as_array().unwrap()) {
        for field in [
            "strategy",
            "layout",
            "schedules",
            "losing",
            "shortest",
            "ok",
        ] {
            assert_eq!(shown[field], reported[field], "{field}");
        }
        let steps = shown["steps"].as_array().unwrap();
        match reported["shortest"].as_str() {
            // The picture is the shortest losing schedule: its updaters, step by step, each with
            // the command it sent and Redis's reply, and what it lost.
            Some(shortest) => {
                let updaters: Vec<String> = steps
                    .iter()
                    .map(|s| s["updater"].as_u64().unwrap().to_string())
                    .collect();
                assert_eq!(updaters.join(" "), shortest);
                assert!(steps.iter().all(|s| s["command"].is_string()));
                assert!(steps.iter().any(|s| s["role"] == "read"));
                let lost = shown["lost_updates"].as_array().unwrap();
                assert!(!lost.is_empty());
                assert!(lost.iter().all(|l| l["erased_by"].is_u64()), "{shown}");
            }
            None => assert!(steps.is_empty()),
        }
    }
    assert!(
        results
            .iter()
            .any(|r| r["strategy"] == "naive" && r["losing"] != 0)
    );
}

#[test]
fn a_bad_html_path_is_one_sentence_and_exit_2() {
    for command in ["run", "prove"] {
        let output = racelab(&[command, "--html", "/nonexistent-dir/racelab.html"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command}: {}",
            stderr(&output)
        );
        let err = stderr(&output);
        assert_eq!(err.trim_end().lines().count(), 1, "{command}: {err}");
        assert!(
            err.contains("/nonexistent-dir/racelab.html") && err.contains("--html"),
            "{command}: {err}"
        );
        assert!(output.stdout.is_empty());
    }
    // The page cannot be the report too.
    for command in ["run", "prove"] {
        let output = racelab(&[command, "--html", "same.html", "-o", "same.html"]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains("--html same.html"), "{command}");
        assert!(!Path::new("same.html").exists(), "{command}");
    }
}

/// Workers to join a run, killed on drop.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn lanes_of_a_run_with_workers_know_their_worker() {
    let redis = TestRedis::start();
    let url = redis.url();
    let _workers = Workers(
        (0..2)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_racelab"))
                    .args(["worker", "--redis-url", &url, "--once"])
                    .env_remove("REDIS_URL")
                    .env_remove("REDIS_CLUSTER")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("racelab.html");
    let output = racelab(&[
        "run",
        "-n",
        "6",
        "--redis-url",
        &url,
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--format",
        "json",
        "--html",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (data, _) = page(&file);
    let naive = &data["run"]["strategies"][0];
    assert_eq!(naive["workers"], report["runs"][0]["workers"]);
    for lane in naive["lanes"].as_array().unwrap() {
        let updater = lane["updater"].as_u64().unwrap();
        let share = naive["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| {
                w["first_updater"].as_u64().is_some_and(|f| f <= updater)
                    && w["last_updater"].as_u64().is_some_and(|l| updater <= l)
            })
            .unwrap();
        assert_eq!(lane["worker"], share["worker"], "{lane}");
        assert!(!lane["spans"].as_array().unwrap().is_empty(), "{lane}");
    }
}

/// A chromium to load pages in, if one is installed (`.ci/run` installs Debian's).
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The DOM of `file` after its script ran, in headless chromium (at most a minute).
fn dump_dom(browser: &str, file: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(file)
        // A file, not a pipe: a DOM larger than the pipe's buffer would block chromium.
        .stdout(std::fs::File::create(profile.path().join("dom.html")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{browser} did not render {} within a minute",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(profile.path().join("dom.html")).unwrap()
}

#[test]
fn the_pages_script_runs_to_its_end_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium installed (apt install chromium) to load the page in");
        return;
    };
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run.html");
    let prove = dir.path().join("prove.html");
    let output = racelab(&[
        "run",
        "-s",
        "naive,watch,lock",
        "-n",
        "8",
        "--redis-url",
        &redis.url(),
        "--html",
        run.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = racelab(&[
        "prove",
        "-s",
        "naive,keys",
        "--redis-url",
        &redis.url(),
        "--html",
        prove.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for (file, shows) in [(&run, "Segments after the run"), (&prove, "step by step")] {
        let dom = dump_dom(browser, file);
        let body = &dom[dom.find("<body").unwrap()..];
        let body_tag = &body[..body.find('>').unwrap()];
        assert!(
            body_tag.contains(r#"data-ready="yes""#) && !body_tag.contains("data-error"),
            "{}: the script did not run to its end: {body_tag}",
            file.display()
        );
        assert!(dom.contains(shows), "{}", file.display());
    }
}
