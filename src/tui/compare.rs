//! The comparison: every strategy on the same workload, one row each, filling in as each run
//! ends, with bars for lost updates and throughput.

use std::time::{Duration, Instant};

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Widget};

use super::theme::Theme;
use super::widgets::{bar, fmt_ms, wrap};
use crate::engine::RunResult;
use crate::event::Event;
use crate::strategy::Strategy;
use crate::truth::Tally;
use crate::workload::Workload;

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
    /// The run tested too little for a verdict (`truth::inconclusive`): too few updates made.
    pub inconclusive: bool,
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
    pub(super) fn new(
        generation: u64,
        workload: Workload,
        strategies: &[Strategy],
        now: Instant,
    ) -> CompareView {
        let rows = strategies
            .iter()
            .map(|&strategy| CompareRow {
                strategy,
                state: RowState::Waiting,
                tally: Tally::new(workload.journey.segments.len()),
                applied: 0,
                lost: 0,
                duration: Duration::ZERO,
                inconclusive: false,
                started: None,
            })
            .collect();
        CompareView {
            generation,
            workload,
            rows,
            running: true,
            started: now,
            finished: None,
        }
    }

    /// The strategies run one after another, so an event belongs to the one running now.
    pub(super) fn on_event(&mut self, event: &Event) {
        if let Some(row) = self.running_row() {
            row.tally.record(event);
        }
    }

    pub(super) fn on_started(&mut self, strategy: Strategy, now: Instant) {
        if let Some(row) = self.row(strategy) {
            row.state = RowState::Running;
            row.started = Some(now);
        }
    }

    pub(super) fn on_finished(&mut self, strategy: Strategy, result: Result<RunResult, String>) {
        let total = self.workload.total_updates();
        let expects_loss = strategy.loses_updates(&self.workload.shape()) == Some(true);
        let Some(row) = self.row(strategy) else {
            return;
        };
        match result {
            Ok(result) if result.unverified.is_some() => {
                let reason = result.unverified.unwrap_or_default();
                row.tally = result.tally;
                row.state = RowState::Failed(format!("no verdict: {reason}"));
            }
            Ok(result) => {
                row.inconclusive =
                    crate::truth::inconclusive(&result.tally, &result.truth, total, expects_loss)
                        .is_some();
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

    /// Every strategy ran, or the comparison was stopped: rows never reached say so.
    pub(super) fn on_done(&mut self, now: Instant) {
        self.running = false;
        self.finished = Some(now);
        for row in &mut self.rows {
            if matches!(row.state, RowState::Waiting | RowState::Running) {
                row.state = RowState::Stopped("not run".into());
            }
        }
    }

    fn row(&mut self, strategy: Strategy) -> Option<&mut CompareRow> {
        self.rows.iter_mut().find(|r| r.strategy == strategy)
    }

    fn running_row(&mut self) -> Option<&mut CompareRow> {
        self.rows.iter_mut().find(|r| r.state == RowState::Running)
    }
}

/// The comparison: one row per strategy, filling as each run ends, with bars for lost updates and
/// throughput.
pub fn draw(area: Rect, buf: &mut Buffer, view: &CompareView, now: Instant, theme: Theme) {
    let w = &view.workload;
    let title = format!(
        " Compare: every strategy on {} × {}, think {} ",
        crate::output::counted(w.updaters, "updater"),
        crate::output::counted(w.segments(), "segment"),
        fmt_ms(w.think)
    );
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::styled(title, theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 {
        return;
    }
    // The name column fits the longest name and a wrong fix's `*`.
    let fixed = [13usize, 9, 7, 8, 6, 8, 7, 9];
    let fixed_width: usize = fixed.iter().sum();
    let bar_width = usize::from(inner.width).saturating_sub(fixed_width + 2) / 2;
    let headers = [
        "strategy", "result", "acked", "applied", "lost", "retries", "upd/s", "p99",
    ];
    let mut header = String::new();
    for (h, width) in headers.iter().zip(fixed) {
        if header.is_empty() {
            header.push_str(&format!("{h:<width$}"));
        } else {
            header.push_str(&format!("{h:>width$}"));
        }
    }
    if bar_width >= 4 {
        let speed = if bar_width >= 10 {
            "updates/s"
        } else {
            "upd/s"
        };
        header.push_str(&format!("  {:<bar_width$}{:<bar_width$}", "lost", speed));
    }
    buf.set_stringn(
        inner.x,
        inner.y,
        header,
        usize::from(inner.width),
        theme.dim(),
    );

    let total = w.total_updates().max(1) as f64;
    let best = view
        .rows
        .iter()
        .map(|r| r.updates_per_s(now))
        .fold(0.0f64, f64::max)
        .max(1.0);
    for (k, row) in view.rows.iter().enumerate() {
        let y = inner.y + 1 + k as u16;
        if y >= inner.bottom() {
            break;
        }
        let (result, result_style) = match &row.state {
            RowState::Waiting => ("waiting", theme.dim()),
            RowState::Running => ("running", theme.busy()),
            RowState::Done if row.lost > 0 => ("✗ lost", theme.bad()),
            // Too few updates made for any verdict (README "Exit codes": inconclusive).
            RowState::Done if row.inconclusive => ("? too few", theme.busy()),
            // Nothing lost, but not everything made: say so rather than a plain "intact".
            RowState::Done if row.tally.give_ups > 0 => ("✓ partial", theme.busy()),
            RowState::Done => ("✓ intact", theme.good()),
            RowState::Stopped(_) => ("stopped", theme.busy()),
            RowState::Failed(_) => ("error", theme.bad()),
        };
        let result = result.to_owned();
        let finished = matches!(row.state, RowState::Done | RowState::Stopped(_));
        let num = |v: u64, shown: bool| {
            if shown {
                v.to_string()
            } else {
                "–".to_owned()
            }
        };
        let started = !matches!(row.state, RowState::Waiting | RowState::Failed(_));
        let p99 = if row.tally.latency.is_empty() {
            "–".to_owned()
        } else {
            fmt_ms(Duration::from_secs_f64(row.tally.latency_ms(0.99) / 1000.0))
        };
        // A wrong fix (README "Fixes that look right") is starred; the notes say what `*` means.
        let name = if row.strategy.is_wrong_fix() {
            format!("{}*", row.strategy.name())
        } else {
            row.strategy.name().to_owned()
        };
        let cells = [
            (name, theme.title()),
            (result, result_style),
            (num(row.tally.acknowledged, started), Style::new()),
            (num(row.applied, finished), Style::new()),
            (
                num(row.lost, finished),
                if row.lost > 0 {
                    theme.bad()
                } else {
                    Style::new()
                },
            ),
            (num(row.tally.retries, started), Style::new()),
            (
                if started {
                    format!("{:.0}", row.updates_per_s(now))
                } else {
                    "–".to_owned()
                },
                Style::new(),
            ),
            (p99, Style::new()),
        ];
        let mut x = inner.x;
        for (c, ((text, style), width)) in cells.into_iter().zip(fixed).enumerate() {
            let text = if c == 0 {
                format!("{text:<width$}")
            } else {
                format!("{text:>width$}")
            };
            if x >= inner.right() {
                break;
            }
            buf.set_stringn(x, y, text, usize::from(inner.right() - x), style);
            x += width as u16;
        }
        if bar_width >= 4 && x + 2 < inner.right() {
            let x = x + 2;
            if finished {
                let lost = bar(row.lost as f64 / total, bar_width - 1);
                buf.set_stringn(x, y, lost, bar_width - 1, theme.bad());
            }
            if started {
                let speed = bar(row.updates_per_s(now) / best, bar_width - 1);
                let xs = x + bar_width as u16;
                if xs < inner.right() {
                    buf.set_stringn(
                        xs,
                        y,
                        speed,
                        usize::from(inner.right() - xs).min(bar_width - 1),
                        theme.strong(),
                    );
                }
            }
        }
    }
    let note_y = inner.y + 2 + view.rows.len() as u16;
    let mut notes: Vec<(String, Style)> = vec![(
        "lost = Redis acknowledged the write, yet the final state does not hold it".to_owned(),
        theme.dim(),
    )];
    if view.rows.iter().any(|r| r.strategy.is_wrong_fix()) {
        notes.push((
            "* wrong fix: looks right, loses updates (README \"Fixes that look right\")".to_owned(),
            theme.dim(),
        ));
    }
    notes.push((String::new(), Style::new()));
    for row in &view.rows {
        notes.push((
            format!("{:<13}{}", row.strategy.name(), row.strategy.how()),
            theme.dim(),
        ));
    }
    for row in &view.rows {
        match &row.state {
            RowState::Failed(reason) | RowState::Stopped(reason) => {
                notes.push((format!("{}: {reason}", row.strategy), theme.busy()));
            }
            RowState::Done if row.lost == 0 && row.tally.give_ups > 0 => {
                notes.push((
                    format!(
                        "{}: nothing lost, but {} update{} gave up (refused or out of retries)",
                        row.strategy,
                        row.tally.give_ups,
                        if row.tally.give_ups == 1 { "" } else { "s" }
                    ),
                    theme.busy(),
                ));
            }
            _ => {}
        }
    }
    let mut y = note_y;
    for (text, style) in notes {
        if text.is_empty() {
            y += 1;
            continue;
        }
        for line in wrap(&text, usize::from(inner.width)) {
            if y >= inner.bottom() {
                return;
            }
            buf.set_stringn(inner.x, y, line, usize::from(inner.width), style);
            y += 1;
        }
    }
}
