//! `render(&App)`: the whole screen from the state, with no I/O and no waiting. The frame loop
//! calls it at a capped rate; tests call it on a `TestBackend`.

use std::time::Duration;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

use super::app::{App, Screen};
use super::grid::{self, Cell};
use super::run_view::{RunState, RunView};
use super::theme::Look;
use super::theme::Theme;
use super::widgets::{self, fmt_ms};
use super::{compare, lanes, step, story};

/// Below this the screen cannot say anything useful; it says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    draw(area, frame.buffer_mut(), app);
}

/// Draws the screen into `buf`: what [`render`] does, callable on any buffer.
pub fn draw(area: Rect, buf: &mut Buffer, app: &App) {
    let theme = Theme { color: app.color };
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(area, buf);
        return;
    }
    let [header_area, body, footer_area] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(1),
        Constraint::Length(2),
    ])
    .areas(area);
    header(header_area, buf, app, theme);
    match app.screen {
        Screen::Main => main_body(body, buf, app, theme),
        Screen::Compare => match &app.compare {
            Some(view) => compare::draw(body, buf, view, app.now, theme),
            None => main_body(body, buf, app, theme),
        },
    }
    footer(footer_area, buf, app, theme);
    if app.help {
        help(area, buf, theme, app.target.replicas > 0);
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = format!(
        "racelab needs at least {MIN_WIDTH}×{MIN_HEIGHT}; this terminal is {}×{}. Enlarge it, or press q to quit.",
        area.width, area.height
    );
    let lines: Vec<Line> = widgets::wrap(&text, usize::from(area.width.max(1)))
        .into_iter()
        .map(Line::from)
        .collect();
    Paragraph::new(lines).render(area, buf);
}

fn header(area: Rect, buf: &mut Buffer, app: &App, theme: Theme) {
    // While a run goes on, its own settings; between runs, what the next run will use.
    let running = app.run.as_ref().filter(|r| r.running());
    let (strategy, workload) = match running {
        Some(run) => (run.strategy, &run.workload),
        None => (app.strategy, &app.workload),
    };
    let mut rounds = if workload.rounds == 1 {
        "1 round".to_owned()
    } else {
        format!("{} rounds", workload.rounds)
    };
    if workload.scenario == crate::workload::Scenario::WriteSkew {
        rounds.push_str(" · write skew");
    }
    let think = if running.is_some() && app.step.is_some() {
        // The presenter is the clock: there is no think time to show.
        "stepped by you".to_owned()
    } else if strategy.exec_command().is_some() {
        // A user's service pauses where it pauses: racelab's think time is not used.
        "the service's own pace".to_owned()
    } else if workload.jitter > 0.0 && !workload.think.is_zero() {
        format!(
            "think {}–{}",
            fmt_ms(workload.think),
            fmt_ms(workload.think.mul_f64(1.0 + workload.jitter))
        )
    } else {
        format!("think {}", fmt_ms(workload.think))
    };
    let mut updaters = format!(
        "{} updater{}",
        workload.updaters,
        if workload.updaters == 1 { "" } else { "s" }
    );
    // The workers of the run going on (its plan), else how many the next run gets.
    let workers = match running {
        Some(run) if !run.workers.is_empty() => Some(run.workers.len() as u32),
        _ => app.workers,
    };
    match workers {
        // Runs can no longer be made: the footer's error says so when one is tried.
        Some(0) => updaters.push_str(", every worker vanished"),
        Some(k) => updaters.push_str(&format!(" in {k} worker{}", if k == 1 { "" } else { "s" })),
        None => {}
    }
    let settings_line = |parts: &[&str]| {
        Line::from(vec![
            Span::styled("racelab ", theme.title()),
            Span::styled(
                format!(" {} ", strategy.name()),
                theme
                    .strong()
                    .add_modifier(ratatui::style::Modifier::REVERSED),
            ),
            Span::raw(format!("  {}", parts.join(" · "))),
        ])
    };
    let segments = crate::output::counted(workload.segments(), "segment");
    let mut line1 = settings_line(&[&updaters, &segments, &rounds, &think]);
    // One round is the default and goes without saying when the line is too long for the
    // screen (the workers make it so at 80 columns).
    if line1.width() > usize::from(area.width) && workload.rounds == 1 {
        line1 = settings_line(&[&updaters, &segments, &think]);
    }
    let redis = match (&app.target.cluster, app.target.private) {
        // Short, so the run state after it still fits 80 columns: the slot and its node are
        // what a cluster demo points at; the seed nodes are in the report.
        (Some(place), _) => format!(
            "Redis {} cluster · slot {} on {}",
            app.target.version, place.slot, place.node
        ),
        (None, true) => format!("Redis {} (private redis-server)", app.target.version),
        (None, false) => format!("Redis {} at {}", app.target.version, app.target.display),
    };
    let mut line2 = vec![Span::styled(redis, theme.dim()), Span::raw(" · ")];
    line2.extend(run_state(app, theme));
    let line3 = Line::from(vec![
        Span::styled(format!("{}: ", strategy.name()), theme.dim()),
        Span::styled(strategy.how(), theme.dim()),
    ]);
    Paragraph::new(vec![line1, Line::from(line2), line3]).render(area, buf);
}

fn run_state(app: &App, theme: Theme) -> Vec<Span<'static>> {
    if let Some(c) = &app.compare
        && (c.running || app.screen == Screen::Compare)
    {
        let elapsed = c
            .finished
            .unwrap_or(app.now)
            .saturating_duration_since(c.started);
        return if c.running {
            vec![Span::styled(
                format!("● comparing {}", secs(elapsed)),
                theme.busy(),
            )]
        } else {
            vec![Span::raw(format!("comparison done in {}", secs(elapsed)))]
        };
    }
    let Some(run) = &app.run else {
        return vec![Span::raw(format!(
            "idle: press Enter to run {}",
            app.strategy
        ))];
    };
    let elapsed = secs(run.elapsed(app.now));
    match &run.state {
        RunState::Running => vec![Span::styled(
            format!("● running {} {elapsed}", run.strategy),
            theme.busy(),
        )],
        RunState::Done if run.invariant_broken == Some(true) => vec![
            Span::raw(format!("{} done in {elapsed}: ", run.strategy)),
            Span::styled("invariant broken", theme.bad()),
        ],
        RunState::Done if run.lost() > 0 => vec![
            Span::raw(format!("{} done in {elapsed}: ", run.strategy)),
            Span::styled(
                format!("{} of {} updates lost", run.lost(), run.tally.acknowledged),
                theme.bad(),
            ),
        ],
        RunState::Done => vec![
            Span::raw(format!("{} done in {elapsed}: ", run.strategy)),
            Span::styled("no update lost", theme.good()),
        ],
        // The header has one line: the reason's first clause ("worker w2 vanished"); the story
        // tells it whole.
        RunState::Stopped(reason) => vec![Span::styled(
            format!(
                "{} stopped after {elapsed}: {}",
                run.strategy,
                reason.split(" (").next().unwrap_or(reason)
            ),
            theme.busy(),
        )],
        RunState::Failed(reason) => vec![Span::styled(
            format!("{} failed: {reason}", run.strategy),
            theme.bad(),
        )],
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main_body(area: Rect, buf: &mut Buffer, app: &App, theme: Theme) {
    let run = app.run.as_ref();
    let updating = run.map(RunView::updating).unwrap_or_default();
    let cells: Vec<Cell> = match run {
        Some(run) => run
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| Cell {
                id: &s.id,
                status: &s.status,
                look: run.look(i, &updating),
                erased_by: s.erased_by,
            })
            .collect(),
        None => app
            .workload
            .journey
            .segments
            .iter()
            .map(|s| Cell {
                id: &s.segment_id,
                status: &s.status,
                look: Look::Untouched,
                erased_by: None,
            })
            .collect(),
    };
    // The grid gets what it needs up to half the body; lanes and story share the rest.
    let max_grid_rows = (area.height.saturating_sub(1) / 2).max(2);
    let layout = grid::GridLayout::fit(&cells, area.width, max_grid_rows);
    let grid_height = layout.rows as u16 + 1;
    let [grid_area, rest] =
        Layout::vertical([Constraint::Length(grid_height), Constraint::Min(0)]).areas(area);
    // The journey id is worth its room only on a wide screen.
    let journey = if area.width >= 100 {
        format!("Journey {}", app.workload.journey.id)
    } else {
        "Journey".to_owned()
    };
    let title = match (run, &app.step) {
        (Some(run), Some(step)) if !step.taken.is_empty() => {
            let when = if run.running() { "now" } else { "at the end" };
            format!(
                " {journey} in Redis {when}, after step {} · {} ",
                step.taken.len(),
                run.strategy
            )
        }
        _ => String::new(),
    };
    let title = match run {
        _ if !title.is_empty() => title,
        Some(run) if run.running() && !run.observed => {
            format!(" {journey} · {} · seeding ", run.strategy)
        }
        Some(run) if run.running() => {
            format!(
                " {journey} {} now · {} ",
                held_by(run.strategy),
                run.strategy
            )
        }
        Some(run) => format!(
            " {journey} {} after {} ",
            held_by(run.strategy),
            run.strategy
        ),
        None => format!(" {journey} "),
    };
    grid::draw(
        grid_area,
        buf,
        &cells,
        Line::styled(title, theme.title()),
        theme,
    );

    let lanes_share = if rest.width >= 120 { 45 } else { 50 };
    let [lanes_area, story_area] = Layout::horizontal([
        Constraint::Percentage(lanes_share),
        Constraint::Percentage(100 - lanes_share),
    ])
    .spacing(1)
    .areas(rest);
    match (run, &app.step) {
        (Some(run), Some(steps)) => {
            step::draw_panel(lanes_area, buf, steps, app.lane_scroll, app.now, theme);
            let mut tail: Vec<String> = run
                .story
                .iter()
                .filter(|s| matches!(s, story::Story::Verdict { .. }))
                .map(story::Story::text)
                .collect();
            if !run.running() && !steps.taken.is_empty() {
                let repeat = steps.repeat_command(run.strategy, &run.workload);
                tail.push(if steps.went_free {
                    format!("The steps before f: {repeat} (the rest ran free; there it runs one step at a time)")
                } else {
                    format!("Repeat it: {repeat}")
                });
            }
            if steps.lines.is_empty() && steps.ready() {
                tail.push(step_hint(steps));
            }
            step::draw_story(story_area, buf, steps, &tail, theme);
        }
        (Some(run), None) => {
            lanes::draw(
                lanes_area,
                buf,
                &run.lanes(),
                app.lane_scroll,
                run.clock(app.now),
                theme,
            );
            let lines: Vec<_> = run.story.iter().cloned().collect();
            story::draw(story_area, buf, &lines, "", theme);
        }
        (None, _) => {
            let block = Block::new()
                .borders(ratatui::widgets::Borders::TOP)
                .border_style(theme.border())
                .title(Line::styled(
                    format!(" Updaters ({}) ", app.workload.updaters),
                    theme.title(),
                ));
            let inner = block.inner(lanes_area);
            block.render(lanes_area, buf);
            let place = match app.workers {
                Some(k) if k > 0 => format!(
                    ", spread over {k} worker process{},",
                    if k == 1 { "" } else { "es" }
                ),
                _ => String::new(),
            };
            let text = format!(
                "{}{place} will each change one segment: read, think, write. Their reads and writes show here on one time axis.",
                crate::output::counted(app.workload.updaters, "updater")
            );
            for (k, line) in widgets::wrap(&text, usize::from(inner.width))
                .into_iter()
                .enumerate()
            {
                if k as u16 >= inner.height {
                    break;
                }
                buf.set_stringn(
                    inner.x,
                    inner.y + k as u16,
                    line,
                    usize::from(inner.width),
                    theme.dim(),
                );
            }
            let hint = format!(
                "Press Enter to run {}. Every cell above is a segment as Redis holds it. Watch for ✗: an update Redis acknowledged, then lost to a stale write.",
                app.strategy
            );
            story::draw(story_area, buf, &[], &hint, theme);
        }
    }
}

/// Where the grid's journey is read from: Redis, or a user's journey service (`exec:`).
fn held_by(strategy: crate::strategy::Strategy) -> &'static str {
    match strategy.exec_command() {
        Some(_) => "as your service reads it",
        None => "in Redis",
    }
}

/// What the presenter can do, before the first step.
fn step_hint(steps: &step::StepView) -> String {
    format!(
        "Each updater waits before every Redis command. Pick one (1-9 or ↑↓; ▶ marks #{}) and press Space: it sends its command, Redis answers, and the grid shows what Redis holds. u undoes, t lets time pass, f runs the rest free.",
        steps.selected
    )
}

fn footer(area: Rect, buf: &mut Buffer, app: &App, theme: Theme) {
    let stats = match (app.screen, &app.run) {
        (Screen::Main, Some(run)) => stats_line(run, app, theme, usize::from(area.width)),
        _ => Line::default(),
    };
    let keys = match app.notice_text() {
        Some(notice) => Line::styled(notice.to_owned(), theme.busy()),
        None if app.in_step_mode() => hints(STEP_KEYS, theme, usize::from(area.width)),
        None => hints(MAIN_KEYS, theme, usize::from(area.width)),
    };
    Paragraph::new(vec![stats, keys]).render(area, buf);
}

fn stats_line(run: &RunView, app: &App, theme: Theme, width: usize) -> Line<'static> {
    let t = &run.tally;
    let lost = run.lost();
    let lost_style = if lost > 0 { theme.bad() } else { theme.good() };
    let latency = |q: f64| fmt_ms(Duration::from_secs_f64(t.latency_ms(q) / 1000.0));
    let rate = format!("{:.0}", run.updates_per_s(app.now));
    for long in [true, false] {
        let (acked, gap, per_s) = if long {
            ("acknowledged", "  ", " updates/s")
        } else {
            ("acked", " ", "/s")
        };
        let spans = vec![
            Span::raw(format!(
                "{acked} {}{gap}applied {}{gap}",
                t.acknowledged,
                run.applied()
            )),
            Span::styled(format!("lost {lost}"), lost_style),
            Span::raw(format!(
                "{gap}unknown {}{gap}retries {}{gap}│ {rate}{per_s}{gap}p50 {}{gap}p99 {}",
                t.unknown,
                t.retries,
                latency(0.5),
                latency(0.99)
            )),
        ];
        let line = Line::from(spans);
        if line.width() <= width || !long {
            return line;
        }
    }
    Line::default()
}

/// The footer's keys: each with what it does, and shorter forms for narrow screens.
struct Hints {
    keys: &'static [(&'static str, &'static str)],
    short: &'static str,
    shortest: &'static str,
}

const MAIN_KEYS: Hints = Hints {
    keys: &[
        ("Enter", "run"),
        ("p", "step"),
        ("s", "strategy"),
        ("+/-", "updaters"),
        ("t/T", "think"),
        ("c", "compare"),
        ("?", "help"),
        ("q", "quit"),
    ],
    short: "Enter run · p step · s strategy · +/- n · t/T think · c compare · ? · q quit",
    shortest: "Enter run  p step  s strat  +/- n  t/T think  c cmp  ? help  q",
};

const STEP_KEYS: Hints = Hints {
    keys: &[
        ("1-9/↑↓", "pick"),
        ("Space", "step"),
        ("u", "undo"),
        ("t", "time passes"),
        ("f", "run free"),
        ("r", "start over"),
        ("p", "leave"),
        ("?", "help"),
        ("q", "quit"),
    ],
    short: "1-9 pick · Space step · u undo · t time · f free · r restart · p leave · ? · q",
    shortest: "1-9 pick  Spc step  u undo  t time  f free  r again  p leave  q",
};

fn hints(hints: Hints, theme: Theme, width: usize) -> Line<'static> {
    let mut spans = Vec::new();
    for (k, (key, what)) in hints.keys.iter().enumerate() {
        if k > 0 {
            spans.push(Span::styled(" · ", theme.dim()));
        }
        spans.push(Span::styled((*key).to_owned(), theme.key()));
        spans.push(Span::raw(format!(" {what}")));
    }
    let line = Line::from(spans);
    if line.width() <= width {
        return line;
    }
    if hints.short.chars().count() <= width {
        return Line::styled(hints.short, theme.key());
    }
    Line::styled(hints.shortest, theme.key())
}

/// Every key, one line each, and what the grid's symbols mean.
pub const HELP: &[(&str, &str)] = &[
    ("Enter / r", "run the selected strategy"),
    ("s / Tab", "next strategy (S / Shift-Tab: previous)"),
    ("+ / -", "more / fewer updaters"),
    ("t / T", "slower / faster think time"),
    ("c", "compare every strategy (c again: back)"),
    ("p", "step mode: you pick who takes each step"),
    ("  1-9 / ↑ ↓", "step mode: pick the updater that goes next"),
    (
        "  Space / Enter",
        "step mode: it takes its step (one Redis command)",
    ),
    (
        "  u / Backspace",
        "step mode: undo the last step (replayed on fresh keys)",
    ),
    ("  t", "step mode: time passes, the lock's ttl runs out"),
    ("  f", "step mode: the rest runs free"),
    ("  r", "step mode: start over"),
    ("  p", "step mode: leave it"),
    ("↑ ↓ PgUp PgDn", "scroll the updater lanes"),
    ("?", "this help (any key closes it)"),
    ("q / Esc / Ctrl-C", "quit"),
];

/// The key only a run with replicas has (`--replicas`), shown only then.
pub const FAILOVER_HELP: (&str, &str) = ("F", "fail over now: promote the replica mid-run");

fn help(area: Rect, buf: &mut Buffer, theme: Theme, replicas: bool) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .chain(replicas.then_some(&FAILOVER_HELP))
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<17}"), theme.key()),
                Span::raw((*what).to_owned()),
            ])
        })
        .collect();
    lines.push(Line::default());
    for look in [Look::Untouched, Look::Updating, Look::Applied, Look::Lost] {
        let meaning = match look {
            Look::Untouched => "no update yet",
            Look::Updating => "an updater is reading, thinking or writing it",
            Look::Applied => "Redis holds every acknowledged update",
            Look::Lost => "acknowledged, then erased (×#n: by whose stale write)",
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(" {} {:<15}", Theme::symbol(look), Theme::word(look)),
                theme.look(look),
            ),
            Span::raw(meaning),
        ]));
    }
    let width = lines
        .iter()
        .map(Line::width)
        .max()
        .unwrap_or(40)
        .min(usize::from(area.width.saturating_sub(4))) as u16
        + 3;
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height.saturating_sub(height) / 2,
        width: width.min(area.width),
        height,
    };
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .block(
            Block::bordered()
                .border_style(theme.strong())
                .title(Line::styled(" racelab keyboard ", theme.title())),
        )
        .style(Style::new())
        .render(popup, buf);
}
