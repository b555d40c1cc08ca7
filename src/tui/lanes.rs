//! The updater lanes: each updater's phase and its reads and writes ([`Mark`]s) on one time axis,
//! where overlapping read-to-write windows show the race.

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use super::theme::Theme;
use super::widgets::fmt_ms;
use crate::roster::WorkerShare;
use crate::workload::Workload;

/// Read/write windows kept per updater for its lane; older rounds fall off the time axis anyway.
const MARKS_KEPT: usize = 32;

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
    /// Write skew: the invariant said no, nothing was written.
    Declined,
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
            Phase::Declined => "declined".into(),
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
    /// This update's wait for the lock is already in the story.
    pub(super) told_lock_wait: bool,
}

impl UpdaterView {
    pub(super) fn new() -> UpdaterView {
        UpdaterView {
            phase: Phase::Waiting,
            marks: VecDeque::new(),
            told_lock_wait: false,
        }
    }

    /// The mark of the update in progress, opened when missing.
    pub(super) fn current(&mut self) -> &mut Mark {
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

/// The time axis of the lanes: run time `0..span` over `width` columns.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub span: Duration,
    pub width: u16,
}

impl Axis {
    /// A round span that holds `end`, so the axis doesn't jitter every frame as time passes.
    pub fn new(end: Duration, width: u16) -> Axis {
        let ms = (end.as_secs_f64() * 1000.0).max(10.0);
        let magnitude = 10f64.powf(ms.log10().floor());
        let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|&v| v >= ms)
            .unwrap_or(10.0 * magnitude);
        Axis {
            span: Duration::from_secs_f64(nice / 1000.0),
            width,
        }
    }

    pub fn column(&self, at: Duration) -> u16 {
        if self.width == 0 || self.span.is_zero() {
            return 0;
        }
        let f = at.as_secs_f64() / self.span.as_secs_f64();
        ((f * f64::from(self.width)) as u16).min(self.width - 1)
    }
}

/// The characters of one lane's time axis, with a style each.
pub fn lane_marks(
    updater: &UpdaterView,
    axis: Axis,
    now: Duration,
    theme: Theme,
) -> Vec<(char, Style)> {
    let mut cells = vec![(' ', Style::new()); usize::from(axis.width)];
    let window = theme.dim();
    for mark in &updater.marks {
        draw_mark(&mut cells, mark, axis, now, window, theme);
    }
    cells
}

fn draw_mark(
    cells: &mut [(char, Style)],
    mark: &Mark,
    axis: Axis,
    now: Duration,
    window: Style,
    theme: Theme,
) {
    if cells.is_empty() {
        return;
    }
    let end = mark.write.unwrap_or(now);
    if let Some(start) = mark.read.or(mark.began) {
        let (r, w) = (axis.column(start), axis.column(end).max(axis.column(start)));
        for c in r..=w {
            cells[usize::from(c)] = ('─', window);
        }
    }
    if let Some(read) = mark.read {
        cells[usize::from(axis.column(read))] = ('R', theme.strong());
    }
    if let Some(write) = mark.write {
        let w = usize::from(axis.column(write));
        cells[w] = if mark.lost {
            ('✗', theme.bad())
        } else if mark.erased {
            ('S', theme.bad())
        } else {
            ('W', theme.good())
        };
    }
}

/// What the lanes show of a run: its updaters, its workload (for the time axis) and its
/// workers (to tag each lane). The run's view hands it over (`RunView::lanes`), so drawing the
/// lanes needs nothing else of the run.
pub struct LaneSource<'a> {
    pub updaters: &'a [UpdaterView],
    pub workload: &'a Workload,
    pub workers: &'a [WorkerShare],
}

impl LaneSource<'_> {
    fn worker_of(&self, updater: u32) -> Option<&WorkerShare> {
        self.workers.iter().find(|s| s.runs(updater))
    }
}

/// The updater lanes, from `first`: phase now and read/write marks on one shared time axis.
pub fn draw(
    area: Rect,
    buf: &mut Buffer,
    run: &LaneSource<'_>,
    first: usize,
    now: Duration,
    theme: Theme,
) {
    let total = run.updaters.len();
    let rows = usize::from(area.height.saturating_sub(1));
    let first = first.min(total.saturating_sub(rows.max(1)));
    let last = (first + rows).min(total);
    let number_width = total.to_string().len() + 1;
    let wide = area.width >= 60;
    let phase_width = if wide { 16 } else { 10 };
    // With workers, each lane says which one its updater runs in (`#7  w2 thinking`).
    let worker_width = run
        .workers
        .iter()
        .map(|s| s.worker.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let label_width = number_width + 1 + worker_width + phase_width + 1;
    let axis_width = area.width.saturating_sub(label_width as u16);
    let expected = run
        .workload
        .think
        .mul_f64(1.0 + run.workload.jitter)
        .saturating_mul(run.workload.rounds)
        + Duration::from_millis(20);
    let axis = Axis::new(now.max(expected), axis_width);

    let range = if total > rows {
        format!(" Updaters {}–{} of {total} (↑↓) ", first + 1, last)
    } else {
        format!(" Updaters ({total}) ")
    };
    let scale = format!(" 0 → {} ", fmt_ms(axis.span));
    let legend = Line::from(vec![
        Span::styled("R", theme.strong()),
        Span::raw(" read "),
        Span::styled("─", theme.dim()),
        Span::raw(" think "),
        Span::styled("W", theme.good()),
        Span::raw(" write "),
        Span::styled("✗", theme.bad()),
        Span::raw(" lost "),
        Span::styled("S", theme.bad()),
        Span::raw(" stale "),
    ]);
    let mut block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::styled(range.clone(), theme.title()))
        .title(Line::styled(scale.clone(), theme.dim()));
    if range.chars().count() + scale.chars().count() + legend.width() + 4 <= usize::from(area.width)
    {
        block = block.title(legend.alignment(Alignment::Right));
    }
    let inner = block.inner(area);
    block.render(area, buf);

    for (row, i) in (first..last).enumerate() {
        let y = inner.y + row as u16;
        if y >= inner.bottom() {
            break;
        }
        let u = &run.updaters[i];
        let phase = if wide {
            u.phase.word()
        } else {
            u.phase.short_word()
        };
        let lost = u.marks.iter().any(|m| m.lost);
        let number_style = if lost { theme.bad() } else { Style::new() };
        let label = format!("#{:<nw$}", i + 1, nw = number_width);
        buf.set_stringn(inner.x, y, &label, usize::from(inner.width), number_style);
        let phase_style = match u.phase {
            p if p.active() => theme.busy(),
            Phase::Failed => theme.bad(),
            _ => theme.dim(),
        };
        let x = inner.x + number_width as u16 + 1;
        if let Some(share) = run.worker_of(i as u32)
            && x < inner.right()
        {
            // A worker that vanished left its updaters' outcomes unknown.
            let style = if share.vanished.is_some() {
                theme.bad()
            } else {
                theme.worker()
            };
            buf.set_stringn(
                x,
                y,
                &share.worker,
                usize::from(inner.right() - x).min(worker_width.saturating_sub(1)),
                style,
            );
        }
        let x = x + worker_width as u16;
        if x < inner.right() {
            buf.set_stringn(
                x,
                y,
                format!("{phase:<phase_width$}"),
                usize::from(inner.right() - x),
                phase_style,
            );
        }
        let x0 = inner.x + label_width as u16;
        for (c, (ch, style)) in lane_marks(u, axis, now, theme).into_iter().enumerate() {
            let x = x0 + c as u16;
            if x >= inner.right() {
                break;
            }
            if ch != ' ' {
                buf[(x, y)].set_char(ch).set_style(style);
            }
        }
    }
}
