//! The TUI's state and update, without a terminal: keys, runs, live losses, the comparison.

use crate::tui_support;

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use racelab::Event;
use racelab::Journey;
use racelab::Strategy;
use racelab::tui::app::{Command, Msg, Screen};
use racelab::tui::compare::RowState;
use racelab::tui::lanes::Phase;
use racelab::tui::run_view::RunState;
use racelab::tui::story::Story;
use racelab::tui::theme::Look;

use crate::tui_support::*;

#[test]
fn enter_runs_the_selected_strategy_on_the_selected_workload() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(key(KeyCode::Enter), base);
    match commands.as_slice() {
        [
            Command::Run {
                strategy, workload, ..
            },
        ] => {
            assert_eq!(*strategy, Strategy::Naive);
            assert_eq!(workload.updaters, UPDATERS);
            assert_eq!(workload.think, Duration::from_millis(600));
        }
        _ => panic!("Enter must start exactly one run"),
    }
    assert!(app.busy());
    // A second Enter while it runs starts nothing and says why.
    assert!(app.update(ch('r'), base).is_empty());
    assert!(app.notice_text().unwrap().contains("a run is going on"));
}

#[test]
fn settings_change_between_runs_only() {
    let base = Instant::now();
    let mut app = app(base);
    app.update(ch('+'), base);
    assert_eq!(app.workload.updaters, 50);
    app.update(ch('-'), base);
    app.update(ch('-'), base);
    assert_eq!(app.workload.updaters, 10);
    app.update(ch('t'), base);
    assert_eq!(app.workload.think, Duration::from_secs(1));
    app.update(ch('T'), base);
    app.update(ch('T'), base);
    assert_eq!(app.workload.think, Duration::from_millis(400));
    app.update(ch('s'), base);
    assert_eq!(app.strategy, Strategy::ALL[1 % Strategy::ALL.len()]);
    app.update(key(KeyCode::Tab), base);
    assert_eq!(app.strategy, Strategy::ALL[2 % Strategy::ALL.len()]);

    // While a run goes on, the settings stay what the run uses.
    app.update(key(KeyCode::Enter), base);
    let before = (app.strategy, app.workload.updaters, app.workload.think);
    for c in ['s', '+', '-', 't', 'T'] {
        app.update(ch(c), base);
    }
    assert_eq!(
        before,
        (app.strategy, app.workload.updaters, app.workload.think)
    );
    assert!(app.notice_text().unwrap().contains("between runs"));
}

#[test]
fn every_strategy_is_reachable_with_s() {
    let base = Instant::now();
    let mut app = app(base);
    let mut seen = vec![app.strategy];
    for _ in 1..Strategy::ALL.len() {
        app.update(ch('s'), base);
        seen.push(app.strategy);
    }
    assert_eq!(seen, Strategy::ALL.to_vec());
    app.update(ch('s'), base);
    assert_eq!(app.strategy, Strategy::ALL[0], "s wraps around");
}

#[test]
fn quit_keys_and_help() {
    let base = Instant::now();
    for quit in [
        ch('q'),
        key(KeyCode::Esc),
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    ] {
        let mut app = app(base);
        app.update(quit, base);
        assert!(app.should_quit());
    }
    let mut app = app(base);
    app.update(ch('?'), base);
    assert!(app.help);
    // Esc closes the help before it quits.
    app.update(key(KeyCode::Esc), base);
    assert!(!app.help && !app.should_quit());
    app.update(ch('?'), base);
    app.update(ch('?'), base);
    assert!(!app.help);
}

#[test]
fn a_stale_write_shows_as_a_lost_update_with_its_eraser() {
    let base = Instant::now();
    let mut app = app(base);
    let (_, _, _) = play_naive(&mut app, base, 3);
    let order = write_order();
    let run = app.run.as_ref().unwrap();
    let (first, second, third) = (order[0].0, order[1].0, order[2].0);
    let updating = run.updating();
    // The first two writes were acknowledged, then put back by the next stale copy.
    assert_eq!(run.look(first as usize, &updating), Look::Lost);
    assert_eq!(run.segments[first as usize].erased_by, Some(second + 1));
    assert_eq!(run.segments[second as usize].erased_by, Some(third + 1));
    assert_eq!(run.segments[first as usize].status, "Scheduled");
    // The latest write is what Redis holds now.
    assert_eq!(run.look(third as usize, &updating), Look::Applied);
    // Everyone else is still thinking: their segments are being updated.
    let other = (0..UPDATERS)
        .find(|u| !order[..3].iter().any(|(w, _)| w == u))
        .unwrap();
    assert_eq!(run.look(other as usize, &updating), Look::Updating);
    assert_eq!(run.updaters[other as usize].phase, Phase::Thinking);
    assert_eq!(run.lost(), 2);

    let story: Vec<String> = run.story.iter().map(Story::text).collect();
    let seg = |u: u32| format!("SEG-{:03}", u + 1);
    let expected = format!("#{} wrote its stale copy (read at", second + 1);
    let line = story
        .iter()
        .find(|l| l.starts_with(&expected))
        .unwrap_or_else(|| panic!("no line by #{}'s stale copy in {story:#?}", second + 1));
    assert!(
        line.ends_with(&format!(
            "{} is Scheduled again, #{}'s update lost",
            seg(first),
            first + 1
        )),
        "{line}"
    );
    assert!(
        story
            .iter()
            .any(|l| l.starts_with("#1 and 19 more read the journey at")),
        "{story:#?}"
    );
    assert!(
        story.iter().any(|l| l
            == &format!(
                "#{} wrote {} {} at 640 ms",
                first + 1,
                seg(first),
                racelab::update_status(first as usize, 0)
            )),
        "{story:#?}"
    );
}

#[test]
fn an_acknowledgement_newer_than_the_observers_read_is_not_a_loss() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(key(KeyCode::Enter), base);
    let [Command::Run { generation, .. }] = commands.as_slice() else {
        panic!("no run")
    };
    let generation = *generation;
    let journey = Journey::seed_fixture().unwrap();
    let ack = Event {
        at: Duration::from_millis(600),
        updater: 1,
        kind: ack_kind(1, Duration::from_millis(1), Duration::from_millis(599)),
    };
    let received = base + Duration::from_millis(600);
    app.update(
        Msg::Event {
            generation,
            received,
            event: ack,
        },
        received,
    );
    // This read began before the acknowledgement arrived: its zero count proves nothing.
    app.update(
        Msg::Observed {
            generation,
            read_started: received - Duration::from_millis(5),
            states: naive_state(&journey, None),
        },
        received + Duration::from_millis(1),
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.segments[1].lost, 0);
    assert_eq!(run.look(1, &run.updating()), Look::Updating);
    // A read that began after it, still without the update: now it is lost.
    app.update(
        Msg::Observed {
            generation,
            read_started: received + Duration::from_millis(5),
            states: naive_state(&journey, None),
        },
        received + Duration::from_millis(6),
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.segments[1].lost, 1);
    assert_eq!(run.look(1, &run.updating()), Look::Lost);
}

#[test]
fn the_end_of_a_run_brings_the_verdict_and_the_seed_messages() {
    let base = Instant::now();
    let app = finished_naive(base);
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.state, RunState::Done);
    assert_eq!(run.lost(), 19);
    assert_eq!(run.applied(), 1);
    assert!(!app.busy());
    assert!(run.updaters.iter().all(|u| u.phase == Phase::Done));
    let story: Vec<String> = run.story.iter().map(Story::text).collect();
    assert_eq!(
        story.last().unwrap(),
        "naive: 19 of 20 acknowledged updates lost; Redis said OK to each of them"
    );
    assert!(
        story
            .iter()
            .any(|l| l.starts_with("Segment SEG-001: expected 'Departed', got 'Scheduled'")),
        "{story:#?}"
    );
    // Every lost segment names whose stale write erased it.
    let survivor = write_order().last().unwrap().0 as usize;
    for (i, s) in run.segments.iter().enumerate() {
        if i == survivor {
            assert_eq!(s.lost, 0);
        } else {
            assert_eq!(s.lost, 1, "{}", s.id);
            assert!(s.erased_by.is_some(), "{} has no eraser", s.id);
        }
    }
}

#[test]
fn messages_of_an_old_run_are_ignored() {
    let base = Instant::now();
    let mut app = finished_naive(base);
    let lost = app.run.as_ref().unwrap().lost();
    app.update(
        Msg::Observed {
            generation: 999,
            read_started: base,
            states: naive_state(&Journey::seed_fixture().unwrap(), None),
        },
        base,
    );
    assert_eq!(app.run.as_ref().unwrap().lost(), lost);
}

#[test]
fn compare_runs_every_strategy_and_fills_row_by_row() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(ch('c'), base);
    let [
        Command::Compare {
            generation,
            strategies,
            ..
        },
    ] = commands.as_slice()
    else {
        panic!("c must start one comparison")
    };
    let generation = *generation;
    assert_eq!(strategies, &Strategy::ALL.to_vec());
    assert_eq!(app.screen, Screen::Compare);
    let c = app.compare.as_ref().unwrap();
    assert!(c.rows.iter().all(|r| r.state == RowState::Waiting));

    app.update(
        Msg::CompareStarted {
            generation,
            strategy: Strategy::Naive,
        },
        base,
    );
    assert_eq!(
        app.compare.as_ref().unwrap().rows[0].state,
        RowState::Running
    );
    app.update(
        Msg::CompareFinished {
            generation,
            strategy: Strategy::Naive,
            result: Ok(intact_result(Strategy::Naive, 20, 19)),
        },
        base + Duration::from_secs(2),
    );
    let row = &app.compare.as_ref().unwrap().rows[0];
    assert_eq!(
        (row.state.clone(), row.lost, row.applied),
        (RowState::Done, 19, 1)
    );
    // c while it runs does not leave the comparison.
    app.update(ch('c'), base);
    assert_eq!(app.screen, Screen::Compare);
    app.update(
        Msg::CompareDone { generation },
        base + Duration::from_secs(3),
    );
    assert!(!app.busy());
    app.update(ch('c'), base);
    assert_eq!(app.screen, Screen::Main);
}

#[test]
fn a_busy_lock_is_told_in_a_few_lines_not_hundreds() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(key(KeyCode::Enter), base);
    let [Command::Run { generation, .. }] = commands.as_slice() else {
        panic!("no run")
    };
    let generation = *generation;
    let mut send = |updater: u32, ms: u64, kind| {
        let at = Duration::from_millis(ms);
        app.update(
            Msg::Event {
                generation,
                received: base + at,
                event: Event { at, updater, kind },
            },
            base + at,
        )
    };
    for u in 0..5 {
        send(u, 1, lock_wait_kind());
    }
    for attempt in 1..=50 {
        for u in 1..5 {
            send(u, 10 * u64::from(attempt), retry_kind(attempt));
            send(u, 10 * u64::from(attempt) + 1, lock_wait_kind());
        }
    }
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.updaters[3].phase, Phase::WaitingForLock);
    let story: Vec<String> = run.story.iter().map(Story::text).collect();
    assert_eq!(
        story,
        vec![
            "#1 and 4 more wait for the lock at 1.0 ms".to_owned(),
            "200 retries up to 500 ms: the lock was busy (latest #5, attempt 50)".to_owned(),
        ]
    );
    assert_eq!(run.tally.retries, 200);
}

#[test]
fn a_loss_seen_before_its_erasers_acknowledgement_is_told_once_it_arrives() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(key(KeyCode::Enter), base);
    let [Command::Run { generation, .. }] = commands.as_slice() else {
        panic!("no run")
    };
    let generation = *generation;
    let journey = Journey::seed_fixture().unwrap();
    let at = |ms: u64| base + Duration::from_millis(ms);
    let ack = |updater: u32, ms: u64| Msg::Event {
        generation,
        received: at(ms),
        event: Event {
            at: Duration::from_millis(ms),
            updater,
            kind: ack_kind(updater, Duration::from_millis(1), Duration::from_millis(ms)),
        },
    };
    app.update(ack(1, 600), at(600));
    // #3's stale copy has landed (SEG-002 is back, SEG-004 changed) but #3 has not heard back.
    let mut states = naive_state(&journey, Some(3));
    states[3].update_count = 1;
    app.update(
        Msg::Observed {
            generation,
            read_started: at(610),
            states,
        },
        at(611),
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.look(1, &run.updating()), Look::Lost);
    assert_eq!(run.segments[1].erased_by, None);
    assert!(!run.story.iter().any(|s| matches!(s, Story::Lost { .. })));
    app.update(ack(3, 612), at(612));
    app.update(
        Msg::Observed {
            generation,
            read_started: at(620),
            states: naive_state(&journey, Some(3)),
        },
        at(621),
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.segments[1].erased_by, Some(4));
    let told: Vec<String> = run
        .story
        .iter()
        .filter(|s| matches!(s, Story::Lost { .. }))
        .map(Story::text)
        .collect();
    assert_eq!(
        told,
        vec!["#4 wrote its stale copy (read at 1.0 ms) at 612 ms: SEG-002 is Scheduled again, #2's update lost".to_owned()]
    );
}

#[test]
fn an_update_under_way_without_a_read_is_thinking_and_its_segment_updating() {
    let base = Instant::now();
    let mut app = app(base);
    app.update(ch('s'), base);
    let commands = app.update(key(KeyCode::Enter), base);
    let [
        Command::Run {
            generation,
            strategy,
            ..
        },
    ] = commands.as_slice()
    else {
        panic!("no run")
    };
    assert_ne!(*strategy, Strategy::Naive);
    let at = Duration::from_millis(1);
    app.update(
        Msg::Event {
            generation: *generation,
            received: base + at,
            event: Event {
                at,
                updater: 4,
                kind: invoked_kind(),
            },
        },
        base + at,
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.updaters[4].phase, Phase::Thinking);
    assert_eq!(run.look(4, &run.updating()), Look::Updating);
    assert_eq!(run.updaters[4].marks[0].began, Some(at));
    assert_eq!(run.updaters[4].marks[0].read, None);
}

#[test]
fn a_run_whose_final_state_could_not_be_read_gives_no_verdict() {
    let base = Instant::now();
    let mut app = app(base);
    let (_, now, generation) = play_naive(&mut app, base, 4);
    let lost_live = app.run.as_ref().unwrap().lost();
    let mut result = intact_result(Strategy::Naive, 0, 0);
    result.states.clear();
    result.unverified = Some("reading the final state failed: connection refused".into());
    app.update(
        Msg::RunFinished {
            generation,
            result: Ok(result),
        },
        now,
    );
    let run = app.run.as_ref().unwrap();
    assert!(
        matches!(&run.state, RunState::Failed(reason) if reason.contains("no verdict")),
        "{:?}",
        run.state
    );
    // The screen keeps what the observer saw instead of calling every update lost.
    assert_eq!(run.lost(), lost_live);
    assert!(!app.busy());
}

#[test]
fn with_workers_each_lane_knows_its_worker_and_the_story_names_them() {
    let base = Instant::now();
    let mut app = app(base);
    app.workers = Some(2);
    let (_, now, generation) = play_naive_in(&mut app, base, 3, Some(plan(2, UPDATERS)));
    let run = app.run.as_ref().unwrap();
    let worker = |u: u32| run.worker_of(u).map(|s| s.worker.clone());
    assert_eq!(worker(0).as_deref(), Some("w1"));
    assert_eq!(worker(9).as_deref(), Some("w1"));
    assert_eq!(worker(10).as_deref(), Some("w2"));
    assert_eq!(worker(19).as_deref(), Some("w2"));
    assert_eq!(worker(20), None, "no such updater");
    // The first line of the story says who runs what, before any read.
    assert_eq!(
        run.story.front().map(Story::text).as_deref(),
        Some(
            "updaters run in workers: w1 #1–#10 (pid 4242 on build-7), w2 #11–#20 (pid 4243 on build-7)"
        )
    );

    // A plan for another run changes nothing.
    app.update(
        Msg::WorkersPlanned {
            generation: generation + 1,
            shares: plan(3, UPDATERS),
        },
        now,
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.workers.len(), 2);
    assert_eq!(app.workers, Some(2));
}

#[test]
fn a_run_without_workers_has_no_worker_tags() {
    let base = Instant::now();
    let mut app = app(base);
    play_naive(&mut app, base, 3);
    let run = app.run.as_ref().unwrap();
    assert!(run.workers.is_empty());
    assert!(run.worker_of(0).is_none());
    assert!(!run.story.iter().any(|s| matches!(s, Story::Workers { .. })));
    assert_eq!(app.workers, None);
}

#[test]
fn a_worker_that_vanished_is_told_and_the_next_run_goes_to_the_others() {
    let app = vanished_worker_run(Instant::now());
    let run = app.run.as_ref().unwrap();
    assert!(
        matches!(&run.state, RunState::Stopped(reason) if reason.starts_with("worker w2 vanished")),
        "{:?}",
        run.state
    );
    let story: Vec<String> = run.story.iter().map(Story::text).collect();
    let told =
        format!("worker w2 vanished, with updaters #11–#20 (pid 4243 on build-7): {W2_VANISHED}");
    let at = story
        .iter()
        .position(|l| *l == told)
        .unwrap_or_else(|| panic!("no line about w2 in {story:#?}"));
    // Its ten updaters' unknown outcomes are one line, not ten.
    let failures: Vec<&String> = story.iter().filter(|l| l.contains(" failed at ")).collect();
    assert_eq!(
        failures,
        [
            "#11's update of SEG-011 and 9 more failed at 700 ms (outcome unknown): worker w2 vanished"
        ],
        "{story:#?}"
    );
    // Told before the verdict, which stays the last line.
    assert!(at < story.len() - 1, "{story:#?}");
    assert!(matches!(run.story.back(), Some(Story::Verdict { .. })));
    // Its updaters' lanes say they failed, and it is known to have vanished.
    assert_eq!(run.updaters[15].phase, Phase::Failed);
    assert!(run.worker_of(15).is_some_and(|s| s.vanished.is_some()));
    assert!(run.worker_of(5).is_some_and(|s| s.vanished.is_none()));
    assert_eq!(run.tally.unknown, 10);
    // The crew passes w2 over from now on: one worker left.
    assert_eq!(app.workers, Some(1));
}

#[test]
fn a_worker_that_vanished_in_a_comparison_is_not_counted_for_the_next_runs() {
    let base = Instant::now();
    let mut app = app(base);
    app.workers = Some(3);
    let commands = app.update(ch('c'), base);
    let [Command::Compare { generation, .. }] = commands.as_slice() else {
        panic!("c must start a comparison")
    };
    let generation = *generation;
    app.update(
        Msg::CompareStarted {
            generation,
            strategy: Strategy::Naive,
        },
        base,
    );
    let mut result = intact_result(Strategy::Naive, 20, 0);
    result.workers = plan(3, UPDATERS);
    result.workers[2].vanished = Some(W2_VANISHED.into());
    result.stopped = Some("worker w3 vanished at 0.7s".into());
    app.update(
        Msg::CompareFinished {
            generation,
            strategy: Strategy::Naive,
            result: Ok(result),
        },
        base,
    );
    assert_eq!(app.workers, Some(2));
    let row = &app.compare.as_ref().unwrap().rows[0];
    assert!(
        matches!(&row.state, RowState::Stopped(reason) if reason.contains("w3 vanished")),
        "{:?}",
        row.state
    );
}

#[test]
fn a_run_too_big_for_the_machine_is_refused_with_a_line_that_fits_80_columns() {
    let base = Instant::now();
    let mut app = app(base);
    // A machine that lets runs plan 1 MiB: twenty updaters of naive need more.
    app.memory_limit = Some(1 << 20);
    app.workload.updaters = 1000;
    assert!(app.update(key(KeyCode::Enter), base).is_empty());
    assert!(!app.busy());
    let notice = app.notice_text().unwrap().to_owned();
    assert!(notice.contains("limit"), "{notice}");
    assert!(notice.chars().count() <= 80, "{notice}");
    assert!(app.update(ch('c'), base).is_empty());
    // hash holds no journey copies, but the comparison runs every strategy: refused too.
    app.update(ch('s'), base);
    assert_eq!(app.strategy, Strategy::Hash);
    app.memory_limit = Some(8 << 20);
    assert_eq!(app.update(key(KeyCode::Enter), base).len(), 1);
}

#[test]
fn a_run_where_no_update_was_acknowledged_is_inconclusive_on_screen_too() {
    let base = Instant::now();
    let mut app = app(base);
    let generation = match app.update(key(KeyCode::Enter), base).as_slice() {
        [Command::Run { generation, .. }] => *generation,
        _ => panic!("Enter must start a run"),
    };
    app.update(
        Msg::RunFinished {
            generation,
            result: Ok(tui_support::intact_result(Strategy::Naive, 0, 0)),
        },
        base + Duration::from_secs(2),
    );
    let run = app.run.as_ref().unwrap();
    let verdict = run.story.back().map(Story::text).unwrap_or_default();
    assert!(
        verdict.contains("inconclusive: no update was acknowledged"),
        "{verdict}"
    );
    assert!(!verdict.contains("none lost"), "{verdict}");
}

#[test]
fn a_compared_strategy_that_made_too_few_updates_is_not_called_intact() {
    let base = Instant::now();
    let mut app = app(base);
    let commands = app.update(ch('c'), base);
    let [Command::Compare { generation, .. }] = commands.as_slice() else {
        panic!("c must start a comparison")
    };
    let generation = *generation;
    for (strategy, made) in [(Strategy::Fenced, 1), (Strategy::Hash, 20)] {
        app.update(
            Msg::CompareStarted {
                generation,
                strategy,
            },
            base,
        );
        app.update(
            Msg::CompareFinished {
                generation,
                strategy,
                result: Ok(intact_result(strategy, made, 0)),
            },
            base,
        );
    }
    let view = app.compare.as_ref().unwrap();
    let row = |s: Strategy| view.rows.iter().find(|r| r.strategy == s).unwrap();
    assert!(row(Strategy::Fenced).inconclusive, "1 of 20 made");
    assert!(!row(Strategy::Hash).inconclusive, "20 of 20 made");
}

#[test]
fn a_users_own_strategy_stays_in_the_cycle_s_walks() {
    let base = Instant::now();
    let fix = format!("lua:{}/examples/lua/fix.lua", env!("CARGO_MANIFEST_DIR"));
    let own = Strategy::parse(&fix).unwrap();
    let mut app = racelab::tui::App::new(own, workload(), true, target(), false, base);
    app.update(ch('s'), base);
    assert_eq!(app.strategy, Strategy::ALL[0]);
    // Back the other way, the user's own comes round again.
    app.update(ch('S'), base);
    assert_eq!(app.strategy, own);
    // Once round the whole cycle: every built-in one and the user's own.
    for _ in 0..Strategy::ALL.len() + 1 {
        app.update(ch('s'), base);
    }
    assert_eq!(app.strategy, own);
}
