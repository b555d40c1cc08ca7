//! `--history-format elle` (README "History"): the run's history as a Jepsen history that Elle's
//! rw-register checker reads. Each file is parsed by an EDN parser and checked for what Elle
//! assumes of a history (processes alternate invoke and completion, nothing after `:info`, unique
//! writes per key, every read names a write that exists), then cross-checked with the two
//! inferences racelab's anomalies rest on: Elle's lost-update rule (two committed transactions
//! read the same version of a key and both wrote it) and a G2-item anti-dependency cycle.

use std::collections::{BTreeMap, HashMap, HashSet};

use edn_format::{Keyword, Value};

use crate::common::{TestRedis, json_report, racelab};

/// One micro-operation: `[:r key value]` or `[:w key value]`; `None` is `nil`.
#[derive(Debug, Clone, PartialEq)]
struct Mop {
    write: bool,
    key: String,
    value: Option<i64>,
}

#[derive(Debug, Clone)]
struct Op {
    index: i64,
    kind: String,
    process: i64,
    value: Vec<Mop>,
}

fn field<'a>(map: &'a BTreeMap<Value, Value>, name: &str) -> &'a Value {
    map.get(&Value::Keyword(Keyword::from_name(name)))
        .unwrap_or_else(|| panic!("no :{name} in {map:?}"))
}

fn parse(text: &str) -> Vec<Op> {
    text.lines()
        .map(|line| {
            let Ok(Value::Map(map)) = edn_format::parse_str(line) else {
                panic!("not an EDN map: {line}")
            };
            let int = |name| match field(&map, name) {
                Value::Integer(n) => *n,
                other => panic!(":{name} is {other:?}"),
            };
            let Value::Keyword(kind) = field(&map, "type") else {
                panic!("{line}")
            };
            assert_eq!(field(&map, "f"), &Value::Keyword(Keyword::from_name("txn")));
            let Value::Vector(mops) = field(&map, "value") else {
                panic!("{line}")
            };
            let value = mops
                .iter()
                .map(|mop| match mop {
                    Value::Vector(parts) => match parts.as_slice() {
                        [Value::Keyword(f), Value::String(key), value] => Mop {
                            write: match f.name() {
                                "r" => false,
                                "w" => true,
                                other => panic!("mop {other} in {line}"),
                            },
                            key: key.clone(),
                            value: match value {
                                Value::Nil => None,
                                Value::Integer(n) => Some(*n),
                                other => panic!("value {other:?} in {line}"),
                            },
                        },
                        _ => panic!("{line}"),
                    },
                    _ => panic!("{line}"),
                })
                .collect();
            Op {
                index: int("index"),
                kind: kind.name().to_owned(),
                process: int("process"),
                value,
            }
        })
        .collect()
}

/// What Elle assumes of a history, checked; returns the committed (`:ok`) transactions.
fn well_formed(ops: &[Op]) -> Vec<&Op> {
    let mut open: HashMap<i64, &Op> = HashMap::new();
    let mut crashed = HashSet::new();
    let mut written: HashMap<&str, HashSet<i64>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op.index, i as i64, "indices count up");
        assert!(!crashed.contains(&op.process), "an op after :info: {op:?}");
        match op.kind.as_str() {
            "invoke" => {
                assert!(open.insert(op.process, op).is_none(), "two invokes: {op:?}");
                for mop in op.value.iter().filter(|m| m.write) {
                    let value = mop.value.expect("a write writes a value");
                    assert!(
                        written.entry(&mop.key).or_default().insert(value),
                        "writes are unique per key: {op:?}"
                    );
                }
            }
            kind @ ("ok" | "fail" | "info") => {
                let invoke = open.remove(&op.process).expect("a completion was invoked");
                let writes =
                    |o: &Op| -> Vec<Mop> { o.value.iter().filter(|m| m.write).cloned().collect() };
                assert_eq!(writes(invoke), writes(op), "same writes as invoked");
                if kind == "info" {
                    crashed.insert(op.process);
                }
            }
            other => panic!("type {other}"),
        }
    }
    let ok: Vec<&Op> = ops.iter().filter(|o| o.kind == "ok").collect();
    // No garbage reads: every value read was written by some transaction.
    for op in &ok {
        for mop in op.value.iter().filter(|m| !m.write) {
            if let Some(value) = mop.value {
                assert!(
                    written
                        .get(mop.key.as_str())
                        .is_some_and(|w| w.contains(&value)),
                    "a read of a value nobody wrote: {op:?}"
                );
            }
        }
    }
    ok
}

/// Elle's lost-update rule: committed transactions that read the same version of a key and
/// both wrote it. Returns the keys with such a collision.
fn lost_update_keys(ok: &[&Op]) -> HashSet<String> {
    let mut readers: HashMap<(String, Option<i64>), usize> = HashMap::new();
    for op in ok {
        for read in op.value.iter().filter(|m| !m.write) {
            if op.value.iter().any(|m| m.write && m.key == read.key) {
                *readers.entry((read.key.clone(), read.value)).or_default() += 1;
            }
        }
    }
    readers
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|((key, _), _)| key)
        .collect()
}

/// A G2-item cycle of two: each of two committed transactions read, before the other's write,
/// the key the other wrote. Sound for runs where every key is written at most once (one round,
/// an updater per segment): a read of any other version is then a read of an earlier one.
fn write_skew_pairs(ok: &[&Op]) -> usize {
    let before = |reader: &Op, writer: &Op| {
        writer.value.iter().filter(|m| m.write).any(|w| {
            reader
                .value
                .iter()
                .any(|r| !r.write && r.key == w.key && r.value != w.value)
        })
    };
    let mut pairs = 0;
    for (i, a) in ok.iter().enumerate() {
        for b in &ok[i + 1..] {
            if before(a, b) && before(b, a) {
                pairs += 1;
            }
        }
    }
    pairs
}

fn elle_history(redis: &TestRedis, args: &[&str]) -> (serde_json::Value, Vec<Op>) {
    let dir = tempfile_dir();
    let path = dir.join("history.edn");
    let url = redis.url();
    let mut all = vec![
        "run",
        "--redis-url",
        url.as_str(),
        "--format",
        "json",
        "--history",
        path.to_str().unwrap(),
        "--history-format",
        "elle",
    ];
    all.extend_from_slice(args);
    let report = json_report(&all);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (report, parse(&text))
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "racelab-elle-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok_of<'a>(ok: &[&'a Op], strategy: &str) -> Vec<&'a Op> {
    let prefix = format!("{strategy}/");
    ok.iter()
        .filter(|o| o.value.iter().any(|m| m.key.starts_with(&prefix)))
        .copied()
        .collect()
}

#[test]
fn elle_finds_the_lost_updates_racelab_counts_and_none_where_the_fixes_hold() {
    let redis = TestRedis::start();
    let fixes = ["watch", "lua", "function", "lock", "fenced", "cas"];
    for seed in 0..3 {
        let seed = seed.to_string();
        let strategies = format!("naive,multi,{}", fixes.join(","));
        let (report, ops) = elle_history(
            &redis,
            &[
                "-s",
                &strategies,
                "-n",
                "20",
                "--rounds",
                "2",
                "--seed",
                &seed,
            ],
        );
        let ok = well_formed(&ops);
        for run in report["runs"].as_array().unwrap() {
            let strategy = run["strategy"].as_str().unwrap();
            let mine = ok_of(&ok, strategy);
            assert_eq!(
                mine.len() as u64,
                run["acknowledged"].as_u64().unwrap(),
                "{strategy}: one :ok per acknowledged update"
            );
            let lost = lost_update_keys(&mine);
            let journey = format!("{strategy}/journey");
            if run["lost"].as_u64().unwrap() > 0 {
                assert!(
                    lost.contains(&journey),
                    "{strategy}: racelab counts losses, Elle's rule finds none"
                );
            }
            if fixes.contains(&strategy) {
                assert!(lost.is_empty(), "{strategy}: {lost:?}");
            }
        }
    }
}

#[test]
fn segment_registers_show_keys_losing_only_where_updaters_share_a_segment() {
    let redis = TestRedis::start();
    // 40 updaters on 20 segments: two per segment, and `keys` reads and writes its segment.
    let (report, ops) = elle_history(&redis, &["-s", "keys,hash", "-n", "40"]);
    let ok = well_formed(&ops);
    let keys = &report["runs"][0];
    let lost = lost_update_keys(&ok_of(&ok, "keys"));
    if keys["lost"].as_u64().unwrap() > 0 {
        assert!(!lost.is_empty());
    }
    assert!(lost.iter().all(|k| k.starts_with("keys/SEG-")), "{lost:?}");
    // `hash` writes blindly: no reads, so nothing for the rule to find, as nothing is lost.
    let hash = ok_of(&ok, "hash");
    assert_eq!(hash.len(), 40);
    assert!(hash.iter().all(|o| o.value.iter().all(|m| m.write)));
    assert!(lost_update_keys(&hash).is_empty());
}

#[test]
fn write_skew_is_an_anti_dependency_cycle_under_hash_and_keys_and_none_where_serialized() {
    let redis = TestRedis::start();
    for seed in 0..3 {
        let seed = seed.to_string();
        let (report, ops) = elle_history(
            &redis,
            &[
                "-s",
                "hash,keys,watch,lua,lock",
                "--scenario",
                "write-skew",
                "-n",
                "5",
                "--seed",
                &seed,
            ],
        );
        let ok = well_formed(&ops);
        for run in report["runs"].as_array().unwrap() {
            let strategy = run["strategy"].as_str().unwrap();
            let pairs = write_skew_pairs(&ok_of(&ok, strategy));
            let holds = run["invariant"]["holds"].as_bool().unwrap();
            assert_eq!(pairs > 0, !holds, "{strategy}: {pairs} G2-item pairs");
        }
    }
}

#[test]
fn an_elle_history_is_refused_where_racelab_cannot_see_the_reads_or_one_clock() {
    let redis = TestRedis::start();
    let url = redis.url();
    for (args, words) in [
        (
            vec!["-s", "exec:true", "--history", "/tmp/x.edn"],
            "cannot see the reads of exec:true",
        ),
        (
            vec!["-s", "naive", "--workers", "2", "--history", "/tmp/x.edn"],
            "drop --workers",
        ),
    ] {
        let mut all = vec![
            "run",
            "--redis-url",
            url.as_str(),
            "--history-format",
            "elle",
        ];
        all.extend_from_slice(&args);
        let output = racelab(&all);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // The format says how --history writes, so it needs --history.
    let output = racelab(&["run", "--redis-url", &url, "--history-format", "elle"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("add --history FILE"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
