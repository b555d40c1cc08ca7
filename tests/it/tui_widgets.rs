//! The screen's parts drawn into a `Buffer`: the grid, the lanes, the story, bars.

use crate::tui_support;

use std::collections::VecDeque;
use std::time::Duration;

use racelab::tui::grid::{self, Cell, GridLayout, GridMode};
use racelab::tui::lanes::{self, Axis, Mark};
use racelab::tui::story::{self, Story};
use racelab::tui::theme::Look;
use racelab::tui::theme::Theme;
use racelab::tui::widgets;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;

use crate::tui_support::screen_text;

const PLAIN: Theme = Theme { color: false };

fn cells(n: usize) -> (Vec<String>, Vec<Look>) {
    let ids = (1..=n).map(|i| format!("SEG-{i:03}")).collect();
    let looks = (0..n)
        .map(|i| [Look::Untouched, Look::Updating, Look::Applied, Look::Lost][i % 4])
        .collect();
    (ids, looks)
}

fn as_cells<'a>(ids: &'a [String], looks: &[Look]) -> Vec<Cell<'a>> {
    ids.iter()
        .zip(looks)
        .map(|(id, &look)| Cell {
            id,
            status: if look == Look::Applied {
                "Boarding"
            } else {
                "Scheduled"
            },
            look,
            erased_by: (look == Look::Lost).then_some(17),
        })
        .collect()
}

#[test]
fn the_grid_shows_each_look_with_its_own_symbol() {
    let (ids, looks) = cells(4);
    let cells = as_cells(&ids, &looks);
    let area = Rect::new(0, 0, 80, 3);
    let mut buf = Buffer::empty(area);
    grid::draw(area, &mut buf, &cells, Line::from(" Journey "), PLAIN);
    let text = screen_text(&buf);
    assert!(text.contains("· SEG-001 Scheduled"), "{text}");
    assert!(text.contains("~ SEG-002 Scheduled"), "{text}");
    assert!(text.contains("✓ SEG-003 Boarding"), "{text}");
    assert!(text.contains("✗ SEG-004 Scheduled ×#17"), "{text}");
    // The legend counts each look.
    assert!(text.contains("1 untouched"), "{text}");
    assert!(text.contains("1 lost"), "{text}");
}

#[test]
fn a_thousand_segments_fit_as_one_symbol_each() {
    let (ids, looks) = cells(1000);
    let thousand = as_cells(&ids, &looks);
    let layout = GridLayout::fit(&thousand, 78, 13);
    assert_eq!(layout.mode, GridMode::Tiny);
    assert!(layout.capacity() >= 1000);
    // Where even that is too much, the last cell says how many are not shown.
    let area = Rect::new(0, 0, 40, 6);
    let mut buf = Buffer::empty(area);
    grid::draw(area, &mut buf, &thousand, Line::from(" J "), PLAIN);
    let text = screen_text(&buf);
    assert!(text.contains("…+"), "{text}");
    // A middling count keeps short ids.
    let (ids, looks) = cells(100);
    let hundred = as_cells(&ids, &looks);
    let layout = GridLayout::fit(&hundred, 78, 8);
    assert_eq!(layout.mode, GridMode::Short);
    let area = Rect::new(0, 0, 78, 9);
    let mut buf = Buffer::empty(area);
    grid::draw(area, &mut buf, &hundred, Line::from(" J "), PLAIN);
    assert!(screen_text(&buf).contains("✗100"));
}

#[test]
fn lanes_mark_reads_writes_and_losses_on_one_axis() {
    let axis = Axis::new(Duration::from_millis(900), 20);
    assert_eq!(axis.span, Duration::from_secs(1));
    let marks: VecDeque<Mark> = [Mark {
        began: Some(Duration::ZERO),
        read: Some(Duration::from_millis(0)),
        write: Some(Duration::from_millis(500)),
        lost: true,
        erased: false,
    }]
    .into();
    let run = {
        let base = std::time::Instant::now();
        let mut app = tui_support::app(base);
        tui_support::play_naive(&mut app, base, 2);
        app.run.unwrap()
    };
    let mut updater = run.updaters[0].clone();
    updater.marks = marks;
    let row: String = lanes::lane_marks(&updater, axis, Duration::from_millis(900), PLAIN)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(row, "R─────────✗         ");
    updater.marks[0].lost = false;
    updater.marks[0].erased = true;
    let row: String = lanes::lane_marks(&updater, axis, Duration::from_millis(900), PLAIN)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(row, "R─────────S         ");
    // A read still thinking stretches to now.
    updater.marks[0].write = None;
    let row: String = lanes::lane_marks(&updater, axis, Duration::from_millis(300), PLAIN)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(row, "R──────             ");
    // A strategy that writes without reading: its think window, no R.
    updater.marks[0] = Mark {
        began: Some(Duration::from_millis(100)),
        read: None,
        write: Some(Duration::from_millis(400)),
        lost: false,
        erased: false,
    };
    let row: String = lanes::lane_marks(&updater, axis, Duration::from_millis(900), PLAIN)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(row, "  ──────W           ");
}

#[test]
fn the_lanes_widget_scrolls_and_labels_phases() {
    let base = std::time::Instant::now();
    let mut app = tui_support::app(base);
    tui_support::play_naive(&mut app, base, 2);
    let run = app.run.unwrap();
    let area = Rect::new(0, 0, 60, 6);
    let mut buf = Buffer::empty(area);
    lanes::draw(
        area,
        &mut buf,
        &run.lanes(),
        5,
        Duration::from_millis(800),
        PLAIN,
    );
    let text = screen_text(&buf);
    assert!(text.contains("Updaters 6–10 of 20"), "{text}");
    assert!(text.contains("#6"), "{text}");
    assert!(text.contains("thinking"), "{text}");
    assert!(!text.contains("#5 "), "{text}");
}

#[test]
fn the_story_shows_the_newest_lines_wrapped() {
    let lines: Vec<Story> = (0..30)
        .map(|i| Story::Verdict {
            text: format!("line {i} with enough words to need wrapping in a narrow pane"),
            lost: false,
        })
        .collect();
    let area = Rect::new(0, 0, 30, 6);
    let mut buf = Buffer::empty(area);
    story::draw(area, &mut buf, &lines, "", PLAIN);
    let text = screen_text(&buf);
    assert!(text.contains("line 29"), "{text}");
    assert!(!text.contains("line 20 "), "{text}");
    assert!(text.lines().last().unwrap().contains("pane"), "{text}");
}

#[test]
fn wrap_and_bars() {
    assert_eq!(
        widgets::wrap("one two three four", 9),
        vec!["one two", "three", "four"]
    );
    assert_eq!(widgets::bar(0.5, 4), "██");
    assert_eq!(widgets::bar(0.0, 4), "");
    assert_eq!(widgets::bar(0.125, 4), "▌");
    assert_eq!(widgets::bar(2.0, 3), "███");
}

#[test]
fn a_lane_without_room_for_its_axis_draws_nothing_rather_than_panicking() {
    let base = std::time::Instant::now();
    let mut app = tui_support::app(base);
    tui_support::play_naive(&mut app, base, 3);
    let run = app.run.unwrap();
    let axis = Axis::new(Duration::from_secs(1), 0);
    for u in &run.updaters {
        assert!(lanes::lane_marks(u, axis, Duration::from_secs(1), PLAIN).is_empty());
    }
    let area = Rect::new(0, 0, 12, 5);
    let mut buf = Buffer::empty(area);
    lanes::draw(
        area,
        &mut buf,
        &run.lanes(),
        0,
        Duration::from_secs(1),
        PLAIN,
    );
}

#[test]
fn colour_and_no_colour_both_set_lost_cells_apart() {
    use ratatui::style::{Color, Modifier};
    let (ids, looks) = cells(4);
    let cells = as_cells(&ids, &looks);
    let area = Rect::new(0, 0, 80, 3);
    for (theme, check) in [
        (
            Theme { color: true },
            Box::new(|c: &ratatui::buffer::Cell| c.fg == Color::Red) as Box<dyn Fn(&_) -> bool>,
        ),
        (
            PLAIN,
            Box::new(|c: &ratatui::buffer::Cell| {
                c.modifier.contains(Modifier::REVERSED) && c.fg == Color::Reset
            }),
        ),
    ] {
        let mut buf = Buffer::empty(area);
        grid::draw(area, &mut buf, &cells, Line::from(" J "), theme);
        // SEG-004 is lost: second column, second row.
        let text = screen_text(&buf);
        let row = text.lines().nth(2).unwrap();
        let col = row.find('✗').map(|b| row[..b].chars().count()).unwrap() as u16;
        assert!(
            check(&buf[(col, 2)]),
            "color={}: {:?}",
            theme.color,
            buf[(col, 2)]
        );
        // An untouched cell looks different from a lost one either way.
        assert_ne!(buf[(0, 1)].style(), buf[(col, 2)].style());
    }
}

#[test]
fn a_lane_tags_its_worker_in_red_once_that_worker_vanished() {
    let base = std::time::Instant::now();
    let app = tui_support::vanished_worker_run(base);
    let run = app.run.unwrap();
    let area = Rect::new(0, 0, 60, 21);
    let mut buf = Buffer::empty(area);
    let color = Theme { color: true };
    lanes::draw(
        area,
        &mut buf,
        &run.lanes(),
        0,
        Duration::from_secs(2),
        color,
    );
    let text = screen_text(&buf);
    assert!(text.contains("#1  w1 "), "{text}");
    assert!(text.contains("#20 w2 failed"), "{text}");
    // Row 1 is #1 (w1, alive), row 11 is #11 (w2, vanished); the tag starts at column 4.
    assert_eq!(buf[(4, 1)].symbol(), "w");
    assert_eq!(buf[(4, 1)].style().fg, color.worker().fg);
    assert_eq!(buf[(4, 11)].symbol(), "w");
    assert_eq!(buf[(4, 11)].style().fg, color.bad().fg);
    assert_ne!(color.worker().fg, color.bad().fg);
}
