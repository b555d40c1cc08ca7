//! `keys`: one key per segment. An update is a read-modify-write of its own segment's key only,
//! so updaters of different segments can no longer erase each other; updaters that share a
//! segment still can, exactly like the seed's bug on a smaller scale.

use crate::target::Conn;
use redis::AsyncCommands;

use super::storage::segment_json;
use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::WriteScope;
use crate::event::{Probe, SawWrite, Seen};
use crate::journey::{Segment, intern_status};
use crate::schedule::{Role, Step};
use crate::workload::RaceShape;

pub struct SegmentKeys {
    conn: Conn,
}

impl Kind for SegmentKeys {
    const FACTS: Facts = Facts {
        name: "keys",
        how: "GET the segment's own key, change it, think, SET it back",
        steps: &["read (GET its segment)", "write (SET its segment)"],
        storage: Storage::Keys,
        scope: WriteScope::Segment,
        cjson: false,
        loses: keys_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<SegmentKeys, Error> {
        Ok(SegmentKeys {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let key = op.keys.segment(op.segment_id);
        // Write skew: what the read found of every segment, for the history.
        let mut saw = Vec::new();
        let value: Option<String> = if op.invariant {
            // Write skew: every segment's key is read, to see that no other is Boarding; each
            // update then writes only its own key, which is what lets two of them board.
            probe
                .reading(|| Step::new(Role::Read, "MGET every segment's key"))
                .await;
            let all: Vec<String> = op
                .segment_ids
                .iter()
                .map(|id| op.keys.segment(id))
                .collect();
            let values: Vec<Option<String>> = self
                .conn
                .mget(&all)
                .await
                .map_err(UpdateError::before_write)?;
            let mut own = None;
            let mut boarding = false;
            for (i, (id, value)) in op.segment_ids.iter().zip(values).enumerate() {
                let Some(value) = value else { continue };
                if let Ok(other) = serde_json::from_str::<Segment>(&value) {
                    saw.push(SawWrite {
                        segment: i as u32,
                        write: other.write,
                    });
                    boarding |= id != op.segment_id && other.status == crate::workload::BOARDING;
                }
                if id == op.segment_id {
                    own = Some(value);
                }
            }
            if boarding {
                probe.read_segments(None, None, saw).await;
                probe.answered(|| "another segment is Boarding".into());
                return Ok(UpdateStatus::Declined);
            }
            own
        } else {
            probe
                .reading(|| Step::new(Role::Read, format!("GET segment:{}", op.segment_id)))
                .await;
            self.conn
                .get(&key)
                .await
                .map_err(UpdateError::before_write)?
        };
        let Some(value) = value else {
            return Ok(UpdateStatus::SegmentNotFound);
        };
        let mut segment: Segment = serde_json::from_str(&value)
            .map_err(|e| UpdateError::corrupt(format!("{key} does not hold a segment ({e})")))?;
        let seen = Seen {
            status: intern_status(&segment.status),
            count: segment.update_count,
            write: segment.write,
        };
        probe.read_segments(Some(seen), None, saw).await;
        super::think(op).await?;
        segment.status = op.status.to_owned();
        segment.update_count += 1;
        segment.write = op.write;
        probe
            .writing(|| Step::new(Role::WriteBack, format!("SET segment:{}", op.segment_id)))
            .await;
        // KEEPTTL: the key keeps its safety-net expiry (`keys::SAFETY_TTL`).
        let write = super::write_back(&self.conn, op, probe.updater, &key, segment_json(&segment));
        super::send_write(&mut self.conn, write).await?;
        probe.answered(|| "OK".into());
        probe.wrote(segment.update_count);
        Ok(UpdateStatus::Applied)
    }
}

/// A segment's own read-modify-write races only with its segment's other updaters.
fn keys_loses(shape: &RaceShape) -> Option<bool> {
    super::read_modify_write_loses(shape, shape.updaters > shape.segments)
}
