//! The report of a headless run: a comparison table and the lost updates in text, or JSON for
//! machines (schema: `assets/report.schema.json`). It says only what was observed.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Serialize;

use crate::engine::RunResult;
use crate::roster::{WorkerShare, worker_of};
use crate::strategy::Strategy;
use crate::target::ClusterPlace;
use crate::truth::{LostUpdate, ms};
use crate::workload::{RaceShape, Workload};

/// The report formats of `run` and `prove` (README "Reports for CI").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// A table and the lost updates, for people.
    #[default]
    Text,
    /// Everything observed, for machines (assets/report.schema.json, assets/prove.schema.json).
    Json,
    /// JUnit XML: a test case per strategy, a failure per strategy that misbehaved.
    Junit,
    /// The verdict table and the lost updates, for $GITHUB_STEP_SUMMARY or a PR comment.
    Markdown,
}

/// The report formats of `bench`: its figures are measurements, not tests, so no JUnit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum BenchFormat {
    #[default]
    Text,
    Json,
}

/// What `--expect` asks of every strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Expect {
    /// Naive expects lost updates when it can race, every fix expects none.
    #[default]
    Auto,
    /// Every strategy must lose at least one update.
    Lost,
    /// No strategy may lose an update.
    Intact,
}

/// What a strategy was expected to do on this workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Lost,
    Intact,
    /// The race is possible but not forced (no think time): either result is honest.
    Either,
}

impl Expected {
    pub fn resolve(expect: Expect, strategy: Strategy, shape: &RaceShape) -> Expected {
        match expect {
            Expect::Lost => Expected::Lost,
            Expect::Intact => Expected::Intact,
            Expect::Auto => match strategy.loses_updates(shape) {
                Some(true) => Expected::Lost,
                Some(false) => Expected::Intact,
                None => Expected::Either,
            },
        }
    }

    pub fn met_by(self, lost: u64) -> bool {
        match self {
            Expected::Lost => lost > 0,
            Expected::Intact => lost == 0,
            Expected::Either => true,
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Expected::Lost => "lost",
            Expected::Intact => "intact",
            Expected::Either => "either",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every strategy behaved as expected and every run completed.
    pub ok: bool,
    /// Every run completed and had its final state read back; when not, the run could not be
    /// made (exit 2) and the report says what was observed up to then.
    pub complete: bool,
    pub seed: u64,
    pub redis: RedisInfo,
    pub journey: String,
    pub runs: Vec<RunReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisInfo {
    pub version: String,
    pub private: bool,
    /// The URL with its password hidden (on a cluster: its seed nodes' URLs, comma-separated).
    pub url: String,
    /// Set when the run was on a Redis Cluster: the journey's slot and the primary owning it.
    pub cluster: Option<ClusterPlace>,
}

impl RedisInfo {
    /// `7.0.15 (private redis-server)`: the version and where, in a few words (a password
    /// hidden).
    pub(crate) fn in_brief(&self) -> String {
        let place = match (&self.cluster, self.private) {
            (Some(_), true) => "private cluster".to_owned(),
            (Some(_), false) => format!("cluster at {}", self.url),
            (None, true) => "private redis-server".to_owned(),
            (None, false) => self.url.clone(),
        };
        format!("{} ({place})", self.version)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub strategy: Strategy,
    /// The strategy is a wrong fix: it looks right and loses updates (README "Fixes that look
    /// right").
    pub wrong_fix: bool,
    pub run_id: String,
    pub updaters: u32,
    pub segments: u32,
    pub rounds: u32,
    pub think_ms: f64,
    /// The interleaving the run followed (`--schedule`), as `--schedule` takes it; `null` when
    /// the updaters ran free.
    pub schedule: Option<String>,
    pub acknowledged: u64,
    /// `null` when the final state could not be read: nobody can say.
    pub applied: Option<u64>,
    /// `null` when the final state could not be read.
    pub lost: Option<u64>,
    pub unknown: u64,
    pub errors: u64,
    pub retries: u64,
    pub conflicts: u64,
    /// Updates that stopped retrying (`--max-retries`, or a fenced write refused).
    pub give_ups: u64,
    pub expected: Expected,
    pub ok: bool,
    /// Set when the run was made but tested too little to decide (no update acknowledged, say):
    /// the verdict is neither ok nor FAIL, and racelab exits 2. Says why in one sentence.
    pub inconclusive: Option<String>,
    pub duration_ms: f64,
    pub updates_per_s: f64,
    pub latency_ms: Latency,
    /// The lost updates, up to the listing limit; `lost` is always the exact count.
    pub lost_updates: Vec<LostUpdate>,
    /// Lost updates counted but past the listing limit: `lost` = `lost_updates` + this.
    pub lost_unlisted: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// The first distinct reasons updates failed.
    pub failures: Vec<String>,
    /// Where the run's keys still are, when they were not deleted (`--keep`, or no answer).
    pub keys_left: Option<String>,
    /// Which worker ran which updaters, when workers ran them (`--workers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerShare>,
    /// What the run tested for (`--scenario`).
    pub scenario: crate::workload::Scenario,
    /// Updates the invariant declined (write skew): decided, not failed.
    pub declined: u64,
    /// Write skew's invariant as the final state shows it; the verdict goes by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariant: Option<crate::truth::Invariant>,
    /// How the verdict of a user's own strategy (`exec:`, `lua:`) was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserVerdict>,
    /// The failover made during the run (`--failover-at`; README "Failover").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverReport>,
}

/// A failover and what it cost, as the report tells it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// When the replica was promoted, since the release; `null` when it could not be made.
    pub promoted_ms: Option<f64>,
    /// When racelab's connections were cut over to the new primary.
    pub cut_ms: Option<f64>,
    /// `host:port` of the promoted replica and of the old primary.
    pub promoted: Option<String>,
    pub demoted: Option<String>,
    /// Updates the old primary held that the new one never got; `null` when either side could
    /// not be read.
    pub dropped: Option<u64>,
    /// Of `lost`: acknowledged updates the failover certainly threw away.
    pub lost_to_failover: u64,
    /// Of `lost`: those the failover or a stale write took, which cannot be told apart.
    pub lost_to_failover_or_stale: u64,
    /// Why the failover could not be made, when it could not.
    pub failed: Option<String>,
}

impl FailoverReport {
    fn new(result: &RunResult) -> Option<FailoverReport> {
        let failover = result.failover.as_ref()?;
        let truth = &result.truth;
        Some(match failover {
            Ok(record) => FailoverReport {
                promoted_ms: Some(round2(ms(record.promoted_at))),
                cut_ms: Some(round2(ms(record.cut_at))),
                promoted: Some(record.promoted.clone()),
                demoted: Some(record.demoted.clone()),
                dropped: record.dropped().map(|d| d.iter().sum()),
                lost_to_failover: truth.lost_to_failover,
                lost_to_failover_or_stale: truth.lost_to_failover_or_stale,
                failed: None,
            },
            Err(why) => FailoverReport {
                promoted_ms: None,
                cut_ms: None,
                promoted: None,
                demoted: None,
                dropped: None,
                lost_to_failover: truth.lost_to_failover,
                lost_to_failover_or_stale: truth.lost_to_failover_or_stale,
                failed: Some(why.clone()),
            },
        })
    }

    /// The failover in a sentence or two, and whom its losses are not to be pinned on.
    fn text(&self, run: &RunReport) -> String {
        let Some(promoted_ms) = self.promoted_ms else {
            return format!(
                "the failover was not made: {}",
                self.failed.as_deref().unwrap_or("no reason given")
            );
        };
        let mut out = format!(
            "failover at {promoted_ms:.1} ms: {} promoted; the old primary {} took writes until {:.1} ms, then became its replica",
            self.promoted.as_deref().unwrap_or("?"),
            self.demoted.as_deref().unwrap_or("?"),
            self.cut_ms.unwrap_or(promoted_ms),
        );
        match self.dropped {
            Some(0) => out.push_str(", holding nothing the new primary lacked"),
            Some(n) => out.push_str(&format!(
                " and dropped {} the new primary never got",
                crate::output::counted(n, "update")
            )),
            None => out.push_str(
                "; what each side held could not be read, so no loss is pinned on the failover or on a stale write",
            ),
        }
        if self.lost_to_failover > 0 || self.lost_to_failover_or_stale > 0 {
            out.push_str(&format!(
                ". {} lost to failover",
                crate::output::counted(self.lost_to_failover, "acknowledged update")
            ));
            if self.lost_to_failover_or_stale > 0 {
                out.push_str(&format!(
                    ", {} more to failover or a stale write (some of the dropped updates had an unknown outcome)",
                    self.lost_to_failover_or_stale
                ));
            }
            let by_failover = self.lost_to_failover + self.lost_to_failover_or_stale;
            if run.lost == Some(by_failover) && run.expected == Expected::Intact {
                out.push_str(&format!(
                    ". {} lost nothing to a stale write: it is not blamed; no strategy keeps what a failover throws away, WAIT does (--wait-replicas, README \"Failover\")",
                    run.strategy
                ));
            }
        } else {
            out.push_str(". No acknowledged update was lost to it");
        }
        out
    }
}

/// How a user's own strategy was judged (README "Race your own service").
#[derive(Debug, Clone, Serialize)]
pub struct UserVerdict {
    /// `exact`: one updater per segment and one round, so every acknowledged status must be in
    /// the final state; `real-time`: only the update acknowledged last on a segment, where no
    /// other update of it overlapped.
    pub truth: &'static str,
    /// The most requests the service had in flight at once (`exec:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_max: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the verdict counts as the anomaly seen: lost updates, or for write skew a broken
/// invariant (README "Scenarios").
fn anomalies(result: &RunResult) -> u64 {
    match &result.invariant {
        Some(invariant) => u64::from(!invariant.holds),
        None => result.truth.lost,
    }
}

impl RunReport {
    pub fn new(result: &RunResult, workload: &Workload, expected: Expected) -> RunReport {
        let tally = &result.tally;
        let verified = result.unverified.is_none();
        let inconclusive = if result.is_complete() {
            crate::truth::inconclusive(
                &result.tally,
                &result.truth,
                workload.total_updates(),
                expected == Expected::Lost,
            )
        } else {
            None
        };
        let duration = tally.last_at;
        let secs = duration.as_secs_f64();
        RunReport {
            strategy: result.strategy,
            wrong_fix: result.strategy.is_wrong_fix(),
            run_id: result.run_id.clone(),
            updaters: workload.updaters,
            segments: workload.segments(),
            rounds: workload.rounds,
            think_ms: ms(workload.think),
            schedule: workload.schedule.as_ref().map(ToString::to_string),
            acknowledged: tally.acknowledged,
            applied: verified.then_some(result.truth.applied),
            lost: verified.then_some(result.truth.lost),
            unknown: tally.unknown,
            errors: tally.errors,
            retries: tally.retries,
            conflicts: tally.conflicts,
            give_ups: tally.give_ups,
            expected,
            ok: result.is_complete()
                && inconclusive.is_none()
                && expected.met_by(anomalies(result)),
            inconclusive,
            duration_ms: round2(ms(duration)),
            updates_per_s: if secs > 0.0 {
                round2(tally.acknowledged as f64 / secs)
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: round2(tally.latency_ms(0.5)),
                p99: round2(tally.latency_ms(0.99)),
                max: round2(tally.max_latency_ms()),
            },
            lost_updates: result
                .truth
                .lost_updates
                .iter()
                .map(|lost| LostUpdate {
                    worker: worker_of(&result.workers, lost.updater - 1).map(str::to_owned),
                    erased_by_worker: lost
                        .erased_by
                        .and_then(|by| worker_of(&result.workers, by - 1))
                        .map(str::to_owned),
                    ..lost.clone()
                })
                .collect(),
            lost_unlisted: if verified {
                result
                    .truth
                    .lost
                    .saturating_sub(result.truth.lost_updates.len() as u64)
            } else {
                0
            },
            stopped: result.stopped.clone().or_else(|| result.unverified.clone()),
            failures: tally.failure_reasons.clone(),
            keys_left: result.keys_left.clone(),
            workers: result.workers.clone(),
            scenario: workload.scenario,
            declined: tally.declined,
            invariant: result.invariant.clone(),
            user: result.user.map(|user| UserVerdict {
                truth: if user.exact { "exact" } else { "real-time" },
                in_flight_max: user.in_flight_max,
            }),
            failover: FailoverReport::new(result),
        }
    }

    /// Lost updates all taken by a failover, none by a stale write.
    fn lost_only_to_failover(&self) -> bool {
        self.failover.as_ref().is_some_and(|f| {
            f.lost_to_failover > 0
                && self.lost == Some(f.lost_to_failover + f.lost_to_failover_or_stale)
        })
    }

    /// `Race condition detected! …` and every listed lost update, with who erased it; `None`
    /// when nothing was lost.
    pub(crate) fn lost_text(&self) -> Option<String> {
        let lost = self.lost.filter(|lost| *lost > 0)?;
        let mut out = String::new();
        let total = self.acknowledged + self.unknown;
        if self.lost_only_to_failover() {
            let _ = writeln!(
                out,
                "{}: no stale write is proven, a failover took them: {} out of {} updates were lost to failover",
                self.strategy, lost, total
            );
        } else {
            let _ = writeln!(
                out,
                "{}: Race condition detected! {} out of {} updates were lost",
                self.strategy, lost, total
            );
        }
        for lost in &self.lost_updates {
            let _ = writeln!(out, "  {}", lost.seed_message());
            let attribution = match self.user {
                Some(_) => lost.attribution_by_time(),
                None => lost.attribution(),
            };
            let _ = writeln!(out, "      {attribution}");
            if self.user.is_none()
                && let Some(line) = lost.elle_line()
            {
                // Under a lock, two updaters that both wrote held it at once: the lock's own
                // anomaly, two holders (its ttl ran out mid-work, or a DEL freed it).
                let line = match self.strategy.facts().expires {
                    true => format!("two lock holders at once, so a {line}"),
                    false => line,
                };
                let _ = writeln!(out, "      {line}");
            }
            if lost.expected == lost.got {
                let _ = writeln!(
                    out,
                    "      (the status matches by chance: another update wrote the same one; the segment's count shows this one missing)"
                );
            }
        }
        let listed = self.lost_updates.len() as u64;
        if listed < lost {
            let _ = writeln!(out, "  … and {} more", lost - listed);
        }
        Some(out)
    }

    pub(crate) fn verdict(&self) -> String {
        // Write skew is judged by its invariant: broken or holds.
        let (seen, expected) = match &self.invariant {
            Some(invariant) => (
                if invariant.holds { "holds" } else { "broken" },
                match self.expected {
                    Expected::Lost => "broken",
                    Expected::Intact => "holds",
                    Expected::Either => "either",
                },
            ),
            None => (
                if self.lost_only_to_failover() {
                    "lost to failover"
                } else if self.lost.unwrap_or(0) > 0 {
                    "lost"
                } else {
                    "intact"
                },
                self.expected.word(),
            ),
        };
        let word = if self.ok { "ok" } else { "FAIL" };
        match (&self.stopped, self.expected) {
            (Some(_), _) => "STOPPED".to_owned(),
            (None, _) if self.inconclusive.is_some() => "INCONCLUSIVE".to_owned(),
            (None, Expected::Either) => format!("{word} ({seen}, either expected)"),
            (None, _) => format!("{word} ({seen}, expected {expected})"),
        }
    }
}

/// Who ran which updaters and how they ended, to tell runs with other workers apart.
fn shares_key(shares: &[WorkerShare]) -> Vec<(String, Option<u32>, Option<u32>, bool)> {
    shares
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                s.first_updater,
                s.last_updater,
                s.vanished.is_some(),
            )
        })
        .collect()
}

/// A count, or `?` when it cannot be known.
fn count_or_unknown(count: Option<u64>) -> String {
    count.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// A run was made but tested too little for a verdict (exit 2).
    pub fn inconclusive(&self) -> bool {
        self.runs.iter().any(|r| r.inconclusive.is_some())
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The text report. `color` adds ANSI colour to verdicts (off for files, pipes and NO_COLOR).
    pub fn text(&self, color: bool) -> String {
        let paint = |text: &str, good: bool| -> String {
            if !color {
                text.to_owned()
            } else if good {
                format!("\x1b[32m{text}\x1b[0m")
            } else {
                format!("\x1b[1;31m{text}\x1b[0m")
            }
        };
        let mut out = String::new();
        let where_ = match (&self.redis.cluster, self.redis.private) {
            (Some(place), true) => format!(
                "private cluster of {} primaries · journey slot {} on {}",
                place.primaries, place.slot, place.node
            ),
            (Some(place), false) => format!(
                "cluster at {}, {} primaries · journey slot {} on {}",
                self.redis.url, place.primaries, place.slot, place.node
            ),
            (None, true) => "private redis-server".to_owned(),
            (None, false) => self.redis.url.clone(),
        };
        let _ = writeln!(
            out,
            "racelab · seed {} · Redis {} ({where_})",
            self.seed, self.redis.version
        );
        if let Some(first) = self.runs.first() {
            let workers = match first.workers.len() {
                0 => String::new(),
                1 => " in 1 worker".to_owned(),
                n => format!(" in {n} workers"),
            };
            let _ = writeln!(
                out,
                "journey {} · {} · {}{workers} · {} · think {}",
                self.journey,
                crate::output::counted(first.segments, "segment"),
                crate::output::counted(first.updaters, "updater"),
                crate::output::counted(first.rounds, "round"),
                humantime::format_duration(std::time::Duration::from_secs_f64(
                    first.think_ms / 1000.0
                )),
            );
            if let Some(schedule) = &first.schedule {
                let _ = writeln!(
                    out,
                    "schedule {schedule} (steps left over ran one at a time, in updater order)"
                );
            }
            for share in &first.workers {
                let _ = writeln!(out, "  {}", share.describe());
            }
        }
        let _ = writeln!(out);
        // As wide as the longest name run (the wrong fixes' names are longer than the others').
        let name_width = self
            .runs
            .iter()
            .map(|r| r.strategy.name().len())
            .fold(9, usize::max);
        let _ = writeln!(
            out,
            "{:<name_width$} {:>6} {:>7} {:>5} {:>7} {:>6} {:>7} {:>7} {:>9} {:>8} {:>8}  verdict",
            "strategy",
            "acked",
            "applied",
            "lost",
            "unknown",
            "errors",
            "retries",
            "gave up",
            "updates/s",
            "p50 ms",
            "p99 ms"
        );
        for run in &self.runs {
            let _ = writeln!(
                out,
                "{:<name_width$} {:>6} {:>7} {:>5} {:>7} {:>6} {:>7} {:>7} {:>9.0} {:>8.1} {:>8.1}  {}{}",
                run.strategy.name(),
                run.acknowledged,
                count_or_unknown(run.applied),
                count_or_unknown(run.lost),
                run.unknown,
                run.errors,
                run.retries,
                run.give_ups,
                run.updates_per_s,
                run.latency_ms.p50,
                run.latency_ms.p99,
                paint(&run.verdict(), run.ok),
                if run.wrong_fix { " · wrong fix" } else { "" }
            );
        }
        let wrong: Vec<&RunReport> = self.runs.iter().filter(|r| r.wrong_fix).collect();
        if !wrong.is_empty() {
            let _ = writeln!(
                out,
                "\nwrong fix = looks right, loses updates (README \"Fixes that look right\"):"
            );
            for run in wrong {
                let _ = writeln!(
                    out,
                    "  {}: {}",
                    run.strategy,
                    run.strategy.facts().wrong.unwrap_or_default()
                );
            }
        }
        let first_shares = self.runs.first().map(|r| shares_key(&r.workers));
        for run in &self.runs {
            // The header lists the first run's workers; a run whose workers differ (one vanished,
            // another replaced it) lists its own.
            if first_shares.as_ref() != Some(&shares_key(&run.workers)) {
                let _ = writeln!(out, "\n{}: ran in", run.strategy);
                for share in &run.workers {
                    let _ = writeln!(out, "  {}", share.describe());
                }
            }
            if let Some(reason) = &run.stopped {
                let _ = writeln!(out, "\n{}: stopped early: {reason}", run.strategy);
            }
            if let Some(reason) = &run.inconclusive {
                let _ = writeln!(out, "\n{}: inconclusive: {reason}", run.strategy);
            }
            if !run.failures.is_empty() {
                let plural = |n: u64| if n == 1 { "" } else { "s" };
                let mut counts = Vec::new();
                if run.errors > 0 {
                    counts.push(format!(
                        "{} update{} certainly not made",
                        run.errors,
                        plural(run.errors)
                    ));
                }
                if run.unknown > 0 {
                    counts.push(format!(
                        "{} update{} with an unknown outcome",
                        run.unknown,
                        plural(run.unknown)
                    ));
                }
                let _ = writeln!(
                    out,
                    "\n{}: {}: {}",
                    run.strategy,
                    counts.join(", "),
                    run.failures.join("; ")
                );
            }
            if let Some(left) = &run.keys_left {
                let _ = writeln!(out, "\n{}: the run's keys are {left}", run.strategy);
            }
            if let Some(failover) = &run.failover {
                let _ = writeln!(out, "\n{}: {}", run.strategy, failover.text(run));
            }
            if let Some(user) = &run.user {
                let how = if user.truth == "exact" {
                    "judged by status, exactly: one updater per segment and one round, so every acknowledged status must be in the final state"
                } else {
                    "judged by status in real-time order: several updates per segment, so only the one acknowledged last on a segment, with no other overlapping it, must be in the final state"
                };
                let raced = match user.in_flight_max {
                    Some(1) => "; the service had one request in flight at a time: it did not race"
                        .to_owned(),
                    Some(n) => format!("; the service had up to {n} requests in flight at once"),
                    None => String::new(),
                };
                let _ = writeln!(out, "\n{}: {how}{raced}", run.strategy);
            }
            if let Some(invariant) = &run.invariant {
                let told = match &invariant.explanation {
                    Some(explanation) => {
                        format!("the invariant ({}) broke: {explanation}", invariant.rule)
                    }
                    None => format!(
                        "the invariant ({}) held: {} Boarding, {} declined",
                        invariant.rule,
                        invariant
                            .boarding
                            .first()
                            .map_or("no segment", String::as_str),
                        crate::output::counted(run.declined, "update")
                    ),
                };
                let _ = writeln!(out, "\n{}: {told}", run.strategy);
            }
            if let Some(text) = run.lost_text() {
                let _ = write!(out, "\n{text}");
            }
        }
        let _ = writeln!(out);
        let summary = if !self.complete {
            "the run could not be completed: what is above is what was observed until then"
        } else if self.inconclusive() {
            "inconclusive: a strategy's run tested too little for a verdict"
        } else if self.ok {
            "every strategy behaved as expected"
        } else {
            "a strategy did not behave as expected"
        };
        let _ = writeln!(out, "{}", paint(summary, self.ok));
        out
    }
}
