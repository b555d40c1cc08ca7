//! racelab makes the lost-update race of a read-modify-write against Redis visible, and proves
//! which fixes hold.
//!
//! The scenario is the one of a .NET challenge: `UpdateSegmentStatusAsync` reads a whole journey
//! of 20 flight segments, changes one segment's status, waits 10 ms and writes the whole journey
//! back; twenty concurrent updates lose most of their writes. racelab plays it against a real
//! Redis with a chosen strategy and tells exactly which updates were lost and who erased them.
//!
//! # Layout
//! - [`bench`]: `racelab bench`, the strategies' costs beside redis-benchmark.
//! - [`budget`]: how much memory a run will take, and whether the machine has it.
//! - [`cli`]: command-line options and their checks.
//! - [`journey`]: the seed's data model and fixture (`assets/journey.json`).
//! - [`workload`]: the shape of a run (workload, tuning, what `--expect auto` looks at); a leaf.
//! - [`lease`]: a worker's hold on the runs it serves; a leaf.
//! - [`roster`]: which worker ran which updaters, as reports and screens show it; a leaf.
//! - [`redis_errors`]: one policy for what Redis answers: transient, refused, fatal, advice.
//! - [`keys`]: the key layout; every key racelab touches is built there.
//! - [`server`]: a private `redis-server` that dies with its owner, and a private 3-primary
//!   Redis Cluster made of them.
//! - [`target`]: the Redis (a server or a cluster) a run goes against, connections, and password
//!   redaction.
//! - [`strategy`]: the seed's bug and its fixes, one file each, and how each lays out a journey.
//! - [`service`]: the journey-service API (get a journey, update a segment's status).
//! - [`event`]: the typed events updaters emit while a run goes on.
//! - [`engine`]: one strategy, one workload: seed, release, tally, read back, verify, clean up.
//! - [`truth`]: acknowledged, applied, lost, unknown; who erased each lost update.
//! - [`report`]: the text and JSON report of a headless run.
//! - [`headless`]: `racelab run`, the headless consumer of the engine.
//! - [`output`]: every line racelab prints, safe against closed pipes and full disks.
//! - [`history`]: `--history`, every operation as JSON lines streamed to disk.
//! - [`tui`]: `racelab` and `racelab tui`, the interactive consumer: live grid, lanes, story.
//! - [`crew`]: `--workers`: a run's updaters in several processes or hosts, met through Redis;
//!   `crew::worker` is `racelab worker`, the process that runs the updaters a crew hands it.

pub mod bench;
pub mod budget;
pub mod cli;
pub mod crew;
pub mod engine;
pub mod error;
pub mod event;
pub mod headless;
pub mod history;
pub mod journey;
pub mod keys;
pub mod lease;
pub mod output;
pub mod redis_errors;
pub mod report;
pub mod roster;
pub mod server;
pub mod service;
pub mod strategy;
pub mod target;
pub mod truth;
pub mod tui;
pub mod workload;

use tokio_util::sync::CancellationToken;

use crate::cli::{Action, Cli};
use crate::error::Error;

/// Runs the command `cli` names and returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    // One thread: updaters spend their time waiting on Redis, and on a small machine handing
    // every reply from one worker thread to another (futex wake-ups) cost more than the work
    // itself: ~90k to ~130k hash updates/s on two cores. Blocking work (the history file, the
    // keyboard) has threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            crate::note!("racelab: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let cancel = CancellationToken::new();
    let code = runtime.block_on(async {
        let signal = tokio::spawn(watch_signals(cancel.clone()));
        let code = dispatch(cli, &cancel).await;
        signal.abort();
        code
    });
    // Updaters still unwinding after an interrupt must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn dispatch(cli: Cli, cancel: &CancellationToken) -> i32 {
    let result = match cli.command {
        Some(Action::Run(args)) => headless::run(&args, cancel).await,
        Some(Action::Bench(args)) => {
            return match bench::run(&args, cancel).await {
                Ok(_) => interrupted_code(cancel).unwrap_or(0),
                Err(e) => {
                    crate::note!("racelab: {e}");
                    interrupted_code(cancel).unwrap_or(e.exit_code())
                }
            };
        }
        Some(Action::Worker(args)) => {
            return match crew::worker::run(&args, cancel).await {
                Ok(()) => interrupted_code(cancel).unwrap_or(0),
                Err(e) => {
                    if !matches!(e, Error::Interrupted) {
                        crate::note!("racelab: {e}");
                    }
                    interrupted_code(cancel).unwrap_or(e.exit_code())
                }
            };
        }
        Some(Action::Tui(options)) => return tui_exit(tui::run(options, cancel).await, cancel),
        None => return tui_exit(tui::run(cli.options, cancel).await, cancel),
    };
    let interrupted = interrupted_code(cancel);
    match result {
        Ok(_) if interrupted.is_some() => interrupted.unwrap_or(130),
        Ok(report) if !report.complete => {
            let why = report
                .runs
                .iter()
                .find_map(|r| r.stopped.as_deref().map(|s| format!("{}: {s}", r.strategy)))
                .unwrap_or_else(|| "a run stopped early".to_owned());
            crate::note!("racelab: the run could not be completed ({why})");
            2
        }
        Ok(report) if report.inconclusive() => {
            for run in report.runs.iter() {
                if let Some(why) = &run.inconclusive {
                    crate::note!("racelab: inconclusive: {}: {why}", run.strategy);
                }
            }
            2
        }
        Ok(report) if report.ok => 0,
        Ok(_) => 1,
        Err(e) => {
            crate::note!("racelab: {e}");
            interrupted.unwrap_or(e.exit_code())
        }
    }
}

/// The TUI's exit code: 0 when the user quits, 2 when it could not be shown (no terminal, no
/// Redis), 130/143 when a signal ended it.
fn tui_exit(result: Result<(), Error>, cancel: &CancellationToken) -> i32 {
    let interrupted = interrupted_code(cancel);
    match result {
        Ok(()) => interrupted.unwrap_or(0),
        Err(e) => {
            crate::note!("racelab: {e}");
            interrupted.unwrap_or(e.exit_code())
        }
    }
}

/// Which signal interrupted us, as a shell reports it: 130 for SIGINT, 143 for SIGTERM, 129 for
/// SIGHUP.
static SIGNAL_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The terminal hung up without a SIGHUP reaching us: end as if it had.
pub(crate) fn hang_up(cancel: &CancellationToken) {
    SIGNAL_CODE.store(129, std::sync::atomic::Ordering::SeqCst);
    cancel.cancel();
}

fn interrupted_code(cancel: &CancellationToken) -> Option<i32> {
    if !cancel.is_cancelled() {
        return None;
    }
    match SIGNAL_CODE.load(std::sync::atomic::Ordering::SeqCst) {
        0 => Some(130),
        code => Some(code),
    }
}

/// One cancellation signal for everyone: Ctrl-C, SIGTERM and SIGHUP cancel it, and every part of the run
/// winds down from there, so destructors run and the private redis-server dies with us.
async fn watch_signals(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        // SIGHUP comes when the terminal racelab runs in is closed: the run's keys must go and
        // the private server must stop, exactly as on SIGTERM.
        let code = tokio::select! {
            _ = tokio::signal::ctrl_c() => 130,
            _ = term.recv() => 143,
            _ = hangup.recv() => 129,
        };
        SIGNAL_CODE.store(code, std::sync::atomic::Ordering::SeqCst);
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    cancel.cancel();
}
