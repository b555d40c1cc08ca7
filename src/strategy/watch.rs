//! `watch`: optimistic locking with Redis transactions. WATCH the journey, GET it, think, then
//! MULTI/SET/EXEC: if anyone wrote the journey since the WATCH, EXEC aborts (a nil reply) and the
//! updater reads again.
//!
//! WATCH is state of the *connection*, not of the command: on a connection shared by several
//! updaters, one updater's write or EXEC would clear or trip another's WATCH. So each `watch`
//! updater owns a dedicated connection (redis-rs says the same of `aio::transaction_async`).
//!
//! On a Redis Cluster that dedicated connection is a plain one to the primary that owns the
//! journey's slot: a routing cluster connection could send WATCH and EXEC over different node
//! connections, shared with other updaters. A MOVED or ASK (the slot migrated, a failover) before
//! the write fails only the attempt: the updater connects to the slot's new owner and tries again.

use std::time::Duration;

use redis::AsyncCommands;

use super::{
    Context, Facts, Kind, Op, ReadJourney, Storage, UpdateError, UpdateStatus, after_conflict,
    backoff, transaction,
};
use crate::error::Error;
use crate::event::Probe;
use crate::event::WriteScope;
use crate::schedule::{Role, Step};
use crate::target::{Conn, Connector};
use crate::workload::Tuning;

/// Attempts at opening an updater's own connection before the run.
const CONNECT_ATTEMPTS: u32 = 3;

pub struct Watch {
    /// Dedicated to this updater; `None` after an error left its WATCH state unknown.
    conn: Option<Conn>,
    /// On a cluster, the journey key `conn` was opened for: another journey may live on another
    /// node.
    conn_for: Option<String>,
    connector: Connector,
    tuning: Tuning,
}

/// How many MOVED/ASK replies an update follows before it gives up: enough to wait out a slot
/// migration (backoff up to 100 ms each), not so many that a broken cluster stalls the run.
const REDIRECTS: u32 = 20;

/// An attempt that failed, and whether only because the slot moved (nothing was written).
struct Failed {
    error: UpdateError,
    redirected: bool,
}

fn is_redirect(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask)
    )
}

fn before_write(e: redis::RedisError) -> Failed {
    Failed {
        redirected: is_redirect(&e),
        error: UpdateError::before_write(e),
    }
}

/// The MULTI/SET/EXEC pipeline failed. When its first error is a redirection of the queued SET
/// (the slot is migrating or moved), EXEC was refused with EXECABORT: nothing was written, so
/// the update can go to the slot's new owner like a redirection before the write.
fn during_write(e: redis::RedisError) -> Failed {
    Failed {
        redirected: is_redirect(&e),
        error: UpdateError::during_write(e),
    }
}

impl From<UpdateError> for Failed {
    fn from(error: UpdateError) -> Failed {
        Failed {
            error,
            redirected: false,
        }
    }
}

impl Kind for Watch {
    const FACTS: Facts = Facts {
        name: "watch",
        how: "WATCH, GET, think, MULTI/SET/EXEC; retry when EXEC aborts",
        steps: &["read (WATCH, GET)", "commit (MULTI/SET/EXEC)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Watch, Error> {
        let (target, tuning) = (cx.target, cx.tuning);
        let connector = target.connector();
        // On one server, connect now, so a refused connection stops the run before the release.
        // On a cluster the node depends on the journey's slot, known with the first update.
        let conn = if connector.needs_key() {
            None
        } else {
            // A connection dropped while it is being made (a killed client, a busy server) is
            // tried again; a refusal (password, ACL) is not.
            let mut attempt = 1;
            loop {
                match connector.connect_waiting(None).await {
                    Ok(conn) => break Some(conn),
                    Err(e)
                        if attempt < CONNECT_ATTEMPTS
                            && (e.is_io_error() || e.is_connection_dropped()) =>
                    {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(target.refused(&e)),
                }
            }
        };
        Ok(Watch {
            conn,
            conn_for: None,
            connector,
            tuning,
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        self.update_watching(op, probe, JOURNEY).await
    }
}

/// What an update WATCHes before it reads the journey, and how its two steps read. `watch`
/// watches the journey it writes; `watch-other`, a wrong fix, runs the same WATCH … EXEC on
/// another key.
#[derive(Clone, Copy)]
pub(super) struct Watched {
    pub key: fn(&Op<'_>) -> String,
    pub read: &'static str,
    pub commit: &'static str,
    /// Redis's nil EXEC reply, in a user's words.
    pub aborted: &'static str,
}

fn journey_key(op: &Op<'_>) -> String {
    op.keys.journey()
}

/// The journey itself: a write of it between WATCH and EXEC aborts the EXEC.
const JOURNEY: Watched = Watched {
    key: journey_key,
    read: "WATCH journey, GET journey",
    commit: "MULTI, SET journey, EXEC (WATCHed journey)",
    aborted: "nil: EXEC aborted, the journey changed since WATCH",
};

impl Watch {
    /// WATCH … EXEC until an EXEC goes through, backing off after each abort.
    pub(super) async fn update_watching(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
        watched: Watched,
    ) -> Result<UpdateStatus, UpdateError> {
        let mut retries = 0;
        let mut redirects = 0;
        loop {
            match self.attempt(op, probe, watched).await {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(failed) => {
                    // The connection's WATCH state is unknown now. Never reuse it: a reconnect
                    // under us could otherwise send an EXEC that nothing watches.
                    self.conn = None;
                    if failed.redirected && redirects < REDIRECTS {
                        // The slot has (or is getting) a new owner and nothing was written:
                        // connect to the owner again. While a migration is under way the owner
                        // is still the old node answering ASK, so wait a little for it to end.
                        // Not a conflict: like the redirections the cluster connection follows for
                        // the other strategies, it is not counted as a retry.
                        redirects += 1;
                        tokio::time::sleep(backoff(redirects, Duration::from_millis(100))).await;
                        continue;
                    }
                    return Err(failed.error);
                }
            }
            retries += 1;
            after_conflict(retries, self.tuning, op, probe, "EXEC kept aborting").await?;
        }
    }

    /// One WATCH … EXEC. `Ok(None)`: EXEC aborted, someone wrote the watched key in between.
    async fn attempt(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
        watched: Watched,
    ) -> Result<Option<UpdateStatus>, Failed> {
        let key = op.keys.journey();
        if self.connector.needs_key() && self.conn_for.as_deref() != Some(key.as_str()) {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = self
                    .connector
                    .connect_waiting(Some(&key))
                    .await
                    .map_err(before_write)?;
                self.conn_for = Some(key.clone());
                self.conn.insert(conn)
            }
        };
        probe.reading(|| Step::new(Role::Read, watched.read)).await;
        let () = redis::cmd("WATCH")
            .arg((watched.key)(op))
            .query_async(conn)
            .await
            .map_err(before_write)?;
        let doc: Option<String> = conn.get(&key).await.map_err(before_write)?;
        let read = match doc.map(|doc| ReadJourney::parse(&key, &doc, op)) {
            Some(Ok(Ok(read))) => read,
            other => {
                let () = redis::cmd("UNWATCH")
                    .query_async(conn)
                    .await
                    .map_err(before_write)?;
                return match other {
                    None => Ok(Some(UpdateStatus::JourneyNotFound)),
                    Some(Ok(Err(missing))) => Ok(Some(missing)),
                    Some(Err(e)) => Err(e.into()),
                    Some(Ok(Ok(_))) => unreachable!("matched above"),
                };
            }
        };
        probe.read(Some(read.seen()), None).await;
        super::think(op).await?;
        let (doc, count) = read.apply(op);
        probe
            .writing(|| Step::new(Role::WriteBack, watched.commit))
            .await;
        // MULTI, SET, EXEC in one pipeline; a nil EXEC reply (None) means the WATCH tripped.
        let write = super::write_back(conn, op, probe.updater, &key, doc);
        let exec = transaction(conn, |pipe| {
            pipe.add_command(write).ignore();
        })
        .await
        .map_err(during_write)?;
        if exec
            .as_ref()
            .is_some_and(|e| super::guard_said(e, "FENCED"))
        {
            return Err(UpdateError::fenced().into());
        }
        if exec.is_none() {
            probe.answered(|| watched.aborted.into());
            return Ok(None);
        }
        probe.answered(|| "OK".into());
        probe.wrote(count);
        Ok(Some(UpdateStatus::Applied))
    }
}
