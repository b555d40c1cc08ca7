//! `racelab prove`: every interleaving of a few updaters' steps, each run on the real Redis with
//! fresh keys (README "Prove").
//!
//! A scheduled run records, at each step, which updaters were waiting to take one. Running a
//! schedule's prefix and letting the rest run in updater order gives one complete interleaving;
//! every other updater that was waiting at a step after the prefix is a branch not yet taken.
//! Exploring those depth-first visits every complete interleaving exactly once (retries make the
//! space unbounded, so each update gives up after `--retry-bound` retries, the way loom bounds
//! preemptions).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::ProveArgs;
use crate::engine::{self, Settings};
use crate::error::Error;
use crate::journey::Journey;
use crate::report::{Expected, Format};
use crate::schedule::{Schedule, Token};
use crate::strategy::Strategy;
use crate::target::Target;
use crate::workload::{RaceShape, Tuning, Workload};

/// Where the updaters work: the seed's bug is updaters on different segments of one journey;
/// `keys` only loses when they share a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    DifferentSegments,
    SameSegment,
}

impl Layout {
    const ALL: [Layout; 2] = [Layout::DifferentSegments, Layout::SameSegment];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::DifferentSegments => "different-segments",
            Layout::SameSegment => "same-segment",
        }
    }

    /// Updater `i` works on segment `i mod S`: as many segments as updaters, or one.
    pub(crate) fn segments(self, updaters: u32) -> usize {
        match self {
            Layout::DifferentSegments => updaters as usize,
            Layout::SameSegment => 1,
        }
    }
}

/// One strategy on one layout, every interleaving tried.
#[derive(Debug, Clone, Serialize)]
pub struct ProveResult {
    pub strategy: Strategy,
    pub layout: Layout,
    pub schedules: u64,
    pub losing: u64,
    /// The shortest losing schedule, as `run --schedule` takes it; `null` when none lost.
    pub shortest: Option<String>,
    pub expected: Expected,
    pub ok: bool,
    /// How long trying every interleaving took.
    pub duration_ms: f64,
    /// The shortest losing schedule's steps, what each sent and what Redis answered (`--html`).
    #[serde(skip)]
    pub shortest_steps: Vec<crate::schedule::Choice>,
    /// What the shortest losing schedule lost, and who erased it (`--html`).
    #[serde(skip)]
    pub shortest_lost: Vec<crate::truth::LostUpdate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProveReport {
    pub ok: bool,
    pub updaters: u32,
    pub retry_bound: u32,
    pub schedules_per_s: f64,
    pub redis: String,
    pub results: Vec<ProveResult>,
}

/// Whether `strategy` can lose updates by interleaving alone (no time passing, so no lock
/// expires): then some schedule must lose, and prove expects to find it.
fn expected(strategy: Strategy, updaters: u32, segments: usize) -> Expected {
    let by_interleaving = RaceShape {
        updaters,
        segments: segments as u32,
        think: Duration::from_secs(3600),
        jitter: 0.0,
        lock_ttl: Duration::from_secs(7200),
        scheduled: false,
    };
    match strategy.loses_updates(&by_interleaving) {
        Some(true) => Expected::Lost,
        _ => Expected::Intact,
    }
}

pub async fn run(args: &ProveArgs, cancel: &CancellationToken) -> Result<ProveReport, Error> {
    args.strategy.refuse_exec(
        "prove",
        "a service's update is one request to prove, whose steps inside it cannot order",
    )?;
    let target = Arc::new(Target::open(args.redis_url.as_deref(), args.timeout).await?);
    let settings = Arc::new(Settings {
        key_prefix: args.key_prefix.clone(),
        keep: false,
        lost_limit: 10,
        remote: None,
        driver: None,
    });
    let journey = Journey::seed_fixture()?;
    let started = Instant::now();
    let mut progress = crate::output::Progress::on_terminal();
    let mut results = Vec::new();
    let mut total = 0u64;
    for &strategy in &args.strategy.0 {
        for layout in Layout::ALL {
            let segments = layout.segments(args.updaters);
            let workload = Workload {
                journey: Arc::new(journey.clone().with_segments(segments)),
                updaters: args.updaters,
                rounds: 1,
                think: Duration::ZERO,
                jitter: 0.0,
                seed: 0,
                tuning: Tuning {
                    lock_ttl: args.lock_ttl,
                    max_retries: args.retry_bound,
                },
                deadline: None,
                schedule: None,
            };
            let result = explore(
                &target,
                strategy,
                layout,
                &workload,
                &settings,
                &mut progress,
                cancel,
            )
            .await?;
            total += result.schedules;
            // A line per strategy and layout for a person watching; logs get only the report.
            if progress.shown() {
                crate::note!(
                    "prove: {strategy} {}: {} of {} schedules lost updates",
                    layout.name(),
                    result.losing,
                    result.schedules
                );
            }
            results.push(result);
        }
    }
    let secs = started.elapsed().as_secs_f64().max(f64::EPSILON);
    Ok(ProveReport {
        ok: results.iter().all(|r| r.ok),
        updaters: args.updaters,
        retry_bound: args.retry_bound,
        schedules_per_s: (total as f64 / secs * 10.0).round() / 10.0,
        redis: if target.is_private() {
            format!("{} (private redis-server)", target.version())
        } else {
            format!("{} ({})", target.version(), target.display())
        },
        results,
    })
}

/// Schedules run at once, each under its own run id (its own keys): while one waits for Redis,
/// another runs.
const CONCURRENT_SCHEDULES: usize = 8;

/// What one schedule's run showed: the steps taken (and who else was waiting at each), and
/// whether it lost an update.
struct Explored {
    prefix_len: usize,
    taken: Vec<crate::schedule::Choice>,
    lost: bool,
    lost_updates: Vec<crate::truth::LostUpdate>,
}

/// Runs `strategy` on `workload` under `prefix` (then the leftover steps in updater order).
async fn explore_one(
    target: Arc<Target>,
    strategy: Strategy,
    workload: Arc<Workload>,
    settings: Arc<Settings>,
    prefix: Vec<u32>,
    cancel: CancellationToken,
) -> Result<Explored, Error> {
    let mut scheduled = (*workload).clone();
    scheduled.schedule = Some(Schedule {
        tokens: prefix.iter().map(|&u| Token::Step(u)).collect(),
    });
    let result = engine::run(&target, strategy, &scheduled, &settings, None, &cancel).await?;
    if let Some(why) = result.stopped.as_ref().or(result.unverified.as_ref()) {
        return Err(Error::Run {
            target: target.display().to_owned(),
            reason: format!(
                "{strategy} under schedule '{}' could not be completed: {why}",
                words(&prefix)
            ),
        });
    }
    Ok(Explored {
        prefix_len: prefix.len(),
        taken: result.taken,
        lost: result.truth.lost > 0,
        lost_updates: result.truth.lost_updates,
    })
}

/// Every interleaving of `strategy` on `workload`, depth-first, several schedules at a time.
#[allow(clippy::too_many_arguments)]
async fn explore(
    target: &Arc<Target>,
    strategy: Strategy,
    layout: Layout,
    workload: &Workload,
    settings: &Arc<Settings>,
    progress: &mut crate::output::Progress,
    cancel: &CancellationToken,
) -> Result<ProveResult, Error> {
    strategy.check_journey(&workload.journey)?;
    let started = Instant::now();
    let workload = Arc::new(workload.clone());
    let mut schedules = 0u64;
    let mut losing = 0u64;
    let mut shortest: Option<Vec<u32>> = None;
    let mut shortest_run = (Vec::new(), Vec::new());
    let mut pending: Vec<Vec<u32>> = vec![Vec::new()];
    let mut running = tokio::task::JoinSet::new();
    // A run that fails stops the others, which still delete their keys before they end.
    let stop = cancel.child_token();
    while !pending.is_empty() || !running.is_empty() {
        if cancel.is_cancelled() {
            // The runs in flight see the same cancellation and delete their keys as they end.
            while running.join_next().await.is_some() {}
            return Err(Error::Interrupted);
        }
        while running.len() < CONCURRENT_SCHEDULES
            && let Some(prefix) = pending.pop()
        {
            running.spawn(explore_one(
                target.clone(),
                strategy,
                workload.clone(),
                settings.clone(),
                prefix,
                stop.clone(),
            ));
        }
        let Some(joined) = running.join_next().await else {
            continue;
        };
        let explored = match joined {
            Ok(Ok(explored)) => explored,
            failed => {
                stop.cancel();
                while running.join_next().await.is_some() {}
                return Err(match failed {
                    Ok(Err(e)) => e,
                    Err(e) => Error::Run {
                        target: target.display().to_owned(),
                        reason: format!("a schedule's run ended abnormally ({e})"),
                    },
                    Ok(Ok(_)) => Error::Interrupted,
                });
            }
        };
        schedules += 1;
        let taken: Vec<u32> = explored.taken.iter().map(|c| c.updater).collect();
        if explored.lost {
            losing += 1;
            let shorter = shortest
                .as_ref()
                .is_none_or(|s| (taken.len(), &taken) < (s.len(), s));
            if shorter {
                shortest = Some(taken.clone());
                shortest_run = (explored.taken.clone(), explored.lost_updates.clone());
            }
        }
        // Every other updater waiting at a step past the prefix is an interleaving not tried.
        for (i, choice) in explored.taken.iter().enumerate().skip(explored.prefix_len) {
            for &other in choice.waiting.iter().rev() {
                if other != choice.updater {
                    let mut branch = taken[..i].to_vec();
                    branch.push(other);
                    pending.push(branch);
                }
            }
        }
        progress.show(&format!(
            "prove: {strategy} {}: {schedules} schedules…",
            layout.name()
        ));
    }
    progress.clear();
    let expected = expected(strategy, workload.updaters, workload.journey.segments.len());
    Ok(ProveResult {
        strategy,
        layout,
        schedules,
        losing,
        shortest: shortest.map(|s| words(&s)),
        expected,
        ok: expected.met_by(losing),
        duration_ms: (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0,
        shortest_steps: shortest_run.0,
        shortest_lost: shortest_run.1,
    })
}

/// `1 2 1 2`: the steps as `run --schedule` takes them.
fn words(updaters: &[u32]) -> String {
    Schedule {
        tokens: updaters.iter().map(|&u| Token::Step(u)).collect(),
    }
    .to_string()
}

impl ProveResult {
    /// The `racelab run` that replays the shortest losing schedule on the same layout and retry
    /// bound; `None` when no schedule lost.
    pub(crate) fn replay(&self, updaters: u32, retry_bound: u32) -> Option<String> {
        let shortest = self.shortest.as_deref()?;
        Some(format!(
            "racelab run -s {} -n {updaters} --segments {} --max-retries {retry_bound} --schedule \"{shortest}\"",
            self.strategy,
            self.layout.segments(updaters)
        ))
    }
}

impl ProveReport {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "racelab prove · Redis {} · {} updaters · retry bound {}",
            self.redis, self.updaters, self.retry_bound
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<9} {:<19} {:>9} {:>7}  {:<24} {:<9} verdict",
            "strategy", "layout", "schedules", "losing", "shortest losing", "expected"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<9} {:<19} {:>9} {:>7}  {:<24} {:<9} {}",
                r.strategy.name(),
                r.layout.name(),
                r.schedules,
                r.losing,
                r.shortest.as_deref().unwrap_or("–"),
                r.expected.word(),
                if r.ok { "ok" } else { "FAIL" }
            );
        }
        let total: u64 = self.results.iter().map(|r| r.schedules).sum();
        let _ = writeln!(
            out,
            "\n{total} schedules, {} a second",
            self.schedules_per_s
        );
        let _ = writeln!(
            out,
            "{}",
            if self.ok {
                "every strategy behaved as expected under every schedule"
            } else {
                "a strategy did not behave as expected: run its losing schedule with racelab run --schedule"
            }
        );
        out
    }

    pub fn write(&self, format: Format) -> std::io::Result<String> {
        Ok(match format {
            Format::Json => self.json(),
            Format::Text => self.text(),
            Format::Junit => crate::junit::prove(self)?,
            Format::Markdown => crate::markdown::prove(self),
        })
    }
}
