//! `racelab` and `racelab tui`: the interactive screen. It is the engine plus a terminal, not a
//! second engine: runs go through [`engine::run_as`], their events and an observer's reads of
//! Redis become [`Msg`]s, [`App::update`] folds them in, and [`ui::render`] draws the state at a
//! capped frame rate.
//!
//! - [`app`]: the state and `update`; no I/O.
//! - [`run_view`]: the run on the main screen, its events and observer reads folded in.
//! - One file per view, its state beside its drawing: [`grid`], [`lanes`], [`story`],
//!   [`compare`](mod@compare).
//! - [`ui`]: the whole screen from the state (header, footer, help); [`widgets`] and [`theme`]
//!   are what every view draws with. Drawing does no I/O either.
//! - [`step`]: step mode, where the presenter picks who takes the next step; [`stepper`]
//!   runs it (the engine with a [`crate::schedule::Driver`] the presenter drives).
//! - [`observer`]: reads the journey as Redis holds it, on its own connection.
//! - [`terminal`]: full-screen mode in and out, whatever way the TUI ends.
//!
//! This module is the runtime around them: the input thread, the frame loop, the tasks that
//! run strategies, and with `--workers` the crew of workers those runs go to (gathered before
//! the screen opens, dismissed after it closes).

pub mod app;
pub mod compare;
pub mod grid;
pub mod lanes;
pub mod observer;
pub mod run_view;
pub mod step;
pub mod stepper;
pub mod story;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod widgets;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{Options, TUI_THINK};
use crate::crew::Crew;
use crate::engine::{self, Settings};
use crate::error::Error;
use crate::event::Event;
use crate::keys::Keys;
use crate::strategy::Strategy;
use crate::target::Target;
use crate::workload::Workload;
pub use app::{App, Command, Msg, TUI_JITTER, TargetInfo};

/// 20 frames a second at most: smooth to the eye, and a thousand updaters' events are folded
/// into the state between frames instead of each causing a redraw.
const FRAME: Duration = Duration::from_millis(50);
/// Messages waiting for the screen; bounded so a screen that falls behind slows the run a little
/// rather than growing without end.
const MSG_CHANNEL: usize = 8192;
/// Events of one run between the engine and the screen.
const EVENT_CHANNEL: usize = 4096;
/// How many queued messages are folded in before the loop looks at the clock again.
const DRAIN: usize = 4096;

/// Runs the TUI until the user quits.
pub async fn run(options: Options, cancel: &CancellationToken) -> Result<(), Error> {
    if !terminal::available() {
        return Err(Error::Usage(
            "stdout is not a terminal, so there is no screen for the TUI; use `racelab run` for a headless report".to_owned(),
        ));
    }
    let strategy = options
        .strategy
        .0
        .first()
        .copied()
        .unwrap_or(Strategy::Naive);
    let mut workload = options.workload(TUI_THINK, TUI_JITTER)?;
    // A schedule is step mode's plan; the TUI's free runs stay free.
    let loaded = workload.schedule.take();
    // Redis first: a missing redis-server or a wrong URL is reported on a plain terminal.
    let target = Arc::new(options.target().await?);
    let info = TargetInfo {
        display: target.display().to_owned(),
        version: target.version().to_owned(),
        private: target.is_private(),
        cluster: target.placement(&workload.journey.id).await?,
        replicas: target.replicas(),
    };
    let mut settings = options.settings();
    // `F` asks the run going on to fail over (README "Failover").
    if target.replicas() > 0 {
        settings.failover_now = Some(Arc::new(tokio::sync::Notify::new()));
    }
    let mut crew = None;
    if let Some(count) = options.workers {
        // On the plain terminal still: the crew says how to start workers and who joined, and
        // the user may wait here a while.
        let gathered = match Crew::gather(
            &target,
            &settings.key_prefix,
            count,
            options.join_timeout,
            options.crew_secret.clone(),
            cancel,
        )
        .await
        {
            Ok(crew) => crew,
            // Ctrl-C while waiting is the user's way out, not an error to print: the exit code
            // says it was interrupted.
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };
        gathered.quiet();
        let gathered = Arc::new(gathered);
        settings.remote = Some(gathered.clone());
        crew = Some(gathered);
    }
    let mut app = App::new(
        strategy,
        workload,
        options.seed.is_some(),
        info,
        terminal::color_wanted(),
        Instant::now(),
    );
    app.workers = crew.as_ref().map(|crew| crew.size() as u32);
    app.loaded = loaded;
    app.memory_limit = crate::budget::limit();
    // The runs go on a runtime of their own, on a thread of its own: thousands of updaters
    // parsing journeys must never starve the frame loop and the keyboard (with everything on
    // one thread, `q` once took ten seconds to answer).
    let engine = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("racelab-engine")
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the runs' runtime: {e}")))?;
    let result = match terminal::TerminalGuard::enter() {
        Ok(mut guard) => {
            let result = Session::new(target.clone(), settings.clone(), engine.handle().clone())
                .run(&mut guard, &mut app, cancel)
                .await;
            drop(guard);
            result
        }
        Err(e) => Err(e),
    };
    // Every run has ended (Session::run awaits them); only idle connection tasks remain.
    engine.shutdown_background();
    // Every run has ended (Session::run awaits them): the workers go back to waiting, or leave
    // if they serve once. Also after an error, so they are not left claimed until the session
    // key expires.
    if let Some(crew) = &crew {
        crew.dismiss().await;
    }
    drop(crew);
    drop(settings);
    // Every run task has ended (Session::run awaits them), so this is the last reference: the
    // private redis-server stops here, after the runs deleted their keys.
    drop(target);
    result
}

/// A run or comparison in progress, as a task on the engine's runtime.
struct RunTask {
    generation: u64,
    stop: CancellationToken,
    handle: JoinHandle<()>,
    /// A stepped run's way to hear the presenter.
    controls: Option<mpsc::UnboundedSender<step::Control>>,
}

struct Session {
    target: Arc<Target>,
    settings: Settings,
    tasks: Vec<RunTask>,
    /// Where the runs go: off the thread that draws the screen.
    engine: tokio::runtime::Handle,
}

impl Session {
    fn new(target: Arc<Target>, settings: Settings, engine: tokio::runtime::Handle) -> Session {
        Session {
            target,
            settings,
            tasks: Vec::new(),
            engine,
        }
    }

    async fn run(
        mut self,
        guard: &mut terminal::TerminalGuard,
        app: &mut App,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let (tx, mut rx) = mpsc::channel::<Msg>(MSG_CHANNEL);
        let input = Input::spawn(tx.clone()).map_err(|e| {
            Error::Usage(format!(
                "cannot read the keyboard ({e}); use `racelab run` for a headless report"
            ))
        })?;
        // A schedule loaded with --schedule opens in step mode.
        if app.loaded.is_some() {
            for command in app.start_stepping(Vec::new()) {
                self.start(command, app.fixed_seed, &tx);
            }
        }
        let mut frame = tokio::time::interval(FRAME);
        frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let outcome = loop {
            tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                msg = rx.recv() => {
                    let Some(msg) = msg else { break Ok(()) };
                    let mut commands = app.update(msg, Instant::now());
                    for _ in 0..DRAIN {
                        match rx.try_recv() {
                            Ok(msg) => commands.extend(app.update(msg, Instant::now())),
                            Err(_) => break,
                        }
                    }
                    for command in commands {
                        self.start(command, app.fixed_seed, &tx);
                    }
                }
                _ = frame.tick() => {
                    if terminal::hung_up() {
                        // As if SIGHUP had come: stop the run, delete its keys, exit 129.
                        crate::hang_up(cancel);
                        break Ok(());
                    }
                    let busy = app.busy() || app.notice_text().is_some();
                    app.update(Msg::Tick, Instant::now());
                    if busy || app.dirty {
                        app.dirty = false;
                        if let Err(e) = guard.terminal.draw(|f| ui::render(f, app)) {
                            break Err(Error::Usage(format!(
                                "the terminal stopped taking output ({e}); use `racelab run` for a headless report"
                            )));
                        }
                    }
                }
            }
            if app.should_quit() {
                break Ok(());
            }
            if let Some(reason) = self.reap().await {
                // ratatui's panic hook has already restored the terminal: drawing on would
                // scribble over the shell, so the TUI ends with the bug's message instead.
                break Err(Error::Run {
                    target: self.target.display().to_owned(),
                    reason: format!("racelab hit a bug ({reason}); please report it"),
                });
            }
        };
        input.stop();
        if outcome.is_ok() && app.busy() {
            app.stopping();
            // Best effort: the screen is going away anyway.
            let _ = guard.terminal.draw(|f| ui::render(f, app));
        }
        self.shutdown(&mut rx).await;
        drop(tx);
        input.join();
        outcome
    }

    fn start(&mut self, command: Command, fixed_seed: bool, tx: &mpsc::Sender<Msg>) {
        let stop = CancellationToken::new();
        let target = self.target.clone();
        let settings = self.settings.clone();
        let tx = tx.clone();
        let reseed = |mut workload: Workload| {
            if !fixed_seed {
                workload.seed = rand::random();
            }
            workload
        };
        let mut controls = None;
        let (generation, handle) = match command {
            Command::Run {
                generation,
                strategy,
                workload,
            } => (
                generation,
                self.engine.spawn(run_one(
                    target,
                    settings,
                    strategy,
                    reseed(workload),
                    generation,
                    tx,
                    stop.clone(),
                )),
            ),
            Command::Compare {
                generation,
                strategies,
                workload,
            } => (
                generation,
                self.engine.spawn(compare(
                    target,
                    settings,
                    strategies,
                    reseed(workload),
                    generation,
                    tx,
                    stop.clone(),
                )),
            ),
            // The same workload every time: an undo's replay must be the same run again.
            Command::Step {
                generation,
                strategy,
                workload,
                replay,
            } => {
                let (send, receive) = mpsc::unbounded_channel();
                controls = Some(send);
                (
                    generation,
                    self.engine.spawn(stepper::run_stepped(
                        target,
                        settings,
                        strategy,
                        workload,
                        replay,
                        generation,
                        receive,
                        tx,
                        stop.clone(),
                    )),
                )
            }
            Command::Control {
                generation,
                control,
            } => {
                if let Some(send) = self
                    .tasks
                    .iter()
                    .find(|t| t.generation == generation)
                    .and_then(|t| t.controls.as_ref())
                {
                    let _ = send.send(control);
                }
                return;
            }
            Command::FailOver => {
                // Only a run waiting for it hears it: none is kept for the next run.
                if let Some(now) = &self.settings.failover_now {
                    now.notify_waiters();
                }
                return;
            }
            Command::Stop { generation } => {
                for task in self.tasks.iter().filter(|t| t.generation == generation) {
                    task.stop.cancel();
                }
                return;
            }
        };
        self.tasks.push(RunTask {
            generation,
            stop,
            handle,
            controls,
        });
    }

    /// Forgets finished tasks; a task that panicked is returned as its panic message.
    async fn reap(&mut self) -> Option<String> {
        let mut crashed = None;
        let mut running = Vec::with_capacity(self.tasks.len());
        for mut task in self.tasks.drain(..) {
            if !task.handle.is_finished() {
                running.push(task);
                continue;
            }
            // Finished: this await returns at once.
            if let Err(e) = (&mut task.handle).await
                && e.is_panic()
            {
                crashed = Some(e.to_string());
            }
        }
        self.tasks = running;
        crashed
    }

    /// A quit in the middle of a run stops it and waits for the engine to delete the run's keys:
    /// the Target, and with it the private redis-server, must outlive that cleanup.
    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<Msg>) {
        for task in &self.tasks {
            task.stop.cancel();
        }
        for task in self.tasks.drain(..) {
            let mut handle = task.handle;
            loop {
                tokio::select! {
                    _ = &mut handle => break,
                    // Keep the channel moving: a run blocked on a full channel never ends.
                    msg = rx.recv() => if msg.is_none() { break },
                }
            }
        }
    }
}

/// One run of one strategy, with the observer watching Redis while it goes: its events, the
/// observer's reads and finally [`Msg::RunFinished`] go to `tx`. Cancelling `stop` ends the run
/// early; the engine still deletes the run's keys before this returns.
pub async fn run_one(
    target: Arc<Target>,
    settings: Settings,
    strategy: Strategy,
    workload: Workload,
    generation: u64,
    tx: mpsc::Sender<Msg>,
    stop: CancellationToken,
) {
    if let Some(crew) = &settings.remote {
        // Before any event of the run, so every lane has its worker from the start. The engine
        // takes this very plan for the run (the crew keeps it), unless a worker in it vanished
        // in between; the result then says who ran what.
        let _ = tx
            .send(Msg::WorkersPlanned {
                generation,
                shares: crew.plan(workload.updaters).await,
            })
            .await;
    }
    let run = Watched {
        target,
        settings,
        strategy,
        workload,
        generation,
        tx,
    };
    run.run(stop, |_, _, _| async {}).await;
}

/// A run the screen watches: the engine's run, its events forwarded, the observer reading
/// Redis, and whatever else goes `alongside` it (step mode's presenter), given the run's keys
/// and a token cancelled once the run is over.
pub(super) struct Watched {
    pub target: Arc<Target>,
    pub settings: Settings,
    pub strategy: Strategy,
    pub workload: Workload,
    pub generation: u64,
    pub tx: mpsc::Sender<Msg>,
}

impl Watched {
    pub async fn run<F: Future<Output = ()>>(
        self,
        stop: CancellationToken,
        alongside: impl FnOnce(Keys, observer::Source, CancellationToken) -> F,
    ) {
        let Watched {
            target,
            mut settings,
            strategy,
            workload,
            generation,
            tx,
        } = self;
        let run_id = Keys::new_run_id();
        let keys = Keys::new(&settings.key_prefix, &run_id, &workload.journey.id);
        // A user's journey service keeps the journey its own way: the grid asks it.
        let source = match strategy.exec_command() {
            Some(_) => {
                let slot = crate::exec::ServiceSlot::default();
                settings.service = Some(slot.clone());
                observer::Source::Service(slot, workload.journey.clone())
            }
            None => observer::Source::Redis(strategy, keys.clone()),
        };
        let (events, events_rx) = mpsc::channel(EVENT_CHANNEL);
        let over = stop.child_token();
        let run = async {
            let result = engine::run_as(
                &target,
                strategy,
                &workload,
                &settings,
                run_id,
                Some(events),
                &stop,
            )
            .await;
            over.cancel();
            result
        };
        let observe = observer::observe(
            target.clone(),
            source.clone(),
            generation,
            tx.clone(),
            over.clone(),
        );
        // The finish message goes last, after every event and snapshot of the run.
        let (result, (), (), ()) = tokio::join!(
            run,
            forward(events_rx, generation, &tx),
            observe,
            alongside(keys, source, over.clone())
        );
        let _ = tx
            .send(Msg::RunFinished {
                generation,
                result: result.map_err(|e| e.to_string()),
            })
            .await;
    }
}

/// Every strategy on the same workload, one after another, as [`Msg::CompareStarted`],
/// events, [`Msg::CompareFinished`] and finally [`Msg::CompareDone`].
pub async fn compare(
    target: Arc<Target>,
    settings: Settings,
    strategies: Vec<Strategy>,
    workload: Workload,
    generation: u64,
    tx: mpsc::Sender<Msg>,
    stop: CancellationToken,
) {
    for strategy in strategies {
        if stop.is_cancelled() {
            break;
        }
        let _ = tx
            .send(Msg::CompareStarted {
                generation,
                strategy,
            })
            .await;
        let (events, events_rx) = mpsc::channel(EVENT_CHANNEL);
        let run = engine::run(&target, strategy, &workload, &settings, Some(events), &stop);
        let (result, ()) = tokio::join!(run, forward(events_rx, generation, &tx));
        let _ = tx
            .send(Msg::CompareFinished {
                generation,
                strategy,
                result: result.map_err(|e| e.to_string()),
            })
            .await;
    }
    let _ = tx.send(Msg::CompareDone { generation }).await;
}

/// Passes a run's events to the screen, stamped with when they arrived.
async fn forward(mut events: mpsc::Receiver<Event>, generation: u64, tx: &mpsc::Sender<Msg>) {
    while let Some(event) = events.recv().await {
        let msg = Msg::Event {
            generation,
            received: Instant::now(),
            event,
        };
        if tx.send(msg).await.is_err() {
            break;
        }
    }
}

/// Reads keys and resizes on a thread of its own: crossterm's reads block.
struct Input {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Input {
    fn spawn(tx: mpsc::Sender<Msg>) -> std::io::Result<Input> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("racelab-input".to_owned())
            .spawn(move || {
                use crossterm::event::{self, Event as Term, KeyEventKind};
                while !flag.load(Ordering::Relaxed) {
                    // Short polls, so a quit is noticed quickly and the thread ends with the TUI.
                    match event::poll(Duration::from_millis(50)) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(_) => break,
                    }
                    let msg = match event::read() {
                        Ok(Term::Key(key)) if key.kind != KeyEventKind::Release => Msg::Key(key),
                        Ok(Term::Resize(..)) => Msg::Resize,
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    // Never block: the loop may be shutting down and no longer reading.
                    let _ = tx.try_send(msg);
                }
            })?;
        Ok(Input {
            stop,
            handle: Some(handle),
        })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits a moment for the keyboard thread to see the stop. A terminal that hung up (its
    /// window closed: SIGHUP) can leave crossterm's read spinning inside the call, where the stop
    /// is never seen; the thread is then left to end with the process instead of holding the
    /// exit (and the run's cleanup after it) forever.
    fn join(mut self) {
        self.stop();
        let Some(handle) = self.handle.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        while !handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}
