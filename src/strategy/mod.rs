//! The ways to update a segment's status: the seed's bug and its fixes, one file each.
//!
//! [`Strategy`] names them (it is what `-s` parses); [`Updater`] is one updater's working state
//! for a strategy: most share the run's multiplexed connection, the optimistic ones that need
//! connection state of their own hold a dedicated one. [`Storage`] is how a strategy lays the
//! journey out in Redis, which decides how it is seeded and read back.

mod hash;
mod naive;
pub mod storage;

use std::fmt;
use std::time::Duration;

use clap::ValueEnum;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

pub use storage::Storage;

use crate::error::Error;
use crate::event::{Outcome, Probe, WriteScope};
use crate::keys::Keys;
use crate::target::{Target, describe};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// GET the whole journey, change one segment, think, SET it back (the seed's bug).
    Naive,
    /// Segment state in hash fields of one key: one atomic write, no read-modify-write.
    Hash,
}

impl Strategy {
    /// Every strategy, in the order `all` runs them.
    pub const ALL: &'static [Strategy] = &[Strategy::Naive, Strategy::Hash];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Hash => "hash",
        }
    }

    /// One line on how an update is made.
    pub fn how(self) -> &'static str {
        match self {
            Strategy::Naive => "GET the journey JSON, change one segment, think, SET it back",
            Strategy::Hash => "HSET the segment's status and HINCRBY its count in one MULTI",
        }
    }

    pub fn storage(self) -> Storage {
        match self {
            Strategy::Naive => Storage::Document,
            Strategy::Hash => Storage::Hash,
        }
    }

    /// What a write of this strategy replaces, for attributing lost updates.
    pub fn scope(self) -> WriteScope {
        match self {
            Strategy::Naive => WriteScope::Journey,
            Strategy::Hash => WriteScope::Segment,
        }
    }

    /// Whether this strategy can lose updates on a workload (`--expect auto`). `None`: it may
    /// or may not, the race is possible but not forced.
    pub fn loses_updates(self, workload: &RaceShape) -> Option<bool> {
        match self {
            // Whole-journey read-modify-write: any two updaters that overlap race.
            Strategy::Naive if workload.updaters < 2 => Some(false),
            Strategy::Naive if workload.think.is_zero() => None,
            Strategy::Naive => Some(true),
            Strategy::Hash => Some(false),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--expect auto` needs to know about a workload.
#[derive(Debug, Clone, Copy)]
pub struct RaceShape {
    pub updaters: u32,
    pub segments: u32,
    pub think: Duration,
}

/// One update to make: the seed's `UpdateSegmentStatusAsync(journeyId, segmentId, newStatus)`,
/// with the segment already found in the journey's layout.
pub struct Op<'a> {
    pub keys: &'a Keys,
    pub segment_id: &'a str,
    pub status: &'a str,
    /// The pause between reading and writing.
    pub think: Duration,
}

/// How an update ended when Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    Applied,
    JourneyNotFound,
    SegmentNotFound,
}

/// An update that did not end with an answer.
#[derive(Debug, Clone)]
pub struct UpdateError {
    pub outcome: Outcome,
    pub reason: String,
    /// The run cannot go on (the server refuses the commands, the data is not racelab's).
    pub fatal: bool,
}

impl UpdateError {
    /// A failure before anything was written: the update certainly did not happen.
    pub fn before_write(e: redis::RedisError) -> UpdateError {
        UpdateError {
            fatal: is_fatal(&e),
            outcome: Outcome::NotApplied,
            reason: describe(&e),
        }
    }

    /// A failure of the write itself. An error reply means Redis refused the command; a timeout
    /// or a dropped connection means the write may have landed, and nobody can say.
    pub fn during_write(e: redis::RedisError) -> UpdateError {
        let unknown = e.is_timeout() || e.is_io_error() || e.is_connection_dropped();
        UpdateError {
            fatal: is_fatal(&e),
            outcome: if unknown {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            },
            reason: describe(&e),
        }
    }

    pub fn corrupt(reason: String) -> UpdateError {
        UpdateError {
            outcome: Outcome::NotApplied,
            reason,
            fatal: true,
        }
    }
}

/// Errors no retry can mend: permissions, wrong key types, unknown commands.
fn is_fatal(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("NOPERM" | "WRONGTYPE" | "NOAUTH" | "WRONGPASS" | "NOSCRIPT_UNSUPPORTED")
    ) || e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.detail().is_some_and(|d| d.contains("unknown command"))
}

/// One updater's working state for its strategy.
pub enum Updater {
    Naive(naive::Naive),
    Hash(hash::Hash),
}

impl Updater {
    /// `shared` is the run's multiplexed connection: right for single commands, transactions
    /// sent as one pipeline and scripts.
    pub async fn new(
        strategy: Strategy,
        shared: &MultiplexedConnection,
        _target: &Target,
    ) -> Result<Updater, Error> {
        Ok(match strategy {
            Strategy::Naive => Updater::Naive(naive::Naive::new(shared.clone())),
            Strategy::Hash => Updater::Hash(hash::Hash::new(shared.clone())),
        })
    }

    pub async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        match self {
            Updater::Naive(s) => s.update(op, probe).await,
            Updater::Hash(s) => s.update(op, probe).await,
        }
    }
}
