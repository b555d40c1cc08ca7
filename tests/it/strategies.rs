//! What sets the strategies apart: where `keys` and `lock` lose updates and `fenced` does not,
//! that `watch` really retries, that scripts and functions survive being flushed mid-run, and that
//! the history file tells the same story as the report.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestRedis, assert_intact, run, workload};
use racelab::Journey;
use racelab::JourneyService;
use racelab::{Strategy, UpdateStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_loses_updates_when_updaters_share_a_segment() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // 40 updaters on 5 segments: 8 read-modify-write each segment's key at once.
    let workload = workload(40, 5, 2, Duration::from_millis(5));
    let result = run(&target, Strategy::Keys, &workload).await;
    assert_eq!(result.tally.acknowledged, 80);
    assert!(result.truth.lost > 0, "shared segments must race");
    assert_eq!(result.truth.lost + result.truth.applied, 80);
    // A segment write only erases its own segment's updates.
    for lost in result.truth.lost_updates.iter() {
        if let Some(by) = lost.erased_by {
            let segment_of = |updater: u32| (updater - 1) % 5;
            assert_eq!(segment_of(by), segment_of(lost.updater), "{lost:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_loses_updates_once_think_outlasts_the_ttl_and_fenced_does_not() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let mut workload = common::seed_workload();
    workload.think = Duration::from_millis(30);
    workload.tuning.lock_ttl = Duration::from_millis(10);

    let lock = run(&target, Strategy::Lock, &workload).await;
    assert_eq!(lock.tally.acknowledged, 20);
    assert!(
        lock.truth.lost > 0,
        "an expired lock must let a stale write through"
    );
    assert_eq!(lock.truth.lost + lock.truth.applied, 20);
    assert!(
        lock.truth
            .lost_updates
            .iter()
            .any(|l| l.erased_by.is_some())
    );

    let fenced = run(&target, Strategy::Fenced, &workload).await;
    assert_eq!(fenced.truth.lost, 0, "{:?}", fenced.truth.lost_updates);
    assert_eq!(fenced.truth.applied, fenced.tally.acknowledged);
    assert!(fenced.tally.acknowledged >= 1);
    // What the fence refused is reported as given up, never as applied.
    assert_eq!(fenced.tally.acknowledged + fenced.tally.give_ups, 20);
    assert_eq!(fenced.tally.unknown, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_auto_knows_where_each_strategy_can_lose() {
    use racelab::{Expect, Expected};
    let mut shape = common::seed_workload().shape();
    let auto = |s: Strategy, shape: &racelab::RaceShape| Expected::resolve(Expect::Auto, s, shape);
    assert_eq!(auto(Strategy::Naive, &shape), Expected::Lost);
    assert_eq!(auto(Strategy::Keys, &shape), Expected::Intact);
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Intact);
    shape.updaters = 40;
    assert_eq!(auto(Strategy::Keys, &shape), Expected::Lost);
    // At the ttl, a loss is possible but not forced: the holder's round trips and the
    // waiter's polling decide (`run -s lock -n 2 --think 10ms --lock-ttl 10ms` was intact in
    // four of five runs).
    shape.lock_ttl = Duration::from_millis(10);
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Either);
    shape.updaters = 2;
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Either);
    // Just under the ttl the work's round trips can still outlast it.
    shape.lock_ttl = Duration::from_millis(12);
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Either);
    shape.lock_ttl = Duration::from_millis(31);
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Intact);
    // Well past the ttl the next holder reads before the old holder writes.
    shape.think = Duration::from_millis(30);
    shape.lock_ttl = Duration::from_millis(10);
    assert_eq!(auto(Strategy::Lock, &shape), Expected::Lost);
    assert_eq!(auto(Strategy::Fenced, &shape), Expected::Intact);
    // A pause well under a round trip makes no race certain.
    shape.think = Duration::from_micros(100);
    assert_eq!(auto(Strategy::Naive, &shape), Expected::Either);
    shape.think = Duration::ZERO;
    assert_eq!(auto(Strategy::Naive, &shape), Expected::Either);
    shape.updaters = 1;
    assert_eq!(auto(Strategy::Naive, &shape), Expected::Intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_really_retries_under_contention() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(20, 5, 3, Duration::from_millis(2));
    let result = run(&target, Strategy::Watch, &workload).await;
    assert_intact(&result, &workload);
    assert!(
        result.tally.conflicts > 0,
        "20 updaters on one journey must conflict"
    );
    assert_eq!(result.tally.give_ups, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_really_retries_under_contention() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(20, 5, 3, Duration::from_millis(2));
    let result = run(&target, Strategy::Cas, &workload).await;
    assert_intact(&result, &workload);
    assert!(result.tally.conflicts > 0);
}

/// Flushes scripts or functions over and over while a run goes on.
async fn flush_during_run(strategy: Strategy, flush: &'static [&'static str]) {
    let redis = TestRedis::start();
    let target = Arc::new(redis.target().await);
    let workload = workload(20, 20, 10, Duration::from_millis(3));
    let run = {
        let (target, workload) = (target.clone(), workload.clone());
        tokio::spawn(async move { run(&target, strategy, &workload).await })
    };
    let mut conn = redis.conn().await;
    let mut flushes = 0;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _: () = redis::cmd(flush[0])
            .arg(flush[1])
            .query_async(&mut conn)
            .await
            .unwrap();
        flushes += 1;
    }
    let result = run.await.unwrap();
    assert!(flushes >= 3, "the flushes must land during the run");
    assert_intact(&result, &workload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_survives_script_flush_mid_run() {
    flush_during_run(Strategy::Lua, &["SCRIPT", "FLUSH"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_survives_function_flush_mid_run() {
    flush_during_run(Strategy::Function, &["FUNCTION", "FLUSH"]).await;
}

#[tokio::test]
async fn scripts_keep_every_other_field_of_the_journey_intact() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let mut journey = Journey::seed_fixture().unwrap();
    journey.total_price = 2210.75;
    journey.segments[3].price = 104.25;
    journey.metadata.insert(
        "nested".into(),
        serde_json::json!({"a": [1, 2.5, "x/y"], "b": null}),
    );
    for strategy in [Strategy::Lua, Strategy::Function] {
        let mut service =
            JourneyService::new(&target, strategy, "racelab-test", "fields", Duration::ZERO)
                .await
                .unwrap();
        service.save_journey(&journey).await.unwrap();
        let status = service
            .update_segment_status("JRN-TEST-001", "SEG-004", "Delayed")
            .await
            .unwrap();
        assert_eq!(status, UpdateStatus::Applied);
        let stored = service.get_journey("JRN-TEST-001").await.unwrap().unwrap();
        let mut expected = journey.clone();
        expected.segments[3].status = "Delayed".into();
        expected.segments[3].update_count = 1;
        assert_eq!(stored, expected, "{strategy}");
        service.delete_journey("JRN-TEST-001").await.unwrap();
    }
}

#[test]
fn journeys_that_cjson_would_change_are_refused_for_scripts() {
    let mut journey = Journey::seed_fixture().unwrap();
    assert!(journey.cjson_hazard().is_none());
    journey
        .metadata
        .insert("tags".into(), serde_json::json!([]));
    assert!(Strategy::Lua.check_journey(&journey).is_err());
    assert!(Strategy::Function.check_journey(&journey).is_err());
    assert!(Strategy::Naive.check_journey(&journey).is_ok());
    let mut journey = Journey::seed_fixture().unwrap();
    journey.total_price = 1234567.123456789;
    assert!(journey.cjson_hazard().is_some());
}

#[test]
fn history_file_rederives_the_reported_lost_counts() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let report = dir.path().join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args([
            "run",
            "-s",
            "naive,keys,hash",
            "-n",
            "30",
            "--segments",
            "10",
            "--rounds",
            "3",
        ])
        .args(["--think", "2ms", "--format", "json"])
        .arg("--history")
        .arg(&history)
        .arg("--output")
        .arg(&report)
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();

    // Per strategy and segment: acknowledged writes (`ok`) and the final count (`final`).
    let mut ok: HashMap<(String, String), u64> = HashMap::new();
    let mut fin: HashMap<(String, String), u64> = HashMap::new();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    for line in std::fs::read_to_string(&history).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["strategy"].as_str().unwrap().to_owned(),
            v["segment"].as_str().unwrap().to_owned(),
        );
        let kind = v["kind"].as_str().unwrap().to_owned();
        *kinds.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "ok" => *ok.entry(key).or_default() += 1,
            "final" => {
                fin.insert(key, v["count"].as_u64().unwrap());
            }
            _ => {}
        }
        assert!(v["t_us"].is_u64());
    }
    assert_eq!(kinds["invoke"], 3 * 90);
    assert_eq!(kinds["ok"], 3 * 90);
    assert_eq!(kinds["final"], 3 * 10);
    for run in report["runs"].as_array().unwrap() {
        let strategy = run["strategy"].as_str().unwrap();
        let lost: u64 = fin
            .iter()
            .filter(|((s, _), _)| s == strategy)
            .map(|(key, count)| ok.get(key).copied().unwrap_or(0).saturating_sub(*count))
            .sum();
        assert_eq!(lost, run["lost"].as_u64().unwrap(), "{strategy}");
    }
    assert!(
        report["runs"][0]["lost"].as_u64().unwrap() > 0,
        "naive loses"
    );
    assert!(
        report["runs"][1]["lost"].as_u64().unwrap() > 0,
        "keys loses on shared segments"
    );
    assert_eq!(report["runs"][2]["lost"], 0);
}
