//! Every strategy on a real Redis Cluster: three `redis-server --cluster-enabled yes` primaries
//! formed by `redis-cli --cluster create`, started per test and killed on drop. The seed's race
//! must still lose on naive and every fix must still hold, with scripts, functions and WATCH
//! routed to the primary that owns the journey's slot.

use crate::common;

use std::process::Command;
use std::time::Duration;

use crate::common::{SAFE, TestCluster, assert_intact, racelab, run, seed_workload, workload};
use racelab::Strategy;

/// The slot Redis Cluster gives `key` (CRC16/XMODEM of its hash tag, mod 16384), computed here
/// independently of racelab and of the server.
fn key_slot(key: &str) -> u16 {
    let tag = match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if close > open + 1 => &key[open + 1..close],
        _ => key,
    };
    let mut crc: u16 = 0;
    for &byte in tag.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// `host:port` of the primary that owns `slot`, as the node behind `conn` says.
async fn owner_of(conn: &mut redis::aio::MultiplexedConnection, slot: u16) -> String {
    let ranges: Vec<(u16, u16, (String, u16))> = {
        let raw: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(conn)
            .await
            .unwrap();
        raw.into_iter()
            .map(|r| {
                let start: u16 = redis::from_redis_value_ref(&r[0]).unwrap();
                let end: u16 = redis::from_redis_value_ref(&r[1]).unwrap();
                let node: Vec<redis::Value> = redis::from_redis_value_ref(&r[2]).unwrap();
                let host: String = redis::from_redis_value_ref(&node[0]).unwrap();
                let port: u16 = redis::from_redis_value_ref(&node[1]).unwrap();
                (start, end, (host, port))
            })
            .collect()
    };
    let (_, _, (host, port)) = ranges
        .into_iter()
        .find(|(start, end, _)| (*start..=*end).contains(&slot))
        .expect("every slot is served");
    format!("{host}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_naive_loses_the_seed_scenario_and_every_fix_holds() {
    let cluster = TestCluster::start();
    let target = cluster.target().await;
    assert!(target.is_cluster());
    let workload = seed_workload();

    let naive = run(&target, Strategy::Naive, &workload).await;
    assert_eq!(naive.tally.acknowledged, 20);
    assert_eq!(naive.tally.errors + naive.tally.unknown, 0);
    assert!(
        naive.truth.lost >= 1,
        "the seed's race must lose on a cluster"
    );
    assert_eq!(naive.truth.lost + naive.truth.applied, 20);

    // With one updater per segment, `keys` holds too.
    for strategy in SAFE.iter().copied().chain([Strategy::Keys]) {
        let result = run(&target, strategy, &workload).await;
        assert!(result.is_complete(), "{strategy}: {:?}", result.stopped);
        assert_intact(&result, &workload);
    }
    assert_eq!(
        cluster.all_keys().await,
        Vec::<String>::new(),
        "every run deletes its keys on every node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_strategies_hold_under_contention_on_a_cluster() {
    let cluster = TestCluster::start();
    let target = cluster.target().await;
    // Six updaters per segment, three rounds each: every update of a segment races five others.
    let workload = workload(24, 4, 3, Duration::from_millis(1));
    for &strategy in SAFE {
        let result = run(&target, strategy, &workload).await;
        assert!(result.is_complete(), "{strategy}: {:?}", result.stopped);
        assert_intact(&result, &workload);
        if matches!(
            strategy,
            Strategy::Watch | Strategy::Cas | Strategy::Lock | Strategy::Fenced
        ) {
            assert!(
                result.tally.retries > 0,
                "{strategy}: contention must have made someone retry"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_library_is_loaded_on_every_primary() {
    let cluster = TestCluster::start();
    let target = cluster.target().await;
    let result = run(&target, Strategy::Function, &seed_workload()).await;
    assert_intact(&result, &seed_workload());
    for (i, mut conn) in cluster.node_conns().await.into_iter().enumerate() {
        let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("racelab_v2")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(libraries.len(), 1, "node {i} lacks the racelab_v2 library");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_a_private_cluster_reports_the_journeys_slot_and_node_and_exits_0() {
    let output = racelab(&[
        "run",
        "-s",
        "all",
        "--cluster",
        "private",
        "--format",
        "json",
        "--seed",
        "42",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    common::assert_schema(&report);
    assert_eq!(report["ok"], true);
    assert_eq!(report["redis"]["private"], true);
    let place = &report["redis"]["cluster"];
    assert_eq!(place["primaries"], 3);
    assert_eq!(
        place["slot"].as_u64(),
        Some(u64::from(key_slot("{JRN-TEST-001}")))
    );
    let node = place["node"].as_str().unwrap();
    assert!(node.starts_with("127.0.0.1:"), "{node}");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), Strategy::ALL.len());
    for run in runs {
        let strategy = run["strategy"].as_str().unwrap();
        assert_eq!(run["acknowledged"], 20, "{strategy}");
        // The seed's bug and the wrong fixes that lose like it (README "Fixes that look
        // right"); del-unlock's lock outlives the think time here, local-mutex runs in one process.
        if ["naive", "multi", "watch-other"].contains(&strategy) {
            assert!(run["lost"].as_u64().unwrap() >= 1, "{strategy} must lose");
        } else {
            assert_eq!(run["lost"], 0, "{strategy}");
            assert_eq!(run["applied"], 20, "{strategy}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_named_by_one_seed_node_is_discovered_and_left_without_keys() {
    let cluster = TestCluster::start();
    // One bare host:port: the client finds the other primaries from it.
    let seed = cluster.urls()[0]
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let output = racelab(&[
        "run",
        "-s",
        "naive,watch,lua,function",
        "--cluster",
        &seed,
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    common::assert_schema(&report);
    assert_eq!(report["redis"]["private"], false);
    let slot = key_slot("{JRN-TEST-001}");
    assert_eq!(
        report["redis"]["cluster"]["slot"].as_u64(),
        Some(u64::from(slot))
    );
    let mut conn = cluster.node_conns().await.remove(0);
    assert_eq!(
        report["redis"]["cluster"]["node"].as_str().unwrap(),
        owner_of(&mut conn, slot).await,
        "the report names the primary that owns the journey's slot"
    );
    assert_eq!(cluster.all_keys().await, Vec::<String>::new());
}

#[test]
fn a_single_server_report_says_it_was_not_a_cluster() {
    let output = racelab(&["run", "-s", "hash", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["redis"]["cluster"].is_null(), "{report:#}");
}

#[test]
fn cluster_and_redis_url_cannot_be_given_together() {
    let output = racelab(&[
        "run",
        "--cluster",
        "private",
        "--redis-url",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--redis-url and --cluster both name a Redis"),
        "{stderr}"
    );
}

#[test]
fn cluster_on_the_command_line_wins_over_an_exported_redis_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args([
            "run",
            "-s",
            "hash",
            "--cluster",
            "private",
            "--format",
            "json",
        ])
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env_remove("REDIS_CLUSTER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["redis"]["cluster"]["primaries"], 3);
}

#[test]
fn an_unreachable_cluster_exits_2_with_one_sentence() {
    let output = racelab(&["run", "--cluster", "127.0.0.1:1", "--timeout", "500ms"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the Redis Cluster at redis://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `CLUSTER MYID` of each node, in the order of `conns`.
async fn node_ids(conns: &mut [redis::aio::MultiplexedConnection]) -> Vec<String> {
    let mut ids = Vec::new();
    for conn in conns.iter_mut() {
        ids.push(
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(conn)
                .await
                .unwrap(),
        );
    }
    ids
}

/// Moves `slot` from the node at `from` to the node at `to` the way `redis-cli --cluster
/// reshard` does: IMPORTING/MIGRATING, MIGRATE its keys, then give the slot to `to` everywhere.
async fn migrate_slot(cluster: &TestCluster, slot: u16, from: usize, to: usize) {
    let mut conns = cluster.node_conns().await;
    let ids = node_ids(&mut conns).await;
    let to_port = cluster.cluster.nodes()[to].port();
    let () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&ids[from])
        .query_async(&mut conns[to])
        .await
        .unwrap();
    let () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&ids[to])
        .query_async(&mut conns[from])
        .await
        .unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1000)
            .query_async(&mut conns[from])
            .await
            .unwrap();
        if keys.is_empty() {
            break;
        }
        // All keys in one MIGRATE: the journey's keys move together, so no script ever sees
        // half of them on each node.
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to_port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut conns[from])
            .await
            .unwrap();
    }
    for conn in conns.iter_mut() {
        let () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&ids[to])
            .query_async(conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_mid_run_is_followed_and_nothing_is_lost() {
    use racelab::EventKind;
    use tokio_util::sync::CancellationToken;

    let cluster = TestCluster::start();
    let target = cluster.target().await;
    let slot = key_slot("{JRN-TEST-001}");
    let ports: Vec<u16> = cluster.cluster.nodes().iter().map(|n| n.port()).collect();
    let workload = workload(4, 4, 60, Duration::from_millis(1));
    for strategy in [
        Strategy::Watch,
        Strategy::Lua,
        Strategy::Function,
        Strategy::Cas,
        Strategy::Hash,
    ] {
        let mut conn = cluster.node_conns().await.remove(0);
        let owner = owner_of(&mut conn, slot).await;
        let from = ports
            .iter()
            .position(|p| owner.ends_with(&format!(":{p}")))
            .unwrap();
        let to = (from + 1) % ports.len();

        // Move the slot once the run is under way: after its 20th acknowledged update.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<racelab::Event>(4096);
        let mover = {
            let cluster = &cluster;
            async move {
                let mut acknowledged = 0;
                let mut moved = false;
                let mut remaining_after_move = 0;
                while let Some(event) = rx.recv().await {
                    if matches!(event.kind, EventKind::Acknowledged { .. }) {
                        acknowledged += 1;
                        if moved {
                            remaining_after_move += 1;
                        }
                    }
                    if acknowledged == 20 && !moved {
                        migrate_slot(cluster, slot, from, to).await;
                        moved = true;
                    }
                }
                remaining_after_move
            }
        };
        let settings = common::settings();
        let cancel = CancellationToken::new();
        let (result, after_move) = tokio::join!(
            racelab::run(&target, strategy, &workload, &settings, Some(tx), &cancel),
            mover
        );
        let result = result.unwrap();
        eprintln!(
            "{strategy}: slot {slot} moved from node {from} to {to} after 20 updates; acknowledged {}, {after_move} of them after the move, errors {}, retries {}, failures {:?}",
            result.tally.acknowledged,
            result.tally.errors,
            result.tally.retries,
            result.tally.failure_reasons
        );
        assert!(
            after_move > 0,
            "{strategy}: updates must be acknowledged after the slot moved"
        );
        assert_eq!(
            owner_of(&mut conn, slot).await,
            format!("127.0.0.1:{}", ports[to]),
            "{strategy}: the slot moved"
        );
        assert!(result.is_complete(), "{strategy}: {:?}", result.stopped);
        // Followed redirections lose nothing, and every update is made: MOVED and ASK (and
        // watch's EXECABORT behind an ASK) mean nothing was written, so they are retried.
        assert_eq!(result.truth.lost, 0, "{strategy}: {:?}", result.truth);
        assert_eq!(
            result.truth.applied, result.tally.acknowledged,
            "{strategy}: every acknowledged update is in the final state"
        );
        assert_eq!(
            result.tally.acknowledged,
            workload.total_updates(),
            "{strategy}: every update is made ({:?})",
            result.tally.failure_reasons
        );
        assert_eq!(
            result.tally.unknown, 0,
            "{strategy}: {:?}",
            result.tally.failure_reasons
        );
    }
    assert_eq!(cluster.all_keys().await, Vec::<String>::new());
}

#[test]
fn a_password_protected_cluster_runs_every_strategy_and_never_shows_the_password() {
    let cluster = TestCluster::start_with_password("s3cret-pw");
    let seeds = cluster.urls().join(",");
    let output = racelab(&["run", "-s", "all", "--cluster", &seeds, "--format", "json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains("s3cret-pw") && !stderr.contains("s3cret-pw"),
        "{stdout}{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(
        report["redis"]["url"]
            .as_str()
            .unwrap()
            .starts_with("redis://:***@127.0.0.1:")
    );
    // watch's dedicated connections to the slot's primary carry the seed's password too.
    let watch = &report["runs"].as_array().unwrap()[3];
    assert_eq!(watch["strategy"], "watch");
    assert_eq!(watch["applied"], 20);

    let wrong = cluster.urls()[0].replace("s3cret-pw", "wrong");
    let output = racelab(&["run", "--cluster", &wrong]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("wrong@"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_run_stops_the_run_and_says_why_instead_of_guessing() {
    use racelab::EventKind;
    use racelab::Target;
    use tokio_util::sync::CancellationToken;

    let mut cluster = TestCluster::start();
    let target = Target::open_cluster(Some(&cluster.urls()), Duration::from_millis(500))
        .await
        .unwrap();
    let slot = key_slot("{JRN-TEST-001}");
    let ports: Vec<u16> = cluster.cluster.nodes().iter().map(|n| n.port()).collect();
    let mut conn = cluster.node_conns().await.remove(0);
    let owner = owner_of(&mut conn, slot).await;
    let owner = ports
        .iter()
        .position(|p| owner.ends_with(&format!(":{p}")))
        .unwrap();

    let workload = workload(10, 10, 400, Duration::from_millis(2));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<racelab::Event>(4096);
    let killer = {
        let cluster = &mut cluster;
        async move {
            let mut acknowledged = 0;
            while let Some(event) = rx.recv().await {
                if matches!(event.kind, EventKind::Acknowledged { .. }) {
                    acknowledged += 1;
                    if acknowledged == 50 {
                        cluster.cluster.stop_node(owner);
                    }
                }
            }
        }
    };
    let settings = common::settings();
    let cancel = CancellationToken::new();
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(
        racelab::run(
            &target,
            Strategy::Lua,
            &workload,
            &settings,
            Some(tx),
            &cancel
        ),
        killer
    );
    let result = result.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run must stop, not wait out every update"
    );
    let stopped = result.stopped.as_deref().unwrap_or_default();
    assert!(
        stopped.contains("stopped answering"),
        "stopped: {stopped:?}"
    );
    assert!(
        result.unverified.is_some(),
        "the journey's only primary is gone: nothing about applied updates can be said"
    );
    assert!(result.tally.acknowledged >= 50);
    assert!(
        result.tally.acknowledged < workload.total_updates(),
        "the run must not pretend to have finished"
    );
}
