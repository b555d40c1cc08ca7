//! The fixes that look right (README "Fixes that look right"): `multi`, `watch-other`,
//! `del-unlock` and `local-mutex` each lose updates for real, on a real redis-server, under
//! contention and under their losing schedule; `local-mutex` holds in one process and loses
//! across two (that half is in `workers`).

use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, TestRedis, assert_intact, losses, racelab, run, workload};
use racelab::{Expect, Expected, Schedule, Strategy};

const WRONG: [Strategy; 4] = [
    Strategy::Multi,
    Strategy::WatchOther,
    Strategy::DelUnlock,
    Strategy::LocalMutex,
];

#[test]
fn the_wrong_fixes_are_told_apart_from_the_real_ones() {
    let wrong: Vec<Strategy> = Strategy::ALL
        .iter()
        .copied()
        .filter(|s| s.is_wrong_fix())
        .collect();
    assert_eq!(wrong, WRONG);
    // `all` runs the bug, the nine real fixes, then the wrong fixes.
    assert_eq!(Strategy::ALL.len(), 13);
    assert_eq!(&Strategy::ALL[9..], WRONG);
    let help = racelab(&["run", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("wrong fixes (they look right and lose updates): multi, watch-other, del-unlock, local-mutex"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_and_watch_other_lose_like_naive_under_contention() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = common::seed_workload();
    for strategy in [Strategy::Multi, Strategy::WatchOther] {
        for _ in 0..5 {
            let result = run(&target, strategy, &workload).await;
            assert_eq!(result.tally.acknowledged, 20, "{strategy}");
            assert!(result.truth.lost > 0, "{strategy} must lose updates");
            assert_eq!(result.truth.lost + result.truth.applied, 20, "{strategy}");
            // Nothing aborts: watch-other WATCHes a key nobody writes.
            assert_eq!(result.tally.conflicts, 0, "{strategy}");
        }
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_unlock_loses_once_think_outlasts_the_ttl() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let mut workload = common::seed_workload();
    workload.think = Duration::from_millis(30);
    workload.tuning.lock_ttl = Duration::from_millis(10);
    for _ in 0..3 {
        let result = run(&target, Strategy::DelUnlock, &workload).await;
        assert_eq!(result.tally.acknowledged, 20);
        assert!(
            result.truth.lost > 0,
            "an expired lock must let a stale write through"
        );
        assert!(
            result
                .truth
                .lost_updates
                .iter()
                .any(|l| l.erased_by.is_some())
        );
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_unlock_and_local_mutex_hold_where_they_look_right() {
    let redis = TestRedis::start();
    let target = Arc::new(redis.target().await);
    // The lock's ttl (1 s by default) far above the think time: no lock expires.
    common::repeat(
        target.clone(),
        Strategy::DelUnlock,
        workload(20, 5, 2, Duration::from_millis(2)),
        5,
        1,
    )
    .await;
    // One process, heavy contention: 60 updaters on 5 segments, 3 rounds each, every update a
    // read-modify-write of the whole journey, 20 runs (four at a time, each its own mutex).
    common::repeat(
        target,
        Strategy::LocalMutex,
        workload(60, 5, 3, Duration::from_millis(1)),
        20,
        4,
    )
    .await;
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mutex_makes_waiters_wait_in_one_process() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(20, 20, 1, Duration::from_millis(5));
    let result = run(&target, Strategy::LocalMutex, &workload).await;
    assert_intact(&result, &workload);
    // One at a time: 20 updates of 5 ms think each take at least 100 ms in all.
    assert!(
        result.tally.last_at >= Duration::from_millis(100),
        "{:?}",
        result.tally.last_at
    );
}

/// `updaters` updaters on as many segments following `schedule`, no think time.
fn scheduled(updaters: u32, schedule: &str) -> racelab::Workload {
    let mut workload = workload(updaters, 20, 1, Duration::ZERO);
    workload.schedule = Some(Schedule::parse(schedule).unwrap());
    workload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_and_watch_other_lose_the_first_write_under_1_2_1_2_every_time() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let losing = scheduled(2, "1 2 1 2");
    for strategy in [Strategy::Multi, Strategy::WatchOther] {
        for _ in 0..50 {
            // #1 reads, #2 reads, #1's EXEC, #2's EXEC goes through with its stale copy.
            let result = run(&target, strategy, &losing).await;
            assert_eq!(losses(&result), vec![(1, Some(2))], "{strategy}");
            assert_eq!(result.tally.acknowledged, 2, "{strategy}");
            assert_eq!(result.tally.conflicts, 0, "{strategy}");
        }
    }
    // The same interleaving, WATCHing the journey: #2's EXEC aborts, nothing is lost.
    let result = run(&target, Strategy::Watch, &losing).await;
    assert_eq!(losses(&result), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_unlock_lets_two_holders_in_where_lock_does_not() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // #1 takes the lock and reads; its lock expires (t); #2 takes it; #1 writes and DELs #2's
    // lock; #3 takes it too; #2 and #3 both read before either writes: #2's update is lost.
    let mut workload = scheduled(3, "1 1 t 2 1 1 3 2 3 2 3");
    workload.tuning.lock_ttl = Duration::from_millis(100);
    for _ in 0..3 {
        let result = run(&target, Strategy::DelUnlock, &workload).await;
        assert_eq!(losses(&result), vec![(2, Some(3))]);
        assert_eq!(result.tally.acknowledged, 3);
    }
    // `lock`'s compare-and-delete leaves #2's lock alone: #3 waits, nothing is lost.
    let result = run(&target, Strategy::Lock, &workload).await;
    assert_eq!(losses(&result), vec![]);
    assert_eq!(result.truth.applied, 3);
    // Where `lock` loses (an expired lock, one stale holder), del-unlock loses too.
    let mut shared = scheduled(2, "1 1 t 2 2 1 2");
    shared.tuning.lock_ttl = Duration::from_millis(100);
    for strategy in [Strategy::Lock, Strategy::DelUnlock] {
        let result = run(&target, strategy, &shared).await;
        assert_eq!(losses(&result), vec![(1, Some(2))], "{strategy}");
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mutex_holds_under_every_schedule_in_one_process() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    for schedule in ["1 2 1 2", "1 1 2 2", "2 1 2 1 2 1", "1 2 2 1 1 2 2"] {
        let result = run(&target, Strategy::LocalMutex, &scheduled(2, schedule)).await;
        assert_eq!(losses(&result), vec![], "{schedule}");
        assert_eq!(result.truth.applied, 2, "{schedule}");
    }
    // The second updater's tries while the first holds the mutex are its busy steps.
    let result = run(&target, Strategy::LocalMutex, &scheduled(2, "1 2 1 2")).await;
    assert_eq!(result.tally.retries, 2);
}

#[test]
fn expect_auto_knows_where_each_wrong_fix_can_lose() {
    let mut shape = common::seed_workload().shape();
    let auto = |s: Strategy, shape: &racelab::RaceShape| Expected::resolve(Expect::Auto, s, shape);
    // Twenty updaters thinking 10 ms in one process.
    assert_eq!(auto(Strategy::Multi, &shape), Expected::Lost);
    assert_eq!(auto(Strategy::WatchOther, &shape), Expected::Lost);
    assert_eq!(auto(Strategy::DelUnlock, &shape), Expected::Intact);
    assert_eq!(auto(Strategy::LocalMutex, &shape), Expected::Intact);
    // Two processes: each runs its share one at a time, and the shares race.
    shape.processes = 2;
    assert_eq!(auto(Strategy::LocalMutex, &shape), Expected::Lost);
    shape.think = Duration::from_millis(2);
    assert_eq!(auto(Strategy::LocalMutex, &shape), Expected::Either);
    shape.think = Duration::from_millis(10);
    shape.updaters = 1;
    assert_eq!(auto(Strategy::LocalMutex, &shape), Expected::Intact);
    shape.updaters = 20;
    // The workload says how many processes: one per worker, never more than updaters.
    let mut two = common::seed_workload();
    two.processes = 2;
    assert_eq!(auto(Strategy::LocalMutex, &two.shape()), Expected::Lost);
    two.updaters = 1;
    assert_eq!(two.shape().processes, 1);
    // del-unlock loses where lock does: once the think time outlasts the ttl.
    shape.think = Duration::from_millis(30);
    shape.lock_ttl = Duration::from_millis(10);
    assert_eq!(auto(Strategy::DelUnlock, &shape), Expected::Lost);
    // A fast machine makes no race certain: either.
    shape.think = Duration::ZERO;
    assert_eq!(auto(Strategy::Multi, &shape), Expected::Either);
    assert_eq!(auto(Strategy::WatchOther, &shape), Expected::Either);
    // Under a schedule: either, but local-mutex in one process, which no schedule breaks.
    let losing = scheduled(2, "1 2 1 2").shape();
    for strategy in [Strategy::Multi, Strategy::WatchOther, Strategy::DelUnlock] {
        assert_eq!(auto(strategy, &losing), Expected::Either, "{strategy}");
    }
    assert_eq!(auto(Strategy::LocalMutex, &losing), Expected::Intact);
}

#[test]
fn run_all_expects_each_wrong_fix_honestly_and_marks_it() {
    let output = racelab(&["run", "-s", "all", "--seed", "42", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    common::assert_schema(&report);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 13);
    for run in runs {
        let name = run["strategy"].as_str().unwrap();
        let wrong = ["multi", "watch-other", "del-unlock", "local-mutex"].contains(&name);
        assert_eq!(run["wrong_fix"], wrong, "{name}");
        assert_eq!(run["ok"], true, "{name}: {run}");
    }
    let named = |name: &str| runs.iter().find(|r| r["strategy"] == name).unwrap();
    for name in ["multi", "watch-other"] {
        assert_eq!(named(name)["expected"], "lost", "{name}");
        assert!(named(name)["lost"].as_u64().unwrap() > 0, "{name}");
    }
    for name in ["del-unlock", "local-mutex"] {
        assert_eq!(named(name)["expected"], "intact", "{name}");
        assert_eq!(named(name)["lost"], 0, "{name}");
    }
    // The text report marks them too, and says why each is wrong.
    let text = racelab(&["run", "-s", "naive,multi", "--seed", "42"]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .to_owned()
    };
    assert!(row("multi").ends_with("· wrong fix"), "{text}");
    assert!(!row("naive").contains("wrong fix"), "{text}");
    assert!(
        text.contains("multi: EXEC is atomic, but the read is not part of it"),
        "{text}"
    );
}

#[test]
fn prove_finds_the_losing_interleavings_of_multi_and_watch_other() {
    let output = racelab(&[
        "prove",
        "-s",
        "multi,watch-other,del-unlock,local-mutex",
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    for r in report["results"].as_array().unwrap() {
        let name = r["strategy"].as_str().unwrap();
        assert_eq!(r["wrong_fix"], true, "{r}");
        match name {
            // Like naive: both reads before a write, 4 of the 6 interleavings.
            "multi" | "watch-other" => {
                assert_eq!(r["schedules"], 6, "{r}");
                assert_eq!(r["losing"], 4, "{r}");
                assert_eq!(r["shortest"], "1 2 1 2", "{r}");
                assert_eq!(r["expected"], "lost", "{r}");
            }
            // No time passes in prove (no lock expires) and every updater is in one process:
            // both hold here, as expected, and the text report says what shows them losing.
            _ => {
                assert_eq!(r["losing"], 0, "{r}");
                assert_eq!(r["expected"], "intact", "{r}");
            }
        }
    }
    let text = racelab(&["prove", "-s", "del-unlock,local-mutex"]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("del-unlock: a wrong fix no interleaving here makes lose (no time passes here, so no lock expires; --expiry lets it pass)")
            && text.contains("--schedule \"1 1 t 2 1 1 3 2 3 2 3\""),
        "{text}"
    );
    assert!(
        text.contains("local-mutex: a wrong fix no interleaving here makes lose (every updater runs in this one process); it loses with: racelab run -s local-mutex --workers 2"),
        "{text}"
    );
}

#[test]
fn prove_with_expiry_finds_del_unlocks_losing_interleavings() {
    // Time passes once (t, a 100 ms lock ttl) before any step: the lock expires mid-work.
    let output = racelab(&["prove", "-s", "del-unlock", "--expiry", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../assets/prove.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["expiry_lock_ttl_ms"], 100.0);
    for r in report["results"].as_array().unwrap() {
        assert_eq!(r["expected"], "lost", "{r}");
        assert!(r["losing"].as_u64().unwrap() > 0, "{r}");
        // The shortest losing schedule lets time pass, and replays as it is, losing again.
        let shortest = r["shortest"].as_str().unwrap().to_owned();
        assert!(shortest.split(' ').any(|t| t == "t"), "{r}");
        let segments = if r["layout"] == "same-segment" {
            "1"
        } else {
            "2"
        };
        let replay = racelab(&[
            "run",
            "-s",
            "del-unlock",
            "-n",
            "2",
            "--segments",
            segments,
            "--lock-ttl",
            "100ms",
            "--schedule",
            &shortest,
            "--expect",
            "lost",
        ]);
        assert_eq!(
            replay.status.code(),
            Some(0),
            "{shortest}: {}{}",
            String::from_utf8_lossy(&replay.stdout),
            String::from_utf8_lossy(&replay.stderr)
        );
    }
    // Time passing needs two updaters: with three the schedules are too many to wait out.
    let three = racelab(&["prove", "-n", "3", "--expiry"]);
    assert_eq!(three.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&three.stderr).contains("--expiry"));
}
