//! `racelab bench`: what each fix costs. Every strategy runs for a fixed time at each updater
//! count of a small grid, with no think time, and each cell reports throughput, latency, Redis
//! commands and retries per update, and racelab's own CPU time per update.
//!
//! Numbers from a noisy machine only mean something next to a yardstick measured on the same
//! server in the same run: when `redis-benchmark` is on PATH, it runs `HSET` with 50 clients, with
//! and without pipelining, against the same Redis, and every cell gives its ratio to both.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::BenchArgs;
use crate::engine::{self, Settings};
use crate::error::Error;
use crate::journey::Journey;
use crate::keys::Keys;
use crate::report::{BenchFormat, RedisInfo};
use crate::strategy::Strategy;
use crate::target::{Conn, Target};
use crate::truth::ms;
use crate::workload::{Tuning, Workload};

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub redis: RedisInfo,
    /// How long each cell ran.
    pub duration_ms: f64,
    pub think_ms: f64,
    pub segments: u32,
    pub cpus: usize,
    /// `redis-benchmark` on the same server, or why there is none.
    pub yardstick: Yardstick,
    pub cells: Vec<BenchCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Yardstick {
    /// `HSET` requests/s with 50 clients, no pipelining.
    pub hset_c50: Option<f64>,
    /// `HSET` requests/s with 50 clients and 16 requests pipelined.
    pub hset_c50_p16: Option<f64>,
    /// Why a figure is missing.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchCell {
    pub strategy: Strategy,
    pub updaters: u32,
    /// What an update did between two tries (`--backoff`).
    pub backoff: crate::workload::Backoff,
    /// Replicas each write waited for with `WAIT` (`--wait-replicas`); 0: no WAIT.
    pub wait_replicas: u32,
    /// Acknowledged updates in the cell.
    pub updates: u64,
    pub updates_per_s: f64,
    pub latency_ms: CellLatency,
    /// Redis commands the updaters sent per acknowledged update (`INFO commandstats` deltas,
    /// with the run's setup measured apart and taken off).
    pub commands_per_update: Option<f64>,
    pub retries_per_update: f64,
    /// racelab's own CPU time (user + system) per acknowledged update.
    pub cpu_us_per_update: f64,
    /// racelab's peak resident memory during the cell, in MiB (Linux; `null` elsewhere).
    pub peak_rss_mib: Option<f64>,
    pub lost: u64,
    pub unknown: u64,
    /// Updates still retrying when the cell's time was up (they stop there) or past
    /// `--max-retries`.
    pub gave_up: u64,
    /// `updates_per_s` over the yardsticks.
    pub ratio_hset_c50: Option<f64>,
    pub ratio_hset_c50_p16: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellLatency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// What a run cost, measured around it.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    commands: u64,
    cpu: Duration,
    /// racelab's peak resident memory during the run, where Linux can say.
    peak_rss: Option<u64>,
}

/// Resets the process's peak resident memory (Linux: `5` to `/proc/self/clear_refs`), so the
/// next [`peak_rss`] is the peak since now. Whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident memory in bytes (`VmHWM` of `/proc/self/status`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

pub async fn run(args: &BenchArgs, cancel: &CancellationToken) -> Result<BenchReport, Error> {
    if args.output.is_none() {
        crate::output::check_stdout("bench report")?;
    }
    let mut output = match &args.output {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| Error::Output {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let journey = Journey::seed_fixture()?;
    let segments = args.segments.map_or(journey.segments.len(), |s| s as usize);
    let journey = std::sync::Arc::new(journey.with_segments(segments));
    // WAIT needs replicas to wait for: without --redis-url, the private server gets as many as
    // the most any cell waits for.
    let most_waited = args.wait_replicas.iter().copied().max().unwrap_or(0);
    let mut target = match (&args.redis_url, most_waited) {
        (None, n) if n > 0 => Target::open_replicated(n as usize, args.timeout).await?,
        (url, _) => Target::open(url.as_deref(), args.timeout).await?,
    };
    let mut stats = target.connection().await?;
    let settings = Settings {
        key_prefix: args.key_prefix.clone(),
        keep: false,
        lost_limit: 0,
        remote: None,
        driver: None,
        service: None,
        failover_at: None,
        failover_now: None,
    };

    let mut progress = Progress::new(
        args.strategy.0.len() * args.updaters.len() * args.backoff.len() * args.wait_replicas.len(),
    );
    let yardstick = if args.no_redis_benchmark {
        Yardstick {
            hset_c50: None,
            hset_c50_p16: None,
            note: Some("not run: --no-redis-benchmark".to_owned()),
        }
    } else {
        if target.url_for_tools().is_some() {
            progress.say("redis-benchmark yardsticks (HSET, 50 clients, without and with -P 16)");
        }
        yardstick(&target, &args.key_prefix, &mut stats).await
    };

    let mut cells = Vec::new();
    for &strategy in &args.strategy.0 {
        for (&updaters, &backoff, &wait_replicas) in args.updaters.iter().flat_map(|u| {
            args.backoff
                .iter()
                .flat_map(move |b| args.wait_replicas.iter().map(move |w| (u, b, w)))
        }) {
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            target.set_wait_replicas(Some(wait_replicas));
            progress.cell(strategy, updaters);
            let workload = Workload {
                journey: journey.clone(),
                updaters,
                rounds: u32::MAX,
                think: args.think,
                jitter: 0.0,
                seed: 0,
                tuning: Tuning {
                    backoff,
                    lock_ttl: args
                        .lock_ttl
                        .unwrap_or_else(|| Tuning::default_lock_ttl(args.think)),
                    max_retries: args.max_retries,
                },
                deadline: Some(args.duration),
                schedule: None,
                processes: 1,
                scenario: crate::workload::Scenario::LostUpdate,
            };
            // The same run with no time to update measures what setting up costs (connections,
            // seeding, read-back, cleanup), to take it off the real one.
            let setup = Workload {
                deadline: Some(Duration::ZERO),
                schedule: None,
                ..workload.clone()
            };
            let (_, base) =
                measured(&target, &mut stats, strategy, &setup, &settings, cancel).await?;
            let (result, cost) =
                measured(&target, &mut stats, strategy, &workload, &settings, cancel).await?;
            let tally = &result.tally;
            let updates = tally.acknowledged.max(1) as f64;
            let secs = tally.last_at.as_secs_f64().max(f64::EPSILON);
            let updates_per_s = tally.acknowledged as f64 / secs;
            let commands = cost.commands.saturating_sub(base.commands);
            let cpu = cost.cpu.saturating_sub(base.cpu);
            cells.push(BenchCell {
                strategy,
                updaters,
                backoff,
                wait_replicas,
                updates: tally.acknowledged,
                updates_per_s: round(updates_per_s),
                latency_ms: CellLatency {
                    p50: round(tally.latency_ms(0.5)),
                    p99: round(tally.latency_ms(0.99)),
                    p999: round(tally.latency_ms(0.999)),
                    max: round(tally.max_latency_ms()),
                },
                commands_per_update: (cost.commands > 0).then(|| round(commands as f64 / updates)),
                retries_per_update: round(tally.retries as f64 / updates),
                cpu_us_per_update: round(cpu.as_secs_f64() * 1e6 / updates),
                peak_rss_mib: cost.peak_rss.map(|b| round(b as f64 / (1024.0 * 1024.0))),
                lost: result.truth.lost,
                unknown: tally.unknown,
                gave_up: tally.give_ups,
                ratio_hset_c50: yardstick.hset_c50.map(|y| round(updates_per_s / y)),
                ratio_hset_c50_p16: yardstick.hset_c50_p16.map(|y| round(updates_per_s / y)),
            });
        }
    }
    progress.done();

    let report = BenchReport {
        redis: RedisInfo {
            version: target.version().to_owned(),
            private: target.is_private(),
            url: target.display().to_owned(),
            // The bench runs on one server (its --redis-url, or a private one).
            cluster: None,
        },
        duration_ms: ms(args.duration),
        think_ms: ms(args.think),
        segments: segments as u32,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        yardstick,
        cells,
    };
    let text = match args.format {
        BenchFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        BenchFormat::Text => report.text(),
    };
    match (&mut output, &args.output) {
        (Some(file), Some(path)) => file.write_all(text.as_bytes()).map_err(|e| Error::Output {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?,
        _ => crate::output::stdout(&text, "bench report")?,
    }
    Ok(report)
}

/// Runs the engine and measures the Redis commands and the CPU time it took.
async fn measured(
    target: &Target,
    stats: &mut Conn,
    strategy: Strategy,
    workload: &Workload,
    settings: &Settings,
    cancel: &CancellationToken,
) -> Result<(engine::RunResult, Cost), Error> {
    let commands_before = commands_served(stats).await;
    let cpu_before = cpu_time();
    let reset = reset_peak_rss();
    let result = engine::run(target, strategy, workload, settings, None, cancel).await?;
    let cpu = cpu_time().saturating_sub(cpu_before);
    let peak_rss = peak_rss().filter(|_| reset);
    let commands_after = commands_served(stats).await;
    let commands = match (commands_before, commands_after) {
        // The INFO that reads "before" is counted in "after".
        (Some(before), Some(after)) => after.saturating_sub(before + 1),
        _ => 0,
    };
    if let Some(reason) = result.stopped.as_ref().or(result.unverified.as_ref()) {
        return Err(Error::Run {
            target: target.display().to_owned(),
            reason: format!("{strategy} with {} updaters: {reason}", workload.updaters),
        });
    }
    Ok((
        result,
        Cost {
            commands,
            cpu,
            peak_rss,
        },
    ))
}

/// Every command the server has served, from `INFO commandstats`; `None` when it won't say.
async fn commands_served(conn: &mut Conn) -> Option<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .ok()?;
    Some(
        info.lines()
            .filter(|line| line.starts_with("cmdstat_"))
            .filter_map(|line| {
                let calls = line.split_once("calls=")?.1;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum(),
    )
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `redis-benchmark` on the same server: HSET on one key of racelab's own (redis-benchmark's
/// built-in tests would write keys outside the prefix), deleted afterwards.
async fn yardstick(target: &Target, prefix: &str, conn: &mut Conn) -> Yardstick {
    let missing = |note: &str| Yardstick {
        hset_c50: None,
        hset_c50_p16: None,
        note: Some(note.to_owned()),
    };
    let Some(url) = target.url_for_tools() else {
        return missing(
            "not run: the URL carries a password or TLS, which redis-benchmark would need on its command line",
        );
    };
    let key = format!("{prefix}:{}:{{bench}}:hset", Keys::new_run_id());
    // Made here with the safety-net expiry, which redis-benchmark's HSETs keep: a racelab killed
    // during the yardstick leaves nothing for good.
    let _: redis::RedisResult<()> = redis::pipe()
        .hset(&key, "field", "value")
        .ignore()
        .pexpire(&key, crate::keys::SAFETY_TTL.as_millis() as i64)
        .ignore()
        .query_async(conn)
        .await;
    let c50 = redis_benchmark(&url, &key, 100_000, None).await;
    let p16 = redis_benchmark(&url, &key, 1_000_000, Some(16)).await;
    let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(conn).await;
    match (c50, p16) {
        (Ok(c50), Ok(p16)) => Yardstick {
            hset_c50: Some(round(c50)),
            hset_c50_p16: Some(round(p16)),
            note: None,
        },
        (Err(e), _) | (_, Err(e)) => missing(&e),
    }
}

async fn redis_benchmark(
    url: &str,
    key: &str,
    requests: u32,
    pipeline: Option<u32>,
) -> Result<f64, String> {
    let mut command = tokio::process::Command::new("redis-benchmark");
    command
        .args(["-u", url, "-c", "50", "-n", &requests.to_string(), "--csv"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(p) = pipeline {
        command.args(["-P", &p.to_string()]);
    }
    command.args(["HSET", key, "field", "value"]);
    let output = command.output().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "not run: redis-benchmark is not on PATH (apt install redis-tools)".to_owned()
        }
        _ => format!("redis-benchmark failed: {e}"),
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    // --csv: a header, then `"HSET …","<rps>",…`.
    text.lines()
        .nth(1)
        .and_then(|line| line.split("\",\"").nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .ok_or_else(|| format!("redis-benchmark printed no result: {}", text.trim()))
}

/// Where a long bench is, on one line of a terminal (nothing when stderr is not one).
struct Progress {
    cells: usize,
    done: usize,
    line: crate::output::Progress,
}

impl Progress {
    fn new(cells: usize) -> Progress {
        Progress {
            cells,
            done: 0,
            line: crate::output::Progress::on_terminal().at_once(),
        }
    }

    fn say(&mut self, what: &str) {
        self.line.step(&format!("bench: {what}…"));
    }

    fn cell(&mut self, strategy: Strategy, updaters: u32) {
        self.done += 1;
        let what = format!(
            "[{}/{}] {strategy} × {updaters} updater{}",
            self.done,
            self.cells,
            if updaters == 1 { "" } else { "s" }
        );
        self.say(&what);
    }

    fn done(&mut self) {
        self.line.clear();
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl BenchReport {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let where_ = if self.redis.private {
            "private redis-server".to_owned()
        } else {
            self.redis.url.clone()
        };
        let _ = writeln!(
            out,
            "racelab bench · Redis {} ({where_}) · {} · {} · think {} · {} per cell",
            self.redis.version,
            crate::output::counted(self.cpus as u64, "CPU"),
            crate::output::counted(self.segments, "segment"),
            humantime::format_duration(Duration::from_secs_f64(self.think_ms / 1000.0)),
            humantime::format_duration(Duration::from_secs_f64(self.duration_ms / 1000.0)),
        );
        match (self.yardstick.hset_c50, self.yardstick.hset_c50_p16) {
            (Some(c50), Some(p16)) => {
                let _ = writeln!(
                    out,
                    "redis-benchmark on the same server: HSET -c 50: {c50:.0}/s · HSET -c 50 -P 16: {p16:.0}/s"
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "redis-benchmark: {}",
                    self.yardstick.note.as_deref().unwrap_or("no figures")
                );
            }
        }
        let _ = writeln!(out);
        // As wide as the longest name benched (the wrong fixes' names are longer).
        let w = self
            .cells
            .iter()
            .map(|c| c.strategy.name().len())
            .fold(9, usize::max);
        // The backoff policy gets a column when the bench compared several (`--backoff none,exp`).
        let policies = self
            .cells
            .iter()
            .any(|c| c.backoff != self.cells[0].backoff);
        // So does the WAIT, when the bench compared several (`--wait-replicas 0,1`).
        let waits = self
            .cells
            .iter()
            .any(|c| c.wait_replicas != self.cells[0].wait_replicas);
        let policy = |p: &str, wait: &str| {
            let mut column = String::new();
            if policies {
                column.push_str(&format!(" {p:>7}"));
            }
            if waits {
                column.push_str(&format!(" {wait:>6}"));
            }
            column
        };
        let _ = writeln!(
            out,
            "{:<w$} {:>8}{} {:>10} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5}",
            "strategy",
            "updaters",
            policy("backoff", "WAIT"),
            "updates/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "cmds/upd",
            "retr/upd",
            "cpu µs",
            "RSS MiB",
            "×c50",
            "×P16",
            "lost"
        );
        let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        for cell in &self.cells {
            let _ = writeln!(
                out,
                "{:<w$} {:>8}{} {:>10.0} {:>8.2} {:>8.2} {:>9.2} {:>9} {:>8.2} {:>8.1} {:>7} {:>7} {:>7} {:>5}",
                cell.strategy.name(),
                cell.updaters,
                policy(&cell.backoff.to_string(), &cell.wait_replicas.to_string()),
                cell.updates_per_s,
                cell.latency_ms.p50,
                cell.latency_ms.p99,
                cell.latency_ms.p999,
                cell.commands_per_update
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
                cell.retries_per_update,
                cell.cpu_us_per_update,
                cell.peak_rss_mib
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.0}")),
                ratio(cell.ratio_hset_c50),
                ratio(cell.ratio_hset_c50_p16),
                cell.lost,
            );
        }
        out
    }
}
