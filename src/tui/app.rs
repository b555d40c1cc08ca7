//! The TUI's state and the one function that changes it.
//!
//! Everything the screen shows lives in [`App`]; input, engine events, observer snapshots and the
//! clock arrive as [`Msg`]s, and [`App::update`] folds them in and answers with the [`Command`]s the
//! runtime should carry out (start a run, start a comparison). Nothing here does I/O or reads a
//! clock: time comes in with every message, so tests replay a run exactly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::crew::WorkerShare;
use crate::engine::{RunResult, Workload};
use crate::event::{Event, EventKind, Outcome, RetryReason, WriteScope};
use crate::journey::SegmentState;
use crate::strategy::Strategy;
use crate::truth::{AckedWrite, Tally, find_eraser, ms};

/// How much longer than `think` an updater may pause, at random: enough spread that the writes of
/// a seed run land one by one over a couple of seconds, so people can follow each of them.
pub const TUI_JITTER: f64 = 2.0;

/// Story lines kept; older ones scroll away for good.
const STORY_KEPT: usize = 400;
/// Read/write windows kept per updater for its lane; older rounds fall off the time axis anyway.
const MARKS_KEPT: usize = 32;
/// Reads this close together are told as one line, so a thousand updaters don't flood the story.
const READ_GROUP_WINDOW: Duration = Duration::from_millis(25);
/// How long a notice (a refused key, a finished comparison) stays in the footer.
const NOTICE_FOR: Duration = Duration::from_secs(4);
/// How many writes the eraser search may look at per loss ([`find_eraser`]'s budget), so a huge
/// run stays smooth.
const ERASER_SEARCH: usize = 100_000;

/// Think times `t` and `T` step through: from no pause to pauses a room can follow.
const THINK_STEPS_MS: &[u64] = &[0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 600, 1000, 2000, 5000];
/// Updater counts `+` and `-` step through.
const UPDATER_STEPS: &[u32] = &[1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];

/// The Redis the TUI runs against, as the header shows it.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// The URL with its password hidden.
    pub display: String,
    pub version: String,
    pub private: bool,
    /// Set on a Redis Cluster: the journey's slot and the primary that owns it.
    pub cluster: Option<crate::target::ClusterPlace>,
}

pub enum Msg {
    Key(KeyEvent),
    /// The terminal changed size; the next frame redraws.
    Resize,
    /// Time passes; the screen shows elapsed time and growing think windows.
    Tick,
    /// An updater's event, stamped with when the TUI received it.
    Event {
        generation: u64,
        received: Instant,
        event: Event,
    },
    /// The journey as the observer read it from Redis; its read began at `read_started`.
    Observed {
        generation: u64,
        read_started: Instant,
        states: Vec<SegmentState>,
    },
    /// The single run's updaters are about to start in the crew's workers, shared like this
    /// (`Crew::plan`). Comes before any event of the run; never sent for a run in this process.
    WorkersPlanned {
        generation: u64,
        shares: Vec<WorkerShare>,
    },
    /// The single run ended. Every event of it arrived before this.
    RunFinished {
        generation: u64,
        result: Result<RunResult, String>,
    },
    /// The comparison moves on to `strategy`.
    CompareStarted {
        generation: u64,
        strategy: Strategy,
    },
    CompareFinished {
        generation: u64,
        strategy: Strategy,
        result: Result<RunResult, String>,
    },
    /// The comparison ran every strategy (or was stopped).
    CompareDone {
        generation: u64,
    },
}

/// What the runtime should do after an update.
#[derive(Debug, Clone)]
pub enum Command {
    Run {
        generation: u64,
        strategy: Strategy,
        workload: Workload,
    },
    Compare {
        generation: u64,
        strategies: Vec<Strategy>,
        workload: Workload,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Main,
    Compare,
}

/// An updater's phase now, as its lane shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Reading,
    Thinking,
    Writing,
    WaitingForLock,
    Retrying(u32),
    Done,
    Failed,
}

impl Phase {
    /// Whether the updater is in the middle of an update: its segment is being updated.
    pub fn active(self) -> bool {
        matches!(
            self,
            Phase::Reading
                | Phase::Thinking
                | Phase::Writing
                | Phase::WaitingForLock
                | Phase::Retrying(_)
        )
    }

    pub fn word(self) -> String {
        match self {
            Phase::Waiting => "waiting".into(),
            Phase::Reading => "reading".into(),
            Phase::Thinking => "thinking".into(),
            Phase::Writing => "writing".into(),
            Phase::WaitingForLock => "waiting for lock".into(),
            Phase::Retrying(n) => format!("retrying {n}"),
            Phase::Done => "done".into(),
            Phase::Failed => "failed".into(),
        }
    }

    /// The same in at most 10 columns, for narrow lanes.
    pub fn short_word(self) -> String {
        match self {
            Phase::WaitingForLock => "lock wait".into(),
            Phase::Retrying(n) => format!("retry {n}"),
            other => other.word(),
        }
    }
}

/// One update's read and write on the time axis of its updater's lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// When the update began; the think window of a strategy that writes without reading
    /// starts here.
    pub began: Option<Duration>,
    pub read: Option<Duration>,
    pub write: Option<Duration>,
    /// Redis shows this update gone.
    pub lost: bool,
    /// This write put a stale copy back and erased someone else's update.
    pub erased: bool,
}

#[derive(Debug, Clone)]
pub struct UpdaterView {
    pub phase: Phase,
    /// Oldest first; the last one may be in progress.
    pub marks: VecDeque<Mark>,
    reading_since: Option<Duration>,
    /// This update's wait for the lock is already in the story.
    told_lock_wait: bool,
}

impl UpdaterView {
    fn new() -> UpdaterView {
        UpdaterView {
            phase: Phase::Waiting,
            marks: VecDeque::new(),
            reading_since: None,
            told_lock_wait: false,
        }
    }

    /// The mark of the update in progress, opened when missing.
    fn current(&mut self) -> &mut Mark {
        let open = self.marks.back().is_some_and(|m| m.write.is_none());
        if !open {
            if self.marks.len() >= MARKS_KEPT {
                self.marks.pop_front();
            }
            self.marks.push_back(Mark {
                began: None,
                read: None,
                write: None,
                lost: false,
                erased: false,
            });
        }
        // Just pushed or checked above: never empty here.
        let last = self.marks.len() - 1;
        &mut self.marks[last]
    }
}

/// How a segment looks in the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Untouched,
    Updating,
    Applied,
    Lost,
}

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

/// A segment a stale write put back: (segment, its status now, the updater whose update is gone).
pub type LostSegment = (String, String, u32);

/// One line of the story, kept structured and worded when drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Story {
    /// `first` and `count - 1` others read between `from` and `to`.
    Read {
        first: u32,
        count: u32,
        from: Duration,
        to: Duration,
        what: String,
    },
    Wrote {
        updater: u32,
        segment: String,
        status: &'static str,
        at: Duration,
    },
    /// `first` and `count - 1` others start waiting for the lock.
    WaitsForLock {
        first: u32,
        count: u32,
        at: Duration,
    },
    /// `times` retries for `reason` in a row, the latest by `updater` at `at`.
    Retries {
        updater: u32,
        attempt: u32,
        reason: RetryReason,
        at: Duration,
        times: u32,
    },
    /// `updater`'s update of `segment` failed, and `others` more failed the same way at about
    /// the same time (a worker that vanished, an interrupt: every updater in flight at once).
    Failed {
        updater: u32,
        segment: String,
        others: u32,
        unknown: bool,
        reason: String,
        at: Duration,
    },
    /// Redis shows updates gone: `eraser`'s stale copy put these segments back.
    Lost {
        eraser: Option<u32>,
        eraser_at: Option<Duration>,
        eraser_read: Option<Duration>,
        segments: Vec<LostSegment>,
    },
    /// Which worker runs which updaters, as the run starts: `w1 #1–#10 (pid 4242 on build-7)`.
    Workers { shares: Vec<String> },
    /// A worker went away during the run (`how`: it vanished, or left): what its updaters had
    /// not reported is unknown.
    WorkerVanished {
        worker: String,
        how: &'static str,
        updaters: String,
        why: String,
    },
    /// The run's verdict, in one sentence.
    Verdict { text: String, lost: bool },
    /// The seed test's message for one lost update, with who erased it.
    SeedMessage { text: String },
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
    fn new(generation: u64, strategy: Strategy, workload: Workload, now: Instant) -> RunView {
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
    pub fn worker_of(&self, updater: u32) -> Option<&WorkerShare> {
        self.workers.iter().find(|s| s.runs(updater))
    }

    fn on_planned(&mut self, shares: Vec<WorkerShare>) {
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
        self.tell(Story::Workers { shares: named });
        self.workers = shares;
    }

    fn tell(&mut self, line: Story) {
        if self.story.len() >= STORY_KEPT {
            self.story.pop_front();
        }
        self.story.push_back(line);
    }

    fn segment_id(&self, segment: u32) -> String {
        self.segments
            .get(segment as usize)
            .map(|s| s.id.clone())
            .unwrap_or_default()
    }

    fn on_event(&mut self, received: Instant, event: Event) {
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
                u.reading_since = Some(at);
            }
            EventKind::Read { .. } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::Thinking;
                u.reading_since = None;
                u.current().read = Some(at);
                let what = match self.strategy.scope() {
                    WriteScope::Journey => "the journey".to_owned(),
                    WriteScope::Segment => self.segment_id(self.workload.segment_of(event.updater)),
                };
                self.tell_read(who, at, what);
            }
            EventKind::WaitingForLock { .. } => {
                let u = &mut self.updaters[index];
                u.phase = Phase::WaitingForLock;
                // Once per update: a busy lock is polled again and again.
                if !std::mem::replace(&mut u.told_lock_wait, true) {
                    self.tell_lock_wait(who, at);
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
                self.tell_retry(who, attempt, reason, at);
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
                self.tell(Story::Wrote {
                    updater: who,
                    segment,
                    status,
                    at,
                });
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
                self.tell_failure(who, segment, outcome == Outcome::Unknown, &reason, at);
            }
            EventKind::Done => {
                let u = &mut self.updaters[index];
                if u.phase != Phase::Failed {
                    u.phase = Phase::Done;
                }
            }
            // Kinds added later (a history's bookkeeping) change nothing on screen until the
            // screen learns them; the counts above come from the tally either way.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Retries in a row are one line: a contended lock or journey makes hundreds.
    fn tell_retry(&mut self, who: u32, attempt: u32, reason: RetryReason, at: Duration) {
        if let Some(Story::Retries {
            updater,
            attempt: last_attempt,
            reason: last_reason,
            at: last_at,
            times,
        }) = self.story.back_mut()
            && *last_reason == reason
        {
            *updater = who;
            *last_attempt = attempt;
            *last_at = at;
            *times += 1;
            return;
        }
        self.tell(Story::Retries {
            updater: who,
            attempt,
            reason,
            at,
            times: 1,
        });
    }

    /// Failures for the same reason together are one line: a worker that vanishes takes all its
    /// updaters' updates with it.
    fn tell_failure(
        &mut self,
        who: u32,
        segment: String,
        unknown: bool,
        reason: &str,
        at: Duration,
    ) {
        if let Some(Story::Failed {
            others,
            unknown: last_unknown,
            reason: last_reason,
            at: from,
            ..
        }) = self.story.back_mut()
            && *last_unknown == unknown
            && last_reason == reason
            && at.saturating_sub(*from) <= READ_GROUP_WINDOW
        {
            *others += 1;
            return;
        }
        self.tell(Story::Failed {
            updater: who,
            segment,
            others: 0,
            unknown,
            reason: reason.to_owned(),
            at,
        });
    }

    fn tell_lock_wait(&mut self, who: u32, at: Duration) {
        if let Some(Story::WaitsForLock {
            count, at: from, ..
        }) = self.story.back_mut()
            && at.saturating_sub(*from) <= READ_GROUP_WINDOW
        {
            *count += 1;
            return;
        }
        self.tell(Story::WaitsForLock {
            first: who,
            count: 1,
            at,
        });
    }

    fn tell_read(&mut self, who: u32, at: Duration, what: String) {
        if let Some(Story::Read {
            count,
            from,
            to,
            what: group,
            ..
        }) = self.story.back_mut()
            && *group == what
            && at.saturating_sub(*from) <= READ_GROUP_WINDOW
        {
            *count += 1;
            *to = (*to).max(at);
            return;
        }
        self.tell(Story::Read {
            first: who,
            count: 1,
            from: at,
            to: at,
            what,
        });
    }

    /// Sets Redis's view against what updaters were told. A segment whose count is below the
    /// acknowledgements received before this read began has lost updates: Redis confirmed them,
    /// then a later write took them away.
    fn on_observed(&mut self, read_started: Instant, states: Vec<SegmentState>) {
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
        for (i, state) in states.into_iter().enumerate() {
            let Some(s) = self.segments.get_mut(i) else {
                break;
            };
            s.status = state.status;
            s.count = state.update_count;
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
            self.tell(Story::Lost {
                eraser: Some(eraser.updater + 1),
                eraser_at: Some(eraser.acked_at),
                eraser_read: eraser.read_at,
                segments,
            });
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

    fn on_finished(&mut self, result: Result<RunResult, String>, now: Instant) {
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
            self.tell(line);
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
            if let Some(s) = self.segments.iter_mut().find(|s| s.id == lost.segment)
                && lost.erased_by.is_some()
            {
                s.erased_by = lost.erased_by;
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
            (None, lost) => format!(
                "{}: {lost} of {total} acknowledged updates lost; Redis said OK to each of them",
                self.strategy
            ),
        };
        const SEED_MESSAGES: usize = 3;
        for lost in result.truth.lost_updates.iter().take(SEED_MESSAGES) {
            let by = match lost.erased_by {
                Some(by) => format!(" (#{}'s update, erased by #{by})", lost.updater),
                None => format!(" (#{}'s update)", lost.updater),
            };
            self.tell(Story::SeedMessage {
                text: format!("{}{by}", lost.seed_message()),
            });
        }
        let listed = SEED_MESSAGES.min(result.truth.lost_updates.len()) as u64;
        if result.truth.lost > listed {
            self.tell(Story::SeedMessage {
                text: format!("… and {} more", result.truth.lost - listed),
            });
        }
        // The verdict goes last: the story shows its newest lines, and this is the one to read.
        self.tell(Story::Verdict {
            text,
            lost: result.truth.lost > 0,
        });
        self.state = match result.stopped {
            Some(reason) => RunState::Stopped(reason),
            None => RunState::Done,
        };
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    Waiting,
    Running,
    Done,
    Stopped(String),
    Failed(String),
}

/// One strategy's line of the comparison.
pub struct CompareRow {
    pub strategy: Strategy,
    pub state: RowState,
    pub tally: Tally,
    pub applied: u64,
    pub lost: u64,
    pub duration: Duration,
    /// Wall time it started, for the live throughput of the running row.
    started: Option<Instant>,
}

impl CompareRow {
    pub fn updates_per_s(&self, now: Instant) -> f64 {
        let secs = match self.state {
            RowState::Running => self
                .started
                .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64()),
            _ => self.duration.as_secs_f64(),
        };
        if secs > 0.0 {
            self.tally.acknowledged as f64 / secs
        } else {
            0.0
        }
    }
}

pub struct CompareView {
    pub generation: u64,
    pub workload: Workload,
    pub rows: Vec<CompareRow>,
    pub running: bool,
    pub started: Instant,
    pub finished: Option<Instant>,
}

impl CompareView {
    fn row(&mut self, strategy: Strategy) -> Option<&mut CompareRow> {
        self.rows.iter_mut().find(|r| r.strategy == strategy)
    }

    fn running_row(&mut self) -> Option<&mut CompareRow> {
        self.rows.iter_mut().find(|r| r.state == RowState::Running)
    }
}

pub struct App {
    /// What the next run uses: strategy, updaters, think time and the rest of the workload.
    pub strategy: Strategy,
    pub workload: Workload,
    /// `--seed` given: every run repeats it. Otherwise each run gets a fresh one.
    pub fixed_seed: bool,
    pub target: TargetInfo,
    /// Colours on (off with `NO_COLOR`); symbols carry the meaning either way.
    pub color: bool,
    /// How many workers (`--workers`) the next run's updaters run in; `None` when they run in
    /// this process. Workers that vanish are not counted: the next run goes to the others.
    pub workers: Option<u32>,
    pub screen: Screen,
    pub help: bool,
    pub run: Option<RunView>,
    pub compare: Option<CompareView>,
    /// First updater shown in the lanes.
    pub lane_scroll: usize,
    pub notice: Option<(String, Instant)>,
    pub now: Instant,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// The memory a run may plan to use ([`crate::budget`]); `None`: no limit known.
    pub memory_limit: Option<u64>,
    next_generation: u64,
    quit: bool,
}

impl App {
    pub fn new(
        strategy: Strategy,
        workload: Workload,
        fixed_seed: bool,
        target: TargetInfo,
        color: bool,
        now: Instant,
    ) -> App {
        App {
            strategy,
            workload,
            fixed_seed,
            target,
            color,
            workers: None,
            screen: Screen::Main,
            help: false,
            run: None,
            compare: None,
            lane_scroll: 0,
            notice: None,
            now,
            dirty: true,
            memory_limit: None,
            next_generation: 1,
            quit: false,
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// A run or a comparison is going on.
    pub fn busy(&self) -> bool {
        self.run.as_ref().is_some_and(RunView::running)
            || self.compare.as_ref().is_some_and(|c| c.running)
    }

    /// The generation of the run or comparison going on, whose messages are still wanted.
    pub fn current_generation(&self) -> Option<u64> {
        if let Some(run) = self.run.as_ref().filter(|r| r.running()) {
            return Some(run.generation);
        }
        self.compare
            .as_ref()
            .filter(|c| c.running)
            .map(|c| c.generation)
    }

    pub fn notice_text(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| self.now.saturating_duration_since(*at) < NOTICE_FOR)
            .map(|(text, _)| text.as_str())
    }

    /// The TUI is quitting while a run goes on: say why the screen lingers a moment.
    pub fn stopping(&mut self) {
        self.say("stopping the run and deleting its keys…");
        self.dirty = true;
    }

    /// The workers a run ended with: those that vanished take no part in the next runs, and
    /// the crew may have replaced earlier ones (a comparison's later strategies, say).
    fn count_live_workers(&mut self, shares: &[WorkerShare]) {
        if shares.is_empty() {
            return;
        }
        let live = shares.iter().filter(|s| s.vanished.is_none()).count() as u32;
        if let Some(workers) = self.workers.as_mut() {
            *workers = live;
        }
    }

    fn say(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), self.now));
    }

    pub fn update(&mut self, msg: Msg, now: Instant) -> Vec<Command> {
        self.now = self.now.max(now);
        // The clock alone changes nothing on an idle screen; the runtime redraws busy ones.
        if !matches!(msg, Msg::Tick) {
            self.dirty = true;
        }
        match msg {
            Msg::Key(key) => return self.on_key(key),
            Msg::Resize | Msg::Tick => {}
            Msg::Event {
                generation,
                received,
                event,
            } => {
                if let Some(run) = self.run.as_mut().filter(|r| r.generation == generation) {
                    run.on_event(received, event);
                } else if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation)
                    && let Some(row) = c.running_row()
                {
                    row.tally.record(&event);
                }
            }
            Msg::Observed {
                generation,
                read_started,
                states,
            } => {
                if let Some(run) = self
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation && r.running())
                {
                    run.on_observed(read_started, states);
                }
            }
            Msg::WorkersPlanned { generation, shares } => {
                if let Some(run) = self
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation && r.running())
                {
                    // Vanished workers may have been replaced from the lobby since the last run.
                    if self.workers.is_some() {
                        self.workers = Some(shares.len() as u32);
                    }
                    run.on_planned(shares);
                }
            }
            Msg::RunFinished { generation, result } => {
                if let Ok(result) = &result {
                    self.count_live_workers(&result.workers);
                }
                if let Some(run) = self.run.as_mut().filter(|r| r.generation == generation) {
                    run.on_finished(result, self.now);
                }
            }
            Msg::CompareStarted {
                generation,
                strategy,
            } => {
                let now = self.now;
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation)
                    && let Some(row) = c.row(strategy)
                {
                    row.state = RowState::Running;
                    row.started = Some(now);
                }
            }
            Msg::CompareFinished {
                generation,
                strategy,
                result,
            } => {
                if let Ok(result) = &result {
                    self.count_live_workers(&result.workers);
                }
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation)
                    && let Some(row) = c.row(strategy)
                {
                    match result {
                        Ok(result) if result.unverified.is_some() => {
                            let reason = result.unverified.unwrap_or_default();
                            row.tally = result.tally;
                            row.state = RowState::Failed(format!("no verdict: {reason}"));
                        }
                        Ok(result) => {
                            row.applied = result.truth.applied;
                            row.lost = result.truth.lost;
                            row.duration = result.tally.last_at;
                            row.state = match result.stopped {
                                Some(reason) => RowState::Stopped(reason),
                                None => RowState::Done,
                            };
                            row.tally = result.tally;
                        }
                        Err(reason) => row.state = RowState::Failed(reason),
                    }
                }
            }
            Msg::CompareDone { generation } => {
                if let Some(c) = self.compare.as_mut().filter(|c| c.generation == generation) {
                    c.running = false;
                    c.finished = Some(self.now);
                    for row in &mut c.rows {
                        if matches!(row.state, RowState::Waiting | RowState::Running) {
                            row.state = RowState::Stopped("not run".into());
                        }
                    }
                }
            }
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('q') => self.quit = true,
            // Esc closes the help first: that is what an overlay's Esc does everywhere.
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = !self.help,
            _ if self.help => self.help = false,
            KeyCode::Enter | KeyCode::Char('r') => return self.start_run(),
            KeyCode::Char('c') => return self.toggle_compare(),
            KeyCode::Char('s') | KeyCode::Tab => self.change(|app| {
                app.strategy = next_strategy(app.strategy, 1);
            }),
            KeyCode::BackTab | KeyCode::Char('S') => self.change(|app| {
                app.strategy = next_strategy(app.strategy, -1);
            }),
            KeyCode::Char('+') | KeyCode::Char('=') => self.change(|app| {
                app.workload.updaters = step(UPDATER_STEPS, app.workload.updaters, true);
            }),
            KeyCode::Char('-') | KeyCode::Char('_') => self.change(|app| {
                app.workload.updaters = step(UPDATER_STEPS, app.workload.updaters, false);
            }),
            KeyCode::Char('t') => self.change(|app| {
                app.workload.think = step_think(app.workload.think, true);
            }),
            KeyCode::Char('T') => self.change(|app| {
                app.workload.think = step_think(app.workload.think, false);
            }),
            KeyCode::Up | KeyCode::Char('k') => self.scroll(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(1),
            KeyCode::PageUp => self.scroll(-20),
            KeyCode::PageDown => self.scroll(20),
            KeyCode::Home => self.lane_scroll = 0,
            KeyCode::End => self.scroll(i64::from(u32::MAX)),
            _ => {}
        }
        Vec::new()
    }

    /// Settings change between runs: a running one keeps the settings it started with, and the
    /// header always shows what is running, so a change now would only confuse.
    fn change(&mut self, f: impl FnOnce(&mut App)) {
        if self.busy() {
            self.say("settings change between runs; wait for this one to end");
            return;
        }
        f(self);
    }

    fn scroll(&mut self, by: i64) {
        let lanes = self
            .run
            .as_ref()
            .map_or(self.workload.updaters as usize, |r| r.updaters.len());
        let next = (self.lane_scroll as i64).saturating_add(by);
        self.lane_scroll = next.clamp(0, lanes.saturating_sub(1) as i64) as usize;
    }

    fn generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    /// Whether the machine has the memory for `strategies` on the workload; says why not.
    fn fits(&mut self, strategies: &[Strategy]) -> bool {
        if self.workers.is_some() {
            // The updaters, and their memory, are the workers'.
            return true;
        }
        for &strategy in strategies {
            if let Some((need, limit)) =
                crate::budget::shortfall(strategy, &self.workload, self.memory_limit)
            {
                self.say(crate::budget::short_reason(strategy, need, limit));
                return false;
            }
        }
        true
    }

    fn start_run(&mut self) -> Vec<Command> {
        if self.busy() {
            self.say("a run is going on; it ends in a moment");
            return Vec::new();
        }
        if !self.fits(&[self.strategy]) {
            return Vec::new();
        }
        let generation = self.generation();
        let workload = self.workload.clone();
        self.screen = Screen::Main;
        self.lane_scroll = 0;
        self.run = Some(RunView::new(
            generation,
            self.strategy,
            workload.clone(),
            self.now,
        ));
        vec![Command::Run {
            generation,
            strategy: self.strategy,
            workload,
        }]
    }

    /// `c` opens the comparison and starts it; pressed again once it is done, it goes back.
    fn toggle_compare(&mut self) -> Vec<Command> {
        if self.screen == Screen::Compare {
            if self.compare.as_ref().is_some_and(|c| c.running) {
                self.say("the comparison is running; q quits");
            } else {
                self.screen = Screen::Main;
            }
            return Vec::new();
        }
        if self.busy() {
            self.say("a run is going on; compare when it ends");
            return Vec::new();
        }
        if !self.fits(Strategy::ALL) {
            return Vec::new();
        }
        let generation = self.generation();
        let workload = self.workload.clone();
        let strategies = Strategy::ALL.to_vec();
        self.compare = Some(CompareView {
            generation,
            workload: workload.clone(),
            rows: strategies
                .iter()
                .map(|&strategy| CompareRow {
                    strategy,
                    state: RowState::Waiting,
                    tally: Tally::new(workload.journey.segments.len()),
                    applied: 0,
                    lost: 0,
                    duration: Duration::ZERO,
                    started: None,
                })
                .collect(),
            running: true,
            started: self.now,
            finished: None,
        });
        self.screen = Screen::Compare;
        vec![Command::Compare {
            generation,
            strategies,
            workload,
        }]
    }
}

fn next_strategy(current: Strategy, by: isize) -> Strategy {
    let all = Strategy::ALL;
    let at = all.iter().position(|s| *s == current).unwrap_or(0) as isize;
    let n = all.len() as isize;
    all[((at + by).rem_euclid(n)) as usize]
}

/// The next value of `steps` above (or below) `current`; off-ladder values join the ladder.
fn step<T: Copy + PartialOrd>(steps: &[T], current: T, up: bool) -> T {
    if up {
        steps
            .iter()
            .copied()
            .find(|&s| s > current)
            .unwrap_or(current)
    } else {
        steps
            .iter()
            .rev()
            .copied()
            .find(|&s| s < current)
            .unwrap_or(current)
    }
}

fn step_think(current: Duration, slower: bool) -> Duration {
    let ms = current.as_micros() as f64 / 1000.0;
    let steps: Vec<f64> = THINK_STEPS_MS.iter().map(|&s| s as f64).collect();
    Duration::from_secs_f64(step(&steps, ms, slower) / 1000.0)
}

/// `12 ms`, `1.25 s`: times in the story and on the axis.
pub fn fmt_ms(d: Duration) -> String {
    let ms = ms(d);
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

impl Story {
    /// The line in plain words.
    pub fn text(&self) -> String {
        match self {
            Story::Read {
                first,
                count: 1,
                from,
                what,
                ..
            } => format!("#{first} read {what} at {}", fmt_ms(*from)),
            Story::Read {
                first,
                count,
                from,
                to,
                what,
            } => format!(
                "#{first} and {} more read {what} at {}–{}",
                count - 1,
                fmt_ms(*from),
                fmt_ms(*to)
            ),
            Story::Wrote {
                updater,
                segment,
                status,
                at,
            } => format!("#{updater} wrote {segment} {status} at {}", fmt_ms(*at)),
            Story::WaitsForLock {
                first,
                count: 1,
                at,
            } => format!("#{first} waits for the lock at {}", fmt_ms(*at)),
            Story::WaitsForLock { first, count, at } => format!(
                "#{first} and {} more wait for the lock at {}",
                count - 1,
                fmt_ms(*at)
            ),
            Story::Retries {
                updater,
                attempt,
                reason,
                at,
                times,
            } => {
                let why = match reason {
                    RetryReason::Conflict => "the journey changed since its read",
                    RetryReason::LockBusy => "the lock was busy",
                };
                if *times == 1 {
                    format!(
                        "#{updater} retries (attempt {attempt}) at {}: {why}",
                        fmt_ms(*at)
                    )
                } else {
                    format!(
                        "{times} retries up to {}: {why} (latest #{updater}, attempt {attempt})",
                        fmt_ms(*at)
                    )
                }
            }
            Story::Failed {
                updater,
                segment,
                others,
                unknown,
                reason,
                at,
            } => {
                let outcome = if *unknown {
                    "outcome unknown"
                } else {
                    "not written"
                };
                if *others == 0 {
                    format!(
                        "#{updater}'s update of {segment} failed at {} ({outcome}): {reason}",
                        fmt_ms(*at)
                    )
                } else {
                    format!(
                        "#{updater}'s update of {segment} and {others} more failed at {} ({outcome}): {reason}",
                        fmt_ms(*at)
                    )
                }
            }
            Story::Lost {
                eraser,
                eraser_at,
                eraser_read,
                segments,
            } => {
                let what = match segments.as_slice() {
                    [(segment, status, updater)] => {
                        format!("{segment} is {status} again, #{updater}'s update lost")
                    }
                    many => {
                        let names: Vec<&str> =
                            many.iter().take(3).map(|(s, _, _)| s.as_str()).collect();
                        let more = if many.len() > 3 {
                            format!(" and {} more", many.len() - 3)
                        } else {
                            String::new()
                        };
                        let status = &many[0].1;
                        let back = if many.iter().all(|(_, s, _)| s == status) {
                            format!("back to {status}")
                        } else {
                            "back to older statuses".to_owned()
                        };
                        format!(
                            "{}{more} are {back}, {} updates lost",
                            names.join(", "),
                            many.len()
                        )
                    }
                };
                match (eraser, eraser_at, eraser_read) {
                    (Some(by), Some(at), Some(read)) => format!(
                        "#{by} wrote its stale copy (read at {}) at {}: {what}",
                        fmt_ms(*read),
                        fmt_ms(*at)
                    ),
                    _ => format!("a later write put it back: {what}"),
                }
            }
            Story::Workers { shares } => {
                format!("updaters run in workers: {}", shares.join(", "))
            }
            Story::WorkerVanished {
                worker,
                how,
                updaters,
                why,
            } => format!("worker {worker} {how}, with updaters {updaters}: {why}"),
            Story::Verdict { text, .. } | Story::SeedMessage { text } => text.clone(),
        }
    }

    pub fn is_loss(&self) -> bool {
        matches!(self, Story::Lost { .. } | Story::SeedMessage { .. })
            || matches!(self, Story::Verdict { lost: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_step_and_stop_at_their_ends() {
        assert_eq!(step(UPDATER_STEPS, 20, true), 50);
        assert_eq!(step(UPDATER_STEPS, 20, false), 10);
        assert_eq!(step(UPDATER_STEPS, 7, true), 10);
        assert_eq!(step(UPDATER_STEPS, 1000, true), 1000);
        assert_eq!(step(UPDATER_STEPS, 1, false), 1);
        assert_eq!(
            step_think(Duration::from_millis(600), true),
            Duration::from_secs(1)
        );
        assert_eq!(
            step_think(Duration::from_millis(600), false),
            Duration::from_millis(400)
        );
        assert_eq!(step_think(Duration::ZERO, false), Duration::ZERO);
    }

    #[test]
    fn times_read_naturally() {
        assert_eq!(fmt_ms(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(fmt_ms(Duration::from_millis(24)), "24 ms");
        assert_eq!(fmt_ms(Duration::from_millis(1250)), "1.25 s");
    }
}
