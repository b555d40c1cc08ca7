//! The seed challenge's two tests, ported for every strategy, and the proof that the safe ones
//! hold under repetition and contention. Every test runs against its own real redis-server.

use crate::common;

use std::time::Duration;

use std::sync::Arc;

use crate::common::{SAFE, TestRedis, assert_intact, repeat, run, seed_workload, workload};
use racelab::JourneyService;
use racelab::{Journey, UPDATE_STATUSES};
use racelab::{Strategy, UpdateStatus};

/// With one updater per segment, `keys` holds too: its races are only within a segment.
fn safe_in_the_seed_scenario() -> impl Iterator<Item = Strategy> {
    SAFE.iter().copied().chain([Strategy::Keys])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_with_20_concurrent_updates_loses_updates_and_says_which() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = seed_workload();
    let result = run(&target, Strategy::Naive, &workload).await;

    // Every call "returned true", as the seed's test asserts first.
    assert_eq!(result.tally.acknowledged, 20);
    assert_eq!(result.tally.errors + result.tally.unknown, 0);
    assert!(result.truth.lost >= 1, "the seed's race must lose updates");
    assert_eq!(result.truth.lost + result.truth.applied, 20);
    assert_eq!(result.truth.lost_updates.len() as u64, result.truth.lost);
    for lost in &result.truth.lost_updates {
        let n: usize = lost.segment[4..].parse().unwrap();
        let expected = UPDATE_STATUSES[(n - 1) % 4];
        assert_eq!(
            lost.seed_message(),
            format!(
                "Segment {}: expected '{expected}', got 'Scheduled'",
                lost.segment
            )
        );
        assert_eq!(lost.updater as usize, n, "updater i works on SEG-00i");
    }
    // With 10 ms of think after reads made together, the history shows who erased nearly all.
    let attributed = result
        .truth
        .lost_updates
        .iter()
        .filter(|l| l.erased_by.is_some())
        .count();
    assert!(
        attributed * 2 >= result.truth.lost_updates.len(),
        "{:?}",
        result.truth.lost_updates
    );
    for lost in result
        .truth
        .lost_updates
        .iter()
        .filter(|l| l.erased_by.is_some())
    {
        assert_ne!(lost.erased_by, Some(lost.updater));
        assert!(lost.eraser_read_ms.unwrap() < lost.acknowledged_ms);
        assert!(lost.erased_at_ms.unwrap() >= lost.acknowledged_ms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_strategies_with_20_concurrent_updates_lose_none() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = seed_workload();
    for strategy in safe_in_the_seed_scenario() {
        let result = run(&target, strategy, &workload).await;
        assert_intact(&result, &workload);
        for (i, state) in result.states.iter().enumerate() {
            assert_eq!(
                state.status,
                UPDATE_STATUSES[i % 4],
                "{strategy}: SEG-{:03}",
                i + 1
            );
        }
    }
}

/// The seed's status for sequential update `i` (1-based).
fn sequential_status(i: usize) -> &'static str {
    if i.is_multiple_of(4) {
        "Cancelled"
    } else if i.is_multiple_of(3) {
        "Delayed"
    } else if i.is_multiple_of(2) {
        "Boarding"
    } else {
        "Departed"
    }
}

#[tokio::test]
async fn sequential_updates_are_all_applied_by_every_strategy() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let journey = Journey::seed_fixture().unwrap();
    for &strategy in Strategy::ALL {
        let mut service =
            JourneyService::new(&target, strategy, "racelab-test", "seq", Duration::ZERO)
                .await
                .unwrap();
        service.save_journey(&journey).await.unwrap();
        for i in 1..=20 {
            let outcome = service
                .update_segment_status("JRN-TEST-001", &format!("SEG-{i:03}"), sequential_status(i))
                .await
                .unwrap();
            assert_eq!(outcome, UpdateStatus::Applied, "{strategy}: SEG-{i:03}");
        }
        let stored = service.get_journey("JRN-TEST-001").await.unwrap().unwrap();
        for (i, segment) in stored.segments.iter().enumerate() {
            assert_eq!(
                segment.status,
                sequential_status(i + 1),
                "{strategy}: {}",
                segment.segment_id
            );
            assert_eq!(
                segment.update_count, 1,
                "{strategy}: {}",
                segment.segment_id
            );
        }
        // Everything else about the journey is as it was saved.
        assert_eq!(stored.passenger_name, journey.passenger_name, "{strategy}");
        assert_eq!(stored.total_price, journey.total_price, "{strategy}");
        assert_eq!(stored.metadata, journey.metadata, "{strategy}");
        service.delete_journey("JRN-TEST-001").await.unwrap();
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_service_refuses_empty_and_unknown_ids_like_the_seed() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    for &strategy in Strategy::ALL {
        let mut service =
            JourneyService::new(&target, strategy, "racelab-test", "ids", Duration::ZERO)
                .await
                .unwrap();
        service
            .save_journey(&Journey::seed_fixture().unwrap())
            .await
            .unwrap();
        assert!(
            service
                .update_segment_status("", "SEG-001", "Boarding")
                .await
                .is_err()
        );
        assert!(
            service
                .update_segment_status("JRN-TEST-001", " ", "Boarding")
                .await
                .is_err()
        );
        assert_eq!(
            service
                .update_segment_status("JRN-NOPE", "SEG-001", "Boarding")
                .await
                .unwrap(),
            UpdateStatus::JourneyNotFound,
            "{strategy}"
        );
        assert_eq!(
            service
                .update_segment_status("JRN-TEST-001", "SEG-999", "Boarding")
                .await
                .unwrap(),
            UpdateStatus::SegmentNotFound,
            "{strategy}"
        );
        assert!(service.get_journey("JRN-NOPE").await.unwrap().is_none());
        service.delete_journey("JRN-TEST-001").await.unwrap();
    }
}

/// 100 seed scenarios per strategy, ten at a time on one Redis: one lucky run proves nothing.
macro_rules! hold_100_seed_runs {
    ($($name:ident: $strategy:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let redis = TestRedis::start();
            let target = Arc::new(redis.target().await);
            repeat(target, $strategy, seed_workload(), 100, 10).await;
        }
    )*};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_loses_in_each_of_100_seed_runs_with_exact_counts() {
    let redis = TestRedis::start();
    let target = Arc::new(redis.target().await);
    for wave in 0..10 {
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..10 {
            let target = target.clone();
            let mut workload = seed_workload();
            workload.seed = wave * 10 + i;
            runs.spawn(async move { run(&target, Strategy::Naive, &workload).await });
        }
        while let Some(result) = runs.join_next().await {
            let result = result.unwrap();
            assert_eq!(result.tally.acknowledged, 20);
            assert!(result.truth.lost >= 1);
            assert_eq!(result.truth.lost + result.truth.applied, 20);
            let counted: u64 = result.states.iter().map(|s| s.update_count).sum();
            assert_eq!(counted, result.truth.applied);
        }
    }
}

hold_100_seed_runs! {
    hash_holds_100_seed_runs: Strategy::Hash,
    keys_holds_100_seed_runs: Strategy::Keys,
    watch_holds_100_seed_runs: Strategy::Watch,
    lua_holds_100_seed_runs: Strategy::Lua,
    lock_holds_100_seed_runs: Strategy::Lock,
    fenced_holds_100_seed_runs: Strategy::Fenced,
    cas_holds_100_seed_runs: Strategy::Cas,
    function_holds_100_seed_runs: Strategy::Function,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_holds_under_heavy_contention() {
    // 200 updaters on 5 segments: 40 updaters share each segment, 10 rounds each.
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(200, 5, 10, Duration::from_millis(1));
    let result = run(&target, Strategy::Hash, &workload).await;
    assert_intact(&result, &workload);
    for state in &result.states {
        assert_eq!(state.update_count, 400, "40 updaters × 10 rounds");
    }
}

/// Several updaters per segment, several rounds, 1 ms think, for every safe strategy. The
/// strategies that serialise the whole journey (watch, lock, fenced, cas) make this a queue of
/// 200 updates on one key, so it is sized to finish in seconds.
macro_rules! hold_under_contention {
    ($($name:ident: $strategy:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let redis = TestRedis::start();
            let target = redis.target().await;
            let workload = workload(40, 5, 5, Duration::from_millis(1));
            let result = run(&target, $strategy, &workload).await;
            assert_intact(&result, &workload);
            for state in &result.states {
                assert_eq!(state.update_count, 40, "8 updaters × 5 rounds per segment");
            }
        }
    )*};
}

hold_under_contention! {
    hash_holds_under_contention: Strategy::Hash,
    watch_holds_under_contention: Strategy::Watch,
    lua_holds_under_contention: Strategy::Lua,
    lock_holds_under_contention: Strategy::Lock,
    fenced_holds_under_contention: Strategy::Fenced,
    cas_holds_under_contention: Strategy::Cas,
    function_holds_under_contention: Strategy::Function,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_counts_stay_exact_under_contention() {
    // Several updaters per segment and several rounds: lost = acknowledged − applied must hold
    // per segment, and `applied` must be what the final state in Redis shows.
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(60, 5, 4, Duration::from_millis(2));
    let mut settings = common::settings();
    settings.keep = true;
    let result = common::run_with(&target, Strategy::Naive, &workload, &settings).await;
    assert_eq!(result.tally.acknowledged, 240);
    assert!(result.truth.lost > 0);
    assert_eq!(result.truth.lost + result.truth.applied, 240);
    assert_eq!(result.truth.lost_updates.len() as u64, result.truth.lost);

    // Read the kept journey ourselves: its counts are the applied updates.
    let key = format!("racelab-test:{}:{{JRN-TEST-001}}:journey", result.run_id);
    let mut conn = redis.conn().await;
    let doc: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let journey = Journey::from_json(&doc, "kept").unwrap();
    let counted: u64 = journey.segments.iter().map(|s| s.update_count).sum();
    assert_eq!(counted, result.truth.applied);
}
