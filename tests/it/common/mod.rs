//! The test harness: a real redis-server per test (free loopback port, no persistence, killed on
//! drop, its log printed when the test fails), and short ways to run the engine in-process.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use racelab::Journey;
use racelab::Strategy;
use racelab::Target;
use racelab::{RedisCluster, RedisServer};
use racelab::{RunResult, Settings};
use racelab::{Tuning, Workload};
use tokio_util::sync::CancellationToken;

/// The racelab binary with `args`, told of no Redis by the environment (each test names its own,
/// or lets racelab start a private one) and without colour.
pub fn racelab_cmd(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_racelab"));
    command
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER")
        .env("NO_COLOR", "1");
    command
}

/// [`racelab_cmd`] run to its end.
pub fn racelab(args: &[&str]) -> std::process::Output {
    racelab_cmd(args).output().expect("run racelab")
}

/// `racelab` with `args` (a `--format json` run), which must exit 0: its JSON report.
pub fn json_report(args: &[&str]) -> serde_json::Value {
    let output = racelab(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

pub struct TestRedis {
    pub server: RedisServer,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        TestRedis {
            server: RedisServer::start().expect("redis-server must be installed for the tests"),
        }
    }

    pub fn start_with(args: &[&str]) -> TestRedis {
        TestRedis {
            server: RedisServer::start_with_args(args).expect("redis-server must start"),
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn target(&self) -> Target {
        Target::open(Some(&self.url()), Duration::from_secs(5))
            .await
            .expect("connect to the test redis-server")
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Makes ACL user `name` (password `pw`) with `rules` (`~*`, `+@all`, `-del`, …) and returns
    /// the URL that logs in as it.
    pub async fn acl_user(&self, name: &str, pw: &str, rules: &[&str]) -> String {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(name).arg("on").arg(format!(">{pw}"));
        for rule in rules {
            cmd.arg(*rule);
        }
        let () = cmd.query_async(&mut self.conn().await).await.unwrap();
        format!("redis://{name}:{pw}@127.0.0.1:{}/", self.server.port())
    }

    /// The keys that have no expiry (PTTL -1): racelab gives every key it writes one.
    pub async fn keys_without_expiry(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let mut found = Vec::new();
        for key in self.all_keys().await {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            if ttl == -1 {
                found.push(key);
            }
        }
        found
    }

    /// Every key in the server, by SCAN (tests only: racelab itself never lists keys it does
    /// not own).
    pub async fn all_keys(&self) -> Vec<String> {
        let mut keys = scan_all(&mut self.conn().await).await;
        keys.sort();
        keys
    }
}

/// Every key of one server, by SCAN.
async fn scan_all(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log ({}) ---\n{}",
                self.server.log_path().display(),
                self.server.log()
            );
        }
    }
}

/// A private 3-primary Redis Cluster per test, every node's log printed when the test fails.
pub struct TestCluster {
    pub cluster: RedisCluster,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster {
            cluster: RedisCluster::start()
                .expect("redis-server and redis-cli (redis-tools) must be installed for the tests"),
        }
    }

    pub fn start_with_password(password: &str) -> TestCluster {
        TestCluster {
            cluster: RedisCluster::start_with_password(Some(password))
                .expect("a password-protected cluster must start"),
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.cluster.urls()
    }

    /// A target that names the cluster by its seed nodes, as `--cluster redis://...` does.
    pub async fn target(&self) -> Target {
        Target::open_cluster(Some(&self.urls()), Duration::from_secs(5))
            .await
            .expect("connect to the test cluster")
    }

    /// A plain connection to each node.
    pub async fn node_conns(&self) -> Vec<redis::aio::MultiplexedConnection> {
        let mut conns = Vec::new();
        for url in self.urls() {
            conns.push(
                redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            );
        }
        conns
    }

    /// Every key on every node, by SCAN (tests only).
    pub async fn all_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for mut conn in self.node_conns().await {
            keys.extend(scan_all(&mut conn).await);
        }
        keys.sort();
        keys
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- cluster logs ---\n{}", self.cluster.log());
        }
    }
}

/// The seed fixture with `segments` segments and the given load.
pub fn workload(updaters: u32, segments: usize, rounds: u32, think: Duration) -> Workload {
    Workload {
        journey: Arc::new(Journey::seed_fixture().unwrap().with_segments(segments)),
        updaters,
        rounds,
        think,
        jitter: 0.1,
        seed: 42,
        tuning: Tuning {
            backoff: racelab::Backoff::Exp,
            lock_ttl: Tuning::default_lock_ttl(think),
            max_retries: 10_000,
        },
        deadline: None,
        schedule: None,
        processes: 1,
        scenario: racelab::Scenario::LostUpdate,
    }
}

/// The seed's scenario: 20 updaters, 20 segments, one round, 10 ms think.
pub fn seed_workload() -> Workload {
    workload(20, 20, 1, Duration::from_millis(10))
}

pub fn settings() -> Settings {
    Settings {
        key_prefix: "racelab-test".to_owned(),
        keep: false,
        lost_limit: 10_000,
        remote: None,
        driver: None,
        service: None,
        failover_at: None,
        failover_now: None,
    }
}

pub async fn run(target: &Target, strategy: Strategy, workload: &Workload) -> RunResult {
    run_with(target, strategy, workload, &settings()).await
}

pub async fn run_with(
    target: &Target,
    strategy: Strategy,
    workload: &Workload,
    settings: &Settings,
) -> RunResult {
    racelab::run(
        target,
        strategy,
        workload,
        settings,
        None,
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{strategy} run failed: {e}"))
}

/// Strategies that must never lose an update, whatever the contention (with the lock's default
/// ttl, well above the think time).
pub const SAFE: &[Strategy] = &[
    Strategy::Hash,
    Strategy::Watch,
    Strategy::Lua,
    Strategy::Lock,
    Strategy::Fenced,
    Strategy::Cas,
    Strategy::Function,
];

/// Runs `times` seed scenarios of `strategy` on one Redis, `parallel` at a time (each run has its
/// own keys), and asserts every one of them.
pub async fn repeat(
    target: Arc<Target>,
    strategy: Strategy,
    workload: Workload,
    times: u64,
    parallel: u64,
) {
    for wave in 0..times.div_ceil(parallel) {
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..parallel.min(times - wave * parallel) {
            let target = target.clone();
            let mut workload = workload.clone();
            workload.seed = wave * parallel + i;
            runs.spawn(async move {
                let result = run(&target, strategy, &workload).await;
                assert_intact(&result, &workload);
            });
        }
        while let Some(joined) = runs.join_next().await {
            joined.unwrap();
        }
    }
}

/// Asserts the exact counts of a strategy that must not lose updates.
pub fn assert_intact(result: &RunResult, workload: &Workload) {
    let strategy = result.strategy;
    let total = workload.total_updates();
    assert_eq!(result.tally.acknowledged, total, "{strategy}: acknowledged");
    assert_eq!(result.truth.applied, total, "{strategy}: applied");
    assert_eq!(
        result.truth.lost, 0,
        "{strategy}: lost {:?}",
        result.truth.lost_updates
    );
    assert_eq!(result.tally.unknown, 0, "{strategy}: unknown");
    assert_eq!(
        result.tally.errors, 0,
        "{strategy}: errors {:?}",
        result.tally.failure_reasons
    );
    let counted: u64 = result.states.iter().map(|s| s.update_count).sum();
    assert_eq!(counted, total, "{strategy}: the final state's counts");
}

/// Fails unless `report` validates against `assets/report.schema.json`.
pub fn assert_schema(report: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../assets/report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{report:#}");
}

/// (updater, eraser) of each lost update of a complete run, 1-based, in order.
pub fn losses(result: &RunResult) -> Vec<(u32, Option<u32>)> {
    assert!(result.is_complete(), "{:?}", result.stopped);
    let mut lost: Vec<_> = result
        .truth
        .lost_updates
        .iter()
        .map(|l| (l.updater, l.erased_by))
        .collect();
    lost.sort();
    lost
}
