//! Command-line options (README "Options") and their checks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::engine::Settings;
use crate::error::Error;
use crate::history::HistoryFormat;
use crate::journey::Journey;
use crate::report::{BenchFormat, Expect, Format};
use crate::strategy::Strategy;
use crate::workload::{Tuning, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "racelab",
    version,
    about = "Make the lost-update race against Redis visible, and prove which fixes hold.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Action>,
    /// Options of the interactive TUI, when no command is given.
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// The interactive TUI (the default).
    Tui(Options),
    /// Headless: run strategies, print a report, exit with a verdict (0 as expected, 1 not, 2 no run).
    Run(RunArgs),
    /// Throughput and latency of the strategies, beside redis-benchmark on the same server.
    Bench(BenchArgs),
    /// Every interleaving of 2 or 3 updaters' steps, each run on the real Redis: which lose.
    Prove(ProveArgs),
    /// Join runs from this process or host: run the share of updaters a `run --workers K` (or
    /// the TUI's) hands out, racing the other workers through the same Redis.
    Worker(WorkerArgs),
    /// Shell completions for bash, zsh, fish, powershell or elvish, or with --man the man page.
    Completions(CompletionsArgs),
}

/// Options of `racelab completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell whose completion script to print.
    #[arg(value_enum, required_unless_present = "man")]
    pub shell: Option<clap_complete::Shell>,

    /// Print racelab's man page (roff, for `man -l`) instead.
    #[arg(long, conflicts_with = "shell")]
    pub man: bool,
}

/// Options of `racelab worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The Redis the coordinator runs on (a worker never starts one of its own).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The Redis Cluster the coordinator runs on: seed node URLs (redis://host:port,...).
    #[arg(long, env = "REDIS_CLUSTER", hide_env_values = true, value_name = "NODES",
          value_parser = parse_cluster)]
    pub cluster: Option<ClusterSpec>,

    /// The coordinator's --key-prefix: workers and coordinators meet under it.
    #[arg(long, default_value = "racelab", value_parser = parse_prefix)]
    pub key_prefix: String,

    /// How long any Redis command may take before its outcome counts as unknown.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Leave after serving one run (or TUI session) instead of waiting for the next.
    #[arg(long)]
    pub once: bool,

    /// The crew's shared secret (at least 16 characters): follow only a coordinator that signs
    /// with it. Never printed.
    #[arg(long, env = "RACELAB_CREW_SECRET", hide_env_values = true, value_name = "SECRET",
          value_parser = crate::crew::CrewSecret::parse)]
    pub crew_secret: Option<crate::crew::CrewSecret>,
}

impl WorkerArgs {
    /// The coordinator's Redis: a worker must be told where it is.
    pub async fn target(&self) -> Result<crate::target::Target, Error> {
        use crate::target::Target;
        match redis_choice(self.redis_url.as_deref(), self.cluster.as_ref())? {
            (None, Some(ClusterSpec::Nodes(nodes))) => {
                Target::open_cluster(Some(nodes), self.timeout).await
            }
            (None, Some(ClusterSpec::Private)) => Err(Error::Usage(
                "a worker joins the coordinator's cluster and cannot start a private one; name its nodes with --cluster redis://host:port,...".to_owned(),
            )),
            (Some(url), _) => Target::open(Some(url), self.timeout).await,
            (None, None) => Err(Error::Usage(
                "a worker joins a run on the coordinator's Redis; name it with --redis-url (or REDIS_URL), or --cluster for a Redis Cluster".to_owned(),
            )),
        }
    }
}

/// Options of `racelab prove`.
#[derive(Debug, Clone, Args)]
pub struct ProveArgs {
    #[arg(help = crate::strategy::STRATEGY_HELP.as_str(), short, long, default_value = "all", value_parser = parse_strategies)]
    pub strategy: StrategyList,

    /// Updaters whose interleavings are tried: 2 or 3.
    #[arg(short = 'n', long, default_value_t = 2, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(2..=3))]
    pub updaters: u32,

    /// Retries (conflict, busy lock) an update may take before it gives up: what keeps the
    /// interleavings of retrying strategies finite.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub retry_bound: u32,

    /// What the schedules test for: lost-update, or write-skew (a losing schedule breaks the
    /// invariant).
    #[arg(long, value_enum, default_value_t = crate::workload::Scenario::LostUpdate)]
    pub scenario: crate::workload::Scenario,

    /// Between two tries of an update. A schedule orders the steps, so no pause changes what
    /// prove finds; it is taken for the runs' settings to match `run`'s.
    #[arg(long, value_enum, default_value_t = crate::workload::Backoff::Exp)]
    pub backoff: crate::workload::Backoff,

    /// The lock, fenced and del-unlock strategies' lock ttl [default: 10s, so no lock expires
    /// (no time passes in prove; `run --schedule` with `t` shows an expiry); 100ms with --expiry].
    #[arg(long, value_parser = parse_timeout)]
    pub lock_ttl: Option<Duration>,

    /// Also let time pass once (`t`: the lock's ttl runs out) before any step of the strategies
    /// whose lock can expire (lock, fenced, del-unlock). Slower (each `t` waits the ttl), and
    /// with 2 updaters only.
    #[arg(long)]
    pub expiry: bool,

    /// Redis to run against; without it racelab starts a private redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Every key racelab touches starts with this prefix.
    #[arg(long, default_value = "racelab", value_parser = parse_prefix)]
    pub key_prefix: String,

    /// How long any Redis command may take before its outcome counts as unknown.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write a self-contained HTML page of the proof: each shortest losing schedule, step
    /// by step (README "HTML timeline").
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Options of `racelab bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(help = crate::strategy::STRATEGY_HELP.as_str(), short, long, default_value = "all", value_parser = parse_strategies)]
    pub strategy: StrategyList,

    /// The updater counts of the grid, a comma list.
    #[arg(short = 'n', long, default_value = "1,50,1000", value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub updaters: Vec<u32>,

    /// How long each cell runs.
    #[arg(long, default_value = "1s", value_parser = parse_bench_duration)]
    pub duration: Duration,

    /// Pause between reading and writing.
    #[arg(long, default_value = "0ms", allow_hyphen_values = true, value_parser = parse_think)]
    pub think: Duration,

    /// Segments in the journey.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub segments: Option<u32>,

    /// Redis to run against; without it racelab starts a private redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Every key racelab touches starts with this prefix.
    #[arg(long, default_value = "racelab", value_parser = parse_prefix)]
    pub key_prefix: String,

    /// How long any Redis command may take before its outcome counts as unknown.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// How long the lock, fenced and del-unlock strategies' lock lives [default: 10 × think, at least 1s].
    #[arg(long, value_parser = parse_timeout)]
    pub lock_ttl: Option<Duration>,

    /// Retries (conflict, busy lock) before an update gives up.
    #[arg(long, default_value_t = DEFAULT_MAX_RETRIES, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_retries: u32,

    /// The backoff policies to measure, a comma list: each strategy and updater count runs
    /// once with each (none: try again at once; exp: exponential, with jitter).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "exp")]
    pub backoff: Vec<crate::workload::Backoff>,

    /// The WAIT to measure, a comma list of replica counts: each strategy and updater count runs
    /// once with each (0: no WAIT; N: every write followed by WAIT N). Without --redis-url the
    /// private server gets as many replicas as the largest.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "0", value_parser = clap::value_parser!(u32).range(0..=5))]
    pub wait_replicas: Vec<u32>,

    /// Skip the redis-benchmark yardsticks.
    #[arg(long)]
    pub no_redis_benchmark: bool,

    /// Report format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
    pub format: BenchFormat,

    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Options shared by `tui` and `run`.
#[derive(Debug, Clone, Args)]
pub struct Options {
    #[arg(help = crate::strategy::STRATEGY_HELP.as_str(), short, long, default_value = "naive", value_parser = parse_strategies)]
    pub strategy: StrategyList,

    /// Concurrent updaters; updater i works on segment i mod the segment count.
    #[arg(short = 'n', long, default_value_t = 20, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub updaters: u32,

    /// Segments in the journey (the seed fixture has 20; more are generated the same way).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub segments: Option<u32>,

    /// Updates each updater makes, one after another.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rounds: u32,

    /// Pause between reading and writing, like the seed's Task.Delay(10) [default: 10ms in run, 600ms with jitter in the TUI].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_think)]
    pub think: Option<Duration>,

    /// Redis to run against; without it racelab starts a private redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Run on a Redis Cluster: seed node URLs (redis://host:port,...; any nodes of it), or
    /// `private` for a 3-primary cluster racelab starts and stops itself (needs redis-cli).
    /// Given on the command line, it wins over REDIS_URL in the environment.
    #[arg(long, env = "REDIS_CLUSTER", hide_env_values = true, value_name = "NODES|private",
          value_parser = parse_cluster)]
    pub cluster: Option<ClusterSpec>,

    /// Every key racelab touches starts with this prefix.
    #[arg(long, default_value = "racelab", value_parser = parse_prefix)]
    pub key_prefix: String,

    /// Leave the run's keys in Redis for inspection.
    #[arg(long)]
    pub keep: bool,

    /// Seed of the jitter, for repeatable runs [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,

    /// A journey in the seed's JSON format [default: the JRN-TEST-001 fixture].
    #[arg(long, value_name = "FILE")]
    pub journey: Option<PathBuf>,

    /// How long the lock, fenced and del-unlock strategies' lock lives [default: 10 × think, at least 1s].
    #[arg(long, value_parser = parse_timeout)]
    pub lock_ttl: Option<Duration>,

    /// Between two tries of an update (a WATCH abort, a CAS conflict, a busy lock): none (at
    /// once) or exp (exponential, with jitter).
    #[arg(long, value_enum, default_value_t = crate::workload::Backoff::Exp)]
    pub backoff: crate::workload::Backoff,

    /// Retries (conflict, busy lock) before an update gives up; give-ups are reported.
    #[arg(long, default_value_t = DEFAULT_MAX_RETRIES, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_retries: u32,

    /// How long any Redis command may take before its outcome counts as unknown.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Run the updaters in K worker processes (`racelab worker`, on this host or others, on the
    /// same Redis) instead of in this one; racelab waits for them to join.
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: Option<u32>,

    /// What the run tests for: lost-update (each updater writes its own status) or write-skew
    /// (each tries to board its own segment while no other is Boarding).
    #[arg(long, value_enum, default_value_t = crate::workload::Scenario::LostUpdate)]
    pub scenario: crate::workload::Scenario,

    /// The interleaving to run: updater numbers (spaces or commas), each letting that updater take
    /// its next step; `t` lets time pass (the lock's ttl runs out); steps left over run one at a
    /// time in updater order. The TUI opens in step mode with it loaded.
    #[arg(long, value_name = "\"1 2 1 2\"", value_parser = crate::schedule::Schedule::parse)]
    pub schedule: Option<crate::schedule::Schedule>,

    /// A secret shared with the --workers (at least 16 characters): every job and release is
    /// signed with it, and a worker started with it follows nothing else. Never printed.
    #[arg(long, env = "RACELAB_CREW_SECRET", hide_env_values = true, value_name = "SECRET",
          value_parser = crate::crew::CrewSecret::parse)]
    pub crew_secret: Option<crate::crew::CrewSecret>,

    /// How long to wait for the --workers to join.
    #[arg(long, default_value = "2m", value_parser = parse_timeout, value_name = "DURATION")]
    pub join_timeout: Duration,

    /// Replicas of racelab's private server (or of each private cluster primary): the failover
    /// lesson (README "Failover"). Not with --redis-url: racelab starts no replicas of a
    /// user's Redis.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub replicas: u32,

    /// Fail the private primary over to its replica this long after the release (200ms, 1s):
    /// acknowledged writes the replica lacked are lost to failover. Needs --replicas.
    #[arg(long, value_name = "DURATION", value_parser = parse_failover_at)]
    pub failover_at: Option<Duration>,

    /// Follow every write with WAIT N: an update counts as acknowledged only once N replicas
    /// have it (fewer within 1s: its outcome is unknown).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub wait_replicas: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub options: Options,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write every operation of the run to this file as JSON lines (see the README).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,

    /// How --history writes: racelab's JSON lines, or elle: a Jepsen history (EDN) that Elle's
    /// rw-register checker reads (README "History").
    #[arg(long, value_enum, default_value_t = HistoryFormat::Racelab)]
    pub history_format: HistoryFormat,

    /// Also write the run as a self-contained HTML timeline: lanes, segments, who erased whom
    /// (README "HTML timeline").
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// What the verdict expects: auto (naive loses when it can race, fixes don't), lost, intact.
    #[arg(long, value_enum, default_value_t = Expect::Auto)]
    pub expect: Expect,
}

/// The cluster `--cluster` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSpec {
    /// A private 3-primary cluster racelab starts and tears down.
    Private,
    /// Seed nodes of a running cluster, as URLs.
    Nodes(Vec<String>),
}

fn parse_cluster(text: &str) -> Result<ClusterSpec, String> {
    if text.trim().eq_ignore_ascii_case("private") {
        return Ok(ClusterSpec::Private);
    }
    let mut nodes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // A bare host:port is the common way to name a cluster node (redis-cli does).
        let url = if part.contains("://") {
            part.to_owned()
        } else {
            format!("redis://{part}")
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "'{}' is not a cluster node; write redis://host:port or rediss://host:port",
                crate::target::redact(part)
            ));
        }
        nodes.push(url);
    }
    if nodes.is_empty() {
        return Err(
            "no cluster node given; name seed nodes (redis://host:port,...) or `private`"
                .to_owned(),
        );
    }
    Ok(ClusterSpec::Nodes(nodes))
}

/// The strategies of `-s`, in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyList(pub Vec<Strategy>);

fn parse_strategies(text: &str) -> Result<StrategyList, String> {
    let mut list = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // A command may hold commas: `exec:` takes the rest of the list, so it comes last.
        let (part, next) = match rest.trim_start() {
            command if command.starts_with("exec:") => (command, ""),
            other => other.split_once(',').unwrap_or((other, "")),
        };
        rest = next;
        let part = part.trim();
        if part.eq_ignore_ascii_case("all") {
            list.extend_from_slice(Strategy::ALL);
            continue;
        }
        list.push(Strategy::parse(part)?);
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|s| seen.insert(*s));
    if list.is_empty() {
        return Err("no strategy given; name one, a comma list, or all".to_owned());
    }
    Ok(StrategyList(list))
}

fn parse_duration(text: &str, what: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a {what} ({e}); write it like 10ms, 1s or 250us"))
}

/// Pauses above a minute make a run that looks hung; nobody demos that.
const MAX_THINK: Duration = Duration::from_secs(60);

fn parse_think(text: &str) -> Result<Duration, String> {
    let think = parse_duration(text, "duration")?;
    if think > MAX_THINK {
        return Err(format!(
            "{text} is longer than the 60s a think time may last"
        ));
    }
    Ok(think)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text, "duration")?;
    if timeout.is_zero() || timeout > Duration::from_secs(3600) {
        return Err(format!("{text} is not a timeout between 1ms and 1h"));
    }
    Ok(timeout)
}

fn parse_failover_at(text: &str) -> Result<Duration, String> {
    let at = parse_duration(text, "duration")?;
    if at.is_zero() || at > Duration::from_secs(3600) {
        return Err(format!(
            "{text} is not a time after the release between 1ms and 1h"
        ));
    }
    Ok(at)
}

fn parse_bench_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text, "duration")?;
    if duration.is_zero() || duration > Duration::from_secs(3600) {
        return Err(format!("{text} is not a cell duration between 1ms and 1h"));
    }
    Ok(duration)
}

fn parse_prefix(text: &str) -> Result<String, String> {
    // Exactly the characters the message names: no glob characters (the cleanup hint is a
    // SCAN pattern), no braces (the journey's hash tag), no spaces or control characters.
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.');
    if text.is_empty() || !text.chars().all(allowed) {
        return Err(format!(
            "{:?} cannot prefix racelab's keys; use letters, digits, ':' '-' '_' or '.'",
            text
        ));
    }
    Ok(text.to_owned())
}

/// Which of `--redis-url` and `--cluster` names the Redis. An exported REDIS_URL must not stop
/// `--cluster` on the command line (nor REDIS_CLUSTER `--redis-url`): the one given as an option
/// wins over the other's environment variable. Two options, or two variables, are a
/// contradiction only the user can settle.
fn redis_choice<'a>(
    url: Option<&'a str>,
    cluster: Option<&'a ClusterSpec>,
) -> Result<(Option<&'a str>, Option<&'a ClusterSpec>), Error> {
    let (Some(url), Some(cluster)) = (url, cluster) else {
        return Ok((url, cluster));
    };
    let url_from_env = std::env::var("REDIS_URL").is_ok_and(|env| env == url);
    let cluster_from_env = std::env::var("REDIS_CLUSTER")
        .ok()
        .and_then(|env| parse_cluster(&env).ok())
        .is_some_and(|env| env == *cluster);
    match (url_from_env, cluster_from_env) {
        (true, false) => Ok((None, Some(cluster))),
        (false, true) => Ok((Some(url), None)),
        (true, true) => Err(Error::Usage(
            "REDIS_URL and REDIS_CLUSTER are both set; unset one, or choose with --redis-url or --cluster".to_owned(),
        )),
        (false, false) => Err(Error::Usage(
            "--redis-url and --cluster both name a Redis; give one of them".to_owned(),
        )),
    }
}

/// The environment as the options read it (README "Options"): an empty variable counts as unset
/// (`REDIS_URL= racelab run` starts a private server), and an option given on the command line
/// wins over the other option's variable, so `REDIS_CLUSTER=junk racelab run --redis-url …` is
/// not refused for a `--cluster` the user never gave.
///
/// Call it before parsing, while the process has one thread: it changes the environment.
pub fn settle_environment(args: &[std::ffi::OsString]) {
    let given = |option: &str| {
        args.iter().any(|arg| {
            arg.to_str().is_some_and(|arg| {
                arg == option || arg.strip_prefix(option).is_some_and(|r| r.starts_with('='))
            })
        })
    };
    let mut unset = Vec::new();
    for name in [
        "REDIS_URL",
        "REDIS_CLUSTER",
        "RACELAB_REDIS_SERVER",
        "RACELAB_REDIS_CLI",
    ] {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            unset.push(name);
        }
    }
    if given("--redis-url") {
        unset.push("REDIS_CLUSTER");
    }
    if given("--cluster") {
        unset.push("REDIS_URL");
    }
    for name in unset {
        // SAFETY: called at the start of `main`, before any other thread exists.
        unsafe { std::env::remove_var(name) };
    }
}

/// Retries before an update gives up: enough for hundreds of updaters on one journey.
pub const DEFAULT_MAX_RETRIES: u32 = 10_000;

/// The TUI's think time: slow enough for people to follow reads and writes.
pub const TUI_THINK: Duration = Duration::from_millis(600);
/// The headless think time, the seed's `Task.Delay(10)`.
pub const RUN_THINK: Duration = Duration::from_millis(10);

impl Options {
    /// Opens the Redis these options name: a cluster (`--cluster`), a server (`--redis-url`),
    /// or a private redis-server.
    pub async fn target(&self) -> Result<crate::target::Target, Error> {
        use crate::target::Target;
        let choice = redis_choice(self.redis_url.as_deref(), self.cluster.as_ref())?;
        self.check_failover(choice)?;
        let replicas = self.replicas as usize;
        let target = match choice {
            (None, Some(ClusterSpec::Private)) => {
                Target::open_private_cluster(replicas, self.timeout).await
            }
            (None, Some(ClusterSpec::Nodes(nodes))) => {
                Target::open_cluster(Some(nodes), self.timeout).await
            }
            (None, None) if replicas > 0 => Target::open_replicated(replicas, self.timeout).await,
            (url, _) => Target::open(url, self.timeout).await,
        }?;
        Ok(target.with_wait_replicas(self.wait_replicas))
    }

    /// `--replicas` and `--failover-at` act on racelab's own private servers only (README
    /// "Failover"): never on a user's Redis.
    fn check_failover(&self, choice: (Option<&str>, Option<&ClusterSpec>)) -> Result<(), Error> {
        let private = matches!(choice, (None, None) | (None, Some(ClusterSpec::Private)));
        if self.replicas > 0 && !private {
            return Err(Error::Usage(
                "--replicas starts replicas of racelab's own private servers only, never of a user's Redis; leave out --redis-url (or give --cluster private)".to_owned(),
            ));
        }
        if self.failover_at.is_some() && self.replicas == 0 {
            return Err(Error::Usage(
                "--failover-at promotes a replica of racelab's private server, and there is none; add --replicas 1 (and leave out --redis-url)".to_owned(),
            ));
        }
        if self.failover_at.is_some() && self.workers.is_some() {
            return Err(Error::Usage(
                "--failover-at fails over a run of this process's updaters; leave out --workers"
                    .to_owned(),
            ));
        }
        if self.wait_replicas.is_some() && self.cluster.is_some() {
            return Err(Error::Usage(
                "--wait-replicas works on a single server for now, not on a cluster; leave out --cluster".to_owned(),
            ));
        }
        if let Some(wait) = self.wait_replicas
            && private
            && wait > self.replicas
        {
            return Err(Error::Usage(format!(
                "--wait-replicas {wait} waits for more replicas than racelab starts (--replicas {}); every write would have an unknown outcome",
                self.replicas
            )));
        }
        Ok(())
    }

    /// The workload these options describe, with `default_think` when `--think` is not given.
    pub fn workload(&self, default_think: Duration, jitter: f64) -> Result<Workload, Error> {
        let journey = match &self.journey {
            Some(path) => Journey::from_file(path)?,
            None => Journey::seed_fixture()?,
        };
        let segments = self.segments.map_or(journey.segments.len(), |s| s as usize);
        let think = self.think.unwrap_or(default_think);
        if let Some(schedule) = &self.schedule {
            if self.workers.is_some() {
                return Err(Error::Usage(
                    "--schedule runs the updaters in this process, one step at a time; leave out --workers".to_owned(),
                ));
            }
            schedule.check(self.updaters).map_err(Error::Usage)?;
        }
        Ok(Workload {
            journey: Arc::new(journey.with_segments(segments)),
            updaters: self.updaters,
            rounds: self.rounds,
            think,
            jitter,
            seed: self.seed.unwrap_or_else(rand::random),
            tuning: Tuning {
                backoff: self.backoff,
                lock_ttl: self
                    .lock_ttl
                    .unwrap_or_else(|| Tuning::default_lock_ttl(think)),
                max_retries: self.max_retries,
            },
            deadline: None,
            schedule: self.schedule.clone(),
            processes: self.workers.unwrap_or(1),
            scenario: self.scenario,
        })
    }

    pub fn settings(&self) -> Settings {
        Settings {
            key_prefix: self.key_prefix.clone(),
            keep: self.keep,
            lost_limit: LOST_LISTED,
            remote: None,
            driver: None,
            service: None,
            failover_at: self.failover_at,
            failover_now: None,
        }
    }
}

/// How many lost updates a report lists per strategy; the counts stay exact beyond it.
pub const LOST_LISTED: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_lists_parse() {
        assert_eq!(
            parse_strategies("naive,hash").unwrap().0,
            vec![Strategy::Naive, Strategy::Hash]
        );
        assert_eq!(parse_strategies("all").unwrap().0, Strategy::ALL.to_vec());
        assert_eq!(
            parse_strategies("hash,HASH").unwrap().0,
            vec![Strategy::Hash]
        );
        let err = parse_strategies("nope").unwrap_err();
        assert!(err.contains("unknown strategy 'nope'"), "{err}");
    }

    #[test]
    fn clusters_are_named_by_seed_nodes_or_private() {
        assert_eq!(parse_cluster("private").unwrap(), ClusterSpec::Private);
        assert_eq!(
            parse_cluster("127.0.0.1:7000, rediss://u:p@h:7001").unwrap(),
            ClusterSpec::Nodes(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "rediss://u:p@h:7001".to_owned()
            ])
        );
        let err = parse_cluster("http://u:secret@h:1").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(parse_cluster(" , ").is_err());
    }

    #[test]
    fn durations_are_checked() {
        assert_eq!(parse_think("10ms").unwrap(), Duration::from_millis(10));
        assert!(parse_think("ten").is_err());
        assert!(parse_think("2h").is_err());
        assert!(parse_timeout("0s").is_err());
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
