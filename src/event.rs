//! What the engine tells its consumers while a run goes on.
//!
//! Updaters emit events through a [`Probe`]; the engine tallies them and forwards them to whoever
//! watches (the TUI's screen, a history file). Times are offsets from the moment the updaters
//! were released together.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::mpsc;

use crate::schedule::Step;

/// Events serialize so a worker can send them through Redis to the run's coordinator
/// (`racelab worker`); a status is one of the journey's known names on both sides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Since the updaters were released.
    pub at: Duration,
    /// 0-based; shown 1-based (`#1` is the updater of SEG-001).
    pub updater: u32,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryReason {
    /// An optimistic write found the journey changed since it was read.
    Conflict,
    /// The journey's lock was held by another updater.
    LockBusy,
}

/// Which part of the journey a write replaces: a whole-journey write can erase any segment's
/// update that it did not read, a segment write only its own segment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteScope {
    Journey,
    Segment,
}

/// A segment's status and count as an updater read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(deserialize_with = "status")]
    pub status: StatusName,
    pub count: u64,
    /// The update whose write made what was read ([`crate::strategy::Op::write`]; 0: the state
    /// as seeded): the journey's last writer for a strategy that writes the whole journey, the
    /// segment's for one that writes only its segment.
    #[serde(default)]
    pub write: u64,
}

/// Another segment's last writer, as a read that checked the whole journey found it (write skew
/// under `hash` and `keys`, which read every segment and write only their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SawWrite {
    pub segment: u32,
    pub write: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The update certainly did not reach Redis.
    NotApplied,
    /// It may or may not have: the write was sent and no answer came.
    Unknown,
}

impl Outcome {
    /// The outcome in a user's words.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::NotApplied => "certainly not made",
            Outcome::Unknown => "outcome unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EventKind {
    /// Begins an update (round `round`): the history's `invoke`.
    Invoked { round: u32 },
    /// Starts reading what it will change.
    Reading { round: u32 },
    /// Read done; now thinking (the seed's `Task.Delay(10)`).
    Read {
        round: u32,
        /// The updater's segment as the read found it.
        seen: Option<Seen>,
        /// The journey's version, for strategies that stamp one.
        version: Option<u64>,
        /// Every segment the read found, for the strategies that read the whole journey apart
        /// from their own segment (write skew under `hash` and `keys`); empty otherwise.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        segments: Vec<SawWrite>,
    },
    /// Waiting for the journey's lock.
    WaitingForLock { round: u32 },
    /// Sends its write.
    Writing { round: u32 },
    /// Gave up this attempt and tries again.
    Retry {
        round: u32,
        attempt: u32,
        reason: RetryReason,
    },
    /// Redis confirmed the write.
    Acknowledged {
        round: u32,
        segment: u32,
        #[serde(deserialize_with = "status")]
        status: StatusName,
        /// When the state this write was based on was read; `None` for blind writes, which
        /// carry no copy of earlier state.
        read_at: Option<Duration>,
        /// The segment as that read found it.
        seen: Option<Seen>,
        /// The segment's count as this write set it, when the strategy learns it.
        written_count: Option<u64>,
        latency: Duration,
        scope: WriteScope,
    },
    /// The update failed; `outcome` says whether it might still have been written.
    Failed {
        round: u32,
        segment: u32,
        #[serde(deserialize_with = "status")]
        status: StatusName,
        outcome: Outcome,
        reason: Arc<str>,
        /// It stopped retrying after `--max-retries`.
        gave_up: bool,
    },
    /// The update was not made because the invariant said no (write skew: another segment
    /// is Boarding as the updater read the journey). Redis answered; nothing was written.
    Declined {
        round: u32,
        segment: u32,
        #[serde(deserialize_with = "status")]
        status: StatusName,
    },
    /// The updater made all its updates.
    Done,
}

/// A segment status name, always one of the journey's known ones. An alias, so serde does not
/// take the `&'static str` for a string borrowed from the input (it is interned instead).
pub type StatusName = &'static str;

/// A status name read back from a worker, as the `'static` name the engine uses.
fn status<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    Ok(crate::journey::intern_status(&name))
}

impl EventKind {
    /// Events that tell where an updater is, not what became of an update. `Done` is not one:
    /// it is sent once per updater, and a run's coordinator needs it to know a worker's
    /// updaters all finished (see [`crate::crew`]).
    pub fn is_phase(&self) -> bool {
        matches!(
            self,
            EventKind::Invoked { .. }
                | EventKind::Reading { .. }
                | EventKind::Read { .. }
                | EventKind::WaitingForLock { .. }
                | EventKind::Writing { .. }
        )
    }
}

/// An updater's handle on the event stream. A probe without a channel (the journey-service API
/// used on its own) records nothing.
pub struct Probe {
    tx: Option<mpsc::Sender<Event>>,
    /// Whether phase events (reading, writing, …) are wanted: only a watcher shows them, and
    /// without one they would only cost channel traffic on the hot path.
    phases: bool,
    start: Instant,
    pub updater: u32,
    pub round: u32,
    /// When the current update read the state it writes back, and what it saw.
    read_at: Option<Duration>,
    seen: Option<Seen>,
    written_count: Option<u64>,
    /// In a scheduled run, the gate every step waits at (`--schedule`); `None` runs free.
    gate: Option<Arc<crate::schedule::Gate>>,
}

impl Probe {
    pub fn new(tx: Option<mpsc::Sender<Event>>, start: Instant, updater: u32) -> Probe {
        Probe {
            tx,
            phases: true,
            start,
            updater,
            round: 0,
            read_at: None,
            seen: None,
            written_count: None,
            gate: None,
        }
    }

    /// Every step waits at `gate` until the schedule lets it through.
    pub(crate) fn with_gate(mut self, gate: Option<Arc<crate::schedule::Gate>>) -> Probe {
        self.gate = gate;
        self
    }

    /// Whether a schedule orders the steps: then a pause before a retry orders nothing, and
    /// only slows the run (`racelab prove` runs thousands of schedules).
    pub fn scheduled(&self) -> bool {
        self.gate.is_some()
    }

    /// Before one step (one Redis round trip) of an update: in a scheduled run, waits for the
    /// schedule's turn, showing whoever drives it the step `next` describes; free running,
    /// nothing (and `next` is never called).
    pub async fn step(&self, next: impl FnOnce() -> Step) {
        if let Some(gate) = &self.gate {
            gate.pass(self.updater, next()).await;
        }
    }

    /// Redis's reply to the step just taken, in a user's words, for whoever drives a scheduled
    /// run; free running, nothing (and `reply` is never called).
    pub fn answered(&self, reply: impl FnOnce() -> Cow<'static, str>) {
        if let Some(gate) = &self.gate {
            gate.answered(self.updater, reply());
        }
    }

    /// Sends only what the tally needs: acknowledgements, failures, retries.
    pub fn without_phases(mut self) -> Probe {
        self.phases = false;
        self
    }

    pub fn detached() -> Probe {
        Probe::new(None, Instant::now(), 0)
    }

    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn begin(&mut self, round: u32) {
        self.round = round;
        self.read_at = None;
        self.seen = None;
        self.written_count = None;
    }

    pub(crate) fn read_at(&self) -> Option<Duration> {
        self.read_at
    }

    pub(crate) fn seen(&self) -> Option<Seen> {
        self.seen
    }

    pub(crate) fn written_count(&self) -> Option<u64> {
        self.written_count
    }

    /// What an update's write read inside Redis (a script's own read): no copy of it left
    /// Redis, so no read time is set, but the history names the write it was based on.
    pub fn saw(&mut self, seen: Seen) {
        self.seen = Some(seen);
    }

    /// The write set the segment's count to `count`.
    pub fn wrote(&mut self, count: u64) {
        self.written_count = Some(count);
    }

    /// Sends `kind` to the engine. Almost always the channel has room and the event goes at
    /// once, with no future to keep; only a full channel (a slow watcher) makes the caller wait,
    /// and that wait is boxed, so an updater does not carry a send future's few hundred bytes
    /// through its whole life (it matters at 100,000 updaters). A consumer that went away (the
    /// screen closed) must not stop the run.
    pub fn emit(&self, kind: EventKind) -> impl Future<Output = ()> + Send + '_ {
        let pending = self.try_emit(kind);
        async move {
            if let Some(send) = pending {
                send.await;
            }
        }
    }

    fn try_emit(
        &self,
        kind: EventKind,
    ) -> Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        if !self.phases && kind.is_phase() {
            return None;
        }
        let tx = self.tx.as_ref()?;
        let event = Event {
            at: self.now(),
            updater: self.updater,
            kind,
        };
        match tx.try_send(event) {
            Err(mpsc::error::TrySendError::Full(event)) => Some(Box::pin(async move {
                let _ = tx.send(event).await;
            })),
            _ => None,
        }
    }

    /// The read step `next` begins (it waits for its turn in a scheduled run).
    pub async fn reading(&mut self, next: impl FnOnce() -> Step) {
        self.step(next).await;
        self.emit(EventKind::Reading { round: self.round }).await;
    }

    /// The read is done: what gets written from here on is based on it. In a scheduled run the
    /// step's reply is what was read.
    pub async fn read(&mut self, seen: Option<Seen>, version: Option<u64>) {
        self.read_segments(seen, version, Vec::new()).await;
    }

    /// [`Probe::read`] of a read that found every segment (`segments`: their last writers).
    pub async fn read_segments(
        &mut self,
        seen: Option<Seen>,
        version: Option<u64>,
        segments: Vec<SawWrite>,
    ) {
        self.read_at = Some(self.now());
        self.seen = seen;
        self.answered(|| {
            let version = version.map_or_else(String::new, |v| format!(", version {v}"));
            match seen {
                Some(seen) => format!("{} (count {}{version})", seen.status, seen.count).into(),
                None => format!("read{version}").into(),
            }
        });
        self.emit(EventKind::Read {
            round: self.round,
            seen,
            version,
            segments,
        })
        .await;
    }

    /// The write step `next` begins (it waits for its turn in a scheduled run).
    pub async fn writing(&mut self, next: impl FnOnce() -> Step) {
        self.step(next).await;
        self.emit(EventKind::Writing { round: self.round }).await;
    }

    pub async fn waiting_for_lock(&mut self) {
        self.emit(EventKind::WaitingForLock { round: self.round })
            .await;
    }

    pub async fn retry(&mut self, attempt: u32, reason: RetryReason) {
        self.emit(EventKind::Retry {
            round: self.round,
            attempt,
            reason,
        })
        .await;
    }
}
