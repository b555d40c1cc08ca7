//! The updaters' lanes of the HTML timeline: a watcher on the engine's event stream (like
//! `--history`) that turns each updater's events into spans (start, read, think, lock wait,
//! write, retry), in bounded memory: lanes for the first [`LANES_KEPT`] updaters, at most
//! [`SPANS_KEPT`] spans a run, and what was left out counted so the page can say so.

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::{Event, EventKind, Outcome, RetryReason};
use crate::workload::Workload;

/// Updaters that get a lane; the counts of the others are still exact in the report.
pub const LANES_KEPT: u32 = 5_000;
/// Spans kept per strategy's run (a few per update): the page of a long run shows its start.
pub const SPANS_KEPT: usize = 30_000;

/// What an updater was doing during a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpanKind {
    /// From the update's start to its first read: taking a lock, for the strategies that do.
    Start,
    Read,
    /// Between its read and its write: the seed's `Task.Delay(10)`.
    Think,
    LockWait,
    Write,
    /// From a conflict to the next attempt's read.
    Retry,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpanOutcome {
    Acknowledged,
    Failed,
    Unknown,
    Conflict,
}

/// One span of one updater's lane.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub kind: SpanKind,
    /// Microseconds since the updaters were released.
    pub from_us: u64,
    pub to_us: u64,
    /// 1-based.
    pub round: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SpanOutcome>,
    /// What it did, in a user's words (what a read saw, what a write wrote, why it failed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The Redis command, where known (scheduled runs: `--schedule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Redis's reply, where known (scheduled runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// A span begun and not yet ended.
#[derive(Debug, Clone)]
struct Open {
    kind: SpanKind,
    from_us: u64,
    round: u32,
    note: String,
    busy: u32,
}

/// The spans of every kept lane, as events arrive.
#[derive(Debug)]
pub struct Lanes {
    pub spans: Vec<Vec<Span>>,
    open: Vec<Option<Open>>,
    kept: usize,
    /// Spans not kept past [`SPANS_KEPT`].
    pub dropped: u64,
    /// Acknowledged writes per segment.
    pub acknowledged: Vec<u64>,
    /// The first time a span was dropped, in µs: the page shows the run up to it.
    pub dropped_from_us: Option<u64>,
}

fn us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Lanes {
    pub fn new(updaters: u32, segments: usize) -> Lanes {
        let lanes = updaters.min(LANES_KEPT) as usize;
        Lanes {
            spans: vec![Vec::new(); lanes],
            open: vec![None; lanes],
            kept: 0,
            dropped: 0,
            acknowledged: vec![0; segments],
            dropped_from_us: None,
        }
    }

    fn close(&mut self, lane: usize, at: u64, outcome: Option<SpanOutcome>, note: &str) {
        let Some(open) = self.open[lane].take() else {
            return;
        };
        if self.kept >= SPANS_KEPT {
            self.dropped += 1;
            self.dropped_from_us.get_or_insert(open.from_us);
            return;
        }
        let mut text = open.note;
        if open.busy > 0 {
            let tries = crate::output::counted(open.busy, "busy answer");
            text = if text.is_empty() {
                tries
            } else {
                format!("{text}; {tries}")
            };
        }
        if !note.is_empty() {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(note);
        }
        self.kept += 1;
        self.spans[lane].push(Span {
            kind: open.kind,
            from_us: open.from_us,
            to_us: at.max(open.from_us),
            round: open.round,
            outcome,
            note: text,
            command: None,
            reply: None,
        });
    }

    fn open(&mut self, lane: usize, kind: SpanKind, at: u64, round: u32, note: String) {
        self.open[lane] = Some(Open {
            kind,
            from_us: at,
            round: round + 1,
            note,
            busy: 0,
        });
    }

    /// Folds one event into its updater's lane.
    pub fn record(&mut self, event: &Event, workload: &Workload) {
        if let EventKind::Acknowledged { segment, .. } = &event.kind
            && let Some(count) = self.acknowledged.get_mut(*segment as usize)
        {
            *count += 1;
        }
        let lane = event.updater as usize;
        if lane >= self.spans.len() {
            return;
        }
        let at = us(event.at);
        match &event.kind {
            EventKind::Invoked { round } => {
                self.close(lane, at, None, "");
                self.open(lane, SpanKind::Start, at, *round, String::new());
            }
            EventKind::Reading { round } => {
                self.close(lane, at, None, "");
                self.open(lane, SpanKind::Read, at, *round, String::new());
            }
            EventKind::Read {
                round,
                seen,
                version,
                ..
            } => {
                let segment = workload
                    .journey
                    .segments
                    .get(workload.segment_of(event.updater) as usize)
                    .map_or("its segment", |s| s.segment_id.as_str());
                let mut note = match seen {
                    Some(seen) => format!("read {segment}: {} (count {})", seen.status, seen.count),
                    None => format!("read {segment}"),
                };
                if let Some(version) = version {
                    note.push_str(&format!(", version {version}"));
                }
                self.close(lane, at, None, &note);
                self.open(lane, SpanKind::Think, at, *round, String::new());
            }
            EventKind::WaitingForLock { round } => {
                self.close(lane, at, None, "the lock was busy");
                self.open(lane, SpanKind::LockWait, at, *round, String::new());
            }
            EventKind::Writing { round } => {
                // A blind write (hash, lua, …) reads nothing: from its start to its write it
                // thinks.
                if let Some(open) = &mut self.open[lane]
                    && open.kind == SpanKind::Start
                {
                    open.kind = SpanKind::Think;
                }
                self.close(lane, at, None, "");
                self.open(lane, SpanKind::Write, at, *round, String::new());
            }
            EventKind::Retry {
                round,
                attempt,
                reason,
            } => match reason {
                // The lock strategies try for the lock again and again: one lock-wait span.
                RetryReason::LockBusy => match &mut self.open[lane] {
                    Some(open) if open.kind == SpanKind::LockWait => open.busy += 1,
                    _ => {
                        self.close(lane, at, None, "the lock was busy");
                        self.open(lane, SpanKind::LockWait, at, *round, String::new());
                    }
                },
                RetryReason::Conflict => {
                    // Short notes: a contended run has hundreds of thousands of these (the
                    // page says what a conflict is).
                    self.close(lane, at, Some(SpanOutcome::Conflict), "");
                    let note = format!("attempt {}", attempt + 1);
                    self.open(lane, SpanKind::Retry, at, *round, note);
                }
            },
            EventKind::Acknowledged {
                round,
                status,
                written_count,
                latency,
                ..
            } => {
                if self.open[lane].is_none() {
                    self.open(lane, SpanKind::Write, at, *round, String::new());
                }
                let count = written_count.map_or_else(String::new, |c| format!(" (count {c})"));
                let note = format!(
                    "wrote {status}{count}; Redis acknowledged it, {:.2} ms after the update's read",
                    crate::truth::ms(*latency)
                );
                self.close(lane, at, Some(SpanOutcome::Acknowledged), &note);
            }
            EventKind::Failed {
                round,
                status,
                outcome,
                reason,
                ..
            } => {
                if self.open[lane].is_none() {
                    self.open(lane, SpanKind::Write, at, *round, String::new());
                }
                let (kind, words) = match outcome {
                    Outcome::NotApplied => (SpanOutcome::Failed, "certainly not made"),
                    Outcome::Unknown => (SpanOutcome::Unknown, "outcome unknown"),
                };
                let note = format!("{status}: {words}: {reason}");
                self.close(lane, at, Some(kind), &note);
            }
            EventKind::Declined { round, status, .. } => {
                if self.open[lane].is_none() {
                    self.open(lane, SpanKind::Write, at, *round, String::new());
                }
                let note = format!("{status}: declined, another segment was Boarding when it read");
                self.close(lane, at, Some(SpanOutcome::Failed), &note);
            }
            EventKind::Done => self.close(lane, at, None, ""),
        }
    }

    /// Ends the spans still open (an interrupted run) at `at`.
    pub fn finish(&mut self, at: u64) {
        for lane in 0..self.open.len() {
            self.close(lane, at, None, "still going when the run ended");
        }
    }
}

/// A watcher for one strategy's run: the sender to hand the engine, and the task that folds the
/// events into lanes and passes each on to `forward` (the `--history` writer), if any.
pub fn watch(
    workload: &Workload,
    forward: Option<mpsc::Sender<Event>>,
) -> (mpsc::Sender<Event>, JoinHandle<Lanes>) {
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let workload = workload.clone();
    let task = tokio::spawn(async move {
        let mut lanes = Lanes::new(workload.updaters, workload.journey.segments.len());
        while let Some(event) = rx.recv().await {
            lanes.record(&event, &workload);
            if let Some(forward) = &forward {
                // A history writer that stopped (its file failed) must not stop the lanes.
                let _ = forward.send(event).await;
            }
        }
        lanes
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(ms: u64, updater: u32, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(ms),
            updater,
            kind,
        }
    }

    #[test]
    fn an_update_becomes_start_read_think_and_write_spans() {
        let workload = crate::workload::Workload {
            journey: std::sync::Arc::new(crate::journey::Journey::seed_fixture().unwrap()),
            updaters: 2,
            rounds: 1,
            think: Duration::from_millis(10),
            jitter: 0.0,
            seed: 0,
            tuning: crate::workload::Tuning {
                backoff: crate::workload::Backoff::Exp,
                lock_ttl: Duration::from_secs(1),
                max_retries: 1,
            },
            deadline: None,
            schedule: None,
            processes: 1,
            scenario: crate::workload::Scenario::LostUpdate,
        };
        let mut lanes = Lanes::new(2, 20);
        for e in [
            event(0, 1, EventKind::Invoked { round: 0 }),
            event(1, 1, EventKind::Reading { round: 0 }),
            event(
                2,
                1,
                EventKind::Read {
                    round: 0,
                    seen: None,
                    version: None,
                    segments: Vec::new(),
                },
            ),
            event(12, 1, EventKind::Writing { round: 0 }),
            event(
                13,
                1,
                EventKind::Retry {
                    round: 0,
                    attempt: 1,
                    reason: RetryReason::Conflict,
                },
            ),
            event(14, 1, EventKind::Done),
        ] {
            lanes.record(&e, &workload);
        }
        let kinds: Vec<_> = lanes.spans[1].iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SpanKind::Start,
                SpanKind::Read,
                SpanKind::Think,
                SpanKind::Write,
                SpanKind::Retry
            ]
        );
        assert_eq!(lanes.spans[1][3].outcome, Some(SpanOutcome::Conflict));
        assert_eq!(lanes.spans[1][2].from_us, 2000);
        assert_eq!(lanes.spans[1][2].to_us, 12000);
        assert!(lanes.spans[0].is_empty());
    }
}
