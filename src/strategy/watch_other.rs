//! `watch-other`, a wrong fix (README "Fixes that look right"): `watch`'s WATCH … MULTI/SET/EXEC
//! and retry, with the WATCH on the segment's own key (under the run's prefix, never written by
//! anyone) instead of the journey it writes. EXEC aborts only when a WATCHed key changed; the
//! journey is not one, so a write based on an old read goes through as in `naive`.

use super::watch::{Watch, Watched};
use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::{Probe, WriteScope};
use crate::workload::RaceShape;

/// Its own dedicated connection, for the reason `watch` has one: WATCH is connection state.
pub struct WatchOther(Watch);

fn segment_key(op: &Op<'_>) -> String {
    op.keys.segment(op.segment_id)
}

/// The segment's key: the update changes only that segment, so it feels like the thing to
/// guard; nobody ever writes it, so nothing ever aborts.
const SEGMENT: Watched = Watched {
    key: segment_key,
    read: "WATCH segment key (not the journey), GET journey",
    commit: "MULTI, SET journey, EXEC (the journey is not WATCHed)",
    aborted: "nil: EXEC aborted, the segment key changed since WATCH",
};

impl Kind for WatchOther {
    const FACTS: Facts = Facts {
        name: "watch-other",
        how: "WATCH the segment's key (not the journey), GET, think, MULTI/SET/EXEC",
        steps: &["read (WATCH segment key, GET)", "commit (MULTI/SET/EXEC)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: watch_other_loses,
        looks_right: Some(
            "it WATCHes, reads, and retries when EXEC aborts, exactly as watch does, on the segment it changes",
        ),
        wrong: Some(
            "it WATCHes a key nobody writes and writes a key nobody WATCHes: EXEC never aborts, so nothing guards the journey",
        ),
        shown_by: Some("racelab run -s watch-other -n 2 --schedule \"1 2 1 2\""),
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<WatchOther, Error> {
        Ok(WatchOther(<Watch as Kind>::new(cx).await?))
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        self.0.update_watching(op, probe, SEGMENT).await
    }
}

/// No EXEC ever aborts: it loses exactly where `naive` does.
fn watch_other_loses(shape: &RaceShape) -> Option<bool> {
    super::read_modify_write_loses(shape, shape.updaters >= 2)
}
