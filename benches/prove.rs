//! How fast `racelab prove` tries interleavings (README "Prove"): every interleaving of 2 and of
//! 3 updaters for every strategy, each on a private redis-server, timed over a few runs.
//! `cargo bench --bench prove`.

use std::process::Command;
use std::time::{Duration, Instant};

/// One `racelab prove -n <updaters>`: how long it took and how many schedules it tried.
fn prove(updaters: &str) -> (Duration, u64) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args(["prove", "-n", updaters, "--format", "json"])
        .env_remove("REDIS_URL")
        .output()
        .expect("run racelab prove");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("prove's JSON report");
    let schedules = report["results"]
        .as_array()
        .map(|results| results.iter().filter_map(|r| r["schedules"].as_u64()).sum())
        .unwrap_or(0);
    (took, schedules)
}

fn main() {
    for (updaters, runs) in [("2", 10), ("3", 3)] {
        let mut times: Vec<(Duration, u64)> = (0..runs).map(|_| prove(updaters)).collect();
        times.sort();
        let (median, schedules) = times[times.len() / 2];
        println!(
            "prove -s all -n {updaters}: {schedules} schedules, median {:.2} s over {runs} runs (private redis-server started included), {:.0} schedules/s",
            median.as_secs_f64(),
            schedules as f64 / median.as_secs_f64()
        );
    }
}
