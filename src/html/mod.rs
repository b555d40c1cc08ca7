//! `--html FILE` of `run` and `prove` (README "HTML timeline"): the run as a picture, in one
//! self-contained file. The page's data is this module's typed structs as JSON, in a
//! `<script type="application/json" id="racelab-data">` block (every `<` escaped, so no journey
//! text can end the block), drawn by the inline script `assets/html/timeline.js` with the style
//! `assets/html/timeline.css`; nothing is fetched from anywhere.
//!
//! The timeline is drawn on a canvas, not in SVG: a thousand updaters make thousands of spans and
//! arrows, and a canvas that draws only the lanes in view stays fast where as many SVG nodes
//! make scrolling and hovering crawl.

pub mod lanes;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::RunResult;
use crate::error::Error;
use crate::prove::ProveReport;
use crate::report::{Expected, Report, RunReport};
use crate::schedule::{Choice, Role};
use crate::truth::LostUpdate;
use crate::workload::Workload;

pub use lanes::{LANES_KEPT, Lanes, SPANS_KEPT, Span, SpanKind};

/// Segments the grid shows; a journey of more shows the first ones and says so.
pub const SEGMENTS_SHOWN: usize = 5_000;

/// The page's data: what the script draws, and what a test reads back.
#[derive(Debug, Serialize)]
pub struct Page {
    /// `run` or `prove`.
    pub command: &'static str,
    pub racelab: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prove: Option<ProvePage>,
}

#[derive(Debug, Serialize)]
pub struct RunPage {
    pub ok: bool,
    pub complete: bool,
    pub seed: u64,
    /// The seed as text: a script's numbers are doubles, and a seed beyond 2^53 would show
    /// rounded (`--seed` would not repeat the run).
    pub seed_text: String,
    pub redis: String,
    pub journey: String,
    pub strategies: Vec<StrategyRun>,
}

/// One strategy's run: its numbers, its lanes, the final state of its segments.
#[derive(Debug, Serialize)]
pub struct StrategyRun {
    /// The JSON report's run, as `--format json` has it: the page and the report cannot
    /// disagree.
    #[serde(flatten)]
    pub report: RunReport,
    pub verdict: String,
    /// The strategy's steps, one Redis round trip each.
    pub steps: Vec<&'static str>,
    pub lanes: Vec<Lane>,
    /// What the page leaves out to stay small, in one sentence each (empty when nothing).
    pub capped: Vec<String>,
    pub cells: Vec<SegmentCell>,
    /// The steps a scheduled run took, in order (`--schedule`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<StepShown>,
}

/// One updater's lane.
#[derive(Debug, Serialize)]
pub struct Lane {
    /// 1-based.
    pub updater: u32,
    pub segment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub spans: Vec<Span>,
}

/// A segment as read back after the run.
#[derive(Debug, Serialize)]
pub struct SegmentCell {
    pub id: String,
    pub status: String,
    pub count: u64,
    pub acknowledged: u64,
    /// `applied`, `lost`, `untouched` or `unread` (the final state could not be read).
    pub state: &'static str,
}

/// One step of a scheduled run: which updater took it, what it sent, what Redis answered.
#[derive(Debug, Serialize)]
pub struct StepShown {
    /// 1-based.
    pub updater: u32,
    pub role: &'static str,
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProvePage {
    pub ok: bool,
    pub updaters: u32,
    pub retry_bound: u32,
    pub redis: String,
    pub results: Vec<ProveShown>,
}

/// One strategy on one layout, and its shortest losing schedule step by step.
#[derive(Debug, Serialize)]
pub struct ProveShown {
    pub strategy: String,
    pub layout: &'static str,
    pub schedules: u64,
    pub losing: u64,
    pub shortest: Option<String>,
    pub expected: Expected,
    pub ok: bool,
    pub replay: Option<String>,
    pub steps: Vec<StepShown>,
    pub lost_updates: Vec<LostUpdate>,
}

fn role(role: Role) -> &'static str {
    match role {
        Role::Read => "read",
        Role::Write => "write",
        Role::WriteBack => "write-back",
        Role::Lock => "lock",
        Role::Unlock => "unlock",
    }
}

fn steps_shown(taken: &[Choice]) -> Vec<StepShown> {
    taken
        .iter()
        .map(|choice| StepShown {
            updater: choice.updater,
            role: choice.step.as_ref().map_or("read", |s| role(s.role)),
            command: choice
                .step
                .as_ref()
                .map_or_else(|| "its next step".to_owned(), |s| s.command.to_string()),
            reply: choice.reply.as_ref().map(ToString::to_string),
        })
        .collect()
}

/// The HTML file of a run or a proof, opened before any work so a bad path fails first.
pub struct HtmlFile {
    path: PathBuf,
    file: std::fs::File,
}

impl HtmlFile {
    pub fn create(path: &Path) -> Result<HtmlFile, Error> {
        let file = std::fs::File::create(path).map_err(|e| html_error(path, e))?;
        Ok(HtmlFile {
            path: path.to_owned(),
            file,
        })
    }

    pub fn write(mut self, page: &Page) -> Result<(), Error> {
        use std::io::Write as _;
        let text = render(page);
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| html_error(&self.path, e))
    }
}

fn html_error(path: &Path, e: std::io::Error) -> Error {
    Error::Html {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// One strategy's run as the page shows it, from what the watcher saw and what the report says.
pub fn strategy_run(
    mut lanes: Lanes,
    result: &RunResult,
    workload: &Workload,
    report: &RunReport,
) -> StrategyRun {
    lanes.finish(result.tally.last_at.as_micros() as u64);
    let segment_id = |index: u32| {
        workload
            .journey
            .segments
            .get(index as usize)
            .map_or_else(String::new, |s| s.segment_id.clone())
    };
    let mut capped = Vec::new();
    if workload.updaters > LANES_KEPT {
        capped.push(format!(
            "lanes are drawn for the first {LANES_KEPT} of {} updaters; the counts above are of all of them",
            workload.updaters
        ));
    }
    if lanes.dropped > 0 {
        capped.push(format!(
            "the first {SPANS_KEPT} spans are kept, up to {:.1} ms; {} more are not drawn",
            lanes.dropped_from_us.unwrap_or(0) as f64 / 1000.0,
            lanes.dropped
        ));
    }
    let segments = workload.journey.segments.len();
    if segments > SEGMENTS_SHOWN {
        capped.push(format!(
            "the grid shows the first {SEGMENTS_SHOWN} of {segments} segments"
        ));
    }
    if report.lost_unlisted > 0 {
        capped.push(format!(
            "{} lost updates are listed and drawn; {} more were counted",
            report.lost_updates.len(),
            report.lost_unlisted
        ));
    }
    let mut spans = std::mem::take(&mut lanes.spans);
    attach_commands(&mut spans, &result.taken);
    let lanes_shown: Vec<Lane> = spans
        .into_iter()
        .enumerate()
        .map(|(index, spans)| {
            let updater = index as u32;
            Lane {
                updater: updater + 1,
                segment: segment_id(workload.segment_of(updater)),
                worker: crate::roster::worker_of(&result.workers, updater).map(str::to_owned),
                spans,
            }
        })
        .collect();
    let lost_on: std::collections::HashSet<&str> = report
        .lost_updates
        .iter()
        .map(|lost| lost.segment.as_str())
        .collect();
    let cells = workload
        .journey
        .segments
        .iter()
        .take(SEGMENTS_SHOWN)
        .enumerate()
        .map(|(index, segment)| {
            let acknowledged = lanes.acknowledged.get(index).copied().unwrap_or(0);
            match result.states.get(index) {
                Some(state) => SegmentCell {
                    id: segment.segment_id.clone(),
                    status: state.status.clone(),
                    count: state.update_count,
                    acknowledged,
                    state: if state.update_count < acknowledged
                        || lost_on.contains(segment.segment_id.as_str())
                    {
                        "lost"
                    } else if acknowledged == 0 {
                        "untouched"
                    } else {
                        "applied"
                    },
                },
                None => SegmentCell {
                    id: segment.segment_id.clone(),
                    status: segment.status.clone(),
                    count: 0,
                    acknowledged,
                    state: "unread",
                },
            }
        })
        .collect();
    StrategyRun {
        report: report.clone(),
        verdict: report.verdict(),
        steps: result.strategy.facts().steps.to_vec(),
        lanes: lanes_shown,
        capped,
        cells,
        taken: steps_shown(&result.taken),
    }
}

/// In a scheduled run each step's command and reply are known: an updater's read steps go to its
/// read spans in order, its write steps to its write spans.
fn attach_commands(lanes: &mut [Vec<Span>], taken: &[Choice]) {
    let mut next: Vec<(usize, usize)> = vec![(0, 0); lanes.len()];
    for choice in taken {
        let Some(step) = &choice.step else { continue };
        let lane = choice.updater.saturating_sub(1) as usize;
        let (Some(spans), Some((reads, writes))) = (lanes.get_mut(lane), next.get_mut(lane)) else {
            continue;
        };
        let (kind, cursor) = match step.role {
            Role::Read => (SpanKind::Read, reads),
            Role::Write | Role::WriteBack => (SpanKind::Write, writes),
            Role::Lock | Role::Unlock => continue,
        };
        if let Some((index, span)) = spans
            .iter_mut()
            .enumerate()
            .skip(*cursor)
            .find(|(_, s)| s.kind == kind)
        {
            span.command = Some(step.command.to_string());
            span.reply = choice.reply.as_ref().map(ToString::to_string);
            *cursor = index + 1;
        }
    }
}

/// The page of a `racelab run`.
pub fn run_page(report: &Report, strategies: Vec<StrategyRun>) -> Page {
    Page {
        command: "run",
        racelab: env!("CARGO_PKG_VERSION"),
        run: Some(RunPage {
            ok: report.ok,
            complete: report.complete,
            seed: report.seed,
            seed_text: report.seed.to_string(),
            redis: report.redis.in_brief(),
            journey: report.journey.clone(),
            strategies,
        }),
        prove: None,
    }
}

/// The page of a `racelab prove`.
pub fn prove_page(report: &ProveReport) -> Page {
    Page {
        command: "prove",
        racelab: env!("CARGO_PKG_VERSION"),
        run: None,
        prove: Some(ProvePage {
            ok: report.ok,
            updaters: report.updaters,
            retry_bound: report.retry_bound,
            redis: report.redis.clone(),
            results: report
                .results
                .iter()
                .map(|r| ProveShown {
                    strategy: r.strategy.to_string(),
                    layout: r.layout.name(),
                    schedules: r.schedules,
                    losing: r.losing,
                    shortest: r.shortest.clone(),
                    expected: r.expected,
                    ok: r.ok,
                    replay: r.replay(report),
                    steps: steps_shown(&r.shortest_steps),
                    lost_updates: r.shortest_lost.clone(),
                })
                .collect(),
        }),
    }
}

/// `<`, `>`, `&` and quotes as HTML entities, for the page's title.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The data as JSON that cannot leave its script block: every `<` is `\u003c` (JSON reads it
/// back the same), so neither `</script>` nor `<!--` can appear in it.
pub fn data_json(page: &Page) -> String {
    serde_json::to_string(page)
        .unwrap_or_else(|_| "{}".to_owned())
        .replace('<', "\\u003c")
}

const STYLE: &str = include_str!("../../assets/html/timeline.css");
const SCRIPT: &str = include_str!("../../assets/html/timeline.js");

/// The whole page.
pub fn render(page: &Page) -> String {
    let title = match &page.run {
        Some(run) => format!(
            "racelab run · {}",
            run.strategies
                .iter()
                .map(|s| s.report.strategy.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "racelab prove".to_owned(),
    };
    let data = data_json(page);
    let mut out = String::with_capacity(data.len() + STYLE.len() + SCRIPT.len() + 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{}</title>\n<style>\n", escape(&title)));
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<main id=\"app\">\n");
    out.push_str("<noscript><p>This page draws the run with JavaScript; its data is in the racelab-data block of its source.</p></noscript>\n");
    out.push_str("</main>\n<div id=\"tip\" hidden></div>\n");
    out.push_str("<script type=\"application/json\" id=\"racelab-data\">");
    out.push_str(&data);
    out.push_str("</script>\n<script>\n");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_cannot_end_its_script_block() {
        let page = Page {
            command: "run",
            racelab: "0",
            run: Some(RunPage {
                ok: true,
                complete: true,
                seed: 1,
                seed_text: "1".to_owned(),
                redis: "</script><script>alert(1)</script><!--".to_owned(),
                journey: "J".to_owned(),
                strategies: Vec::new(),
            }),
            prove: None,
        };
        let json = data_json(&page);
        assert!(!json.contains('<'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back["run"]["redis"],
            "</script><script>alert(1)</script><!--"
        );
        let html = render(&page);
        assert_eq!(html.matches("</script>").count(), 2);
    }
}
