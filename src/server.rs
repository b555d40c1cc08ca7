//! A private `redis-server` that lives exactly as long as its owner, its replicas (`--replicas`),
//! and a private Redis Cluster made of three primaries (and their replicas).
//!
//! racelab starts one when no `--redis-url` is given, and the test suite starts one per test. It
//! listens on a free loopback port (`--port 0` would turn TCP off, so a free port is picked and
//! passed), keeps nothing on disk, logs into a temporary directory, and is killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;

/// A private server's temporary directory is `racelab-redis-<pid of racelab>-<random>`, so a later
/// racelab can tell the directories of a racelab that was killed (SIGKILL runs no destructor)
/// from those of one still running, and remove them.
const DIR_PREFIX: &str = "racelab-redis-";

/// Removes the temporary directories of private servers whose racelab is gone.
fn sweep_orphaned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if owner > 0 && !process_alive(owner) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` exists (it may belong to another user: then it is alive all the same).
fn process_alive(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only asks whether the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// How long a fresh redis-server gets to answer PING.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// A free port can be taken by someone else between our probe and redis-server's bind.
const START_ATTEMPTS: usize = 5;

pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// The binary to run: `RACELAB_REDIS_SERVER`, else `redis-server` on PATH.
    pub fn binary() -> String {
        std::env::var("RACELAB_REDIS_SERVER")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "redis-server".to_owned())
    }

    /// Starts a private redis-server and waits until it answers.
    pub fn start() -> Result<RedisServer, Error> {
        Self::start_with_args(&[])
    }

    /// Starts a private redis-server with extra configuration arguments (`--requirepass x`, ...).
    pub fn start_with_args(extra: &[&str]) -> Result<RedisServer, Error> {
        let binary = Self::binary();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, extra)? {
                Ok(server) => return Ok(server),
                Err(failure) => last_failure = failure,
            }
        }
        Err(Error::RedisServerStart(last_failure))
    }

    /// Outer error: cannot go on at all. Inner error: this attempt failed, another may work.
    fn try_start(binary: &str, extra: &[&str]) -> Result<Result<RedisServer, String>, Error> {
        let port = free_port().map_err(|e| Error::RedisServerStart(e.to_string()))?;
        sweep_orphaned_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| Error::RedisServerStart(format!("no temporary directory: {e}")))?;
        let log = dir.path().join("redis.log");
        let mut command = Command::new(binary);
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RedisServerMissing {
                    binary: binary.to_owned(),
                });
            }
            Err(e) => return Err(Error::RedisServerStart(format!("cannot run {binary}: {e}"))),
        };
        let mut server = RedisServer { child, port, dir };
        Ok(server.wait_ready().map(|()| server))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server exited ({status}): {}",
                    self.log_tail()
                ));
            }
            if ping(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not answer within {READY_DEADLINE:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log, for a failing test or a failed start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }

    /// Starts a private redis-server that replicates `primary` (`--replicaof`), with the same
    /// extra arguments, and waits until its link is up and it holds what the primary held.
    pub fn start_replica_of(primary: &RedisServer, extra: &[&str]) -> Result<RedisServer, Error> {
        let port = primary.port().to_string();
        let mut args = vec!["--replicaof", "127.0.0.1", port.as_str()];
        args.extend_from_slice(extra);
        let replica = Self::start_with_args(&args)?;
        replica.wait_in_sync(&primary.url())?;
        Ok(replica)
    }

    /// Waits until this replica's link to its primary is up and its offset has reached the
    /// primary's, so a run never starts on a replica still loading the first sync.
    fn wait_in_sync(&self, primary_url: &str) -> Result<(), Error> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let primary = replication_info(primary_url);
            let replica = replication_info(&self.url());
            let in_sync = match (&primary, &replica) {
                (Some(primary), Some(replica)) => {
                    replica.get("master_link_status").map(String::as_str) == Some("up")
                        && offset(replica, "slave_repl_offset")
                            >= offset(primary, "master_repl_offset")
                }
                _ => false,
            };
            if in_sync {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::RedisServerStart(format!(
                    "the replica on port {} did not catch up with its primary within {READY_DEADLINE:?}: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Primaries of a private cluster: three, the fewest `redis-cli --cluster create` accepts.
pub const CLUSTER_PRIMARIES: usize = 3;
/// How long a freshly created cluster gets to report `cluster_state:ok` on every node.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(20);

/// A private Redis Cluster: three `redis-server --cluster-enabled yes` primaries on free loopback
/// ports, joined and given the 16384 slots by `redis-cli --cluster create`, all killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Every node's `requirepass` (and `masterauth`), when it has one.
    password: Option<String>,
    /// Replicas per primary.
    replicas: usize,
}

impl RedisCluster {
    /// The `redis-cli` that forms the cluster: `RACELAB_REDIS_CLI`, else `redis-cli` on PATH.
    pub fn cli_binary() -> String {
        std::env::var("RACELAB_REDIS_CLI")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "redis-cli".to_owned())
    }

    /// Starts three primaries, forms the cluster, and waits until every node says it is ok.
    pub fn start() -> Result<RedisCluster, Error> {
        Self::start_with_password(None)
    }

    /// [`RedisCluster::start`], every node protected by `password` when there is one.
    pub fn start_with_password(password: Option<&str>) -> Result<RedisCluster, Error> {
        Self::start_with(password, 0)
    }

    /// [`RedisCluster::start_with_password`], each primary with `replicas` replicas
    /// (`--replicas`): `redis-cli --cluster create --cluster-replicas` pairs them up.
    pub fn start_with(password: Option<&str>, replicas: usize) -> Result<RedisCluster, Error> {
        let count = CLUSTER_PRIMARIES * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            // The node table goes into the server's own temporary --dir (a relative path is
            // resolved there), so nothing outlives the cluster. A short node timeout keeps a
            // test that kills a node from waiting long for the failure to be noticed.
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ];
            if let Some(password) = password {
                args.extend(["--requirepass", password, "--masterauth", password]);
            }
            nodes.push(RedisServer::start_with_args(&args)?);
        }
        let cluster = RedisCluster {
            nodes,
            password: password.map(str::to_owned),
            replicas,
        };
        cluster.create()?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn create(&self) -> Result<(), Error> {
        let binary = Self::cli_binary();
        let mut command = Command::new(&binary);
        command.args(["--cluster", "create"]);
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port()));
        }
        command
            .args([
                "--cluster-replicas",
                &self.replicas.to_string(),
                "--cluster-yes",
            ])
            .stdin(Stdio::null());
        // Through the environment, not `-a`: a command line is visible to every user in `ps`.
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        let output = match command.output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RedisCliMissing { binary });
            }
            Err(e) => return Err(Error::ClusterStart(format!("cannot run {binary}: {e}"))),
        };
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            return Err(Error::ClusterStart(format!(
                "{binary} --cluster create exited ({}): {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )));
        }
        Ok(())
    }

    /// `redis-cli --cluster create` returns once the nodes agree on the slots, but a node may
    /// still report `cluster_state:fail` for a moment; a run must not start before all say ok.
    fn wait_ok(&self) -> Result<(), Error> {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        for node in &self.nodes {
            loop {
                let state = cluster_state(&self.url_of(node));
                if state.as_deref() == Some("ok") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::ClusterStart(format!(
                        "node 127.0.0.1:{} still reports cluster_state:{} after {CLUSTER_DEADLINE:?}",
                        node.port(),
                        state.as_deref().unwrap_or("(no answer)")
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The replicas' roles travel by gossip after `create` returns: a run must not start
        // while a node still takes a replica for a primary without slots.
        let replicas = CLUSTER_PRIMARIES * self.replicas;
        for node in &self.nodes {
            loop {
                let seen = replicas_seen(&self.url_of(node));
                // A replica counts once its link to its primary is up: until then CLUSTER SLOTS
                // leaves it out, and it holds nothing a failover could keep.
                let synced = match replication_info(&self.url_of(node)) {
                    Some(info) if info.get("role").map(String::as_str) == Some("slave") => {
                        info.get("master_link_status").map(String::as_str) == Some("up")
                    }
                    Some(_) => true,
                    None => false,
                };
                if seen == Some(replicas) && synced {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::ClusterStart(format!(
                        "node 127.0.0.1:{} sees {} replicas, not {replicas}, after {CLUSTER_DEADLINE:?}",
                        node.port(),
                        seen.map_or_else(|| "no".to_owned(), |n| n.to_string())
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The seed URLs of every node, with the password in them when the nodes have one (these
    /// URLs are for connecting, never for printing).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| self.url_of(node)).collect()
    }

    fn url_of(&self, node: &RedisServer) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", node.port()),
            None => node.url(),
        }
    }

    /// Replicas per primary (`--replicas`).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `index` now (the others live on), as a crashed primary would vanish.
    pub fn stop_node(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.stop();
        }
    }

    /// Every node's log, for a failing test.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node {} ---\n{}", node.port(), node.log()))
            .collect()
    }
}

/// A node's `cluster_state` from CLUSTER INFO, or `None` when it does not answer.
fn cluster_state(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("cluster_state:"))
        .map(|state| state.trim().to_owned())
}

/// A server's `INFO replication` as field → value, or `None` when it does not answer.
pub(crate) fn replication_info(url: &str) -> Option<std::collections::HashMap<String, String>> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .ok()?;
    Some(parse_info(&info))
}

/// `field:value` lines of an INFO reply.
pub(crate) fn parse_info(info: &str) -> std::collections::HashMap<String, String> {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A numeric INFO field, or -1 when it is missing.
pub(crate) fn offset(info: &std::collections::HashMap<String, String>, field: &str) -> i64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(-1)
}

/// How many replicas a node's CLUSTER NODES lists, or `None` when it does not answer.
fn replicas_seen(url: &str) -> Option<usize> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
    Some(
        nodes
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(2)
                    .is_some_and(|flags| flags.split(',').any(|f| f == "slave"))
            })
            .count(),
    )
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // Any answer but LOADING means the server serves: a password-protected one answers NOAUTH.
    let mut reply = [0u8; 8];
    match stream.read(&mut reply) {
        Ok(n) if n > 0 => {
            let reply = &reply[..n];
            reply.starts_with(b"+PONG") || (reply[0] == b'-' && !reply.starts_with(b"-LOADING"))
        }
        _ => false,
    }
}

/// Asks Linux to kill the child when racelab dies, even by SIGKILL, so the private server can't
/// outlive us. Drop handles every orderly exit; this covers the disorderly ones.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own process attributes.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
