//! A worker's hold on the runs it serves, and the timing of every lease in a crew. A leaf: the
//! strategies check the lease before each write, the engine hands it to a worker's updaters, and
//! the crew renews it.

use std::sync::Arc;
use std::sync::Mutex;
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
    /// The run the worker serves now: its id and token in the run's admission hash, which every
    /// write checks (README "Workers").
    admission: Mutex<Option<Arc<Admission>>>,
    /// A pause after the lease check before each write (`RACELAB_TEST_STALL_BEFORE_WRITE`, for
    /// the test that stops a worker in that window; README "Development").
    pub(crate) stall: Option<Duration>,
}

/// A worker's admission to one run: what its writes show the run's admission hash.
#[derive(Debug)]
pub struct Admission {
    pub worker: String,
    pub token: String,
}

impl Default for Lease {
    fn default() -> Lease {
        Lease {
            base: Instant::now(),
            renewed_ms: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            admission: Mutex::new(None),
            stall: std::env::var("RACELAB_TEST_STALL_BEFORE_WRITE")
                .ok()
                .and_then(|text| humantime::parse_duration(&text).ok()),
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

    /// The worker serves the run it was given `admission` to.
    pub(crate) fn admit(&self, admission: Option<Admission>) {
        if let Ok(mut current) = self.admission.lock() {
            *current = admission.map(Arc::new);
        }
    }

    /// The admission of the run the worker serves.
    pub fn admission(&self) -> Option<Arc<Admission>> {
        self.admission.lock().ok().and_then(|a| a.clone())
    }

    /// Whether the worker may have been taken for vanished: it must stop writing.
    pub fn lapsed(&self) -> bool {
        let renewed = self.base + Duration::from_millis(self.renewed_ms.load(Ordering::SeqCst));
        self.evicted.load(Ordering::SeqCst) || renewed.elapsed() >= Self::LOCAL_LIMIT
    }
}
