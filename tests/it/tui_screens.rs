//! Whole screens on a `TestBackend` at 80×24 and 120×40: idle, mid-run, after a naive run with
//! losses, the comparison and the help. Each is checked for what it must say, and against a plain
//! text snapshot in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1 cargo test --test it tui_screens`
//! rewrites them after an intended change; review the diff).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use racelab::Strategy;
use racelab::tui::app::{App, Command, Msg};
use racelab::tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::tui_support::*;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::render(f, app)).unwrap();
    screen_text(terminal.backend().buffer())
}

fn snapshot(name: &str, width: u16, height: u16, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}_{width}x{height}.txt"));
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(&path) {
        Ok(expected) if !update => assert_eq!(
            text, expected,
            "\nscreen {name} at {width}x{height} changed; if intended, rerun with UPDATE_SNAPSHOTS=1\n{text}"
        ),
        _ => std::fs::write(&path, text).unwrap(),
    }
}

fn check(name: &str, app: &App, musts: &[&str]) {
    for (w, h) in SIZES {
        let text = screen(app, w, h);
        for must in musts {
            assert!(
                text.contains(must),
                "{name} at {w}x{h} lacks {must:?}:\n{text}"
            );
        }
        snapshot(name, w, h, &text);
    }
}

#[test]
fn idle() {
    let app = app(Instant::now());
    check(
        "idle",
        &app,
        &[
            "naive",
            "20 updaters · 20 segments · 1 round · think 600 ms–1.80 s",
            "Redis 7.0.15 (private redis-server)",
            "idle: press Enter to run naive",
            "· SEG-001 Scheduled",
            "· SEG-020 Scheduled",
            "20 untouched",
            "Enter run",
            "q quit",
        ],
    );
}

#[test]
fn the_header_says_the_run_is_on_a_cluster_with_the_journeys_slot_and_node() {
    let mut target = target();
    target.cluster = Some(racelab::ClusterPlace {
        slot: 10736,
        node: "127.0.0.1:7001".into(),
        primaries: 3,
    });
    let app = App::new(
        Strategy::Naive,
        workload(),
        true,
        target,
        false,
        Instant::now(),
    );
    for (w, h) in SIZES {
        let text = screen(&app, w, h);
        let header = text.lines().nth(1).unwrap_or_default();
        assert!(
            header.contains("Redis 7.0.15 cluster · slot 10736 on 127.0.0.1:7001 · idle"),
            "at {w}x{h}:\n{text}"
        );
    }
}

#[test]
fn mid_run() {
    let base = Instant::now();
    let mut app = app(base);
    play_naive(&mut app, base, 8);
    let order = write_order();
    let latest = order[7].0;
    let erased = order[6].0;
    check(
        "mid_run",
        &app,
        &[
            "● running naive",
            "in Redis now · naive",
            "updating",
            &format!("✗ SEG-{:03} Scheduled ×#{}", erased + 1, latest + 1),
            "thinking",
            "R──",
            "wrote its stale copy",
            "applied 1",
            "lost 7",
        ],
    );
    // The header names the running run's settings, not the next one's.
    let text = screen(&app, 80, 24);
    assert!(text.contains("20 updaters"), "{text}");
}

#[test]
fn with_workers_the_header_counts_them_and_each_lane_names_its_worker() {
    let base = Instant::now();
    let mut idle = app(base);
    idle.workers = Some(2);
    for (w, h) in SIZES {
        let text = screen(&idle, w, h);
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.contains("20 updaters in 2 workers · 20 segments")),
            "at {w}x{h}:\n{text}"
        );
        assert!(text.contains("20 updaters, spread over 2 worker"), "{text}");
    }

    let mut app = app(base);
    app.workers = Some(2);
    play_naive_in(&mut app, base, 8, Some(plan(2, UPDATERS)));
    check(
        "workers_mid_run",
        &app,
        &[
            "● running naive",
            "20 updaters in 2 workers",
            "#2  w1 thinking",
            "#10 w1 ",
            "lost 7",
        ],
    );
    // Every lane fits at 120x40: the second worker's too.
    let text = screen(&app, 120, 40);
    assert!(text.contains("#11 w2 "), "{text}");
    assert!(text.contains("#20 w2 "), "{text}");
    assert!(
        text.contains("updaters run in workers: w1 #1–#10 (pid 4242 on build-7), w2"),
        "{text}"
    );
}

#[test]
fn a_worker_that_vanished_is_on_the_screen() {
    let app = vanished_worker_run(Instant::now());
    check(
        "workers_vanished",
        &app,
        &[
            "20 updaters in 1 worker ",
            "naive stopped after",
            "naive: stopped early (worker w2",
            "unknown 10",
        ],
    );
    let text = screen(&app, 120, 40);
    assert!(text.contains("#15 w2 failed"), "{text}");
    assert!(
        text.contains("worker w2 vanished, with updaters #11–#20 (pid 4243 on"),
        "{text}"
    );
}

#[test]
fn after_a_naive_run_with_losses() {
    let app = finished_naive(Instant::now());
    let survivor = write_order().last().unwrap().0;
    check(
        "naive_done",
        &app,
        &[
            "naive done in",
            "19 of 20 updates lost",
            "in Redis after naive",
            "✗ SEG-001 Scheduled ×#",
            &format!("✓ SEG-{:03}", survivor + 1),
            "19 lost",
            "lost 19",
            "applied 1",
            "19 of 20 acknowledged updates",
            "done",
            "✗",
        ],
    );
}

#[test]
fn compare_view() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(ch('c'), base);
    let [Command::Compare { generation, .. }] = commands.as_slice() else {
        panic!("c must start a comparison")
    };
    let generation = *generation;
    let mut at = base;
    for (k, &strategy) in Strategy::ALL.iter().enumerate() {
        at += Duration::from_secs(2);
        app.update(
            Msg::CompareStarted {
                generation,
                strategy,
            },
            at,
        );
        // The seed's bug and the wrong fixes that lose like it.
        let loses = matches!(
            strategy,
            Strategy::Naive | Strategy::Multi | Strategy::WatchOther
        );
        let lost = if loses { 19 } else { 0 };
        let result = intact_result(strategy, 20 - k as u32 % 3, lost);
        app.update(
            Msg::CompareFinished {
                generation,
                strategy,
                result: Ok(result),
            },
            at + Duration::from_millis(1800),
        );
    }
    app.update(Msg::CompareDone { generation }, at + Duration::from_secs(2));
    let mut musts = vec![
        "Compare: every strategy on 20 updaters × 20 segments, think 600 ms".to_owned(),
        "strategy".to_owned(),
        "✗ lost".to_owned(),
        "✓ intact".to_owned(),
        "local-mutex*".to_owned(),
        "* wrong fix: looks right, loses updates".to_owned(),
        "comparison done in".to_owned(),
        "█".to_owned(),
    ];
    for s in Strategy::ALL {
        musts.push(s.name().to_owned());
    }
    let musts: Vec<&str> = musts.iter().map(String::as_str).collect();
    check("compare", &app, &musts);
}

#[test]
fn help() {
    let base = Instant::now();
    let mut app = app(base);
    app.update(ch('?'), base);
    let mut musts: Vec<&str> = ui::HELP.iter().map(|(k, _)| *k).collect();
    musts.extend([
        "racelab keyboard",
        "✗ lost",
        "· untouched",
        "~ updating",
        "✓ applied",
    ]);
    check("help", &app, &musts);
}

#[test]
fn a_too_small_terminal_says_so() {
    let app = app(Instant::now());
    let text = screen(&app, 40, 10);
    assert!(text.contains("racelab needs at least"), "{text}");
    assert!(text.contains("40×10"), "{text}");
}

#[test]
fn every_size_renders_without_panicking() {
    let base = Instant::now();
    let idle = app(base);
    let mut mid = app(base);
    play_naive(&mut mid, base, 5);
    let done = finished_naive(base);
    let mut help = app(base);
    help.update(ch('?'), base);
    let mut compare = app(base);
    compare.update(ch('c'), base);
    let mut workers = app(base);
    workers.workers = Some(2);
    play_naive_in(&mut workers, base, 5, Some(plan(2, UPDATERS)));
    let vanished = vanished_worker_run(base);
    for app in [&idle, &mid, &done, &help, &compare, &workers, &vanished] {
        // Edges of the layout: too small, just big enough, the two snapshot sizes, large.
        for width in [1, 30, 59, 60, 61, 80, 121, 200] {
            for height in [1, 10, 15, 16, 17, 24, 48] {
                screen(app, width, height);
            }
        }
    }
}

#[test]
fn step_mode() {
    let base = Instant::now();
    let mut app = crate::tui_step::two_updaters(base);
    crate::tui_step::naive_steps(&mut app, base, false);
    check(
        "step_mode",
        &app,
        &[
            "schedule: 1 2 1",
            "▶#2",
            "read at step 2)",
            "✓ SEG-001 Departed",
            "3 #1 SET journey → OK",
            "Space step",
        ],
    );
    let mut app = crate::tui_step::two_updaters(base);
    let generation = crate::tui_step::naive_steps(&mut app, base, true);
    app.update(
        Msg::RunFinished {
            generation,
            result: Ok(intact_result(Strategy::Naive, 2, 1)),
        },
        base,
    );
    check(
        "step_mode_done",
        &app,
        &[
            "schedule: 1 2 1 2",
            "SEG-001's Departed is gone",
            "--schedule \"1 2 1 2\"",
            "every updater is done",
        ],
    );
}
