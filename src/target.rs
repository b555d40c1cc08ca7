//! The Redis a run goes against: a URL the user named, or a private redis-server racelab owns.
//!
//! The target is also the one place that turns a URL into something printable: the password never
//! leaves this module in clear.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::error::Error;
use crate::server::RedisServer;

/// The connection updaters share: see [`Target::connection`].
pub type Conn = ConnectionManager;

/// Reconnect attempts of a shared connection before a command fails for good.
const RECONNECT_ATTEMPTS: usize = 3;

pub struct Target {
    client: redis::Client,
    /// The URL with its password replaced by `***`.
    display: String,
    /// The URL for other tools (redis-benchmark), when it holds no secret: never printed.
    tool_url: Option<String>,
    version: String,
    timeout: Duration,
    /// Kept here so the private server lives exactly as long as the target.
    private: Option<RedisServer>,
}

impl Target {
    /// Connects to `url`, or starts a private redis-server when there is none.
    pub async fn open(url: Option<&str>, timeout: Duration) -> Result<Target, Error> {
        match url {
            Some(url) => Self::connect(url, None, timeout).await,
            None => {
                let server = RedisServer::start()?;
                let url = server.url();
                Self::connect(&url, Some(server), timeout).await
            }
        }
    }

    async fn connect(
        url: &str,
        private: Option<RedisServer>,
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
            client,
            tool_url: (!secret).then(|| url.to_owned()),
            display,
            version: String::new(),
            timeout,
            private,
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

    /// A new shared connection: multiplexed, and reconnecting when it drops (a killed client,
    /// a restarted server), so one fault fails the commands in flight, not the rest of the run.
    /// Right for single commands, pipelines and scripts, which carry no state on the connection;
    /// never for WATCH (see [`Connector::connect`]).
    pub async fn connection(&self) -> Result<Conn, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        self.client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| self.refused(&e))
    }

    /// What an updater keeps to open connections of its own later (after one broke).
    pub fn connector(&self) -> Connector {
        Connector {
            client: self.client.clone(),
            timeout: self.timeout,
        }
    }

    /// Maps a failure to reach or use the server to the error a user can act on.
    pub fn refused(&self, e: &redis::RedisError) -> Error {
        let reason = describe(e);
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || e.code() == Some("NOPERM")
            || e.code() == Some("NOAUTH")
            || e.code() == Some("WRONGPASS")
        {
            Error::Refused {
                target: self.display.clone(),
                reason: format!("{reason}; check the user and password in --redis-url"),
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

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn is_private(&self) -> bool {
        self.private.is_some()
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
    client: redis::Client,
    timeout: Duration,
}

impl Connector {
    /// A plain multiplexed connection that never reconnects by itself: what connection state
    /// (WATCH) needs, since a silent reconnect would drop that state under its owner.
    pub async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// `rediss://` goes through rustls, which needs one process-wide crypto provider: ring's.
fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Fails only when a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A Redis error as one line, without the crate's `Debug` decoration.
pub fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let text = text.trim().trim_end_matches('.').to_owned();
    if text.is_empty() {
        format!("{:?}", e.kind())
    } else {
        text
    }
}

/// The URL with any password replaced by `***`: `redis://user:***@host:6379`.
pub fn redact(url: &str) -> String {
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
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            if userinfo.contains(':') {
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
    use super::redact;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redact("redis://u:p4ss@h:6379/0"), "redis://u:***@h:6379/0");
        assert_eq!(redact("rediss://:p4ss@h"), "rediss://:***@h");
        assert_eq!(redact("redis://p4ss@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("redis://u:p@ss@h"), "redis://u:***@h");
        assert!(!redact("u:p4ss@h").contains("p4ss"));
    }
}
