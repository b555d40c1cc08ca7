//! racelab makes the lost-update race of a read-modify-write against Redis visible, and proves
//! which fixes hold.
//!
//! The scenario is the one of a .NET challenge: `UpdateSegmentStatusAsync` reads a whole journey
//! of 20 flight segments, changes one segment's status, waits 10 ms and writes the whole journey
//! back; twenty concurrent updates lose most of their writes. racelab plays it against a real
//! Redis with a chosen strategy and tells exactly which updates were lost and who erased them.
//!
//! # Layout
//! From the leaves up; imports flow one way (front ends → engine → strategies → Redis and model).
//!
//! Leaves, shared by everyone:
//! - `journey`: the seed's data model and fixture (`assets/journey.json`).
//! - `workload`: the shape of a run: workload, tuning, what `--expect auto` looks at.
//! - `keys`: the key layout; every key racelab touches is built there, with its safety-net expiry.
//! - `event`: the typed events updaters emit while a run goes on.
//! - `lease`: a worker's hold on the runs it serves.
//! - `roster`: which worker ran which updaters, as reports and screens show it.
//! - `error`: why a run could not be made, one sentence each; `output`: every line racelab
//!   prints, safe against closed pipes and full disks.
//!
//! Redis:
//! - `redis_errors`: one policy for what Redis answers (transient, refused, fatal, advice).
//! - `server`: a private `redis-server` that dies with its owner, and a private 3-primary
//!   cluster made of them.
//! - `target`: the Redis (a server or a cluster) a run goes against, connections, redaction,
//!   `--wait-replicas`' WAIT after every write.
//! - `failover`: `--replicas` on a private server behind a relay, and `--failover-at`'s failover
//!   (`REPLICAOF NO ONE` there, `CLUSTER FAILOVER FORCE` on a private cluster).
//! - `in_flight`: the cap on an updater share's requests in flight, opening requests first.
//! - `exec`: a user's journey service (`-s exec:CMD`): the program, its JSON lines, its stderr.
//!
//! The race:
//! - `strategy/`: the seed's bug, its fixes and the fixes that only look right (`multi`,
//!   `watch-other`, `del-unlock`, `local-mutex`), one file each owning its facts; `mod.rs` lists
//!   them once; `storage.rs` lays a journey out in Redis; `user.rs` holds a user's own
//!   (`exec:`, `lua:`).
//! - `engine/`: one strategy, one workload: `mod.rs` runs it (and races remote updaters through
//!   the `RemoteUpdaters` seam), `lifecycle.rs` seeds, renews, reads back and deletes the run's
//!   keys, `local.rs` drives this process's updaters, `exec.rs` runs a user's journey service.
//! - `schedule`, `prove`: chosen interleavings (`--schedule`, the gate before every step), and
//!   `racelab prove`, every interleaving of 2 or 3 updaters.
//! - `truth`: acknowledged, applied, lost, unknown; who erased each lost update; inconclusive.
//! - `budget`: how much memory a run will take, and whether the machine has it.
//!
//! Front ends, each a consumer of the engine's events:
//! - `cli`: command-line options and their checks.
//! - `headless`, `report`, `history`: `racelab run`, its text and JSON report, `--history`.
//! - `junit`, `markdown`: the JUnit XML and Markdown reports of `run` and `prove`, for CI.
//! - `html/`: `--html`, the run (or the proof) as a self-contained page; `lanes.rs` watches the
//!   events for each updater's spans.
//! - `completions`: `racelab completions`, shell completions and the man page.
//! - `bench`: `racelab bench`, the strategies' costs beside redis-benchmark.
//! - `service`: the seed's journey-service API (get a journey, update a segment's status).
//! - [`tui`]: `racelab` and `racelab tui`: `app.rs` (state and update), one file per view with
//!   its drawing (`run_view`, `grid`, `lanes`, `story`, `compare`, `step` for step mode),
//!   `ui.rs` (the screen), the runtime around them in `mod.rs`, `stepper.rs` (a run the
//!   presenter steps) and `observer.rs` (the journey read while a run goes on).
//! - `crew/`: `--workers`: membership (`mod.rs`), the control stream's messages, the
//!   coordinator's race, a worker's card, and `worker.rs`, the `racelab worker` process.

mod bench;
mod budget;
mod cli;
mod completions;
mod crew;
mod elle;
mod engine;
mod error;
mod event;
mod exec;
mod failover;
/// For the fuzz targets only (`tests/fuzz`).
#[doc(hidden)]
pub mod fuzzing;
mod headless;
mod history;
mod html;
mod in_flight;
mod journey;
mod junit;
mod keys;
mod lease;
mod markdown;
mod output;
mod prove;
mod redis_errors;
mod report;
mod roster;
mod schedule;
mod server;
mod service;
mod strategy;
mod target;
mod truth;
pub mod tui;

// The public surface: what `main` needs to start, and what the tests drive the engine with. The
// modules stay private; the TUI's views are public for its state, widget and screen tests.
pub use cli::{Cli, TUI_THINK, settle_environment};
pub use engine::{RemoteUpdaters, RunResult, Settings, run};
pub use error::Error;
pub use event::{Event, EventKind, Outcome, RetryReason, Seen, WriteScope};
pub use failover::FailoverRecord;
pub use journey::{Journey, SegmentState, UPDATE_STATUSES, update_status};
pub use output::guard_standard_streams;
pub use report::{Expect, Expected};
pub use roster::WorkerShare;
pub use schedule::{Choice, Driver, Role, Schedule, Step, Token};
pub use server::{RedisCluster, RedisServer};
pub use service::JourneyService;
pub use strategy::{Strategy, UpdateStatus};
pub use target::{ClusterPlace, Target};
pub use truth::{Tally, verify};
pub use workload::{Backoff, RaceShape, Scenario, Tuning, Workload};
mod workload;

use tokio_util::sync::CancellationToken;

use crate::cli::Action;

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
        Some(Action::Prove(args)) => {
            return match prove_command(&args, cancel).await {
                Ok(ok) => interrupted_code(cancel).unwrap_or(if ok { 0 } else { 1 }),
                Err(e) => {
                    if !matches!(e, Error::Interrupted) {
                        crate::note!("racelab: {e}");
                    }
                    interrupted_code(cancel).unwrap_or(e.exit_code())
                }
            };
        }
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
        Some(Action::Completions(args)) => {
            return match completions::write(&args) {
                Ok(()) => 0,
                Err(e) => {
                    crate::note!("racelab: {e}");
                    e.exit_code()
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

/// `racelab prove`: the report to stdout or `--output`; whether every strategy behaved as
/// expected under every schedule.
async fn prove_command(args: &cli::ProveArgs, cancel: &CancellationToken) -> Result<bool, Error> {
    let output_error = |path: &std::path::Path, e: std::io::Error| Error::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let (Some(page), Some(output)) = (&args.html, &args.output)
        && headless::same_file(page, output)
    {
        return Err(Error::Usage(format!(
            "--html {} is the file --output names too, and the two would overwrite each other; give each its own file",
            page.display()
        )));
    }
    // Open the outputs first: a path that can't be written fails before any schedule is run.
    let file = match &args.output {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| output_error(path, e))?),
        None => {
            output::check_stdout("prove report")?;
            None
        }
    };
    let html = args
        .html
        .as_deref()
        .map(html::HtmlFile::create)
        .transpose()?;
    let report = prove::run(args, cancel).await?;
    let text = report
        .write(args.format)
        .map_err(|e| output_error(std::path::Path::new("the report"), e))?;
    match (file, &args.output) {
        (Some(mut file), Some(path)) => {
            use std::io::Write as _;
            file.write_all(text.as_bytes())
                .map_err(|e| output_error(path, e))?
        }
        _ => output::stdout(&text, "prove report")?,
    }
    // The page comes after the report, which it leaves as it is.
    if let Some(html) = html {
        html.write(&html::prove_page(&report))?;
    }
    Ok(report.ok)
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
