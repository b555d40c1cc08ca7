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

/// Whether the terminal hung up (its window was closed). SIGHUP says so too, but only to the
/// terminal's foreground process group: a racelab started by a shell that took the signal
/// itself would otherwise draw on, unseen, for ever.
pub fn hung_up() -> bool {
    #[cfg(unix)]
    {
        let mut fd = libc::pollfd {
            fd: 1,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one pollfd on our own stdout, no waiting.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }
    #[cfg(not(unix))]
    {
        false
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
