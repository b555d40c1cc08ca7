//! Hostile input, systematically (proptest): the journey parser, the schedule grammar and the
//! truth bookkeeping take whatever they are given without a panic, and what they accept means
//! what it says. `exec:` reply lines are checked the same way in `src/exec.rs`.

use std::time::Duration;

use proptest::prelude::*;
use racelab::{Event, EventKind, Journey, Schedule, SegmentState, Tally, WriteScope, verify};

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Id".to_owned()),
                    Just("Segments".to_owned()),
                    Just("SegmentId".to_owned()),
                    Just("Status".to_owned()),
                    "[A-Za-z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A journey-shaped document with arbitrary ids, statuses and extra fields.
fn journey_like() -> impl Strategy<Value = serde_json::Value> {
    let segment = (".{0,10}", ".{0,10}", any::<i64>(), json()).prop_map(|(id, status, n, extra)| {
        serde_json::json!({"SegmentId": id, "Status": status, "FlightNumber": n, "Extra": extra})
    });
    (".{0,10}", prop::collection::vec(segment, 0..5), json()).prop_map(
        |(id, segments, extra)| serde_json::json!({"Id": id, "Segments": segments, "Notes": extra}),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_text_given_as_a_journey_is_parsed_or_refused_in_one_sentence(text in ".{0,200}") {
        if let Err(e) = Journey::from_json(&text, "fuzz.json") {
            let said = e.to_string();
            prop_assert!(!said.is_empty() && !said.contains('\n'), "{said}");
        }
    }

    #[test]
    fn any_json_given_as_a_journey_round_trips_or_is_refused(doc in prop_oneof![json(), journey_like()]) {
        let text = doc.to_string();
        match Journey::from_json(&text, "fuzz.json") {
            Ok(journey) => {
                // What racelab writes back reads back as the same journey, written the same way.
                let written = journey.to_json();
                let again = Journey::from_json(&written, "again.json");
                prop_assert!(again.is_ok(), "{written}: {:?}", again.err().map(|e| e.to_string()));
                prop_assert_eq!(again.unwrap().to_json(), written);
            }
            Err(e) => {
                let said = e.to_string();
                prop_assert!(!said.contains('\n'), "{said}");
            }
        }
    }

    #[test]
    fn any_schedule_text_is_parsed_or_refused_in_one_sentence(text in "[0-9t ,xT-]{0,30}|.{0,30}") {
        match Schedule::parse(&text) {
            Ok(schedule) => {
                // What it prints, it reads back.
                prop_assert_eq!(Schedule::parse(&schedule.to_string()), Ok(schedule.clone()));
                if let Err(e) = schedule.check(3) {
                    prop_assert!(!e.contains('\n'), "{e}");
                }
            }
            Err(e) => prop_assert!(!e.is_empty() && !e.contains('\n'), "{e}"),
        }
    }

    /// Random histories of acknowledged and refused updates, and any final counts Redis could
    /// hold: every acknowledged update is either applied or lost, per segment and in all.
    #[test]
    fn every_acknowledged_update_is_applied_or_lost(
        acks in prop::collection::vec((0u32..6, 0u32..20), 0..60),
        refused in prop::collection::vec(0u32..6, 0..10),
        kept in prop::collection::vec(0.0f64..=1.0, 6),
    ) {
        let journey = Journey::seed_fixture().unwrap().with_segments(6);
        let mut tally = Tally::new(6);
        let mut acked = [0u64; 6];
        for (k, &(segment, updater)) in acks.iter().enumerate() {
            acked[segment as usize] += 1;
            tally.record(&Event {
                at: Duration::from_millis(k as u64 + 1),
                updater,
                kind: EventKind::Acknowledged {
                    round: 0,
                    segment,
                    status: racelab::update_status(segment as usize, 0),
                    read_at: Some(Duration::ZERO),
                    seen: None,
                    written_count: None,
                    latency: Duration::from_millis(1),
                    scope: WriteScope::Journey,
                },
            });
        }
        for &segment in &refused {
            tally.record(&Event {
                at: Duration::from_millis(100),
                updater: 0,
                kind: EventKind::Failed {
                    round: 0,
                    segment,
                    status: racelab::update_status(segment as usize, 0),
                    outcome: racelab::Outcome::NotApplied,
                    reason: "refused".into(),
                    gave_up: false,
                },
            });
        }
        let states: Vec<SegmentState> = (0..6)
            .map(|i| SegmentState {
                status: "Scheduled".to_owned(),
                update_count: (acked[i] as f64 * kept[i]).floor() as u64,
            })
            .collect();
        let truth = verify(&tally, &journey, &states, 1000);
        prop_assert_eq!(truth.applied + truth.lost, tally.acknowledged);
        prop_assert_eq!(truth.lost_updates.len() as u64, truth.lost);
        for i in 0..6 {
            let listed = truth.lost_updates.iter().filter(|l| l.segment == journey.segments[i].segment_id).count() as u64;
            prop_assert_eq!(listed, acked[i] - states[i].update_count);
        }
    }
}
