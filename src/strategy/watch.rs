//! `watch`: optimistic locking with Redis transactions. WATCH the journey, GET it, think, then
//! MULTI/SET/EXEC: if anyone wrote the journey since the WATCH, EXEC aborts (a nil reply) and the
//! updater reads again.
//!
//! WATCH is state of the *connection*, not of the command: on a connection shared by several
//! updaters, one updater's write or EXEC would clear or trip another's WATCH. So each `watch`
//! updater owns a dedicated connection (redis-rs says the same of `aio::transaction_async`).

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::{Op, ReadJourney, Tuning, UpdateError, UpdateStatus, after_conflict, transaction};
use crate::error::Error;
use crate::event::Probe;
use crate::target::{Connector, Target};

pub struct Watch {
    /// Dedicated to this updater; `None` after an error left its WATCH state unknown.
    conn: Option<MultiplexedConnection>,
    connector: Connector,
    tuning: Tuning,
}

impl Watch {
    pub async fn new(target: &Target, tuning: Tuning) -> Result<Watch, Error> {
        let connector = target.connector();
        let conn = connector.connect().await.map_err(|e| target.refused(&e))?;
        Ok(Watch {
            conn: Some(conn),
            connector,
            tuning,
        })
    }

    pub async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let mut retries = 0;
        loop {
            match self.attempt(op, probe).await {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(e) => {
                    // The connection's WATCH state is unknown now. Never reuse it: a reconnect
                    // under us could otherwise send an EXEC that nothing watches.
                    self.conn = None;
                    return Err(e);
                }
            }
            retries += 1;
            after_conflict(retries, self.tuning, op, probe, "EXEC kept aborting").await?;
        }
    }

    /// One WATCH … EXEC. `Ok(None)`: EXEC aborted, someone wrote in between.
    async fn attempt(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<Option<UpdateStatus>, UpdateError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                self.connector
                    .connect()
                    .await
                    .map_err(UpdateError::before_write)?,
            ),
        };
        let key = op.keys.journey();
        probe.reading().await;
        let () = redis::cmd("WATCH")
            .arg(&key)
            .query_async(conn)
            .await
            .map_err(UpdateError::before_write)?;
        let doc: Option<String> = conn.get(&key).await.map_err(UpdateError::before_write)?;
        let read = match doc.map(|doc| ReadJourney::parse(&key, &doc, op.segment_id)) {
            Some(Ok(Ok(read))) => read,
            other => {
                let () = redis::cmd("UNWATCH")
                    .query_async(conn)
                    .await
                    .map_err(UpdateError::before_write)?;
                return match other {
                    None => Ok(Some(UpdateStatus::JourneyNotFound)),
                    Some(Ok(Err(missing))) => Ok(Some(missing)),
                    Some(Err(e)) => Err(e),
                    Some(Ok(Ok(_))) => unreachable!("matched above"),
                };
            }
        };
        probe.read(Some(read.seen()), None).await;
        super::think(op.think).await;
        let (doc, count) = read.apply(op.status);
        probe.writing().await;
        // MULTI, SET, EXEC in one pipeline; a nil EXEC reply (None) means the WATCH tripped.
        let exec = transaction(conn, |pipe| {
            pipe.set(&key, doc).ignore();
        })
        .await
        .map_err(UpdateError::during_write)?;
        if exec.is_none() {
            return Ok(None);
        }
        probe.wrote(count);
        Ok(Some(UpdateStatus::Applied))
    }
}
