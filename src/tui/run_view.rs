//! The run the main screen follows: its segments as Redis holds them set against what the
//! updaters were told, its lanes, its story, and who erased each lost update as the run goes
//! (by [`find_eraser`], the verdict's own rule). Events and observer reads are folded in
//! here; [`App`](super::app::App) routes them by generation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::lanes::{LaneSource, Phase, UpdaterView};
use super::story::{self, LostSegment, Story};
use super::theme::Look;
use crate::engine::RunResult;
use crate::event::{Event, EventKind, Outcome, WriteScope};
use crate::journey::SegmentState;
use crate::roster::WorkerShare;
use crate::strategy::Strategy;
use crate::truth::{AckedWrite, Tally, find_eraser, ms};
use crate::workload::Workload;

/// How many writes the eraser search may look at per loss ([`find_eraser`]'s budget), so a huge
/// run stays smooth.
const ERASER_SEARCH: usize = 100_000;

/// A segment as the grid shows it: Redis's view, set against what updaters were told.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub id: String,
    /// As Redis holds it now (the observer's last read, or the final read-back).
    pub status: String,
    pub count: u64,
    /// Acknowledgements received so far.
    pub acked: u64,
    /// Acknowledgements received before the observer's last read began: Redis must show them.
    confirmed: u64,
    /// Acknowledged updates the segment's count no longer holds.
    pub lost: u64,
    /// The updater (1-based) whose stale write erased the latest lost update.
    pub erased_by: Option<u32>,
    /// The latest acknowledged write to this segment, as an index into the run's writes.
    last_write: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running,
    Done,
    /// Cut short: interrupted, or an updater hit an error no retry mends.
    Stopped(String),
    Failed(String),
}

/// A run the main screen follows: the current one, or the last one.
pub struct RunView {
    pub generation: u64,
    pub strategy: Strategy,
    pub workload: Workload,
    pub state: RunState,
    pub started: Instant,
    pub finished: Option<Instant>,
    pub tally: Tally,
    pub segments: Vec<SegmentView>,
    pub updaters: Vec<UpdaterView>,
    pub story: VecDeque<Story>,
    /// The observer has read the journey at least once.
    pub observed: bool,
    /// Which worker runs which updaters, when a crew of workers runs them (`--workers`): the
    /// plan as the run starts, what the engine reports once it is over. Empty for a run in this
    /// process.
    pub workers: Vec<WorkerShare>,
    /// Write skew's invariant broke (`Some(true)`) or held, once the run is over; `None` in the
    /// lost-update scenario.
    pub invariant_broken: Option<bool>,
    /// The truth once the run is over.
    pub applied_final: Option<u64>,
    pub lost_final: Option<u64>,
    /// Acknowledgements not yet covered by an observer read: (received, segment).
    pending: VecDeque<(Instant, u32)>,
    /// Losses seen whose eraser's acknowledgement has not arrived yet: (segment, lost write).
    /// The observer can see a stale write land before its writer hears back from Redis.
    unattributed: Vec<(usize, usize)>,
    /// Every acknowledged write so far, as it arrived: what [`find_eraser`] searches.
    writes: Vec<AckedWrite>,
    /// The lane mark of each of `writes`: its updater's marks are numbered from 1 as they are
    /// made, and the lane keeps only the newest few.
    write_marks: Vec<u64>,
    /// Ties run time (event `at`) to the wall clock, from the first event received.
    anchor: Option<(Instant, Duration)>,
    latest_at: Duration,
    marks_made: Vec<u64>,
}

impl RunView {
    pub(super) fn new(
        generation: u64,
        strategy: Strategy,
        workload: Workload,
        now: Instant,
    ) -> RunView {
        let segments = workload
            .journey
            .segments
            .iter()
            .map(|s| SegmentView {
                id: s.segment_id.clone(),
                status: s.status.clone(),
                count: 0,
                acked: 0,
                confirmed: 0,
                lost: 0,
                erased_by: None,
                last_write: None,
            })
            .collect::<Vec<_>>();
        let updaters = workload.updaters as usize;
        RunView {
            generation,
            strategy,
            tally: Tally::new(segments.len()),
            segments,
            updaters: vec![UpdaterView::new(); updaters],
            story: VecDeque::new(),
            observed: false,
            workers: Vec::new(),
            invariant_broken: None,
            applied_final: None,
            lost_final: None,
            workload,
            state: RunState::Running,
            started: now,
            finished: None,
            pending: VecDeque::new(),
            unattributed: Vec::new(),
            writes: Vec::new(),
            write_marks: Vec::new(),
            anchor: None,
            latest_at: Duration::ZERO,
            marks_made: vec![0; updaters],
        }
    }

    pub fn running(&self) -> bool {
        self.state == RunState::Running
    }

    /// Wall time since Enter, until the run ended.
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.finished
            .unwrap_or(now)
            .saturating_duration_since(self.started)
    }

    /// Run time (the clock events are measured on) now: drives the growing think windows.
    pub fn clock(&self, now: Instant) -> Duration {
        match (self.running(), self.anchor) {
            (true, Some((received, at))) => {
                (at + now.saturating_duration_since(received)).max(self.latest_at)
            }
            _ => self.latest_at,
        }
    }

    pub fn look(&self, segment: usize, updating: &[bool]) -> Look {
        let Some(s) = self.segments.get(segment) else {
            return Look::Untouched;
        };
        if s.lost > 0 {
            Look::Lost
        } else if updating.get(segment).copied().unwrap_or(false) || s.acked > s.count {
            // Acknowledged but not yet seen in Redis by the observer: still on its way.
            Look::Updating
        } else if s.count > 0 {
            Look::Applied
        } else {
            Look::Untouched
        }
    }

    /// Which segments have an updater in the middle of an update.
    pub fn updating(&self) -> Vec<bool> {
        let mut updating = vec![false; self.segments.len()];
        if !self.running() || updating.is_empty() {
            return updating;
        }
        for (i, u) in self.updaters.iter().enumerate() {
            if u.phase.active() {
                updating[i % self.segments.len()] = true;
            }
        }
        updating
    }

    pub fn lost(&self) -> u64 {
        self.lost_final
            .unwrap_or_else(|| self.segments.iter().map(|s| s.lost).sum())
    }

    pub fn applied(&self) -> u64 {
        self.applied_final.unwrap_or_else(|| {
            self.segments
                .iter()
                .map(|s| s.count.min(s.acked))
                .sum::<u64>()
        })
    }

    pub fn updates_per_s(&self, now: Instant) -> f64 {
        let secs = self.clock(now).as_secs_f64();
        if secs > 0.0 {
            self.tally.acknowledged as f64 / secs
        } else {
            0.0
        }
    }

    /// The share of the worker updater `updater` (0-based) runs in, when workers run the run.
    /// What the lanes draw of this run.
    pub fn lanes(&self) -> LaneSource<'_> {
        LaneSource {
            updaters: &self.updaters,
            workload: &self.workload,
            workers: &self.workers,
        }
    }

    pub fn worker_of(&self, updater: u32) -> Option<&WorkerShare> {
        self.workers.iter().find(|s| s.runs(updater))
    }

    pub(super) fn on_planned(&mut self, shares: Vec<WorkerShare>) {
        // The story names a few; the lanes tag every updater with its worker.
        const NAMED: usize = 4;
        let mut named: Vec<String> = shares
            .iter()
            .take(NAMED)
            .map(|s| format!("{} {} (pid {} on {})", s.worker, s.range(), s.pid, s.host))
            .collect();
        if shares.len() > NAMED {
            named.push(format!("{} more", shares.len() - NAMED));
        }
        story::tell(&mut self.story, Story::Workers { shares: named });
        self.workers = shares;
    }

    fn segment_id(&self, segment: u32) -> String {
        self.segments
            .get(segment as usize)
            .map(|s| s.id.clone())
            .unwrap_or_default()
    }

    pub(super) fn on_event(&mut self, received: Instant, event: Event) {
        self.tally.record(&event);
        self.latest_at = self.latest_at.max(event.at);
        self.anchor.get_or_insert((received, event.at));
        let index = event.updater as usize;
        if index >= self.updaters.len() {
            return;
        }
        let at = event.at;
        let who = event.updater + 1;
        match event.kind {
            EventKind::Invoked { .. } => {
                let u = &mut self.updaters[index];
                // Until it says more, an update under way is thinking: strategies that write
                // without reading (hash) pause first, then write.
                u.phase = Phase::Thinking;
                u.told_lock_wait = false;
                u.current().began = Some(at);
            }
            EventKind::Reading { .. } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Reading;
            }
            EventKind::Read { .. } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Thinking;
                u.current().read = Some(at);
                let what = match self.strategy.scope() {
                    WriteScope::Journey => "the journey".to_owned(),
                    WriteScope::Segment => self.segment_id(self.workload.segment_of(event.updater)),
                };
                story::tell_read(&mut self.story, who, at, what);
            }
            EventKind::WaitingForLock { .. } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::WaitingForLock;
                // Once per update: a busy lock is polled again and again.
                if !std::mem::replace(&mut u.told_lock_wait, true) {
                    story::tell_lock_wait(&mut self.story, who, at);
                }
            }
            EventKind::Writing { .. } => self.updaters[index].phase = Phase::Writing,
            EventKind::Retry {
                attempt, reason, ..
            } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Retrying(attempt);
                // The next attempt reads again: this read is forgotten.
                if let Some(m) = u.marks.back_mut()
                    && m.write.is_none()
                {
                    m.read = None;
                }
                story::tell_retry(&mut self.story, who, attempt, reason, at);
            }
            EventKind::Acknowledged {
                round,
                segment,
                status,
                read_at,
                scope,
                ..
            } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Waiting;
                u.told_lock_wait = false;
                let mark = u.current();
                mark.write = Some(at);
                if mark.read.is_none() {
                    mark.read = read_at;
                }
                self.marks_made[index] += 1;
                if let Some(s) = self.segments.get_mut(segment as usize) {
                    s.acked += 1;
                    s.last_write = Some(self.writes.len());
                }
                self.writes.push(AckedWrite {
                    updater: event.updater,
                    round,
                    segment,
                    status,
                    read_at,
                    acked_at: at,
                    scope,
                });
                self.write_marks.push(self.marks_made[index]);
                self.pending.push_back((received, segment));
                let segment = self.segment_id(segment);
                story::tell(
                    &mut self.story,
                    Story::Wrote {
                        updater: who,
                        segment,
                        status,
                        at,
                    },
                );
            }
            EventKind::Failed {
                segment,
                outcome,
                reason,
                ..
            } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Failed;
                u.told_lock_wait = false;
                if let Some(m) = u.marks.back_mut()
                    && m.write.is_none()
                {
                    u.marks.pop_back();
                }
                let segment = self.segment_id(segment);
                story::tell_failure(
                    &mut self.story,
                    who,
                    segment,
                    outcome == Outcome::Unknown,
                    &reason,
                    at,
                );
            }
            EventKind::Declined { .. } => {
                // Write skew: another segment was Boarding when it read, so it wrote nothing.
                let u = &mut self.updaters[index];
                u.phase = Phase::Declined;
                u.told_lock_wait = false;
                if let Some(m) = u.marks.back_mut()
                    && m.write.is_none()
                {
                    u.marks.pop_back();
                }
            }
            EventKind::Done => {
                let u = &mut self.updaters[index];
                if !matches!(u.phase, Phase::Failed | Phase::Declined) {
                    u.phase = Phase::Done;
                }
            }
            // Kinds added later (a history's bookkeeping) change nothing on screen until the
            // screen learns them; the counts above come from the tally either way.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// acknowledgements received before this read began has lost updates: Redis confirmed them,
    /// then a later write took them away.
    pub(super) fn on_observed(&mut self, read_started: Instant, states: Vec<SegmentState>) {
        self.observed = true;
        while let Some(&(received, segment)) = self.pending.front() {
            if received > read_started {
                break;
            }
            self.pending.pop_front();
            if let Some(s) = self.segments.get_mut(segment as usize) {
                s.confirmed += 1;
            }
        }
        let mut newly_lost: Vec<(usize, usize)> = Vec::new();
        let by_status = self.strategy.is_user();
        for (i, state) in states.into_iter().enumerate() {
            let Some(s) = self.segments.get_mut(i) else {
                break;
            };
            s.count = if by_status {
                // A user's code keeps no count racelab can trust (README "Race your own
                // service"): the latest acknowledged update must show by its status, and is
                // taken as lost when it does not; earlier ones may have been overwritten
                // legitimately.
                let latest_shows = s
                    .last_write
                    .and_then(|w| self.writes.get(w))
                    .is_none_or(|w| w.status == state.status);
                if latest_shows {
                    s.confirmed
                } else {
                    s.confirmed.saturating_sub(1)
                }
            } else {
                state.update_count
            };
            s.status = state.status;
            let lost = s.confirmed.saturating_sub(s.count);
            if lost > s.lost
                && let Some(w) = s.last_write
            {
                newly_lost.push((i, w));
            }
            if lost == 0 {
                s.erased_by = None;
            }
            s.lost = lost;
        }
        for &(segment, w) in &newly_lost {
            self.flag_mark(w, true);
            self.unattributed.push((segment, w));
        }
        self.attribute();
    }

    /// Tells the losses whose eraser is known by now, one story line per stale write: a naive
    /// write can put many segments back at once.
    fn attribute(&mut self) {
        let mut groups: Vec<(usize, Vec<LostSegment>)> = Vec::new();
        let waiting = std::mem::take(&mut self.unattributed);
        for (segment, w) in waiting {
            if self.segments[segment].lost == 0 {
                continue;
            }
            let mut budget = ERASER_SEARCH;
            let Some(eraser) = find_eraser(&self.writes, w, &mut budget) else {
                self.unattributed.push((segment, w));
                continue;
            };
            let write = self.writes[w];
            self.flag_mark(eraser, false);
            let s = &mut self.segments[segment];
            s.erased_by = Some(self.writes[eraser].updater + 1);
            let entry = (s.id.clone(), s.status.clone(), write.updater + 1);
            match groups.iter_mut().find(|(e, _)| *e == eraser) {
                Some((_, list)) => list.push(entry),
                None => groups.push((eraser, vec![entry])),
            }
        }
        for (eraser, segments) in groups {
            let eraser = self.writes[eraser];
            story::tell(
                &mut self.story,
                Story::Lost {
                    eraser: Some(eraser.updater + 1),
                    eraser_at: Some(eraser.acked_at),
                    eraser_read: eraser.read_at,
                    segments,
                    by_time: self.strategy.is_user(),
                },
            );
        }
    }

    /// Flags the mark of `writes[w]` on its lane: lost, or a stale write that erased another.
    fn flag_mark(&mut self, w: usize, flag_lost: bool) {
        let (Some(write), Some(&number)) = (self.writes.get(w), self.write_marks.get(w)) else {
            return;
        };
        let updater = write.updater as usize;
        let made = self.marks_made.get(updater).copied().unwrap_or(0);
        let Some(u) = self.updaters.get_mut(updater) else {
            return;
        };
        // Marks are numbered from 1 as they are made; the lane keeps the newest few.
        let finished = u.marks.iter().filter(|m| m.write.is_some()).count() as u64;
        let back = made.saturating_sub(number);
        if back >= finished {
            return;
        }
        let pos = (finished - 1 - back) as usize;
        if let Some(mark) = u.marks.iter_mut().filter(|m| m.write.is_some()).nth(pos) {
            if flag_lost {
                mark.lost = true;
            } else {
                mark.erased = true;
            }
        }
    }

    pub(super) fn on_finished(&mut self, result: Result<RunResult, String>, now: Instant) {
        self.finished = Some(now);
        for u in &mut self.updaters {
            if u.phase.active() || u.phase == Phase::Waiting {
                u.phase = Phase::Done;
            }
        }
        let result = match result {
            Ok(result) => result,
            Err(reason) => {
                self.state = RunState::Failed(reason);
                return;
            }
        };
        // What the engine reports is what happened; the plan was what was meant to.
        if !result.workers.is_empty() {
            self.workers = result.workers;
        }
        let vanished: Vec<Story> = self
            .workers
            .iter()
            .filter_map(|s| {
                s.vanished.as_ref().map(|why| Story::WorkerVanished {
                    worker: s.worker.clone(),
                    how: if s.left { "left" } else { "vanished" },
                    updaters: format!("{} (pid {} on {})", s.range(), s.pid, s.host),
                    why: why.clone(),
                })
            })
            .collect();
        for line in vanished {
            story::tell(&mut self.story, line);
        }
        if let Some(reason) = result.unverified {
            // Without the final state nothing can be said about applied or lost updates: the
            // grid keeps the observer's last view and the header says why there is no verdict.
            self.state = RunState::Failed(format!("no verdict: {reason}"));
            return;
        }
        for (s, state) in self.segments.iter_mut().zip(&result.states) {
            s.status = state.status.clone();
            s.count = state.update_count;
            s.lost = s.acked.saturating_sub(s.count);
            if s.lost == 0 {
                s.erased_by = None;
            }
        }
        // Every acknowledgement is in now: losses seen before their eraser's can be told.
        self.attribute();
        for lost in &result.truth.lost_updates {
            if let Some(s) = self.segments.iter_mut().find(|s| s.id == lost.segment) {
                if lost.erased_by.is_some() {
                    s.erased_by = lost.erased_by;
                } else if lost.cause.is_some() {
                    // A failover took it: the live guess of a stale writer is withdrawn.
                    s.erased_by = None;
                }
            }
            // The observer reads every 50 ms: two writes between reads look alike to it. The
            // final state says which were lost, so their lanes say it too.
            let updater = lost.updater.saturating_sub(1);
            if let Some(w) = self.writes.iter().position(|w| {
                w.updater == updater && (ms(w.acked_at) - lost.acknowledged_ms).abs() < 0.001
            }) {
                self.flag_mark(w, true);
            }
        }
        self.applied_final = Some(result.truth.applied);
        self.lost_final = Some(result.truth.lost);
        let total = self.tally.acknowledged;
        let inconclusive = crate::truth::inconclusive(
            &self.tally,
            &result.truth,
            self.workload.total_updates(),
            self.strategy.loses_updates(&self.workload.shape()) == Some(true),
        );
        let text = match (&result.stopped, result.truth.lost) {
            (Some(reason), _) => format!("{}: stopped early ({reason})", self.strategy),
            (None, _) if inconclusive.is_some() => format!(
                "{}: inconclusive: {}",
                self.strategy,
                inconclusive.as_deref().unwrap_or_default()
            ),
            (None, 0) => format!(
                "{}: all {total} acknowledged updates applied, none lost",
                self.strategy
            ),
            (None, lost)
                if lost
                    == result.truth.lost_to_failover + result.truth.lost_to_failover_or_stale =>
            {
                format!(
                    "{}: {lost} of {total} acknowledged updates lost to failover: the replica promoted in the primary's place never got them (--wait-replicas keeps them)",
                    self.strategy
                )
            }
            (None, lost) => format!(
                "{}: {lost} of {total} acknowledged updates lost; Redis said OK to each of them",
                self.strategy
            ),
        };
        if let Some(Err(why)) = &result.failover {
            story::tell(
                &mut self.story,
                Story::SeedMessage {
                    text: format!("the failover was not made: {why}"),
                },
            );
        }
        const SEED_MESSAGES: usize = 3;
        for lost in result.truth.lost_updates.iter().take(SEED_MESSAGES) {
            let by = match lost.erased_by {
                Some(by) => format!(" (#{}'s update, erased by #{by})", lost.updater),
                None => format!(" (#{}'s update)", lost.updater),
            };
            story::tell(
                &mut self.story,
                Story::SeedMessage {
                    text: format!("{}{by}", lost.seed_message()),
                },
            );
        }
        let listed = SEED_MESSAGES.min(result.truth.lost_updates.len()) as u64;
        if result.truth.lost > listed {
            story::tell(
                &mut self.story,
                Story::SeedMessage {
                    text: format!("… and {} more", result.truth.lost - listed),
                },
            );
        }
        self.invariant_broken = result.invariant.as_ref().map(|i| !i.holds);
        // Write skew is judged by its invariant (README "Scenarios").
        let (text, bad) = match (&result.invariant, &result.stopped, &inconclusive) {
            (Some(invariant), None, None) => match &invariant.explanation {
                Some(explanation) => (format!("{}: {explanation}", self.strategy), true),
                None => (
                    format!(
                        "{}: the invariant held: {} Boarding, {} declined",
                        self.strategy,
                        invariant
                            .boarding
                            .first()
                            .map_or("no segment", String::as_str),
                        crate::output::counted(self.tally.declined, "update")
                    ),
                    result.truth.lost > 0,
                ),
            },
            _ => (text, result.truth.lost > 0),
        };
        // The verdict goes last: the story shows its newest lines, and this is the one to read.
        story::tell(&mut self.story, Story::Verdict { text, lost: bad });
        self.state = match result.stopped {
            Some(reason) => RunState::Stopped(reason),
            None => RunState::Done,
        };
    }
}
