//! Step mode: the presenter is the scheduler. Each updater waits before every Redis round trip
//! with the command it will send; the presenter picks who goes next, sees Redis's reply and the
//! journey as Redis then holds it, undoes a step, lets time pass, or lets the rest run free.
//!
//! The state of the steps beside its drawing: the panel of updaters and their next steps (in
//! the lanes' place) and the steps told one by one (in the story's place). The run itself is
//! [`super::stepper`]'s.

use std::time::{Duration, Instant};

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Widget};

use super::theme::Theme;
use super::widgets;
use crate::journey::SegmentState;
use crate::schedule::{Choice, Role, Schedule, Step, Token};
use crate::workload::Workload;

/// What the presenter asks of a stepped run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Take one token: an updater's next step, or time passing.
    Take(Token),
    /// Let every updater run the rest free.
    Free,
}

/// One token a stepped run took, and the journey as Redis held it right after.
#[derive(Debug, Clone)]
pub struct Taken {
    pub token: Token,
    /// The step and Redis's reply; `None` for time passing.
    pub choice: Option<Choice>,
    /// Time passed by itself: the lock ran out while nobody took a step.
    pub expired: bool,
    /// The journey as Redis holds it after the step (`None`: it could not be read).
    pub states: Option<Vec<SegmentState>>,
    pub read_started: Instant,
    /// How long the journey's lock has left, when it is held.
    pub lock_left: Option<Duration>,
}

/// One step as the story tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    /// 1-based, as the schedule counts tokens.
    pub number: usize,
    /// `#2 SET journey → OK`, or `time passes (6 s)`.
    pub what: String,
    /// What it did, in one plain sentence.
    pub sentence: String,
    /// The step erased an acknowledged update.
    pub loss: bool,
}

/// Where a stepped run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Replaying the steps kept by an undo or a loaded schedule's start.
    Replaying,
    /// Waiting for the presenter.
    Ready,
    /// A step (or time passing) is under way.
    Taking(Token, Instant),
    /// The rest runs free.
    Free,
    /// Every updater is done.
    Over,
}

pub struct StepView {
    /// The run these steps belong to.
    pub generation: u64,
    pub stage: Stage,
    /// The tokens taken so far: the schedule `racelab run --schedule` replays.
    pub taken: Vec<Token>,
    /// The steps a new run replays before the presenter takes over (an undo keeps all but the
    /// last; a loaded schedule none).
    pub replay: usize,
    /// A loaded schedule's tokens still to come, next first.
    pub plan: Vec<Token>,
    /// Each updater's next step while it waits (index: updater − 1); `None` once done.
    pub next: Vec<Option<Step>>,
    /// Who the next step goes to (1-based).
    pub selected: u32,
    pub lines: Vec<StepLine>,
    /// The presenter let the rest run free (`f`): the schedule covers only the steps before.
    pub went_free: bool,
    /// The step (1-based) at which each updater read what it holds now.
    read_step: Vec<Option<usize>>,
    /// Who holds the journey's lock, as the steps' replies say.
    pub holder: Option<u32>,
    /// The lock's ttl left, as Redis said at `.1`.
    pub lock_left: Option<(Duration, Instant)>,
    /// The journey after the latest step.
    states: Option<Vec<SegmentState>>,
    /// Which segment each updater changes (index: updater − 1).
    segment_of: Vec<usize>,
    segment_ids: Vec<String>,
    lock_ttl: Duration,
}

impl StepView {
    pub fn new(generation: u64, workload: &Workload, replay: Vec<Token>, plan: Vec<Token>) -> Self {
        let n = workload.updaters as usize;
        StepView {
            generation,
            stage: if replay.is_empty() {
                Stage::Ready
            } else {
                Stage::Replaying
            },
            replay: replay.len(),
            taken: Vec::new(),
            plan,
            next: vec![None; n],
            selected: 1,
            lines: Vec::new(),
            went_free: false,
            read_step: vec![None; n],
            holder: None,
            lock_left: None,
            states: Some(workload.journey.states()),
            segment_of: (0..workload.updaters)
                .map(|u| workload.segment_of(u) as usize)
                .collect(),
            segment_ids: workload
                .journey
                .segments
                .iter()
                .map(|s| s.segment_id.clone())
                .collect(),
            lock_ttl: workload.tuning.lock_ttl,
        }
    }

    /// The presenter may take a step now.
    pub fn ready(&self) -> bool {
        self.stage == Stage::Ready
    }

    /// The schedule taken so far, as `--schedule` takes it back.
    pub fn schedule(&self) -> String {
        Schedule {
            tokens: self.taken.clone(),
        }
        .to_string()
    }

    /// The command that repeats these steps headless, in CI: the schedule, and the options it
    /// depends on when they differ from `run`'s defaults (an updater's segment, its rounds,
    /// how long time passing waits).
    pub fn repeat_command(
        &self,
        strategy: crate::strategy::Strategy,
        workload: &Workload,
    ) -> String {
        let name = strategy.to_string();
        // A user's strategy may hold spaces (`exec:python3 svc.py`): quoted for the shell.
        let name = if name
            .chars()
            .any(|c| c.is_whitespace() || "'\"$`\\".contains(c))
        {
            format!("'{}'", name.replace('\'', "'\\''"))
        } else {
            name
        };
        let mut command = format!("racelab run -s {name} -n {}", workload.updaters);
        if workload.segments() != 20 {
            command.push_str(&format!(" --segments {}", workload.segments()));
        }
        if workload.rounds != 1 {
            command.push_str(&format!(" --rounds {}", workload.rounds));
        }
        if self.taken.contains(&Token::Wait) {
            command.push_str(&format!(
                " --lock-ttl {}",
                humantime::format_duration(self.lock_ttl)
            ));
        }
        format!("{command} --schedule \"{}\"", self.schedule())
    }

    /// The updaters waiting for a step, 1-based.
    pub fn waiting(&self) -> Vec<u32> {
        (1..=self.next.len() as u32)
            .filter(|&u| self.next[u as usize - 1].is_some())
            .collect()
    }

    /// Moves the selection to the previous (`by` < 0) or next waiting updater.
    pub fn select_by(&mut self, by: i64) {
        let waiting = self.waiting();
        let next = if by < 0 {
            waiting.iter().rev().find(|&&u| u < self.selected)
        } else {
            waiting.iter().find(|&&u| u > self.selected)
        };
        if let Some(&u) = next {
            self.selected = u;
        }
    }

    /// The next updaters see their next steps; the presenter's turn.
    pub fn on_ready(
        &mut self,
        waiting: Vec<(u32, Option<Step>)>,
        lock_left: Option<Duration>,
        now: Instant,
    ) {
        self.next.iter_mut().for_each(|n| *n = None);
        for (updater, step) in waiting {
            if let Some(slot) = self.next.get_mut(updater as usize - 1) {
                *slot = Some(step.unwrap_or_else(|| Step::new(Role::Read, "its next step")));
            }
        }
        self.lock_left = lock_left.map(|left| (left, now));
        if self.stage != Stage::Free {
            self.stage = Stage::Ready;
        }
        // A loaded schedule's next token picks who goes next; otherwise the selection stays
        // with its updater while it waits.
        let planned = match self.plan.first() {
            Some(Token::Step(n)) => Some(*n),
            _ => None,
        };
        let waiting = self.waiting();
        if let Some(n) = planned.filter(|n| waiting.contains(n)) {
            self.selected = n;
        } else if !waiting.contains(&self.selected)
            && let Some(&first) = waiting.first()
        {
            self.selected = first;
        }
    }

    /// The presenter took `token`: the screen waits for it to be done.
    pub fn taking(&mut self, token: Token, now: Instant) {
        self.stage = Stage::Taking(token, now);
        // Off the loaded schedule: the rest of it no longer applies.
        if self.plan.first() == Some(&token) {
            self.plan.remove(0);
        } else {
            self.plan.clear();
        }
    }

    /// A token was taken; tells it as a line of the story.
    pub fn on_taken(&mut self, taken: Taken, now: Instant) {
        self.taken.push(taken.token);
        let number = self.taken.len();
        if self.stage == Stage::Replaying && number >= self.replay {
            self.stage = Stage::Ready;
        }
        if let Stage::Taking(token, _) = self.stage
            && token == taken.token
        {
            self.stage = Stage::Ready;
        }
        self.lock_left = taken.lock_left.map(|left| (left, now));
        let before = self.states.take();
        let line = match (&taken.choice, taken.token) {
            (Some(choice), _) => self.tell_step(number, choice, before.as_deref(), &taken),
            (None, _) => self.tell_time(number, taken.expired, taken.lock_left.is_some()),
        };
        self.states = taken.states.or(before);
        self.lines.push(line);
    }

    fn tell_time(&mut self, number: usize, expired: bool, still_held: bool) -> StepLine {
        let holder = self.holder.take();
        let ttl = widgets::fmt_ms(self.lock_ttl);
        let what = if expired {
            "t  the lock's ttl ran out meanwhile".to_owned()
        } else {
            format!("t  time passes ({ttl}, the lock's ttl)")
        };
        let sentence = match (holder, still_held) {
            (_, true) => {
                self.holder = holder;
                "the lock is still held".to_owned()
            }
            (Some(h), false) => format!(
                "#{h}'s lock expired: #{h} still believes it holds it, and anyone may take it now"
            ),
            (None, false) => "time passed; no lock was held".to_owned(),
        };
        StepLine {
            number,
            what,
            sentence,
            loss: false,
        }
    }

    fn tell_step(
        &mut self,
        number: usize,
        choice: &Choice,
        before: Option<&[SegmentState]>,
        taken: &Taken,
    ) -> StepLine {
        let who = choice.updater;
        let u = who as usize - 1;
        let command = choice
            .step
            .as_ref()
            .map_or_else(|| "its step".to_owned(), |s| s.command.to_string());
        let reply = choice.reply.as_deref().unwrap_or("no reply");
        let what = format!("#{who} {command} → {reply}");
        let role = choice.step.as_ref().map(|s| s.role);
        let own = self.segment_of.get(u).copied().unwrap_or(0);
        let own_id = self.segment_ids.get(own).cloned().unwrap_or_default();
        // Redis's reply says whether a write went in; scripts answer with a count.
        let refused = reply.starts_with("nil") || reply.starts_with("0:");
        let failed = reply.starts_with("error") || choice.reply.is_none();
        let erased = match (before, taken.states.as_deref()) {
            (Some(before), Some(after)) => erased(before, after, &self.segment_ids),
            _ => Vec::new(),
        };
        let sentence = match role {
            Some(Role::Read) => {
                self.read_step[u] = Some(number);
                format!("#{who} now holds a copy from step {number}; it changes {own_id} in it")
            }
            Some(Role::Lock) if reply.starts_with("OK") => {
                self.holder = Some(who);
                format!("#{who} holds the lock")
            }
            Some(Role::Lock) if failed => format!("#{who} could not try the lock: {reply}"),
            Some(Role::Lock) => {
                let by = self
                    .holder
                    .map_or_else(String::new, |h| format!(" (#{h} holds it)"));
                format!("#{who} found the lock busy{by}; it will try again at its next step")
            }
            Some(Role::Unlock) => {
                if self.holder == Some(who) {
                    self.holder = None;
                }
                if reply.starts_with('1') {
                    format!("#{who} released the lock")
                } else {
                    format!("#{who}'s lock had run out; it leaves the lock alone")
                }
            }
            _ if failed => format!("#{who}'s step failed: {reply}"),
            _ if refused => format!("#{who}'s write did not go in; it will read again and retry"),
            _ if !erased.is_empty() => {
                let gone: Vec<String> = erased
                    .iter()
                    .map(|(id, status)| format!("{id}'s {status}"))
                    .collect();
                let verb = if gone.len() == 1 { "is" } else { "are" };
                let copy = match (role, self.read_step[u]) {
                    (Some(Role::WriteBack), Some(step)) => {
                        format!("wrote its copy from step {step}")
                    }
                    _ => "wrote".to_owned(),
                };
                format!(
                    "#{who} {copy}: {} {verb} gone",
                    crate::truth::join_words(&gone)
                )
            }
            _ => {
                let status = taken
                    .states
                    .as_deref()
                    .and_then(|s| s.get(own))
                    .map_or_else(String::new, |s| format!(" {}", s.status));
                format!("#{who} wrote {own_id}{status}; nothing was lost")
            }
        };
        StepLine {
            number,
            what,
            sentence,
            loss: !erased.is_empty(),
        }
    }

    /// The lane text of updater `u` (1-based): its next step in Redis terms, in at most
    /// `width` columns where a shorter form says enough.
    pub fn next_text(&self, u: u32, width: usize) -> String {
        let Some(Some(step)) = self.next.get(u as usize - 1) else {
            return "done".to_owned();
        };
        match (step.role, self.read_step[u as usize - 1]) {
            (Role::WriteBack, Some(read)) => {
                let long = format!("next: {} (its copy read at step {read})", step.command);
                if long.chars().count() <= width {
                    long
                } else {
                    format!("next: {} (read at step {read})", step.command)
                }
            }
            _ => format!("next: {}", step.command),
        }
    }

    /// The rest runs free.
    pub fn free(&mut self) {
        self.stage = Stage::Free;
        self.went_free = true;
    }

    /// Every updater is done (or the run stopped): nobody waits any more.
    pub fn finish(&mut self) {
        self.stage = Stage::Over;
        self.next.iter_mut().for_each(|n| *n = None);
        self.lock_left = None;
    }

    /// The lock's state for the panel's title: `lock: #1, 4.2 s left`.
    pub fn lock_text(&self, now: Instant) -> Option<String> {
        let (left, at) = self.lock_left?;
        let left = left.saturating_sub(now.saturating_duration_since(at));
        let who = self.holder.map_or_else(String::new, |h| format!("#{h}, "));
        Some(format!("lock: {who}{:.1} s left", left.as_secs_f64()))
    }
}

/// The acknowledged updates a step erased: segments whose count went down, with the status
/// they lost.
fn erased(
    before: &[SegmentState],
    after: &[SegmentState],
    ids: &[String],
) -> Vec<(String, String)> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| a.update_count < b.update_count)
        .map(|(i, (b, _))| (ids.get(i).cloned().unwrap_or_default(), b.status.clone()))
        .collect()
}

/// The updaters and their next steps, in the lanes' place. `first` is the first updater shown;
/// the selected updater is kept in view.
pub fn draw_panel(
    area: Rect,
    buf: &mut Buffer,
    steps: &StepView,
    first: usize,
    now: Instant,
    theme: Theme,
) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::styled(" Step mode ", theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let width = usize::from(inner.width);
    if width == 0 || inner.height == 0 {
        return;
    }
    let mut rows: Vec<(String, Style)> = Vec::new();
    let mut schedule = format!("schedule: {}", or_none(&steps.schedule()));
    if !steps.plan.is_empty() {
        let plan = Schedule {
            tokens: steps.plan.clone(),
        };
        schedule.push_str(&format!(" · to come: {plan}"));
    }
    for part in widgets::wrap(&schedule, width) {
        rows.push((part, theme.strong()));
    }
    if let Some(lock) = steps.lock_text(now) {
        rows.push((lock, theme.busy()));
    }
    // What is going on, when the presenter is not the one to act.
    let status = match steps.stage {
        Stage::Replaying => Some(format!(
            "replaying {} on fresh keys…",
            crate::output::counted(steps.replay as u64, "step")
        )),
        Stage::Taking(Token::Wait, since) => {
            let left = (steps.lock_ttl + Duration::from_millis(50))
                .saturating_sub(now.saturating_duration_since(since));
            Some(format!("time passes… {:.1} s", left.as_secs_f64()))
        }
        Stage::Taking(Token::Step(n), _) => Some(format!("#{n} takes its step…")),
        Stage::Free => Some("running free: the updaters race by themselves".to_owned()),
        Stage::Over => Some("every updater is done".to_owned()),
        Stage::Ready => None,
    };
    if let Some(status) = status {
        rows.push((status, theme.busy()));
    }
    let room = usize::from(inner.height).saturating_sub(rows.len());
    // Each updater's rows: its next step wraps under its number.
    let total = steps.next.len();
    let number_width = total.to_string().len() + 1;
    let indent = number_width + 2;
    let text_width = width.saturating_sub(indent).max(1);
    let lanes: Vec<Vec<String>> = (1..=total as u32)
        .map(|u| widgets::wrap(&steps.next_text(u, text_width), text_width))
        .collect();
    // From `first`, but far enough on that the selected updater's rows are in view.
    let selected = (steps.selected as usize).clamp(1, total.max(1)) - 1;
    let mut start = first.min(selected);
    while start < selected && lanes[start..=selected].iter().map(Vec::len).sum::<usize>() > room {
        start += 1;
    }
    let mut lane_rows = 0;
    'lanes: for (i, lines) in lanes.iter().enumerate().skip(start) {
        let chosen = i == selected && steps.stage != Stage::Over;
        let style = match (chosen, steps.next[i].is_some()) {
            (true, true) => theme.strong(),
            (_, false) => theme.dim(),
            _ => Style::new(),
        };
        for (k, line) in lines.iter().enumerate() {
            if lane_rows == room {
                break 'lanes;
            }
            let lead = match (k, chosen) {
                (0, true) => format!("▶#{:<number_width$} ", i + 1),
                (0, false) => format!(" #{:<number_width$} ", i + 1),
                _ => " ".repeat(indent),
            };
            rows.push((format!("{lead}{line}"), style));
            lane_rows += 1;
        }
    }
    for (k, (text, style)) in rows.into_iter().enumerate() {
        if k >= usize::from(inner.height) {
            break;
        }
        buf.set_stringn(inner.x, inner.y + k as u16, text, width, style);
    }
}

fn or_none(schedule: &str) -> &str {
    if schedule.is_empty() {
        "none yet"
    } else {
        schedule
    }
}

/// The steps told one by one, newest last, in the story's place; `tail` (the verdict, a hint)
/// follows them.
pub fn draw_story(area: Rect, buf: &mut Buffer, steps: &StepView, tail: &[String], theme: Theme) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::styled(" What each step did ", theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    let width = usize::from(inner.width);
    if width == 0 {
        return;
    }
    let mut rows: Vec<(String, Style)> = Vec::new();
    for line in &steps.lines {
        let lead = format!("{:>2} ", line.number);
        for (k, part) in widgets::wrap(&line.what, width.saturating_sub(3))
            .into_iter()
            .enumerate()
        {
            let lead = if k == 0 {
                lead.clone()
            } else {
                "   ".to_owned()
            };
            rows.push((format!("{lead}{part}"), theme.dim()));
        }
        let style = if line.loss { theme.bad() } else { Style::new() };
        for part in widgets::wrap(&line.sentence, width.saturating_sub(3)) {
            rows.push((format!("   {part}"), style));
        }
    }
    for text in tail {
        for part in widgets::wrap(text, width) {
            rows.push((part, theme.strong()));
        }
    }
    let height = usize::from(inner.height);
    let skip = rows.len().saturating_sub(height);
    for (k, (text, style)) in rows.into_iter().skip(skip).enumerate() {
        buf.set_stringn(inner.x, inner.y + k as u16, text, width, style);
    }
}
