//! Chosen interleavings on a real Redis (README "Schedules"): `--schedule` decides which
//! updater's step reaches Redis first, so each outcome below is exact, every time.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{TestRedis, losses, racelab, run, workload};
use racelab::{Role, RunResult, Schedule, Strategy, Workload};

/// `updaters` updaters on `segments` segments following `schedule`, no think time.
fn scheduled(updaters: u32, segments: usize, schedule: &str) -> Workload {
    let mut workload = workload(updaters, segments, 1, Duration::ZERO);
    workload.schedule = Some(Schedule::parse(schedule).unwrap());
    workload
}

/// (updater, eraser) of each lost update, 1-based.
/// A run of `strategy` whose updaters take each step only when the returned driver says so.
fn driven(
    target: &std::sync::Arc<racelab::Target>,
    strategy: Strategy,
    workload: &Workload,
) -> (racelab::Driver, tokio::task::JoinHandle<RunResult>) {
    let driver = racelab::Driver::new(workload.updaters);
    let mut settings = crate::common::settings();
    settings.driver = Some(driver.clone());
    let (target, workload) = (target.clone(), workload.clone());
    let run = tokio::spawn(async move {
        racelab::run(
            &target,
            strategy,
            &workload,
            &settings,
            None,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap()
    });
    (driver, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_loses_the_first_write_under_1_2_1_2_every_time() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let losing = scheduled(2, 20, "1 2 1 2");
    let safe = scheduled(2, 20, "1 1 2 2");
    for _ in 0..100 {
        // #1 reads, #2 reads, #1 writes, #2 writes its copy without #1's update.
        let result = run(&target, Strategy::Naive, &losing).await;
        assert_eq!(losses(&result), vec![(1, Some(2))]);
        assert_eq!(result.tally.acknowledged, 2);
    }
    for _ in 0..20 {
        // #2 reads after #1 wrote: nothing to lose.
        let result = run(&target, Strategy::Naive, &safe).await;
        assert_eq!(losses(&result), vec![]);
        assert_eq!(result.truth.applied, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_aborts_the_second_exec_and_retries_and_loses_nothing() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = scheduled(2, 20, "1 2 1 2");
    for _ in 0..20 {
        let result = run(&target, Strategy::Watch, &workload).await;
        assert_eq!(losses(&result), vec![]);
        assert_eq!(result.truth.applied, 2);
        // #2's EXEC found the journey changed since its WATCH: one conflict, one retry.
        assert_eq!(result.tally.conflicts, 1);
        assert_eq!(result.tally.retries, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_loses_once_time_lets_it_expire_and_the_fence_refuses_the_stale_holder() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // #1 takes the lock and reads; its lock expires (t); #2 takes the lock and reads the same
    // state; #1 writes; #2 writes its copy without #1's update.
    let mut workload = scheduled(2, 20, "1 1 t 2 2 1 2");
    workload.tuning.lock_ttl = Duration::from_millis(100);
    let lock = run(&target, Strategy::Lock, &workload).await;
    assert_eq!(losses(&lock), vec![(1, Some(2))]);
    // The same interleaving cannot lose with a fence: #1's write carries an outdated token.
    let fenced = run(&target, Strategy::Fenced, &workload).await;
    assert_eq!(losses(&fenced), vec![]);
    assert!(
        fenced.tally.retries >= 1,
        "the stale holder's write was not refused"
    );
    // Without the expiry, the lock holds: #2 waits for #1 to release.
    let mut held = scheduled(2, 20, "1 1 2 2 1 2");
    held.tuning.lock_ttl = Duration::from_secs(10);
    let result = run(&target, Strategy::Lock, &held).await;
    assert_eq!(losses(&result), vec![]);
    assert_eq!(result.truth.applied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_loses_only_when_updaters_share_a_segment() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // Updaters 1 and 3 share SEG-001 when there are 2 segments.
    let shared = run(&target, Strategy::Keys, &scheduled(3, 2, "1 3 1 3")).await;
    assert_eq!(losses(&shared), vec![(1, Some(3))]);
    let apart = run(&target, Strategy::Keys, &scheduled(2, 20, "1 2 1 2")).await;
    assert_eq!(losses(&apart), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixes_hold_under_the_losing_interleaving() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    // The two-step fixes interleave as naive does; the one-step ones have nothing to interleave
    // (a longer schedule would name an updater that is done).
    for (strategy, schedule) in [
        (Strategy::Cas, "1 2 1 2"),
        (Strategy::Watch, "1 2 1 2"),
        (Strategy::Hash, "2 1"),
        (Strategy::Lua, "2 1"),
        (Strategy::Function, "2 1"),
    ] {
        let result = run(&target, strategy, &scheduled(2, 20, schedule)).await;
        assert_eq!(losses(&result), vec![], "{strategy}");
        assert_eq!(result.truth.applied, 2, "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_schedule_gives_the_same_outcome() {
    let redis = TestRedis::start();
    let target = redis.target().await;
    let workload = scheduled(3, 20, "1 2 3 2 1 3");
    let first = run(&target, Strategy::Naive, &workload).await;
    for _ in 0..10 {
        let again = run(&target, Strategy::Naive, &workload).await;
        assert_eq!(losses(&again), losses(&first));
        assert_eq!(again.states, first.states);
    }
}

#[test]
fn bad_schedules_are_one_sentence_naming_the_token() {
    for (args, says) in [
        (vec!["run", "-n", "2", "--schedule", "1 x"], "token 2"),
        (
            vec!["run", "-n", "2", "--schedule", "1 3"],
            "names updater #3",
        ),
        (
            vec!["run", "-n", "2", "--schedule", "1 1 1 2"],
            "#1 has already made all its updates",
        ),
        (
            vec!["run", "--schedule", "1", "--workers", "2"],
            "leave out --workers",
        ),
    ] {
        let output = racelab(&args);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_report_and_the_history_say_which_schedule_ran() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.jsonl");
    let output = racelab(&[
        "run",
        "-s",
        "naive,watch",
        "-n",
        "2",
        "--schedule",
        "1,2,1,2",
        "--format",
        "json",
        "--history",
        history.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    crate::common::assert_schema(&report);
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["schedule"], "1 2 1 2", "{run}");
    }
    // naive may lose under a schedule: whichever interleaving the user chose, auto expects either.
    assert_eq!(report["runs"][0]["expected"], "either");
    assert_eq!(report["runs"][0]["lost"], 1);
    assert_eq!(report["runs"][1]["expected"], "intact");
    let lines = std::fs::read_to_string(&history).unwrap();
    let schedules = lines
        .lines()
        .filter(|l| l.contains(r#""kind":"schedule""#) && l.contains(r#""schedule":"1 2 1 2""#))
        .count();
    assert_eq!(schedules, 2, "{lines}");
}

fn prove(args: &[&str]) -> (Output, serde_json::Value) {
    let mut all = vec!["prove"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let output = racelab(&all);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

fn result<'a>(
    report: &'a serde_json::Value,
    strategy: &str,
    layout: &str,
) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["strategy"] == strategy && r["layout"] == layout)
        .unwrap_or_else(|| panic!("no {strategy} {layout} in {report}"))
}

#[test]
fn prove_finds_every_losing_interleaving_of_naive_and_keys_and_none_for_the_fixes() {
    let (output, report) = prove(&["-n", "2"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../assets/prove.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["retry_bound"], 2);
    // Two updaters of two steps: 4!/(2!·2!) = 6 interleavings; 4 of them put both reads before
    // a write, and the shortest of those is 1 2 1 2.
    for layout in ["different-segments", "same-segment"] {
        let naive = result(&report, "naive", layout);
        assert_eq!(naive["schedules"], 6, "{naive}");
        assert_eq!(naive["losing"], 4, "{naive}");
        assert_eq!(naive["shortest"], "1 2 1 2", "{naive}");
        assert_eq!(naive["expected"], "lost");
    }
    // keys loses only when the updaters share a segment.
    assert_eq!(result(&report, "keys", "different-segments")["losing"], 0);
    assert_eq!(result(&report, "keys", "same-segment")["losing"], 4);
    // Every fix holds under every interleaving, including watch's and cas's retries.
    for strategy in ["hash", "watch", "lua", "lock", "fenced", "cas", "function"] {
        for layout in ["different-segments", "same-segment"] {
            let r = result(&report, strategy, layout);
            assert_eq!(r["losing"], 0, "{r}");
            assert_eq!(r["ok"], true, "{r}");
        }
    }
    // The retrying strategies' interleavings include their retries: more than naive's 6.
    assert!(
        result(&report, "watch", "same-segment")["schedules"]
            .as_u64()
            .unwrap()
            > 2
    );
    assert!(
        result(&report, "lock", "same-segment")["schedules"]
            .as_u64()
            .unwrap()
            > 6
    );
}

#[test]
fn prove_with_three_updaters_counts_every_interleaving() {
    let (output, report) = prove(&["-n", "3", "-s", "naive,hash"]);
    assert_eq!(output.status.code(), Some(0));
    // 6!/(2!·2!·2!) = 90 for naive's two steps each; 3! = 6 for hash's one.
    let naive = result(&report, "naive", "different-segments");
    assert_eq!(naive["schedules"], 90, "{naive}");
    assert_eq!(result(&report, "hash", "same-segment")["schedules"], 6);
    // The shortest losing schedule runs as it is with run --schedule, and loses there too.
    let shortest = naive["shortest"].as_str().unwrap().to_owned();
    let run = racelab(&[
        "run",
        "-s",
        "naive",
        "-n",
        "3",
        "--schedule",
        &shortest,
        "--expect",
        "lost",
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn prove_refuses_more_updaters_than_it_can_enumerate() {
    let output = racelab(&["prove", "-n", "4"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--updaters"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_steps_a_run_one_step_at_a_time() {
    let redis = TestRedis::start();
    let target = std::sync::Arc::new(redis.target().await);
    let workload = workload(2, 20, 1, Duration::ZERO);
    let (driver, run) = driven(&target, Strategy::Naive, &workload);
    // Both updaters wait before their read; nothing moves until the driver says so.
    assert_eq!(driver.waiting().await, vec![1, 2]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(driver.waiting().await, vec![1, 2]);
    // Each waits with the Redis command it will send next, and each step comes back with
    // Redis's reply.
    let next = driver.next_steps().await;
    assert_eq!(next.len(), 2);
    for (_, step) in &next {
        let step = step.as_ref().unwrap();
        assert_eq!(
            (step.role, step.command.as_ref()),
            (Role::Read, "GET journey")
        );
    }
    let mut replies = Vec::new();
    for updater in [1, 2, 1, 2] {
        let choice = driver.step(updater).await.unwrap();
        assert_eq!(choice.updater, updater);
        let step = choice.step.unwrap();
        replies.push((
            step.command.into_owned(),
            choice.reply.unwrap().into_owned(),
        ));
    }
    assert_eq!(
        replies,
        vec![
            ("GET journey".to_owned(), "Scheduled (count 0)".to_owned()),
            ("GET journey".to_owned(), "Scheduled (count 0)".to_owned()),
            ("SET journey".to_owned(), "OK".to_owned()),
            ("SET journey".to_owned(), "OK".to_owned()),
        ]
    );
    assert_eq!(driver.waiting().await, Vec::<u32>::new());
    let err = driver.step(1).await.unwrap_err();
    assert!(err.contains("not waiting"), "{err}");
    let result = run.await.unwrap();
    assert_eq!(losses(&result), vec![(1, Some(2))]);
    let taken: Vec<u32> = driver.taken().iter().map(|c| c.updater).collect();
    assert_eq!(taken, vec![1, 2, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_prove_leaves_no_key_behind() {
    let redis = TestRedis::start();
    let child = Command::new(env!("CARGO_BIN_EXE_racelab"))
        .args([
            "prove",
            "-n",
            "3",
            "-s",
            "lock",
            "--redis-url",
            &redis.url(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.all_keys().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "prove never ran a schedule"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(redis.all_keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_sees_a_busy_lock_and_can_let_the_rest_run_free() {
    let redis = TestRedis::start();
    let target = std::sync::Arc::new(redis.target().await);
    let workload = workload(2, 20, 1, Duration::ZERO);
    let (driver, run) = driven(&target, Strategy::Lock, &workload);
    let next = driver.next_steps().await;
    let ttl = workload.tuning.lock_ttl.as_millis();
    for (_, step) in &next {
        let step = step.as_ref().unwrap();
        assert_eq!(step.role, Role::Lock);
        assert_eq!(step.command, format!("SET lock NX PX {ttl}"));
    }
    let first = driver.step(1).await.unwrap();
    assert_eq!(first.reply.as_deref(), Some("OK: the lock is taken"));
    let second = driver.step(2).await.unwrap();
    assert_eq!(second.reply.as_deref(), Some("nil: the lock is busy"));
    // #2 tries again at its next step; #1 goes on to read.
    let next = driver.next_steps().await;
    let roles: Vec<(u32, Role)> = next
        .iter()
        .map(|(u, s)| (*u, s.as_ref().unwrap().role))
        .collect();
    assert_eq!(roles, vec![(1, Role::Read), (2, Role::Lock)]);
    driver.free();
    let result = run.await.unwrap();
    assert!(losses(&result).is_empty());
    assert_eq!(result.truth.applied, 2);
}

/// Every strategy's every step names its Redis command and comes back with Redis's reply, so
/// the TUI's step mode can show each one (README "Step mode"), retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategys_steps_name_their_command_and_reply() {
    let redis = TestRedis::start();
    let target = std::sync::Arc::new(redis.target().await);
    for &strategy in Strategy::ALL {
        let workload = workload(2, 20, 1, Duration::ZERO);
        let (driver, run) = driven(&target, strategy, &workload);
        // Alternate while both wait, so the optimistic ones conflict and retry.
        let mut turn = 0;
        let mut replies = Vec::new();
        loop {
            let waiting = driver.waiting().await;
            if waiting.is_empty() {
                break;
            }
            let updater = waiting[turn % waiting.len()];
            turn += 1;
            let choice = driver.step(updater).await.unwrap();
            let step = choice
                .step
                .unwrap_or_else(|| panic!("{strategy}: a step without a name"));
            assert!(!step.command.is_empty(), "{strategy}");
            let reply = choice.reply.unwrap_or_else(|| {
                panic!(
                    "{strategy}: #{updater}'s {} came back without a reply",
                    step.command
                )
            });
            replies.push(reply.into_owned());
        }
        // The retries show as Redis's refusals.
        let refused = match strategy {
            Strategy::Watch => Some("nil: EXEC aborted"),
            Strategy::Cas => Some("0: conflict"),
            Strategy::Lock | Strategy::Fenced => Some("nil: the lock is busy"),
            _ => None,
        };
        if let Some(refused) = refused {
            assert!(
                replies.iter().any(|r| r.starts_with(refused)),
                "{strategy}: {replies:?}"
            );
        }
        let result = run.await.unwrap();
        assert!(result.is_complete(), "{strategy}: {:?}", result.stopped);
        assert_eq!(result.tally.acknowledged, 2, "{strategy}");
    }
}
