//! Looks of the screen. Every meaning has a symbol as well as a colour, so the screen reads the
//! same with `NO_COLOR` and for people who don't tell red from green; without colour, modifiers
//! (bold, dim, reversed) stand in for it.

use ratatui::style::{Color, Modifier, Style};

/// How a segment looks: in the grid, in the lanes, in the legends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Untouched,
    Updating,
    Applied,
    Lost,
}

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn symbol(look: Look) -> &'static str {
        match look {
            Look::Untouched => "·",
            Look::Updating => "~",
            Look::Applied => "✓",
            Look::Lost => "✗",
        }
    }

    pub fn word(look: Look) -> &'static str {
        match look {
            Look::Untouched => "untouched",
            Look::Updating => "updating",
            Look::Applied => "applied",
            Look::Lost => "lost",
        }
    }

    pub fn look(self, look: Look) -> Style {
        match (look, self.color) {
            (Look::Untouched, true) => Style::new().fg(Color::DarkGray),
            (Look::Untouched, false) => Style::new().add_modifier(Modifier::DIM),
            (Look::Updating, true) => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            (Look::Updating, false) => Style::new().add_modifier(Modifier::BOLD),
            (Look::Applied, true) => Style::new().fg(Color::Green),
            (Look::Applied, false) => Style::new(),
            (Look::Lost, true) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            (Look::Lost, false) => Style::new().add_modifier(Modifier::REVERSED),
        }
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn strong(self) -> Style {
        if self.color {
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn bad(self) -> Style {
        self.look(Look::Lost)
    }

    pub fn good(self) -> Style {
        if self.color {
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn busy(self) -> Style {
        self.look(Look::Updating)
    }

    pub fn key(self) -> Style {
        if self.color {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    /// A lane's worker tag (`w2`): a colour of its own, so the lanes of one worker stand out
    /// from the phases and marks beside them; the tag's text says it either way.
    pub fn worker(self) -> Style {
        if self.color {
            Style::new().fg(Color::Magenta)
        } else {
            Style::new()
        }
    }

    pub fn border(self) -> Style {
        self.dim()
    }
}
