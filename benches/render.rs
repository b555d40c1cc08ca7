//! One TUI frame of a large run: 1,000 segments and 1,000 updaters mid-race, drawn into a
//! 200×60 buffer. `cargo bench --bench render` prints the time per frame (target: under 2 ms).
//! No Redis, no terminal: the state is fed the events a run would send.

use std::time::{Duration, Instant};

use racelab::Strategy;
use racelab::Tuning;
use racelab::Workload;
use racelab::tui::app::{App, Msg, TargetInfo};
use racelab::tui::ui;
use racelab::{Event, EventKind, WriteScope};
use racelab::{Journey, SegmentState, update_status};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZE: u32 = 1000;

fn main() {
    let journey = Journey::seed_fixture()
        .expect("fixture")
        .with_segments(SIZE as usize);
    let workload = Workload {
        journey: std::sync::Arc::new(journey.clone()),
        updaters: SIZE,
        rounds: 1,
        think: Duration::from_millis(600),
        jitter: 2.0,
        seed: 1,
        tuning: Tuning {
            backoff: racelab::Backoff::Exp,
            lock_ttl: Duration::from_secs(6),
            max_retries: 100,
        },
        deadline: None,
        schedule: None,
        processes: 1,
        scenario: racelab::Scenario::LostUpdate,
    };
    let target = TargetInfo {
        replicas: 0,
        display: "redis://127.0.0.1:6379/".into(),
        version: "7.0.15".into(),
        private: true,
        cluster: None,
    };
    let start = Instant::now();
    let mut app = App::new(Strategy::Naive, workload, true, target, true, start);
    let enter = crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Enter,
        crossterm::event::KeyModifiers::NONE,
    );
    app.update(Msg::Key(enter), start);
    let generation = app.current_generation().expect("a run started");

    // Everyone has read; half have written, and the observer sees a quarter of those lost.
    let at = |ms: u64| Duration::from_millis(ms);
    for updater in 0..SIZE {
        let event = |at, kind| Msg::Event {
            generation,
            received: start + at,
            event: Event { at, updater, kind },
        };
        app.update(event(at(1), EventKind::Invoked { round: 0 }), start + at(1));
        let read = EventKind::Read {
            round: 0,
            seen: None,
            version: None,
            segments: Vec::new(),
        };
        app.update(event(at(2), read), start + at(2));
        if updater % 2 == 0 {
            let ack = EventKind::Acknowledged {
                round: 0,
                segment: updater,
                status: update_status(updater as usize, 0),
                read_at: Some(at(2)),
                seen: None,
                written_count: Some(1),
                latency: at(600),
                scope: WriteScope::Journey,
            };
            app.update(event(at(600), ack), start + at(600));
        }
    }
    let states: Vec<SegmentState> = (0..SIZE)
        .map(|i| SegmentState {
            status: if i % 8 == 0 {
                "Scheduled".into()
            } else {
                update_status(i as usize, 0).into()
            },
            update_count: u64::from(i % 8 != 0 && i % 2 == 0),
        })
        .collect();
    app.update(
        Msg::Observed {
            generation,
            read_started: start + at(700),
            states,
        },
        start + at(700),
    );

    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("test backend");
    for _ in 0..20 {
        terminal.draw(|f| ui::render(f, &app)).expect("draw");
    }
    let frames = 300;
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        let began = Instant::now();
        terminal.draw(|f| ui::render(f, &app)).expect("draw");
        times.push(began.elapsed());
    }
    times.sort();
    let median = times[frames / 2];
    let p99 = times[frames * 99 / 100];
    println!(
        "render: 1,000 segments × 1,000 updaters, 200×60 frame: median {:.3} ms, p99 {:.3} ms ({frames} frames)",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
