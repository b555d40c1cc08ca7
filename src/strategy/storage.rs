//! How a journey is laid out in Redis. The seed keeps it as one JSON document; the fixes that
//! store segments apart keep the journey document for everything else and the segment states in a
//! hash or in a key per segment. Seeding and reading back go through here, so every strategy's
//! final state is read the same way.

use std::collections::HashMap;

use crate::target::Conn;
use redis::{AsyncCommands, RedisError};

use super::hash::{count_field, status_field};
use crate::journey::{Journey, SegmentState};
use crate::keys::Keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The whole journey as one JSON document (the seed's layout).
    Document,
    /// Segment statuses and counts as fields of one hash.
    Hash,
    /// One JSON key per segment.
    Keys,
}

impl Storage {
    /// Writes `journey` under `keys`, every segment's count at zero, and a fresh version.
    pub async fn seed(
        self,
        conn: &mut Conn,
        keys: &Keys,
        journey: &Journey,
    ) -> Result<(), RedisError> {
        let mut journey = journey.clone();
        journey.write = 0;
        for segment in &mut journey.segments {
            segment.update_count = 0;
            segment.write = 0;
        }
        // A plain pipeline: the keys are new and the run has not started, so nothing can come
        // between these writes. Every key gets the safety-net expiry here, and every later write
        // keeps it (SET … KEEPTTL; HSET, HINCRBY and INCR keep it anyway); the engine renews it
        // while the run goes on.
        let ttl = crate::keys::SAFETY_TTL.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.set(keys.journey(), journey.to_json())
            .ignore()
            .pexpire(keys.journey(), ttl as i64)
            .ignore()
            .set(keys.version(), 0)
            .ignore()
            .pexpire(keys.version(), ttl as i64)
            .ignore()
            // The fencing counter too: INCR on a missing key would make one without expiry.
            .set(keys.fence(), 0)
            .ignore()
            .pexpire(keys.fence(), ttl as i64)
            .ignore()
            // Each updater's last applied write; a hash is never empty, so it starts with a
            // field no updater writes.
            .hset(keys.applied(), "seeded", 0)
            .ignore()
            .pexpire(keys.applied(), ttl as i64)
            .ignore();
        match self {
            Storage::Document => {}
            Storage::Hash => {
                let mut fields = Vec::with_capacity(journey.segments.len() * 2);
                for segment in &journey.segments {
                    fields.push((status_field(&segment.segment_id), segment.status.clone()));
                    fields.push((count_field(&segment.segment_id), "0".to_owned()));
                }
                pipe.hset_multiple(keys.segments_hash(), &fields)
                    .ignore()
                    .pexpire(keys.segments_hash(), ttl as i64)
                    .ignore();
            }
            Storage::Keys => {
                let pairs: Vec<(String, String)> = journey
                    .segments
                    .iter()
                    .map(|s| (keys.segment(&s.segment_id), segment_json(s)))
                    .collect();
                pipe.mset(&pairs).ignore();
                for (key, _) in &pairs {
                    pipe.pexpire(key, ttl as i64).ignore();
                }
            }
        }
        pipe.query_async(conn).await
    }

    /// The journey as Redis holds it now, or `None` when it is not there.
    pub async fn get_journey(
        self,
        conn: &mut Conn,
        keys: &Keys,
    ) -> Result<Option<Journey>, StorageError> {
        let doc: Option<String> = conn.get(keys.journey()).await?;
        let Some(doc) = doc else { return Ok(None) };
        let mut journey: Journey = serde_json::from_str(&doc).map_err(|e| {
            StorageError::Corrupt(format!("{} does not hold a journey ({e})", keys.journey()))
        })?;
        match self {
            Storage::Document => {}
            Storage::Hash => {
                let fields: HashMap<String, String> = conn.hgetall(keys.segments_hash()).await?;
                for segment in &mut journey.segments {
                    if let Some(status) = fields.get(&status_field(&segment.segment_id)) {
                        segment.status = status.clone();
                    }
                    segment.update_count = fields
                        .get(&count_field(&segment.segment_id))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
            }
            Storage::Keys => {
                let names: Vec<String> = journey
                    .segments
                    .iter()
                    .map(|s| keys.segment(&s.segment_id))
                    .collect();
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&names).query_async(conn).await?;
                for (segment, value) in journey.segments.iter_mut().zip(values) {
                    if let Some(value) = value {
                        let state: crate::journey::Segment =
                            serde_json::from_str(&value).map_err(|e| {
                                StorageError::Corrupt(format!(
                                    "{} does not hold a segment ({e})",
                                    keys.segment(&segment.segment_id)
                                ))
                            })?;
                        *segment = state;
                    }
                }
            }
        }
        Ok(Some(journey))
    }

    /// Every segment's status and count as Redis holds them now.
    pub async fn read_states(
        self,
        conn: &mut Conn,
        keys: &Keys,
    ) -> Result<Option<Vec<SegmentState>>, StorageError> {
        Ok(self.get_journey(conn, keys).await?.map(|j| j.states()))
    }
}

/// A segment as its own key stores it.
pub fn segment_json(segment: &crate::journey::Segment) -> String {
    serde_json::to_string(segment).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}", crate::redis_errors::describe(.0))]
    Redis(#[from] RedisError),
    #[error("{0}")]
    Corrupt(String),
}
