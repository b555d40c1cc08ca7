//! The failover lesson (README "Failover"): a private primary with replicas behind one address,
//! and the failover racelab makes on purpose in the middle of a run (on a private cluster:
//! `CLUSTER FAILOVER FORCE` to the journey's primary's replica, [`fail_over_cluster`]).
//!
//! racelab's connections never name the primary: they go to a relay on a loopback port, the way
//! a Sentinel-aware client or a virtual IP stands between an application and whichever server is
//! primary. The failover promotes a replica (`REPLICAOF NO ONE`), lets the old primary go on
//! taking writes for a moment (the clients on its side have not noticed yet: Jepsen's partition),
//! then fences it (`CLIENT PAUSE … WRITE`), points the relay at the new primary, cuts every
//! relayed connection and makes the old primary a replica of the new one, which throws away what
//! only it had. What each side held at those two moments is read and kept, so the verdict can
//! tell an update lost to the failover from one erased by a stale write, by counting.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::Error;
use crate::server::{RedisServer, offset, parse_info};

/// How long the old primary, promoted away from, still takes writes at the least: the moment
/// before its clients learn of the failover, long enough for some of their writes to land there.
const STALE_WINDOW_MIN: Duration = Duration::from_millis(50);
/// ... and at the most, when no write comes (nobody writes; once the run is over, none waits).
const STALE_WINDOW_MAX: Duration = Duration::from_secs(2);
/// How long the old primary's writes stay paused while racelab reads what it held and demotes
/// it; `CLIENT UNPAUSE` ends the pause sooner.
const FENCE: Duration = Duration::from_secs(10);

/// Every server of a set may become primary. A primary's diskless sync waits 5 s by default
/// for more replicas to share one transfer; the old primary resyncing after a failover would
/// leave the new one without a replica, and `--wait-replicas` with nothing to wait for, as long.
const SET_ARGS: &[&str] = &["--repl-diskless-sync-delay", "0"];

/// A TCP relay on a loopback port to whichever server is primary now. Switching it cuts every
/// connection it relays, so clients reconnect, and reach the new primary.
struct Relay {
    port: u16,
    backend: watch::Sender<u16>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(backend: u16) -> std::io::Result<Relay> {
        // racelab binds this port itself, so an OS-chosen one is right here (unlike a
        // redis-server's, which must be passed to it).
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = watch::channel(backend);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    // Out of descriptors, say: try again in a moment rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let port = *rx.borrow_and_update();
                    let Ok(mut server) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    // A failover (or the relay gone) ends the connection: a client must not go
                    // on talking to a primary that is no longer one.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Ok(Relay {
            port,
            backend: tx,
            accept,
        })
    }

    fn switch(&self, backend: u16) {
        self.backend.send_replace(backend);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropping the sender ends every relayed connection too.
        self.accept.abort();
    }
}

/// A private primary and its replicas (`--replicas N`), all behind one relay, all killed on drop.
pub(crate) struct ReplicaSet {
    servers: Vec<RedisServer>,
    /// Which of `servers` is primary now; the others replicate it.
    primary: Mutex<usize>,
    relay: Relay,
}

impl ReplicaSet {
    /// Starts a private primary and `replicas` replicas of it, and the relay to the primary.
    pub(crate) async fn start(replicas: usize) -> Result<ReplicaSet, Error> {
        let primary = RedisServer::start_with_args(SET_ARGS)?;
        let mut servers = Vec::with_capacity(replicas + 1);
        for _ in 0..replicas {
            let replica = RedisServer::start_replica_of(&primary, SET_ARGS)?;
            servers.push(replica);
        }
        servers.insert(0, primary);
        let relay = Relay::start(servers[0].port())
            .await
            .map_err(|e| Error::RedisServerStart(format!("no relay to the primary: {e}")))?;
        Ok(ReplicaSet {
            servers,
            primary: Mutex::new(0),
            relay,
        })
    }

    /// The address racelab's connections use: the relay's.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.relay.port)
    }

    pub(crate) fn replicas(&self) -> usize {
        self.servers.len() - 1
    }

    fn primary_index(&self) -> usize {
        self.primary.lock().map_or(0, |p| *p)
    }

    /// Fails over to the first replica. `snapshot` reads the run's journey from one server (a
    /// connection to it), as counts per segment: it is asked of the promoted replica right after
    /// the promotion, and of the old primary once it is fenced, before it is demoted.
    /// Once `done` (every updater finished), no more writes can come: the window closes.
    pub(crate) async fn fail_over<F, Fut>(
        &self,
        started: Instant,
        done: &tokio_util::sync::CancellationToken,
        snapshot: F,
    ) -> Result<FailoverRecord, String>
    where
        F: Fn(crate::target::Conn) -> Fut,
        Fut: std::future::Future<Output = Option<Vec<u64>>>,
    {
        let old = self.primary_index();
        let new = (old + 1) % self.servers.len();
        if new == old {
            return Err("there is no replica to promote (--replicas 0)".to_owned());
        }
        let (old_server, new_server) = (&self.servers[old], &self.servers[new]);
        let mut old_conn = direct(old_server.port()).await?;
        let mut new_conn = direct(new_server.port()).await?;

        // The promotion: from its reply on, nothing the old primary takes reaches the replica.
        command(&mut new_conn, redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await?;
        let promoted_at = started.elapsed();
        // From here on the failover is carried through whatever fails: racelab never leaves two
        // primaries behind. What could not be read is reported unknown.
        let promoted_offset = repl_offset(&mut new_conn).await.ok();
        let promoted = snapshot(crate::target::Conn::plain(new_conn.clone())).await;

        // The old primary's clients have not noticed: their writes keep landing there, beyond
        // what the new primary holds, until racelab fences it.
        let window = Instant::now();
        loop {
            let elapsed = window.elapsed();
            let diverged = match (promoted_offset, repl_offset(&mut old_conn).await) {
                (Some(promoted), Ok(old)) => old > promoted,
                // Nothing to compare: the least window is all racelab can give it.
                _ => true,
            };
            if (diverged && elapsed >= STALE_WINDOW_MIN)
                || elapsed >= STALE_WINDOW_MAX
                || done.is_cancelled()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Fence: writes wait (scripts and transactions too) while racelab reads what the old
        // primary holds; once it is a replica they are refused, so none of them lands. Unfenced,
        // what it holds could still grow after the read: then it counts as unknown.
        let fenced = command(
            &mut old_conn,
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(FENCE.as_millis() as u64)
                .arg("WRITE"),
        )
        .await
        .is_ok();
        let old_held = match fenced {
            true => snapshot(crate::target::Conn::plain(old_conn.clone())).await,
            false => None,
        };
        // Clients now reach the new primary only.
        self.relay.switch(new_server.port());
        let cut_at = started.elapsed();
        // The old primary (and any other replica) follows the new one: a full resync that
        // discards what only the old primary had.
        let demoted = command(
            &mut old_conn,
            redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(new_server.port()),
        )
        .await;
        let _ = command(&mut old_conn, &redis::cmd("CLIENT").arg("UNPAUSE").clone()).await;
        demoted?;
        for (i, server) in self.servers.iter().enumerate() {
            if i != old && i != new {
                let mut conn = direct(server.port()).await?;
                command(
                    &mut conn,
                    redis::cmd("REPLICAOF")
                        .arg("127.0.0.1")
                        .arg(new_server.port()),
                )
                .await?;
            }
        }
        if let Ok(mut primary) = self.primary.lock() {
            *primary = new;
        }
        Ok(FailoverRecord {
            promoted_at,
            cut_at,
            promoted: format!("127.0.0.1:{}", new_server.port()),
            demoted: format!("127.0.0.1:{}", old_server.port()),
            promoted_counts: promoted,
            old_counts: old_held,
        })
    }
}

/// How long a cluster replica told to take over gets to become primary, and its old primary to
/// hear of it and follow it.
const CLUSTER_ROLE_DEADLINE: Duration = Duration::from_secs(10);

/// Fails a private cluster's primary (`primary`, a node URL) over to its replica (`replica`):
/// `CLUSTER FAILOVER FORCE` on the replica, which takes the slots over without waiting for its
/// primary, so writes the primary acknowledged and had not yet streamed are lost. The old
/// primary learns of it over the cluster bus and follows the new one on its own; racelab fences
/// its writes (`CLIENT PAUSE … WRITE`) as soon as the replica is primary, reads what it held
/// while it still is one, and unpauses it once it has become a replica, so a paused write is
/// redirected (`MOVED`) to the new primary instead of landing where it would be lost.
pub(crate) async fn fail_over_cluster<F, Fut>(
    primary: &str,
    replica: &str,
    started: Instant,
    snapshot: F,
) -> Result<FailoverRecord, String>
where
    F: Fn(crate::target::Conn) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<u64>>>,
{
    let mut old_conn = connect(primary).await?;
    let mut new_conn = connect(replica).await?;
    command(
        &mut new_conn,
        redis::cmd("CLUSTER").arg("FAILOVER").arg("FORCE"),
    )
    .await?;
    wait_for_role(&mut new_conn, "master").await?;
    let promoted_at = started.elapsed();
    let promoted = snapshot(crate::target::Conn::plain(new_conn.clone())).await;
    command(
        &mut old_conn,
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(FENCE.as_millis() as u64)
            .arg("WRITE"),
    )
    .await?;
    // Once it follows the new primary it may already be resyncing: what it held is then gone,
    // and unknown.
    let old_held = match role(&mut old_conn).await.as_deref() {
        Ok("master") => snapshot(crate::target::Conn::plain(old_conn.clone())).await,
        _ => None,
    };
    let followed = wait_for_role(&mut old_conn, "slave").await;
    let cut_at = started.elapsed();
    let _ = command(&mut old_conn, &redis::cmd("CLIENT").arg("UNPAUSE").clone()).await;
    followed?;
    Ok(FailoverRecord {
        promoted_at,
        cut_at,
        promoted: address(replica),
        demoted: address(primary),
        promoted_counts: promoted,
        old_counts: old_held,
    })
}

/// The first replica streaming from the server at `url` (`slave0` of its `INFO replication`).
pub(crate) async fn first_replica(url: &str) -> Result<(String, u16), String> {
    let mut conn = connect(url).await?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .map_err(|e| crate::redis_errors::describe(&e))?;
    replica_of_info(&info)
        .ok_or_else(|| format!("{} has no replica streaming from it", address(url)))
}

/// The first replica an `INFO replication` reply lists:
/// `slave0:ip=127.0.0.1,port=7004,state=online,offset=…,lag=0`.
fn replica_of_info(info: &str) -> Option<(String, u16)> {
    let fields = parse_info(info);
    let replica = fields.get("slave0")?;
    let field = |name: &str| {
        replica
            .split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some((field("ip")?, field("port")?.parse().ok()?))
}

/// `host:port` of a node URL, without its credentials.
fn address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// A server's role (`ROLE`'s first element): `master` or `slave`.
async fn role(conn: &mut redis::aio::MultiplexedConnection) -> Result<String, String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE")
        .query_async(conn)
        .await
        .map_err(|e| crate::redis_errors::describe(&e))?;
    reply
        .into_iter()
        .next()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .ok_or_else(|| "ROLE gave no role".to_owned())
}

async fn wait_for_role(
    conn: &mut redis::aio::MultiplexedConnection,
    wanted: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + CLUSTER_ROLE_DEADLINE;
    loop {
        if role(conn).await? == wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "a node did not become {wanted} within {CLUSTER_ROLE_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a failover did, and what each side held when it mattered.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverRecord {
    /// When the replica was promoted, since the release.
    pub promoted_at: Duration,
    /// When the relay was pointed at the new primary and the old one's connections were cut.
    pub cut_at: Duration,
    /// `host:port` of the promoted replica.
    pub promoted: String,
    /// `host:port` of the old primary, now a replica.
    pub demoted: String,
    /// Each segment's update count on the promoted replica as promoted: what it had of the old
    /// primary's writes. `None` when it could not be read.
    pub promoted_counts: Option<Vec<u64>>,
    /// Each segment's count on the old primary when it was fenced. `None` when unread.
    pub old_counts: Option<Vec<u64>>,
}

impl FailoverRecord {
    /// Per segment, how many updates the old primary held that the new one never got: updates
    /// the failover threw away. `None` when either side's counts are unknown.
    pub fn dropped(&self) -> Option<Vec<u64>> {
        let (old, new) = (self.old_counts.as_ref()?, self.promoted_counts.as_ref()?);
        (old.len() == new.len()).then(|| {
            old.iter()
                .zip(new)
                .map(|(old, new)| old.saturating_sub(*new))
                .collect()
        })
    }
}

/// A plain connection to one server, past the relay.
async fn direct(port: u16) -> Result<redis::aio::MultiplexedConnection, String> {
    connect(&format!("redis://127.0.0.1:{port}/")).await
}

/// A plain connection to the server at `url` (which may hold a password: never printed).
async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let at = address(url);
    let client = redis::Client::open(url).map_err(|e| format!("no connection to {at}: {e}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(FENCE / 2));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("no connection to {at}: {e}"))
}

async fn command(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<(), String> {
    cmd.query_async::<()>(conn)
        .await
        .map_err(|e| crate::redis_errors::describe(&e))
}

/// A server's replication offset (`master_repl_offset`): how far its stream of writes goes.
async fn repl_offset(conn: &mut redis::aio::MultiplexedConnection) -> Result<i64, String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await
        .map_err(|e| crate::redis_errors::describe(&e))?;
    Ok(offset(&parse_info(&info), "master_repl_offset"))
}

#[cfg(test)]
mod tests {
    use super::{FailoverRecord, address, replica_of_info};
    use std::time::Duration;

    #[test]
    fn a_primarys_info_names_its_first_replica() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=7004,state=online,offset=42,lag=0\r\n";
        assert_eq!(replica_of_info(info), Some(("127.0.0.1".to_owned(), 7004)));
        assert_eq!(
            replica_of_info("role:master\r\nconnected_slaves:0\r\n"),
            None
        );
    }

    #[test]
    fn a_node_is_named_without_its_password() {
        assert_eq!(address("redis://:s3cret@127.0.0.1:7000/"), "127.0.0.1:7000");
        assert_eq!(address("redis://127.0.0.1:7001"), "127.0.0.1:7001");
    }

    #[test]
    fn what_a_failover_dropped_is_what_only_the_old_primary_held() {
        let record = FailoverRecord {
            promoted_at: Duration::ZERO,
            cut_at: Duration::ZERO,
            promoted: String::new(),
            demoted: String::new(),
            promoted_counts: Some(vec![3, 5]),
            old_counts: Some(vec![7, 4]),
        };
        // A stale write can leave the old primary's count below the replica's: nothing dropped.
        assert_eq!(record.dropped(), Some(vec![4, 0]));
        let unread = FailoverRecord {
            old_counts: None,
            ..record
        };
        assert_eq!(unread.dropped(), None);
    }
}
