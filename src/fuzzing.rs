//! The ways in for the fuzz targets (`tests/fuzz`, README "Development"): each takes arbitrary
//! bytes the way racelab takes them from a user or a program, and panics only where racelab's
//! promise is broken, so that the fuzzer reports it.

use crate::journey::Journey;
use crate::schedule::Schedule;

/// A `--journey` file: refused with one sentence, or accepted and written back so that reading
/// it again gives the same journey.
pub fn journey(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Journey::from_json(text, "fuzz.json") {
        Ok(journey) => {
            let again = Journey::from_json(&journey.to_json(), "written back");
            assert!(
                again.as_ref().is_ok_and(|again| *again == journey),
                "a journey racelab accepted does not come back the same: {again:?}"
            );
        }
        Err(e) => one_sentence(&e.to_string()),
    }
}

/// A `--schedule`: refused with one sentence, or parsed into a schedule that reads back as
/// itself.
pub fn schedule(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Schedule::parse(&text) {
        Ok(schedule) => assert_eq!(
            Schedule::parse(&schedule.to_string()),
            Ok(schedule),
            "a schedule does not read back as itself"
        ),
        Err(why) => one_sentence(&why),
    }
}

/// A line an `exec:` program wrote (racelab reads its output a line at a time): a reply, or one
/// sentence saying how it broke the protocol, with none of the program's control characters.
pub fn exec_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let line = text.split('\n').next().unwrap_or_default();
    if let Err(why) = crate::exec::take_reply_line(line) {
        one_sentence(&why);
        assert!(
            !why.contains(|c: char| c.is_control() && c != '\t'),
            "control characters: {why:?}"
        );
    }
}

fn one_sentence(text: &str) {
    assert!(
        !text.is_empty() && !text.contains('\n'),
        "not one sentence: {text:?}"
    );
}
