//! A schedule on a clock: five cron fields (or `@daily` and friends) read in an IANA time
//! zone, and the fire times they give. Pure: every answer is a function of the times passed
//! in, so jobs and backups are tested without a clock.
//!
//! Times are wall-clock times in the zone. A wall time a spring-forward change skips fires
//! once, shifted by the gap's length (02:30 in a 02:00→03:00 gap fires at 03:30); a wall time
//! a fall-back change repeats fires once, at its first occurrence.

use std::time::{Duration, SystemTime};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// How far a zone's change can move a wall time (Samoa skipped a whole day in 2011), so a
/// search looks this far on either side of the civil time it starts from.
const SHIFT: i64 = 25 * 60;
/// A search for the next fire gives up after this many days: "0 0 29 2 *" fires at least
/// once in eight years; a schedule that never fires ("0 0 30 2 *") ends the search here.
const HORIZON_DAYS: usize = 366 * 8 + 2;

/// Why a schedule was refused; says which part of it and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0:?} has {1} fields; a schedule has five (minute hour day-of-month month day-of-week) or is one of @yearly @annually @monthly @weekly @daily @midnight @hourly")]
    FieldCount(String, usize),
    #[error("unknown schedule {0:?}: the named ones are @yearly @annually @monthly @weekly @daily @midnight @hourly")]
    UnknownNamed(String),
    #[error("{field} field {text:?}: {why}")]
    Field {
        field: &'static str,
        text: String,
        why: String,
    },
    #[error(
        "time zone {0:?} is not an IANA time zone name (such as \"Europe/Berlin\" or \"UTC\")"
    )]
    TimeZone(String),
    #[error("{0:?} never fires (no date matches it)")]
    Never(String),
}

/// A parsed schedule. Equal when the expression, zone and fields are.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    expr: String,
    zone_name: String,
    zone: TimeZone,
    fields: Fields,
}

/// The allowed values of each field as bit sets, and whether the day fields were `*`
/// (cron's rule: when both day fields are restricted, a day matching either fires).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct FieldDef {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldDef = FieldDef {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldDef = FieldDef {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldDef = FieldDef {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldDef = FieldDef {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
// 7 is Sunday too; folded onto 0 after parsing.
const DOW: FieldDef = FieldDef {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl Schedule {
    /// Reads `expr` in `timezone` (None is UTC, never the host's zone).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let zone_name = timezone.unwrap_or("UTC").to_string();
        let zone = match zone_name.as_str() {
            "UTC" => TimeZone::UTC,
            name => TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
        };
        let fields = parse_fields(expr.trim())?;
        let schedule = Schedule {
            expr: expr.trim().to_string(),
            zone_name,
            zone,
            fields,
        };
        if schedule.next_after(SystemTime::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::Never(schedule.expr));
        }
        Ok(schedule)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> &str {
        &self.zone_name
    }

    /// The first fire time strictly after `t`; None when the schedule never fires again.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let t = Timestamp::try_from(t).ok()?;
        let shift = self.shift();
        let start = self
            .civil(t)
            .checked_sub(jiff::SignedDuration::from_mins(shift))
            .ok()?;
        let mut best: Option<(Timestamp, DateTime)> = None;
        for civil in self.walk(start, true) {
            if best.is_some_and(|(_, found)| minutes_between(found, civil) > shift) {
                break;
            }
            let Some(at) = self.instant(civil) else {
                continue;
            };
            if at > t && best.is_none_or(|(b, _)| at < b) {
                best = Some((at, civil));
            }
        }
        best.map(|(at, _)| at.into())
    }

    /// The last fire time at or before `t` and strictly after `floor`: after downtime, the
    /// one fire a catch-up is about, found without stepping through every miss.
    pub fn last_in(&self, floor: SystemTime, t: SystemTime) -> Option<SystemTime> {
        let (floor, t) = (
            Timestamp::try_from(floor).ok()?,
            Timestamp::try_from(t).ok()?,
        );
        let shift = jiff::SignedDuration::from_mins(self.shift());
        let start = self.civil(t).checked_add(shift).ok()?;
        let stop = self.civil(floor).checked_sub(shift).ok()?;
        let mut best: Option<(Timestamp, DateTime)> = None;
        for civil in self.walk(start, false) {
            let past_best = best.is_some_and(|(_, b)| minutes_between(civil, b) > self.shift());
            if civil < stop || past_best {
                break;
            }
            let Some(at) = self.instant(civil) else {
                continue;
            };
            if at <= t && at > floor && best.is_none_or(|(b, _)| at > b) {
                best = Some((at, civil));
            }
        }
        best.map(|(at, _)| at.into())
    }

    /// The time between the two fires after `t`: how late a run may be before it is missed.
    pub fn interval_after(&self, t: SystemTime) -> Option<Duration> {
        let first = self.next_after(t)?;
        self.next_after(first)?.duration_since(first).ok()
    }

    /// Minutes a zone change can move a wall time: none in a fixed-offset zone such as UTC,
    /// so its search stops at the first match.
    fn shift(&self) -> i64 {
        match self.zone.to_fixed_offset() {
            Ok(_) => 0,
            Err(_) => SHIFT,
        }
    }

    fn civil(&self, t: Timestamp) -> DateTime {
        self.zone.to_datetime(t)
    }

    /// The instant a wall time fires at: a gap's wall time shifted forward by the gap, a
    /// fold's at its first occurrence (jiff's "compatible" rule).
    fn instant(&self, civil: DateTime) -> Option<Timestamp> {
        self.zone.to_ambiguous_timestamp(civil).compatible().ok()
    }

    /// Every matching wall time from `start` (inclusive), forward or backward, day by day.
    fn walk(&self, start: DateTime, forward: bool) -> impl Iterator<Item = DateTime> + '_ {
        let days = std::iter::successors(Some(start.date()), move |d: &Date| match forward {
            true => d.tomorrow().ok(),
            false => d.yesterday().ok(),
        });
        days.take(HORIZON_DAYS)
            .filter(|d| self.fields.day_matches(*d))
            .flat_map(move |d| self.times_of(d, start, forward))
    }

    /// The matching wall times of one day, in walk order, not before (or after) `start`.
    fn times_of(&self, day: Date, start: DateTime, forward: bool) -> Vec<DateTime> {
        let mut times: Vec<DateTime> = bits(self.fields.hour)
            .flat_map(|h| bits(self.fields.minute).map(move |m| day.at(h as i8, m as i8, 0, 0)))
            .filter(|dt| match forward {
                true => *dt >= start,
                false => *dt <= start,
            })
            .collect();
        if !forward {
            times.reverse();
        }
        times
    }
}

impl Fields {
    fn day_matches(&self, d: Date) -> bool {
        if !has(self.month, d.month() as u32) {
            return false;
        }
        let dom = has(self.dom, d.day() as u32);
        let dow = has(self.dow, d.weekday().to_sunday_zero_offset() as u32);
        match self.dom_star || self.dow_star {
            true => dom && dow,
            false => dom || dow,
        }
    }
}

fn minutes_between(a: DateTime, b: DateTime) -> i64 {
    a.duration_until(b).as_mins()
}

fn has(set: u64, v: u32) -> bool {
    set & (1 << v) != 0
}

fn bits(set: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |v| has(set, *v))
}

fn parse_fields(expr: &str) -> Result<Fields, ScheduleError> {
    let expanded = match expr {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        named if named.starts_with('@') => return Err(ScheduleError::UnknownNamed(named.into())),
        five => five,
    };
    let parts: Vec<&str> = expanded.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = parts[..] else {
        return Err(ScheduleError::FieldCount(expr.into(), parts.len()));
    };
    let mut dow_set = parse_field(dow, &DOW)?;
    if has(dow_set, 7) {
        dow_set = (dow_set & !(1 << 7)) | 1;
    }
    Ok(Fields {
        minute: parse_field(minute, &MINUTE)?,
        hour: parse_field(hour, &HOUR)?,
        dom: parse_field(dom, &DOM)?,
        month: parse_field(month, &MONTH)?,
        dow: dow_set,
        dom_star: dom.starts_with('*'),
        dow_star: dow.starts_with('*'),
    })
}

/// One field: comma-separated items, each `*`, `N`, `N-M`, or either with `/step`.
fn parse_field(text: &str, def: &FieldDef) -> Result<u64, ScheduleError> {
    let err = |why: String| ScheduleError::Field {
        field: def.name,
        text: text.into(),
        why,
    };
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let (lo, hi) = match range {
            "*" => (def.min, def.max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a, def).map_err(err)?, value(b, def).map_err(err)?),
                None => {
                    let v = value(r, def).map_err(err)?;
                    (v, if step.is_some() { def.max } else { v })
                }
            },
        };
        if lo > hi {
            return Err(err(format!("the range {range} runs backwards")));
        }
        let step = match step {
            None => 1,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(err(format!("the step {s:?} is not a whole number above 0"))),
            },
        };
        for v in (lo..=hi).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(text: &str, def: &FieldDef) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = def.names.iter().position(|n| *n == upper) {
        return Ok(def.min + i as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (def.min..=def.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of {}-{}", def.min, def.max)),
        Err(_) if text.is_empty() => Err("an item is empty".into()),
        Err(_) => Err(format!("{text:?} is not a number{}", names_hint(def))),
    }
}

fn names_hint(def: &FieldDef) -> String {
    match def.names.is_empty() {
        true => String::new(),
        false => format!(" or one of {}", def.names.join(" ")),
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
