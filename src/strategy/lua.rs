//! `lua`: the seed's whole read-modify-write runs inside Redis as one script
//! (`assets/update_segment.lua`), so no other command can come between its read and its write.
//! `redis::Script` sends EVALSHA and falls back to loading the script on NOSCRIPT, so a server
//! restart or a SCRIPT FLUSH in the middle of a run costs one extra round trip, not an error.

use std::sync::LazyLock;

use crate::target::Conn;
use redis::Script;

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus, invoke};
use crate::error::Error;
use crate::event::Probe;
use crate::event::WriteScope;
use crate::schedule::{Role, Step};

static UPDATE_SEGMENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/update_segment.lua")));

/// The Lua source of the update, shared with the `function` strategy's library.
pub const UPDATE_SEGMENT_SOURCE: &str = include_str!("../../assets/update_segment.lua");

pub struct Lua {
    conn: Conn,
}

impl Kind for Lua {
    const FACTS: Facts = Facts {
        name: "lua",
        how: "the whole read-modify-write in one Lua script (EVALSHA)",
        steps: &["update (EVALSHA)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: true,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Lua, Error> {
        Ok(Lua {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        // The processing time comes before the script: there is no read whose result could go
        // stale while the updater thinks.
        super::think(op).await?;
        probe
            .writing(|| Step::new(Role::Write, "EVALSHA update_segment.lua (journey)"))
            .await;
        let (worker, token) = super::admission_args(op);
        let mut invocation = UPDATE_SEGMENT.key(op.keys.journey());
        invocation
            .key(op.keys.applied())
            .key(op.keys.admission())
            .arg(op.segment_id)
            .arg(op.status)
            .arg(invariant_arg(op))
            .arg(op.write)
            .arg(probe.updater)
            .arg(worker)
            .arg(token);
        let mut reruns = 0;
        loop {
            match invoke(&invocation, &mut self.conn).await {
                Ok(reply) => return Ok(script_reply(reply, probe)),
                Err(e) => match unanswered(&mut self.conn, op, probe, &e, &mut reruns).await {
                    Some(status) => return status,
                    None => continue,
                },
            }
        }
    }
}

/// How often a script that ran and wrote nothing without answering is run again.
const RERUNS: u32 = 3;

/// A script write that got no reply (`e`): applied if the applied-write record says so; run
/// again (`None`) if it certainly ran and wrote nothing; otherwise the error, outcome unknown.
pub(super) async fn unanswered(
    conn: &mut crate::target::Conn,
    op: &Op<'_>,
    probe: &mut Probe,
    e: &redis::RedisError,
    reruns: &mut u32,
) -> Option<Result<UpdateStatus, UpdateError>> {
    match super::resolve(conn, op, probe.updater, e).await {
        Some(true) => {
            probe.answered(|| "no reply, but the applied-write record has this write".into());
            Some(Ok(UpdateStatus::Applied))
        }
        // It ran and wrote nothing (no journey, no segment, or declined): running the whole
        // update again answers which.
        Some(false) if *reruns < RERUNS => {
            *reruns += 1;
            None
        }
        _ => Some(Err(UpdateError::during_write(e.clone()))),
    }
}

/// `update_segment.lua`'s ARGV[3].
pub(super) fn invariant_arg(op: &Op<'_>) -> &'static str {
    if op.invariant { "invariant" } else { "-" }
}

/// The reply of `update_segment.lua`: the new count, 0 (no journey), -1 (no segment) or -2 (the
/// write-skew invariant declined it); then what the script read: the journey's last writer and
/// the segment's status.
pub(super) type ScriptReply = (i64, u64, String);

pub(super) fn script_reply((reply, previous, was): ScriptReply, probe: &mut Probe) -> UpdateStatus {
    match reply {
        0 => UpdateStatus::JourneyNotFound,
        -2 => {
            probe.answered(|| "-2: declined, another segment is Boarding".into());
            UpdateStatus::Declined
        }
        n if n < 0 => UpdateStatus::SegmentNotFound,
        n => {
            probe.answered(|| format!("{n} (the segment's new count)").into());
            probe.wrote(n as u64);
            // What the script read inside Redis: no copy of it left Redis (`read_at` stays
            // unset), but the history names the write it was based on.
            probe.saw(crate::event::Seen {
                status: crate::journey::intern_status(&was),
                count: n as u64 - 1,
                write: previous,
            });
            UpdateStatus::Applied
        }
    }
}
