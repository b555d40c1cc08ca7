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
    /// A wrong fix (README "Fixes that look right").
    pub wrong_fix: bool,
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
    /// Time passed once (`t`) in the interleavings of the strategies whose lock can expire
    /// (`--expiry`), with this lock ttl; `null` without `--expiry`.
    pub expiry_lock_ttl_ms: Option<f64>,
    /// What the schedules tested for (`--scenario`): with write-skew, a losing schedule is one
    /// that breaks the invariant.
    pub scenario: crate::workload::Scenario,
    pub schedules_per_s: f64,
    pub redis: String,
    pub results: Vec<ProveResult>,
}

/// Whether `strategy` can lose updates by interleaving alone (no time passing, so no lock
/// expires), or, with `expiry`, by interleaving and its lock expiring mid-work: then some
/// schedule must lose, and prove expects to find it.
fn expected(
    strategy: Strategy,
    updaters: u32,
    segments: usize,
    expiry: bool,
    scenario: crate::workload::Scenario,
) -> Expected {
    let by_interleaving = RaceShape {
        updaters,
        segments: segments as u32,
        think: Duration::from_secs(3600),
        jitter: 0.0,
        lock_ttl: if expiry {
            Duration::ZERO
        } else {
            Duration::from_secs(7200)
        },
        scheduled: false,
        processes: 1,
        scenario,
    };
    match strategy.loses_updates(&by_interleaving) {
        Some(true) => Expected::Lost,
        _ => Expected::Intact,
    }
}

/// The lock ttl of `prove`: long enough that no lock expires unless time is let pass; with
/// `--expiry` short, since every `t` waits it out (and still far above a step's round trips).
const LOCK_TTL: Duration = Duration::from_secs(10);
const EXPIRY_LOCK_TTL: Duration = Duration::from_millis(100);

pub async fn run(args: &ProveArgs, cancel: &CancellationToken) -> Result<ProveReport, Error> {
    if args.expiry && args.updaters > 2 {
        return Err(Error::Usage(
            "--expiry lets time pass before every step of 2 updaters; with 3 there are too many schedules to wait out, so leave out -n 3 or --expiry".to_owned(),
        ));
    }
    let lock_ttl = args.lock_ttl.unwrap_or(if args.expiry {
        EXPIRY_LOCK_TTL
    } else {
        LOCK_TTL
    });
    let target = Arc::new(Target::open(args.redis_url.as_deref(), args.timeout).await?);
    let settings = Arc::new(Settings {
        key_prefix: args.key_prefix.clone(),
        keep: false,
        lost_limit: 10,
        remote: None,
        driver: None,
        service: None,
        failover_at: None,
        failover_now: None,
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
                    backoff: args.backoff,
                    lock_ttl,
                    max_retries: args.retry_bound,
                },
                deadline: None,
                schedule: None,
                // One process: `local-mutex` cannot lose here (README "Prove").
                processes: 1,
                scenario: args.scenario,
            };
            // Time passes only where it can expire a lock held mid-work.
            let expiry = args.expiry && strategy.facts().expires;
            let result = explore(
                &target,
                strategy,
                layout,
                &workload,
                &settings,
                expiry,
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
        expiry_lock_ttl_ms: args.expiry.then_some(lock_ttl.as_secs_f64() * 1000.0),
        scenario: args.scenario,
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
    prefix: Vec<Token>,
    taken: Vec<crate::schedule::Choice>,
    lost: bool,
    lost_updates: Vec<crate::truth::LostUpdate>,
}

impl Explored {
    /// The whole schedule that ran: the prefix, then the steps left over.
    fn tokens(&self) -> Vec<Token> {
        let steps_in_prefix = self
            .prefix
            .iter()
            .filter(|t| matches!(t, Token::Step(_)))
            .count();
        let mut tokens = self.prefix.clone();
        tokens.extend(
            self.taken
                .iter()
                .skip(steps_in_prefix)
                .map(|c| Token::Step(c.updater)),
        );
        tokens
    }
}

/// Runs `strategy` on `workload` under `prefix` (then the leftover steps in updater order).
async fn explore_one(
    target: Arc<Target>,
    strategy: Strategy,
    workload: Arc<Workload>,
    settings: Arc<Settings>,
    prefix: Vec<Token>,
    cancel: CancellationToken,
) -> Result<Explored, Error> {
    let mut scheduled = (*workload).clone();
    scheduled.schedule = Some(Schedule {
        tokens: prefix.clone(),
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
        prefix,
        taken: result.taken,
        // Write skew: a schedule "loses" when it breaks the invariant.
        lost: match &result.invariant {
            Some(invariant) => !invariant.holds,
            None => result.truth.lost > 0,
        },
        lost_updates: result.truth.lost_updates,
    })
}

/// Every interleaving of `strategy` on `workload`, depth-first, several schedules at a time;
/// with `expiry`, each also with time let pass once (`t`) before any one of its steps.
#[allow(clippy::too_many_arguments)]
async fn explore(
    target: &Arc<Target>,
    strategy: Strategy,
    layout: Layout,
    workload: &Workload,
    settings: &Arc<Settings>,
    expiry: bool,
    progress: &mut crate::output::Progress,
    cancel: &CancellationToken,
) -> Result<ProveResult, Error> {
    strategy.check_journey(&workload.journey)?;
    let started = Instant::now();
    let workload = Arc::new(workload.clone());
    let mut schedules = 0u64;
    let mut losing = 0u64;
    let mut shortest: Option<Vec<Token>> = None;
    let mut shortest_run = (Vec::new(), Vec::new());
    let mut pending: Vec<Vec<Token>> = vec![Vec::new()];
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
        let tokens = explored.tokens();
        if explored.lost {
            losing += 1;
            let shorter = shortest
                .as_ref()
                .is_none_or(|s| (tokens.len(), order(&tokens)) < (s.len(), order(s)));
            if shorter {
                shortest = Some(tokens.clone());
                shortest_run = (explored.taken.clone(), explored.lost_updates.clone());
            }
        }
        // Every other updater waiting at a step past the prefix is an interleaving not tried;
        // so is time passing before that step, once per schedule (the way loom bounds
        // preemptions), when it can expire a lock.
        let timed = explored.prefix.contains(&Token::Wait);
        let steps_in_prefix = explored.prefix.len() - usize::from(timed);
        for (i, choice) in explored.taken.iter().enumerate().skip(steps_in_prefix) {
            let at = explored.prefix.len() + (i - steps_in_prefix);
            for &other in choice.waiting.iter().rev() {
                if other != choice.updater {
                    let mut branch = tokens[..at].to_vec();
                    branch.push(Token::Step(other));
                    pending.push(branch);
                }
            }
            // Before the first step nothing holds a lock: time passing there changes nothing.
            if expiry && !timed && at > 0 {
                let mut branch = tokens[..at].to_vec();
                branch.push(Token::Wait);
                pending.push(branch);
            }
        }
        progress.show(&format!(
            "prove: {strategy} {}: {schedules} schedules…",
            layout.name()
        ));
    }
    progress.clear();
    let expected = expected(
        strategy,
        workload.updaters,
        workload.journey.segments.len(),
        expiry,
        workload.scenario,
    );
    Ok(ProveResult {
        strategy,
        wrong_fix: strategy.is_wrong_fix(),
        layout,
        schedules,
        losing,
        shortest: shortest.map(|tokens| Schedule { tokens }.to_string()),
        expected,
        ok: expected.met_by(losing),
        duration_ms: (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0,
        shortest_steps: shortest_run.0,
        shortest_lost: shortest_run.1,
    })
}

/// `1 2 1 2`: the steps as `run --schedule` takes them.
fn words(tokens: &[Token]) -> String {
    Schedule {
        tokens: tokens.to_vec(),
    }
    .to_string()
}

impl ProveResult {
    /// The `racelab run` that replays the shortest losing schedule on the same layout and retry
    /// bound (and, where time passes in it, the lock ttl `prove --expiry` used); `None` when no
    /// schedule lost.
    pub(crate) fn replay(&self, report: &ProveReport) -> Option<String> {
        let shortest = self.shortest.as_deref()?;
        let ttl = match report.expiry_lock_ttl_ms {
            Some(ms) if shortest.split(' ').any(|t| t == "t") => format!(" --lock-ttl {ms}ms"),
            _ => String::new(),
        };
        let scenario = match report.scenario {
            crate::workload::Scenario::WriteSkew => " --scenario write-skew",
            crate::workload::Scenario::LostUpdate => "",
        };
        Some(format!(
            "racelab run -s {} -n {}{scenario} --segments {} --max-retries {}{ttl} --schedule \"{shortest}\"",
            self.strategy,
            report.updaters,
            self.layout.segments(report.updaters),
            report.retry_bound
        ))
    }
}

/// A schedule's order among those of its length: by updater number, `t` first.
fn order(tokens: &[Token]) -> Vec<u32> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Wait => 0,
            Token::Step(n) => *n,
        })
        .collect()
}

impl ProveReport {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let expiry = match self.expiry_lock_ttl_ms {
            Some(ms) => format!(" · time passes once (t, lock ttl {ms} ms)"),
            None => String::new(),
        };
        let scenario = match self.scenario {
            crate::workload::Scenario::WriteSkew => {
                " · scenario write-skew (losing: the schedule breaks the invariant)"
            }
            crate::workload::Scenario::LostUpdate => "",
        };
        let _ = writeln!(
            out,
            "racelab prove · Redis {} · {} updaters · retry bound {}{expiry}{scenario}",
            self.redis, self.updaters, self.retry_bound
        );
        let _ = writeln!(out);
        // As wide as the longest name shown (the wrong fixes' names are longer).
        let w = self
            .results
            .iter()
            .map(|r| r.strategy.name().len())
            .fold(9, usize::max);
        let _ = writeln!(
            out,
            "{:<w$} {:<19} {:>9} {:>7}  {:<24} {:<9} verdict",
            "strategy", "layout", "schedules", "losing", "shortest losing", "expected"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<w$} {:<19} {:>9} {:>7}  {:<24} {:<9} {}",
                r.strategy.name(),
                r.layout.name(),
                r.schedules,
                r.losing,
                r.shortest.as_deref().unwrap_or("–"),
                match (self.scenario, r.expected) {
                    (crate::workload::Scenario::WriteSkew, Expected::Lost) => "broken",
                    (crate::workload::Scenario::WriteSkew, Expected::Intact) => "holds",
                    (_, expected) => expected.word(),
                },
                if r.ok { "ok" } else { "FAIL" }
            );
        }
        let mut told = Vec::new();
        for r in &self.results {
            if r.strategy.exec_command().is_some() && !told.contains(&r.strategy) {
                told.push(r.strategy);
                let _ = writeln!(
                    out,
                    "\n{}: each update is one request, one step to prove, so prove orders whole updates; a race inside the service (between its read and its write) cannot show here: racelab run shows it",
                    r.strategy
                );
            }
        }
        // A wrong fix prove expects intact loses only where prove cannot go (time passing, a
        // second process): say so, and what shows it, rather than let it pass for a fix.
        let mut noted = Vec::new();
        for r in &self.results {
            // (About lost updates: under write skew a wrong fix has nothing to add.)
            if r.wrong_fix
                && self.scenario == crate::workload::Scenario::LostUpdate
                && r.expected == Expected::Intact
                && !noted.contains(&r.strategy)
            {
                if noted.is_empty() {
                    let _ = writeln!(out);
                }
                noted.push(r.strategy);
                let why = if r.strategy.facts().expires && self.expiry_lock_ttl_ms.is_none() {
                    "no time passes here, so no lock expires; --expiry lets it pass"
                } else {
                    "every updater runs in this one process"
                };
                let _ = writeln!(
                    out,
                    "{}: a wrong fix no interleaving here makes lose ({why}); it loses with: {}",
                    r.strategy,
                    r.strategy.facts().shown_by.unwrap_or_default()
                );
            }
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
