//! The real binary in a real terminal (tmux): start `racelab`, press Enter, see lost updates on
//! the screen, press q; the exit code is 0 and the private redis-server is gone. With
//! `--workers 2`, two `racelab worker` processes run the updaters and leave when the TUI quits.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestRedis;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tmux {
            socket: format!("racelab-e2e-{}-{nanos}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux must be installed for the end-to-end test (.ci/run installs it)")
    }

    /// Runs `command` through `sh -c` in a 100×30 pane named `e2e`.
    fn start(&self, command: &str) -> Output {
        self.run(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            "e2e",
            "sh",
            "-c",
            command,
        ])
    }

    /// The pid of the racelab the pane's shell started.
    fn racelab(&self) -> u32 {
        let shell: u32 = String::from_utf8_lossy(
            &self
                .run(&["display-message", "-p", "-t", "e2e", "#{pane_pid}"])
                .stdout,
        )
        .trim()
        .parse()
        .expect("tmux names the pane's process");
        children(shell)
            .into_iter()
            .find(|(_, comm)| comm == "racelab")
            .map(|(pid, _)| pid)
            .expect("racelab runs in the pane")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    /// Polls the screen until `want` holds, or fails with the last screen.
    fn wait_for(&self, what: &str, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.capture();
            if want(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what} within {within:?}; last screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        // tmux leaves its socket behind when the last session ends by itself.
        let dir = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".to_owned());
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(format!("{dir}/tmux-{uid}/{}", self.socket));
    }
}

/// (pid, command name) of the processes whose parent is `parent`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push((pid, comm));
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `racelab ARGS` on its own private redis-server in a tmux pane, at its idle screen; the file
/// gets its exit code once it ends.
fn idle_racelab(args: &str) -> (Tmux, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let command = format!(
        "env -u REDIS_URL NO_COLOR=1 '{}' {args}; echo $? > '{}'",
        env!("CARGO_BIN_EXE_racelab"),
        exit_file.display()
    );
    let tmux = Tmux::new();
    let started = tmux.start(&command);
    assert!(
        started.status.success(),
        "tmux new-session failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.wait_for("the idle screen", Duration::from_secs(20), |s| {
        s.contains("idle: press Enter to run naive")
    });
    (tmux, exit_file, dir)
}

#[test]
fn racelab_shows_lost_updates_and_quits_cleanly() {
    let (tmux, exit_file, _dir) = idle_racelab("--think 150ms");

    let racelab = tmux.racelab();
    let redis: Vec<u32> = children(racelab)
        .into_iter()
        .filter(|(_, comm)| comm.starts_with("redis-server"))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(redis.len(), 1, "racelab owns one private redis-server");

    tmux.run(&["send-keys", "-t", "e2e", "Enter"]);
    let screen = tmux.wait_for("lost updates", Duration::from_secs(30), |s| {
        s.contains("updates lost") && s.contains("✗ SEG-")
    });
    assert!(screen.contains("naive done in"), "{screen}");

    tmux.run(&["send-keys", "-t", "e2e", "q"]);
    let code = exit_code(&tmux, &exit_file, Duration::from_secs(15));
    assert_eq!(code, "0", "racelab's exit code after q");
    assert!(!alive(racelab), "racelab is still running");
    for pid in redis {
        assert!(
            !alive(pid),
            "the private redis-server {pid} outlived racelab"
        );
    }
}

/// Worker processes this test started; killed if the test fails before they leave by themselves.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for the exit code the pane's shell writes to `file`, or fails with the screen.
fn exit_code(tmux: &Tmux, file: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(code) = std::fs::read_to_string(file)
            && !code.trim().is_empty()
        {
            return code.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "racelab did not exit; screen:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_two_workers_the_lanes_name_them_and_quitting_lets_them_go() {
    let redis = TestRedis::start();
    let url = redis.url();
    let racelab = env!("CARGO_BIN_EXE_racelab");
    // --once: each serves the TUI's session and leaves when it ends.
    let mut workers = Workers(Vec::new());
    for _ in 0..2 {
        workers.0.push(
            Command::new(racelab)
                .args(["worker", "--once", "--redis-url", &url])
                .env_remove("REDIS_URL")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let command = format!(
        "env -u REDIS_URL NO_COLOR=1 '{racelab}' --redis-url '{url}' --workers 2 --join-timeout 30s --think 150ms; echo $? > '{}'",
        exit_file.display()
    );
    let tmux = Tmux::new();
    // 40 rows: every one of the 20 lanes shows, the second worker's too.
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "40",
        "-s",
        "e2e",
        "sh",
        "-c",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.wait_for(
        "the idle screen with 2 workers",
        Duration::from_secs(30),
        |s| s.contains("idle: press Enter to run naive") && s.contains("20 updaters in 2 workers"),
    );

    tmux.run(&["send-keys", "-t", "e2e", "Enter"]);
    let screen = tmux.wait_for("the finished run", Duration::from_secs(30), |s| {
        s.contains("naive done in")
    });
    for lane in ["#1  w1 done", "#10 w1 done", "#11 w2 done", "#20 w2 done"] {
        assert!(screen.contains(lane), "no {lane:?} lane:\n{screen}");
    }
    assert!(screen.contains("updates lost"), "{screen}");

    tmux.run(&["send-keys", "-t", "e2e", "q"]);
    assert_eq!(
        exit_code(&tmux, &exit_file, Duration::from_secs(15)),
        "0",
        "racelab's exit code after q"
    );
    // The session ended, so each worker (serving once) left, with success.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (k, worker) in workers.0.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = worker.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} still runs after the TUI quit",
                k + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "worker {} exited with {status}", k + 1);
    }
}

#[test]
fn without_a_terminal_racelab_points_to_run() {
    for args in [&[][..], &["tui"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_racelab"))
            .args(args)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "racelab {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("use `racelab run`"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
        assert!(out.stdout.is_empty(), "nothing drawn on a pipe");
    }
}

#[test]
fn closing_the_terminal_mid_run_ends_racelab_and_deletes_its_keys() {
    let redis = TestRedis::start();
    // The shell stays between tmux and racelab (it has more to do after), so the hangup may
    // reach the shell and not racelab: racelab must notice the terminal is gone by itself.
    let command = format!(
        "env NO_COLOR=1 '{}' --redis-url '{}' --think 2s; echo done",
        env!("CARGO_BIN_EXE_racelab"),
        redis.url()
    );
    let tmux = Tmux::new();
    let started = tmux.start(&command);
    assert!(started.status.success());
    tmux.wait_for("the idle screen", Duration::from_secs(20), |s| {
        s.contains("idle: press Enter to run naive")
    });
    let racelab = tmux.racelab();
    tmux.run(&["send-keys", "-t", "e2e", "Enter"]);
    tmux.wait_for("the run", Duration::from_secs(10), |s| {
        s.contains("running naive")
    });
    tmux.run(&["kill-server"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(racelab) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(racelab), "racelab outlived its terminal");
    // It stopped its run and deleted the run's keys on the way out.
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(redis.all_keys()), Vec::<String>::new());
}

#[test]
fn step_mode_steps_naive_through_1_2_1_2_and_shows_the_lost_segment() {
    let (tmux, exit_file, _dir) = idle_racelab("-n 2");
    tmux.run(&["send-keys", "-t", "e2e", "p"]);
    tmux.wait_for("step mode", Duration::from_secs(20), |s| {
        s.contains("▶#1") && s.contains("next: GET journey")
    });
    // The presenter picks each updater by its number and lets it take its step; each step is
    // answered by the real Redis before the next is taken.
    for (k, updater) in ["1", "2", "1", "2"].into_iter().enumerate() {
        tmux.run(&["send-keys", "-t", "e2e", updater, "Space"]);
        let number = format!("{:>2} #{updater} ", k + 1);
        tmux.wait_for(&format!("step {}", k + 1), Duration::from_secs(20), |s| {
            s.contains(&number)
        });
    }
    let screen = tmux.wait_for("the lost segment", Duration::from_secs(20), |s| {
        // The sentence may wrap: "#2 wrote its copy from step 2: SEG-001's Departed is gone".
        s.contains("from step 2: SEG-001's")
            && s.contains("Departed is gone")
            && s.contains("✗ SEG-001")
    });
    assert!(screen.contains("schedule: 1 2 1 2"), "{screen}");
    tmux.wait_for("the repeat command", Duration::from_secs(20), |s| {
        s.contains("racelab run -s naive -n 2 --schedule") && s.contains("\"1 2 1 2\"")
    });
    tmux.run(&["send-keys", "-t", "e2e", "q"]);
    let code = exit_code(&tmux, &exit_file, Duration::from_secs(15));
    assert_eq!(code, "0", "racelab's exit code after q");
}
