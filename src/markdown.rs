//! `--format markdown` of `run` and `prove` (README "Reports for CI"): the verdict table and the
//! lost updates (for `prove`, the shortest losing schedules), as GitHub-flavoured Markdown ready
//! for `$GITHUB_STEP_SUMMARY` or a pull-request comment.

use std::fmt::Write as _;

use crate::prove::ProveReport;
use crate::report::{Report, RunReport};
use crate::strategy::Strategy;

/// Lost updates listed per strategy: a pull-request comment holds 65,536 characters, and the
/// JSON report lists up to 1,000.
const LOST_LISTED: usize = 20;

/// `racelab run`'s report: a row for each strategy of `requested`; those the report has no run
/// of say "not run", the first with `failure`, the error that stopped the run.
pub fn run(report: &Report, requested: &[Strategy], failure: Option<String>) -> String {
    let mut out = String::new();
    let summary = if !report.complete {
        "the run could not be completed"
    } else if report.inconclusive() {
        "inconclusive"
    } else if report.ok {
        "every strategy behaved as expected"
    } else {
        "a strategy did not behave as expected"
    };
    let _ = writeln!(out, "## racelab run: {summary}\n");
    let mut about = vec![
        format!("seed {}", report.seed),
        escape(&format!("Redis {}", report.redis.in_brief())),
        format!("journey {}", escape(&report.journey)),
    ];
    if let Some(first) = report.runs.first() {
        about.extend([
            crate::output::counted(first.segments, "segment"),
            crate::output::counted(first.updaters, "updater"),
            crate::output::counted(first.rounds, "round"),
            format!(
                "think {}",
                humantime::format_duration(std::time::Duration::from_secs_f64(
                    first.think_ms / 1000.0
                ))
            ),
        ]);
        if let Some(schedule) = &first.schedule {
            about.push(format!("schedule `{schedule}`"));
        }
    }
    let _ = writeln!(out, "{}\n", about.join(" · "));
    let _ = writeln!(
        out,
        "| strategy | verdict | acked | applied | lost | unknown | errors | retries | gave up | updates/s | p50 ms | p99 ms |"
    );
    let _ = writeln!(
        out,
        "| :-- | :-- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |"
    );
    for run in &report.runs {
        let count = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {} | {} {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} |",
            run.strategy,
            mark(run),
            run.verdict(),
            run.acknowledged,
            count(run.applied),
            count(run.lost),
            run.unknown,
            run.errors,
            run.retries,
            run.give_ups,
            run.updates_per_s,
            run.latency_ms.p50,
            run.latency_ms.p99,
        );
    }
    let not_run: Vec<Strategy> = requested
        .iter()
        .copied()
        .filter(|&s| report.runs.iter().all(|r| r.strategy != s))
        .collect();
    for strategy in &not_run {
        let _ = writeln!(
            out,
            "| {strategy} | ⚠️ not run | – | – | – | – | – | – | – | – | – | – |"
        );
    }
    if let (Some(first), Some(failure)) = (not_run.first(), &failure) {
        let _ = writeln!(out, "\n**{first}**: {}", escape(failure));
    }
    for run in &report.runs {
        let mut notes = Vec::new();
        if let Some(reason) = &run.stopped {
            notes.push(format!("stopped early: {reason}"));
        }
        if let Some(why) = &run.inconclusive {
            notes.push(format!("inconclusive: {why}"));
        }
        if !run.failures.is_empty() {
            notes.push(format!("failures: {}", run.failures.join("; ")));
        }
        for note in notes {
            let _ = writeln!(out, "\n**{}**: {}", run.strategy, escape(&note));
        }
    }
    for run in &report.runs {
        write_lost(&mut out, run);
    }
    out
}

/// ✅ as expected, ❌ not, ⚠️ no verdict; the verdict's words follow, for readers without colour.
fn mark(run: &RunReport) -> &'static str {
    if run.stopped.is_some() || run.inconclusive.is_some() {
        "⚠️"
    } else if run.ok {
        "✅"
    } else {
        "❌"
    }
}

/// A strategy's lost updates: open when the loss is a failure, folded away when it was expected.
fn write_lost(out: &mut String, run: &RunReport) {
    let Some(lost) = run.lost.filter(|lost| *lost > 0) else {
        return;
    };
    let title = format!(
        "{}: Race condition detected! {} out of {} updates were lost",
        run.strategy,
        lost,
        run.acknowledged + run.unknown
    );
    // The title holds only a strategy's name and counts: nothing to escape, in HTML or Markdown.
    if run.ok {
        let _ = writeln!(out, "\n<details><summary>{title} (as expected)</summary>\n");
    } else {
        let _ = writeln!(out, "\n### {}\n", escape(&title));
    }
    for lost in run.lost_updates.iter().take(LOST_LISTED) {
        let _ = writeln!(
            out,
            "- {}: {}",
            escape(&lost.seed_message()),
            escape(&lost.attribution())
        );
    }
    let listed = run.lost_updates.len().min(LOST_LISTED) as u64;
    if listed < lost {
        let _ = writeln!(
            out,
            "- … and {} more (`--format json` lists up to 1,000)",
            lost - listed
        );
    }
    if run.ok {
        let _ = writeln!(out, "\n</details>");
    }
}

/// `racelab prove`'s report.
pub fn prove(report: &ProveReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## racelab prove: {}\n",
        if report.ok {
            "every strategy behaved as expected under every schedule"
        } else {
            "a strategy did not behave as expected"
        }
    );
    let total: u64 = report.results.iter().map(|r| r.schedules).sum();
    let _ = writeln!(
        out,
        "Redis {} · {} updaters · retry bound {} · {total} schedules, {} a second\n",
        escape(&report.redis),
        report.updaters,
        report.retry_bound,
        report.schedules_per_s
    );
    let _ = writeln!(
        out,
        "| strategy | layout | schedules | losing | shortest losing | expected | verdict |"
    );
    let _ = writeln!(out, "| :-- | :-- | --: | --: | :-- | :-- | :-- |");
    for r in &report.results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.strategy,
            r.layout.name(),
            r.schedules,
            r.losing,
            r.shortest
                .as_deref()
                .map_or_else(|| "–".to_owned(), |s| format!("`{s}`")),
            r.expected.word(),
            if r.ok { "✅ ok" } else { "❌ FAIL" }
        );
    }
    let replays: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| {
            let command = r.replay(report)?;
            Some(format!(
                "- {} {}{}: `{command}`",
                r.strategy,
                r.layout.name(),
                if r.ok { "" } else { " (**not expected**)" }
            ))
        })
        .collect();
    if !replays.is_empty() {
        let _ = writeln!(
            out,
            "\n### Shortest losing schedules\n\nEach replays on a real Redis with `racelab run --schedule`:\n"
        );
        for line in replays {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Text from a run (a journey file's segment ids and statuses, a Redis URL) as literal Markdown:
/// every character that could start emphasis, a link, HTML or a table cell is escaped. (`#`,
/// `-` or `1.` only mean something at a line's start, where this text never is.)
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn text_from_a_journey_cannot_break_a_table_or_start_html() {
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("<script>"), "\\<script\\>");
        assert_eq!(escape("*x*\nnext"), "\\*x\\* next");
    }
}
