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
    let lost = run["lost"].as_u64().unwrap_or_else(|| panic!("{run:#}"));
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

#[test]
fn the_tuis_f_key_fails_over_a_run_going_on_and_only_with_replicas() {
    use crate::tui_support::{app, ch, key, target};
    use crossterm::event::KeyCode;
    use racelab::tui::app::{App, Command};
    use std::time::Instant;

    let base = Instant::now();
    // Without replicas there is nothing to fail over to: a sentence, no command.
    let mut plain = app(base);
    plain.update(key(KeyCode::Enter), base);
    assert!(plain.update(ch('F'), base).is_empty());
    assert!(plain.notice_text().unwrap().contains("--replicas"));

    let mut replicated = App::new(
        racelab::Strategy::Lua,
        crate::tui_support::workload(),
        true,
        racelab::tui::app::TargetInfo {
            replicas: 1,
            ..target()
        },
        false,
        base,
    );
    // Not before a run starts...
    assert!(replicated.update(ch('F'), base).is_empty());
    assert!(replicated.notice_text().unwrap().contains("during a run"));
    // ...and in one, the failover is asked for.
    replicated.update(key(KeyCode::Enter), base);
    let commands = replicated.update(ch('F'), base);
    assert!(
        matches!(commands.as_slice(), [Command::FailOver]),
        "{}",
        commands.len()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failover_asked_for_mid_run_is_made_and_its_losses_told_apart() {
    use std::sync::Arc;
    use std::time::Duration;

    let target = racelab::Target::open_replicated(1, Duration::from_secs(5))
        .await
        .expect("a private server with a replica");
    let now = Arc::new(tokio::sync::Notify::new());
    let settings = racelab::Settings {
        failover_now: Some(now.clone()),
        ..crate::common::settings()
    };
    let workload = crate::common::workload(10, 10, 200, Duration::from_millis(1));
    // Asked again and again, as a presenter might press F: only a run waiting for it hears it.
    let asking = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.notify_waiters();
        }
    });
    let result =
        crate::common::run_with(&target, racelab::Strategy::Lua, &workload, &settings).await;
    asking.abort();
    let record = match &result.failover {
        Some(Ok(record)) => record.clone(),
        other => panic!("no failover: {other:?}"),
    };
    assert!(record.promoted_at <= record.cut_at);
    let truth = &result.truth;
    assert!(truth.lost_to_failover > 0, "{truth:?}");
    assert_eq!(
        truth.lost,
        truth.lost_to_failover + truth.lost_to_failover_or_stale
    );
}

#[test]
fn a_private_cluster_gets_a_replica_per_primary_and_a_users_cluster_none() {
    let cluster = racelab::RedisCluster::start_with(None, 1).expect("a private cluster");
    assert_eq!(cluster.nodes().len(), 6);
    let client = redis::Client::open(cluster.urls()[0].as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
    let replicas = nodes.lines().filter(|l| l.contains("slave")).count();
    assert_eq!(replicas, 3, "{nodes}");

    // racelab starts no replicas of a cluster it did not start.
    let seed = cluster.urls()[0].clone();
    let output = racelab(&["run", "--cluster", seed.as_str(), "--replicas", "1"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("private"), "{err}");
}

#[test]
fn bench_measures_each_cell_with_and_without_wait() {
    let output = racelab(&[
        "bench",
        "-s",
        "hash",
        "-n",
        "2",
        "--duration",
        "100ms",
        "--wait-replicas",
        "0,1",
        "--no-redis-benchmark",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cells = report["cells"].as_array().unwrap();
    let waits: Vec<u64> = cells
        .iter()
        .map(|c| c["wait_replicas"].as_u64().unwrap())
        .collect();
    assert_eq!(waits, [0, 1]);
    // Every write of the WAIT cell was acknowledged by the replica: none unknown, none lost.
    assert!(cells[1]["updates"].as_u64().unwrap() > 0, "{cells:?}");
    assert_eq!(cells[1]["unknown"], 0, "{cells:?}");
    assert_eq!(cells[1]["lost"], 0, "{cells:?}");
    // WAIT is one more command per update, at least.
    let commands = |c: &serde_json::Value| c["commands_per_update"].as_f64().unwrap();
    assert!(commands(&cells[1]) > commands(&cells[0]), "{cells:?}");
}

#[test]
fn a_private_cluster_fails_over_the_journeys_primary_and_counts_what_it_lost() {
    let (output, report) = failover_run("lua", &["--cluster", "private"]);
    let run = &report["runs"][0];
    let failover = &run["failover"];
    // CLUSTER FAILOVER FORCE made the journey's replica its primary, and the old primary
    // followed it.
    assert!(failover["promoted_ms"].is_number(), "{run:#}");
    assert_ne!(failover["promoted"], failover["demoted"], "{run:#}");
    // How many the old primary acknowledged in the moment before it was fenced is timing's
    // business; that lua lost nothing else, and nothing is pinned on a stale writer, is not.
    let lost = run["lost"].as_u64().unwrap_or_else(|| panic!("{run:#}"));
    let to_failover = failover["lost_to_failover"].as_u64().unwrap();
    let either = failover["lost_to_failover_or_stale"].as_u64().unwrap();
    assert_eq!(lost, to_failover + either, "{run:#}");
    for lost in run["lost_updates"].as_array().unwrap() {
        assert!(lost["erased_by"].is_null(), "{lost:#}");
    }
    let expected = if lost > 0 { 1 } else { 0 };
    assert_eq!(output.status.code(), Some(expected), "{run:#}");
}
