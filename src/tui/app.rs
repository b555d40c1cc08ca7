//! The TUI's state and the one function that changes it.
//!
//! Everything the screen shows lives in [`App`]; input, engine events, observer snapshots and the
//! clock arrive as [`Msg`]s, and [`App::update`] folds them in (a run's into its [`RunView`], a
//! comparison's into its [`CompareView`]) and answers with the [`Command`]s the runtime should
//! carry out (start a run, start a comparison). Nothing here does I/O or reads a clock: time
//! comes in with every message, so tests replay a run exactly.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::compare::CompareView;
use super::run_view::RunView;
use super::step::{Control, Stage, StepView, Taken};
use crate::engine::RunResult;
use crate::event::Event;
use crate::journey::SegmentState;
use crate::roster::WorkerShare;
use crate::schedule::{Schedule, Step, Token};
use crate::strategy::Strategy;
use crate::workload::Workload;

/// How much longer than `think` an updater may pause, at random: enough spread that the writes of
/// a seed run land one by one over a couple of seconds, so people can follow each of them.
pub const TUI_JITTER: f64 = 2.0;

/// How long a notice (a refused key, a finished comparison) stays in the footer.
const NOTICE_FOR: Duration = Duration::from_secs(4);

/// Think times `t` and `T` step through: from no pause to pauses a room can follow.
const THINK_STEPS_MS: &[u64] = &[0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 600, 1000, 2000, 5000];
/// Updater counts `+` and `-` step through.
const UPDATER_STEPS: &[u32] = &[1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];

/// The Redis the TUI runs against, as the header shows it.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// The URL with its password hidden.
    pub display: String,
    pub version: String,
    pub private: bool,
    /// Set on a Redis Cluster: the journey's slot and the primary that owns it.
    pub cluster: Option<crate::target::ClusterPlace>,
    /// The private server's replicas (`--replicas`): `F` fails over to one mid-run.
    pub replicas: usize,
}

pub enum Msg {
    Key(KeyEvent),
    /// The terminal changed size; the next frame redraws.
    Resize,
    /// Time passes; the screen shows elapsed time and growing think windows.
    Tick,
    /// An updater's event, stamped with when the TUI received it.
    Event {
        generation: u64,
        received: Instant,
        event: Event,
    },
    /// The journey as the observer read it from Redis; its read began at `read_started`.
    Observed {
        generation: u64,
        read_started: Instant,
        states: Vec<SegmentState>,
    },
    /// The single run's updaters are about to start in the crew's workers, shared like this
    /// (`Crew::plan`). Comes before any event of the run; never sent for a run in this process.
    WorkersPlanned {
        generation: u64,
        shares: Vec<WorkerShare>,
    },
    /// The single run ended. Every event of it arrived before this.
    RunFinished {
        generation: u64,
        result: Result<RunResult, String>,
    },
    /// The comparison moves on to `strategy`.
    CompareStarted {
        generation: u64,
        strategy: Strategy,
    },
    CompareFinished {
        generation: u64,
        strategy: Strategy,
        result: Result<RunResult, String>,
    },
    /// The comparison ran every strategy (or was stopped).
    CompareDone {
        generation: u64,
    },
    /// Step mode: these updaters wait, each before the step shown; the presenter's turn.
    StepReady {
        generation: u64,
        waiting: Vec<(u32, Option<Step>)>,
        /// How long the journey's lock has left, when it is held.
        lock_left: Option<Duration>,
    },
    /// Step mode: a step (or time passing) was taken.
    Stepped {
        generation: u64,
        taken: Taken,
    },
    /// Step mode: the step asked for could not be taken.
    StepRefused {
        generation: u64,
        reason: String,
    },
}

/// What the runtime should do after an update.
#[derive(Debug, Clone)]
pub enum Command {
    Run {
        generation: u64,
        strategy: Strategy,
        workload: Workload,
    },
    Compare {
        generation: u64,
        strategies: Vec<Strategy>,
        workload: Workload,
    },
    /// A run in step mode that replays `replay`, then waits for the presenter.
    Step {
        generation: u64,
        strategy: Strategy,
        workload: Workload,
        replay: Vec<Token>,
    },
    /// Passes the presenter's choice to the stepped run.
    Control { generation: u64, control: Control },
    /// Stops a run (an undone step's, a step mode left); its keys are deleted.
    Stop { generation: u64 },
    /// Fails the private primary over now, in the run going on (README "Failover").
    FailOver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Main,
    Compare,
}

pub struct App {
    /// What the next run uses: strategy, updaters, think time and the rest of the workload.
    pub strategy: Strategy,
    /// A user's own strategy (`exec:`, `lua:`) the TUI started with: it stays in the cycle `s`
    /// walks.
    pub own: Option<Strategy>,
    pub workload: Workload,
    /// `--seed` given: every run repeats it. Otherwise each run gets a fresh one.
    pub fixed_seed: bool,
    pub target: TargetInfo,
    /// Colours on (off with `NO_COLOR`); symbols carry the meaning either way.
    pub color: bool,
    /// How many workers (`--workers`) the next run's updaters run in; `None` when they run in
    /// this process. Workers that vanish are not counted: the next run goes to the others.
    pub workers: Option<u32>,
    pub screen: Screen,
    pub help: bool,
    pub run: Option<RunView>,
    /// Step mode's steps, beside the run they belong to.
    pub step: Option<StepView>,
    /// The schedule `--schedule` loaded for step mode.
    pub loaded: Option<Schedule>,
    pub compare: Option<CompareView>,
    /// First updater shown in the lanes.
    pub lane_scroll: usize,
    pub notice: Option<(String, Instant)>,
    pub now: Instant,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// The memory a run may plan to use ([`crate::budget`]); `None`: no limit known.
    pub memory_limit: Option<u64>,
    next_generation: u64,
    quit: bool,
}

impl App {
    pub fn new(
        strategy: Strategy,
        workload: Workload,
        fixed_seed: bool,
        target: TargetInfo,
        color: bool,
        now: Instant,
    ) -> App {
        App {
            strategy,
            own: strategy.is_user().then_some(strategy),
            workload,
            fixed_seed,
            target,
            color,
            workers: None,
            screen: Screen::Main,
            help: false,
            run: None,
            step: None,
            loaded: None,
            compare: None,
            lane_scroll: 0,
            notice: None,
            now,
            dirty: true,
            memory_limit: None,
            next_generation: 1,
            quit: false,
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// A run or a comparison is going on.
    pub fn busy(&self) -> bool {
        self.run.as_ref().is_some_and(RunView::running)
            || self.compare.as_ref().is_some_and(|c| c.running)
    }

    /// The generation of the run or comparison going on, whose messages are still wanted.
    pub fn current_generation(&self) -> Option<u64> {
        if let Some(run) = self.run.as_ref().filter(|r| r.running()) {
            return Some(run.generation);
        }
        self.compare
            .as_ref()
            .filter(|c| c.running)
            .map(|c| c.generation)
    }

    pub fn notice_text(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| self.now.saturating_duration_since(*at) < NOTICE_FOR)
            .map(|(text, _)| text.as_str())
    }

    /// The TUI is quitting while a run goes on: say why the screen lingers a moment.
    pub fn stopping(&mut self) {
        self.say("stopping the run and deleting its keys…");
        self.dirty = true;
    }

    /// The workers a run ended with: those that vanished take no part in the next runs, and
    /// the crew may have replaced earlier ones (a comparison's later strategies, say).
    fn count_live_workers(&mut self, shares: &[WorkerShare]) {
        if shares.is_empty() {
            return;
        }
        let live = shares.iter().filter(|s| s.vanished.is_none()).count() as u32;
        if let Some(workers) = self.workers.as_mut() {
            *workers = live;
        }
    }

    fn say(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), self.now));
    }

    pub fn update(&mut self, msg: Msg, now: Instant) -> Vec<Command> {
        self.now = self.now.max(now);
        // The clock alone changes nothing on an idle screen; the runtime redraws busy ones.
        if !matches!(msg, Msg::Tick) {
            self.dirty = true;
        }
        match msg {
            Msg::Key(key) => return self.on_key(key),
            Msg::Resize | Msg::Tick => {}
            Msg::Event {
                generation,
                received,
                event,
            } => {
                if let Some(run) = self.run.as_mut().filter(|r| r.generation == generation) {
                    run.on_event(received, event);
                } else if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation)
                {
                    c.on_event(&event);
                }
            }
            Msg::Observed {
                generation,
                read_started,
                states,
            } => {
                if let Some(run) = self
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation && r.running())
                {
                    run.on_observed(read_started, states);
                }
            }
            Msg::WorkersPlanned { generation, shares } => {
                if let Some(run) = self
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation && r.running())
                {
                    // Vanished workers may have been replaced from the lobby since the last run.
                    if self.workers.is_some() {
                        self.workers = Some(shares.len() as u32);
                    }
                    run.on_planned(shares);
                }
            }
            Msg::RunFinished { generation, result } => {
                if let Ok(result) = &result {
                    self.count_live_workers(&result.workers);
                }
                if let Some(run) = self.run.as_mut().filter(|r| r.generation == generation) {
                    run.on_finished(result, self.now);
                }
                if let Some(step) = self.stepping(generation) {
                    step.finish();
                }
            }
            Msg::CompareStarted {
                generation,
                strategy,
            } => {
                let now = self.now;
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation) {
                    c.on_started(strategy, now);
                }
            }
            Msg::CompareFinished {
                generation,
                strategy,
                result,
            } => {
                if let Ok(result) = &result {
                    self.count_live_workers(&result.workers);
                }
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation) {
                    c.on_finished(strategy, result);
                }
            }
            Msg::CompareDone { generation } => {
                let now = self.now;
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation) {
                    c.on_done(now);
                }
            }
            Msg::StepReady {
                generation,
                waiting,
                lock_left,
            } => {
                let now = self.now;
                if let Some(step) = self.stepping(generation) {
                    step.on_ready(waiting, lock_left, now);
                }
            }
            Msg::Stepped { generation, taken } => {
                let now = self.now;
                if let Some(states) = &taken.states
                    && let Some(run) = self
                        .run
                        .as_mut()
                        .filter(|r| r.generation == generation && r.running())
                {
                    run.on_observed(taken.read_started, states.clone());
                }
                if let Some(step) = self.stepping(generation) {
                    step.on_taken(taken, now);
                }
            }
            Msg::StepRefused { generation, reason } => {
                if let Some(step) = self.stepping(generation) {
                    step.stage = Stage::Ready;
                    self.say(reason);
                }
            }
        }
        Vec::new()
    }

    /// Step mode's steps, if they belong to run `generation`.
    fn stepping(&mut self, generation: u64) -> Option<&mut StepView> {
        self.step.as_mut().filter(|s| s.generation == generation)
    }

    /// Step mode is on and its run goes on: keys take steps.
    pub fn in_step_mode(&self) -> bool {
        self.step
            .as_ref()
            .is_some_and(|s| s.stage != Stage::Over && self.busy())
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('q') => self.quit = true,
            // Esc closes the help first: that is what an overlay's Esc does everywhere.
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = !self.help,
            _ if self.help => self.help = false,
            _ if self.in_step_mode() => return self.on_step_key(key.code),
            KeyCode::Char('p') => return self.start_stepping(Vec::new()),
            KeyCode::Enter | KeyCode::Char('r') => return self.start_run(),
            KeyCode::Char('c') => return self.toggle_compare(),
            KeyCode::Char('F') => return self.fail_over(),
            KeyCode::Char('s') | KeyCode::Tab => self.change(|app| {
                app.strategy = next_strategy(app.strategy, app.own, 1);
            }),
            KeyCode::BackTab | KeyCode::Char('S') => self.change(|app| {
                app.strategy = next_strategy(app.strategy, app.own, -1);
            }),
            KeyCode::Char('+') | KeyCode::Char('=') => self.change(|app| {
                app.workload.updaters = step(UPDATER_STEPS, app.workload.updaters, true);
            }),
            KeyCode::Char('-') | KeyCode::Char('_') => self.change(|app| {
                app.workload.updaters = step(UPDATER_STEPS, app.workload.updaters, false);
            }),
            KeyCode::Char('t') => self.change(|app| {
                app.workload.think = step_think(app.workload.think, true);
            }),
            KeyCode::Char('T') => self.change(|app| {
                app.workload.think = step_think(app.workload.think, false);
            }),
            KeyCode::Up | KeyCode::Char('k') => self.scroll(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(1),
            KeyCode::PageUp => self.scroll(-20),
            KeyCode::PageDown => self.scroll(20),
            KeyCode::Home => self.lane_scroll = 0,
            KeyCode::End => self.scroll(i64::from(u32::MAX)),
            _ => {}
        }
        Vec::new()
    }

    /// A key in step mode: the presenter picks who takes the next step.
    fn on_step_key(&mut self, code: KeyCode) -> Vec<Command> {
        let Some(step) = self.step.as_mut() else {
            return Vec::new();
        };
        let generation = step.generation;
        let control = |control| {
            vec![Command::Control {
                generation,
                control,
            }]
        };
        match code {
            KeyCode::Char(c @ '1'..='9') => {
                let n = c as u32 - '0' as u32;
                if step.waiting().contains(&n) {
                    step.selected = n;
                } else if n as usize > step.next.len() {
                    let have = step.next.len();
                    self.say(format!("there is no #{n}; this run has {have} updaters"));
                } else {
                    self.say(format!("#{n} has made its update; pick one still waiting"));
                }
            }
            KeyCode::Up | KeyCode::Char('k') => step.select_by(-1),
            KeyCode::Down | KeyCode::Char('j') => step.select_by(1),
            KeyCode::Char(' ') | KeyCode::Enter => {
                if !step.ready() {
                    self.say("a step is under way; wait for it");
                } else if step.waiting().contains(&step.selected) {
                    let token = Token::Step(step.selected);
                    step.taking(token, self.now);
                    return control(Control::Take(token));
                }
            }
            KeyCode::Char('t') => {
                if step.ready() {
                    step.taking(Token::Wait, self.now);
                    return control(Control::Take(Token::Wait));
                }
                self.say("a step is under way; wait for it");
            }
            KeyCode::Char('f') => {
                if step.ready() {
                    step.free();
                    return control(Control::Free);
                }
                self.say("a step is under way; wait for it");
            }
            KeyCode::Char('u') | KeyCode::Backspace => {
                if step.stage == Stage::Replaying || matches!(step.stage, Stage::Taking(..)) {
                    self.say("a step is under way; wait for it");
                } else if step.taken.is_empty() {
                    self.say("no step to undo yet");
                } else {
                    let mut replay = step.taken.clone();
                    replay.pop();
                    return self.start_stepping(replay);
                }
            }
            KeyCode::Char('r') => return self.start_stepping(Vec::new()),
            KeyCode::Char('p') => {
                self.step = None;
                self.run = None;
                return vec![Command::Stop { generation }];
            }
            KeyCode::PageUp => self.scroll(-20),
            KeyCode::PageDown => self.scroll(20),
            _ => self
                .say("in step mode: 1-9 or ↑↓ pick, Space steps, u undo, t time, f free, p leave"),
        }
        Vec::new()
    }

    /// Opens step mode: a new run whose updaters wait for the presenter, after replaying
    /// `replay` on fresh keys. A schedule loaded with `--schedule` is the plan while the
    /// steps taken follow it.
    pub fn start_stepping(&mut self, replay: Vec<Token>) -> Vec<Command> {
        if self.workers.is_some() {
            self.say("step mode runs the updaters in this process; start racelab without --workers to step");
            return Vec::new();
        }
        let mut commands = Vec::new();
        match (&self.step, &self.run) {
            (Some(step), Some(run)) if run.running() && run.generation == step.generation => {
                commands.push(Command::Stop {
                    generation: step.generation,
                });
            }
            _ if self.busy() => {
                self.say("a run is going on; step mode opens when it ends");
                return Vec::new();
            }
            _ => {}
        }
        if !self.fits(&[self.strategy]) {
            return commands;
        }
        let generation = self.generation();
        let mut workload = self.workload.clone();
        // The presenter is the clock: no think time to wait out between a read and the write.
        workload.think = Duration::ZERO;
        workload.jitter = 0.0;
        let plan = self.plan_after(&replay);
        self.screen = Screen::Main;
        self.lane_scroll = 0;
        self.step = Some(StepView::new(generation, &workload, replay.clone(), plan));
        self.run = Some(RunView::new(
            generation,
            self.strategy,
            workload.clone(),
            self.now,
        ));
        commands.push(Command::Step {
            generation,
            strategy: self.strategy,
            workload,
            replay,
        });
        commands
    }

    /// What is left of the loaded schedule once `taken` is replayed: its rest while `taken`
    /// follows it, nothing once it went its own way.
    fn plan_after(&self, taken: &[Token]) -> Vec<Token> {
        match &self.loaded {
            Some(loaded) if loaded.tokens.starts_with(taken) => {
                loaded.tokens[taken.len()..].to_vec()
            }
            _ => Vec::new(),
        }
    }

    /// Settings change between runs: a running one keeps the settings it started with, and the
    /// header always shows what is running, so a change now would only confuse.
    fn change(&mut self, f: impl FnOnce(&mut App)) {
        if self.busy() {
            self.say("settings change between runs; wait for this one to end");
            return;
        }
        f(self);
    }

    fn scroll(&mut self, by: i64) {
        let lanes = self
            .run
            .as_ref()
            .map_or(self.workload.updaters as usize, |r| r.updaters.len());
        let next = (self.lane_scroll as i64).saturating_add(by);
        self.lane_scroll = next.clamp(0, lanes.saturating_sub(1) as i64) as usize;
    }

    fn generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    /// Whether the machine has the memory for `strategies` on the workload; says why not.
    fn fits(&mut self, strategies: &[Strategy]) -> bool {
        if self.workers.is_some() {
            // The updaters, and their memory, are the workers'.
            return true;
        }
        for &strategy in strategies {
            if let Some((need, limit)) =
                crate::budget::shortfall(strategy, &self.workload, self.memory_limit)
            {
                self.say(crate::budget::short_reason(strategy, need, limit));
                return false;
            }
        }
        true
    }

    fn start_run(&mut self) -> Vec<Command> {
        if self.busy() {
            self.say("a run is going on; it ends in a moment");
            return Vec::new();
        }
        if !self.fits(&[self.strategy]) {
            return Vec::new();
        }
        let generation = self.generation();
        let workload = self.workload.clone();
        self.screen = Screen::Main;
        self.lane_scroll = 0;
        self.step = None;
        self.run = Some(RunView::new(
            generation,
            self.strategy,
            workload.clone(),
            self.now,
        ));
        vec![Command::Run {
            generation,
            strategy: self.strategy,
            workload,
        }]
    }

    /// `F`: the failover lesson, in a free run on a private server with replicas.
    fn fail_over(&mut self) -> Vec<Command> {
        if self.target.replicas == 0 {
            self.say("F fails over racelab's private primary: start racelab with --replicas 1");
            return Vec::new();
        }
        if !self.run.as_ref().is_some_and(RunView::running) {
            self.say("F fails over during a run: press Enter to start one, then F");
            return Vec::new();
        }
        self.say("failing over: the replica is promoted; what only the old primary had is lost");
        vec![Command::FailOver]
    }

    /// `c` opens the comparison and starts it; pressed again once it is done, it goes back.
    fn toggle_compare(&mut self) -> Vec<Command> {
        if self.screen == Screen::Compare {
            if self.compare.as_ref().is_some_and(|c| c.running) {
                self.say("the comparison is running; q quits");
            } else {
                self.screen = Screen::Main;
            }
            return Vec::new();
        }
        if self.busy() {
            self.say("a run is going on; compare when it ends");
            return Vec::new();
        }
        if !self.fits(Strategy::ALL) {
            return Vec::new();
        }
        let generation = self.generation();
        let workload = self.workload.clone();
        let strategies = Strategy::ALL.to_vec();
        self.compare = Some(CompareView::new(
            generation,
            workload.clone(),
            &strategies,
            self.now,
        ));
        self.screen = Screen::Compare;
        vec![Command::Compare {
            generation,
            strategies,
            workload,
        }]
    }
}

/// The strategy `by` places from `current` in the cycle `s` walks: every built-in one, then the
/// user's own (`exec:`, `lua:`) it started with, if any.
fn next_strategy(current: Strategy, own: Option<Strategy>, by: isize) -> Strategy {
    let mut all = Strategy::ALL.to_vec();
    all.extend(own);
    let at = all.iter().position(|s| *s == current).unwrap_or(0) as isize;
    let n = all.len() as isize;
    all[((at + by).rem_euclid(n)) as usize]
}

/// The next value of `steps` above (or below) `current`; off-ladder values join the ladder.
fn step<T: Copy + PartialOrd>(steps: &[T], current: T, up: bool) -> T {
    if up {
        steps
            .iter()
            .copied()
            .find(|&s| s > current)
            .unwrap_or(current)
    } else {
        steps
            .iter()
            .rev()
            .copied()
            .find(|&s| s < current)
            .unwrap_or(current)
    }
}

fn step_think(current: Duration, slower: bool) -> Duration {
    let ms = current.as_micros() as f64 / 1000.0;
    let steps: Vec<f64> = THINK_STEPS_MS.iter().map(|&s| s as f64).collect();
    Duration::from_secs_f64(step(&steps, ms, slower) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_step_and_stop_at_their_ends() {
        assert_eq!(step(UPDATER_STEPS, 20, true), 50);
        assert_eq!(step(UPDATER_STEPS, 20, false), 10);
        assert_eq!(step(UPDATER_STEPS, 7, true), 10);
        assert_eq!(step(UPDATER_STEPS, 1000, true), 1000);
        assert_eq!(step(UPDATER_STEPS, 1, false), 1);
        assert_eq!(
            step_think(Duration::from_millis(600), true),
            Duration::from_secs(1)
        );
        assert_eq!(
            step_think(Duration::from_millis(600), false),
            Duration::from_millis(400)
        );
        assert_eq!(step_think(Duration::ZERO, false), Duration::ZERO);
    }
}
