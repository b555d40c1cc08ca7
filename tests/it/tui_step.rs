//! The TUI's step mode (README "Step mode"), without a terminal: the keys, what the stepped run
//! is asked to do, the next-step text, undo, time passing and the schedule string, fed the
//! messages a stepped run would send. The real thing, on a real Redis in tmux, is in `tui_e2e`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crossterm::event::KeyCode;
use racelab::tui::app::{App, Command, Msg};
use racelab::tui::step::{self, Control, Stage, Taken};
use racelab::tui::theme::Theme;
use racelab::{Choice, Journey, Role, Schedule, SegmentState, Step, Token, update_status};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use crate::tui_support::*;

/// The stepped run `p` (or a loaded schedule) asked for: its generation and replay.
fn stepped(commands: &[Command]) -> (u64, Vec<Token>) {
    let step = commands.iter().find_map(|c| match c {
        Command::Step {
            generation,
            workload,
            replay,
            ..
        } => {
            // The presenter is the clock: no think time between a read and its write.
            assert_eq!(workload.think, Duration::ZERO);
            Some((*generation, replay.clone()))
        }
        _ => None,
    });
    step.expect("a stepped run starts")
}

pub(crate) fn two_updaters(base: Instant) -> App {
    let mut app = app(base);
    app.workload.updaters = 2;
    app
}

fn read() -> Step {
    Step::new(Role::Read, "GET journey")
}

fn write_back() -> Step {
    Step::new(Role::WriteBack, "SET journey")
}

fn ready(generation: u64, waiting: Vec<(u32, Step)>) -> Msg {
    Msg::StepReady {
        generation,
        waiting: waiting.into_iter().map(|(u, s)| (u, Some(s))).collect(),
        lock_left: None,
    }
}

/// The journey with `applied` (updater, count) on their own segments, everything else as seeded.
fn journey_with(journey: &Journey, applied: &[(u32, u64)]) -> Vec<SegmentState> {
    journey
        .segments
        .iter()
        .enumerate()
        .map(
            |(i, s)| match applied.iter().find(|(u, _)| *u as usize == i) {
                Some(&(_, count)) => SegmentState {
                    status: update_status(i, 0).to_owned(),
                    update_count: count,
                },
                None => SegmentState {
                    status: s.status.clone(),
                    update_count: 0,
                },
            },
        )
        .collect()
}

fn taken(
    generation: u64,
    updater: u32,
    step: Step,
    reply: &'static str,
    states: Vec<SegmentState>,
) -> Msg {
    Msg::Stepped {
        generation,
        taken: Taken {
            token: Token::Step(updater),
            choice: Some(Choice {
                updater,
                waiting: vec![1, 2],
                step: Some(step),
                reply: Some(Cow::Borrowed(reply)),
            }),
            expired: false,
            states: Some(states),
            read_started: Instant::now(),
            lock_left: None,
        },
    }
}

/// Updater `updater`'s (0-based) write acknowledged, as the engine reports it.
fn acked(generation: u64, updater: u32, base: Instant) -> Msg {
    let at = Duration::from_millis(10 + 10 * u64::from(updater));
    Msg::Event {
        generation,
        received: base,
        event: racelab::Event {
            at,
            updater,
            kind: ack_kind(updater, Duration::from_millis(1), at),
        },
    }
}

fn control(commands: &[Command]) -> Control {
    match commands {
        [Command::Control { control, .. }] => *control,
        other => panic!("expected one control, got {other:?}"),
    }
}

/// Steps naive through `1 2 1 2` as the stepped run would answer: both read, #1 writes, #2
/// writes its copy from step 2 and erases #1's update.
fn naive_1_2_1_2(app: &mut App, base: Instant) -> u64 {
    naive_steps(app, base, true)
}

/// The same up to `1 2 1`, or all of it (`last`); the screens' tests show it too.
pub(crate) fn naive_steps(app: &mut App, base: Instant, last: bool) -> u64 {
    let (generation, replay) = stepped(&app.update(ch('p'), base));
    assert!(replay.is_empty());
    let journey = app.workload.journey.clone();
    let seeded = journey_with(&journey, &[]);
    app.update(ready(generation, vec![(1, read()), (2, read())]), base);
    assert_eq!(
        control(&app.update(key(KeyCode::Char(' ')), base)),
        Control::Take(Token::Step(1))
    );
    app.update(
        taken(generation, 1, read(), "Scheduled (count 0)", seeded.clone()),
        base,
    );
    app.update(
        ready(generation, vec![(1, write_back()), (2, read())]),
        base,
    );
    app.update(ch('2'), base);
    assert_eq!(
        control(&app.update(key(KeyCode::Enter), base)),
        Control::Take(Token::Step(2))
    );
    app.update(
        taken(generation, 2, read(), "Scheduled (count 0)", seeded.clone()),
        base,
    );
    app.update(
        ready(generation, vec![(1, write_back()), (2, write_back())]),
        base,
    );
    app.update(ch('1'), base);
    app.update(key(KeyCode::Char(' ')), base);
    app.update(
        taken(
            generation,
            1,
            write_back(),
            "OK",
            journey_with(&journey, &[(0, 1)]),
        ),
        base,
    );
    app.update(acked(generation, 0, base), base);
    app.update(ready(generation, vec![(2, write_back())]), base);
    if !last {
        return generation;
    }
    app.update(key(KeyCode::Char(' ')), base);
    app.update(
        taken(
            generation,
            2,
            write_back(),
            "OK",
            journey_with(&journey, &[(1, 1)]),
        ),
        base,
    );
    app.update(acked(generation, 1, base), base);
    generation
}

#[test]
fn p_opens_step_mode_and_each_lane_shows_its_next_redis_command() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    let (generation, _) = stepped(&app.update(ch('p'), base));
    assert!(app.in_step_mode());
    app.update(ready(generation, vec![(1, read()), (2, read())]), base);
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.next_text(1, 80), "next: GET journey");
    assert_eq!(steps.selected, 1);
    app.update(
        taken(generation, 1, read(), "Scheduled (count 0)", Vec::new()),
        base,
    );
    app.update(
        ready(generation, vec![(1, write_back()), (2, read())]),
        base,
    );
    let steps = app.step.as_ref().unwrap();
    // A write-back names the step its copy was read at, shorter where room is short.
    assert_eq!(
        steps.next_text(1, 80),
        "next: SET journey (its copy read at step 1)"
    );
    assert_eq!(steps.next_text(1, 30), "next: SET journey (read at step 1)");
    assert_eq!(steps.lines[0].what, "#1 GET journey → Scheduled (count 0)");
}

#[test]
fn stepping_naive_through_1_2_1_2_tells_which_update_the_stale_copy_erased() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    naive_1_2_1_2(&mut app, base);
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.schedule(), "1 2 1 2");
    assert_eq!(steps.lines.len(), 4);
    let last = &steps.lines[3];
    assert_eq!(last.what, "#2 SET journey → OK");
    assert_eq!(
        last.sentence,
        "#2 wrote its copy from step 2: SEG-001's Departed is gone"
    );
    assert!(last.loss);
    assert!(!steps.lines[2].loss, "{:?}", steps.lines[2]);
    assert_eq!(
        steps.repeat_command(
            racelab::Strategy::Naive,
            &app.run.as_ref().unwrap().workload
        ),
        "racelab run -s naive -n 2 --schedule \"1 2 1 2\""
    );
    // The grid shows what Redis held after the last step: SEG-001 is back to Scheduled.
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.segments[0].status, "Scheduled");
}

#[test]
fn undo_replays_every_step_but_the_last_on_a_new_run() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    let old = naive_1_2_1_2(&mut app, base);
    let commands = app.update(ch('u'), base);
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::Stop { generation } if *generation == old)),
        "{commands:?}"
    );
    let (generation, replay) = stepped(&commands);
    assert_ne!(generation, old);
    assert_eq!(Schedule { tokens: replay }.to_string(), "1 2 1");
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.stage, Stage::Replaying);
    assert!(steps.lines.is_empty());
    // Keys wait while the replay runs; the old run's messages no longer count.
    assert!(app.update(key(KeyCode::Char(' ')), base).is_empty());
    app.update(taken(old, 1, read(), "late", Vec::new()), base);
    assert!(app.step.as_ref().unwrap().lines.is_empty());
}

#[test]
fn time_passing_is_a_t_in_the_schedule_and_frees_the_lock() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    app.strategy = racelab::Strategy::Lock;
    let (generation, _) = stepped(&app.update(ch('p'), base));
    let lock = Step::new(Role::Lock, "SET lock NX PX 6000");
    app.update(
        ready(generation, vec![(1, lock.clone()), (2, lock.clone())]),
        base,
    );
    app.update(key(KeyCode::Char(' ')), base);
    app.update(
        taken(
            generation,
            1,
            lock.clone(),
            "OK: the lock is taken",
            Vec::new(),
        ),
        base,
    );
    app.update(
        Msg::StepReady {
            generation,
            waiting: vec![(1, Some(read())), (2, Some(lock.clone()))],
            lock_left: Some(Duration::from_secs(6)),
        },
        base,
    );
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.holder, Some(1));
    assert_eq!(
        steps.lock_text(base + Duration::from_secs(2)).unwrap(),
        "lock: #1, 4.0 s left"
    );
    assert_eq!(
        control(&app.update(ch('t'), base)),
        Control::Take(Token::Wait)
    );
    assert!(matches!(
        app.step.as_ref().unwrap().stage,
        Stage::Taking(Token::Wait, _)
    ));
    app.update(
        Msg::Stepped {
            generation,
            taken: Taken {
                token: Token::Wait,
                choice: None,
                expired: false,
                states: None,
                read_started: base,
                lock_left: None,
            },
        },
        base,
    );
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.schedule(), "1 t");
    assert_eq!(steps.holder, None);
    assert!(
        steps.lines[1].sentence.contains("#1's lock expired"),
        "{:?}",
        steps.lines[1]
    );
    assert!(
        steps
            .repeat_command(racelab::Strategy::Lock, &app.run.as_ref().unwrap().workload)
            .contains("--lock-ttl 6s --schedule \"1 t\""),
    );
}

#[test]
fn a_loaded_schedule_picks_the_next_updater_until_the_presenter_goes_another_way() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    app.loaded = Some(Schedule::parse("2 1 2 1").unwrap());
    let (generation, replay) = stepped(&app.start_stepping(Vec::new()));
    assert!(replay.is_empty());
    app.update(ready(generation, vec![(1, read()), (2, read())]), base);
    assert_eq!(app.step.as_ref().unwrap().selected, 2);
    assert_eq!(
        control(&app.update(key(KeyCode::Char(' ')), base)),
        Control::Take(Token::Step(2))
    );
    app.update(
        taken(generation, 2, read(), "Scheduled (count 0)", Vec::new()),
        base,
    );
    app.update(
        ready(generation, vec![(1, read()), (2, write_back())]),
        base,
    );
    let steps = app.step.as_ref().unwrap();
    assert_eq!(steps.selected, 1);
    assert_eq!(
        Schedule {
            tokens: steps.plan.clone()
        }
        .to_string(),
        "1 2 1"
    );
    // Picking #2 instead leaves the plan.
    app.update(ch('2'), base);
    app.update(key(KeyCode::Char(' ')), base);
    assert!(app.step.as_ref().unwrap().plan.is_empty());
}

#[test]
fn step_mode_refuses_what_it_cannot_do_with_a_sentence() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    app.workers = Some(2);
    assert!(app.update(ch('p'), base).is_empty());
    assert!(app.notice_text().unwrap().contains("without --workers"));

    let mut app = two_updaters(base);
    let (generation, _) = stepped(&app.update(ch('p'), base));
    assert!(app.update(ch('u'), base).is_empty());
    assert!(app.notice_text().unwrap().contains("no step to undo"));
    app.update(ready(generation, vec![(1, read())]), base);
    app.update(ch('2'), base);
    assert!(
        app.notice_text()
            .unwrap()
            .contains("#2 has made its update")
    );
    app.update(ch('7'), base);
    assert!(app.notice_text().unwrap().contains("no #7"));
    // A step under way: the next one waits for it.
    app.update(key(KeyCode::Char(' ')), base);
    assert!(app.update(key(KeyCode::Char(' ')), base).is_empty());
    assert!(app.notice_text().unwrap().contains("under way"));
}

#[test]
fn f_runs_the_rest_free_and_p_leaves_step_mode_stopping_its_run() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    let (generation, _) = stepped(&app.update(ch('p'), base));
    app.update(ready(generation, vec![(1, read()), (2, read())]), base);
    assert_eq!(control(&app.update(ch('f'), base)), Control::Free);
    assert_eq!(app.step.as_ref().unwrap().stage, Stage::Free);

    let mut app = two_updaters(base);
    let (generation, _) = stepped(&app.update(ch('p'), base));
    let commands = app.update(ch('p'), base);
    assert!(matches!(commands.as_slice(), [Command::Stop { generation: g }] if *g == generation));
    assert!(app.step.is_none() && app.run.is_none());
}

fn panel_text(app: &App, width: u16, height: u16) -> (String, String) {
    let steps = app.step.as_ref().unwrap();
    let area = Rect::new(0, 0, width, height);
    let mut panel = Buffer::empty(area);
    step::draw_panel(
        area,
        &mut panel,
        steps,
        0,
        Instant::now(),
        Theme { color: false },
    );
    let mut story = Buffer::empty(area);
    step::draw_story(
        area,
        &mut story,
        steps,
        &["tail line".to_owned()],
        Theme { color: false },
    );
    (screen_text(&panel), screen_text(&story))
}

#[test]
fn the_panel_marks_the_pick_and_the_story_numbers_each_step() {
    let base = Instant::now();
    let mut app = two_updaters(base);
    let generation = naive_1_2_1_2(&mut app, base);
    // Before the last step's answer the panel shows who waits; after it, both are done.
    let (panel, story) = panel_text(&app, 40, 8);
    assert!(panel.contains("schedule: 1 2 1 2"), "{panel}");
    assert!(
        panel.contains("#2  done") || panel.contains("#2  next"),
        "{panel}"
    );
    assert!(story.contains(" 4 #2 SET journey → OK"), "{story}");
    assert!(story.contains("SEG-001's Departed is"), "{story}");
    assert!(story.contains("tail line"), "{story}");
    // Twenty updaters: the selected one stays in view.
    let _ = generation;
    let mut app = crate::tui_support::app(base);
    let (generation2, _) = stepped(&app.update(ch('p'), base));
    let waiting = (1..=20).map(|u| (u, read())).collect();
    app.update(ready(generation2, waiting), base);
    for _ in 0..15 {
        app.update(key(KeyCode::Down), base);
    }
    assert_eq!(app.step.as_ref().unwrap().selected, 16);
    let (panel, _) = panel_text(&app, 40, 8);
    assert!(panel.contains("▶#16"), "{panel}");
}
