//! Race your own code (README "Race your own service"): a journey service in Python behind
//! `-s exec:`, and Lua scripts of one's own behind `-s lua:`, each raced through the real binary
//! against a real redis-server. The naive service and the wrong script lose updates; the fixed
//! ones hold many times over; every way a service can break the protocol is one sentence and
//! exit 2, with racelab's keys and the service's gone.

use std::path::PathBuf;
use std::process::Output;

use crate::common::{TestRedis, assert_schema, racelab};

/// A Python with the redis client: `python3` if it has it, else Debian's (`.ci/run` installs
/// python3-redis).
fn python() -> &'static str {
    for python in ["python3", "/usr/bin/python3"] {
        let has = std::process::Command::new(python)
            .args(["-c", "import redis"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has {
            return python;
        }
    }
    panic!("no Python with the redis client: apt install python3-redis (.ci/run does)");
}

fn example(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

fn service(flag: &str) -> String {
    format!(
        "exec:{} {} {flag}",
        python(),
        example("examples/journey_service.py")
    )
}

fn faulty(mode: &str) -> String {
    format!(
        "exec:{} {} {mode}",
        python(),
        example("tests/it/fixtures/faulty_service.py")
    )
}

fn run_on(redis: &TestRedis, args: &[&str]) -> Output {
    let url = redis.url();
    let mut all = vec!["run", "--redis-url", url.as_str()];
    all.extend_from_slice(args);
    racelab(&all)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(output: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}", text(output)));
    assert_schema(&report);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_naive_service_loses_updates_and_racelab_says_so() {
    let redis = TestRedis::start();
    let naive = service("--naive");
    let lost = run_on(
        &redis,
        &["-s", &naive, "--expect", "lost", "--format", "json"],
    );
    assert_eq!(lost.status.code(), Some(0), "{}", text(&lost));
    let report = json(&lost);
    let run = &report["runs"][0];
    assert!(run["lost"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["user"]["truth"], "exact", "{run}");
    // All twenty updates were sent at once, and the service took them concurrently.
    assert!(run["user"]["in_flight_max"].as_u64().unwrap() > 1, "{run}");
    let gate = run_on(&redis, &["-s", &naive, "--expect", "intact"]);
    assert_eq!(gate.status.code(), Some(1), "{}", text(&gate));
    assert!(text(&gate).contains("expected '"), "{}", text(&gate));
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_service_is_intact_under_contention_many_times_over() {
    let redis = TestRedis::start();
    let fixed = service("--fixed");
    for _ in 0..5 {
        let run = run_on(&redis, &["-s", &fixed, "--expect", "intact"]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    }
    // Several updaters per segment, several rounds: judged in real-time order.
    let shared = run_on(
        &redis,
        &[
            "-s",
            &fixed,
            "-n",
            "30",
            "--segments",
            "5",
            "--rounds",
            "3",
            "--expect",
            "intact",
            "--format",
            "json",
        ],
    );
    assert_eq!(shared.status.code(), Some(0), "{}", text(&shared));
    assert_eq!(json(&shared)["runs"][0]["user"]["truth"], "real-time");
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_breaks_the_protocol_is_one_sentence_and_exit_2() {
    let redis = TestRedis::start();
    for (mode, says) in [
        ("exit", "closed its stdout"),
        ("garbage", "not a JSON object: this is not json"),
        ("wrong-id", "which was never sent"),
    ] {
        let run = run_on(&redis, &["-s", &faulty(mode), "-n", "3"]);
        let said = text(&run);
        assert_eq!(run.status.code(), Some(2), "{mode}: {said}");
        assert!(said.contains(says), "{mode}: {said}");
        assert!(!said.contains("panicked"), "{mode}: {said}");
        if mode == "exit" {
            // Its last stderr lines come with the sentence.
            assert!(said.contains("giving up on purpose"), "{said}");
        }
    }
    // A service that never answers an update: each is unknown after --timeout, and a run with
    // no update acknowledged is inconclusive.
    let run = run_on(
        &redis,
        &[
            "-s",
            &faulty("silent"),
            "-n",
            "3",
            "--timeout",
            "300ms",
            "--format",
            "json",
        ],
    );
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert_eq!(json(&run)["runs"][0]["unknown"], 3);
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_gets_the_password_and_the_prefix_and_racelab_prints_neither_secret() {
    let redis = TestRedis::start();
    let url = redis
        .acl_user(
            "svc",
            "s3cret-pw",
            &["~*", "+@all", "-flushall", "-flushdb", "-keys"],
        )
        .await;
    let fixed = service("--fixed");
    let run = racelab(&[
        "run",
        "--redis-url",
        &url,
        "-s",
        &fixed,
        "--key-prefix",
        "team-a",
        "--keep",
    ]);
    let said = text(&run);
    assert_eq!(run.status.code(), Some(0), "{said}");
    assert!(!said.contains("s3cret-pw"), "{said}");
    // --keep: the service's keys are still there, all under the run's prefix.
    let keys = redis.all_keys().await;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("team-a:"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_fix_holds_and_a_script_that_reads_the_wrong_key_loses() {
    let redis = TestRedis::start();
    let fix = format!("lua:{}", example("examples/lua/fix.lua"));
    for _ in 0..5 {
        let run = run_on(
            &redis,
            &[
                "-s",
                &fix,
                "-n",
                "40",
                "--segments",
                "10",
                "--rounds",
                "3",
                "--think",
                "0ms",
                "--expect",
                "intact",
            ],
        );
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    }
    let wrong = format!("lua:{}", example("examples/lua/wrong_key.lua"));
    let run = run_on(
        &redis,
        &["-s", &wrong, "--expect", "lost", "--format", "json"],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(json(&run)["runs"][0]["lost"].as_u64().unwrap() > 0);
    // Its own key (the cached copy) went with the run's.
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_error_is_told_with_the_scripts_own_message_and_line() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.lua");
    std::fs::write(&broken, "local x = 1\nreturn x + nil\n").unwrap();
    let run = run_on(
        &redis,
        &["-s", &format!("lua:{}", broken.display()), "-n", "2"],
    );
    let said = text(&run);
    assert_eq!(run.status.code(), Some(2), "{said}");
    assert!(
        said.contains("broken.lua line 2: attempt to perform arithmetic"),
        "{said}"
    );
    let uncompilable = dir.path().join("uncompilable.lua");
    std::fs::write(&uncompilable, "local x =\n").unwrap();
    let run = run_on(&redis, &["-s", &format!("lua:{}", uncompilable.display())]);
    let said = text(&run);
    assert_eq!(run.status.code(), Some(2), "{said}");
    assert!(
        said.contains("does not load") && said.contains("uncompilable.lua line"),
        "{said}"
    );
    let missing = run_on(&redis, &["-s", "lua:/no/such/script.lua"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("cannot read the Lua script /no/such/script.lua"));
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prove_and_bench_take_a_service_and_prove_says_what_it_cannot_show() {
    let redis = TestRedis::start();
    let url = redis.url();
    let naive = service("--naive");
    let prove = racelab(&["prove", "--redis-url", &url, "-s", &naive]);
    let said = text(&prove);
    assert_eq!(prove.status.code(), Some(0), "{said}");
    assert!(said.contains("prove orders whole updates"), "{said}");
    assert!(said.contains("racelab run shows it"), "{said}");
    let fixed = service("--fixed");
    let bench = racelab(&[
        "bench",
        "--redis-url",
        &url,
        "-s",
        &fixed,
        "-n",
        "2",
        "--duration",
        "300ms",
        "--no-redis-benchmark",
        "--format",
        "json",
    ]);
    assert_eq!(bench.status.code(), Some(0), "{}", text(&bench));
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    let cell = &report["cells"][0];
    assert!(cell["updates_per_s"].as_f64().unwrap() > 0.0, "{cell}");
    assert_eq!(cell["lost"], 0, "{cell}");
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}
