//! `--format junit` of `run` and `prove` (README "Reports for CI"): JUnit XML, the format CI
//! servers draw test results from. A run is one `<testsuite>`, each strategy one `<testcase>`
//! (each strategy and layout, for `prove`), and a strategy that did not behave as expected one
//! `<failure>`, in the seed test's words.
//!
//! How racelab's verdicts map: as expected is a passed test case; not as expected is a
//! `<failure>`; a run that was made but tested too little (inconclusive) or stopped early is an
//! `<error>`, because racelab exits 2 then and a dashboard must not show it green; so is the
//! strategy whose run could not be made; the strategies after it, never run, are `<skipped>`.

use std::io;
use std::time::SystemTime;

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::name::QName;

use crate::prove::ProveReport;
use crate::report::{Expected, Report, RunReport};
use crate::strategy::Strategy;

/// One `<testsuite>`.
struct Suite {
    name: &'static str,
    timestamp: Option<String>,
    properties: Vec<(&'static str, String)>,
    cases: Vec<Case>,
}

/// One `<testcase>`.
struct Case {
    classname: String,
    name: String,
    seconds: f64,
    outcome: Outcome,
    /// What was observed, for the `<system-out>` CI servers show beside the case.
    out: String,
}

enum Outcome {
    Passed,
    /// Not as expected: `kind` is the failure's `type`.
    Failure {
        kind: &'static str,
        message: String,
        body: String,
    },
    Error {
        kind: &'static str,
        message: String,
    },
    Skipped {
        message: String,
    },
}

/// `racelab run`'s report: a test case for each strategy of `requested`. `started` is when the
/// run began; `failure` is the error that stopped it, if one did. Of the strategies the report
/// has no run of, the first is the one the failure stopped (an error), the rest were not run
/// (skipped).
pub fn run(
    report: &Report,
    requested: &[Strategy],
    started: SystemTime,
    failure: Option<String>,
) -> io::Result<String> {
    let mut properties = vec![
        ("seed", report.seed.to_string()),
        ("redis", report.redis.in_brief()),
        ("journey", report.journey.clone()),
    ];
    if let Some(first) = report.runs.first() {
        properties.extend([
            ("updaters", first.updaters.to_string()),
            ("segments", first.segments.to_string()),
            ("rounds", first.rounds.to_string()),
            ("think_ms", first.think_ms.to_string()),
        ]);
        if let Some(schedule) = &first.schedule {
            properties.push(("schedule", schedule.clone()));
        }
    }
    let mut cases: Vec<Case> = report.runs.iter().map(run_case).collect();
    let mut stopped_by: Option<Strategy> = None;
    for &strategy in requested {
        if report.runs.iter().any(|r| r.strategy == strategy) {
            continue;
        }
        let outcome = match (&failure, stopped_by) {
            (Some(failure), None) => {
                stopped_by = Some(strategy);
                Outcome::Error {
                    kind: "not-run",
                    message: failure.clone(),
                }
            }
            (Some(_), Some(first)) => Outcome::Skipped {
                message: format!("not run: {first} could not be run"),
            },
            (None, _) => Outcome::Skipped {
                message: "not run: the run was interrupted".to_owned(),
            },
        };
        cases.push(Case {
            classname: classname(strategy),
            name: strategy.name().to_owned(),
            seconds: 0.0,
            outcome,
            out: String::new(),
        });
    }
    write(&Suite {
        name: "racelab run",
        timestamp: Some(humantime::format_rfc3339_seconds(started).to_string()),
        properties,
        cases,
    })
}

fn run_case(run: &RunReport) -> Case {
    let lost = run.lost.unwrap_or(0);
    let lost_text = run.lost_text();
    let outcome = if let Some(reason) = &run.stopped {
        Outcome::Error {
            kind: "stopped",
            message: format!("stopped early: {reason}"),
        }
    } else if let Some(why) = &run.inconclusive {
        Outcome::Error {
            kind: "inconclusive",
            message: format!("inconclusive: {why}"),
        }
    } else if run.ok {
        Outcome::Passed
    } else if lost > 0 {
        // The seed test's words: the first lost update's assertion; every one, and who erased
        // it, in the body.
        let message = match run.lost_updates.first() {
            Some(first) if lost == 1 => first.seed_message(),
            Some(first) => format!(
                "{} (and {})",
                first.seed_message(),
                crate::output::counted(lost - 1, "more lost update")
            ),
            None => format!("{lost} acknowledged updates were lost"),
        };
        Outcome::Failure {
            kind: "lost-update",
            message,
            body: lost_text.clone().unwrap_or_default(),
        }
    } else {
        Outcome::Failure {
            kind: "no-lost-update",
            message: format!(
                "expected lost updates, but none of {} acknowledged was lost",
                run.acknowledged
            ),
            body: String::new(),
        }
    };
    let mut out = format!(
        "{}: {}\nacknowledged {} · applied {} · lost {} · unknown {} · errors {} · retries {} · gave up {} · {:.0} updates/s · p50 {:.1} ms · p99 {:.1} ms\n",
        run.strategy,
        run.verdict(),
        run.acknowledged,
        run.applied
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        run.lost.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        run.unknown,
        run.errors,
        run.retries,
        run.give_ups,
        run.updates_per_s,
        run.latency_ms.p50,
        run.latency_ms.p99,
    );
    if !run.failures.is_empty() {
        out.push_str(&format!("failures: {}\n", run.failures.join("; ")));
    }
    // A failure's body has the lost updates already; an expected loss lists them here.
    if matches!(outcome, Outcome::Passed)
        && let Some(text) = lost_text
    {
        out.push_str(&text);
    }
    Case {
        classname: classname(run.strategy),
        name: run.strategy.name().to_owned(),
        seconds: run.duration_ms / 1000.0,
        outcome,
        out,
    }
}

/// `racelab prove`'s report: a test case for each strategy and layout.
pub fn prove(report: &ProveReport) -> io::Result<String> {
    let cases = report
        .results
        .iter()
        .map(|r| {
            let outcome = if r.ok {
                Outcome::Passed
            } else if r.expected == Expected::Intact {
                Outcome::Failure {
                    kind: "lost-update",
                    message: format!(
                        "{} of {} schedules lost an update; the shortest: {}",
                        r.losing,
                        r.schedules,
                        r.shortest.as_deref().unwrap_or("?")
                    ),
                    body: r
                        .replay(report)
                        .map(|command| format!("replay it: {command}\n"))
                        .unwrap_or_default(),
                }
            } else {
                Outcome::Failure {
                    kind: "no-lost-update",
                    message: format!(
                        "expected a schedule to lose an update, but none of {} did",
                        r.schedules
                    ),
                    body: String::new(),
                }
            };
            Case {
                classname: classname(r.strategy),
                name: format!("{} {}", r.strategy, r.layout.name()),
                seconds: r.duration_ms / 1000.0,
                outcome,
                out: format!(
                    "{} schedules, {} losing, shortest losing: {}, expected {}\n",
                    r.schedules,
                    r.losing,
                    r.shortest.as_deref().unwrap_or("none"),
                    r.expected.word()
                ),
            }
        })
        .collect();
    write(&Suite {
        name: "racelab prove",
        timestamp: None,
        properties: vec![
            ("redis", report.redis.clone()),
            ("updaters", report.updaters.to_string()),
            ("retry_bound", report.retry_bound.to_string()),
            ("schedules_per_s", report.schedules_per_s.to_string()),
        ],
        cases,
    })
}

/// `racelab.naive`: CI servers group test cases by class.
fn classname(strategy: Strategy) -> String {
    format!("racelab.{}", strategy.name())
}

/// Seconds, as JUnit has them.
fn seconds(s: f64) -> String {
    format!("{:.3}", s.max(0.0))
}

/// XML 1.0 cannot carry most control characters even escaped, and an attribute's line breaks
/// would be read back as spaces; a journey file's statuses may hold either.
fn xml_safe(text: &str, attribute: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' if attribute => ' ',
            '\n' | '\r' | '\t' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// An attribute, escaped only as far as XML needs (`<`, `>`, `&`, `"`), so the seed's
/// `expected 'Boarding'` stays readable in the file.
fn attribute<'a>(name: &'a str, value: &str) -> Attribute<'a> {
    let value = partial_escape(xml_safe(value, true)).replace('"', "&quot;");
    Attribute {
        key: QName(name),
        value: Cow::Owned(value),
    }
}

/// Element text, escaped as little as XML needs.
fn text(text: &str) -> BytesText<'static> {
    BytesText::from_escaped(partial_escape(xml_safe(text, false)).into_owned())
}

fn write(suite: &Suite) -> io::Result<String> {
    let count = |f: fn(&Outcome) -> bool| suite.cases.iter().filter(|c| f(&c.outcome)).count();
    let tests = suite.cases.len().to_string();
    let failures = count(|o| matches!(o, Outcome::Failure { .. })).to_string();
    let errors = count(|o| matches!(o, Outcome::Error { .. })).to_string();
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. })).to_string();
    let time = seconds(suite.cases.iter().map(|c| c.seconds).sum());

    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    writer
        .create_element("testsuites")
        .with_attributes([
            ("name", "racelab"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            let mut element = w.create_element("testsuite").with_attributes([
                ("name", suite.name),
                ("tests", tests.as_str()),
                ("failures", failures.as_str()),
                ("errors", errors.as_str()),
                ("skipped", skipped.as_str()),
                ("time", time.as_str()),
            ]);
            if let Some(timestamp) = &suite.timestamp {
                element = element.with_attribute(("timestamp", timestamp.as_str()));
            }
            element.write_inner_content(|w| {
                w.create_element("properties").write_inner_content(|w| {
                    for (name, value) in &suite.properties {
                        w.create_element("property")
                            .with_attribute(attribute("name", name))
                            .with_attribute(attribute("value", value))
                            .write_empty()?;
                    }
                    Ok(())
                })?;
                for case in &suite.cases {
                    write_case(w, case)?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
    let mut xml = String::from_utf8(writer.into_inner()).map_err(io::Error::other)?;
    xml.push('\n');
    Ok(xml)
}

fn write_case(w: &mut Writer<Vec<u8>>, case: &Case) -> io::Result<()> {
    let time = seconds(case.seconds);
    w.create_element("testcase")
        .with_attributes([
            ("classname", case.classname.as_str()),
            ("name", case.name.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failure {
                    kind,
                    message,
                    body,
                } => {
                    let failure = w
                        .create_element("failure")
                        .with_attribute(attribute("type", kind))
                        .with_attribute(attribute("message", message));
                    if body.is_empty() {
                        failure.write_empty()?;
                    } else {
                        failure.write_text_content(text(body))?;
                    }
                }
                Outcome::Error { kind, message } => {
                    w.create_element("error")
                        .with_attribute(attribute("type", kind))
                        .with_attribute(attribute("message", message))
                        .write_empty()?;
                }
                Outcome::Skipped { message } => {
                    w.create_element("skipped")
                        .with_attribute(attribute("message", message))
                        .write_empty()?;
                }
            }
            if !case.out.is_empty() {
                w.create_element("system-out")
                    .write_text_content(text(&case.out))?;
            }
            Ok(())
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journey_status_cannot_break_the_xml() {
        assert_eq!(xml_safe("a\u{1}b\nc", true), "a\u{FFFD}b c");
        assert_eq!(xml_safe("a\u{1}b\nc", false), "a\u{FFFD}b\nc");
        let a = attribute("message", "expected '<Boarding & \"Co\">'");
        assert_eq!(
            a.value.as_ref(),
            "expected '&lt;Boarding &amp; &quot;Co&quot;&gt;'"
        );
    }
}
