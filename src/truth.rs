//! The truth of a run (README "What the numbers mean"): what was acknowledged, what the final
//! state shows applied, what was lost, what is unknown, and who erased each lost update.
//!
//! [`Tally`] folds the event stream into counts and a latency histogram; [`verify`] sets it against
//! the final state read back from Redis. Each segment's count travels with its status, so
//! `lost = acknowledged − applied` holds per segment however many updaters share it.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::event::{Event, EventKind, Outcome, RetryReason, WriteScope};
use crate::journey::{Journey, SegmentState};

/// An acknowledged write, as attribution needs it: who wrote what, based on which read, and
/// when Redis said OK. The verdict ([`verify`]) and the TUI's live attribution both keep these,
/// so both ask [`find_eraser`] the same question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckedWrite {
    /// 0-based.
    pub updater: u32,
    pub round: u32,
    pub segment: u32,
    pub status: &'static str,
    /// When the state it wrote back was read; `None` for a write made without reading.
    pub read_at: Option<Duration>,
    pub acked_at: Duration,
    pub scope: WriteScope,
}

impl AckedWrite {
    /// The write an [`EventKind::Acknowledged`] event reports; `None` for any other event.
    pub fn from_event(event: &Event) -> Option<AckedWrite> {
        match &event.kind {
            EventKind::Acknowledged {
                round,
                segment,
                status,
                read_at,
                scope,
                ..
            } => Some(AckedWrite {
                updater: event.updater,
                round: *round,
                segment: *segment,
                status,
                read_at: *read_at,
                acked_at: event.at,
                scope: *scope,
            }),
            _ => None,
        }
    }

    /// Whether this write, acknowledged after `lost`, put back a copy without it: it covers
    /// `lost`'s segment, comes from another updater, and is based on a read made before `lost`
    /// was acknowledged.
    fn erases(&self, lost: &AckedWrite) -> bool {
        let covers = match self.scope {
            WriteScope::Journey => true,
            WriteScope::Segment => self.segment == lost.segment,
        };
        covers
            && self.updater != lost.updater
            && self.read_at.is_some_and(|read| read < lost.acked_at)
    }
}

#[derive(Debug, Clone, Default)]
struct SegmentTally {
    acknowledged: u64,
    unknown: u64,
}

/// Counts and latencies of a run as its events arrive.
pub struct Tally {
    pub acknowledged: u64,
    pub unknown: u64,
    /// Updates that certainly did not happen (refused, journey or segment not found).
    pub errors: u64,
    pub retries: u64,
    pub conflicts: u64,
    /// Updates that stopped retrying after `--max-retries`.
    pub give_ups: u64,
    /// Updates the invariant declined (write skew): decided, not failed.
    pub declined: u64,
    /// The last event's time: the run's duration once every updater is done.
    pub last_at: Duration,
    /// Update latency in microseconds, from its first read to its acknowledgement.
    pub latency: Histogram<u64>,
    /// The first few failure reasons, for the report.
    pub failure_reasons: Vec<String>,
    segments: Vec<SegmentTally>,
    writes: Vec<AckedWrite>,
}

const FAILURE_REASONS_KEPT: usize = 5;

/// Acknowledged writes kept for attribution (about 50 MB at most).
const WRITES_KEPT: usize = 1_000_000;

impl Tally {
    pub fn new(segments: usize) -> Tally {
        Tally {
            acknowledged: 0,
            unknown: 0,
            errors: 0,
            retries: 0,
            conflicts: 0,
            give_ups: 0,
            declined: 0,
            last_at: Duration::ZERO,
            // 1 µs to an hour at three significant digits: fixed memory whatever the run's length.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable_histogram()),
            failure_reasons: Vec::new(),
            segments: vec![SegmentTally::default(); segments],
            writes: Vec::new(),
        }
    }

    /// Makes room for `updates` acknowledged writes (as many as are kept), so that the list of
    /// them never holds twice the room it needs while it grows.
    pub fn expect_writes(&mut self, updates: u64) {
        let kept = updates.min(WRITES_KEPT as u64) as usize;
        self.writes
            .reserve_exact(kept.saturating_sub(self.writes.len()));
    }

    pub fn record(&mut self, event: &Event) {
        self.last_at = self.last_at.max(event.at);
        match &event.kind {
            EventKind::Acknowledged {
                segment, latency, ..
            } => {
                self.acknowledged += 1;
                if let Some(s) = self.segments.get_mut(*segment as usize) {
                    s.acknowledged += 1;
                }
                let micros = latency.as_micros().clamp(1, u64::MAX as u128) as u64;
                self.latency.saturating_record(micros);
                // Every acknowledged write is kept, blind ones too: only a write based on a
                // read can erase another, but any write can be lost, and the report lists every
                // loss it counts. The cap keeps long runs in bounded memory: counts stay exact
                // beyond it, only the listing stops.
                if self.writes.len() >= WRITES_KEPT {
                    return;
                }
                self.writes.extend(AckedWrite::from_event(event));
            }
            EventKind::Failed {
                segment,
                outcome,
                reason,
                gave_up,
                ..
            } => {
                self.give_ups += u64::from(*gave_up);
                match outcome {
                    Outcome::Unknown => {
                        self.unknown += 1;
                        if let Some(s) = self.segments.get_mut(*segment as usize) {
                            s.unknown += 1;
                        }
                    }
                    Outcome::NotApplied => self.errors += 1,
                }
                if self.failure_reasons.len() < FAILURE_REASONS_KEPT
                    && !self.failure_reasons.iter().any(|r| **r == **reason)
                {
                    self.failure_reasons.push(reason.to_string());
                }
            }
            EventKind::Declined { .. } => self.declined += 1,
            EventKind::Retry { reason, .. } => {
                self.retries += 1;
                if *reason == RetryReason::Conflict {
                    self.conflicts += 1;
                }
            }
            _ => {}
        }
    }

    pub fn latency_ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(quantile) as f64 / 1000.0
        }
    }

    pub fn max_latency_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

fn unreachable_histogram() -> Histogram<u64> {
    // The bounds above are valid constants; this fallback only keeps the type total.
    Histogram::new(2).unwrap_or_else(|_| std::process::abort())
}

/// Why a completed run tested too little for a verdict, if it did (README "Exit codes"). A lost
/// update needs two acknowledged writes (the lost one and one that erased it), so with fewer
/// than two nothing could have been lost, whatever the strategy; a run where fewer than half of
/// the updates were acknowledged says more about what did not happen than about what did; and a
/// race a strategy is expected to show (`expects_loss`) is only missing for real when every
/// update it was given was acknowledged. The report and the TUI both ask here.
pub fn inconclusive(
    tally: &Tally,
    truth: &Truth,
    total: u64,
    expects_loss: bool,
) -> Option<String> {
    // An update the invariant declined (write skew) was decided, not lost to a failure: it
    // counts with the acknowledged ones.
    let acknowledged = tally.acknowledged + tally.declined;
    let why = || {
        let mut parts = Vec::new();
        let refused = tally.errors - tally.give_ups;
        if refused > 0 {
            parts.push(format!("{refused} certainly not made"));
        }
        if tally.give_ups > 0 {
            parts.push(format!("{} gave up retrying", tally.give_ups));
        }
        if tally.unknown > 0 {
            parts.push(format!("{} with an unknown outcome", tally.unknown));
        }
        let first = tally
            .failure_reasons
            .first()
            .map_or_else(String::new, |r| format!(", first because: {r}"));
        format!("{}{first}", parts.join(", "))
    };
    if acknowledged == 0 && total > 0 {
        return Some(format!("no update was acknowledged: {}", why()));
    }
    if total < 2 {
        return Some(
            "the run makes one update, and a lost update needs two (the lost one and the one that erases it); run at least 2 updaters".to_owned(),
        );
    }
    if acknowledged < 2 {
        return Some(format!(
            "only {acknowledged} of {total} updates was acknowledged, too few for any to be lost: {}",
            why()
        ));
    }
    if acknowledged * 2 < total {
        // A fix that makes no progress does not pass: what it was given mostly never happened.
        return Some(format!(
            "only {acknowledged} of {total} updates were acknowledged, fewer than half: {}",
            why()
        ));
    }
    if expects_loss && truth.lost == 0 && acknowledged < total {
        return Some(format!(
            "no update was lost, but only {acknowledged} of {total} updates were acknowledged, too few to show the race it expects: {}",
            why()
        ));
    }
    None
}

/// One lost update, told the way the seed's test tells it, and who erased it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LostUpdate {
    pub segment: String,
    /// 1-based, as shown everywhere.
    pub updater: u32,
    pub round: u32,
    pub expected: String,
    pub got: String,
    /// When Redis acknowledged the lost write.
    pub acknowledged_ms: f64,
    /// When the lost update read the state it wrote (for a user's strategy: when its request
    /// went); `None` for a write made without reading.
    pub read_ms: Option<f64>,
    /// The updater whose write, based on a read from before this one landed, erased it.
    pub erased_by: Option<u32>,
    /// When the eraser wrote.
    pub erased_at_ms: Option<f64>,
    /// When the eraser had read the state it wrote back.
    pub eraser_read_ms: Option<f64>,
    /// The worker the updater ran in, when workers ran the run (`--workers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The worker the eraser ran in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_by_worker: Option<String>,
    /// Why it was lost, when not by a stale write: the failover threw it away, or the failover
    /// and a stale write both could have (README "Failover"). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<LossCause>,
}

/// A cause of loss other than a stale write.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LossCause {
    /// Acknowledged by the old primary, never on the replica promoted in its place.
    Failover,
    /// The failover threw away updates of the segment some of which had an unknown outcome, or
    /// what each side held could not be read: whether this one went with the failover or was
    /// erased by a stale write cannot be told.
    FailoverOrStaleWrite,
}

impl LostUpdate {
    /// `Segment SEG-002: expected 'Boarding', got 'Scheduled'`, as in the seed's test.
    pub fn seed_message(&self) -> String {
        format!(
            "Segment {}: expected '{}', got '{}'",
            self.segment, self.expected, self.got
        )
    }

    /// The anomaly in Elle's style, named in Adya's terms: `lost update (P4): #1 and #2 both
    /// read SEG-001 before #1's write landed (at 0.4 ms and 0.5 ms); both wrote; #2's write
    /// erased #1's`. `None` where the eraser or a read is not known.
    pub fn elle_line(&self) -> Option<String> {
        let (by, read, by_read) = (self.erased_by?, self.read_ms?, self.eraser_read_ms?);
        Some(format!(
            "lost update (P4): #{u} and #{by} both read {} before #{u}'s write landed (at {read:.1} ms and {by_read:.1} ms); both wrote; #{by}'s write erased #{u}'s",
            self.segment,
            u = self.updater
        ))
    }

    /// Who erased it, in words, for a user's own strategy, whose reads racelab does not see:
    /// the eraser is the update that was sent before this one was acknowledged and was
    /// acknowledged after it.
    pub fn attribution_by_time(&self) -> String {
        match (self.erased_by, self.erased_at_ms, self.eraser_read_ms) {
            (Some(by), Some(at), Some(sent)) => format!(
                "#{}'s update (acknowledged at {:.1} ms) was overwritten; #{by}'s update, sent at {sent:.1} ms and acknowledged at {at:.1} ms, overlapped it and landed after it (racelab does not see the service's reads)",
                self.updater, self.acknowledged_ms
            ),
            _ => format!(
                "#{}'s update (acknowledged at {:.1} ms) was overwritten; no later update overlapped it in time",
                self.updater, self.acknowledged_ms
            ),
        }
    }

    /// Who erased it, in words.
    pub fn attribution(&self) -> String {
        match self.cause {
            Some(LossCause::Failover) => {
                return format!(
                    "#{}'s write (acknowledged at {:.1} ms) was lost to failover: the old primary had it, the replica promoted in its place never got it",
                    self.updater, self.acknowledged_ms
                );
            }
            Some(LossCause::FailoverOrStaleWrite) => {
                return format!(
                    "#{}'s write (acknowledged at {:.1} ms) was lost to failover or erased by a stale write: which of the two cannot be told",
                    self.updater, self.acknowledged_ms
                );
            }
            None => {}
        }
        let from = |worker: &Option<String>| {
            worker
                .as_ref()
                .map_or_else(String::new, |w| format!(" from {w}"))
        };
        match (self.erased_by, self.erased_at_ms, self.eraser_read_ms) {
            (Some(by), Some(at), Some(read)) => format!(
                "#{}'s write{} (acknowledged at {:.1} ms) was erased by #{by}'s stale write{} at {at:.1} ms, based on its read at {read:.1} ms",
                self.updater,
                from(&self.worker),
                self.acknowledged_ms,
                from(&self.erased_by_worker)
            ),
            _ => format!(
                "#{}'s write{} (acknowledged at {:.1} ms) was overwritten; the history does not show by whom",
                self.updater,
                from(&self.worker),
                self.acknowledged_ms
            ),
        }
    }
}

/// What the final state proves.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub applied: u64,
    pub lost: u64,
    /// Of `lost`, the acknowledged updates a failover certainly threw away (README "Failover").
    pub lost_to_failover: u64,
    /// Of `lost`, those the failover or a stale write may have taken, which cannot be told.
    pub lost_to_failover_or_stale: u64,
    /// Applied counts higher than anything racelab wrote: someone else changed the journey.
    pub foreign_writes: u64,
    pub lost_updates: Vec<LostUpdate>,
}

/// Sets the acknowledged writes against the final state by status, for a user's own strategy
/// (`exec:`, `lua:`), whose code keeps no count racelab can trust (README "Race your own
/// service"). `exact` (one updater per segment, one round): every acknowledged update whose
/// status is not in the final state was lost, and the eraser is looked for as for racelab's
/// own strategies, with the moment the request was sent as the latest its read could have
/// been. Otherwise only what real-time order proves: the update acknowledged last on a segment
/// must be visible unless another update of that segment overlapped it (or has an unknown
/// outcome).
pub fn verify_by_status(
    tally: &Tally,
    journey: &Journey,
    states: &[SegmentState],
    exact: bool,
    lost_limit: usize,
) -> Truth {
    let mut truth = Truth::default();
    let mut writes = tally.writes.clone();
    writes.sort_by_key(|w| w.acked_at);
    let shows = |w: &AckedWrite| {
        states
            .get(w.segment as usize)
            .is_some_and(|s| s.status == w.status)
    };
    let mut lost = Vec::new();
    if exact {
        for (pos, write) in writes.iter().enumerate() {
            if shows(write) {
                truth.applied += 1;
            } else {
                lost.push((pos, true));
            }
        }
    } else {
        for (segment, seg) in tally.segments.iter().enumerate() {
            let of_segment: Vec<usize> = (0..writes.len())
                .filter(|&k| writes[k].segment as usize == segment)
                .collect();
            let Some(&last) = of_segment.last() else {
                continue;
            };
            let latest = &writes[last];
            let sent = latest.read_at.unwrap_or(Duration::ZERO);
            let overlapped = seg.unknown > 0
                || of_segment
                    .iter()
                    .any(|&k| k != last && writes[k].acked_at > sent);
            if shows(latest) {
                truth.applied += 1;
            } else if !overlapped {
                lost.push((last, false));
            }
        }
    }
    truth.lost = lost.len() as u64;
    let mut budget = ATTRIBUTION_BUDGET;
    for (pos, attribute) in lost.into_iter().take(lost_limit) {
        let eraser = if attribute {
            find_eraser(&writes, pos, &mut budget).and_then(|e| writes.get(e))
        } else {
            None
        };
        truth
            .lost_updates
            .push(lost_update(journey, states, &writes[pos], eraser));
    }
    truth.lost_updates.sort_by(|a, b| {
        (a.segment.as_str(), a.updater, a.round).cmp(&(b.segment.as_str(), b.updater, b.round))
    });
    truth
}

/// Write skew's invariant as the final state shows it (README "Scenarios").
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Invariant {
    /// The rule, in words.
    pub rule: &'static str,
    pub holds: bool,
    /// The segments Boarding at the end.
    pub boarding: Vec<String>,
    /// When it broke: each write that boarded a segment, and the read it was based on.
    pub broken_by: Vec<Boarded>,
    /// In Elle's style: who read what, who wrote, what broke. `None` while it holds.
    pub explanation: Option<String>,
}

/// A write that boarded a segment, and the read it was based on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Boarded {
    /// 1-based.
    pub updater: u32,
    pub segment: String,
    /// When it read the journey it checked the invariant on; `None` where that read is not
    /// visible to racelab (a script, a user's service).
    pub read_ms: Option<f64>,
    pub acknowledged_ms: f64,
}

/// Checks write skew's invariant, at most one segment Boarding, against the final state, and
/// names the acknowledged writes that boarded the Boarding segments.
pub fn check_invariant(tally: &Tally, journey: &Journey, states: &[SegmentState]) -> Invariant {
    let boarding: Vec<usize> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status == crate::workload::BOARDING)
        .map(|(i, _)| i)
        .collect();
    let holds = boarding.len() <= 1;
    let mut broken_by = Vec::new();
    if !holds {
        for &i in &boarding {
            let last = tally
                .writes
                .iter()
                .filter(|w| w.segment as usize == i && w.status == crate::workload::BOARDING)
                .max_by_key(|w| w.acked_at);
            if let Some(w) = last {
                broken_by.push(Boarded {
                    updater: w.updater + 1,
                    segment: journey.segments[i].segment_id.clone(),
                    read_ms: w.read_at.map(ms),
                    acknowledged_ms: ms(w.acked_at),
                });
            }
        }
    }
    let explanation = (!holds).then(|| {
        // Named a few at a time: twenty boarders read no better than three.
        const NAMED: usize = 3;
        // `#1, #2 and #3`, or `#1, #2, #3 and 17 more`.
        let list = |names: &[String], n: usize| {
            if n > NAMED {
                format!("{} and {} more", names.join(", "), n - NAMED)
            } else {
                join_words(names)
            }
        };
        let shown = &broken_by[..broken_by.len().min(NAMED)];
        let who: Vec<String> = shown.iter().map(|b| format!("#{}", b.updater)).collect();
        let reads: Vec<String> = shown
            .iter()
            .filter_map(|b| b.read_ms.map(|r| format!("{r:.1} ms")))
            .collect();
        let read = if reads.len() == shown.len() && !reads.is_empty() {
            format!(" (at {})", reads.join(", "))
        } else {
            String::new()
        };
        let segments: Vec<String> = shown.iter().map(|b| b.segment.clone()).collect();
        format!(
            "write skew (G2-item): {} each read that no other segment was Boarding{read}, and each boarded its own: {} are Boarding at once",
            list(&who, broken_by.len()),
            list(&segments, boarding.len())
        )
    });
    Invariant {
        rule: "at most one segment of a journey is Boarding",
        holds,
        boarding: boarding
            .iter()
            .map(|&i| journey.segments[i].segment_id.clone())
            .collect(),
        broken_by,
        explanation,
    }
}

/// `A`, `A and B`, `A, B and C`.
pub(crate) fn join_words<S: AsRef<str>>(parts: &[S]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// How much eraser searching a verification may do; beyond it, losses stay unattributed.
const ATTRIBUTION_BUDGET: usize = 20_000_000;

/// Sets the tally against the final state. `lost_limit` caps how many lost updates are listed
/// (the counts are always exact).
pub fn verify(
    tally: &Tally,
    journey: &Journey,
    states: &[SegmentState],
    lost_limit: usize,
) -> Truth {
    verify_with_failover(tally, journey, states, lost_limit, None)
}

/// [`verify`], for a run with a failover (`--failover-at`): `failover` is what it recorded, or
/// why it could not be made. The old primary held, per segment, a count the promoted replica
/// lacked by `dropped`: that many updates the failover threw away. Each was acknowledged or had
/// an unknown outcome; so of a segment's losses, `dropped − unknown` certainly went with the
/// failover, up to `dropped` may have, and the rest were erased by stale writes. Where what each
/// side held could not be read, no loss is pinned on either cause.
pub fn verify_with_failover(
    tally: &Tally,
    journey: &Journey,
    states: &[SegmentState],
    lost_limit: usize,
    failover: Option<Result<&crate::failover::FailoverRecord, String>>,
) -> Truth {
    let mut truth = Truth::default();
    let mut lost_per_segment = vec![0u64; journey.segments.len()];
    for (i, seg) in tally.segments.iter().enumerate() {
        let count = states.get(i).map_or(0, |s| s.update_count);
        let possible = seg.acknowledged + seg.unknown;
        truth.applied += count.min(possible);
        truth.foreign_writes += count.saturating_sub(possible);
        // Certainly lost: even if every unknown update failed, this many acknowledged ones are
        // missing from the segment's count.
        lost_per_segment[i] = seg.acknowledged.saturating_sub(count);
        truth.lost += lost_per_segment[i];
    }
    if truth.lost == 0 {
        return truth;
    }

    let mut writes = tally.writes.clone();
    writes.sort_by_key(|w| w.acked_at);
    let mut taken = vec![false; writes.len()];
    let mut listed_per_segment = vec![0u64; journey.segments.len()];
    // A failover made (`Ok`) but whose sides could not be read drops an unknown number of each
    // segment's updates: then every loss may be its.
    if let Some(failover) = &failover {
        let dropped = failover.as_ref().ok().and_then(|f| f.dropped());
        let cut = failover.as_ref().ok().map(|f| f.cut_at);
        for (s, lost) in lost_per_segment.iter_mut().enumerate() {
            let unknown = tally.segments.get(s).map_or(0, |seg| seg.unknown);
            let (certain, possible) = match dropped.as_ref().map(|d| d.get(s).copied()) {
                Some(Some(dropped)) => (
                    dropped.saturating_sub(unknown).min(*lost),
                    dropped.min(*lost),
                ),
                _ if failover.is_ok() => (0, *lost),
                _ => (0, 0),
            };
            truth.lost_to_failover += certain;
            truth.lost_to_failover_or_stale += possible - certain;
            // The failover's losses are listed as the segment's last writes acknowledged before
            // the cut: the old primary's last ones, which the replica was the likeliest to lack.
            // The count is exact; which writes it names is the likeliest reading.
            let mut named = 0;
            for pos in (0..writes.len()).rev() {
                if named == possible {
                    break;
                }
                let write = &writes[pos];
                if write.segment as usize != s || cut.is_some_and(|cut| write.acked_at > cut) {
                    continue;
                }
                taken[pos] = true;
                named += 1;
                // An update in flight at the cut, the one whose outcome may be unknown, is among
                // the latest: the doubt goes to those, named first here.
                let cause = if named <= possible - certain {
                    LossCause::FailoverOrStaleWrite
                } else {
                    LossCause::Failover
                };
                let mut listed = lost_update(journey, states, write, None);
                listed.cause = Some(cause);
                truth.lost_updates.push(listed);
            }
            listed_per_segment[s] += named;
            *lost -= possible;
        }
    }
    let lost_per_segment: Vec<u64> = lost_per_segment
        .iter()
        .zip(&listed_per_segment)
        .map(|(lost, listed)| lost + listed)
        .collect();

    let mut budget = ATTRIBUTION_BUDGET;
    let mut unattributed = Vec::new();
    for (pos, write) in writes.iter().enumerate() {
        let s = write.segment as usize;
        if taken[pos] || lost_per_segment.get(s).copied().unwrap_or(0) == 0 {
            continue;
        }
        let eraser = find_eraser(&writes, pos, &mut budget).and_then(|e| writes.get(e));
        match eraser {
            Some(e) if listed_per_segment[s] < lost_per_segment[s] => {
                listed_per_segment[s] += 1;
                truth
                    .lost_updates
                    .push(lost_update(journey, states, write, Some(e)));
            }
            Some(_) => {}
            None => unattributed.push(*write),
        }
    }
    // Losses the history could not pin on a writer are still listed, without an eraser: the
    // earliest acknowledged first, since the latest write of a segment is the likeliest survivor.
    for write in unattributed {
        let s = write.segment as usize;
        if listed_per_segment[s] < lost_per_segment[s] {
            listed_per_segment[s] += 1;
            truth
                .lost_updates
                .push(lost_update(journey, states, &write, None));
        }
    }
    // Past the listing limit, what a failover took stays listed before stale writes' losses:
    // those are the ones a reader of a failover run looks for.
    if truth.lost_updates.len() > lost_limit {
        truth.lost_updates.sort_by_key(|lost| lost.cause.is_none());
        truth.lost_updates.truncate(lost_limit);
    }
    truth.lost_updates.sort_by(|a, b| {
        (a.segment.as_str(), a.updater, a.round).cmp(&(b.segment.as_str(), b.updater, b.round))
    });
    truth
}

/// Which write erased `writes[lost]`, as an index into `writes`: the first one after it that
/// covers its segment, comes from another updater, and is based on a read made before it was
/// acknowledged. `writes` must be in the order Redis acknowledged them (the verdict sorts by
/// `acked_at`; the TUI keeps them as they arrive, which is close enough while a run goes on).
/// Each write looked at costs one unit of `budget`; once it is spent the search gives up and the
/// loss stays unattributed, so a huge run cannot stall on attribution.
pub fn find_eraser(writes: &[AckedWrite], lost: usize, budget: &mut usize) -> Option<usize> {
    let lost_write = writes.get(lost)?;
    for (i, w) in writes.iter().enumerate().skip(lost + 1) {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        if w.erases(lost_write) {
            return Some(i);
        }
    }
    None
}

fn lost_update(
    journey: &Journey,
    states: &[SegmentState],
    write: &AckedWrite,
    eraser: Option<&AckedWrite>,
) -> LostUpdate {
    let s = write.segment as usize;
    LostUpdate {
        segment: journey
            .segments
            .get(s)
            .map(|seg| seg.segment_id.clone())
            .unwrap_or_default(),
        updater: write.updater + 1,
        round: write.round + 1,
        expected: write.status.to_owned(),
        got: states
            .get(s)
            .map(|st| st.status.clone())
            .unwrap_or_default(),
        acknowledged_ms: ms(write.acked_at),
        read_ms: write.read_at.map(ms),
        erased_by: eraser.map(|e| e.updater + 1),
        erased_at_ms: eraser.map(|e| ms(e.acked_at)),
        eraser_read_ms: eraser.and_then(|e| e.read_at).map(ms),
        worker: None,
        erased_by_worker: None,
        cause: None,
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(updater: u32, segment: u32, at_ms: u64, read_ms: Option<u64>) -> Event {
        Event {
            at: Duration::from_millis(at_ms),
            updater,
            kind: EventKind::Acknowledged {
                round: 0,
                segment,
                status: "Departed",
                read_at: read_ms.map(Duration::from_millis),
                seen: None,
                written_count: None,
                latency: Duration::from_millis(1),
                scope: if read_ms.is_some() {
                    WriteScope::Journey
                } else {
                    WriteScope::Segment
                },
            },
        }
    }

    fn journey(segments: usize) -> Journey {
        Journey::seed_fixture().unwrap().with_segments(segments)
    }

    fn state(count: u64) -> SegmentState {
        SegmentState {
            status: "Scheduled".to_owned(),
            update_count: count,
        }
    }

    #[test]
    fn a_stale_write_is_named_as_the_eraser() {
        let mut tally = Tally::new(2);
        // #1 read at 1 ms and wrote at 10 ms; #2 read at 2 ms, before #1's write, and wrote at
        // 12 ms: its copy did not hold #1's update.
        tally.record(&ack(0, 0, 10, Some(1)));
        tally.record(&ack(1, 1, 12, Some(2)));
        let truth = verify(&tally, &journey(2), &[state(0), state(1)], 100);
        assert_eq!((truth.applied, truth.lost), (1, 1));
        let lost = &truth.lost_updates[0];
        assert_eq!((lost.updater, lost.erased_by), (1, Some(2)));
        assert_eq!(
            lost.seed_message(),
            "Segment SEG-001: expected 'Departed', got 'Scheduled'"
        );
    }

    #[test]
    fn every_counted_loss_is_listed_even_of_blind_writes() {
        // Blind writes (hash) have no read to go stale; a loss among them is still listed,
        // without an eraser.
        let mut tally = Tally::new(1);
        tally.record(&ack(0, 0, 5, None));
        tally.record(&ack(1, 0, 6, None));
        let truth = verify(&tally, &journey(1), &[state(1)], 100);
        assert_eq!(truth.lost, 1);
        assert_eq!(truth.lost_updates.len(), 1);
        assert_eq!(truth.lost_updates[0].erased_by, None);
    }

    #[test]
    fn unknown_updates_are_never_counted_lost_or_applied_beyond_the_count() {
        let mut tally = Tally::new(1);
        tally.record(&ack(0, 0, 5, Some(1)));
        tally.record(&Event {
            at: Duration::from_millis(6),
            updater: 1,
            kind: EventKind::Failed {
                round: 0,
                segment: 0,
                status: "Boarding",
                outcome: Outcome::Unknown,
                reason: "timeout".into(),
                gave_up: false,
            },
        });
        // The count shows two writes: the acknowledged one and the unknown one both landed.
        let truth = verify(&tally, &journey(1), &[state(2)], 100);
        assert_eq!((truth.applied, truth.lost, truth.foreign_writes), (2, 0, 0));
        // A count above anything racelab could have written is someone else's write.
        let truth = verify(&tally, &journey(1), &[state(3)], 100);
        assert_eq!(truth.foreign_writes, 1);
    }

    fn write(updater: u32, segment: u32, at_ms: u64, read_ms: Option<u64>) -> AckedWrite {
        AckedWrite::from_event(&ack(updater, segment, at_ms, read_ms))
            .unwrap_or_else(|| unreachable!("ack() makes an acknowledgement"))
    }

    #[test]
    fn the_eraser_is_the_first_later_write_based_on_an_older_read() {
        let writes = [
            write(0, 0, 10, Some(1)),
            // Its own later write never erases an updater's update.
            write(0, 0, 11, Some(2)),
            // Read after #1's write landed: holds #1's update.
            write(1, 1, 12, Some(10)),
            // Read before it: a stale copy of the whole journey.
            write(2, 2, 13, Some(3)),
            write(3, 3, 14, Some(4)),
        ];
        assert_eq!(find_eraser(&writes, 0, &mut 100), Some(3));
        // Nothing after the last write can erase it, and an index past the end finds nothing.
        assert_eq!(find_eraser(&writes, 4, &mut 10), None);
        assert_eq!(find_eraser(&writes, 9, &mut 10), None);
    }

    #[test]
    fn a_segment_write_erases_only_its_own_segment() {
        let mut writes = [write(0, 0, 10, Some(1)), write(1, 1, 12, Some(2))];
        writes[1].scope = WriteScope::Segment;
        assert_eq!(find_eraser(&writes, 0, &mut 10), None);
        writes[1].segment = 0;
        assert_eq!(find_eraser(&writes, 0, &mut 10), Some(1));
    }

    #[test]
    fn the_search_gives_up_when_its_budget_is_spent() {
        let writes = [
            write(0, 0, 10, Some(1)),
            write(1, 1, 11, None),
            write(2, 2, 12, Some(2)),
        ];
        // Two writes to look at, the eraser is the second: a budget of one stops short.
        let mut budget = 1;
        assert_eq!(find_eraser(&writes, 0, &mut budget), None);
        assert_eq!(budget, 0);
        let mut budget = 2;
        assert_eq!(find_eraser(&writes, 0, &mut budget), Some(2));
        assert_eq!(budget, 0);
    }

    #[test]
    fn the_listing_is_capped_but_the_count_is_exact() {
        let mut tally = Tally::new(1);
        for i in 0..10 {
            tally.record(&ack(i, 0, 10 + u64::from(i), Some(1)));
        }
        let truth = verify(&tally, &journey(1), &[state(1)], 3);
        assert_eq!(truth.lost, 9);
        assert_eq!(truth.lost_updates.len(), 3);
    }

    fn failover(promoted: Vec<u64>, old: Vec<u64>) -> crate::failover::FailoverRecord {
        crate::failover::FailoverRecord {
            promoted_at: Duration::from_millis(50),
            cut_at: Duration::from_millis(100),
            promoted: "new".to_owned(),
            demoted: "old".to_owned(),
            promoted_counts: Some(promoted),
            old_counts: Some(old),
        }
    }

    #[test]
    fn what_the_failover_dropped_is_lost_to_it_not_to_a_stale_write() {
        // Four writes to one segment, all read at 1 ms, all acknowledged: the replica had two
        // when promoted, the old primary four; the final state shows two. Two lost, both to the
        // failover, though each later write was based on a read older than the one before it.
        let mut tally = Tally::new(1);
        for i in 0..4 {
            tally.record(&ack(i, 0, 10 + 20 * u64::from(i), Some(1)));
        }
        let record = failover(vec![2], vec![4]);
        let truth = verify_with_failover(&tally, &journey(1), &[state(2)], 100, Some(Ok(&record)));
        assert_eq!((truth.lost, truth.lost_to_failover), (2, 2));
        assert_eq!(truth.lost_to_failover_or_stale, 0);
        for lost in &truth.lost_updates {
            assert_eq!(lost.cause, Some(LossCause::Failover));
            // Nobody's stale write is named for it.
            assert_eq!(lost.erased_by, None);
        }
        // Without the failover's record, the same history blames a stale write.
        let truth = verify(&tally, &journey(1), &[state(2)], 100);
        assert!(truth.lost_updates.iter().any(|l| l.erased_by.is_some()));
    }

    #[test]
    fn a_dropped_update_of_unknown_outcome_leaves_the_cause_open() {
        let mut tally = Tally::new(1);
        for i in 0..3 {
            tally.record(&ack(i, 0, 10 + u64::from(i), None));
        }
        tally.record(&Event {
            at: Duration::from_millis(99),
            updater: 3,
            kind: EventKind::Failed {
                round: 0,
                segment: 0,
                status: "Boarding",
                outcome: Outcome::Unknown,
                reason: "broken pipe".into(),
                gave_up: false,
            },
        });
        // The old primary held two more than the replica: the unknown one may be one of them.
        let record = failover(vec![1], vec![3]);
        let truth = verify_with_failover(&tally, &journey(1), &[state(1)], 100, Some(Ok(&record)));
        assert_eq!(truth.lost, 2);
        assert_eq!(
            (truth.lost_to_failover, truth.lost_to_failover_or_stale),
            (1, 1)
        );
        // A failover whose sides could not be read pins nothing on either cause.
        let unread = crate::failover::FailoverRecord {
            old_counts: None,
            ..record
        };
        let truth = verify_with_failover(&tally, &journey(1), &[state(1)], 100, Some(Ok(&unread)));
        assert_eq!(
            (truth.lost_to_failover, truth.lost_to_failover_or_stale),
            (0, 2)
        );
    }

    #[test]
    fn too_little_acknowledged_is_inconclusive() {
        let mut tally = Tally::new(1);
        let truth = Truth::default();
        // One update in all: nothing can be lost.
        assert!(inconclusive(&tally, &truth, 1, false).is_some());
        for i in 0..3 {
            tally.record(&ack(i, 0, 10 + u64::from(i), Some(1)));
        }
        // 3 of 20: fewer than half made, whatever the strategy.
        let why = inconclusive(&tally, &truth, 20, false).unwrap();
        assert!(why.contains("fewer than half"), "{why}");
        // 3 of 5: enough for a verdict of intact, not for a missing expected loss.
        assert!(inconclusive(&tally, &truth, 5, false).is_none());
        assert!(inconclusive(&tally, &truth, 5, true).is_some());
        assert!(inconclusive(&tally, &truth, 3, true).is_none());
    }
}
