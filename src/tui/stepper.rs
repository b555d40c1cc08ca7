//! Step mode's runtime: one run whose updaters take a step only when the presenter says so.
//!
//! The run is an ordinary engine run handed a [`Driver`] (the same gate `--schedule` and
//! `racelab prove` open), so everything the screen shows comes from a real Redis: after each
//! step this reads the journey back, and the grid shows what Redis holds. Undo is a new run on
//! fresh keys that replays the steps kept, so what follows it is exact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::app::Msg;
use super::step::{Control, Taken};
use crate::engine::Settings;
use crate::keys::Keys;
use crate::schedule::{Driver, Schedule, Token};
use crate::strategy::Strategy;
use crate::target::Target;
use crate::workload::Workload;

/// How long past the lock's ttl time passing waits: the expiry is Redis's, on Redis's clock
/// (as `--schedule`'s `t`).
const WAIT_MARGIN: Duration = Duration::from_millis(50);

/// One stepped run: replays `replay`, then takes the presenter's [`Control`]s until every
/// updater is done or the rest runs free. Events, the observer's reads, each step as
/// [`Msg::Stepped`] and, between steps, [`Msg::StepReady`] go to `tx`; [`Msg::RunFinished`]
/// comes last. Cancelling `stop` ends the run; the engine still deletes its keys first.
#[allow(clippy::too_many_arguments)]
pub async fn run_stepped(
    target: Arc<Target>,
    mut settings: Settings,
    strategy: Strategy,
    mut workload: Workload,
    replay: Vec<Token>,
    generation: u64,
    controls: mpsc::UnboundedReceiver<Control>,
    tx: mpsc::Sender<Msg>,
    stop: CancellationToken,
) {
    let driver = Driver::new(workload.updaters);
    settings.driver = Some(driver.clone());
    // The presenter is the schedule: expectations are those of a scheduled run.
    workload.schedule = Some(Schedule {
        tokens: replay.clone(),
    });
    let presenter = {
        let (target, tx, lock_ttl) = (target.clone(), tx.clone(), workload.tuning.lock_ttl);
        move |keys, source| Presenter {
            driver,
            target,
            source,
            keys,
            lock_ttl,
            generation,
            tx,
            lock_held: false,
        }
    };
    let run = super::Watched {
        target,
        settings,
        strategy,
        workload,
        generation,
        tx,
    };
    run.run(stop, |keys, source, over| {
        presenter(keys, source).take(replay, controls, over)
    })
    .await;
}

struct Presenter {
    driver: Driver,
    target: Arc<Target>,
    /// Where the journey is read after each step: Redis, or a user's service.
    source: super::observer::Source,
    keys: Keys,
    lock_ttl: Duration,
    generation: u64,
    tx: mpsc::Sender<Msg>,
    /// The journey's lock existed after the latest step.
    lock_held: bool,
}

impl Presenter {
    async fn take(
        mut self,
        replay: Vec<Token>,
        mut controls: mpsc::UnboundedReceiver<Control>,
        stop: CancellationToken,
    ) {
        let Ok(mut conn) = self.target.connection().await else {
            return;
        };
        let work = async {
            for token in replay {
                self.apply(&mut conn, token).await;
            }
            loop {
                let waiting = self.driver.next_steps().await;
                if waiting.is_empty() {
                    return;
                }
                let lock_left = self.lock_left(&mut conn).await;
                self.send(Msg::StepReady {
                    generation: self.generation,
                    waiting,
                    lock_left,
                })
                .await;
                match controls.recv().await {
                    Some(Control::Take(token)) => self.apply(&mut conn, token).await,
                    Some(Control::Free) => {
                        self.driver.free();
                        return;
                    }
                    None => return,
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = stop.cancelled() => {}
        }
    }

    /// Takes one token of the schedule and says what it did.
    async fn apply(&mut self, conn: &mut crate::target::Conn, token: Token) {
        // The run cannot end (nor its keys go) before the journey after this step is read.
        let _hold = self.driver.hold();
        if let Token::Step(_) = token
            && self.lock_held
            && self.lock_left(conn).await.is_none()
        {
            // The lock ran out while the presenter talked: that is time passing, and the
            // schedule says so, or a replay of it would keep the lock.
            let taken = self.taken(conn, Token::Wait, None, true).await;
            self.send(Msg::Stepped {
                generation: self.generation,
                taken,
            })
            .await;
        }
        let choice = match token {
            Token::Step(updater) => match self.driver.step(updater).await {
                Ok(choice) => Some(choice),
                Err(reason) => {
                    self.send(Msg::StepRefused {
                        generation: self.generation,
                        reason,
                    })
                    .await;
                    return;
                }
            },
            Token::Wait => {
                tokio::time::sleep(self.lock_ttl + WAIT_MARGIN).await;
                None
            }
        };
        let taken = self.taken(conn, token, choice, false).await;
        self.send(Msg::Stepped {
            generation: self.generation,
            taken,
        })
        .await;
    }

    /// The step just taken, with the journey as Redis holds it now.
    async fn taken(
        &mut self,
        conn: &mut crate::target::Conn,
        token: Token,
        choice: Option<crate::schedule::Choice>,
        expired: bool,
    ) -> Taken {
        let read_started = Instant::now();
        let states = self.source.read(conn).await;
        let lock_left = self.lock_left(conn).await;
        Taken {
            token,
            choice,
            expired,
            states,
            read_started,
            lock_left,
        }
    }

    /// How long the journey's lock has left, if it is held; remembers whether it is.
    async fn lock_left(&mut self, conn: &mut crate::target::Conn) -> Option<Duration> {
        let left: i64 = redis::cmd("PTTL")
            .arg(self.keys.lock())
            .query_async(conn)
            .await
            .unwrap_or(-2);
        self.lock_held = left >= 0;
        u64::try_from(left).ok().map(Duration::from_millis)
    }

    async fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg).await;
    }
}
