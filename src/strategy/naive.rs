//! `naive`: the seed's `UpdateSegmentStatusAsync` exactly. It reads the whole journey, changes one
//! segment, thinks, and writes the whole journey back, so a write based on an old read puts every
//! other segment back the way it was when that read happened: the lost update.

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::{Op, UpdateError, UpdateStatus};
use crate::event::Probe;
use crate::journey::Journey;

pub struct Naive {
    conn: MultiplexedConnection,
}

impl Naive {
    pub fn new(conn: MultiplexedConnection) -> Naive {
        Naive { conn }
    }

    pub async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let key = op.keys.journey();
        probe.reading().await;
        let doc: Option<String> = self
            .conn
            .get(&key)
            .await
            .map_err(UpdateError::before_write)?;
        let Some(doc) = doc else {
            return Ok(UpdateStatus::JourneyNotFound);
        };
        let mut journey = parse(&key, &doc)?;
        probe.read().await;
        let Some(segment) = journey
            .segments
            .iter_mut()
            .find(|s| s.segment_id == op.segment_id)
        else {
            return Ok(UpdateStatus::SegmentNotFound);
        };
        tokio::time::sleep(op.think).await;
        segment.status = op.status.to_owned();
        segment.update_count += 1;
        probe.writing().await;
        let () = self
            .conn
            .set(&key, journey.to_json())
            .await
            .map_err(UpdateError::during_write)?;
        Ok(UpdateStatus::Applied)
    }
}

/// The journey document at `key`, or a fatal error: a key of racelab's that holds something else
/// means someone else wrote there, and no verdict could be trusted.
pub(super) fn parse(key: &str, doc: &str) -> Result<Journey, UpdateError> {
    serde_json::from_str(doc)
        .map_err(|e| UpdateError::corrupt(format!("{key} does not hold a journey ({e})")))
}
