//! The shape of a run, shared by everyone who plans, runs or judges one: what each strategy is
//! given to do ([`Workload`]), the knobs of the strategies that lock or retry ([`Tuning`]), and
//! what `--expect auto` looks at ([`RaceShape`]). A leaf: it names no part of racelab that runs
//! things, so the engine, the crew's workers (which receive a workload in their job) and the
//! strategies can all use it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journey::Journey;

/// What every strategy of a run is given to do. It travels to workers in their job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    pub journey: Arc<Journey>,
    pub updaters: u32,
    pub rounds: u32,
    /// The pause between an updater's read and its write.
    pub think: Duration,
    /// Each pause is lengthened by up to this fraction of `think`, at random.
    pub jitter: f64,
    /// Seeds the jitter, so a run can be repeated.
    pub seed: u64,
    /// Lock ttl and retry bound of the strategies that lock or retry.
    pub tuning: Tuning,
    /// When set, updaters start no new update this long after the release (`bench` runs for a
    /// time rather than a number of rounds).
    pub deadline: Option<Duration>,
    /// When set, the interleaving the updaters' steps follow (`--schedule`); else they run free.
    #[serde(default)]
    pub schedule: Option<crate::schedule::Schedule>,
    /// How many processes the updaters are spread over: 1 in this process, K with
    /// `--workers K`. An in-process mutex (`local-mutex`) only excludes within one.
    #[serde(default = "one_process")]
    pub processes: u32,
    /// The anomaly the run tests for (`--scenario`).
    #[serde(default)]
    pub scenario: Scenario,
}

fn one_process() -> u32 {
    1
}

/// What a run tests for (README "Scenarios"): lost updates (the seed's), or write skew, where
/// an invariant that spans segments is checked by every updater before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every updater writes its own status to its own segment; the verdict counts lost updates.
    #[default]
    LostUpdate,
    /// Every updater tries to board its own segment, if no other segment is Boarding: at most
    /// one segment of a journey may be Boarding. The verdict checks that invariant.
    WriteSkew,
}

/// The status write skew's updaters write, and its invariant's subject: at most one segment of
/// a journey may hold it.
pub const BOARDING: &str = "Boarding";

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scenario::LostUpdate => "lost-update",
            Scenario::WriteSkew => "write-skew",
        })
    }
}

impl Workload {
    pub fn segments(&self) -> u32 {
        self.journey.segments.len() as u32
    }

    /// Updater `i` (0-based) works on segment `i mod S`, as the README says.
    pub fn segment_of(&self, updater: u32) -> u32 {
        updater % self.segments()
    }

    /// The status updater `updater` (0-based) writes in round `round`.
    pub fn status_of(&self, updater: u32, round: u32) -> &'static str {
        match self.scenario {
            Scenario::LostUpdate => crate::journey::update_status(updater as usize, round),
            Scenario::WriteSkew => BOARDING,
        }
    }

    pub fn total_updates(&self) -> u64 {
        u64::from(self.updaters) * u64::from(self.rounds)
    }

    /// What `--expect auto` looks at.
    pub fn shape(&self) -> RaceShape {
        RaceShape {
            updaters: self.updaters,
            segments: self.segments(),
            think: self.think,
            jitter: self.jitter,
            lock_ttl: self.tuning.lock_ttl,
            scheduled: self.schedule.is_some(),
            // A worker runs a contiguous share of the updaters: with fewer updaters than
            // workers, some workers run none.
            processes: self.processes.clamp(1, self.updaters.max(1)),
            scenario: self.scenario,
        }
    }
}

/// What an update does between two tries (a WATCH that aborted, a CAS conflict, a busy lock;
/// README "Performance"): try again at once, or back off exponentially with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    None,
    #[default]
    Exp,
}

impl std::fmt::Display for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backoff::None => "none",
            Backoff::Exp => "exp",
        })
    }
}

/// Knobs of the strategies that retry or lock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tuning {
    /// Between two tries of an update.
    #[serde(default)]
    pub backoff: Backoff,
    /// How long the `lock`, `fenced` and `del-unlock` strategies' lock lives.
    pub lock_ttl: Duration,
    /// How many times an update is retried (conflict, lock busy) before it gives up.
    pub max_retries: u32,
}

impl Tuning {
    /// The default lock ttl: well above the think time, so `lock` holds unless asked not to.
    pub fn default_lock_ttl(think: Duration) -> Duration {
        (think * 10).max(Duration::from_secs(1))
    }
}

/// What `--expect auto` needs to know about a workload.
#[derive(Debug, Clone, Copy)]
pub struct RaceShape {
    pub updaters: u32,
    pub segments: u32,
    pub think: Duration,
    pub jitter: f64,
    pub lock_ttl: Duration,
    /// The interleaving is chosen (`--schedule`), not timing's.
    pub scheduled: bool,
    /// How many processes run updaters (1, or the `--workers`, at most one per updater).
    pub processes: u32,
    /// The anomaly tested for: `--expect auto` expects per scenario.
    pub scenario: Scenario,
}
