//! `multi`, a wrong fix (README "Fixes that look right"): the seed's read-modify-write with its
//! write wrapped in MULTI/EXEC and no WATCH. EXEC is atomic, so the write looks safe; but the
//! read happened before the transaction, and nothing ties the two together: a write based on an
//! old read still puts every other segment back the way that read found it.

use crate::target::Conn;

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus, transaction};
use crate::error::Error;
use crate::event::{Outcome, Probe, WriteScope};
use crate::schedule::{Role, Step};
use crate::workload::RaceShape;

pub struct Multi {
    // MULTI, SET and EXEC go out as one pipeline, which carries no state between commands: the
    // run's shared connection is right for it.
    conn: Conn,
}

impl Kind for Multi {
    const FACTS: Facts = Facts {
        name: "multi",
        how: "GET the journey, think, then MULTI/SET/EXEC with no WATCH",
        steps: &["read (GET)", "write (MULTI/SET/EXEC)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: multi_loses,
        looks_right: Some("the write is a transaction, and EXEC runs it atomically"),
        wrong: Some(
            "EXEC is atomic, but the read is not part of it: without a WATCH nothing aborts a write based on an old read",
        ),
        shown_by: Some("racelab run -s multi -n 2 --schedule \"1 2 1 2\""),
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Multi, Error> {
        Ok(Multi {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let key = op.keys.journey();
        let (doc, count) = match super::naive::read_and_change(&mut self.conn, op, probe).await? {
            Ok(changed) => changed,
            Err(status) => return Ok(status),
        };
        probe
            .writing(|| Step::new(Role::WriteBack, "MULTI, SET journey, EXEC (no WATCH)"))
            .await;
        // KEEPTTL: the journey keeps the safety-net expiry it was seeded with.
        let write = super::write_back(&self.conn, op, probe.updater, &key, doc);
        let exec = transaction(&mut self.conn, |pipe| {
            pipe.add_command(write).ignore();
        })
        .await
        .map_err(UpdateError::during_write)?;
        if exec
            .as_ref()
            .is_some_and(|e| super::guard_said(e, "FENCED"))
        {
            return Err(UpdateError::fenced());
        }
        if exec.is_none() {
            // Only a WATCH makes EXEC abort, and this connection's commands never WATCH.
            probe.answered(|| "nil: EXEC aborted".into());
            return Err(UpdateError {
                outcome: Outcome::NotApplied,
                reason: "EXEC aborted though nothing was WATCHed".to_owned(),
                fatal: false,
                gave_up: false,
                unreachable: false,
            });
        }
        probe.answered(|| "OK".into());
        probe.wrote(count);
        Ok(UpdateStatus::Applied)
    }
}

/// The transaction changes nothing about the race: it loses exactly where `naive` does.
fn multi_loses(shape: &RaceShape) -> Option<bool> {
    super::read_modify_write_loses(shape, shape.updaters >= 2)
}
