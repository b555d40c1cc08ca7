//! The story: a run's key events in plain words, newest last. Lines are kept structured
//! ([`Story`]) and worded when drawn; the `tell` functions fold bursts (a thousand reads, a
//! contended lock's retries) into one line each.

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Widget};

use super::theme::Theme;
use super::widgets::{fmt_ms, wrap};
use crate::event::RetryReason;

/// Story lines kept; older ones scroll away for good.
const STORY_KEPT: usize = 400;
/// Reads this close together are told as one line, so a thousand updaters don't flood the story.
const READ_GROUP_WINDOW: Duration = Duration::from_millis(25);

/// A segment a stale write put back: (segment, its status now, the updater whose update is gone).
pub type LostSegment = (String, String, u32);

/// One line of the story, kept structured and worded when drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Story {
    /// `first` and `count - 1` others read between `from` and `to`.
    Read {
        first: u32,
        count: u32,
        from: Duration,
        to: Duration,
        what: String,
    },
    Wrote {
        updater: u32,
        segment: String,
        status: &'static str,
        at: Duration,
    },
    /// `first` and `count - 1` others start waiting for the lock.
    WaitsForLock {
        first: u32,
        count: u32,
        at: Duration,
    },
    /// `times` retries for `reason` in a row, the latest by `updater` at `at`.
    Retries {
        updater: u32,
        attempt: u32,
        reason: RetryReason,
        at: Duration,
        times: u32,
    },
    /// `updater`'s update of `segment` failed, and `others` more failed the same way at about
    /// the same time (a worker that vanished, an interrupt: every updater in flight at once).
    Failed {
        updater: u32,
        segment: String,
        others: u32,
        unknown: bool,
        reason: String,
        at: Duration,
    },
    /// Redis shows updates gone: `eraser`'s stale copy put these segments back.
    Lost {
        eraser: Option<u32>,
        eraser_at: Option<Duration>,
        eraser_read: Option<Duration>,
        segments: Vec<LostSegment>,
        /// A user's strategy (`exec:`, `lua:`): racelab saw when the eraser's request went,
        /// not when its code read, so the eraser is told by time.
        by_time: bool,
    },
    /// Which worker runs which updaters, as the run starts: `w1 #1–#10 (pid 4242 on build-7)`.
    Workers { shares: Vec<String> },
    /// A worker went away during the run (`how`: it vanished, or left): what its updaters had
    /// not reported is unknown.
    WorkerVanished {
        worker: String,
        how: &'static str,
        updaters: String,
        why: String,
    },
    /// The run's verdict, in one sentence.
    Verdict { text: String, lost: bool },
    /// The seed test's message for one lost update, with who erased it.
    SeedMessage { text: String },
}

impl Story {
    /// The line in plain words.
    pub fn text(&self) -> String {
        match self {
            Story::Read {
                first,
                count: 1,
                from,
                what,
                ..
            } => format!("#{first} read {what} at {}", fmt_ms(*from)),
            Story::Read {
                first,
                count,
                from,
                to,
                what,
            } => format!(
                "#{first} and {} more read {what} at {}–{}",
                count - 1,
                fmt_ms(*from),
                fmt_ms(*to)
            ),
            Story::Wrote {
                updater,
                segment,
                status,
                at,
            } => format!("#{updater} wrote {segment} {status} at {}", fmt_ms(*at)),
            Story::WaitsForLock {
                first,
                count: 1,
                at,
            } => format!("#{first} waits for the lock at {}", fmt_ms(*at)),
            Story::WaitsForLock { first, count, at } => format!(
                "#{first} and {} more wait for the lock at {}",
                count - 1,
                fmt_ms(*at)
            ),
            Story::Retries {
                updater,
                attempt,
                reason,
                at,
                times,
            } => {
                let why = match reason {
                    RetryReason::Conflict => "the journey changed since its read",
                    RetryReason::LockBusy => "the lock was busy",
                };
                if *times == 1 {
                    format!(
                        "#{updater} retries (attempt {attempt}) at {}: {why}",
                        fmt_ms(*at)
                    )
                } else {
                    format!(
                        "{times} retries up to {}: {why} (latest #{updater}, attempt {attempt})",
                        fmt_ms(*at)
                    )
                }
            }
            Story::Failed {
                updater,
                segment,
                others,
                unknown,
                reason,
                at,
            } => {
                let outcome = if *unknown {
                    "outcome unknown"
                } else {
                    "not written"
                };
                if *others == 0 {
                    format!(
                        "#{updater}'s update of {segment} failed at {} ({outcome}): {reason}",
                        fmt_ms(*at)
                    )
                } else {
                    format!(
                        "#{updater}'s update of {segment} and {others} more failed at {} ({outcome}): {reason}",
                        fmt_ms(*at)
                    )
                }
            }
            Story::Lost {
                eraser,
                eraser_at,
                eraser_read,
                segments,
                by_time,
            } => {
                let what = match segments.as_slice() {
                    [(segment, status, updater)] => {
                        format!("{segment} is {status} again, #{updater}'s update lost")
                    }
                    many => {
                        let names: Vec<&str> =
                            many.iter().take(3).map(|(s, _, _)| s.as_str()).collect();
                        let more = if many.len() > 3 {
                            format!(" and {} more", many.len() - 3)
                        } else {
                            String::new()
                        };
                        let status = &many[0].1;
                        let back = if many.iter().all(|(_, s, _)| s == status) {
                            format!("back to {status}")
                        } else {
                            "back to older statuses".to_owned()
                        };
                        format!(
                            "{}{more} are {back}, {} updates lost",
                            names.join(", "),
                            many.len()
                        )
                    }
                };
                match (eraser, eraser_at, eraser_read) {
                    (Some(by), Some(at), Some(sent)) if *by_time => format!(
                        "#{by}'s update, sent at {} and landed at {}, overlapped it: {what}",
                        fmt_ms(*sent),
                        fmt_ms(*at)
                    ),
                    (Some(by), Some(at), Some(read)) => format!(
                        "#{by} wrote its stale copy (read at {}) at {}: {what}",
                        fmt_ms(*read),
                        fmt_ms(*at)
                    ),
                    _ => format!("a later write put it back: {what}"),
                }
            }
            Story::Workers { shares } => {
                format!("updaters run in workers: {}", shares.join(", "))
            }
            Story::WorkerVanished {
                worker,
                how,
                updaters,
                why,
            } => format!("worker {worker} {how}, with updaters {updaters}: {why}"),
            Story::Verdict { text, .. } | Story::SeedMessage { text } => text.clone(),
        }
    }

    pub fn is_loss(&self) -> bool {
        matches!(self, Story::Lost { .. } | Story::SeedMessage { .. })
            || matches!(self, Story::Verdict { lost: true, .. })
    }
}

pub(super) fn tell(story: &mut VecDeque<Story>, line: Story) {
    if story.len() >= STORY_KEPT {
        story.pop_front();
    }
    story.push_back(line);
}

/// Retries in a row are one line: a contended lock or journey makes hundreds.
pub(super) fn tell_retry(
    story: &mut VecDeque<Story>,
    who: u32,
    attempt: u32,
    reason: RetryReason,
    at: Duration,
) {
    if let Some(Story::Retries {
        updater,
        attempt: last_attempt,
        reason: last_reason,
        at: last_at,
        times,
    }) = story.back_mut()
        && *last_reason == reason
    {
        *updater = who;
        *last_attempt = attempt;
        *last_at = at;
        *times += 1;
        return;
    }
    tell(
        story,
        Story::Retries {
            updater: who,
            attempt,
            reason,
            at,
            times: 1,
        },
    );
}

/// Failures for the same reason together are one line: a worker that vanishes takes all its
/// updaters' updates with it.
pub(super) fn tell_failure(
    story: &mut VecDeque<Story>,
    who: u32,
    segment: String,
    unknown: bool,
    reason: &str,
    at: Duration,
) {
    if let Some(Story::Failed {
        others,
        unknown: last_unknown,
        reason: last_reason,
        at: from,
        ..
    }) = story.back_mut()
        && *last_unknown == unknown
        && last_reason == reason
        && at.saturating_sub(*from) <= READ_GROUP_WINDOW
    {
        *others += 1;
        return;
    }
    tell(
        story,
        Story::Failed {
            updater: who,
            segment,
            others: 0,
            unknown,
            reason: reason.to_owned(),
            at,
        },
    );
}

pub(super) fn tell_lock_wait(story: &mut VecDeque<Story>, who: u32, at: Duration) {
    if let Some(Story::WaitsForLock {
        count, at: from, ..
    }) = story.back_mut()
        && at.saturating_sub(*from) <= READ_GROUP_WINDOW
    {
        *count += 1;
        return;
    }
    tell(
        story,
        Story::WaitsForLock {
            first: who,
            count: 1,
            at,
        },
    );
}

pub(super) fn tell_read(story: &mut VecDeque<Story>, who: u32, at: Duration, what: String) {
    if let Some(Story::Read {
        count,
        from,
        to,
        what: group,
        ..
    }) = story.back_mut()
        && *group == what
        && at.saturating_sub(*from) <= READ_GROUP_WINDOW
    {
        *count += 1;
        *to = (*to).max(at);
        return;
    }
    tell(
        story,
        Story::Read {
            first: who,
            count: 1,
            from: at,
            to: at,
            what,
        },
    );
}

/// The story, newest last: the lines that fit, from the end.
pub fn draw(area: Rect, buf: &mut Buffer, lines: &[Story], hint: &str, theme: Theme) {
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
