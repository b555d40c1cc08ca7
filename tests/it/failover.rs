//! The failover lesson (README "Failover"): acknowledged updates lost with no race at all when
//! racelab's private primary fails over to a replica that lacked them, told apart from stale
//! writes; `--wait-replicas` keeping them; and failover kept off a user's Redis.

use std::process::Output;

use crate::common::{TestRedis, assert_schema, racelab};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A run with a failover 50 ms after the release, as JSON: long enough (200 rounds of 1 ms
/// thinking at the least) that the failover always comes mid-run, however slow the machine.
fn failover_run(strategy: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec![
        "run",
        "-s",
        strategy,
        "--replicas",
        "1",
        "--failover-at",
        "50ms",
        "-n",
        "10",
        "--rounds",
        "200",
        "--think",
        "1ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let output = racelab(&args);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&output), stderr(&output)));
    assert_schema(&report);
    (output, report)
}

#[test]
fn a_failover_loses_acknowledged_updates_of_a_safe_strategy_and_says_so() {
    let (output, report) = failover_run("lua", &[]);
    let run = &report["runs"][0];
    let failover = &run["failover"];
    assert!(failover["promoted_ms"].is_number(), "{run:#}");
    let lost = run["lost"].as_u64().unwrap();
    let to_failover = failover["lost_to_failover"].as_u64().unwrap();
    let either = failover["lost_to_failover_or_stale"].as_u64().unwrap();
    // The old primary acknowledged writes after the replica was promoted: they are gone.
    assert!(to_failover > 0, "{run:#}");
    // Every loss is the failover's (or, for an update in flight at the cut, maybe), none a
    // stale write's: lua's script cannot write a stale copy.
    assert_eq!(lost, to_failover + either, "{run:#}");
    for lost in run["lost_updates"].as_array().unwrap() {
        assert!(lost["cause"].is_string(), "{lost:#}");
        assert!(lost["erased_by"].is_null(), "{lost:#}");
    }
    // The data is gone all the same: not as expected (README "Exit codes").
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(run["ok"], false);

    // And in words.
    let output = racelab(&[
        "run",
        "-s",
        "lua",
        "--replicas",
        "1",
        "--failover-at",
        "50ms",
        "-n",
        "10",
        "--rounds",
        "200",
        "--think",
        "1ms",
    ]);
    let text = stdout(&output);
    assert!(text.contains("lost to failover"), "{text}");
    assert!(text.contains("it is not blamed"), "{text}");
    assert!(!text.contains("Race condition detected!"), "{text}");
    assert!(!text.contains("stale write at"), "{text}");
}

#[test]
fn a_stale_writer_is_not_blamed_for_what_the_failover_lost() {
    // Two updaters per segment: naive loses to stale writes and to the failover in one run.
    let (_, report) = failover_run("naive", &["--segments", "5"]);
    let run = &report["runs"][0];
    let listed = run["lost_updates"].as_array().unwrap();
    let by_failover: Vec<_> = listed.iter().filter(|l| l["cause"].is_string()).collect();
    assert!(!by_failover.is_empty(), "{run:#}");
    for lost in by_failover {
        assert!(lost["erased_by"].is_null(), "{lost:#}");
    }
    // The stale writes are still named for what they erased.
    assert!(
        listed
            .iter()
            .any(|l| l["cause"].is_null() && l["erased_by"].is_number()),
        "{run:#}"
    );
}

#[test]
fn with_wait_replicas_a_failover_loses_no_acknowledged_update() {
    let (output, report) = failover_run("lua", &["--wait-replicas", "1"]);
    let run = &report["runs"][0];
    assert!(run["failover"]["promoted_ms"].is_number(), "{run:#}");
    assert_eq!(run["lost"], 0, "{run:#}");
    assert_eq!(run["failover"]["lost_to_failover"], 0, "{run:#}");
    assert_eq!(output.status.code(), Some(0), "{run:#}");
}

#[test]
fn replicas_and_failover_are_refused_on_a_users_redis() {
    let redis = TestRedis::start();
    for args in [
        vec![
            "run",
            "--redis-url",
            redis.url().as_str(),
            "--replicas",
            "1",
        ],
        vec![
            "run",
            "--redis-url",
            redis.url().as_str(),
            "--failover-at",
            "1s",
        ],
        vec!["run", "--failover-at", "1s"],
    ] {
        let output = racelab(&args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("private"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
