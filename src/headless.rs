//! `racelab run`: the headless consumer of the engine. Runs each strategy on the same workload and
//! seed, one after another, and turns what was observed into a report and an exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{Options, RUN_THINK, RunArgs};
use crate::crew::Crew;
use crate::engine::{self, RemoteUpdaters, Settings};
use crate::error::Error;
use crate::history::{History, HistoryFormat, history_error};
use crate::report::{Expected, Format, RedisInfo, Report, RunReport};
use crate::target::Target;
use crate::workload::Workload;

/// A little jitter so updaters don't act in lockstep; small enough not to hide the race.
pub const RUN_JITTER: f64 = 0.1;

/// Refuses what an Elle history could not tell truthfully (README "History").
fn elle_possible(args: &RunArgs) -> Result<(), Error> {
    if args.history.is_none() {
        return Err(Error::Usage(
            "--history-format elle says how the history file is written, and there is none; add --history FILE".to_owned(),
        ));
    }
    if let Some(user) = args.options.strategy.0.iter().find(|s| s.is_user()) {
        return Err(Error::Usage(format!(
            "--history-format elle needs to see what each update read, and racelab cannot see the reads of {}; race it with the racelab history format",
            user.name()
        )));
    }
    if args.options.workers.is_some() {
        return Err(Error::Usage(
            "--history-format elle orders operations by one clock, and workers each have their own; drop --workers or use the racelab history format".to_owned(),
        ));
    }
    Ok(())
}

/// Runs the strategies of `args` and writes the report. `Ok(report)` even when a strategy
/// misbehaved: that is a verdict, not an error.
pub async fn run(args: &RunArgs, cancel: &CancellationToken) -> Result<Report, Error> {
    let workload = args.options.workload(RUN_THINK, RUN_JITTER)?;
    // A journey a strategy can't store faithfully is refused before anything runs.
    // With --workers the updaters, and their memory, are the workers'.
    let memory = crate::budget::limit().filter(|_| args.options.workers.is_none());
    for &strategy in &args.options.strategy.0 {
        strategy.check_journey(&workload.journey)?;
        crate::budget::check(strategy, &workload, memory).map_err(Error::Usage)?;
    }
    // Nothing racelab writes may overwrite the journey it reads.
    if let Some(journey) = &args.options.journey {
        for (option, path) in [
            ("--output", &args.output),
            ("--history", &args.history),
            ("--html", &args.html),
        ] {
            if let Some(path) = path
                && same_file(journey, path)
            {
                return Err(Error::Usage(format!(
                    "{option} {} is the journey file --journey reads, and writing it would destroy it; write somewhere else",
                    path.display()
                )));
            }
        }
    }
    if let Some(history) = &args.history {
        let clash = match &args.output {
            Some(output) => same_file(history, output).then_some("--output names"),
            None => same_file(history, Path::new("/dev/stdout")).then_some("stdout goes to"),
        };
        if let Some(clash) = clash {
            return Err(Error::Usage(format!(
                "--history {} is the file {clash} too, and the two would interleave; give each its own file",
                history.display()
            )));
        }
    }
    if let Some(html) = &args.html {
        let clash = [("--output", &args.output), ("--history", &args.history)]
            .into_iter()
            .find(|(_, path)| path.as_deref().is_some_and(|path| same_file(html, path)))
            .map(|(option, _)| option);
        if let Some(option) = clash {
            return Err(Error::Usage(format!(
                "--html {} is the file {option} names too, and the two would overwrite each other; give each its own file",
                html.display()
            )));
        }
    }
    // Open the output first: a path that can't be written fails before any work is done.
    if args.output.is_none() {
        crate::output::check_stdout("report")?;
    }
    let output = match &args.output {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| output_error(path, e))?,
        )),
        None => None,
    };
    if args.history_format == HistoryFormat::Elle {
        elle_possible(args)?;
    }
    let history = args
        .history
        .as_deref()
        .map(|path| History::create(path, args.history_format))
        .transpose()?;
    let html = args
        .html
        .as_deref()
        .map(crate::html::HtmlFile::create)
        .transpose()?;
    let mut timelines = Vec::new();
    // When the run began, for JUnit's timestamp.
    let started = std::time::SystemTime::now();
    let target = args.options.target().await?;
    if args.options.keep && target.is_private() {
        crate::note!(
            "racelab: --keep on the private redis-server keeps the keys only until racelab exits and the server with them; use --redis-url to inspect them afterwards"
        );
    }
    let mut settings = args.options.settings();
    let crew = match args.options.workers {
        Some(count) => Some(Arc::new(
            Crew::gather(
                &target,
                &settings.key_prefix,
                count,
                args.options.join_timeout,
                args.options.crew_secret.clone(),
                cancel,
            )
            .await?,
        )),
        None => None,
    };
    settings.remote = crew.clone().map(|crew| crew as Arc<dyn RemoteUpdaters>);
    let (report, failure) = run_strategies(
        &target,
        &args.options,
        &settings,
        &workload,
        args.expect,
        history.as_ref(),
        html.is_some().then_some(&mut timelines),
        cancel,
    )
    .await;
    if let Some(crew) = &crew {
        crew.dismiss().await;
    }
    // Keys left behind on someone's Redis are worth a line where CI shows it, whatever the
    // verdict (README "Exit codes").
    if !settings.keep {
        for run in &report.runs {
            if let Some(left) = &run.keys_left {
                crate::note!(
                    "racelab: warning: {}: the run's keys are {left}",
                    run.strategy
                );
            }
        }
    }
    // What was observed before a failure is still reported; a failure before any run is only
    // the error.
    let failure = match failure {
        Some(e) if report.runs.is_empty() => return Err(e),
        other => other,
    };
    let render = |color: bool| -> std::io::Result<String> {
        Ok(match args.format {
            Format::Json => report.json(),
            Format::Text => report.text(color),
            Format::Junit => crate::junit::run(
                &report,
                &args.options.strategy.0,
                started,
                failure.as_ref().map(ToString::to_string),
            )?,
            Format::Markdown => crate::markdown::run(
                &report,
                &args.options.strategy.0,
                failure.as_ref().map(ToString::to_string),
            ),
        })
    };
    match output {
        Some((path, mut file)) => {
            let text = render(false).map_err(|e| output_error(path, e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| output_error(path, e))?;
        }
        None => crate::output::stdout(
            &render(use_color()).map_err(|e| output_error(Path::new("stdout"), e))?,
            "report",
        )?,
    }
    // The page comes after the report, which it leaves as it is.
    if let Some(html) = html {
        html.write(&crate::html::run_page(&report, timelines))?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Runs each strategy in turn. Stops at the first one that cannot be run, and returns the report
/// of those that ran with the error that stopped the rest. With `timelines`, each strategy's run
/// is watched for its lanes, and its page data added there (`--html`).
#[allow(clippy::too_many_arguments)]
pub async fn run_strategies(
    target: &Target,
    options: &Options,
    settings: &Settings,
    workload: &Workload,
    expect: crate::report::Expect,
    history: Option<&History>,
    mut timelines: Option<&mut Vec<crate::html::StrategyRun>>,
    cancel: &CancellationToken,
) -> (Report, Option<Error>) {
    let mut failure = None;
    // Where the journey lives on a cluster, as of the start; a cluster that cannot say is a
    // cluster that cannot be run on.
    let cluster = match target.placement(&workload.journey.id).await {
        Ok(place) => place,
        Err(e) => {
            failure = Some(e);
            None
        }
    };
    let shape = workload.shape();
    let mut runs = Vec::new();
    let mut progress = crate::output::Progress::on_terminal();
    let strategies = options.strategy.0.len();
    for (index, &strategy) in options.strategy.0.iter().enumerate() {
        if cancel.is_cancelled() || failure.is_some() {
            break;
        }
        let (watcher, writer) = match history {
            Some(history) => {
                let (tx, task) = history.record(strategy, workload);
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        // The lanes' watcher sees every event first and passes it on to the history's.
        let (watcher, lanes) = match timelines.is_some() {
            true => {
                let (tx, task) = crate::html::lanes::watch(workload, watcher);
                (Some(tx), Some(task))
            }
            false => (watcher, None),
        };
        let run = engine::run(target, strategy, workload, settings, watcher, cancel);
        let result = if progress.shown() {
            // The run's progress is its time so far: counting updates would need the engine's
            // events, which are only sent when someone watches (their cost shows in the bench).
            let started = std::time::Instant::now();
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            tokio::pin!(run);
            loop {
                tokio::select! {
                    result = &mut run => break result,
                    _ = tick.tick() => progress.show(&format!(
                        "run: {strategy} ({} of {strategies}) · {:.1} s…",
                        index + 1,
                        started.elapsed().as_secs_f64()
                    )),
                }
            }
        } else {
            run.await
        };
        // The engine dropped its sender: the lanes' watcher ends, and with it the history's
        // sender it held.
        let lanes = match lanes {
            Some(task) => task.await.ok(),
            None => None,
        };
        if let Some(writer) = writer {
            // The engine dropped its sender: the writer drains what is left and ends.
            let written = writer
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let (Some(history), Err(e)) = (history, written) {
                failure = Some(history_error(&history.path(), e));
                break;
            }
        }
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Some(Err(e)) = history.map(|h| h.finish(&result, workload)) {
            failure = Some(e);
            break;
        }
        let expected = Expected::resolve(expect, strategy, &shape);
        let run = RunReport::new(&result, workload, expected);
        if let (Some(timelines), Some(lanes)) = (timelines.as_deref_mut(), lanes) {
            timelines.push(crate::html::strategy_run(lanes, &result, workload, &run));
        }
        runs.push(run);
    }
    progress.clear();
    let complete = failure.is_none()
        && !cancel.is_cancelled()
        && runs.len() == options.strategy.0.len()
        && runs.iter().all(|r| r.stopped.is_none());
    let report = Report {
        ok: complete && runs.iter().all(|r| r.ok),
        complete,
        seed: workload.seed,
        redis: RedisInfo {
            version: target.version().to_owned(),
            private: target.is_private(),
            url: target.display().to_owned(),
            cluster,
        },
        journey: workload.journey.id.clone(),
        runs,
    };
    (report, failure)
}

/// Whether two paths are one file: the same device and inode once both exist (hard links,
/// symlinks, `./h.jsonl` and `h.jsonl`, /dev/stdout), else the same place in the file system
/// once their folders are resolved.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        // /dev/null takes anything from anyone: two outputs thrown away do not interleave.
        if x.file_type().is_char_device()
            && std::fs::metadata("/dev/null").is_ok_and(|null| null.rdev() == x.rdev())
        {
            return false;
        }
        return x.dev() == y.dev() && x.ino() == y.ino();
    }
    // Not both there yet: where each would be written, a symlink to a file still to come
    // followed to it.
    let place = |path: &Path| -> Option<std::path::PathBuf> {
        let path = &resolve_link(path);
        let name = path.file_name()?;
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.canonicalize().ok()?,
            _ => std::env::current_dir().ok()?,
        };
        Some(parent.join(name))
    };
    match (place(a), place(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `path`, or where it points when it is a symlink (to a file that may not exist yet).
fn resolve_link(path: &Path) -> std::path::PathBuf {
    match std::fs::read_link(path) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => path.parent().unwrap_or(Path::new("")).join(target),
        Err(_) => path.to_owned(),
    }
}

fn output_error(path: &Path, e: std::io::Error) -> Error {
    Error::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Colour only for a person at a terminal who has not asked for none (no-color.org).
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
