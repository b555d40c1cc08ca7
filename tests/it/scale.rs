//! Lean at any scale: an updater costs little memory however many there are, and the counts,
//! the attribution and the order of reads and writes stay exact at high updater counts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use racelab::{EventKind, Strategy};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::common::{TestRedis, assert_intact, losses, settings, workload};

/// 5,000 naive updaters on the seed journey: more than the cap on requests in flight lets go at
/// once, so most wait in line, and the result must be exactly what the race makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_at_5000_updaters_counts_and_attributes_exactly() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(5000, 20, 1, Duration::from_millis(10));
    let (tx, mut rx) = mpsc::channel::<racelab::Event>(1024);
    let events = tokio::spawn(async move {
        let mut acked = Vec::new();
        while let Some(event) = rx.recv().await {
            if let EventKind::Acknowledged { segment, seen, .. } = event.kind {
                acked.push((event.updater + 1, segment, seen));
            }
        }
        acked
    });
    let result = racelab::run(
        &target,
        Strategy::Naive,
        &workload,
        &settings(),
        Some(tx),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let acked = events.await.unwrap();
    let lost = losses(&result);
    assert_eq!(result.tally.acknowledged, 5000);
    assert_eq!((result.tally.unknown, result.tally.errors), (0, 0));
    assert_eq!(acked.len(), 5000);

    // Every updater read before any of them wrote: each read found its segment as seeded, so
    // every write put back the seeded journey but for its own segment, and only the last stands.
    for (updater, _, seen) in &acked {
        let seen = seen.unwrap_or_else(|| panic!("#{updater} wrote without a read"));
        assert_eq!((seen.status, seen.count), ("Scheduled", 0), "#{updater}");
    }
    assert_eq!(result.truth.applied, 1);
    assert_eq!(result.truth.lost, 4999);
    assert_eq!(lost.len(), 4999);

    // Per segment: lost = acknowledged − applied, exactly.
    let mut acked_on: HashMap<u32, u64> = HashMap::new();
    for (_, segment, _) in &acked {
        *acked_on.entry(*segment).or_default() += 1;
    }
    let mut lost_on: HashMap<&str, u64> = HashMap::new();
    for update in &result.truth.lost_updates {
        *lost_on.entry(update.segment.as_str()).or_default() += 1;
    }
    for (i, state) in result.states.iter().enumerate() {
        let id = &workload.journey.segments[i].segment_id;
        let acknowledged = acked_on.get(&(i as u32)).copied().unwrap_or(0);
        assert_eq!(
            lost_on.get(id.as_str()).copied().unwrap_or(0),
            acknowledged - state.update_count,
            "{id}"
        );
    }

    // Every eraser is a real updater whose acknowledged write came after the lost one, based on
    // a read from before it.
    let writers: HashSet<u32> = acked.iter().map(|(updater, _, _)| *updater).collect();
    // (The eraser is looked for among the writes acknowledged after the lost one, and with
    // every read first any of them erased it: only the last acknowledged can have none.)
    let unattributed = result
        .truth
        .lost_updates
        .iter()
        .filter(|update| update.erased_by.is_none())
        .count();
    assert!(
        unattributed <= 1,
        "{unattributed} lost updates with no eraser"
    );
    for update in &result.truth.lost_updates {
        let Some(eraser) = update.erased_by else {
            continue;
        };
        assert!(writers.contains(&eraser), "#{eraser}");
        assert_ne!(eraser, update.updater);
        let (Some(erased_at), Some(eraser_read)) = (update.erased_at_ms, update.eraser_read_ms)
        else {
            panic!("#{}: the eraser's write and read are known", update.updater);
        };
        assert!(erased_at >= update.acknowledged_ms, "{update:?}");
        assert!(eraser_read <= update.acknowledged_ms, "{update:?}");
    }
}

/// A fix holds at 20,000 updaters on 1,000 segments, two rounds each: every count exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_at_20000_updaters_applies_every_update() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(20_000, 1000, 2, Duration::ZERO);
    let result = crate::common::run(&target, Strategy::Hash, &workload).await;
    assert_intact(&result, &workload);
}

/// `local-mutex` takes its mutex before its first request, so updaters wait for one another
/// before they ask Redis anything; with more of them than the cap lets start at once, the run
/// must still end, and lose nothing in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mutex_beyond_the_cap_ends_and_loses_nothing() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = workload(2500, 20, 1, Duration::ZERO);
    let result = crate::common::run(&target, Strategy::LocalMutex, &workload).await;
    assert_intact(&result, &workload);
}

/// The peak resident memory of one `racelab run` with `args` against `redis`, in bytes: the
/// kernel's own account of the finished process (`ru_maxrss`), no timing involved. Through a
/// small Python parent: a process started straight from this test binary would carry the test
/// binary's own peak (the kernel keeps the high-water mark across exec).
fn peak_rss(redis: &TestRedis, args: &[&str]) -> u64 {
    const MEASURE: &str = "import resource, subprocess, sys\n\
subprocess.run(sys.argv[1:], capture_output=True, check=True)\n\
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let url = redis.url();
    let output = std::process::Command::new("python3")
        .args(["-c", MEASURE, env!("CARGO_BIN_EXE_racelab")])
        .args(["run", "--redis-url", &url, "--seed", "1"])
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER")
        .output()
        .expect("python3 runs racelab");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "racelab {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Linux counts ru_maxrss in KiB.
    let kib: u64 = stdout.trim().parse().expect("a number of KiB");
    kib * 1024
}

/// Memory per updater stays small: a waiting updater holds no request and no parsed journey.
/// The ceilings are generous (several times what this machine measures) and still far below
/// what an updater cost when each one held a task, a request and a parsed copy from the start.
#[test]
fn memory_per_updater_stays_under_a_ceiling() {
    const MIB: u64 = 1 << 20;
    let redis = TestRedis::start();
    let base = peak_rss(&redis, &["-s", "naive", "-n", "20", "--think", "10ms"]);
    // naive: each updater holds its copy of the journey through its think time; measured at
    // about 2.3 KiB an updater, 10 KiB before.
    let naive = peak_rss(&redis, &["-s", "naive", "-n", "20000", "--think", "10ms"]);
    let per_updater = naive.saturating_sub(base) / 20_000;
    assert!(
        per_updater < 6 * 1024,
        "naive: {per_updater} bytes an updater (peak {} MiB, base {} MiB)",
        naive / MIB,
        base / MIB
    );
    // hash: nothing to hold while waiting, so 100,000 updaters cost little more than 20.
    let hash = peak_rss(
        &redis,
        &[
            "-s",
            "hash",
            "-n",
            "100000",
            "--segments",
            "1000",
            "--think",
            "0ms",
        ],
    );
    assert!(
        hash < base + 64 * MIB,
        "hash at 100,000 updaters: peak {} MiB (base {} MiB)",
        hash / MIB,
        base / MIB
    );
}
