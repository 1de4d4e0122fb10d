//! The schedule's grammar, its fire times in UTC and in a zone that changes its clocks, and
//! the catch-up window.

use super::*;

/// An instant from an RFC 3339 string, for readable tests.
fn at(s: &str) -> SystemTime {
    s.parse::<Timestamp>().unwrap().into()
}

fn show(t: Option<SystemTime>) -> String {
    t.map(|t| Timestamp::try_from(t).unwrap().to_string())
        .unwrap_or("never".into())
}

fn next(expr: &str, tz: Option<&str>, from: &str) -> String {
    show(Schedule::parse(expr, tz).unwrap().next_after(at(from)))
}

#[test]
fn every_minute_fires_on_the_next_whole_minute() {
    assert_eq!(
        next("* * * * *", None, "2026-12-07T10:00:00Z"),
        "2026-12-07T10:01:00Z"
    );
    assert_eq!(
        next("* * * * *", None, "2026-12-07T10:00:59Z"),
        "2026-12-07T10:01:00Z"
    );
}

#[test]
fn ranges_steps_lists_and_names_are_read() {
    assert_eq!(
        next("*/15 * * * *", None, "2026-12-07T10:16:00Z"),
        "2026-12-07T10:30:00Z"
    );
    assert_eq!(
        next("0 9-17/4 * * *", None, "2026-12-07T13:00:00Z"),
        "2026-12-07T17:00:00Z"
    );
    assert_eq!(
        next("5,10 0 * * *", None, "2026-12-07T00:05:00Z"),
        "2026-12-07T00:10:00Z"
    );
    // 2026-12-07 is a Monday.
    assert_eq!(
        next("0 3 * * fri", None, "2026-12-07T00:00:00Z"),
        "2026-12-11T03:00:00Z"
    );
    assert_eq!(
        next("0 3 * * 7", None, "2026-12-07T00:00:00Z"),
        "2026-12-13T03:00:00Z"
    );
    assert_eq!(
        next("0 0 1 jan *", None, "2026-12-07T00:00:00Z"),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@hourly", None, "2026-12-07T10:00:00Z"),
        "2026-12-07T11:00:00Z"
    );
    assert_eq!(
        next("@weekly", None, "2026-12-07T10:00:00Z"),
        "2026-12-13T00:00:00Z"
    );
}

#[test]
fn both_day_fields_restricted_fire_on_either() {
    // The 1st of the month, or any Friday: cron's rule.
    assert_eq!(
        next("0 0 1 * 5", None, "2026-12-07T00:00:00Z"),
        "2026-12-11T00:00:00Z"
    );
    // A star in one field makes the other the only rule.
    assert_eq!(
        next("0 0 */1 * 5", None, "2026-12-07T00:00:00Z"),
        "2026-12-11T00:00:00Z"
    );
    assert_eq!(
        next("0 0 1 * *", None, "2026-12-07T00:00:00Z"),
        "2027-01-01T00:00:00Z"
    );
}

#[test]
fn a_leap_day_schedule_waits_for_the_next_leap_year() {
    assert_eq!(
        next("0 0 29 2 *", None, "2026-12-07T00:00:00Z"),
        "2028-02-29T00:00:00Z"
    );
}

#[test]
fn a_time_zone_moves_the_fire_time() {
    // 03:00 in Berlin in December (UTC+1) is 02:00 UTC; in July (UTC+2) 01:00 UTC.
    let berlin = Some("Europe/Berlin");
    assert_eq!(
        next("0 3 * * *", berlin, "2026-12-07T00:00:00Z"),
        "2026-12-07T02:00:00Z"
    );
    assert_eq!(
        next("0 3 * * *", berlin, "2026-07-07T00:00:00Z"),
        "2026-07-07T01:00:00Z"
    );
}

#[test]
fn a_wall_time_skipped_by_spring_forward_fires_once_shifted_by_the_gap() {
    // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let berlin = Some("Europe/Berlin");
    // 02:30 does not exist that night: it fires at 03:30 CEST = 01:30 UTC.
    assert_eq!(
        next("30 2 * * *", berlin, "2026-03-29T00:00:00Z"),
        "2026-03-29T01:30:00Z"
    );
    // An hourly job at :30 fires at 01:30 CET, 03:30 CEST (for 02:30), then 04:30: once each.
    let s = Schedule::parse("30 * * * *", berlin).unwrap();
    let mut t = at("2026-03-29T00:00:00Z");
    let mut fires = vec![];
    for _ in 0..3 {
        t = s.next_after(t).unwrap();
        fires.push(show(Some(t)));
    }
    assert_eq!(
        fires,
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:30:00Z"
        ]
    );
    // Asked from inside the hour after the gap, the shifted run is still ahead.
    assert_eq!(
        next("30 2 * * *", berlin, "2026-03-29T01:10:00Z"),
        "2026-03-29T01:30:00Z"
    );
}

#[test]
fn a_wall_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
    let berlin = Some("Europe/Berlin");
    let s = Schedule::parse("30 2 * * *", berlin).unwrap();
    let first = s.next_after(at("2026-10-24T23:00:00Z")).unwrap();
    assert_eq!(show(Some(first)), "2026-10-25T00:30:00Z");
    // Not again at the second 02:30 (01:30 UTC): the next is the following night's.
    assert_eq!(show(s.next_after(first)), "2026-10-26T01:30:00Z");
}

#[test]
fn last_in_finds_the_latest_missed_fire_in_one_call() {
    let s = Schedule::parse("* * * * *", None).unwrap();
    let (floor, now) = (at("2026-12-07T07:00:00Z"), at("2026-12-07T10:00:30Z"));
    assert_eq!(show(s.last_in(floor, now)), "2026-12-07T10:00:00Z");
    // Nothing between two fires: none missed. The floor itself is not missed.
    let just_after = at("2026-12-07T10:00:10Z");
    assert_eq!(
        show(s.last_in(at("2026-12-07T10:00:00Z"), just_after)),
        "never"
    );
    let daily = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
    let missed = daily.last_in(at("2026-12-01T00:00:00Z"), at("2026-12-07T10:00:00Z"));
    assert_eq!(show(missed), "2026-12-07T02:00:00Z");
}

#[test]
fn interval_after_is_the_gap_between_the_next_two_fires() {
    let s = Schedule::parse("*/5 * * * *", None).unwrap();
    let gap = s.interval_after(at("2026-12-07T10:00:00Z"));
    assert_eq!(gap, Some(Duration::from_secs(300)));
}

#[test]
fn the_zone_defaults_to_utc_and_is_named() {
    let s = Schedule::parse(" @daily ", None).unwrap();
    assert_eq!((s.expr(), s.timezone()), ("@daily", "UTC"));
}

#[test]
fn broken_schedules_say_which_part_is_wrong() {
    let err = |e: &str| Schedule::parse(e, None).unwrap_err().to_string();
    assert!(
        err("* * * *").contains("has 4 fields"),
        "{}",
        err("* * * *")
    );
    assert!(err("61 * * * *").contains("minute field \"61\": 61 is out of 0-59"));
    assert!(err("0 24 * * *").contains("hour field"));
    assert!(err("0 0 0 * *").contains("day-of-month field \"0\": 0 is out of 1-31"));
    assert!(err("0 0 * foo *").contains("\"foo\" is not a number or one of JAN"));
    assert!(err("*/0 * * * *").contains("the step \"0\" is not a whole number above 0"));
    assert!(err("5-1 * * * *").contains("runs backwards"));
    assert!(err("1,,2 * * * *").contains("an item is empty"));
    assert!(err("@often").contains("unknown schedule \"@often\""));
    assert!(err("0 0 30 2 *").contains("never fires"));
    let tz = Schedule::parse("@daily", Some("Mars/Olympus"))
        .unwrap_err()
        .to_string();
    assert!(
        tz.contains("\"Mars/Olympus\" is not an IANA time zone"),
        "{tz}"
    );
}
