//! The seed's `JourneyService`, with the strategy as a parameter: get a journey, update one
//! segment's status. The engine races many of these; this API makes one update at a time, for
//! library users and for the seed's sequential test.

use std::collections::HashMap;
use std::time::Duration;

use crate::target::Conn;

use crate::cli::DEFAULT_MAX_RETRIES;
use crate::error::Error;
use crate::event::Probe;
use crate::journey::Journey;
use crate::keys::Keys;
use crate::strategy::{Op, Strategy, UpdateError, UpdateStatus, Updater};
use crate::target::Target;
use crate::workload::Tuning;

/// Why an update could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the journey id is empty")]
    EmptyJourneyId,
    #[error("the segment id is empty")]
    EmptySegmentId,
    #[error("the update failed ({}): {}", .0.outcome.words(), .0.reason)]
    Update(UpdateError),
    #[error("{0}")]
    Storage(#[from] crate::strategy::storage::StorageError),
}

pub struct JourneyService {
    strategy: Strategy,
    prefix: String,
    run_id: String,
    conn: Conn,
    updater: Updater,
    think: Duration,
    /// Each journey's segment ids, so an update to a missing segment is refused without a write.
    layouts: HashMap<String, Vec<String>>,
}

impl JourneyService {
    /// A service whose journeys live under `<prefix>:<run_id>:`.
    pub async fn new(
        target: &Target,
        strategy: Strategy,
        prefix: &str,
        run_id: &str,
        think: Duration,
    ) -> Result<JourneyService, Error> {
        let mut conn = target.connection().await?;
        // Any key under the service's prefix serves the preparation (a lock taken and released).
        strategy
            .prepare(target, &mut conn, &Keys::new(prefix, run_id, "prepare"))
            .await?;
        let tuning = Tuning {
            backoff: crate::workload::Backoff::Exp,
            lock_ttl: Tuning::default_lock_ttl(think),
            max_retries: DEFAULT_MAX_RETRIES,
        };
        let updater = Updater::new(strategy, &conn, target, tuning, None).await?;
        Ok(JourneyService {
            strategy,
            prefix: prefix.to_owned(),
            run_id: run_id.to_owned(),
            conn,
            updater,
            think,
            layouts: HashMap::new(),
        })
    }

    fn keys(&self, journey_id: &str) -> Keys {
        Keys::new(&self.prefix, &self.run_id, journey_id)
    }

    /// Stores `journey` in this strategy's layout, every segment's count at zero.
    pub async fn save_journey(&mut self, journey: &Journey) -> Result<(), ServiceError> {
        let keys = self.keys(&journey.id);
        self.strategy
            .storage()
            .seed(&mut self.conn, &keys, journey)
            .await
            .map_err(crate::strategy::storage::StorageError::from)?;
        self.layouts.insert(
            journey.id.clone(),
            journey
                .segments
                .iter()
                .map(|s| s.segment_id.clone())
                .collect(),
        );
        Ok(())
    }

    pub async fn get_journey(&mut self, journey_id: &str) -> Result<Option<Journey>, ServiceError> {
        if journey_id.trim().is_empty() {
            return Err(ServiceError::EmptyJourneyId);
        }
        let keys = self.keys(journey_id);
        Ok(self
            .strategy
            .storage()
            .get_journey(&mut self.conn, &keys)
            .await?)
    }

    /// `UpdateSegmentStatusAsync(journeyId, segmentId, newStatus)`.
    pub async fn update_segment_status(
        &mut self,
        journey_id: &str,
        segment_id: &str,
        status: &str,
    ) -> Result<UpdateStatus, ServiceError> {
        if journey_id.trim().is_empty() {
            return Err(ServiceError::EmptyJourneyId);
        }
        if segment_id.trim().is_empty() {
            return Err(ServiceError::EmptySegmentId);
        }
        if !self.layouts.contains_key(journey_id) {
            let Some(journey) = self.get_journey(journey_id).await? else {
                return Ok(UpdateStatus::JourneyNotFound);
            };
            self.layouts.insert(
                journey_id.to_owned(),
                journey.segments.into_iter().map(|s| s.segment_id).collect(),
            );
        }
        let known = self
            .layouts
            .get(journey_id)
            .is_some_and(|ids| ids.iter().any(|id| id == segment_id));
        if !known {
            return Ok(UpdateStatus::SegmentNotFound);
        }
        let keys = self.keys(journey_id);
        let op = Op {
            journey_id,
            journey: None,
            invariant: false,
            segment_ids: &[],
            retry_until: None,
            keys: &keys,
            segment_id,
            status,
            think: self.think,
            lease: None,
            // A service names no writes: nothing reads a history of them.
            write: 0,
        };
        self.updater
            .update(&op, &mut Probe::detached())
            .await
            .map_err(ServiceError::Update)
    }

    /// Deletes everything this service stored for `journey_id`.
    pub async fn delete_journey(&mut self, journey_id: &str) -> Result<(), ServiceError> {
        let keys = self.keys(journey_id);
        let ids = self.layouts.remove(journey_id).unwrap_or_default();
        let all = keys.all(ids.iter().map(String::as_str));
        let _: i64 = redis::cmd("DEL")
            .arg(&all)
            .query_async(&mut self.conn)
            .await
            .map_err(crate::strategy::storage::StorageError::from)?;
        Ok(())
    }
}
