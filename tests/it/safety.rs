//! racelab's promises on real servers with real faults: it touches nothing that isn't its own,
//! its verdict stays honest when connections die, servers pause or vanish, and it refuses bad
//! input and bad transports with one clear sentence.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{SAFE, TestRedis, run, workload};
use racelab::Strategy;

fn racelab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_racelab"));
    command.env_remove("REDIS_URL").env("NO_COLOR", "1");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_refused(output: &Output, mentions: &str) {
    let err = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stderr: {err}\nstdout: {}",
        text(&output.stdout)
    );
    assert!(err.contains(mentions), "expected {mentions:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

async fn digest(redis: &TestRedis) -> String {
    let mut conn = redis.conn().await;
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_leaves_a_populated_redis_exactly_as_it_was() {
    let redis = TestRedis::start_with(&["--enable-debug-command", "yes"]);
    let mut conn = redis.conn().await;
    // Other people's data, including the seed's own journey key and a key under our prefix
    // name that is not ours.
    let _: () = redis::pipe()
        .set(
            "journey:JRN-TEST-001",
            r#"{"Id":"JRN-TEST-001","Segments":[]}"#,
        )
        .set("journey:ids", r#"["JRN-TEST-001"]"#)
        .hset("users:1", "name", "Ada")
        .rpush("queue", "job-1")
        .set("racelab-notes", "mine, not racelab's")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = digest(&redis).await;
    let keys_before = redis.all_keys().await;
    let output = racelab()
        .args(["run", "-s", "all", "--redis-url", &redis.url()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(digest(&redis).await, before, "the dataset changed");
    assert_eq!(redis.all_keys().await, keys_before);
}

#[tokio::test]
async fn two_runs_at_once_on_one_redis_keep_to_their_own_keys() {
    let redis = TestRedis::start();
    let url = redis.url();
    let spawn = |strategy: &str| {
        racelab()
            .args([
                "run",
                "-s",
                strategy,
                "--redis-url",
                &url,
                "--format",
                "json",
            ])
            .args(["-n", "60", "--rounds", "5", "--think", "2ms"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("naive"), spawn("cas"));
    for (child, strategy) in [(a, "naive"), (b, "cas")] {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{strategy}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let run = &report["runs"][0];
        assert_eq!(run["acknowledged"], 300, "{strategy}");
        if strategy == "cas" {
            assert_eq!(run["applied"], 300);
            assert_eq!(run["lost"], 0);
        }
    }
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_strategies_lose_nothing_when_connections_are_killed_mid_run() {
    let redis = TestRedis::start();
    let target = Arc::new(redis.target().await);
    for &strategy in SAFE {
        // Strategies that serialise the journey get fewer rounds, to stay a few hundred ms.
        let rounds = match strategy {
            Strategy::Watch | Strategy::Lock | Strategy::Fenced | Strategy::Cas => 5,
            _ => 20,
        };
        let workload = workload(20, 5, rounds, Duration::from_millis(2));
        let run = {
            let (target, workload) = (target.clone(), workload.clone());
            tokio::spawn(async move { run(&target, strategy, &workload).await })
        };
        let mut conn = redis.conn().await;
        let mut kills = 0;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while !run.is_finished() && kills < 5 {
            // Every client but this one: the shared connection and watch's own.
            let _: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
                .query_async(&mut conn)
                .await
                .unwrap();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let result = run.await.unwrap();
        let t = &result.tally;
        assert!(kills >= 1, "{strategy}: the kills must land during the run");
        assert!(
            result.unverified.is_none(),
            "{strategy}: {:?}",
            result.unverified
        );
        assert_eq!(
            result.truth.lost, 0,
            "{strategy}: {:?}",
            result.truth.lost_updates
        );
        assert_eq!(
            t.acknowledged + t.unknown + t.errors,
            workload.total_updates(),
            "{strategy}: every update accounted for"
        );
        // Applied covers every acknowledged update, plus whichever unknown ones landed.
        assert!(result.truth.applied >= t.acknowledged, "{strategy}");
        assert!(
            result.truth.applied <= t.acknowledged + t.unknown,
            "{strategy}"
        );
    }
}

/// Runs `strategy` (20 updaters × 10 rounds, `--timeout 100ms`) and pauses every client of the
/// server for `pause` 15 ms in.
async fn paused_run(strategy: Strategy, pause: u64) -> racelab::RunResult {
    let redis = TestRedis::start();
    let target = Arc::new(
        racelab::Target::open(Some(&redis.url()), Duration::from_millis(100))
            .await
            .unwrap(),
    );
    let workload = workload(20, 20, 10, Duration::from_millis(2));
    let run = {
        let (target, workload) = (target.clone(), workload.clone());
        tokio::spawn(async move { run(&target, strategy, &workload).await })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    let result = run.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_writes_that_time_out_are_resolved_by_their_applied_write_record() {
    // 400 ms of silence, lookups for 5 × 100 ms: every write that timed out is looked up after
    // it ran, and found applied or run again (README "Safety").
    for strategy in [Strategy::Lua, Strategy::Function, Strategy::Cas] {
        let result = paused_run(strategy, 400).await;
        let t = &result.tally;
        assert_eq!(t.unknown, 0, "{strategy}: every timed-out write resolved");
        // A read that timed out (cas) made nothing: certainly not applied, an error.
        assert_eq!(t.acknowledged + t.errors, 200, "{strategy}");
        assert_eq!(result.truth.lost, 0, "{strategy}");
        assert_eq!(result.truth.applied, t.acknowledged, "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_past_the_lookups_leaves_outcomes_unknown_not_applied() {
    let result = paused_run(Strategy::Lua, 1500).await;
    let t = &result.tally;
    assert!(
        t.unknown > 0,
        "timed-out writes nobody could look up are unknown"
    );
    assert_eq!(t.acknowledged + t.unknown + t.errors, 200);
    assert_eq!(result.truth.lost, 0);
    assert!(result.truth.applied >= t.acknowledged);
}

#[test]
fn a_server_that_dies_mid_run_gives_exit_2_and_the_observed_report() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let child = racelab()
        .args([
            "run",
            "-s",
            "cas",
            "--redis-url",
            &url,
            "--timeout",
            "300ms",
            "--format",
            "json",
        ])
        .args(["-n", "20", "--rounds", "500", "--think", "1ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    redis.server.stop();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("could not be completed"),
        "{}",
        text(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["complete"], false);
    assert_eq!(report["ok"], false);
    let run = &report["runs"][0];
    assert!(run["applied"].is_null() && run["lost"].is_null(), "{run}");
    assert!(run["acknowledged"].as_u64().unwrap() > 0, "{run}");
    assert!(run["stopped"].is_string(), "{run}");
}

/// Sends `signal` to a run in flight and checks it winds down: exit code, keys gone.
async fn interrupt(signal: i32, code: i32) {
    let redis = TestRedis::start();
    let child = racelab()
        .args([
            "run",
            "-s",
            "naive",
            "--redis-url",
            &redis.url(),
            "--rounds",
            "1000",
            "--think",
            "5ms",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!redis.all_keys().await.is_empty(), "the run is under way");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(code));
    assert_eq!(
        redis.all_keys().await,
        Vec::<String>::new(),
        "the run's keys are deleted"
    );
}

#[tokio::test]
async fn ctrl_c_stops_the_run_deletes_its_keys_and_exits_130() {
    interrupt(libc::SIGINT, 130).await;
}

#[tokio::test]
async fn sigterm_stops_the_run_deletes_its_keys_and_exits_143() {
    interrupt(libc::SIGTERM, 143).await;
}

#[test]
fn the_private_redis_server_does_not_outlive_an_interrupted_run() {
    let child = racelab()
        .args(["run", "--rounds", "1000", "--think", "5ms"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let servers = || {
        let out = Command::new("pgrep")
            .args(["-P", &pid.to_string(), "redis-server"])
            .output()
            .unwrap();
        text(&out.stdout).lines().count()
    };
    assert_eq!(servers(), 1, "racelab runs its private server");
    let children = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    let server_pid: i32 = text(&children.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(server_pid, 0) } == 0;
    assert!(!alive, "the private redis-server is gone");
}

#[tokio::test]
async fn an_acl_user_without_write_commands_is_refused_with_exit_2() {
    let redis = TestRedis::start();
    let url = redis
        .acl_user(
            "reader",
            "reader-pw",
            &["~*", "+@read", "+info", "+ping", "+hello"],
        )
        .await;
    let output = racelab()
        .args(["run", "--redis-url", &url])
        .output()
        .unwrap();
    // The connection was accepted; a command was refused, and the message says which.
    assert_refused(&output, "refused racelab: NOPERM");
    assert!(!text(&output.stderr).contains("reader-pw"));
    assert!(text(&output.stderr).contains("reader:***@"));

    // And a full ACL user works.
    let url = redis
        .acl_user("writer", "writer-pw", &["~racelab:*", "+@all"])
        .await;
    let output = racelab()
        .args(["run", "-s", "all", "--redis-url", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn a_port_that_is_not_redis_is_refused_with_exit_2() {
    // A tiny HTTP server: it answers anything with an HTTP response.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let output = racelab()
        .args([
            "run",
            "--redis-url",
            &format!("redis://127.0.0.1:{port}"),
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_refused(&output, "cannot connect to Redis");
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A throwaway CA and a server certificate for localhost.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=racelab test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[test]
fn rediss_works_against_a_tls_redis_server() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let redis = TestRedis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "tls-secret",
    ]);
    let url = format!("rediss://:tls-secret@localhost:{tls_port}");
    let output = racelab()
        .args(["run", "-s", "naive,lua", "--redis-url", &url])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let out = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{out}{}",
        text(&output.stderr)
    );
    assert!(
        out.contains(&format!("rediss://:***@localhost:{tls_port}")),
        "{out}"
    );
    assert!(!out.contains("tls-secret"));

    // Without the CA, the certificate is not trusted: a clear refusal, not a panic.
    let output = racelab()
        .args(["run", "--redis-url", &url])
        .output()
        .unwrap();
    assert_refused(&output, "TLS");
    drop(redis);
}

#[test]
fn a_tls_url_to_a_plain_server_is_refused_with_exit_2() {
    let redis = TestRedis::start();
    let url = format!("rediss://127.0.0.1:{}", redis.server.port());
    let output = racelab()
        .args(["run", "--redis-url", &url, "--timeout", "1s"])
        .output()
        .unwrap();
    assert_refused(&output, "over TLS");
}

/// Random workloads for every safe strategy: each must lose 0 with exact counts. Short in CI;
/// `RACELAB_SOAK=<runs>` makes it longer. A failure prints the seed that replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_workloads_never_lose_with_safe_strategies() {
    use rand::{Rng, SeedableRng};
    let runs: u64 = std::env::var("RACELAB_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let base: u64 = std::env::var("RACELAB_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    let redis = TestRedis::start();
    let target = redis.target().await;
    for i in 0..runs {
        let seed = base.wrapping_add(i);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let strategy = SAFE[rng.random_range(0..SAFE.len())];
        let mut updaters = rng.random_range(1..=500u32);
        let segments = rng.random_range(1..=50usize);
        let mut rounds = rng.random_range(1..=20u32);
        let think = Duration::from_micros(rng.random_range(0..=5000));
        // The strategies that serialise the journey queue every update on one key, and each
        // conflict or busy lock costs a retry: keep their queue to a couple of hundred updates
        // so a run takes seconds, not minutes.
        if matches!(
            strategy,
            Strategy::Watch | Strategy::Lock | Strategy::Fenced | Strategy::Cas
        ) {
            updaters = updaters.min(100);
            rounds = rounds.min((200 / updaters).max(1));
        }
        let mut workload = workload(updaters, segments, rounds, think);
        workload.seed = seed;
        let started = std::time::Instant::now();
        let result = run(&target, strategy, &workload).await;
        eprintln!(
            "{strategy} n={} seg={segments} rounds={rounds} think={think:?}: {:?}",
            workload.updaters,
            started.elapsed()
        );
        let total = workload.total_updates();
        let replay = format!(
            "replay with RACELAB_SOAK=1 RACELAB_SOAK_SEED={seed}: {strategy} -n {} --segments {segments} --rounds {rounds} --think {think:?}",
            workload.updaters
        );
        assert_eq!(result.truth.lost, 0, "{replay}");
        assert_eq!(result.tally.acknowledged, total, "{replay}");
        assert_eq!(result.truth.applied, total, "{replay}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_key_replaced_by_someone_else_stops_the_run_with_a_clear_reason() {
    let redis = TestRedis::start();
    let target = Arc::new(redis.target().await);
    let workload = workload(20, 20, 20, Duration::from_millis(5));
    let run = {
        let (target, workload) = (target.clone(), workload.clone());
        tokio::spawn(async move {
            // lua reads inside its script, so the first update after the swap meets the hash
            // (naive's blind SET could simply overwrite it).
            racelab::run(
                &target,
                Strategy::Lua,
                &workload,
                &common::settings(),
                None,
                &tokio_util::sync::CancellationToken::new(),
            )
            .await
        })
    };
    // Find the run's journey key (tests may list keys; racelab never does) and put a hash there.
    let mut conn = redis.conn().await;
    let key = loop {
        if let Some(key) = redis
            .all_keys()
            .await
            .into_iter()
            .find(|k| k.ends_with(":journey"))
        {
            break key;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _: () = redis::pipe()
        .del(&key)
        .hset(&key, "not", "a journey")
        .query_async(&mut conn)
        .await
        .unwrap();
    let result = run.await.unwrap().unwrap();
    assert!(!result.is_complete());
    let stopped = result.stopped.expect("the run stops");
    assert!(stopped.contains("WRONGTYPE"), "{stopped}");
}

/// A server that says it is Redis 6.2: enough RESP to connect and answer INFO.
fn fake_redis_6() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_fake(stream));
        }
    });
    port
}

fn serve_fake(mut stream: std::net::TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        // Each complete command is `*N\r\n` then N bulk strings; answer INFO, OK the rest.
        while let Some((name, used)) = parse_command(&pending) {
            pending.drain(..used);
            let reply = if name.eq_ignore_ascii_case("INFO") {
                let body = "# Server\r\nredis_version:6.2.14\r\n";
                format!("${}\r\n{body}\r\n", body.len())
            } else {
                "+OK\r\n".to_owned()
            };
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

fn parse_command(data: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split("\r\n");
    let count: usize = lines.next()?.strip_prefix('*')?.parse().ok()?;
    let mut used = text.find("\r\n")? + 2;
    let mut name = None;
    for _ in 0..count {
        let len: usize = lines.next()?.strip_prefix('$')?.parse().ok()?;
        let arg = lines.next()?;
        if arg.len() != len {
            return None;
        }
        used += format!("${len}\r\n").len() + len + 2;
        name.get_or_insert_with(|| arg.to_owned());
    }
    (used <= data.len()).then(|| (name.unwrap_or_default(), used))
}

#[test]
fn function_on_a_redis_older_than_7_is_refused_with_exit_2() {
    let port = fake_redis_6();
    let output = racelab()
        .args([
            "run",
            "-s",
            "function",
            "--redis-url",
            &format!("redis://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_refused(
        &output,
        "Redis Functions need Redis 7 or newer and this server is 6.2.14",
    );
}

#[test]
fn a_server_restarted_mid_run_is_reported_as_unverifiable_not_as_lost() {
    // The private harness keeps nothing on disk, so a restart empties the server: whatever
    // racelab says afterwards must not claim updates were lost or applied.
    let mut redis = TestRedis::start();
    let port = redis.server.port();
    let child = racelab()
        .args([
            "run",
            "-s",
            "cas",
            "--redis-url",
            &redis.url(),
            "--format",
            "json",
        ])
        .args([
            "-n",
            "20",
            "--rounds",
            "200",
            "--think",
            "2ms",
            "--timeout",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    redis.server.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut restarted = Command::new(racelab::RedisServer::binary())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let run = &report["runs"][0];
    assert_eq!(report["complete"], false);
    assert!(run["lost"].is_null() && run["applied"].is_null(), "{run}");
    assert!(
        run["stopped"].as_str().unwrap().contains("vanished"),
        "{run}"
    );
}
