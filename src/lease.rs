//! A worker's hold on the runs it serves, and the timing of every lease in a crew. A leaf: the
//! strategies check the lease before each write, the engine hands it to a worker's updaters, and
//! the crew renews it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a card or a session lives unless renewed: a process that stopped renewing for this
/// long is gone.
pub(crate) const TTL: Duration = Duration::from_secs(5);
/// How often cards and sessions are renewed, and liveness looked at.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A worker's hold on the runs it serves. Its card in Redis expires `TTL` after the last renewal;
/// from then on the coordinator may take the worker for vanished, count its in-flight updates
/// unknown and delete the run's keys. So a worker whose last renewal is older than
/// [`Lease::LOCAL_LIMIT`] (a process stalled, a host cut off), or whose card was found gone,
/// must not write any more: its updaters check before each write.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// When the last successful renewal was sent, in ms since `base`.
    renewed_ms: AtomicU64,
    /// A session claimed the worker.
    pub(crate) claimed: AtomicBool,
    /// The card expired after the claim.
    pub(crate) evicted: AtomicBool,
}

impl Default for Lease {
    fn default() -> Lease {
        Lease {
            base: Instant::now(),
            renewed_ms: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
        }
    }
}

impl Lease {
    /// A renewal older than this counts as lapsed: a renewal period short of `TTL`, since the
    /// card's own clock started when Redis received the renewal, after it was sent.
    pub const LOCAL_LIMIT: Duration = Duration::from_secs(TTL.as_secs() - RENEW_EVERY.as_secs());

    /// A renewal sent at `sent` succeeded.
    pub(crate) fn renewed(&self, sent: Instant) {
        let ms = sent.saturating_duration_since(self.base).as_millis() as u64;
        self.renewed_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// Whether the worker may have been taken for vanished: it must stop writing.
    pub fn lapsed(&self) -> bool {
        let renewed = self.base + Duration::from_millis(self.renewed_ms.load(Ordering::SeqCst));
        self.evicted.load(Ordering::SeqCst) || renewed.elapsed() >= Self::LOCAL_LIMIT
    }
}
