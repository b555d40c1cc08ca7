//! A worker's card: its host and pid under its id, renewed every second while it lives, and its
//! place in the lobby where coordinators find it. A card that stops being renewed expires, and
//! that is how a vanished worker is noticed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::keys::CrewKeys;
use crate::lease::{Lease, RENEW_EVERY, TTL};
use crate::target::Conn;

/// How long the lobby list outlives its last waiting worker.
pub(super) const LOBBY_TTL: Duration = Duration::from_secs(60);

/// Writes (or rewrites) the worker's card and gives it, and the lobby, a fresh lease.
pub(super) async fn renew_card(
    conn: &mut Conn,
    keys: &CrewKeys,
    id: &str,
) -> redis::RedisResult<()> {
    let card = keys.worker(id);
    // One transaction: a card is never written without its expiry. A user refused PEXPIRE has
    // the whole transaction refused (EXECABORT) instead of a card left for good.
    crate::strategy::transaction(conn, |pipe| {
        pipe.cmd("HSET")
            .arg(&card)
            .arg("host")
            .arg(hostname())
            .arg("pid")
            .arg(std::process::id())
            .arg("version")
            .arg(env!("CARGO_PKG_VERSION"))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&card)
            .arg(TTL.as_millis() as u64)
            .ignore()
            .cmd("PEXPIRE")
            .arg(keys.lobby())
            .arg(LOBBY_TTL.as_millis() as u64)
            .ignore();
    })
    .await
    .map(|_| ())
}

/// Renews the card every second until the worker leaves. A card that expired before a session
/// claimed it is simply written again; one that expired after means the coordinator took this
/// worker for vanished, and it must stop (see [`Lease`]).
pub(super) async fn keep_card(mut conn: Conn, keys: CrewKeys, id: String, lease: Arc<Lease>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let sent = Instant::now();
        let renewed: redis::RedisResult<(bool, bool)> = redis::pipe()
            .cmd("PEXPIRE")
            .arg(keys.worker(&id))
            .arg(TTL.as_millis() as u64)
            .cmd("PEXPIRE")
            .arg(keys.lobby())
            .arg(LOBBY_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        match renewed {
            Ok((true, _)) => lease.renewed(sent),
            Ok((false, _)) if lease.claimed.load(Ordering::SeqCst) => {
                lease.evicted.store(true, Ordering::SeqCst);
                return;
            }
            Ok((false, _)) => {
                if renew_card(&mut conn, &keys, &id).await.is_ok() {
                    lease.renewed(sent);
                }
            }
            Err(_) => {}
        }
    }
}

/// This host's name, for the report's worker list.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
