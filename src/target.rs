//! The Redis a run goes against: a URL the user named, a Redis Cluster named by its seed nodes,
//! or a private redis-server (or private cluster) racelab owns.
//!
//! The target is also the one place that turns a URL into something printable: the password never
//! leaves this module in clear.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use serde::Serialize;

use crate::error::Error;
use crate::failover::{FailoverRecord, ReplicaSet};
use crate::redis_errors::{advice, describe};
use crate::server::{RedisCluster, RedisServer};

/// The connection updaters share: see [`Target::connection`].
///
/// An enum inside rather than a trait object so every strategy keeps taking one concrete,
/// cloneable type: on one server it is a reconnecting multiplexed connection, on a cluster the
/// crate's cluster connection, which routes each command (and each EVALSHA/FCALL, by its key) to
/// the primary that owns the key's slot and follows MOVED and ASK redirections.
///
/// With `--wait-replicas N` every write through it is followed by `WAIT N` in the same
/// pipeline: this is the one place every strategy's writes pass, so none of them can forget it,
/// and a write counts as acknowledged only once N replicas have it (README "Failover").
#[derive(Clone)]
pub struct Conn {
    link: Link,
    wait: Option<WaitReplicas>,
}

#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A plain connection to one server (the failover's reads of each side).
    Plain(MultiplexedConnection),
}

/// `--wait-replicas N`: how many replicas must have each write, and how long `WAIT` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    pub replicas: u32,
    pub timeout: Duration,
}

/// How long `WAIT` waits for the replicas (README "Failover"): a healthy replica acknowledges
/// within a millisecond or two on one host, so a second only runs out when the replica is gone
/// or stalled, and then the write's outcome is unknown.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(1);

impl Conn {
    /// Whether it goes to a Redis Cluster, whose client resends a command after a dropped
    /// connection (see [`crate::strategy`]'s guarded writes).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Whether its writes count only once replicas have them (`--wait-replicas`): then a write
    /// found applied on the primary after the fact is still not acknowledged.
    pub(crate) fn waits_for_replicas(&self) -> bool {
        self.wait.is_some()
    }

    /// The same connection, its writes followed by no WAIT: for racelab's own housekeeping
    /// (deleting a run's keys), which no replica needs to have.
    pub(crate) fn unwaited(&self) -> Conn {
        Conn {
            link: self.link.clone(),
            wait: None,
        }
    }

    /// A conn over a plain connection to one server.
    pub(crate) fn plain(conn: MultiplexedConnection) -> Conn {
        Conn {
            link: Link::Plain(conn),
            wait: None,
        }
    }
}

/// The commands racelab's strategies write with: after each of them (or a pipeline holding
/// one), `--wait-replicas` waits. Reads need no wait.
fn is_write(cmd: &Cmd) -> bool {
    const WRITES: &[&[u8]] = &[
        b"SET", b"HSET", b"HINCRBY", b"HDEL", b"DEL", b"UNLINK", b"EVALSHA", b"EVAL", b"FCALL",
        b"EXEC", b"INCR", b"INCRBY",
    ];
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => WRITES.iter().any(|w| name.eq_ignore_ascii_case(w)),
        _ => false,
    }
}

/// WAIT's reply: fewer replicas than asked means the write's fate is unknown (it is on the
/// primary, which may yet fail over to a replica without it), which the strategies report as an
/// unknown outcome, as they do a timeout.
fn check_wait(reply: Option<Value>, wait: WaitReplicas) -> redis::RedisResult<()> {
    let acked: i64 = match reply {
        Some(value) => redis::from_redis_value(value.extract_error()?)?,
        None => 0,
    };
    if acked >= i64::from(wait.replicas) {
        return Ok(());
    }
    Err(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "WAIT: {acked} of {} replicas acknowledged the write within {} ms, so it may be lost in a failover",
            wait.replicas,
            wait.timeout.as_millis()
        ),
    )))
}

impl Link {
    fn as_like(&mut self) -> &mut (dyn redis::aio::ConnectionLike + Send) {
        match self {
            Link::Single(conn) => conn,
            Link::Cluster(conn) => conn,
            Link::Plain(conn) => conn,
        }
    }
}

impl Conn {
    /// Sends `cmd` (and its WAIT, with `--wait-replicas`).
    fn send<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.wait {
            Some(wait) if is_write(cmd) => Box::pin(async move {
                // One pipeline: nothing of another updater's can come between the write and
                // its WAIT on the shared connection, and WAIT covers every write this
                // connection made before it, this one included.
                let mut pipe = redis::pipe();
                pipe.add_command(cmd.clone());
                pipe.cmd("WAIT")
                    .arg(wait.replicas)
                    .arg(wait.timeout.as_millis() as u64);
                let mut replies = self.link.as_like().req_packed_commands(&pipe, 0, 2).await?;
                let acked = replies.pop();
                let reply = replies.pop().unwrap_or(Value::Nil).extract_error()?;
                check_wait(acked, wait)?;
                Ok(reply)
            }),
            _ => self.link.as_like().req_packed_command(cmd),
        }
    }

    /// Sends `pipeline` (and its WAIT, with `--wait-replicas`).
    fn send_pipeline<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self.wait {
            // An atomic pipeline would put WAIT inside its MULTI; racelab's transactions are
            // plain pipelines (`strategy::transaction`).
            Some(wait) if !pipeline.is_transaction() && pipeline.cmd_iter().any(is_write) => {
                Box::pin(async move {
                    let mut pipe = pipeline.clone();
                    pipe.cmd("WAIT")
                        .arg(wait.replicas)
                        .arg(wait.timeout.as_millis() as u64);
                    let mut replies = self
                        .link
                        .as_like()
                        .req_packed_commands(&pipe, offset, count + 1)
                        .await?;
                    let acked = replies.pop();
                    // An EXEC that aborted (a WATCHed key changed) wrote nothing: no replica
                    // needs to have it, and the conflict is what the strategy must hear.
                    let aborted = pipeline.cmd_iter().last().is_some_and(|cmd| {
                        matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"EXEC"))
                    }) && matches!(replies.last(), Some(Value::Nil));
                    if !aborted {
                        check_wait(acked, wait)?;
                    }
                    Ok(replies)
                })
            }
            _ => self
                .link
                .as_like()
                .req_packed_commands(pipeline, offset, count),
        }
    }
}

/// An updater's request waits for its turn (`crate::in_flight`) before redis-rs is asked, so a
/// request in line holds no request future and no encoded command of redis-rs's yet.
impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match crate::in_flight::admission() {
            None => self.send(cmd),
            Some(turn) => Box::pin(async move {
                let _permit = turn.await;
                self.send(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match crate::in_flight::admission() {
            None => self.send_pipeline(pipeline, offset, count),
            Some(turn) => Box::pin(async move {
                let _permit = turn.await;
                self.send_pipeline(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(conn) => conn.get_db(),
            Link::Cluster(conn) => conn.get_db(),
            Link::Plain(conn) => conn.get_db(),
        }
    }
}

/// Reconnect attempts of a shared connection before a command fails for good.
const RECONNECT_ATTEMPTS: usize = 3;

/// Attempts the cluster client makes for one command: enough to follow a MOVED or ASK (a slot
/// migrating, a failover) and a reconnect, few enough that a dead node fails the command soon.
const CLUSTER_ATTEMPTS: u32 = 5;

/// Where a journey lives on a cluster: its keys' slot (one slot, thanks to the hash tag) and the
/// primary that owned it when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterPlace {
    pub slot: u16,
    /// `host:port` of the primary that owns the slot.
    pub node: String,
    /// How many primaries serve the cluster's slots.
    pub primaries: usize,
}

// One per target, never moved around in bulk: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Single {
        client: redis::Client,
        /// Kept here so the private server lives exactly as long as the target.
        private: Option<RedisServer>,
        /// A private primary with replicas (`--replicas`), which the client reaches through
        /// the set's relay; kept here for the same reason.
        set: Option<Arc<ReplicaSet>>,
    },
    Cluster {
        client: Arc<ClusterClient>,
        /// The cluster connection that asks who owns a slot for dedicated connections: opened
        /// once, shared by every updater's connector, since it holds a connection to each node.
        asker: Arc<tokio::sync::OnceCell<ClusterConnection>>,
        /// The first seed node's URL, the template (scheme, user, password) for dedicated
        /// connections to single nodes.
        seed: String,
        /// Kept here so the private cluster lives exactly as long as the target.
        private: Option<RedisCluster>,
    },
}

pub struct Target {
    backend: Backend,
    /// The URL (or the cluster's seed URLs) with passwords replaced by `***`.
    display: String,
    /// The URL for other tools (redis-benchmark), when it holds no secret: never printed. None
    /// on a cluster, which those tools would need told apart (`redis-benchmark --cluster`).
    tool_url: Option<String>,
    /// The URL as given, password included, for a user's journey service (`exec:`), which
    /// gets it in its environment: never printed. None on a cluster.
    url: Option<String>,
    version: String,
    timeout: Duration,
    /// `--wait-replicas`: every shared connection waits for the replicas after each write.
    wait: Option<WaitReplicas>,
}

impl Target {
    /// Connects to `url`, or starts a private redis-server when there is none.
    pub async fn open(url: Option<&str>, timeout: Duration) -> Result<Target, Error> {
        match url {
            Some(url) => Self::connect(url, None, None, timeout).await,
            None => {
                let server = RedisServer::start()?;
                let url = server.url();
                Self::connect(&url, Some(server), None, timeout).await
            }
        }
    }

    /// Starts a private primary with `replicas` replicas (`--replicas`) and connects to it
    /// through the relay that a failover repoints (README "Failover").
    pub async fn open_replicated(replicas: usize, timeout: Duration) -> Result<Target, Error> {
        let set = Arc::new(ReplicaSet::start(replicas).await?);
        let url = set.url();
        Self::connect(&url, None, Some(set), timeout).await
    }

    /// The same target, with every write of its shared connections followed by `WAIT` for
    /// `replicas` replicas (`--wait-replicas`; none when `None` or 0).
    pub fn with_wait_replicas(mut self, replicas: Option<u32>) -> Target {
        self.set_wait_replicas(replicas);
        self
    }

    /// [`Target::with_wait_replicas`] in place, for the connections opened from now on (the
    /// bench's cells, with and without WAIT).
    pub fn set_wait_replicas(&mut self, replicas: Option<u32>) {
        self.wait = replicas.filter(|n| *n > 0).map(|replicas| WaitReplicas {
            replicas,
            // WAIT must give up before racelab's own timeout calls the write unknown.
            timeout: WAIT_TIMEOUT.min(self.timeout / 2),
        });
    }

    pub fn wait_replicas(&self) -> Option<WaitReplicas> {
        self.wait
    }

    /// Waits until every private replica (`--replicas`) has what `conn` wrote so far (`WAIT`),
    /// so a failover finds the seeded journey there; nothing to wait for without replicas.
    pub async fn replicated(&self, conn: &mut Conn) -> Result<(), Error> {
        let replicas = self.replicas();
        if replicas == 0 {
            return Ok(());
        }
        // Within the connection's own response timeout, or the client gives up on WAIT first. A
        // replica resyncing after the last run's failover is back well within it.
        let deadline = self.timeout * 4 / 5;
        let acked: usize = redis::cmd("WAIT")
            .arg(replicas)
            .arg(deadline.as_millis() as u64)
            .query_async(conn)
            .await
            .map_err(|e| self.refused(&e))?;
        if acked < replicas {
            return Err(Error::Run {
                target: self.display.clone(),
                reason: format!(
                    "{acked} of {replicas} private replicas got the seeded journey within {}; a failover could not be shown",
                    humantime::format_duration(deadline)
                ),
            });
        }
        Ok(())
    }

    /// The private replicas of a single server, or of each private cluster primary
    /// (`--replicas`); 0 otherwise.
    pub fn replicas(&self) -> usize {
        match &self.backend {
            Backend::Single { set: Some(set), .. } => set.replicas(),
            Backend::Cluster {
                private: Some(cluster),
                ..
            } => cluster.replicas(),
            _ => 0,
        }
    }

    /// Fails the private primary over to its replica (README "Failover"); `snapshot` reads the
    /// run's segment counts from one side. An error when this target has no private replica:
    /// racelab never fails over a user's Redis.
    pub async fn fail_over<F, Fut>(
        &self,
        started: std::time::Instant,
        key: &str,
        done: &tokio_util::sync::CancellationToken,
        snapshot: F,
    ) -> Result<FailoverRecord, String>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Option<Vec<u64>>>,
    {
        match &self.backend {
            Backend::Single { set: Some(set), .. } => set.fail_over(started, done, snapshot).await,
            // On a private cluster, the primary that owns `key`'s slot goes over to its replica.
            Backend::Cluster {
                private: Some(cluster),
                seed,
                ..
            } if cluster.replicas() > 0 => {
                let mut conn = self.cluster_connection().await.map_err(|e| e.to_string())?;
                let (_, primary, _) = slot_owner(&mut conn, key).await.map_err(|e| describe(&e))?;
                let primary = node_url(seed, &primary.0, primary.1);
                // The primary itself names the replicas streaming from it: the cluster's own
                // tables may not list a replica yet.
                let replica = crate::failover::first_replica(&primary).await?;
                crate::failover::fail_over_cluster(
                    &primary,
                    &node_url(seed, &replica.0, replica.1),
                    started,
                    snapshot,
                )
                .await
            }
            _ => Err(
                "racelab fails over only its own private servers started with --replicas"
                    .to_owned(),
            ),
        }
    }

    async fn connect(
        url: &str,
        private: Option<RedisServer>,
        set: Option<Arc<ReplicaSet>>,
        timeout: Duration,
    ) -> Result<Target, Error> {
        let display = redact(url);
        install_crypto_provider();
        let client = redis::Client::open(url).map_err(|e| {
            Error::Usage(format!(
                "{display} is not a usable Redis URL ({}); write it as redis://[user:password@]host[:port][/db] or rediss:// for TLS",
                describe(&e)
            ))
        })?;
        let secret = url.starts_with("rediss://") || display != url;
        let mut target = Target {
            backend: Backend::Single {
                client,
                private,
                set,
            },
            tool_url: (!secret).then(|| url.to_owned()),
            url: Some(url.to_owned()),
            display,
            version: String::new(),
            timeout,
            wait: None,
        };
        let tls = url.starts_with("rediss://");
        let mut conn = target.connection().await.map_err(|e| match e {
            Error::Connect { target, reason } if tls => Error::Connect {
                reason: format!("{reason} (over TLS: is TLS on at that port, and is its certificate's issuer trusted? SSL_CERT_FILE names extra CA certificates)"),
                target,
            },
            other => other,
        })?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| target.refused(&e))?;
        target.version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(target)
    }

    /// Connects to the Redis Cluster that `seeds` (node URLs) belong to, or starts a private
    /// 3-primary cluster when there are none.
    pub async fn open_cluster(
        seeds: Option<&[String]>,
        timeout: Duration,
    ) -> Result<Target, Error> {
        match seeds {
            Some(seeds) => Self::connect_cluster(seeds, None, timeout).await,
            None => {
                let cluster = RedisCluster::start()?;
                let seeds = cluster.urls();
                Self::connect_cluster(&seeds, Some(cluster), timeout).await
            }
        }
    }

    /// Starts a private cluster whose primaries have `replicas` replicas each (`--replicas`).
    pub async fn open_private_cluster(replicas: usize, timeout: Duration) -> Result<Target, Error> {
        let cluster = RedisCluster::start_with(None, replicas)?;
        let seeds = cluster.urls();
        Self::connect_cluster(&seeds, Some(cluster), timeout).await
    }

    async fn connect_cluster(
        seeds: &[String],
        private: Option<RedisCluster>,
        timeout: Duration,
    ) -> Result<Target, Error> {
        let display = seeds
            .iter()
            .map(|seed| redact(seed))
            .collect::<Vec<_>>()
            .join(",");
        let Some(seed) = seeds.first() else {
            return Err(Error::Usage(
                "--cluster names no node; give seed node URLs (redis://host:port,...) or `private`"
                    .to_owned(),
            ));
        };
        install_crypto_provider();
        let client = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(CLUSTER_ATTEMPTS)
            .min_retry_wait(10)
            .max_retry_wait(500)
            .build()
            .map_err(|e| {
                Error::Usage(format!(
                    "{display} does not name a usable Redis Cluster ({}); write it as redis://[user:password@]host:port,... (any of its nodes)",
                    describe(&e)
                ))
            })?;
        let mut target = Target {
            backend: Backend::Cluster {
                client: Arc::new(client),
                asker: Arc::default(),
                seed: seed.clone(),
                private,
            },
            display,
            tool_url: None,
            url: None,
            version: String::new(),
            timeout,
            wait: None,
        };
        let mut conn = target.cluster_connection().await?;
        // INFO goes to every primary by default; one node's answer is the version.
        let info = conn
            .route_command(
                redis::cmd("INFO").arg("server").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .and_then(|v| redis::from_redis_value::<String>(v).map_err(Into::into))
            .map_err(|e| target.refused(&e))?;
        target.version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(target)
    }

    /// A new shared connection: multiplexed, and reconnecting when it drops (a killed client,
    /// a restarted server), so one fault fails the commands in flight, not the rest of the run.
    /// Right for single commands, pipelines and scripts, which carry no state on the connection;
    /// never for WATCH (see [`Connector::connect`]).
    ///
    /// On a cluster, the crate's cluster connection: one multiplexed connection per node,
    /// commands routed by key slot, redirections followed. Its retries resend a command after a
    /// dropped connection, even one Redis had run; every strategy's write on a cluster is made
    /// idempotent for that (`strategy::guarded`, README "Cluster").
    pub async fn connection(&self) -> Result<Conn, Error> {
        match &self.backend {
            Backend::Single { client, .. } => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(RECONNECT_ATTEMPTS)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(500));
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(|conn| Conn {
                        link: Link::Single(conn),
                        wait: self.wait,
                    })
                    .map_err(|e| self.refused(&e))
            }
            Backend::Cluster { .. } => self.cluster_connection().await.map(|conn| Conn {
                link: Link::Cluster(conn),
                wait: self.wait,
            }),
        }
    }

    /// A new cluster connection; on a single server, the error a misuse deserves.
    async fn cluster_connection(&self) -> Result<ClusterConnection, Error> {
        match &self.backend {
            Backend::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map_err(|e| self.refused(&e)),
            Backend::Single { .. } => Err(Error::Usage(format!(
                "{} is a single Redis server, not a cluster",
                self.display
            ))),
        }
    }

    /// What an updater keeps to open connections of its own later (after one broke).
    pub fn connector(&self) -> Connector {
        Connector {
            route: match &self.backend {
                Backend::Single { client, .. } => Route::Single(client.clone()),
                Backend::Cluster {
                    client,
                    seed,
                    asker,
                    ..
                } => Route::Cluster {
                    client: client.clone(),
                    seed: seed.clone(),
                    asker: asker.clone(),
                },
            },
            timeout: self.timeout,
            wait: self.wait,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster { .. })
    }

    /// Where the journey `journey_id` lives on the cluster; `None` on a single server.
    pub async fn placement(&self, journey_id: &str) -> Result<Option<ClusterPlace>, Error> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let mut conn = self.cluster_connection().await?;
        // Every key of the journey carries the hash tag, so the tag alone names their slot.
        let tag = format!("{{{journey_id}}}");
        let (slot, node, primaries) = slot_owner(&mut conn, &tag)
            .await
            .map_err(|e| self.refused(&e))?;
        Ok(Some(ClusterPlace {
            slot,
            node: format!("{}:{}", node.0, node.1),
            primaries,
        }))
    }

    /// Maps a failure to reach or use the server to the error a user can act on.
    pub fn refused(&self, e: &redis::RedisError) -> Error {
        let reason = describe(e);
        if let Some(advice) = advice(e, self.is_cluster()) {
            return Error::Answer {
                target: self.display.clone(),
                reason: format!("{reason}: {advice}"),
            };
        }
        if e.code() == Some("NOPERM") && reason.contains("access") {
            Error::Refused {
                target: self.display.clone(),
                reason: format!(
                    "{reason}; this user may not use racelab's keys: allow it the keys under the prefix (~<prefix>:*, and the crew's for --workers)"
                ),
            }
        } else if e.code() == Some("NOPERM") {
            Error::Refused {
                target: self.display.clone(),
                reason: format!(
                    "{reason}; this user lacks a command racelab needs: give it the read, write, scripting and transaction commands on keys under the prefix"
                ),
            }
        } else if e.kind() == redis::ErrorKind::AuthenticationFailed
            || e.code() == Some("NOAUTH")
            || e.code() == Some("WRONGPASS")
        {
            Error::Refused {
                target: self.display.clone(),
                reason: format!("{reason}; check the user and password in --redis-url"),
            }
        } else if matches!(
            e.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        ) {
            Error::Connect {
                target: self.display.clone(),
                reason: "it does not answer in the Redis protocol (is that port a Redis server?)"
                    .to_owned(),
            }
        } else if self.is_cluster() {
            Error::ClusterConnect {
                target: self.display.clone(),
                reason,
            }
        } else {
            Error::Connect {
                target: self.display.clone(),
                reason,
            }
        }
    }

    /// The URL to hand another tool on its command line, unless that would expose a password
    /// (or needs TLS settings the tool would not get).
    pub fn url_for_tools(&self) -> Option<String> {
        self.tool_url.clone()
    }

    /// The URL with its password, for a user's journey service's environment only (`exec:`);
    /// None on a cluster.
    pub fn secret_url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn is_private(&self) -> bool {
        match &self.backend {
            Backend::Single { private, set, .. } => private.is_some() || set.is_some(),
            Backend::Cluster { private, .. } => private.is_some(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The major version, for strategies that need Redis 7 (functions).
    pub fn major_version(&self) -> Option<u32> {
        self.version.split('.').next()?.parse().ok()
    }
}

/// Opens connections to the target with its timeouts.
#[derive(Clone)]
pub struct Connector {
    route: Route,
    timeout: Duration,
    /// The target's `--wait-replicas`, for [`Connector::connect_waiting`].
    wait: Option<WaitReplicas>,
}

#[derive(Clone)]
enum Route {
    Single(redis::Client),
    /// Connections go to the primary that owns a key's slot, asked at connect time.
    Cluster {
        /// Shared with the target: a cluster client is ten times the size of a plain one.
        client: Arc<ClusterClient>,
        seed: String,
        /// The target's slot-owner asker (see [`Backend::Cluster`]).
        asker: Arc<tokio::sync::OnceCell<ClusterConnection>>,
    },
}

impl Connector {
    /// Whether [`Connector::connect`] needs the key: on a cluster the node to connect to is the
    /// one that owns the key's slot.
    pub fn needs_key(&self) -> bool {
        matches!(self.route, Route::Cluster { .. })
    }

    /// A plain multiplexed connection that never reconnects by itself: what connection state
    /// (WATCH) needs, since a silent reconnect would drop that state under its owner. On a
    /// cluster it goes to the primary that owns `key`'s slot now, and follows no redirection:
    /// WATCH and MULTI/EXEC must all reach that one node, and a MOVED fails the attempt, which
    /// then connects again to the slot's new owner.
    pub async fn connect(&self, key: Option<&str>) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match &self.route {
            Route::Single(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
            Route::Cluster {
                client,
                seed,
                asker,
            } => {
                let Some(key) = key else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "a dedicated cluster connection needs the key it is for",
                    )));
                };
                let mut cluster = asker
                    .get_or_try_init(|| client.get_async_connection())
                    .await?
                    .clone();
                let (_, (host, port), _) = slot_owner(&mut cluster, key).await?;
                redis::Client::open(node_url(seed, &host, port))?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
        }
    }
}

impl Connector {
    /// [`Connector::connect`] as a [`Conn`]: the same plain connection that never reconnects by
    /// itself, whose writes wait for the replicas like the shared connection's
    /// (`--wait-replicas`), so `watch`'s EXEC counts only once they have it.
    pub async fn connect_waiting(&self, key: Option<&str>) -> redis::RedisResult<Conn> {
        let conn = self.connect(key).await?;
        Ok(Conn {
            link: Link::Plain(conn),
            wait: self.wait,
        })
    }
}

/// The slot of `key`, the primary (`host`, `port`) that owns it, and how many primaries there
/// are, as the cluster says now (CLUSTER KEYSLOT, CLUSTER SLOTS: the latter also answers on
/// Redis 6, where CLUSTER SHARDS does not exist).
async fn slot_owner(
    conn: &mut ClusterConnection,
    key: &str,
) -> redis::RedisResult<(u16, (String, u16), usize)> {
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await?;
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut primaries = std::collections::HashSet::new();
    let mut owner = None;
    for range in &ranges {
        // [start, end, [host, port, id, ...], replicas...]
        let (Some(start), Some(end), Some(primary)) = (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        let (start, end): (u16, u16) = (
            redis::from_redis_value_ref(start)?,
            redis::from_redis_value_ref(end)?,
        );
        let node: Vec<Value> = redis::from_redis_value_ref(primary)?;
        let (Some(host), Some(port)) = (node.first(), node.get(1)) else {
            continue;
        };
        let node: (String, u16) = (
            redis::from_redis_value_ref(host)?,
            redis::from_redis_value_ref(port)?,
        );
        primaries.insert(node.clone());
        if (start..=end).contains(&slot) {
            owner = Some(node);
        }
    }
    match owner {
        Some(owner) => Ok((slot, owner, primaries.len())),
        None => Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "no primary serves the slot",
            format!("slot {slot} is not assigned in CLUSTER SLOTS"),
        ))),
    }
}

/// `seed` with its host and port replaced: a node's URL with the seed's scheme, user, password
/// and database, since the nodes of one cluster share them.
fn node_url(seed: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let (userinfo, address) = match rest.rsplit_once('@') {
        Some((userinfo, address)) => (format!("{userinfo}@"), address),
        None => (String::new(), rest),
    };
    let path = address.find(['/', '?']).map_or("", |i| &address[i..]);
    format!("{scheme}://{userinfo}{host}:{port}{path}")
}

/// `rediss://` goes through rustls, which needs one process-wide crypto provider: ring's.
fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Fails only when a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A `password=` in the query string (which redis-rs does not use) is hidden all the same.
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("pass") =>
            {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The URL with any password replaced by `***`: `redis://user:***@host:6379`.
pub fn redact(url: &str) -> String {
    let url = &redact_query(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "(a URL with credentials)".to_owned()
        } else {
            url.to_owned()
        };
    };
    // The last '@' ends the credentials, even when a password holds '/' or '@'.
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if userinfo.contains(':') && password.is_empty() {
                // No password to hide: `***` would claim there is one.
                if user.is_empty() {
                    format!("{scheme}://{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            } else if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                // `redis://secret@host`: redis-rs reads a lone userinfo as a user name, but users
                // put passwords there; hide it either way.
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{node_url, redact};

    #[test]
    fn node_urls_keep_the_seeds_credentials() {
        assert_eq!(
            node_url("redis://u:p@10.0.0.1:7000/0", "10.0.0.2", 7001),
            "redis://u:p@10.0.0.2:7001/0"
        );
        assert_eq!(
            node_url("rediss://h:7000", "::1", 7002),
            "rediss://[::1]:7002"
        );
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redact("redis://u:p4ss@h:6379/0"), "redis://u:***@h:6379/0");
        assert_eq!(redact("rediss://:p4ss@h"), "rediss://:***@h");
        assert_eq!(redact("redis://p4ss@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("redis://u:p@ss@h"), "redis://u:***@h");
        // An empty password is no password: nothing to hide, nothing to suggest.
        assert_eq!(redact("redis://:@h:6379"), "redis://h:6379");
        assert_eq!(redact("redis://u:@h"), "redis://u@h");
        assert!(!redact("u:p4ss@h").contains("p4ss"));
        assert_eq!(
            redact("redis://h:6379/0?password=p4ss&x=1"),
            "redis://h:6379/0?password=***&x=1"
        );
    }
}
