//! Chosen interleavings on a real Redis (README "Schedules"): `--schedule` decides which
//! updater's step reaches Redis first, so each outcome below is exact, every time.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{TestRedis, run, workload};
use racelab::{RunResult, Schedule, Strategy, Workload};

/// `updaters` updaters on `segments` segments following `schedule`, no think time.
fn scheduled(updaters: u32, segments: usize, schedule: &str) -> Workload {
    let mut workload = workload(updaters, segments, 1, Duration::ZERO);
    workload.schedule = Some(Schedule::parse(schedule).unwrap());
    workload
}

/// (updater, eraser) of each lost update, 1-based.
fn losses(result: &RunResult) -> Vec<(u32, Option<u32>)> {
    assert!(result.is_complete(), "{:?}", result.stopped);
    let mut lost: Vec<_> = result
        .truth
        .lost_updates
        .iter()
        .map(|l| (l.updater, l.erased_by))
        .collect();
    lost.sort();
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_loses_the_first_write_under_1_2_1_2_every_time() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let losing = scheduled(2, 20, "1 2 1 2");
    let safe = scheduled(2, 20, "1 1 2 2");
    for _ in 0..100 {
        // #1 reads, #2 reads, #1 writes, #2 writes its copy without #1's update.
        let result = run(&target, Strategy::Naive, &losing).await;
        assert_eq!(losses(&result), vec![(1, Some(2))]);
        assert_eq!(result.tally.acknowledged, 2);
    }
    for _ in 0..20 {
        // #2 reads after #1 wrote: nothing to lose.
        let result = run(&target, Strategy::Naive, &safe).await;
        assert_eq!(losses(&result), vec![]);
        assert_eq!(result.truth.applied, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_aborts_the_second_exec_and_retries_and_loses_nothing() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = scheduled(2, 20, "1 2 1 2");
    for _ in 0..20 {
        let result = run(&target, Strategy::Watch, &workload).await;
        assert_eq!(losses(&result), vec![]);
        assert_eq!(result.truth.applied, 2);
        // #2's EXEC found the journey changed since its WATCH: one conflict, one retry.
        assert_eq!(result.tally.conflicts, 1);
        assert_eq!(result.tally.retries, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_loses_once_time_lets_it_expire_and_the_fence_refuses_the_stale_holder() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // #1 takes the lock and reads; its lock expires (t); #2 takes the lock and reads the same
    // state; #1 writes; #2 writes its copy without #1's update.
    let mut workload = scheduled(2, 20, "1 1 t 2 2 1 2");
    workload.tuning.lock_ttl = Duration::from_millis(100);
    let lock = run(&target, Strategy::Lock, &workload).await;
    assert_eq!(losses(&lock), vec![(1, Some(2))]);
    // The same interleaving cannot lose with a fence: #1's write carries an outdated token.
    let fenced = run(&target, Strategy::Fenced, &workload).await;
    assert_eq!(losses(&fenced), vec![]);
    assert!(
        fenced.tally.retries >= 1,
        "the stale holder's write was not refused"
    );
    // Without the expiry, the lock holds: #2 waits for #1 to release.
    let mut held = scheduled(2, 20, "1 1 2 2 1 2");
    held.tuning.lock_ttl = Duration::from_secs(10);
    let result = run(&target, Strategy::Lock, &held).await;
    assert_eq!(losses(&result), vec![]);
    assert_eq!(result.truth.applied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_loses_only_when_updaters_share_a_segment() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // Updaters 1 and 3 share SEG-001 when there are 2 segments.
    let shared = run(&target, Strategy::Keys, &scheduled(3, 2, "1 3 1 3")).await;
    assert_eq!(losses(&shared), vec![(1, Some(3))]);
    let apart = run(&target, Strategy::Keys, &scheduled(2, 20, "1 2 1 2")).await;
    assert_eq!(losses(&apart), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixes_hold_under_the_losing_interleaving() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // The two-step fixes interleave as naive does; the one-step ones have nothing to interleave
    // (a longer schedule would name an updater that is done).
    for (strategy, schedule) in [
        (Strategy::Cas, "1 2 1 2"),
        (Strategy::Watch, "1 2 1 2"),
        (Strategy::Hash, "2 1"),
        (Strategy::Lua, "2 1"),
        (Strategy::Function, "2 1"),
    ] {
        let result = run(&target, strategy, &scheduled(2, 20, schedule)).await;
        assert_eq!(losses(&result), vec![], "{strategy}");
        assert_eq!(result.truth.applied, 2, "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_schedule_gives_the_same_outcome() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = scheduled(3, 20, "1 2 3 2 1 3");
    let first = run(&target, Strategy::Naive, &workload).await;
    for _ in 0..10 {
        let again = run(&target, Strategy::Naive, &workload).await;
        assert_eq!(losses(&again), losses(&first));
        assert_eq!(again.states, first.states);
    }
}

fn racelab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn bad_schedules_are_one_sentence_naming_the_token() {
    for (args, says) in [
        (vec!["run", "-n", "2", "--schedule", "1 x"], "token 2"),
        (
            vec!["run", "-n", "2", "--schedule", "1 3"],
            "names updater #3",
        ),
        (
            vec!["run", "-n", "2", "--schedule", "1 1 1 2"],
            "#1 has already made all its updates",
        ),
        (
            vec!["run", "--schedule", "1", "--workers", "2"],
            "leave out --workers",
        ),
    ] {
        let output = racelab(&args);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_report_and_the_history_say_which_schedule_ran() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.jsonl");
    let output = racelab(&[
        "run",
        "-s",
        "naive,watch",
        "-n",
        "2",
        "--schedule",
        "1,2,1,2",
        "--format",
        "json",
        "--history",
        history.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    crate::common::assert_schema(&report);
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["schedule"], "1 2 1 2", "{run}");
    }
    // naive may lose under a schedule: whichever interleaving the user chose, auto expects either.
    assert_eq!(report["runs"][0]["expected"], "either");
    assert_eq!(report["runs"][0]["lost"], 1);
    assert_eq!(report["runs"][1]["expected"], "intact");
    let lines = std::fs::read_to_string(&history).unwrap();
    let schedules = lines
        .lines()
        .filter(|l| l.contains(r#""kind":"schedule""#) && l.contains(r#""schedule":"1 2 1 2""#))
        .count();
    assert_eq!(schedules, 2, "{lines}");
}
