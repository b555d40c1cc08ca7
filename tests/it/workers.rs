//! Distributed updaters: `racelab worker` processes joined by `racelab run --workers K`, against
//! a real redis-server (and a real cluster). Every process here is the real binary.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestCluster, TestRedis, assert_schema, racelab};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_racelab");

/// Worker processes, killed on drop; their stderr goes to files printed when a test fails.
struct Workers {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Workers {
    /// Starts `count` workers with `args` (where the Redis is, `--once`, …).
    fn start(count: usize, args: &[&str]) -> Workers {
        Workers::start_with_env(count, args, &[])
    }

    /// [`Workers::start`] with `env` set in every worker's environment.
    fn start_with_env(count: usize, args: &[&str], env: &[(&str, &str)]) -> Workers {
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        let mut logs = Vec::new();
        for i in 0..count {
            let log = dir.path().join(format!("worker-{i}.log"));
            children.push(
                Command::new(BIN)
                    .arg("worker")
                    .args(args)
                    .envs(env.iter().copied())
                    .env_remove("REDIS_URL")
                    .env_remove("REDIS_CLUSTER")
                    .stdout(Stdio::null())
                    .stderr(File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
            );
            logs.push(log);
        }
        Workers {
            children,
            logs,
            _dir: dir,
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    /// Waits until worker `i` says `text`.
    fn wait_for(&self, i: usize, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log(i).contains(text) {
            assert!(
                Instant::now() < deadline,
                "worker {i} never said {text:?}:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every worker's exit code, waiting at most `within` for them to exit.
    fn exit_codes(&mut self, within: Duration) -> Vec<Option<i32>> {
        let deadline = Instant::now() + within;
        let mut codes = vec![None; self.children.len()];
        while Instant::now() < deadline && codes.iter().any(Option::is_none) {
            for (i, child) in self.children.iter_mut().enumerate() {
                if codes[i].is_none()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    codes[i] = Some(status.code().unwrap_or(-1));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        codes
    }

    fn signal(&self, i: usize, signal: i32) {
        unsafe {
            libc::kill(self.children[i].id() as i32, signal);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for i in 0..self.logs.len() {
                eprintln!("--- worker {i} ---\n{}", self.log(i));
            }
        }
    }
}

/// Starts racelab with `args` in the background, its report and stderr captured.
fn spawn_run(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run_named<'a>(report: &'a Value, strategy: &str) -> &'a Value {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no {strategy} run in {report}"))
}

/// The workers of a run cover updaters 1..=n once each, in contiguous shares.
fn assert_shares_cover(run: &Value, workers: usize, updaters: u64) {
    let shares = run["workers"].as_array().expect("a workers list");
    assert_eq!(shares.len(), workers, "{run}");
    let mut next = 1;
    for share in shares {
        assert_eq!(share["first_updater"], next, "{run}");
        next = share["last_updater"].as_u64().unwrap() + 1;
        assert!(share["vanished"].is_null(), "{share}");
    }
    assert_eq!(next, updaters + 1, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_reach_the_single_process_verdicts() {
    let redis = TestRedis::start();
    let url = redis.url();
    // Two updaters per segment and two rounds: every strategy is contended, across processes.
    let shape = [
        "-n", "40", "--rounds", "2", "--seed", "7", "--format", "json",
    ];
    let mut local_args = vec!["run", "-s", "all", "--redis-url", &url];
    local_args.extend(shape);
    let local = racelab(&local_args);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));

    let mut workers = Workers::start(3, &["--redis-url", &url, "--once"]);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("ops.jsonl");
    let history_arg = history.to_str().unwrap().to_owned();
    let mut args = local_args.clone();
    // A history wants every phase event: they all come through Redis too.
    args.extend([
        "--workers",
        "3",
        "--join-timeout",
        "30s",
        "--history",
        &history_arg,
    ]);
    let distributed = racelab(&args);
    assert_eq!(
        distributed.status.code(),
        Some(0),
        "{}",
        stderr(&distributed)
    );

    let (local, distributed) = (report(&local), report(&distributed));
    assert_schema(&distributed);
    assert!(local["runs"][0].get("workers").is_none(), "{local}");
    for run in distributed["runs"].as_array().unwrap() {
        let name = run["strategy"].as_str().unwrap();
        let alone = run_named(&local, name);
        assert_eq!(run["ok"], true, "{name}: {run}");
        if name == "local-mutex" {
            // The one strategy whose verdict is the process count's (README "Fixes that look
            // right"): intact in one process, lost across three.
            assert_eq!(
                (&alone["expected"], &run["expected"]),
                (&Value::from("intact"), &Value::from("lost"))
            );
            assert_eq!(alone["lost"], 0, "{alone}");
            assert!(run["lost"].as_u64().unwrap() > 0, "{run}");
        } else {
            assert_eq!(run["expected"], alone["expected"], "{name}");
            assert_eq!(
                run["lost"].as_u64().unwrap() > 0,
                alone["lost"].as_u64().unwrap() > 0,
                "{name} lost in one process and not in the other"
            );
        }
        // Every update's outcome came back through Redis.
        assert_eq!(run["acknowledged"], 80, "{name}: {run}");
        assert_eq!(run["unknown"], 0, "{name}: {run}");
        assert_shares_cover(run, 3, 40);
    }
    // The history has every update's start and acknowledgement, and says who ran what.
    let lines: Vec<Value> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for run in distributed["runs"].as_array().unwrap() {
        let name = &run["strategy"];
        let of = |kind: &str| {
            lines
                .iter()
                .filter(|l| &l["strategy"] == name && l["kind"] == kind)
                .count()
        };
        assert_eq!(of("ok") as u64, 80, "{name}");
        assert_eq!(of("invoke") as u64, 80, "{name}");
        assert_eq!(of("worker"), 3, "{name}");
    }
    // The seed's bug across processes: some update was erased by another process's stale write.
    let naive = run_named(&distributed, "naive");
    let lost = naive["lost_updates"].as_array().unwrap();
    assert!(!lost.is_empty());
    assert!(lost.iter().all(|l| l["worker"].is_string()), "{naive}");
    assert!(
        lost.iter()
            .any(|l| l["erased_by_worker"].is_string() && l["erased_by_worker"] != l["worker"]),
        "no lost update was erased from another worker: {naive}"
    );

    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 3],
        "--once workers leave when the run ends"
    );
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixes_hold_across_worker_processes_run_after_run() {
    let redis = TestRedis::start();
    let url = redis.url();
    // Long-lived workers serve one run after another.
    let mut workers = Workers::start(3, &["--redis-url", &url]);
    for attempt in 0..3 {
        let seed = (100 + attempt).to_string();
        let output = racelab(&[
            "run",
            "-s",
            "hash,watch,lua,lock,fenced,cas,function",
            "-n",
            "40",
            "--rounds",
            "2",
            "--seed",
            &seed,
            "--workers",
            "3",
            "--join-timeout",
            "30s",
            "--redis-url",
            &url,
            "--expect",
            "intact",
            "--format",
            "json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "seed {seed}: {}",
            stderr(&output)
        );
        for run in report(&output)["runs"].as_array().unwrap() {
            assert_eq!(run["lost"], 0, "seed {seed}: {run}");
            assert_eq!(run["applied"], 80, "seed {seed}: {run}");
            assert_shares_cover(run, 3, 40);
        }
    }
    // Ctrl-C: each worker takes its card down and leaves.
    for i in 0..3 {
        workers.signal(i, libc::SIGINT);
    }
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(130); 3]
    );
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

/// Starts a two-worker run of `strategies` whose updaters think for 3 s (workers and
/// coordinator given `extra` too), and waits until they are released.
fn slow_run_with(url: &str, strategies: &str, extra: &[&str]) -> (Workers, Child) {
    let mut worker_args = vec!["--redis-url", url, "--once"];
    worker_args.extend(extra);
    let workers = Workers::start(2, &worker_args);
    let mut args = vec![
        "run",
        "-s",
        strategies,
        "--think",
        "3s",
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--redis-url",
        url,
        "--format",
        "json",
    ];
    args.extend(extra);
    let coordinator = spawn_run(&args);
    for i in 0..2 {
        workers.wait_for(i, "runs updaters", Duration::from_secs(20));
    }
    // The release follows the last worker's ready within milliseconds.
    std::thread::sleep(Duration::from_millis(300));
    (workers, coordinator)
}

fn slow_run(url: &str, strategies: &str) -> (Workers, Child) {
    slow_run_with(url, strategies, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_vanishes_mid_run_leaves_its_in_flight_updates_unknown() {
    let redis = TestRedis::start();
    let (mut workers, coordinator) = slow_run(&redis.url(), "lua,hash");
    workers.signal(0, libc::SIGKILL);
    // A worker started now replaces it for the next strategy.
    let mut replacement = Workers::start(1, &["--redis-url", &redis.url(), "--once"]);
    let output = coordinator.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report = report(&output);
    assert_schema(&report);
    let run = &report["runs"][0];
    // Worker 0 held one half of the updaters: those updates are unknown, the others made and
    // proved by the final state.
    assert_eq!(run["unknown"], 10, "{run}");
    assert_eq!(run["acknowledged"], 10, "{run}");
    assert_eq!(run["applied"], 10, "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    assert!(
        run["stopped"].as_str().unwrap().contains("vanished"),
        "{run}"
    );
    let vanished: Vec<&Value> = run["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["vanished"].is_null())
        .collect();
    assert_eq!(vanished.len(), 1, "{run}");
    assert!(
        vanished[0]["vanished"]
            .as_str()
            .unwrap()
            .contains("10 updates it had not reported are unknown"),
        "{run}"
    );
    assert!(stderr(&output).contains("could not be completed"));
    // The next strategy ran on the survivor and the replacement, and lost nothing.
    let hash = &report["runs"][1];
    assert_eq!(hash["applied"], 20, "{hash}");
    assert_shares_cover(hash, 2, 20);
    let names: Vec<&str> = hash["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"w3"), "{hash}");
    assert_eq!(workers.exit_codes(Duration::from_secs(10))[1], Some(0));
    assert_eq!(
        replacement.exit_codes(Duration::from_secs(10)),
        vec![Some(0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_worker_reports_its_in_flight_updates_unknown_and_leaves() {
    let redis = TestRedis::start();
    let (mut workers, coordinator) = slow_run(&redis.url(), "lua");
    workers.signal(1, libc::SIGINT);
    let output = coordinator.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report = report(&output);
    let run = &report["runs"][0];
    assert_eq!(run["unknown"], 10, "{run}");
    assert_eq!(run["acknowledged"], 10, "{run}");
    let stopped = run["stopped"].as_str().unwrap();
    assert!(
        stopped.contains("left") && stopped.contains("interrupted"),
        "{stopped}"
    );
    let left: Vec<&Value> = run["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["left"] == true)
        .collect();
    assert_eq!(left.len(), 1, "{run}");
    let codes = workers.exit_codes(Duration::from_secs(10));
    assert_eq!(codes, vec![Some(0), Some(130)]);
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_notice_when_their_coordinator_is_gone() {
    let redis = TestRedis::start();
    let (mut workers, mut coordinator) = slow_run(&redis.url(), "lua");
    coordinator.kill().unwrap();
    let _ = coordinator.wait();
    // The session key expires; each worker stops its updaters and leaves.
    assert_eq!(
        workers.exit_codes(Duration::from_secs(15)),
        vec![Some(0); 2]
    );
    for i in 0..2 {
        assert!(
            workers.log(i).contains("coordinator is gone"),
            "{}",
            workers.log(i)
        );
    }
}

#[test]
fn when_redis_dies_mid_run_the_coordinator_and_its_workers_end_with_exit_2() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let (workers, coordinator) = slow_run_with(&url, "lua", &["--timeout", "1s"]);
    std::thread::sleep(Duration::from_millis(200));
    redis.server.stop();
    let output = coordinator.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report = report(&output);
    let run = &report["runs"][0];
    // Nothing could be heard or read back: every update is unknown, nothing claimed applied.
    assert_eq!(run["unknown"], 20, "{run}");
    assert!(run["applied"].is_null(), "{run}");
    let mut workers = workers;
    assert_eq!(
        workers.exit_codes(Duration::from_secs(15)),
        vec![Some(2); 2]
    );
    assert!(
        workers.log(0).contains("Redis stopped answering"),
        "{}",
        workers.log(0)
    );
}

#[test]
fn a_run_stops_waiting_for_workers_that_never_come() {
    let redis = TestRedis::start();
    let url = redis.url();
    let mut workers = Workers::start(1, &["--redis-url", &url, "--once"]);
    workers.wait_for(0, "waiting for a run", Duration::from_secs(10));
    let output = racelab(&[
        "run",
        "--workers",
        "2",
        "--join-timeout",
        "1s",
        "--redis-url",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("1 of 2 workers joined within 1s"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The one that joined is let go.
    assert_eq!(workers.exit_codes(Duration::from_secs(10)), vec![Some(0)]);
}

#[test]
fn a_worker_must_be_told_where_the_redis_is() {
    let output = racelab(&["worker"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--redis-url"),
        "{}",
        stderr(&output)
    );
    let output = racelab(&["worker", "--cluster", "private"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot start a private one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_race_on_a_redis_cluster() {
    let cluster = TestCluster::start();
    let nodes = cluster.urls().join(",");
    let mut workers = Workers::start(2, &["--cluster", &nodes, "--once"]);
    let output = racelab(&[
        "run",
        "-s",
        "all",
        "-n",
        "40",
        "--rounds",
        "2",
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--cluster",
        &nodes,
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = report(&output);
    assert!(report["redis"]["cluster"]["slot"].is_u64(), "{report}");
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["ok"], true, "{run}");
        assert_eq!(run["acknowledged"], 80, "{run}");
        assert_shares_cover(run, 2, 40);
    }
    assert!(run_named(&report, "naive")["lost"].as_u64().unwrap() > 0);
    // Two processes: the in-process mutex does not reach across them.
    assert!(run_named(&report, "local-mutex")["lost"].as_u64().unwrap() > 0);
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 2]
    );
    assert_eq!(cluster.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_taken_for_vanished_writes_nothing_when_it_wakes() {
    let redis = TestRedis::start();
    let url = redis.url();
    let (mut workers, coordinator) = slow_run(&url, "naive");
    // Stalled mid-think, past its card's lease: the coordinator takes it for vanished, reports
    // its updates unknown and deletes the run's keys.
    workers.signal(0, libc::SIGSTOP);
    let output = coordinator.wait_with_output().unwrap();
    workers.signal(0, libc::SIGCONT);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let report = report(&output);
    let run = &report["runs"][0];
    assert_eq!(run["unknown"], 10, "{run}");
    assert!(
        run["stopped"].as_str().unwrap().contains("vanished"),
        "{run}"
    );
    // Awake again, its updaters find their lease lapsed and write nothing: no journey comes
    // back after the cleanup, and nothing is left without an expiry.
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 2]
    );
    assert!(
        workers.log(0).contains("lease") || workers.log(0).contains("not renewed"),
        "{}",
        workers.log(0)
    );
    let mut conn = redis.conn().await;
    for key in redis.all_keys().await {
        assert!(!key.ends_with(":journey"), "{key} came back");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_after_its_lease_check_has_its_late_write_refused_by_redis() {
    let redis = TestRedis::start();
    let url = redis.url();
    // Each worker pauses 4 s between its lease check and its write (the test hook, README
    // "Development"): the window a stalled process can sleep through.
    let mut workers = Workers::start_with_env(
        2,
        &["--redis-url", &url, "--once"],
        &[("RACELAB_TEST_STALL_BEFORE_WRITE", "4s")],
    );
    let coordinator = spawn_run(&[
        "run",
        "-s",
        "naive",
        "-n",
        "20",
        "--think",
        "100ms",
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--redis-url",
        &url,
        "--format",
        "json",
    ]);
    for i in 0..2 {
        workers.wait_for(i, "runs updaters", Duration::from_secs(20));
    }
    // Past the release, the lease check and into the pause: stopped there, worker 0 stops
    // renewing its card, and the coordinator takes it for vanished, strikes it off the run and,
    // the run over, deletes the run's keys.
    std::thread::sleep(Duration::from_millis(1500));
    workers.signal(0, libc::SIGSTOP);
    let output = coordinator.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let run = &report(&output)["runs"][0];
    assert_eq!(run["unknown"], 10, "{run}");
    // Awake, it sends the write it was about to send: Redis refuses it, so no journey comes back
    // after the cleanup.
    workers.signal(0, libc::SIGCONT);
    assert_eq!(
        workers.exit_codes(Duration::from_secs(15)),
        vec![Some(0); 2]
    );
    let keys = redis.all_keys().await;
    assert!(
        keys.iter().all(|key| !key.ends_with(":journey")),
        "a late write came back: {keys:?}\n{}",
        workers.log(0)
    );
    // What it says of it afterwards may still reach Redis, but nothing is left for ever.
    let mut conn = redis.conn().await;
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_early_never_makes_a_green_run() {
    let redis = TestRedis::start();
    let url = redis.url();
    let _workers = Workers::start(1, &["--redis-url", &url, "--once"]);
    let coordinator = spawn_run(&[
        "run",
        "-s",
        "hash",
        "-n",
        "4",
        "--segments",
        "4",
        "--rounds",
        "5000",
        "--think",
        "1ms",
        "--workers",
        "1",
        "--redis-url",
        &url,
        "--format",
        "json",
    ]);
    // Something deletes the coordinator's session key again and again: the worker takes the
    // coordinator for gone and stops early.
    // Until the run ends (5,000 rounds take longer than the two checks a second apart that the
    // worker needs to be sure).
    let mut coordinator = coordinator;
    let mut conn = redis.conn().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && coordinator.try_wait().unwrap().is_none() {
        for key in redis.all_keys().await {
            if key.contains(":session:") && !key.ends_with(":control") {
                let _: () = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let output = coordinator.wait_with_output().unwrap();
    let report = report(&output);
    let run = &report["runs"][0];
    // The worker left, saying why, and the run is not green.
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let stopped = run["stopped"].as_str().unwrap_or_default();
    assert!(stopped.contains("coordinator is gone"), "{run}");
    assert_eq!(run["workers"][0]["left"], true, "{run}");
    assert!(run["acknowledged"].as_u64().unwrap() < 20_000, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_again_after_a_timeout_are_counted_once() {
    let redis = TestRedis::start();
    let url = redis.url();
    let _workers = Workers::start(1, &["--redis-url", &url, "--once", "--timeout", "1s"]);
    let coordinator = spawn_run(&[
        "run",
        "-s",
        "hash",
        "-n",
        "4",
        "--segments",
        "4",
        "--rounds",
        "300",
        "--think",
        "5ms",
        "--workers",
        "1",
        "--timeout",
        "1s",
        "--keep",
        "--redis-url",
        &url,
        "--format",
        "json",
    ]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Writes wait 2.5 s: the worker's event batches time out on the way and are sent again.
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2500)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let output = coordinator.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report = report(&output);
    let run = &report["runs"][0];
    // Every update has exactly one outcome, and hash lost none.
    let outcomes: u64 = ["acknowledged", "unknown", "errors"]
        .iter()
        .map(|k| run[k].as_u64().unwrap())
        .sum();
    assert_eq!(outcomes, 1200, "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    // And the test did what it says: some batch reached the stream twice (kept with --keep).
    let events = format!(
        "racelab:{}:{{JRN-TEST-001}}:events",
        run["run_id"].as_str().unwrap()
    );
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&events)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut numbers: Vec<&String> = entries.iter().filter_map(|(_, f)| f.get("n")).collect();
    let sent = numbers.len();
    numbers.sort();
    numbers.dedup();
    assert!(
        numbers.len() < sent,
        "no batch was sent twice: {sent} entries"
    );
}

#[test]
fn a_password_reaches_workers_and_is_never_printed() {
    let redis = TestRedis::start_with(&["--requirepass", "w0rker-s3cret"]);
    let url = format!("redis://:w0rker-s3cret@127.0.0.1:{}", redis.server.port());
    let mut workers = Workers::start(2, &["--redis-url", &url, "--once"]);
    let output = racelab(&[
        "run",
        "-s",
        "naive,lua",
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--redis-url",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 2]
    );
    let printed = [
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr(&output),
        workers.log(0),
        workers.log(1),
    ];
    for text in printed {
        assert!(!text.contains("w0rker-s3cret"), "{text}");
    }
    assert!(stderr(&output).contains("racelab worker --redis-url redis://:***@"));
}

/// A journey service with an in-process lock (README "Race your own service"): intact while one
/// copy runs, and losing updates once each of two workers runs its own copy, as two instances
/// behind a load balancer would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_locked_in_its_own_process_loses_once_two_workers_each_run_a_copy() {
    let redis = TestRedis::start();
    let url = redis.url();
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import redis"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a Python with the redis client (.ci/run installs python3-redis)");
    let service = format!(
        "exec:{python} {}/examples/journey_service.py --locked",
        env!("CARGO_MANIFEST_DIR")
    );
    let alone = racelab(&[
        "run",
        "-s",
        &service,
        "--redis-url",
        &url,
        "--expect",
        "intact",
    ]);
    assert_eq!(alone.status.code(), Some(0), "{}", stderr(&alone));
    let mut workers = Workers::start(2, &["--redis-url", &url, "--once"]);
    let output = racelab(&[
        "run",
        "-s",
        &service,
        "--redis-url",
        &url,
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--rounds",
        "2",
        "--expect",
        "lost",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run = &report(&output)["runs"][0];
    assert!(run["lost"].as_u64().unwrap() > 0, "{run}");
    assert_shares_cover(run, 2, 20);
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 2]
    );
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

/// `--crew-secret` (README "Workers"): a crew that shares it runs as before; a worker that holds
/// it ignores a coordinator that does not sign with it, and says so; the secret is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_a_crew_secret_follow_only_a_coordinator_that_signs_with_it() {
    let redis = TestRedis::start();
    let url = redis.url();
    let secret = "correct-horse-battery-staple-42";
    let mut workers = Workers::start(2, &["--redis-url", &url, "--once", "--crew-secret", secret]);
    let signed = racelab(&[
        "run",
        "-s",
        "naive,hash",
        "--redis-url",
        &url,
        "--workers",
        "2",
        "--join-timeout",
        "30s",
        "--crew-secret",
        secret,
    ]);
    assert_eq!(signed.status.code(), Some(0), "{}", stderr(&signed));
    assert_eq!(
        workers.exit_codes(Duration::from_secs(10)),
        vec![Some(0); 2]
    );
    for i in 0..2 {
        assert!(!workers.log(i).contains(secret), "{}", workers.log(i));
    }
    assert!(!stderr(&signed).contains(secret));
    assert!(!String::from_utf8_lossy(&signed.stdout).contains(secret));

    // A coordinator without the secret claims a worker that has it: its job is ignored.
    let workers = Workers::start(1, &["--redis-url", &url, "--once", "--crew-secret", secret]);
    let unsigned = racelab(&[
        "run",
        "-s",
        "naive",
        "--redis-url",
        &url,
        "--workers",
        "1",
        "--join-timeout",
        "3s",
    ]);
    assert_eq!(unsigned.status.code(), Some(2), "{}", stderr(&unsigned));
    workers.wait_for(
        0,
        "ignored a job not signed with this crew's secret",
        Duration::from_secs(10),
    );
    // A short secret is refused in one sentence.
    let short = racelab(&["worker", "--redis-url", &url, "--crew-secret", "short"]);
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("at least 16 characters"));
    assert!(!stderr(&short).contains("'short'"), "{}", stderr(&short));
}

/// `local-mutex` (README "Fixes that look right"): the in-process mutex that holds in one
/// process loses as soon as the updaters are in two, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mutex_loses_once_updaters_run_in_two_processes() {
    let redis = TestRedis::start();
    let url = redis.url();
    let args = [
        "run",
        "-s",
        "local-mutex",
        "--redis-url",
        &url,
        "--format",
        "json",
    ];
    let alone = racelab(&args);
    assert_eq!(alone.status.code(), Some(0), "{}", stderr(&alone));
    let alone = report(&alone);
    assert_eq!(alone["runs"][0]["expected"], "intact");
    assert_eq!(alone["runs"][0]["lost"], 0, "{alone}");

    let _workers = Workers::start(2, &["--redis-url", &url]);
    let mut crew = args.to_vec();
    crew.extend(["--workers", "2", "--join-timeout", "30s"]);
    for _ in 0..3 {
        let output = racelab(&crew);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let report = report(&output);
        assert_schema(&report);
        let run = &report["runs"][0];
        assert_eq!(run["expected"], "lost", "{run}");
        assert_eq!(run["wrong_fix"], true, "{run}");
        assert_eq!(run["acknowledged"], 20, "{run}");
        assert!(run["lost"].as_u64().unwrap() > 0, "{run}");
        assert_shares_cover(run, 2, 20);
        // Each loss is one process's stale write erasing the other's update: within a process
        // the mutex holds.
        for lost in run["lost_updates"].as_array().unwrap() {
            if lost["erased_by_worker"].is_string() {
                assert_ne!(lost["erased_by_worker"], lost["worker"], "{lost}");
            }
        }
    }
    // No run's key is left; the workers still waiting keep their cards in the lobby.
    let left: Vec<String> = redis
        .all_keys()
        .await
        .into_iter()
        .filter(|k| !k.starts_with("racelab:crew:"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}
