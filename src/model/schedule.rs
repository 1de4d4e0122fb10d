//! STAND-IN for the lead's `model::schedule` (notes/tasks/schedule-api.md), replaced by
//! main's file at the merge: five cron fields in UTC only, by walking minutes. Same API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    expr: String,
    timezone: String,
    fields: [Vec<bool>; 5],
}

/// What is wrong with a schedule.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

const BOUNDS: [(u32, u32, &str); 5] = [
    (0, 59, "minute"),
    (0, 23, "hour"),
    (1, 31, "day-of-month"),
    (1, 12, "month"),
    (0, 7, "day-of-week"),
];

impl Schedule {
    /// Parses five fields (numbers, `*`, lists, ranges, steps) or an `@` alias.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = timezone.unwrap_or("UTC");
        if !tz.contains('/') && tz != "UTC" {
            return Err(ScheduleError(format!("unknown time zone {tz:?}")));
        }
        let text = match expr.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(ScheduleError(format!(
                "{expr:?}: expected five fields (minute hour day-of-month month day-of-week)"
            )));
        }
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (i, part) in parts.iter().enumerate() {
            fields[i] = field(part, BOUNDS[i])?;
        }
        if fields[4][7] {
            fields[4][0] = true;
        }
        Ok(Schedule {
            expr: expr.to_string(),
            timezone: tz.to_string(),
            fields,
        })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let first = secs / 60 + 1;
        (first..first + 366 * 24 * 60 * 5)
            .find(|m| self.matches(*m))
            .map(|m| UNIX_EPOCH + Duration::from_secs(m * 60))
    }

    /// The last fire time at or before `t` and strictly after `floor`.
    pub fn last_in(&self, floor: SystemTime, t: SystemTime) -> Option<SystemTime> {
        let lo = floor.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let mut m = t.duration_since(UNIX_EPOCH).ok()?.as_secs() / 60;
        while m * 60 > lo {
            if self.matches(m) {
                return Some(UNIX_EPOCH + Duration::from_secs(m * 60));
            }
            m -= 1;
        }
        None
    }

    /// The time between the two fires after `t`.
    pub fn interval_after(&self, t: SystemTime) -> Option<Duration> {
        let a = self.next_after(t)?;
        self.next_after(a)?.duration_since(a).ok()
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone; "UTC" when none was given.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    fn matches(&self, minute: u64) -> bool {
        let days = (minute / 1440) as i64;
        let (_, month, day) = civil(days);
        let dow = ((days + 4).rem_euclid(7)) as usize;
        let f = &self.fields;
        f[0][(minute % 60) as usize]
            && f[1][((minute / 60) % 24) as usize]
            && f[2][day as usize]
            && f[3][month as usize]
            && f[4][dow]
    }
}

fn field(part: &str, (lo, hi, name): (u32, u32, &str)) -> Result<Vec<bool>, ScheduleError> {
    let mut set = vec![false; hi as usize + 1];
    let bad = |why: String| ScheduleError(format!("{name} field {part:?}: {why}"));
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| bad(format!("bad step {s:?}")))?,
            ),
            None => (item, 1),
        };
        let num = |s: &str| -> Result<u32, ScheduleError> {
            let n: u32 = s
                .parse()
                .map_err(|_| bad(format!("{s:?} is not a number")))?;
            if n < lo || n > hi {
                return Err(bad(format!("{n} is out of {lo}-{hi}")));
            }
            Ok(n)
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(r)?, num(r)?),
            },
        };
        if step == 0 || a > b {
            return Err(bad("empty range or zero step".into()));
        }
        for n in (a..=b).step_by(step as usize) {
            set[n as usize] = true;
        }
    }
    Ok(set)
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
