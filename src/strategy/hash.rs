//! `hash`: per-segment atomic storage. Each segment's status and count are fields of one hash, and
//! an update writes only its own fields: HSET its status and HINCRBY its count, two commands sent
//! as one pipeline (one round trip). Nothing is read and written back, so there is no stale copy
//! to write: no lost update is possible.
//!
//! Why two commands and not MULTI/EXEC around them (README "Strategies"): each is atomic on its
//! own, and the count is what the verdict counts, so `applied` stays exact either way; what
//! MULTI/EXEC added was that a reader never sees the status changed before the count, for two
//! more commands per update. Two commands is half the work for Redis, and what a service would
//! do.

use crate::target::Conn;
use redis::AsyncCommands;

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::WriteScope;
use crate::event::{Probe, SawWrite};
use crate::schedule::{Role, Step};

pub struct Hash {
    conn: Conn,
}

impl Kind for Hash {
    const FACTS: Facts = Facts {
        name: "hash",
        how: "HSET the segment's status and HINCRBY its count, one pipeline",
        steps: &["write (HSET, HINCRBY in one pipeline)"],
        storage: Storage::Hash,
        scope: WriteScope::Segment,
        cjson: false,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Hash, Error> {
        Ok(Hash {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        if op.invariant {
            // Write skew: the other segments' statuses are read, to see that none is Boarding;
            // the write that follows changes only this segment's fields, which is what lets two
            // updaters board at once.
            probe
                .reading(|| Step::new(Role::Read, "HGETALL segments"))
                .await;
            let fields: std::collections::HashMap<String, String> = self
                .conn
                .hgetall(op.keys.segments_hash())
                .await
                .map_err(UpdateError::before_write)?;
            let own = status_field(op.segment_id);
            let elsewhere = fields.iter().any(|(field, status)| {
                field.starts_with("status:") && *field != own && status == crate::workload::BOARDING
            });
            // What the read found of every segment, for the history: each one's last writer.
            let saw = op
                .segment_ids
                .iter()
                .enumerate()
                .map(|(i, id)| SawWrite {
                    segment: i as u32,
                    write: fields
                        .get(&write_field(id))
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(0),
                })
                .collect();
            probe.read_segments(None, None, saw).await;
            if elsewhere {
                probe.answered(|| "another segment is Boarding".into());
                return Ok(UpdateStatus::Declined);
            }
        }
        // The seed's "processing" time stays, so the workloads compare; in the lost-update
        // scenario there is no read before it whose result could go stale.
        super::think(op).await?;
        probe
            .writing(|| {
                let id = op.segment_id;
                Step::new(
                    Role::Write,
                    format!("HSET status:{id} write:{id}, HINCRBY count:{id} (one pipeline)"),
                )
            })
            .await;
        let key = op.keys.segments_hash();
        // One pipeline, one round trip; each command atomic on its own. HINCRBY's reply is the
        // count after this update.
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg(status_field(op.segment_id))
            .arg(op.status)
            .arg(write_field(op.segment_id))
            .arg(op.write);
        let mut hincrby = redis::cmd("HINCRBY");
        hincrby.arg(&key).arg(count_field(op.segment_id)).arg(1);
        let count: i64 =
            match super::admitted(op, std::slice::from_ref(&key), &[&hset, &hincrby]) {
                Some(admitted) => admitted.query_async(&mut self.conn).await,
                None => redis::pipe()
                    .add_command(hset)
                    .ignore()
                    .add_command(hincrby)
                    .query_async::<(i64,)>(&mut self.conn)
                    .await
                    .map(|(count,)| count),
            }
            .map_err(UpdateError::during_write)?;
        probe.wrote(count as u64);
        probe.answered(|| format!("OK (count {count})").into());
        Ok(UpdateStatus::Applied)
    }
}

/// The hash field that holds a segment's status. Status and count fields each carry their own
/// prefix, so no segment id can name another segment's field: with bare `A` and `A:count`, a
/// journey with segments `A` and `A:count` would have had two segments write one field.
pub fn status_field(segment_id: &str) -> String {
    format!("status:{segment_id}")
}

/// The hash field that names the update that last wrote a segment (README "History").
pub fn write_field(segment_id: &str) -> String {
    format!("write:{segment_id}")
}

/// The hash field that counts a segment's applied updates.
pub fn count_field(segment_id: &str) -> String {
    format!("count:{segment_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_segment_id_names_another_segments_field() {
        let ids = [
            "A", "A:count", "count:A", "status:A", "write:A", "count", "status", "write",
        ];
        let mut fields = std::collections::HashSet::new();
        for id in ids {
            assert!(fields.insert(status_field(id)), "{id}");
            assert!(fields.insert(count_field(id)), "{id}");
            assert!(fields.insert(write_field(id)), "{id}");
        }
    }
}
