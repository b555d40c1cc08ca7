//! A scripted naive race for the TUI's tests: what the engine and the observer would send during
//! a seed run, with exact times, so screens and state can be checked without Redis or a terminal.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use racelab::RunResult;
use racelab::Strategy;
use racelab::WorkerShare;
use racelab::Workload;
use racelab::tui::app::{App, Command, Msg, TargetInfo};
use racelab::{Event, EventKind, WriteScope};
use racelab::{Journey, SegmentState, update_status};
use racelab::{Tally, verify};

pub const UPDATERS: u32 = 20;

/// The TUI's default workload, built the way `racelab` builds it from its options.
pub fn workload() -> Workload {
    use clap::Parser;
    let cli = racelab::Cli::parse_from(["racelab", "--seed", "42"]);
    cli.options
        .workload(racelab::TUI_THINK, racelab::tui::TUI_JITTER)
        .unwrap()
}

// Events are built here only, so a change to their shape is mended in one place.

pub fn invoked_kind() -> EventKind {
    EventKind::Invoked { round: 0 }
}

pub fn read_kind() -> EventKind {
    EventKind::Read {
        round: 0,
        seen: None,
        version: None,
        segments: Vec::new(),
    }
}

pub fn ack_kind(segment: u32, read_at: Duration, latency: Duration) -> EventKind {
    EventKind::Acknowledged {
        round: 0,
        segment,
        status: update_status(segment as usize, 0),
        read_at: Some(read_at),
        seen: None,
        written_count: None,
        latency,
        scope: WriteScope::Journey,
    }
}

pub fn target() -> TargetInfo {
    TargetInfo {
        replicas: 0,
        display: "redis://127.0.0.1:6379/".into(),
        version: "7.0.15".into(),
        private: true,
        cluster: None,
    }
}

pub fn app(base: Instant) -> App {
    App::new(Strategy::Naive, workload(), true, target(), false, base)
}

pub fn key(code: crossterm::event::KeyCode) -> Msg {
    Msg::Key(crossterm::event::KeyEvent::new(
        code,
        crossterm::event::KeyModifiers::NONE,
    ))
}

pub fn ch(c: char) -> Msg {
    key(crossterm::event::KeyCode::Char(c))
}

/// The order the scripted updaters' writes land in, and when (ms after the release).
pub fn write_order() -> Vec<(u32, u64)> {
    // A fixed shuffle of 0..20: the updater with the longest think writes last and survives.
    let order = [
        8, 13, 0, 18, 4, 19, 2, 11, 6, 15, 9, 1, 17, 12, 3, 7, 16, 10, 14, 5,
    ];
    order
        .iter()
        .enumerate()
        .map(|(k, &u)| (u, 640 + 55 * k as u64))
        .collect()
}

/// The journey as Redis holds it after `writer`'s stale whole-journey write: every other
/// segment back to what everyone read at the start, the writer's own changed.
pub fn naive_state(journey: &Journey, writer: Option<u32>) -> Vec<SegmentState> {
    journey
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| match writer {
            Some(w) if w as usize == i => SegmentState {
                status: update_status(i, 0).to_owned(),
                update_count: 1,
            },
            _ => SegmentState {
                status: s.status.clone(),
                update_count: 0,
            },
        })
        .collect()
}

/// Feeds the app a naive seed run up to `writes` landed writes, as the runtime would: events
/// stamped when received, observer reads after each write. Returns the tally the engine would
/// have kept and the instant the script got to.
pub fn play_naive(app: &mut App, base: Instant, writes: usize) -> (Tally, Instant, u64) {
    play_naive_in(app, base, writes, None)
}

/// How a crew of `workers` shares `updaters`, as `Crew::plan` does: contiguous runs of updaters
/// in the order the workers joined. Worker `wK` is pid 4241+K on `build-7`.
pub fn plan(workers: u32, updaters: u32) -> Vec<WorkerShare> {
    (0..workers)
        .map(|w| {
            let split = |w: u32| (u64::from(updaters) * u64::from(w) / u64::from(workers)) as u32;
            let (start, end) = (split(w), split(w + 1));
            WorkerShare {
                worker: format!("w{}", w + 1),
                id: format!("{:08x}", 0x4f1c_9a20 + w),
                host: "build-7".into(),
                pid: 4242 + w,
                first_updater: (start < end).then_some(start + 1),
                last_updater: (start < end).then_some(end),
                vanished: None,
                left: false,
            }
        })
        .collect()
}

/// Records `event` in `tally` and hands it to the app a millisecond after it happened.
fn deliver(app: &mut App, tally: &mut Tally, base: Instant, generation: u64, event: Event) {
    tally.record(&event);
    let received = base + event.at + Duration::from_millis(1);
    app.update(
        Msg::Event {
            generation,
            received,
            event,
        },
        received,
    );
}

/// [`play_naive`], its updaters run by the workers of `shares` when given: the runtime tells the
/// app the plan before the first event.
pub fn play_naive_in(
    app: &mut App,
    base: Instant,
    writes: usize,
    shares: Option<Vec<WorkerShare>>,
) -> (Tally, Instant, u64) {
    let commands = app.update(key(crossterm::event::KeyCode::Enter), base);
    let generation = match commands.as_slice() {
        [Command::Run { generation, .. }] => *generation,
        other => panic!("Enter should start one run, got {} commands", other.len()),
    };
    if let Some(shares) = shares {
        app.update(Msg::WorkersPlanned { generation, shares }, base);
    }
    let journey = Journey::seed_fixture().unwrap();
    let mut tally = Tally::new(journey.segments.len());
    let send = |app: &mut App, tally: &mut Tally, at_ms: f64, updater: u32, kind: EventKind| {
        let at = Duration::from_secs_f64(at_ms / 1000.0);
        deliver(app, tally, base, generation, Event { at, updater, kind });
    };
    for u in 0..UPDATERS {
        send(app, &mut tally, 0.5, u, invoked_kind());
        send(
            app,
            &mut tally,
            1.0 + f64::from(u) * 0.2,
            u,
            EventKind::Reading { round: 0 },
        );
        send(app, &mut tally, 1.5 + f64::from(u) * 0.2, u, read_kind());
    }
    let mut now = base + Duration::from_millis(10);
    for (updater, at) in write_order().into_iter().take(writes) {
        send(
            app,
            &mut tally,
            at as f64 - 2.0,
            updater,
            EventKind::Writing { round: 0 },
        );
        send(
            app,
            &mut tally,
            at as f64,
            updater,
            ack_kind(
                updater,
                Duration::from_secs_f64((1.5 + f64::from(updater) * 0.2) / 1000.0),
                Duration::from_millis(at - 1),
            ),
        );
        send(app, &mut tally, at as f64 + 0.1, updater, EventKind::Done);
        now = base + Duration::from_millis(at + 10);
        app.update(
            Msg::Observed {
                generation,
                read_started: now,
                states: naive_state(&journey, Some(updater)),
            },
            now + Duration::from_millis(2),
        );
        app.update(Msg::Tick, now + Duration::from_millis(3));
    }
    (tally, now, generation)
}

/// The whole naive run, ended the way the engine ends it.
pub fn finished_naive(base: Instant) -> App {
    let mut app = app(base);
    let (tally, now, generation) = play_naive(&mut app, base, UPDATERS as usize);
    let journey = Journey::seed_fixture().unwrap();
    let last = write_order().last().map(|(u, _)| *u);
    let states = naive_state(&journey, last);
    let truth = verify(&tally, &journey, &states, 1000);
    let result = RunResult {
        strategy: Strategy::Naive,
        run_id: "0a1b2c3d".into(),
        tally,
        truth,
        states,
        stopped: None,
        unverified: None,
        keys_left: None,
        workers: Vec::new(),
        taken: Vec::new(),
        user: None,
        invariant: None,
        failover: None,
    };
    app.update(
        Msg::RunFinished {
            generation,
            result: Ok(result),
        },
        now + Duration::from_millis(20),
    );
    app
}

/// A finished run of `strategy` with no loss, as a comparison row receives it.
pub fn intact_result(strategy: Strategy, updates: u32, lost: u32) -> RunResult {
    let journey = Journey::seed_fixture().unwrap();
    let mut tally = Tally::new(journey.segments.len());
    let mut states = naive_state(&journey, None);
    for u in 0..updates {
        let event = Event {
            at: Duration::from_millis(600 + u64::from(u) * 40),
            updater: u,
            kind: ack_kind(
                u,
                Duration::from_millis(2),
                Duration::from_millis(600 + u64::from(u) * 40),
            ),
        };
        tally.record(&event);
        if u >= lost {
            states[u as usize] = SegmentState {
                status: update_status(u as usize, 0).to_owned(),
                update_count: 1,
            };
        }
    }
    let truth = verify(&tally, &journey, &states, 1000);
    RunResult {
        strategy,
        run_id: "0a1b2c3d".into(),
        tally,
        truth,
        states,
        stopped: None,
        unverified: None,
        keys_left: None,
        workers: Vec::new(),
        taken: Vec::new(),
        user: None,
        invariant: None,
        failover: None,
    }
}

/// The screen as text, one line per row, trailing spaces trimmed.
pub fn screen_text(buffer: &ratatui::buffer::Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn retry_kind(attempt: u32) -> EventKind {
    EventKind::Retry {
        round: 0,
        attempt,
        reason: racelab::RetryReason::LockBusy,
    }
}

pub fn lock_wait_kind() -> EventKind {
    EventKind::WaitingForLock { round: 0 }
}

/// The reason the crew gives when worker `w2` vanished after the release.
pub const W2_VANISHED: &str = "its card expired: the process is gone or cut off from Redis; 10 updates it had in flight are unknown";

/// A naive run in two workers where `w2` vanished while its ten updaters were thinking: the crew
/// reports their updates unknown, `w1`'s updaters write on, and the run ends stopped with the
/// vanished worker in its shares, as the engine ends it.
pub fn vanished_worker_run(base: Instant) -> App {
    let mut app = app(base);
    app.workers = Some(2);
    let shares = plan(2, UPDATERS);
    let (mut tally, _, generation) = play_naive_in(&mut app, base, 0, Some(shares.clone()));
    let journey = Journey::seed_fixture().unwrap();
    let mut send = |app: &mut App, at_ms: u64, updater: u32, kind: EventKind| {
        let at = Duration::from_millis(at_ms);
        deliver(
            app,
            &mut tally,
            base,
            generation,
            Event { at, updater, kind },
        );
    };
    for u in 10..UPDATERS {
        send(
            &mut app,
            700,
            u,
            EventKind::Failed {
                round: 0,
                segment: u,
                status: update_status(u as usize, 0),
                outcome: racelab::Outcome::Unknown,
                reason: "worker w2 vanished".into(),
                gave_up: false,
            },
        );
        send(&mut app, 700, u, EventKind::Done);
    }
    let mut last = 0;
    for (k, u) in (0..10).enumerate() {
        let at = 800 + 60 * k as u64;
        send(
            &mut app,
            at,
            u,
            ack_kind(u, Duration::from_millis(2), Duration::from_millis(at - 1)),
        );
        send(&mut app, at, u, EventKind::Done);
        last = u;
    }
    let states = naive_state(&journey, Some(last));
    let truth = verify(&tally, &journey, &states, 1000);
    let mut workers = shares;
    workers[1].vanished = Some(W2_VANISHED.into());
    let result = RunResult {
        strategy: Strategy::Naive,
        run_id: "0a1b2c3d".into(),
        tally,
        truth,
        states,
        stopped: Some(format!("worker w2 vanished at 0.7s ({W2_VANISHED})")),
        unverified: None,
        keys_left: None,
        workers,
        taken: Vec::new(),
        user: None,
        invariant: None,
        failover: None,
    };
    app.update(
        Msg::RunFinished {
            generation,
            result: Ok(result),
        },
        base + Duration::from_millis(1500),
    );
    app
}
