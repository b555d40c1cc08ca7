//! racelab used the way a careless or hostile user would: odd journeys, Redis refusing or losing
//! what racelab wrote, closed pipes and full disks, signals, junk in the environment. A verdict CI
//! trusts must never fail a fix that works, pass a run that tested nothing, or panic.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TestRedis;

fn racelab_cmd(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_racelab"));
    command
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER")
        .env("NO_COLOR", "1");
    command
}

fn racelab(args: &[&str]) -> Output {
    racelab_cmd(args).output().expect("run racelab")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No panic, no backtrace, no Rust names in what a user reads.
fn assert_no_panic(output: &Output) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    for word in ["panicked", "RUST_BACKTRACE", "NotFound", "NotApplied"] {
        assert!(!all.contains(word), "{word} in: {all}");
    }
    assert_ne!(output.status.code(), Some(101), "{all}");
}

fn journey_file(dir: &tempfile::TempDir, json: &str) -> String {
    let path = dir.path().join("journey.json");
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_owned()
}

fn json_report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&output.stdout), text(&output.stderr)))
}

#[test]
fn generated_segment_ids_never_clash_with_the_journeys_own() {
    let dir = tempfile::tempdir().unwrap();
    for (journey, segments, updaters) in [
        (
            r#"{"Id":"J-GAP","Segments":[{"SegmentId":"SEG-001"},{"SegmentId":"SEG-002"},{"SegmentId":"SEG-005"}]}"#,
            "5",
            "5",
        ),
        (
            r#"{"Id":"J-X","Segments":[{"SegmentId":"SEG-003"},{"SegmentId":"X"}]}"#,
            "3",
            "3",
        ),
    ] {
        let path = journey_file(&dir, journey);
        let output = racelab(&[
            "run",
            "-s",
            "all",
            "--journey",
            &path,
            "--segments",
            segments,
            "-n",
            updaters,
            "--format",
            "json",
        ]);
        assert_no_panic(&output);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report = json_report(&output);
        for run in report["runs"].as_array().unwrap() {
            assert_eq!(run["ok"], true, "{run}");
            // Every loss counted is listed.
            assert_eq!(
                run["lost"].as_u64().unwrap(),
                run["lost_updates"].as_array().unwrap().len() as u64,
                "{run}"
            );
        }
    }
}

#[test]
fn segment_ids_shaped_like_racelabs_own_fields_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = journey_file(
        &dir,
        r#"{"Id":"J-FIELDS","Segments":[{"SegmentId":"A"},{"SegmentId":"A:count"},{"SegmentId":"count:A"},{"SegmentId":"status:A"}]}"#,
    );
    let output = racelab(&[
        "run",
        "-s",
        "all",
        "--journey",
        &path,
        "-n",
        "8",
        "--format",
        "json",
    ]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_report(&output);
    for run in report["runs"].as_array().unwrap() {
        if run["strategy"] == "hash" {
            assert_eq!(run["applied"], 8, "{run}");
            assert_eq!(run["errors"], 0, "{run}");
        }
        assert_eq!(run["ok"], true, "{run}");
    }
}

#[test]
fn a_run_where_one_update_gets_through_is_inconclusive_not_ok() {
    // Under contention, WATCH without retries lets one update through and gives up the rest:
    // nothing was tested, so there is no verdict to trust.
    let output = racelab(&["run", "-s", "watch", "--max-retries", "0"]);
    assert_no_panic(&output);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("inconclusive: watch"), "{err}");
    assert!(err.contains("too few"), "{err}");
    assert!(text(&output.stdout).contains("INCONCLUSIVE"));
}

/// The run's journey key, once a run has seeded it.
async fn wait_for_journey(redis: &TestRedis) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(key) = redis
            .all_keys()
            .await
            .into_iter()
            .find(|k| k.ends_with(":journey"))
        {
            return key;
        }
        assert!(
            Instant::now() < deadline,
            "the run never seeded its journey"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_redis_refuses_every_write_is_inconclusive() {
    let redis = TestRedis::start();
    let url = redis.url();
    let run = std::thread::spawn(move || {
        racelab(&[
            "run",
            "-s",
            "naive",
            "--redis-url",
            &url,
            "--think",
            "400ms",
        ])
    });
    wait_for_journey(&redis).await;
    // Every updater has read; now no write may land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = redis.conn().await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let output = run.join().unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_no_panic(&output);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("inconclusive: naive: no update was acknowledged"),
        "{err}"
    );
    assert!(err.contains("20 certainly not made"), "{err}");
    assert!(err.contains("OOM"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_that_vanishes_mid_run_stops_lock_like_every_strategy() {
    let redis = TestRedis::start();
    let url = redis.url();
    let run = std::thread::spawn(move || {
        racelab(&[
            "run",
            "-s",
            "lock",
            "-n",
            "5",
            "--redis-url",
            &url,
            "--think",
            "300ms",
            "--lock-ttl",
            "10s",
        ])
    });
    let journey = wait_for_journey(&redis).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // What a FLUSHDB does to the run: the journey and its lock are gone.
    let lock = journey.replace(":journey", ":lock");
    let mut conn = redis.conn().await;
    let _: i64 = redis::cmd("DEL")
        .arg(&journey)
        .arg(&lock)
        .query_async(&mut conn)
        .await
        .unwrap();
    let output = run.join().unwrap();
    assert_no_panic(&output);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("vanished during the run"), "{err}");
}

#[allow(dead_code)]
fn piped(args: &[&str]) -> Command {
    let mut command = racelab_cmd(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}
