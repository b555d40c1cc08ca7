//! Everything racelab prints goes through here, so a closed pipe, a full disk or a closed stdout
//! is handled the same way everywhere: `racelab run | head -3` ends quietly, `racelab run >
//! /dev/full` is one sentence and exit 2, and nothing panics. (`print!` and `eprintln!` panic when
//! a write fails, and Rust's stdout treats a closed descriptor as a bottomless sink.)

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Whether stdout may have been closed when racelab started (`racelab run >&-`), and nobody has
/// been told yet.
static STDOUT_NOWHERE: AtomicBool = AtomicBool::new(false);

/// Called first thing in `main`: notes whether racelab's stdout may have been closed.
///
/// Rust's runtime puts `/dev/null`, opened read-write, on a standard descriptor that is closed
/// before `main` runs (so no file or socket can take its place). That is exactly what a program
/// that discards the output on purpose gives too (Python's `subprocess.DEVNULL`), so the two
/// cannot be told apart: both run, their report going nowhere, and the exit code still says the
/// verdict (README "Safety").
pub fn guard_standard_streams() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let (Ok(stdout), Ok(null)) = (
            std::fs::metadata("/proc/self/fd/1").or_else(|_| std::fs::metadata("/dev/fd/1")),
            std::fs::metadata("/dev/null"),
        ) else {
            return;
        };
        // SAFETY: fcntl(F_GETFL) only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
        let read_write = flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDWR;
        if stdout.file_type().is_char_device() && stdout.rdev() == null.rdev() && read_write {
            STDOUT_NOWHERE.store(true, Ordering::SeqCst);
        }
    }
}

/// Before any work is done: if stdout may have been closed and a person is watching stderr,
/// says once that the `what` will go nowhere. Never a refusal: a program that discards the
/// report on purpose looks the same (see [`guard_standard_streams`]).
pub fn check_stdout(what: &str) -> Result<(), Error> {
    if STDOUT_NOWHERE.swap(false, Ordering::SeqCst) && std::io::stderr().is_terminal() {
        stderr(&format!(
            "racelab: stdout is /dev/null or was closed, so the {what} goes nowhere (--output FILE keeps it); the exit code still gives the verdict\n"
        ));
    }
    Ok(())
}

/// Writes `text` to stdout. A reader that went away (a broken pipe: `| head`) is not an error,
/// as for any command-line tool; anything else (a full disk) is one.
pub fn stdout(text: &str, what: &str) -> Result<(), Error> {
    check_stdout(what)?;
    // A progress line on the same terminal would run into the report's first line.
    if PROGRESS_SHOWN.swap(false, Ordering::SeqCst) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(WIPE).and_then(|()| err.flush());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Output {
            path: "stdout".to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Writes a message to stderr. Failures are ignored: there is nowhere left to report them. A
/// progress line on the terminal is wiped first, so the message starts a clean line.
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let wipe: &[u8] = if PROGRESS_SHOWN.swap(false, Ordering::SeqCst) {
        WIPE
    } else {
        b""
    };
    let _ = err
        .write_all(wipe)
        .and_then(|()| err.write_all(text.as_bytes()))
        .and_then(|()| err.flush());
}

/// Back to the start of the line, and erase it.
const WIPE: &[u8] = b"\r\x1b[2K";

/// Whether a progress line is on the terminal now, to be wiped before anything else is written.
static PROGRESS_SHOWN: AtomicBool = AtomicBool::new(false);

/// Long work's one-line progress on stderr (README "Progress"): redrawn in place with `\r` when
/// stderr is a terminal, never written otherwise, so logs and pipes get only the report and the
/// messages. Work done within half a second shows nothing; the line is wiped when dropped.
pub struct Progress {
    terminal: bool,
    started: Instant,
    grace: Duration,
    drawn: Option<Instant>,
}

/// Nothing is drawn before this: short work has no progress to show, only flicker.
const PROGRESS_GRACE: Duration = Duration::from_millis(500);
/// Redrawn at most this often: prove reports thousands of schedules a second.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl Progress {
    /// Progress for stderr as it is: drawn only when it is a terminal.
    pub fn on_terminal() -> Progress {
        Progress::new(std::io::stderr().is_terminal())
    }

    pub fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            started: Instant::now(),
            grace: PROGRESS_GRACE,
            drawn: None,
        }
    }

    /// Drawn from the first step: for work that is always long (a bench cell lasts a second).
    pub fn at_once(mut self) -> Progress {
        self.grace = Duration::ZERO;
        self
    }

    /// Whether progress is drawn at all (stderr is a terminal).
    pub fn shown(&self) -> bool {
        self.terminal
    }

    /// Shows `text` in place of the previous line, at most ten times a second.
    pub fn show(&mut self, text: &str) {
        let now = Instant::now();
        if self
            .drawn
            .is_some_and(|drawn| now.duration_since(drawn) < PROGRESS_EVERY)
        {
            return;
        }
        self.draw(text, now);
    }

    /// Shows `text` now: the start of a new step, which must not wait for the next redraw.
    pub fn step(&mut self, text: &str) {
        self.draw(text, Instant::now());
    }

    fn draw(&mut self, text: &str, now: Instant) {
        if !self.terminal || now.duration_since(self.started) < self.grace {
            return;
        }
        self.drawn = Some(now);
        // One line, never wrapped: a wrapped line would not be wiped by the next `\r`.
        // A terminal that does not know its size (0 columns) gets 80.
        let width = crossterm::terminal::size()
            .ok()
            .filter(|(columns, _)| *columns > 0)
            .map_or(80, |(columns, _)| columns as usize);
        let line: String = text.chars().take(width.saturating_sub(1)).collect();
        let mut err = std::io::stderr().lock();
        let _ = err
            .write_all(WIPE)
            .and_then(|()| err.write_all(line.as_bytes()))
            .and_then(|()| err.flush());
        PROGRESS_SHOWN.store(true, Ordering::SeqCst);
    }

    /// Wipes the line, before the report or when the work is done.
    pub fn clear(&mut self) {
        if PROGRESS_SHOWN.swap(false, Ordering::SeqCst) {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(WIPE).and_then(|()| err.flush());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `n` things, in words: `1 segment`, `20 segments` (nouns that add an s).
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `eprintln!` that never panics (see [`stderr`]).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics (see [`stderr`]).
#[macro_export]
macro_rules! note_inline {
    ($($arg:tt)*) => {
        $crate::output::stderr(&format!($($arg)*))
    };
}
