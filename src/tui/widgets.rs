//! The screen's parts: the journey grid, the updater lanes, the story and the comparison. Each
//! draws a piece of [`App`](super::app::App)'s state into a buffer and nothing else.

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use super::app::{CompareView, Look, Mark, RowState, RunView, Story, UpdaterView, fmt_ms};
use super::theme::Theme;

/// One grid cell's content.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub look: Look,
    pub erased_by: Option<u32>,
}

/// How much a grid cell says, richest first; the grid takes the richest that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridMode {
    /// `✗ SEG-002 Scheduled ×#17`
    Full,
    /// `✗002`: the id without the prefix all ids share.
    Short,
    /// `✗`: one column per segment, for a thousand of them.
    Tiny,
}

pub struct GridLayout {
    pub mode: GridMode,
    pub columns: usize,
    pub rows: usize,
    cell_width: usize,
    id_width: usize,
    status_width: usize,
    prefix: usize,
}

impl GridLayout {
    /// The richest layout of `cells` in `width` columns and at most `max_rows` rows; the tiny one
    /// when nothing fits (it then shows as many cells as there is room for).
    pub fn fit(cells: &[Cell], width: u16, max_rows: u16) -> GridLayout {
        let width = usize::from(width).max(1);
        let max_rows = usize::from(max_rows).max(1);
        let id_width = cells
            .iter()
            .map(|c| c.id.chars().count())
            .max()
            .unwrap_or(1);
        let status_width = cells
            .iter()
            .map(|c| c.status.chars().count())
            .max()
            .unwrap_or(1)
            .max(9);
        let eraser_width = cells
            .iter()
            .filter_map(|c| c.erased_by)
            .map(|n| n.to_string().len() + 3)
            .max()
            .unwrap_or(0)
            .max(5);
        let prefix = common_prefix(cells);
        let short_width = cells
            .iter()
            .map(|c| c.id.chars().count().saturating_sub(prefix))
            .max()
            .unwrap_or(1);
        let candidates = [
            (
                GridMode::Full,
                2 + id_width + 1 + status_width + eraser_width + 1,
            ),
            (GridMode::Short, 1 + short_width + 1),
            (GridMode::Tiny, 1),
        ];
        let mut chosen = None;
        for (mode, cell_width) in candidates {
            let columns = (width / cell_width).max(1);
            let rows = cells.len().div_ceil(columns).max(1);
            let layout = GridLayout {
                mode,
                columns,
                rows: rows.min(max_rows),
                cell_width,
                id_width,
                status_width,
                prefix,
            };
            if rows <= max_rows || mode == GridMode::Tiny {
                chosen = Some(layout);
                break;
            }
        }
        chosen.unwrap_or(GridLayout {
            mode: GridMode::Tiny,
            columns: width,
            rows: 1,
            cell_width: 1,
            id_width,
            status_width,
            prefix,
        })
    }

    pub fn capacity(&self) -> usize {
        self.columns * self.rows
    }

    /// Column and row of cell `i`. Full cells read down, then across, like a departures board;
    /// short and tiny ones read across like text, so an overflow marker ends the last row.
    pub fn place(&self, i: usize) -> (usize, usize) {
        match self.mode {
            GridMode::Full => (i / self.rows, i % self.rows),
            GridMode::Short | GridMode::Tiny => (i % self.columns, i / self.columns),
        }
    }
}

/// Characters every id starts with, when that leaves something of each (`SEG-`).
fn common_prefix(cells: &[Cell]) -> usize {
    let Some(first) = cells.first() else { return 0 };
    let mut len = first.id.len();
    for c in &cells[1..] {
        len = first
            .id
            .bytes()
            .zip(c.id.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Keep whole characters and at least one of each id.
    let shortest = cells.iter().map(|c| c.id.len()).min().unwrap_or(0);
    let mut len = len.min(shortest.saturating_sub(1));
    while !first.id.is_char_boundary(len) {
        len -= 1;
    }
    // Cut at a separator or before digits, so `SEG-010`/`SEG-011` keep `010`, not `0`.
    first.id[..len]
        .rfind(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1)
}

/// Counts of each look, for the grid's legend.
pub fn look_counts(cells: &[Cell]) -> [usize; 4] {
    let mut counts = [0; 4];
    for c in cells {
        counts[look_index(c.look)] += 1;
    }
    counts
}

fn look_index(look: Look) -> usize {
    match look {
        Look::Untouched => 0,
        Look::Updating => 1,
        Look::Applied => 2,
        Look::Lost => 3,
    }
}

const LOOKS: [Look; 4] = [Look::Untouched, Look::Updating, Look::Applied, Look::Lost];

/// The legend with counts: `· 2 untouched  ~ 3 updating  ✓ 5 applied  ✗ 10 lost`, shorter when
/// `width` is tight.
pub fn legend(cells: &[Cell], theme: Theme, width: usize) -> Line<'static> {
    let counts = look_counts(cells);
    for level in 0..3 {
        let mut spans = Vec::new();
        for look in LOOKS {
            let n = counts[look_index(look)];
            let text = match level {
                0 => format!(" {} {n} {} ", Theme::symbol(look), Theme::word(look)),
                1 => format!(" {}{n} {}", Theme::symbol(look), Theme::word(look)),
                _ => format!(" {}{n}", Theme::symbol(look)),
            };
            spans.push(Span::styled(text, theme.look(look)));
        }
        let line = Line::from(spans);
        if line.width() < width || level == 2 {
            return line;
        }
    }
    Line::default()
}

/// The journey grid: every segment's status as Redis holds it, one cell each.
pub fn grid(area: Rect, buf: &mut Buffer, cells: &[Cell], title: Line, theme: Theme) {
    let legend_width = usize::from(area.width).saturating_sub(title.width() + 4);
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(title)
        .title(legend(cells, theme, legend_width).alignment(Alignment::Right));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let layout = GridLayout::fit(cells, inner.width, inner.height);
    let overflow = cells.len() > layout.capacity();
    let marker = if overflow {
        // The end of the last row says how many segments do not fit.
        let cells_under = 6usize.div_ceil(layout.cell_width);
        let shown = layout.capacity().saturating_sub(cells_under);
        Some((shown, format!("…+{}", cells.len() - shown)))
    } else {
        None
    };
    let shown = marker.as_ref().map_or(cells.len(), |(shown, _)| *shown);
    for (i, cell) in cells.iter().take(shown).enumerate() {
        let (col, row) = layout.place(i);
        let x = inner.x + (col * layout.cell_width) as u16;
        let y = inner.y + row as u16;
        if x >= inner.right() || y >= inner.bottom() {
            continue;
        }
        let room = inner.right() - x;
        let style = theme.look(cell.look);
        let text = match layout.mode {
            GridMode::Full => {
                let mut text = format!(
                    "{} {:<iw$} {:<sw$}",
                    Theme::symbol(cell.look),
                    cell.id,
                    cell.status,
                    iw = layout.id_width,
                    sw = layout.status_width
                );
                if let (Look::Lost, Some(by)) = (cell.look, cell.erased_by) {
                    text.push_str(&format!(" ×#{by}"));
                }
                text
            }
            GridMode::Short => format!(
                "{}{}",
                Theme::symbol(cell.look),
                cell.id.get(layout.prefix..).unwrap_or(cell.id)
            ),
            GridMode::Tiny => Theme::symbol(cell.look).to_owned(),
        };
        buf.set_stringn(x, y, text, usize::from(room), style);
    }
    if let Some((shown, text)) = marker {
        let (col, row) = layout.place(shown);
        let x = inner.x + (col * layout.cell_width) as u16;
        let y = inner.y + row as u16;
        if x < inner.right() && y < inner.bottom() {
            buf.set_stringn(x, y, text, usize::from(inner.right() - x), theme.dim());
        }
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

/// The updater lanes, from `first`: phase now and read/write marks on one shared time axis.
pub fn lanes(
    area: Rect,
    buf: &mut Buffer,
    run: &RunView,
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
            super::app::Phase::Failed => theme.bad(),
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

/// Words wrapped to `width` columns.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            lines.push(line.chars().take(width).collect());
            line = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The story, newest last: the lines that fit, from the end.
pub fn story(area: Rect, buf: &mut Buffer, lines: &[Story], hint: &str, theme: Theme) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(theme.border())
        .title(Line::styled(" Story ", theme.title()));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 8 {
        return;
    }
    let width = usize::from(inner.width);
    let mut rows: Vec<(String, Style)> = Vec::new();
    if lines.is_empty() {
        for l in wrap(hint, width) {
            rows.push((l, theme.dim()));
        }
    }
    // Only the newest lines can show; wrap from the end until the pane is full.
    for line in lines.iter().rev() {
        let style = match line {
            Story::Verdict { lost: false, .. } => theme.good(),
            Story::Verdict { lost: true, .. } => theme.bad(),
            l if l.is_loss() => theme.bad(),
            // Its updaters' outcomes are unknown: as serious as a loss to the reader.
            Story::WorkerVanished { .. } => theme.bad(),
            Story::Failed { .. } | Story::Retries { .. } => theme.busy(),
            _ => Style::new(),
        };
        let wrapped = wrap(&line.text(), width.saturating_sub(2));
        for (k, l) in wrapped.into_iter().enumerate().rev() {
            let lead = if k == 0 { "• " } else { "  " };
            rows.insert(0, (format!("{lead}{l}"), style));
        }
        if rows.len() >= usize::from(inner.height) {
            break;
        }
    }
    let skip = rows.len().saturating_sub(usize::from(inner.height));
    for (row, (text, style)) in rows.into_iter().skip(skip).enumerate() {
        buf.set_stringn(inner.x, inner.y + row as u16, text, width, style);
    }
}

/// A bar of `fraction` of `width` columns, in eighths.
pub fn bar(fraction: f64, width: usize) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    if !fraction.is_finite() || fraction <= 0.0 || width == 0 {
        return String::new();
    }
    let eighths = (fraction.min(1.0) * width as f64 * 8.0).round() as usize;
    let eighths = eighths.max(1);
    let mut text = "█".repeat(eighths / 8);
    text.push_str(EIGHTHS[eighths % 8]);
    text
}

/// The comparison: one row per strategy, filling as each run ends, with bars for lost updates and
/// throughput.
pub fn compare(
    area: Rect,
    buf: &mut Buffer,
    view: &CompareView,
    now: std::time::Instant,
    theme: Theme,
) {
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
    let fixed = [9usize, 9, 7, 8, 6, 8, 7, 9];
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
        let cells = [
            (row.strategy.name().to_owned(), theme.title()),
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
    notes.push((String::new(), Style::new()));
    for row in &view.rows {
        notes.push((
            format!("{:<9}{}", row.strategy.name(), row.strategy.how()),
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
