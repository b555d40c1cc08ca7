//! The journey grid: how each segment looks ([`Look`]) and the cells that show every segment as
//! Redis holds it, as rich as the room allows.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use super::theme::{Look, Theme};

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
pub fn draw(area: Rect, buf: &mut Buffer, cells: &[Cell], title: Line, theme: Theme) {
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
