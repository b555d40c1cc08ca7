//! How many requests this process's updaters have waiting on Redis at once, and who goes next.
//!
//! Each request in flight costs memory in racelab (redis-rs boxes its future, and a journey
//! document travels in its command or its reply), so a share of many updaters caps them: at most
//! a limit of requests in flight, the rest wait in line holding nothing but their updater's
//! own state. Every updater's *opening* request (its first) goes before any later one, so at any
//! scale every updater reads before any of them writes, as when they were all released at once
//! onto one connection. The cap also tells the engine when to start another updater (one whose
//! opening request is not yet answered costs a task; one not started costs nothing).
//!
//! The cap reaches requests through a task-local, set around each updater's task: the shared
//! connection ([`crate::target::Conn`]) asks it before each request, and everything else (the
//! engine's own reads and writes, an observer) goes uncapped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, oneshot};

/// Requests in flight at once, at most, for a share of updaters. Enough to keep a server (or a
/// cluster's primaries) busy: the bench's 1,000 updaters never wait for it.
pub const MOST_IN_FLIGHT: usize = 1000;

/// Bytes of journey documents in flight at once, at most: a 1,000-segment journey is about
/// 230 KB, so 10,000 naive updaters of it send about 140 requests at a time, not 10,000.
pub const DOCUMENT_BYTES_IN_FLIGHT: usize = 32 << 20;

/// The fewest requests in flight the cap allows, however large the document.
const FEWEST_IN_FLIGHT: usize = 16;

/// The cap for requests that each carry a document of `document_bytes` (0: no document).
pub fn limit_for(document_bytes: usize) -> usize {
    match DOCUMENT_BYTES_IN_FLIGHT.checked_div(document_bytes) {
        Some(fits) => fits.clamp(FEWEST_IN_FLIGHT, MOST_IN_FLIGHT),
        None => MOST_IN_FLIGHT,
    }
}

/// The requests in flight of one share of updaters, and its line.
pub struct Cap {
    limit: usize,
    /// Later requests wait until every updater's opening one has gone (see [`Cap::new`]).
    barrier: bool,
    line: Mutex<Line>,
    /// Wakes whoever starts updaters when one that was starting has been answered.
    room: Notify,
}

#[derive(Default)]
struct Line {
    /// Requests that may still go.
    free: usize,
    /// Updaters not started yet.
    unstarted: usize,
    /// Updaters started whose opening request has not yet been answered.
    starting: usize,
    /// Opening requests waiting, then later ones: an opening one always goes first.
    opening: VecDeque<oneshot::Sender<Permit>>,
    later: VecDeque<oneshot::Sender<Permit>>,
}

/// Leave to have one request in flight; dropping it lets the next one in line go.
pub struct Permit {
    cap: Option<Arc<Cap>>,
    /// An updater's opening request: once it is answered, the updater has opened.
    opening: bool,
}

impl Permit {
    fn of(cap: &Arc<Cap>) -> Permit {
        Permit {
            cap: Some(cap.clone()),
            opening: false,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(cap) = self.cap.take() {
            let mut line = cap.line();
            line.free += 1;
            if self.opening {
                line.starting = line.starting.saturating_sub(1);
            }
            cap.hand_on(&mut line);
            drop(line);
            if self.opening {
                cap.room.notify_one();
            }
        }
    }
}

impl Line {
    /// Whether a later request may go now: never before a waiting opening one, and with the
    /// barrier, only once every updater's opening request has gone.
    fn later_may_go(&self, barrier: bool) -> bool {
        self.opening.is_empty() && (!barrier || (self.unstarted == 0 && self.starting == 0))
    }
}

impl Cap {
    /// A cap of `limit` requests in flight for `updaters` updaters. With `barrier`, no later
    /// request goes before every updater's opening request has (or the updater ended without
    /// one): every updater reads before any of them writes. Without it, an opening request only
    /// goes first when both wait: for updaters that may wait before their opening request for
    /// another's later one (`local-mutex` takes a mutex in the process first), where a barrier
    /// would never open.
    pub fn new(limit: usize, updaters: usize, barrier: bool) -> Arc<Cap> {
        let limit = limit.max(1);
        Arc::new(Cap {
            limit,
            barrier,
            line: Mutex::new(Line {
                free: limit,
                unstarted: updaters,
                ..Line::default()
            }),
            room: Notify::new(),
        })
    }

    /// A poisoned lock only means a panic elsewhere; the counts themselves are never left
    /// half-changed.
    fn line(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands free permits to the requests in line, opening ones first.
    fn hand_on(self: &Arc<Cap>, line: &mut Line) {
        while line.free > 0 {
            let waiter = match line.opening.pop_front() {
                Some(waiter) => waiter,
                None if line.later_may_go(self.barrier) => match line.later.pop_front() {
                    Some(waiter) => waiter,
                    None => break,
                },
                None => break,
            };
            line.free -= 1;
            if let Err(mut unwanted) = waiter.send(Permit::of(self)) {
                // Its request was dropped while it waited (the run stopped): the permit stays.
                unwanted.cap = None;
                line.free += 1;
            }
        }
    }

    /// Waits for leave to send one request; `opening` for an updater's first.
    async fn permit(self: &Arc<Cap>, opening: bool) -> Permit {
        let turn = {
            let mut line = self.line();
            if line.free > 0 && (opening || line.later_may_go(self.barrier)) {
                line.free -= 1;
                return Permit::of(self);
            }
            let (tx, rx) = oneshot::channel();
            match opening {
                true => line.opening.push_back(tx),
                false => line.later.push_back(tx),
            }
            rx
        };
        // The sender is only dropped unsent with the cap itself, which `self` keeps alive.
        turn.await.unwrap_or(Permit {
            cap: None,
            opening: false,
        })
    }

    /// Waits until fewer than `limit` started updaters wait for their opening request (or its
    /// answer), and counts one more: updaters are started only as fast as their requests can go.
    pub async fn room_to_start(&self) {
        loop {
            {
                let mut line = self.line();
                if line.starting < self.limit {
                    line.starting += 1;
                    line.unstarted = line.unstarted.saturating_sub(1);
                    return;
                }
            }
            // One waiter only (whoever starts updaters): a wake-up before this wait is kept.
            self.room.notified().await;
        }
    }

    /// A started updater ended without an opening request.
    fn opened(self: &Arc<Cap>) {
        let mut line = self.line();
        line.starting = line.starting.saturating_sub(1);
        // The last opening request may open the barrier.
        self.hand_on(&mut line);
        drop(line);
        self.room.notify_one();
    }
}

/// The cap as one updater sees it: whether its opening request has gone, and a permit it
/// reserved for its next request.
pub struct Admission {
    cap: Arc<Cap>,
    opened: Cell<bool>,
    reserved: RefCell<Option<Permit>>,
}

impl Admission {
    pub fn new(cap: Arc<Cap>) -> Admission {
        Admission {
            cap,
            opened: Cell::new(false),
            reserved: RefCell::new(None),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.opened.get() {
            self.cap.opened();
        }
    }
}

tokio::task_local! {
    static ADMISSION: Admission;
}

/// Runs `updater` (one updater's whole life) under `admission`: its requests on the shared
/// connection go through the cap.
pub fn admitted<F: Future>(admission: Admission, updater: F) -> impl Future<Output = F::Output> {
    ADMISSION.scope(admission, updater)
}

/// Leave for one request of the updater running on this task: the permit it reserved, or one in
/// turn. `None` outside a capped updater: the request goes at once.
pub fn admission() -> Option<impl Future<Output = Permit> + Send + 'static> {
    let (cap, reserved, opening) = ADMISSION
        .try_with(|a| (a.cap.clone(), a.reserved.take(), !a.opened.get()))
        .ok()?;
    Some(async move {
        if let Some(permit) = reserved {
            return permit;
        }
        let mut permit = cap.permit(opening).await;
        if opening {
            // The updater has opened once this request is answered (the permit dropped): only
            // then may the barrier let later requests go, so no write overtakes a read.
            permit.opening = ADMISSION
                .try_with(|a| !a.opened.replace(true))
                .unwrap_or(false);
        }
        permit
    })
}

/// Waits for this updater's turn to send its next request and keeps the permit for it. An
/// updater calls it after its think time, before it builds what it writes: one that waits for
/// its turn then holds only what it read, not the document it will send.
pub async fn reserve() {
    let Some(turn) = admission() else {
        return;
    };
    let permit = turn.await;
    let _ = ADMISSION.try_with(|a| a.reserved.replace(Some(permit)));
}

/// Gives back a permit reserved and not used (the update ended another way).
pub fn unreserve() {
    let _ = ADMISSION.try_with(|a| a.reserved.take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_shrink_the_cap_within_bounds() {
        assert_eq!(limit_for(0), MOST_IN_FLIGHT);
        assert_eq!(limit_for(5_000), MOST_IN_FLIGHT);
        assert_eq!(limit_for(230_000), (32 << 20) / 230_000);
        assert_eq!(limit_for(usize::MAX), FEWEST_IN_FLIGHT);
    }

    #[tokio::test]
    async fn opening_requests_go_before_later_ones() {
        let cap = Cap::new(1, 0, true);
        let held = cap.permit(true).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = tokio::task::JoinSet::new();
        for (name, opening) in [("later", false), ("opening", true)] {
            let (cap, order) = (cap.clone(), order.clone());
            waiters.spawn(async move {
                let _permit = cap.permit(opening).await;
                order.lock().unwrap().push(name);
            });
            // Both are in line before the permit is given back.
            tokio::task::yield_now().await;
        }
        drop(held);
        while waiters.join_next().await.is_some() {}
        assert_eq!(*order.lock().unwrap(), ["opening", "later"]);
        assert_eq!(cap.line().free, 1, "every permit came back");
    }

    #[tokio::test]
    async fn an_updater_opens_once_and_starting_ones_are_counted() {
        let cap = Cap::new(2, 2, false);
        cap.room_to_start().await;
        cap.room_to_start().await;
        assert_eq!(cap.line().starting, 2);
        let (a, b) = (Admission::new(cap.clone()), Admission::new(cap.clone()));
        admitted(a, async {
            for _ in 0..3 {
                let Some(turn) = admission() else {
                    panic!("inside an admitted updater")
                };
                drop(turn.await);
            }
        })
        .await;
        assert_eq!(cap.line().starting, 1, "three requests, one opening");
        // An updater that ends without a request frees its place too.
        drop(b);
        assert_eq!(cap.line().starting, 0);
        assert!(
            admission().is_none(),
            "outside an updater nothing is capped"
        );
    }

    #[tokio::test]
    async fn with_the_barrier_no_later_request_goes_before_every_opening_one() {
        let cap = Cap::new(4, 2, true);
        let (a, b) = (Admission::new(cap.clone()), Admission::new(cap.clone()));
        cap.room_to_start().await;
        let (cap_a, cap_b) = (cap.clone(), cap.clone());
        let first = tokio::spawn(admitted(a, async move {
            drop(admission().unwrap().await);
            // Free permits wait, and this later request with them, for updater b.
            let mut later = std::pin::pin!(admission().unwrap());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                later.as_mut().poll(&mut cx).is_pending(),
                "a later request went before b's opening one"
            );
            drop(cap_a);
        }));
        first.await.unwrap();
        cap.room_to_start().await;
        admitted(b, async move {
            drop(admission().unwrap().await);
            // Every updater has opened: later requests go at once.
            drop(admission().unwrap().await);
            drop(cap_b);
        })
        .await;
        assert_eq!(cap.line().free, 4);
    }

    #[tokio::test]
    async fn a_reserved_permit_serves_the_next_request() {
        let cap = Cap::new(1, 1, true);
        cap.room_to_start().await;
        admitted(Admission::new(cap.clone()), async {
            reserve().await;
            assert_eq!(cap.line().free, 0);
            let Some(turn) = admission() else {
                panic!("inside an admitted updater")
            };
            // Would wait forever if it asked the cap again.
            drop(turn.await);
            assert_eq!(cap.line().free, 1);
            reserve().await;
            unreserve();
            assert_eq!(cap.line().free, 1);
        })
        .await;
    }
}
