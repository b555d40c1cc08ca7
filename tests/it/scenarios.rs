//! Write skew (README "Scenarios"): an invariant that spans segments, at most one segment
//! Boarding, checked by every updater before it writes. The strategies that make each segment's
//! update atomic on its own (`hash`, `keys`) lose no update and still break it; the ones that
//! serialize the whole journey keep it. Every run here is the real binary on a real redis-server.

use crate::common::{TestRedis, assert_schema, json_report, racelab};

fn run_json(redis: &TestRedis, args: &[&str]) -> serde_json::Value {
    let url = redis.url();
    let mut all = vec![
        "run",
        "--redis-url",
        url.as_str(),
        "--scenario",
        "write-skew",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let report = json_report(&all);
    assert_schema(&report);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_segment_fixes_lose_no_update_and_still_break_the_invariant_every_time() {
    let redis = TestRedis::start();
    for seed in 0..5 {
        let seed = seed.to_string();
        let report = run_json(&redis, &["-s", "hash,keys", "--seed", &seed]);
        for run in report["runs"].as_array().unwrap() {
            assert_eq!(run["scenario"], "write-skew", "{run}");
            assert_eq!(run["lost"], 0, "{run}");
            let invariant = &run["invariant"];
            assert_eq!(invariant["holds"], false, "{run}");
            assert_eq!(invariant["boarding"].as_array().unwrap().len(), 20, "{run}");
            // Who broke it, and the reads their writes were based on.
            let broken_by = invariant["broken_by"].as_array().unwrap();
            assert_eq!(broken_by.len(), 20, "{run}");
            assert!(broken_by.iter().all(|b| b["read_ms"].is_number()), "{run}");
            let explanation = invariant["explanation"].as_str().unwrap();
            assert!(
                explanation.starts_with("write skew (G2-item): "),
                "{explanation}"
            );
            assert_eq!(run["expected"], "lost", "auto expects the break: {run}");
            assert_eq!(run["ok"], true, "{run}");
        }
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixes_that_serialize_the_journey_keep_the_invariant_every_time() {
    let redis = TestRedis::start();
    for seed in 0..5 {
        let seed = seed.to_string();
        let report = run_json(
            &redis,
            &[
                "-s",
                "watch,lua,function,lock,fenced,cas",
                "--seed",
                &seed,
                "--expect",
                "intact",
            ],
        );
        for run in report["runs"].as_array().unwrap() {
            let invariant = &run["invariant"];
            assert_eq!(invariant["holds"], true, "{run}");
            assert_eq!(invariant["boarding"].as_array().unwrap().len(), 1, "{run}");
            // One boarded; every other update was declined by the invariant, not failed.
            assert_eq!(run["acknowledged"], 1, "{run}");
            assert_eq!(run["declined"], 19, "{run}");
            assert_eq!(run["errors"], 0, "{run}");
            assert!(run["inconclusive"].is_null(), "{run}");
        }
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[test]
fn the_text_report_names_the_anomaly() {
    let redis = TestRedis::start();
    let url = redis.url();
    let output = racelab(&[
        "run",
        "--redis-url",
        &url,
        "--scenario",
        "write-skew",
        "-s",
        "hash,watch",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("ok (broken, expected broken)"), "{text}");
    assert!(text.contains("ok (holds, expected holds)"), "{text}");
    assert!(text.contains("hash: the invariant (at most one segment of a journey is Boarding) broke: write skew (G2-item)"), "{text}");
    assert!(text.contains("19 updates declined"), "{text}");
}

#[test]
fn prove_finds_write_skews_shortest_schedule_for_the_per_segment_fixes_only() {
    let redis = TestRedis::start();
    let url = redis.url();
    let output = racelab(&[
        "prove",
        "--redis-url",
        &url,
        "--scenario",
        "write-skew",
        "-s",
        "hash,keys,watch,lua,naive",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["scenario"], "write-skew");
    for result in report["results"].as_array().unwrap() {
        let breaks = matches!(result["strategy"].as_str(), Some("hash" | "keys"))
            && result["layout"] == "different-segments";
        assert_eq!(result["losing"].as_u64().unwrap() > 0, breaks, "{result}");
        if breaks {
            // Both read before either writes.
            assert_eq!(result["shortest"], "1 2 1 2", "{result}");
        }
        assert_eq!(result["ok"], true, "{result}");
    }
    // The shortest schedule, replayed by run, breaks it.
    let replay = racelab(&[
        "run",
        "--redis-url",
        &url,
        "-s",
        "hash",
        "-n",
        "2",
        "--scenario",
        "write-skew",
        "--schedule",
        "1 2 1 2",
        "--expect",
        "lost",
    ]);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
}

/// Every anomaly by its name (README "Scenarios"): a lost update (P4), the lock's two holders,
/// write skew (G2-item), each with its one-line explanation.
#[test]
fn each_anomaly_is_named_with_its_explanation() {
    let redis = TestRedis::start();
    let url = redis.url();
    let text = |args: &[&str]| {
        let mut all = vec!["run", "--redis-url", url.as_str()];
        all.extend_from_slice(args);
        let output = racelab(&all);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let naive = text(&["-s", "naive", "-n", "2", "--schedule", "1 2 1 2"]);
    assert!(
        naive.contains("lost update (P4): #1 and #2 both read SEG-001 before #1's write landed"),
        "{naive}"
    );
    assert!(naive.contains("#2's write erased #1's"), "{naive}");
    let lock = text(&[
        "-s",
        "lock",
        "-n",
        "2",
        "--lock-ttl",
        "100ms",
        "--schedule",
        "1 1 t 2 2 1 2",
    ]);
    assert!(
        lock.contains("two lock holders at once, so a lost update (P4)"),
        "{lock}"
    );
    let skew = text(&[
        "-s",
        "keys",
        "-n",
        "2",
        "--scenario",
        "write-skew",
        "--schedule",
        "1 2 1 2",
    ]);
    assert!(
        skew.contains("write skew (G2-item): #1 and #2 each read"),
        "{skew}"
    );
}
