//! The seed's data model: a journey of flight segments, stored as PascalCase JSON.
//!
//! Field names and defaults follow the original challenge (README "Why"). racelab adds one
//! field to each segment, `UpdateCount`, written together with the status, so the final state
//! proves how many acknowledged updates survived; and `RacelabWrite`, naming the update that
//! wrote the document last, so a read can say whose write it saw (README "History file").

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;

/// The seed fixture, `JRN-TEST-001` with 20 segments, as the original tests build it.
pub const SEED_FIXTURE: &str = include_str!("../assets/journey.json");

/// The status a segment starts with, as in the seed.
pub const INITIAL_STATUS: &str = "Scheduled";

/// The statuses updaters write, in the seed test's order: SEG-001 gets `Departed`, SEG-002
/// `Boarding`, and so on in turn.
pub const UPDATE_STATUSES: [&str; 4] = ["Departed", "Boarding", "Delayed", "Cancelled"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Journey {
    pub id: String,
    #[serde(default)]
    pub passenger_name: String,
    #[serde(default)]
    pub passenger_email: String,
    #[serde(default)]
    pub booking_date: String,
    #[serde(default = "pending")]
    pub status: String,
    #[serde(default)]
    pub total_price: f64,
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Which update wrote this document last (0, and absent: as seeded), so that a read can name
    /// the write it saw (README "History": `--history-format elle`).
    #[serde(default, rename = "RacelabWrite", skip_serializing_if = "is_zero")]
    pub write: u64,
    /// Fields racelab does not know are carried through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Segment {
    pub segment_id: String,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub destination: String,
    #[serde(default)]
    pub departure_time: String,
    #[serde(default)]
    pub arrival_time: String,
    #[serde(default)]
    pub flight_number: String,
    #[serde(default)]
    pub carrier: String,
    #[serde(default = "scheduled")]
    pub status: String,
    #[serde(default)]
    pub price: f64,
    /// How many updates have been applied to this segment; written with the status.
    #[serde(default)]
    pub update_count: u64,
    /// Which update wrote this segment last, where a segment is stored as its own key (`keys`);
    /// 0, and absent, everywhere else.
    #[serde(default, rename = "RacelabWrite", skip_serializing_if = "is_zero")]
    pub write: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn pending() -> String {
    "Pending".to_owned()
}

fn scheduled() -> String {
    INITIAL_STATUS.to_owned()
}

/// A segment's state as Redis holds it: what the final read-back and the TUI's observer see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentState {
    pub status: String,
    pub update_count: u64,
}

impl Journey {
    /// The seed fixture, `JRN-TEST-001`.
    pub fn seed_fixture() -> Result<Journey, Error> {
        Journey::from_json(SEED_FIXTURE, "the built-in seed fixture")
    }

    /// Loads a journey in the seed's JSON format from a file.
    pub fn from_file(path: &Path) -> Result<Journey, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Journey {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Journey::from_json(&text, &path.display().to_string())
    }

    pub fn from_json(text: &str, origin: &str) -> Result<Journey, Error> {
        // Unknown fields are carried through untouched, so a number that would come back changed
        // (beyond 64 bits, or more digits than a double holds) is refused rather than rounded.
        if let Some((literal, back)) = inexact_number(text) {
            return Err(Error::Journey {
                path: origin.to_owned(),
                reason: format!(
                    "the integer {literal} would be written back as {back} (integers are kept exactly within 64 bits); quote it as a string"
                ),
            });
        }
        let journey: Journey = serde_json::from_str(text).map_err(|e| Error::Journey {
            path: origin.to_owned(),
            reason: in_words(&e.to_string()),
        })?;
        journey.validate(origin)?;
        Ok(journey)
    }

    fn validate(&self, origin: &str) -> Result<(), Error> {
        let fail = |reason: String| {
            Err(Error::Journey {
                path: origin.to_owned(),
                reason,
            })
        };
        if self.id.trim().is_empty() {
            return fail("the journey has an empty Id".into());
        }
        if self.id.contains(['{', '}']) {
            return fail(
                "the journey Id must not contain '{' or '}' (they form its hash tag)".into(),
            );
        }
        if self.id.chars().any(char::is_control) {
            return fail(format!(
                "the journey Id {:?} holds a control character",
                self.id
            ));
        }
        if self.segments.is_empty() {
            return fail("the journey has no Segments; give it at least one".into());
        }
        let mut seen = std::collections::HashSet::new();
        for segment in &self.segments {
            if segment.segment_id.trim().is_empty() {
                return fail("a segment has an empty SegmentId".into());
            }
            if segment.segment_id.chars().any(char::is_control) {
                return fail(format!(
                    "SegmentId {:?} holds a control character",
                    segment.segment_id
                ));
            }
            if !seen.insert(segment.segment_id.as_str()) {
                return fail(format!("SegmentId {} appears twice", segment.segment_id));
            }
        }
        Ok(())
    }

    /// The journey with exactly `count` segments: the first `count` of its own, then more made the
    /// way the seed fixture makes them (next id, flight number, price and departure day).
    pub fn with_segments(mut self, count: usize) -> Journey {
        // The journey as given stays exactly as given; only a changed segment list changes
        // the total it prices.
        if count == self.segments.len() {
            return self;
        }
        if count <= self.segments.len() {
            self.segments.truncate(count);
        } else {
            // A generated id must not clash with one the journey already has (`SEG-001, SEG-002,
            // SEG-005` grown to 5): two segments under one id would share a hash field or a key,
            // and every fix would seem to lose updates. Numbers already taken are skipped.
            let template = self.segments[0].clone();
            let mut taken: std::collections::HashSet<String> =
                self.segments.iter().map(|s| s.segment_id.clone()).collect();
            let mut number = self.segments.len();
            while self.segments.len() < count {
                number += 1;
                let segment = generated_segment(&template, number);
                if taken.insert(segment.segment_id.clone()) {
                    self.segments.push(segment);
                }
            }
        }
        self.total_price = self.segments.iter().map(|s| s.price).sum();
        self
    }

    /// Why Redis's cjson (the `lua` and `function` strategies decode and re-encode the journey)
    /// would not give this journey back intact, if it would not: it turns `[]` into `{}` and
    /// keeps 14 significant digits of a number.
    pub fn cjson_hazard(&self) -> Option<String> {
        fn walk(value: &Value, path: &str) -> Option<String> {
            match value {
                Value::Array(items) if items.is_empty() => Some(format!(
                    "{path} is an empty array, which Redis's cjson writes back as {{}}"
                )),
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"))),
                Value::Object(map) => map
                    .iter()
                    .find_map(|(k, v)| walk(v, &format!("{path}.{k}"))),
                Value::Number(n) => {
                    let x = n.as_f64()?;
                    let kept: f64 = format!("{x:.13e}").parse().ok()?;
                    (kept != x).then(|| {
                        format!("{path} = {n} has more digits than Redis's cjson keeps (14)")
                    })
                }
                _ => None,
            }
        }
        walk(&serde_json::to_value(self).ok()?, "$")
    }

    pub fn segment_index(&self, segment_id: &str) -> Option<usize> {
        self.segments
            .iter()
            .position(|s| s.segment_id == segment_id)
    }

    pub fn states(&self) -> Vec<SegmentState> {
        self.segments
            .iter()
            .map(|s| SegmentState {
                status: s.status.clone(),
                update_count: s.update_count,
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Segment number `i` (1-based) made from the journey's first segment the way the seed's fixture
/// makes each of its own: `SEG-00i`, flight number and price offset by `i`, departure `i` days on.
fn generated_segment(template: &Segment, i: usize) -> Segment {
    let offset = (i - 1) as u64;
    let mut segment = template.clone();
    segment.segment_id = format!("SEG-{i:03}");
    let digits_at = template
        .flight_number
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(template.flight_number.len());
    let (code, number) = template.flight_number.split_at(digits_at);
    segment.flight_number = match number.parse::<u64>() {
        Ok(n) => format!("{code}{}", n + offset),
        Err(_) => format!("{code}{i}"),
    };
    segment.price = template.price + offset as f64;
    segment.departure_time = shift_days(&template.departure_time, offset);
    segment.arrival_time = shift_days(&template.arrival_time, offset);
    segment.status = INITIAL_STATUS.to_owned();
    segment.update_count = 0;
    segment.write = 0;
    segment
}

fn shift_days(timestamp: &str, days: u64) -> String {
    match humantime::parse_rfc3339_weak(timestamp) {
        Ok(time) => {
            humantime::format_rfc3339_seconds(time + Duration::from_secs(days * 86_400)).to_string()
        }
        Err(_) => timestamp.to_owned(),
    }
}

/// serde's message about a journey in a user's words: the JSON types, not racelab's Rust ones.
fn in_words(message: &str) -> String {
    message
        .replace("struct Journey", "a journey object")
        .replace("struct Segment", "a segment object")
        .replace("expected u64", "expected a whole number of 0 or more")
        .replace("expected f64", "expected a number")
        .replace("a map", "an object")
}

/// The first number in the JSON `text` that would not be written back as the same number, and
/// what it would become.
fn inexact_number(text: &str) -> Option<(String, String)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                if let Some(back) = written_back(literal)
                    && !same_number(literal, &back)
                {
                    return Some((literal.to_owned(), back));
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// How serde_json writes `literal` back after reading it.
fn written_back(literal: &str) -> Option<String> {
    let value: Value = serde_json::from_str(literal).ok()?;
    Some(value.to_string())
}

/// Whether a JSON number comes back as the number it was. An integer literal is an exact
/// integer to whoever wrote it (an id, a count): it must come back digit for digit, which it
/// does within 64 bits and not beyond (`12345678901234567890123` would come back as
/// `1.2345678901234568e22`). A literal with a fraction or an exponent is a double to every JSON
/// reader, so it comes back right when it is the same double (`12.50` as `12.5`, `1e3` as
/// `1000.0`, `9.999999999999999e22` as `1e+23`).
fn same_number(literal: &str, back: &str) -> bool {
    let is_integer = !literal.contains(['.', 'e', 'E']);
    if is_integer {
        return literal == back;
    }
    match (literal.parse::<f64>(), back.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A journey as one read found it, kept small. The read-modify-write strategies hold one per
/// updater through its think time (that copy *is* the seed's bug, so it stays), and parsed, with
/// a `String` per field, the copies were most of racelab's memory at scale. While only the run's
/// updaters write, a read differs from the journey the run seeded in its segments' statuses and
/// counts alone: those are all a copy keeps, a status as a byte.
#[derive(Debug, Clone, PartialEq)]
pub enum JourneyCopy {
    /// The run's journey with these statuses (see [`status_code`]) and counts, written last by
    /// update `write`.
    States {
        run: std::sync::Arc<Journey>,
        statuses: Box<[u8]>,
        counts: Box<[u64]>,
        write: u64,
    },
    /// Anything else (someone else changed more than statuses and counts): kept whole.
    Whole(Box<Journey>),
}

/// A segment's status as the journey the run seeded has it, whatever it is.
const AS_SEEDED: u8 = u8::MAX;

/// The statuses racelab writes (and the seed's initial one), by code.
const KNOWN_STATUSES: [&str; 5] = [
    INITIAL_STATUS,
    UPDATE_STATUSES[0],
    UPDATE_STATUSES[1],
    UPDATE_STATUSES[2],
    UPDATE_STATUSES[3],
];

/// `status`'s code in a copy of a segment seeded with `seeded`: its index among the statuses
/// racelab writes, [`AS_SEEDED`], or none (a status someone else wrote).
fn status_code(status: &str, seeded: &str) -> Option<u8> {
    match KNOWN_STATUSES.iter().position(|known| *known == status) {
        Some(i) => Some(i as u8),
        None => (status == seeded).then_some(AS_SEEDED),
    }
}

impl JourneyCopy {
    /// Keeps `read` as a copy: by its statuses and counts when it is `run` but for them, whole
    /// otherwise (or when there is no run journey to compare with).
    pub fn keep(read: Journey, run: Option<&std::sync::Arc<Journey>>) -> JourneyCopy {
        let Some(run) = run.filter(|run| read.same_but_states(run)) else {
            return JourneyCopy::Whole(Box::new(read));
        };
        let statuses: Option<Box<[u8]>> = read
            .segments
            .iter()
            .zip(&run.segments)
            .map(|(read, seeded)| status_code(&read.status, &seeded.status))
            .collect();
        match statuses {
            Some(statuses) => JourneyCopy::States {
                run: run.clone(),
                statuses,
                counts: read.segments.iter().map(|s| s.update_count).collect(),
                write: read.write,
            },
            None => JourneyCopy::Whole(Box::new(read)),
        }
    }

    /// Which update wrote the document the copy was read from last (0: as seeded).
    pub fn write(&self) -> u64 {
        match self {
            JourneyCopy::States { write, .. } => *write,
            JourneyCopy::Whole(journey) => journey.write,
        }
    }

    /// Names the update that will write the copy back.
    pub fn set_write(&mut self, id: u64) {
        match self {
            JourneyCopy::States { write, .. } => *write = id,
            JourneyCopy::Whole(journey) => journey.write = id,
        }
    }

    /// Segment `i`'s status and count in the copy.
    pub fn state(&self, i: usize) -> (&str, u64) {
        match self {
            JourneyCopy::States {
                run,
                statuses,
                counts,
                ..
            } => (status_name(statuses[i], &run.segments[i].status), counts[i]),
            JourneyCopy::Whole(journey) => {
                let segment = &journey.segments[i];
                (&segment.status, segment.update_count)
            }
        }
    }

    /// Sets segment `i`'s status and count in the copy.
    pub fn set(&mut self, i: usize, status: &str, count: u64) {
        if let JourneyCopy::States {
            run,
            statuses,
            counts,
            ..
        } = self
        {
            if let Some(code) = status_code(status, &run.segments[i].status) {
                statuses[i] = code;
                counts[i] = count;
                return;
            }
            *self = JourneyCopy::Whole(Box::new(self.whole()));
        }
        if let JourneyCopy::Whole(journey) = self {
            journey.segments[i].status = status.to_owned();
            journey.segments[i].update_count = count;
        }
    }

    /// The journey the copy stands for, whole.
    pub fn whole(&self) -> Journey {
        match self {
            JourneyCopy::States { run, write, .. } => {
                let mut journey = Journey::clone(run);
                journey.write = *write;
                for (i, segment) in journey.segments.iter_mut().enumerate() {
                    let (status, count) = self.state(i);
                    segment.status = status.to_owned();
                    segment.update_count = count;
                }
                journey
            }
            JourneyCopy::Whole(journey) => Journey::clone(journey),
        }
    }

    /// The copy as its JSON document, exactly as [`Journey::to_json`] writes the journey it
    /// stands for, without making that journey first.
    pub fn to_json(&self) -> String {
        match self {
            JourneyCopy::States { run, .. } => {
                serde_json::to_string(&AsCopied::of(run, self)).unwrap_or_default()
            }
            JourneyCopy::Whole(journey) => journey.to_json(),
        }
    }
}

fn status_name(code: u8, seeded: &str) -> &str {
    KNOWN_STATUSES
        .get(usize::from(code))
        .copied()
        .unwrap_or(seeded)
}

impl Journey {
    /// Whether `self` is `other` but for its segments' statuses and counts and the update that
    /// wrote it last. Every field is named, so a field added to the model is a compile error here
    /// until it is compared.
    fn same_but_states(&self, other: &Journey) -> bool {
        let Journey {
            id,
            passenger_name,
            passenger_email,
            booking_date,
            status,
            total_price,
            segments,
            metadata,
            write: _,
            extra,
        } = self;
        *id == other.id
            && *passenger_name == other.passenger_name
            && *passenger_email == other.passenger_email
            && *booking_date == other.booking_date
            && *status == other.status
            // Bit for bit: -0.0 and 0.0 are written differently.
            && total_price.to_bits() == other.total_price.to_bits()
            && *metadata == other.metadata
            && *extra == other.extra
            && segments.len() == other.segments.len()
            && segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_but_state(b))
    }
}

impl Segment {
    fn same_but_state(&self, other: &Segment) -> bool {
        let Segment {
            segment_id,
            origin,
            destination,
            departure_time,
            arrival_time,
            flight_number,
            carrier,
            status: _,
            price,
            update_count: _,
            write,
            extra,
        } = self;
        *segment_id == other.segment_id
            && *write == other.write
            && *origin == other.origin
            && *destination == other.destination
            && *departure_time == other.departure_time
            && *arrival_time == other.arrival_time
            && *flight_number == other.flight_number
            && *carrier == other.carrier
            && price.to_bits() == other.price.to_bits()
            && *extra == other.extra
    }
}

/// A compact copy written out as the journey it stands for: [`Journey`]'s fields in its order,
/// borrowed from the run's journey, each segment's status and count from the copy. Made by
/// naming every field, so a field added to the model is a compile error here.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AsCopied<'a> {
    id: &'a str,
    passenger_name: &'a str,
    passenger_email: &'a str,
    booking_date: &'a str,
    status: &'a str,
    total_price: f64,
    segments: Vec<SegmentAsCopied<'a>>,
    metadata: &'a Map<String, Value>,
    #[serde(rename = "RacelabWrite", skip_serializing_if = "is_zero")]
    write: u64,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SegmentAsCopied<'a> {
    segment_id: &'a str,
    origin: &'a str,
    destination: &'a str,
    departure_time: &'a str,
    arrival_time: &'a str,
    flight_number: &'a str,
    carrier: &'a str,
    status: &'a str,
    price: f64,
    update_count: u64,
    #[serde(rename = "RacelabWrite", skip_serializing_if = "is_zero")]
    write: u64,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl<'a> AsCopied<'a> {
    fn of(run: &'a Journey, copy: &'a JourneyCopy) -> AsCopied<'a> {
        let Journey {
            id,
            passenger_name,
            passenger_email,
            booking_date,
            status,
            total_price,
            segments,
            metadata,
            write: _,
            extra,
        } = run;
        let segments = segments
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                let Segment {
                    segment_id,
                    origin,
                    destination,
                    departure_time,
                    arrival_time,
                    flight_number,
                    carrier,
                    status: _,
                    price,
                    update_count: _,
                    write,
                    extra,
                } = segment;
                let (status, update_count) = copy.state(i);
                SegmentAsCopied {
                    segment_id,
                    origin,
                    destination,
                    departure_time,
                    arrival_time,
                    flight_number,
                    carrier,
                    status,
                    price: *price,
                    update_count,
                    write: *write,
                    extra,
                }
            })
            .collect();
        AsCopied {
            id,
            passenger_name,
            passenger_email,
            booking_date,
            status,
            total_price: *total_price,
            segments,
            metadata,
            write: copy.write(),
            extra,
        }
    }
}

/// The status as a `'static` name for events: one of the seed's, or `"(other)"`.
pub fn intern_status(status: &str) -> &'static str {
    std::iter::once(INITIAL_STATUS)
        .chain(UPDATE_STATUSES)
        .find(|known| *known == status)
        .unwrap_or("(other)")
}

/// The status updater `updater` (0-based) writes in round `round`: the seed test's sequence,
/// moved on by one each round so successive rounds change the segment again.
pub fn update_status(updater: usize, round: u32) -> &'static str {
    UPDATE_STATUSES[(updater + round as usize) % UPDATE_STATUSES.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_fixture_matches_the_original() {
        let journey = Journey::seed_fixture().unwrap();
        assert_eq!(journey.id, "JRN-TEST-001");
        assert_eq!(journey.segments.len(), 20);
        assert_eq!(journey.segments[1].segment_id, "SEG-002");
        assert_eq!(journey.segments[19].flight_number, "IB3020");
        assert_eq!(
            journey.total_price,
            (1..=20).map(|i| 100.0 + i as f64).sum::<f64>()
        );
        assert!(journey.segments.iter().all(|s| s.status == "Scheduled"));
    }

    #[test]
    fn more_segments_are_generated_like_the_fixture() {
        let journey = Journey::seed_fixture().unwrap().with_segments(25);
        let s = &journey.segments[24];
        assert_eq!(s.segment_id, "SEG-025");
        assert_eq!(s.flight_number, "IB3025");
        assert_eq!(s.price, 125.0);
        assert_eq!(s.departure_time, "2026-01-26T08:00:00Z");
        assert_eq!(s.arrival_time, "2026-01-26T10:00:00Z");
        let fewer = Journey::seed_fixture().unwrap().with_segments(3);
        assert_eq!(fewer.segments.len(), 3);
        assert_eq!(fewer.total_price, 101.0 + 102.0 + 103.0);
    }

    #[test]
    fn generated_ids_never_clash_with_the_journeys_own() {
        let text = r#"{"Id":"J","Segments":[{"SegmentId":"SEG-001"},{"SegmentId":"SEG-002"},{"SegmentId":"SEG-005"}]}"#;
        let journey = Journey::from_json(text, "t").unwrap().with_segments(5);
        let ids: Vec<&str> = journey
            .segments
            .iter()
            .map(|s| s.segment_id.as_str())
            .collect();
        assert_eq!(ids, ["SEG-001", "SEG-002", "SEG-005", "SEG-004", "SEG-006"]);
        let text = r#"{"Id":"J","Segments":[{"SegmentId":"SEG-003"},{"SegmentId":"X"}]}"#;
        let journey = Journey::from_json(text, "t").unwrap().with_segments(3);
        let ids: Vec<&str> = journey
            .segments
            .iter()
            .map(|s| s.segment_id.as_str())
            .collect();
        assert_eq!(ids, ["SEG-003", "X", "SEG-004"]);
        assert!(journey.validate("t").is_ok());
    }

    fn copy_of(journey: &Journey, run: &std::sync::Arc<Journey>) -> JourneyCopy {
        let read = Journey::from_json(&journey.to_json(), "read").unwrap();
        JourneyCopy::keep(read, Some(run))
    }

    #[test]
    fn a_copy_keeps_statuses_and_counts_and_writes_the_journey_back_exactly() {
        let text = r#"{"Id":"J","Segments":[{"SegmentId":"A","Gate":"B12","Status":"Pending"},{"SegmentId":"B","Price":-0.0}],"Metadata":{"k":[1]},"Loyalty":7}"#;
        let run = std::sync::Arc::new(Journey::from_json(text, "t").unwrap());
        let mut read = Journey::clone(&run);
        read.segments[1].status = "Delayed".into();
        read.segments[1].update_count = 3;
        let mut copy = copy_of(&read, &run);
        assert!(matches!(copy, JourneyCopy::States { .. }), "{copy:?}");
        assert_eq!(copy.state(0), ("Pending", 0));
        assert_eq!(copy.state(1), ("Delayed", 3));
        assert_eq!(copy.to_json(), read.to_json());
        assert_eq!(copy.whole(), read);
        copy.set(0, "Boarding", 1);
        copy.set_write(7);
        read.segments[0].status = "Boarding".into();
        read.segments[0].update_count = 1;
        read.write = 7;
        assert_eq!(copy.to_json(), read.to_json());
        assert_eq!(copy_of(&read, &run).write(), 7);
        // A status racelab never writes turns the copy whole, exactly.
        copy.set(1, "Diverted", 4);
        read.segments[1].status = "Diverted".into();
        read.segments[1].update_count = 4;
        assert!(matches!(copy, JourneyCopy::Whole(_)));
        assert_eq!(copy.to_json(), read.to_json());
    }

    #[test]
    fn a_read_changed_elsewhere_is_kept_whole() {
        let run = std::sync::Arc::new(Journey::seed_fixture().unwrap());
        let mut read = Journey::clone(&run);
        read.segments[4].carrier = "XX".into();
        assert!(matches!(copy_of(&read, &run), JourneyCopy::Whole(_)));
        let mut read = Journey::clone(&run);
        read.segments[4].status = "Diverted".into();
        let copy = copy_of(&read, &run);
        assert!(matches!(copy, JourneyCopy::Whole(_)));
        assert_eq!(copy.to_json(), read.to_json());
        let mut read = Journey::clone(&run);
        read.segments.pop();
        assert!(matches!(copy_of(&read, &run), JourneyCopy::Whole(_)));
        let read = Journey::clone(&run);
        assert!(matches!(
            JourneyCopy::keep(read, None),
            JourneyCopy::Whole(_)
        ));
    }

    #[test]
    fn a_copy_of_a_thousand_segments_is_a_few_bytes_each() {
        let run = std::sync::Arc::new(Journey::seed_fixture().unwrap().with_segments(1000));
        let JourneyCopy::States {
            statuses, counts, ..
        } = copy_of(&run, &run)
        else {
            panic!("the seeded journey itself is kept compactly");
        };
        // Nine bytes a segment, where the parsed journey holds eight strings.
        assert_eq!(
            std::mem::size_of_val(&*statuses) + std::mem::size_of_val(&*counts),
            9000
        );
    }

    #[test]
    fn json_round_trip_keeps_pascal_case_and_unknown_fields() {
        let text = r#"{"Id":"J1","Segments":[{"SegmentId":"A","Gate":"B12"}],"Loyalty":7}"#;
        let journey = Journey::from_json(text, "test").unwrap();
        let back: Value = serde_json::from_str(&journey.to_json()).unwrap();
        assert_eq!(back["Loyalty"], 7);
        assert_eq!(back["Segments"][0]["Gate"], "B12");
        assert_eq!(back["Segments"][0]["Status"], "Scheduled");
        assert_eq!(back["Status"], "Pending");
    }

    #[test]
    fn numbers_that_would_come_back_changed_are_refused() {
        for text in [
            r#"{"Id":"J","Segments":[{"SegmentId":"A"}],"Big":12345678901234567890123}"#,
            r#"{"Id":"J","Segments":[{"SegmentId":"A","Big":-99999999999999999999}]}"#,
        ] {
            let err = Journey::from_json(text, "t").unwrap_err().to_string();
            assert!(err.contains("would be written back as"), "{err}");
        }
        for text in [
            r#"{"Id":"J","Segments":[{"SegmentId":"A","Price":12.50}],"N":18446744073709551615,"M":-9223372036854775808,"E":1e3,"Z":0.0,"S":"12345678901234567890123"}"#,
            r#"{"Id":"J","Segments":[{"SegmentId":"A","Escaped":"\" 123456789012345678901234 \""}],"Small":-0.000123}"#,
        ] {
            assert!(Journey::from_json(text, "t").is_ok(), "{text}");
        }
        assert!(same_number("12.50", "12.5"));
        assert!(same_number("1e3", "1000.0"));
        assert!(same_number("-0.00120", "-1.2e-3"));
        assert!(!same_number(
            "12345678901234567890123",
            "1.2345678901234568e22"
        ));
    }

    #[test]
    fn journeys_without_segments_or_ids_are_refused() {
        assert!(Journey::from_json(r#"{"Id":"J","Segments":[]}"#, "t").is_err());
        assert!(Journey::from_json(r#"{"Id":"","Segments":[{"SegmentId":"A"}]}"#, "t").is_err());
        assert!(Journey::from_json("not json", "t").is_err());
    }

    #[test]
    fn statuses_follow_the_seed_test() {
        assert_eq!(update_status(0, 0), "Departed");
        assert_eq!(update_status(1, 0), "Boarding");
        assert_eq!(update_status(4, 0), "Departed");
        assert_eq!(update_status(1, 1), "Delayed");
    }
}
