//! The observer: reads the journey as Redis holds it, at the frame rate, on a connection of its
//! own, so the grid shows what Redis has (not what updaters believe) and a lost update shows the
//! moment a stale write lands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::app::Msg;
use crate::keys::Keys;
use crate::strategy::Strategy;
use crate::target::Target;

/// 20 reads a second: as often as the screen redraws, no more.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// Where the observer reads the journey: racelab's own layout in Redis, or a user's journey
/// service (`exec:`), asked with `get` once the run has started it.
#[derive(Clone)]
pub enum Source {
    Redis(Strategy, Keys),
    Service(crate::exec::ServiceSlot, Arc<crate::journey::Journey>),
}

impl Source {
    /// The journey's segments as held now; `None` before seeding, after cleanup, or when the
    /// read failed (nothing shown rather than a wrong picture).
    pub async fn read(
        &self,
        conn: &mut crate::target::Conn,
    ) -> Option<Vec<crate::journey::SegmentState>> {
        match self {
            Source::Redis(strategy, keys) => strategy
                .storage()
                .read_states(conn, keys)
                .await
                .ok()
                .flatten(),
            Source::Service(slot, journey) => match slot.get() {
                Some(service) => service.get(journey).await.ok(),
                None => None,
            },
        }
    }
}

/// Reads the run's journey until `stop`, sending each read as [`Msg::Observed`].
pub async fn observe(
    target: Arc<Target>,
    source: Source,
    generation: u64,
    tx: mpsc::Sender<Msg>,
    stop: CancellationToken,
) {
    // Its own connection: the updaters' multiplexed one would queue the observer's reads behind
    // their writes, and the grid would lag what Redis holds.
    let mut conn = tokio::select! {
        conn = target.connection() => match conn {
            Ok(conn) => conn,
            Err(_) => return,
        },
        () = stop.cancelled() => return,
    };
    let mut every = tokio::time::interval(OBSERVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        let read_started = Instant::now();
        let states = tokio::select! {
            states = source.read(&mut conn) => states,
            () = stop.cancelled() => return,
        };
        // Before seeding and after cleanup there is nothing to show; a failed read shows nothing
        // rather than a wrong picture.
        if let Some(states) = states {
            // A screen that lags gets fewer snapshots instead of stalling the observer.
            let _ = tx.try_send(Msg::Observed {
                generation,
                read_started,
                states,
            });
        }
    }
}
