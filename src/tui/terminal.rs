//! Entering and leaving the terminal's full-screen mode. The guard restores the terminal when it
//! is dropped, so a `q`, an error returned through `?` and an unwinding panic all leave the shell
//! usable; ratatui's panic hook restores it before the panic message prints.

use std::io::IsTerminal;

use ratatui::DefaultTerminal;

use crate::error::Error;

/// The terminal in full-screen mode, for as long as this guard lives.
pub struct TerminalGuard {
    pub terminal: DefaultTerminal,
}

impl TerminalGuard {
    pub fn enter() -> Result<TerminalGuard, Error> {
        let terminal = ratatui::try_init().map_err(|e| {
            ratatui::restore();
            Error::Usage(format!(
                "cannot draw on this terminal ({e}); use `racelab run` for a headless report"
            ))
        })?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Whether a TUI can be drawn here: stdout must be a terminal, or the screen would be garbage in
/// a file or a pipe.
pub fn available() -> bool {
    std::io::stdout().is_terminal()
}

/// Colours unless the user asked for none (no-color.org).
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
