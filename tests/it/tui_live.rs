//! The TUI's runtime against a real redis-server, without a terminal: a naive run seen live by
//! the observer, a quit in the middle of a run, and a comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use racelab::RedisServer;
use racelab::Settings;
use racelab::Strategy;
use racelab::Target;
use racelab::tui::app::{App, Command, Msg};
use racelab::tui::compare::RowState;
use racelab::tui::run_view::RunState;
use racelab::tui::story::Story;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::tui_support::*;

const PREFIX: &str = "racelab-tui-test";

fn settings() -> Settings {
    Settings {
        key_prefix: PREFIX.into(),
        keep: false,
        lost_limit: 1000,
        remote: None,
        driver: None,
        service: None,
        failover_at: None,
        failover_now: None,
    }
}

async fn keys_left(target: &Target) -> Vec<String> {
    let mut conn = target.connection().await.unwrap();
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

async fn open() -> (RedisServer, Arc<Target>) {
    let server = RedisServer::start().expect("redis-server must be installed for this test");
    let target = Target::open(Some(&server.url()), Duration::from_secs(5))
        .await
        .unwrap();
    (server, Arc::new(target))
}

/// Presses Enter and starts the run it asks for, as the TUI's runtime does: the run's
/// messages, its stop and its task.
fn press_enter(
    app: &mut App,
    target: &Arc<Target>,
) -> (
    mpsc::Receiver<Msg>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let commands = app.update(key(crossterm::event::KeyCode::Enter), Instant::now());
    let [
        Command::Run {
            generation,
            strategy,
            workload,
        },
    ] = commands.as_slice()
    else {
        panic!("Enter must start a run")
    };
    let (tx, rx) = mpsc::channel(8192);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(racelab::tui::run_one(
        target.clone(),
        settings(),
        *strategy,
        workload.clone(),
        *generation,
        tx,
        stop.clone(),
    ));
    (rx, stop, handle)
}

/// Folds messages into the app until `done` says the app got what it waited for.
async fn drive(app: &mut App, rx: &mut mpsc::Receiver<Msg>, done: impl Fn(&App) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(app) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the run did not end in time")
            .expect("the run's channel closed early");
        app.update(msg, Instant::now());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_run_is_seen_losing_updates_live_and_leaves_no_key() {
    let (_server, target) = open().await;
    let mut app = app(Instant::now());
    app.workload.think = Duration::from_millis(300);
    let (mut rx, _stop, handle) = press_enter(&mut app, &target);
    drive(&mut app, &mut rx, |app| !app.busy()).await;
    handle.await.unwrap();

    let run = app.run.as_ref().unwrap();
    assert_eq!(run.state, RunState::Done);
    assert!(run.observed, "the observer never read the journey");
    assert!(
        run.lost() > 0,
        "a naive seed run with think time must lose updates"
    );
    assert_eq!(run.tally.acknowledged, 20);
    // The loss was seen while the run went on, not only in the verdict.
    assert!(
        run.story.iter().any(|s| matches!(s, Story::Lost { .. })),
        "no live loss in the story: {:#?}",
        run.story.iter().map(Story::text).collect::<Vec<_>>()
    );
    assert!(keys_left(&target).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_mid_run_stops_it_and_deletes_its_keys() {
    let (_server, target) = open().await;
    let mut app = app(Instant::now());
    app.workload.think = Duration::from_secs(20);
    let (mut rx, stop, handle) = press_enter(&mut app, &target);
    // Wait until the journey is in Redis and every updater is thinking.
    drive(&mut app, &mut rx, |app| {
        let run = app.run.as_ref().unwrap();
        run.observed && run.updaters.iter().all(|u| u.marks.len() == 1)
    })
    .await;
    assert!(!keys_left(&target).await.is_empty());
    let quit_at = Instant::now();
    stop.cancel();
    drive(&mut app, &mut rx, |app| !app.busy()).await;
    handle.await.unwrap();
    assert!(
        quit_at.elapsed() < Duration::from_secs(5),
        "the run did not stop promptly"
    );
    let run = app.run.as_ref().unwrap();
    assert!(
        matches!(&run.state, RunState::Stopped(reason) if reason == "interrupted"),
        "{:?}",
        run.state
    );
    assert!(
        keys_left(&target).await.is_empty(),
        "keys left after a quit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_runs_every_strategy() {
    let (_server, target) = open().await;
    let mut app = app(Instant::now());
    app.workload.think = Duration::from_millis(10);
    app.workload.jitter = 0.5;
    let commands = app.update(ch('c'), Instant::now());
    let [
        Command::Compare {
            generation,
            strategies,
            workload,
        },
    ] = commands.as_slice()
    else {
        panic!("c must start a comparison")
    };
    let (tx, mut rx) = mpsc::channel(8192);
    let handle = tokio::spawn(racelab::tui::compare(
        target.clone(),
        settings(),
        strategies.clone(),
        workload.clone(),
        *generation,
        tx,
        CancellationToken::new(),
    ));
    drive(&mut app, &mut rx, |app| !app.busy()).await;
    handle.await.unwrap();
    let view = app.compare.as_ref().unwrap();
    assert_eq!(view.rows.len(), Strategy::ALL.len());
    for row in &view.rows {
        assert_eq!(row.state, RowState::Done, "{}", row.strategy);
        assert!(row.tally.acknowledged > 0, "{}", row.strategy);
    }
    let naive = view
        .rows
        .iter()
        .find(|r| r.strategy == Strategy::Naive)
        .unwrap();
    assert!(naive.lost > 0);
    let hash = view
        .rows
        .iter()
        .find(|r| r.strategy == Strategy::Hash)
        .unwrap();
    assert_eq!(hash.lost, 0);
    assert!(keys_left(&target).await.is_empty());
}

/// `exec:` in the TUI (README "Race your own service"): the grid asks the user's service with
/// `get`, and the naive service's losses show live and in the verdict; its keys go with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_service_is_watched_through_its_own_get() {
    let (_server, target) = open().await;
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import redis"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a Python with the redis client (.ci/run installs python3-redis)");
    let service = Strategy::parse(&format!(
        "exec:{python} {}/examples/journey_service.py --pause 300",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut app = racelab::tui::App::new(
        service,
        workload(),
        true,
        crate::tui_support::target(),
        false,
        Instant::now(),
    );
    let (mut rx, _stop, handle) = press_enter(&mut app, &target);
    drive(&mut app, &mut rx, |app| !app.busy()).await;
    handle.await.unwrap();
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.state, RunState::Done);
    assert!(
        run.observed,
        "the grid never read the journey from the service"
    );
    assert_eq!(run.tally.acknowledged, 20);
    assert!(run.lost() > 0, "the naive service loses updates");
    // racelab sees when a service's requests go, not its reads: the story says so.
    for lost in run.story.iter().filter(|s| matches!(s, Story::Lost { .. })) {
        assert!(lost.text().contains("sent at"), "{}", lost.text());
    }
    assert!(keys_left(&target).await.is_empty());
}

/// Write skew in the TUI (README "Scenarios"): hash breaks the invariant and the story says how;
/// watch keeps it, and its lanes say the others were declined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_is_told_by_its_invariant() {
    let (_server, target) = open().await;
    for (strategy, broken) in [(Strategy::Hash, true), (Strategy::Watch, false)] {
        let mut workload = workload();
        workload.scenario = racelab::Scenario::WriteSkew;
        workload.think = Duration::from_millis(50);
        let mut app = racelab::tui::App::new(
            strategy,
            workload,
            true,
            crate::tui_support::target(),
            false,
            Instant::now(),
        );
        let (mut rx, _stop, handle) = press_enter(&mut app, &target);
        drive(&mut app, &mut rx, |app| !app.busy()).await;
        handle.await.unwrap();
        let run = app.run.as_ref().unwrap();
        assert_eq!(run.invariant_broken, Some(broken), "{strategy}");
        let verdict = run.story.back().unwrap().text();
        if broken {
            assert!(verdict.contains("write skew (G2-item)"), "{verdict}");
        } else {
            assert!(verdict.contains("the invariant held"), "{verdict}");
            assert!(
                run.updaters
                    .iter()
                    .filter(|u| u.phase == racelab::tui::lanes::Phase::Declined)
                    .count()
                    == 19
            );
        }
    }
    assert!(keys_left(&target).await.is_empty());
}
