//! A run of `-s exec:CMD` (README "Race your own service"): the same race, with the journey
//! kept by the user's program instead of racelab. The program is started for the run, `init`
//! stores the journey, every updater's update is a request to it (with `--workers`, to each
//! worker's own copy of it), `get` reads the final state, and the keys it wrote under the run's
//! prefix are deleted with SCAN afterwards.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lifecycle::delete_matching;
use super::{RunResult, Settings, UserRun, judge, race};
use crate::error::Error;
use crate::event::Event;
use crate::exec::Service;
use crate::keys::Keys;
use crate::strategy::Strategy;
use crate::target::Target;
use crate::workload::Workload;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    target: &Target,
    strategy: Strategy,
    command: &str,
    workload: &Workload,
    settings: &Settings,
    run_id: String,
    keys: &Arc<Keys>,
    watcher: Option<mpsc::Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<RunResult, Error> {
    let Some(url) = target.secret_url() else {
        return Err(Error::Usage(
            "exec: hands the service one Redis URL (REDIS_URL), and a cluster has several; leave out --cluster".to_owned(),
        ));
    };
    let journey = &workload.journey;
    // Everything the program writes goes under the run's own prefix, and goes with it.
    let prefix = Keys::run_prefix(&settings.key_prefix, &run_id);
    let service =
        Arc::new(Service::start(command, url, &prefix, target.timeout()).map_err(Error::Usage)?);
    let conn = target.connection().await?;
    let outcome = async {
        service.init(journey).await.map_err(|reason| Error::Run {
            target: target.display().to_owned(),
            reason,
        })?;
        if let Some(slot) = &settings.service {
            slot.put(Some(service.clone()));
        }
        let raced = race(
            target,
            strategy,
            workload,
            keys,
            &run_id,
            &conn,
            settings,
            watcher,
            cancel,
            Some(&service),
        )
        .await?;
        let states = match service.broken() {
            Some(_) => Err("the journey service could not be asked for the final state".to_owned()),
            None => service.get(journey).await,
        };
        Ok((raced, states))
    }
    .await;
    if let Some(slot) = &settings.service {
        slot.put(None);
    }
    service.stop().await;
    let pattern = format!("{prefix}*");
    let keys_left = if settings.keep {
        Some(format!("kept under {pattern}"))
    } else {
        delete_matching(&mut conn.unwaited(), &pattern).await.err().map(|why| {
            format!(
                "left under {pattern}: {why}; delete them with redis-cli --scan --pattern '{pattern}' | xargs redis-cli del"
            )
        })
    };
    let ((tally, stopped, workers, taken, failover), states) = outcome?;
    let (states, unverified) = match states {
        Ok(states) => (states, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    // With --workers, each worker's copy took its own share: this copy only seeded and read back.
    let user = UserRun::of(
        workload,
        settings.remote.is_none().then(|| service.in_flight_max()),
    );
    let truth = judge(
        &tally,
        journey,
        &states,
        &unverified,
        Some(user),
        settings.lost_limit,
        failover.as_ref(),
    );
    let invariant = super::invariant(workload, &tally, &states, &unverified);
    Ok(RunResult {
        strategy,
        run_id,
        tally,
        truth,
        states,
        stopped,
        unverified,
        keys_left,
        workers,
        taken,
        user: Some(user),
        invariant,
        failover,
    })
}
