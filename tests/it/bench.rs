//! `racelab bench` measures what it says: every cell ran, counted the commands each strategy
//! really sends, and stood beside redis-benchmark on the same server. (No timing assertions:
//! performance figures belong to the benchmark's output, not to tests.)

use std::process::Command;

use crate::common::TestRedis;

#[test]
fn bench_reports_every_cell_with_commands_per_update_and_yardsticks() {
    let output = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args([
            "bench",
            "-s",
            "naive,hash,lua,cas",
            "-n",
            "1,8",
            "--duration",
            "200ms",
        ])
        .args(["--format", "json"])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // Progress is for a terminal (README "Progress"); a pipe gets none.
    assert!(!stderr.contains("[8/8]"), "progress on a pipe: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 8);
    for cell in cells {
        assert!(cell["updates"].as_u64().unwrap() > 0, "{cell}");
        assert!(cell["updates_per_s"].as_f64().unwrap() > 0.0, "{cell}");
        assert!(cell["cpu_us_per_update"].as_f64().unwrap() > 0.0, "{cell}");
        if cell["strategy"] != "naive" {
            assert_eq!(cell["lost"], 0, "{cell}");
        }
        let p50 = cell["latency_ms"]["p50"].as_f64().unwrap();
        let p999 = cell["latency_ms"]["p999"].as_f64().unwrap();
        assert!(p50 <= p999, "{cell}");
    }
    // Commands per update, from INFO commandstats with setup taken off: GET + SET for naive,
    // HSET HINCRBY for hash, EVALSHA + the script's GET, SET and the HSET that records the write
    // (README "Safety") for lua.
    let commands = |strategy: &str| {
        cells
            .iter()
            .find(|c| c["strategy"] == strategy && c["updaters"] == 1)
            .and_then(|c| c["commands_per_update"].as_f64())
            .unwrap()
    };
    for (strategy, expected) in [("naive", 2.0), ("hash", 2.0), ("lua", 4.0)] {
        let measured = commands(strategy);
        assert!(
            (measured - expected).abs() < 0.05,
            "{strategy}: {measured} commands per update"
        );
    }
    // Uncontended cas: MGET, then EVALSHA with its GET, SET, HSET and INCR.
    assert!(
        (commands("cas") - 6.0).abs() < 0.05,
        "cas: {}",
        commands("cas")
    );
    // redis-benchmark is installed where the tests run (.ci/run installs redis-tools).
    assert!(
        report["yardstick"]["hset_c50"].as_f64().unwrap() > 0.0,
        "{}",
        report["yardstick"]
    );
    assert!(cells[0]["ratio_hset_c50"].as_f64().is_some());
}

#[tokio::test]
async fn bench_on_a_named_redis_leaves_no_keys_behind() {
    let redis = TestRedis::start();
    let output = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args([
            "bench",
            "-s",
            "hash,watch",
            "-n",
            "4",
            "--duration",
            "100ms",
        ])
        .args(["--redis-url", &redis.url()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("HSET -c 50:"), "{text}");
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[test]
fn bench_rejects_a_bad_grid() {
    let output = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args(["bench", "-n", "0,5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--updaters"));
}

/// `--backoff` (README "Performance"): the bench measures the same cells with and without it,
/// and the retrying fixes stay intact either way (no timed assertion: which is faster is the
/// bench's to show, not a test's to require).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_compares_backoff_policies_and_the_fixes_hold_under_both() {
    let redis = crate::common::TestRedis::start();
    let url = redis.url();
    let bench = crate::common::racelab(&[
        "bench",
        "--redis-url",
        &url,
        "-s",
        "watch,cas",
        "-n",
        "20",
        "--duration",
        "300ms",
        "--backoff",
        "none,exp",
        "--no-redis-benchmark",
        "--format",
        "json",
    ]);
    assert_eq!(
        bench.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    let cells = report["cells"].as_array().unwrap();
    let policies: Vec<(&str, &str)> = cells
        .iter()
        .map(|c| {
            (
                c["strategy"].as_str().unwrap(),
                c["backoff"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        policies,
        [
            ("watch", "none"),
            ("watch", "exp"),
            ("cas", "none"),
            ("cas", "exp")
        ]
    );
    for cell in cells {
        assert_eq!(cell["lost"], 0, "{cell}");
        assert!(
            cell["commands_per_update"].as_f64().unwrap() > 0.0,
            "{cell}"
        );
        // Peak memory per cell, from the kernel (this runs on Linux).
        assert!(cell["peak_rss_mib"].as_f64().unwrap() > 0.0, "{cell}");
    }
    let run = crate::common::racelab(&[
        "run",
        "--redis-url",
        &url,
        "-s",
        "watch,cas,lock,fenced",
        "-n",
        "30",
        "--backoff",
        "none",
        "--think",
        "1ms",
        "--expect",
        "intact",
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}
