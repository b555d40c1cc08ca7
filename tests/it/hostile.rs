//! racelab used the way a careless or hostile user would: odd journeys, Redis refusing or losing
//! what racelab wrote, closed pipes and full disks, signals, junk in the environment. A verdict CI
//! trusts must never fail a fix that works, pass a run that tested nothing, or panic.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestRedis, racelab, racelab_cmd};

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

/// A run that could not be made or judged: exit 2, no panic. Its stderr.
fn exit_2(output: &Output) -> String {
    assert_no_panic(output);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    err
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
    let err = exit_2(&output);
    assert!(err.contains("inconclusive: watch"), "{err}");
    assert!(err.contains("too few"), "{err}");
    assert!(text(&output.stdout).contains("INCONCLUSIVE"));
}

/// `racelab ARGS --redis-url <redis>` on a thread of its own, for a test to meddle meanwhile.
fn run_in_background(redis: &TestRedis, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--redis-url".to_owned(), redis.url()]);
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        racelab(&args)
    })
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
    let run = run_in_background(&redis, &["run", "-s", "naive", "--think", "400ms"]);
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
    let err = exit_2(&output);
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
    let run = run_in_background(
        &redis,
        &[
            "run",
            "-s",
            "lock",
            "-n",
            "5",
            "--think",
            "300ms",
            "--lock-ttl",
            "10s",
        ],
    );
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
    let err = exit_2(&output);
    assert!(err.contains("vanished during the run"), "{err}");
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    // 1000 updaters' report is far bigger than a pipe's buffer; the reader takes a few bytes
    // and goes.
    let mut child = racelab_cmd(&["run", "-n", "1000", "-s", "hash", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "a broken pipe is no error");
}

#[test]
fn a_full_disk_or_a_closed_stdout_is_one_sentence_and_exit_2() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    for args in [
        vec!["run", "-s", "hash"],
        vec![
            "bench",
            "-s",
            "hash",
            "-n",
            "1",
            "--duration",
            "50ms",
            "--no-redis-benchmark",
        ],
    ] {
        let output = racelab_cmd(&args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_no_panic(&output);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
    }
    // Discarding the report is fine, however it is done: a shell's write-only /dev/null,
    // Python's read-write subprocess.DEVNULL, or stdout closed (which Rust's runtime turns into
    // the same read-write /dev/null, so it cannot be told from DEVNULL): the exit code is the
    // verdict's.
    let bin = env!("CARGO_BIN_EXE_racelab");
    let output = racelab_cmd(&["run", "-s", "hash"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let devnull = format!(
        "import subprocess, sys; sys.exit(subprocess.run(['{bin}', 'run', '-s', 'hash'], stdout=subprocess.DEVNULL).returncode)"
    );
    let closed = format!("exec '{bin}' run -s hash >&-");
    for (program, flag, script) in [("/usr/bin/python3", "-c", devnull), ("sh", "-c", closed)] {
        let output = Command::new(program)
            .arg(flag)
            .arg(&script)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert_no_panic(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{script}: {}",
            text(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_cleans_up_like_sigterm_and_every_key_has_a_safety_ttl() {
    let redis = TestRedis::start();
    let child = racelab_cmd(&[
        "run",
        "-s",
        "naive,keys",
        "--redis-url",
        &redis.url(),
        "--think",
        "2s",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let journey = wait_for_journey(&redis).await;
    // Every key racelab made has an expiry, before and after the updaters' writes.
    assert_eq!(redis.keys_without_expiry().await, Vec::<String>::new());
    // SAFETY: sending SIGHUP to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(129), "{}", text(&output.stderr));
    assert_eq!(redis.all_keys().await, Vec::<String>::new(), "{journey}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_the_safety_ttl_and_keep_makes_keys_permanent() {
    let redis = TestRedis::start();
    let url = redis.url();
    for strategy in [
        "naive", "hash", "keys", "watch", "lua", "lock", "fenced", "cas", "function",
    ] {
        let output = racelab(&[
            "run",
            "-s",
            strategy,
            "--redis-url",
            &url,
            "--keep",
            "--key-prefix",
            strategy,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    // --keep: every key kept for as long as the user wants.
    let keys = redis.all_keys().await;
    assert!(keys.len() > 9 * 3, "{keys:?}");
    assert_eq!(redis.keys_without_expiry().await, keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delete_says_what_redis_said_and_which_keys_are_left() {
    let redis = TestRedis::start();
    let url = acl_user(&redis, "nodel", &["del", "unlink"]).await;
    let output = racelab(&["run", "-s", "naive,hash", "--redis-url", &url]);
    assert_no_panic(&output);
    let err = text(&output.stderr);
    assert!(
        err.contains("racelab: warning: naive: the run's keys are left under racelab:"),
        "{err}"
    );
    assert!(err.contains("Redis refused to delete them"), "{err}");
    assert!(err.contains("NOPERM"), "{err}");
    assert!(!err.contains("did not answer"), "{err}");
    assert!(!err.contains(":pw@"), "{err}");
    // The verdict stands: the exit code is the verdict's.
    assert_eq!(output.status.code(), Some(0), "{err}");
}

#[test]
fn history_and_report_in_one_file_are_refused_however_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("h.jsonl");
    let dotted = format!("{}/./h.jsonl", dir.path().display());
    let output = racelab(&["run", "--history", h.to_str().unwrap(), "-o", &dotted]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("interleave"));
    // A hard link to the same file, once it exists.
    std::fs::write(&h, "").unwrap();
    let link = dir.path().join("link.jsonl");
    std::fs::hard_link(&h, &link).unwrap();
    let output = racelab(&[
        "run",
        "--history",
        h.to_str().unwrap(),
        "-o",
        link.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    // Stdout redirected into the history file.
    let output = racelab_cmd(&["run", "--history", h.to_str().unwrap()])
        .stdout(std::fs::File::create(&link).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("stdout goes to"));
}

#[test]
fn empty_variables_count_as_unset_and_an_option_wins_over_the_other_variable() {
    let output = racelab_cmd(&["run", "-s", "hash"])
        .env("REDIS_URL", "")
        .env("REDIS_CLUSTER", "")
        .env("RACELAB_REDIS_SERVER", "")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let redis = TestRedis::start();
    let output = racelab_cmd(&["run", "-s", "hash", "--redis-url", &redis.url()])
        .env("REDIS_CLUSTER", "junk,,://")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn papercuts() {
    // A prefix with a newline is not letters, digits, ':' '-' '_' or '.'.
    let output = racelab(&["run", "--key-prefix", "nl\nx"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot prefix"));
    let output = racelab(&["bench", "--duration", "0s"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        !text(&output.stderr).contains("timeout"),
        "{}",
        text(&output.stderr)
    );
    let output = racelab(&["run", "-s", "hash", "--segments", "1", "-n", "2"]);
    assert!(
        text(&output.stdout).contains("· 1 segment ·"),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_key_where_the_lobby_goes_is_reported_and_left_untouched() {
    let redis = TestRedis::start();
    let mut conn = redis.conn().await;
    let lobby = "racelab:crew:{crew}:lobby";
    let () = redis::cmd("SET")
        .arg(lobby)
        .arg("the user's")
        .query_async(&mut conn)
        .await
        .unwrap();
    let output = racelab(&["worker", "--redis-url", &redis.url(), "--once"]);
    let err = exit_2(&output);
    assert!(err.contains("holds a string"), "{err}");
    assert!(!err.contains("cannot connect"), "{err}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(lobby)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "racelab changed a key it did not create");
}

#[test]
fn each_redis_error_gets_its_own_sentence_not_cannot_connect() {
    // A replica: READONLY.
    let primary = TestRedis::start();
    let port = primary.server.port().to_string();
    let replica = TestRedis::start_with(&["--replicaof", "127.0.0.1", &port]);
    let output = racelab(&["run", "-s", "hash", "--redis-url", &replica.url()]);
    let err = exit_2(&output);
    assert!(err.contains("READONLY"), "{err}");
    assert!(err.contains("its primary"), "{err}");
    assert!(!err.contains("cannot connect"), "{err}");

    // A cluster node named as a plain server.
    let node = TestRedis::start_with(&["--cluster-enabled", "yes"]);
    let output = racelab(&["run", "-s", "hash", "--redis-url", &node.url()]);
    let err = exit_2(&output);
    assert!(err.contains("--cluster"), "{err}");
    assert!(!err.contains("cannot connect"), "{err}");

    // maxclients reached: watch needs a connection per updater, and says how many.
    let small = TestRedis::start_with(&["--maxclients", "8"]);
    let output = racelab(&[
        "run",
        "-s",
        "watch",
        "-n",
        "20",
        "--redis-url",
        &small.url(),
    ]);
    let err = exit_2(&output);
    assert!(err.contains("maxclients"), "{err}");
    assert!(err.contains("need 20 connections"), "{err}");
    assert!(!err.contains("cannot connect"), "{err}");
}

#[test]
fn a_run_too_big_for_the_machine_is_refused_before_it_starts() {
    // 20,000 copies of a 100,000-segment journey: far beyond any machine's memory.
    let output = racelab(&["run", "-n", "20000", "--segments", "100000"]);
    let err = exit_2(&output);
    assert!(err.contains("would need about"), "{err}");
    assert!(err.contains("fewer updaters or segments"), "{err}");
    // hash holds no copy, so the journey's size does not multiply.
    let output = racelab(&["run", "-s", "hash", "-n", "2000", "--segments", "2000"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn a_killed_racelabs_server_directory_is_removed_by_the_next_run() {
    // A process that has ended: its pid is free (the kernel hands pids out in turn).
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let tmp = std::env::temp_dir();
    let orphan = tmp.join(format!("racelab-redis-{dead}-test"));
    let alive = tmp.join(format!("racelab-redis-{}-test", std::process::id()));
    for dir in [&orphan, &alive] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("redis.log"), "x").unwrap();
    }
    let output = racelab(&["run", "-s", "hash"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!orphan.exists(), "the dead racelab's directory stays");
    assert!(alive.exists(), "a live racelab's directory was removed");
    std::fs::remove_dir_all(&alive).unwrap();
}

#[test]
fn sigkill_leaves_no_server_behind_and_the_next_run_sweeps_its_directory() {
    let mut child = racelab_cmd(&["run", "-s", "naive", "--think", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let dir_of = |pid: u32| {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("racelab-redis-{pid}-"))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir_of(pid) {
        assert!(Instant::now() < deadline, "no server directory appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let output = racelab(&["run", "-s", "hash"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!dir_of(pid), "the killed racelab's directory was not swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_deleted_and_written_back_by_a_stale_copy_is_caught() {
    // naive, cas and lock updaters that read before the DEL write their copies back after it:
    // the journey is there at the end, but it is not the run's.
    for strategy in ["naive", "cas", "lock"] {
        let redis = TestRedis::start();
        let run = run_in_background(
            &redis,
            &[
                "run",
                "-s",
                strategy,
                "-n",
                "4",
                "--think",
                "600ms",
                "--lock-ttl",
                "10s",
            ],
        );
        let journey = wait_for_journey(&redis).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut conn = redis.conn().await;
        let _: i64 = redis::cmd("DEL")
            .arg(&journey)
            .query_async(&mut conn)
            .await
            .unwrap();
        let output = run.join().unwrap();
        assert_no_panic(&output);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{strategy}: {err}");
        assert!(err.contains("vanished during the run"), "{strategy}: {err}");
    }
}

/// A user on `redis` allowed everything but `denied` (ACL categories or commands).
async fn acl_user(redis: &TestRedis, name: &str, denied: &[&str]) -> String {
    let mut rules = vec!["~*".to_owned(), "&*".to_owned(), "+@all".to_owned()];
    rules.extend(denied.iter().map(|d| format!("-{d}")));
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    redis.acl_user(name, "pw", &rules).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_refused_halfway_leaves_no_key_behind() {
    let redis = TestRedis::start();
    let url = acl_user(&redis, "noexpire", &["pexpire", "expire"]).await;
    let output = racelab(&["run", "-s", "naive", "--redis-url", &url]);
    let err = exit_2(&output);
    assert!(err.contains("NOPERM"), "{err}");
    assert!(!err.contains("refused the connection"), "{err}");
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_release_is_refused_stops_before_the_run() {
    let redis = TestRedis::start();
    let url = acl_user(&redis, "noscript", &["evalsha", "eval"]).await;
    let started = Instant::now();
    let output = racelab(&["run", "-s", "lock", "-n", "5", "--redis-url", &url]);
    let err = exit_2(&output);
    assert!(err.contains("NOPERM"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "it waited out lock ttls"
    );
    // The lock taken to try the release has an expiry of its own.
    assert_eq!(redis.keys_without_expiry().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaves_no_key_without_an_expiry() {
    let redis = TestRedis::start();
    // Refused PEXPIRE: the card and the lobby are not written at all.
    let url = acl_user(&redis, "noexpire", &["pexpire", "expire"]).await;
    let output = racelab(&["worker", "--redis-url", &url, "--once"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
    // Killed right after joining: whatever it wrote expires by itself.
    let mut worker = racelab_cmd(&["worker", "--redis-url", &redis.url()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.all_keys().await.len() < 2 {
        assert!(Instant::now() < deadline, "the worker never joined");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(redis.keys_without_expiry().await, Vec::<String>::new());
}

#[test]
fn one_update_or_a_listing_past_its_limit_is_said_plainly() {
    let output = racelab(&["run", "-s", "naive", "-n", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("a lost update needs two"));
    let output = racelab(&["run", "-s", "naive", "-n", "1200", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_report(&output);
    let run = &report["runs"][0];
    let lost = run["lost"].as_u64().unwrap();
    let listed = run["lost_updates"].as_array().unwrap().len() as u64;
    assert_eq!(listed, 1000);
    assert_eq!(run["lost_unlisted"].as_u64().unwrap(), lost - listed);
}

#[test]
fn errors_name_no_rust_types_and_say_what_to_change() {
    let redis = TestRedis::start();
    for (args, says, never) in [
        (
            vec!["run", "--redis-url", "foo"],
            "not a usable Redis URL",
            "InvalidClientConfig",
        ),
        (
            vec![
                "run",
                "--redis-url",
                &format!("{}/99", redis.url().trim_end_matches('/')),
            ],
            "databases",
            "ResponseError",
        ),
        (
            vec!["run", "--cluster", &redis.url()],
            "--redis-url instead of --cluster",
            "cannot connect",
        ),
    ] {
        let output = racelab(&args);
        assert_no_panic(&output);
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains(never), "{args:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = journey_file(
        &dir,
        r#"{"Id":"J","Segments":[{"SegmentId":"A","Price":"x"}]}"#,
    );
    let output = racelab(&["run", "--journey", &path]);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("expected a number"), "{err}");
    assert!(!err.contains("f64"), "{err}");
}

#[test]
fn journeys_are_read_exactly_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    // Numbers a double holds exactly are taken as they are.
    let path = journey_file(
        &dir,
        r#"{"Id":"J","Segments":[{"SegmentId":"A","Tiny":1.5e-300,"Big":9.999999999999999e22}]}"#,
    );
    let output = racelab(&["run", "-s", "hash", "--journey", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // Control characters in ids would break every line they are printed on.
    let bad = journey_file(
        &dir,
        "{\"Id\":\"J\\nX\",\"Segments\":[{\"SegmentId\":\"A\"}]}",
    );
    let output = racelab(&["run", "--journey", &bad]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("control character"));
    // The journey file is never an output, however named.
    let journey = journey_file(&dir, r#"{"Id":"J","Segments":[{"SegmentId":"A"}]}"#);
    for option in ["-o", "--history"] {
        let output = racelab(&["run", "--journey", &journey, option, &journey]);
        assert_eq!(output.status.code(), Some(2), "{option}");
        assert!(
            text(&output.stderr).contains("would destroy it"),
            "{option}"
        );
    }
    assert!(
        std::fs::read_to_string(&journey)
            .unwrap()
            .contains("SegmentId")
    );
    // A symlink to a report still to come is the report.
    let h = dir.path().join("h5");
    let link = dir.path().join("h5link");
    std::os::unix::fs::symlink(&h, &link).unwrap();
    let output = racelab(&[
        "run",
        "--history",
        h.to_str().unwrap(),
        "-o",
        link.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    // Both thrown away is fine.
    let output = racelab(&[
        "run",
        "-s",
        "hash",
        "--history",
        "/dev/null",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}
