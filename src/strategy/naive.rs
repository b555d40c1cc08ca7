//! `naive`: the seed's `UpdateSegmentStatusAsync` exactly. It reads the whole journey, changes one
//! segment, thinks, and writes the whole journey back, so a write based on an old read puts every
//! other segment back the way it was when that read happened: the lost update.

use crate::target::Conn;
use redis::AsyncCommands;

use super::{Context, Facts, Kind, Op, ReadJourney, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::Probe;
use crate::event::WriteScope;
use crate::schedule::{Role, Step};
use crate::workload::RaceShape;

pub struct Naive {
    conn: Conn,
}

impl Kind for Naive {
    const FACTS: Facts = Facts {
        name: "naive",
        how: "GET the journey JSON, change one segment, think, SET it back",
        steps: &["read (GET)", "write (SET)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: naive_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Naive, Error> {
        Ok(Naive {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        read_modify_write(&mut self.conn, op, probe).await
    }
}

/// Whole-journey read-modify-write: any two updaters that overlap race.
fn naive_loses(shape: &RaceShape) -> Option<bool> {
    super::read_modify_write_loses(shape, shape.updaters >= 2)
}

/// The seed's read-modify-write: GET the journey, change the segment, think, SET it back. The
/// `lock` strategy runs exactly this under its lock.
pub(super) async fn read_modify_write(
    conn: &mut Conn,
    op: &Op<'_>,
    probe: &mut Probe,
) -> Result<UpdateStatus, UpdateError> {
    let (doc, count) = match read_and_change(conn, op, probe).await? {
        Ok(changed) => changed,
        Err(status) => return Ok(status),
    };
    let key = op.keys.journey();
    probe
        .writing(|| Step::new(Role::WriteBack, "SET journey"))
        .await;
    // KEEPTTL: the journey keeps the safety-net expiry it was seeded with (`keys::SAFETY_TTL`).
    let write = super::write_back(conn, op, probe.updater, &key, doc);
    super::send_write(conn, write).await?;
    probe.answered(|| "OK".into());
    probe.wrote(count);
    Ok(UpdateStatus::Applied)
}

/// The seed's read and think: GET the journey, find the segment (and, for write skew, check the
/// invariant), think, and change the copy. The document to write back and the segment's new
/// count; or why nothing is to be written. `multi` writes the same copy back another way.
pub(super) async fn read_and_change(
    conn: &mut Conn,
    op: &Op<'_>,
    probe: &mut Probe,
) -> Result<Result<(String, u64), UpdateStatus>, UpdateError> {
    let key = op.keys.journey();
    probe.reading(|| Step::new(Role::Read, "GET journey")).await;
    let doc: Option<String> = conn.get(&key).await.map_err(UpdateError::before_write)?;
    let Some(doc) = doc else {
        return Ok(Err(UpdateStatus::JourneyNotFound));
    };
    let read = match ReadJourney::parse(&key, &doc, op)? {
        Ok(read) => read,
        Err(missing) => return Ok(Err(missing)),
    };
    // Through the think time the updater holds its compact copy, not the document it read.
    drop((doc, key));
    probe.read(Some(read.seen()), None).await;
    super::think(op).await?;
    Ok(Ok(read.apply(op)))
}
