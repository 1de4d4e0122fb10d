//! When a job runs (docs/guides/jobs.md): given the fire time last handled, now, the
//! schedule, the starting deadline, the concurrency rule and whether a run is in flight, what
//! to do. Pure: the scheduler (`daemon::jobs`) reads the clock and the database and hands them
//! in, so every rule here is tested without either.
//!
//! The catch-up rule: of all the fire times missed since the last one handled, only the
//! latest counts. It runs when it is at most `starting_deadline` old, else it is recorded as
//! `missed`; either way it becomes the last one handled, so berth down for three hours with
//! a job every minute gives exactly one run or one `missed`, never 180.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::jobs::Concurrency;
use crate::model::schedule::Schedule;

/// How a run ended (or that it is still running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Its container runs.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited otherwise, or could not start.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Its fire time was past the starting deadline when berth could start it.
    Missed,
    /// Due while another run was in flight under `concurrency = "forbid"`.
    Skipped,
}

impl RunResult {
    /// As the API and `berth jobs` show it (and the metric's `result` label).
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Running => "running",
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::TimedOut => "timed_out",
            RunResult::Missed => "missed",
            RunResult::Skipped => "skipped",
        }
    }

    /// Whether a run with this result is tried again (`retries`).
    pub fn is_retried(self) -> bool {
        matches!(self, RunResult::Failed | RunResult::TimedOut)
    }
}

/// What the scheduler does about one job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing is due; look again at `next` (none: the schedule never fires again).
    Wait(Option<SystemTime>),
    /// Start a run for the fire time.
    Run(SystemTime),
    /// Stop the runs in flight, then start one for the fire time (`replace`).
    Replace(SystemTime),
    /// Record the fire time as skipped: a run is in flight (`forbid`).
    Skip(SystemTime),
    /// Record the fire time as missed: it is past the starting deadline.
    Missed(SystemTime),
}

/// What is due for a job whose last handled fire time is `last`, at `now`.
pub fn decide(
    schedule: &Schedule,
    last: SystemTime,
    now: SystemTime,
    (deadline, concurrency): (Duration, Concurrency),
    running: bool,
) -> Due {
    let Some(fire) = schedule.last_in(last, now) else {
        return Due::Wait(schedule.next_after(now.max(last)));
    };
    if now.duration_since(fire).unwrap_or_default() > deadline {
        return Due::Missed(fire);
    }
    now_or_later(fire, concurrency, running)
}

/// What a run asked for now (`berth jobs run`) does: the same concurrency rule.
pub fn decide_now(now: SystemTime, concurrency: Concurrency, running: bool) -> Due {
    now_or_later(now, concurrency, running)
}

fn now_or_later(fire: SystemTime, concurrency: Concurrency, running: bool) -> Due {
    match (running, concurrency) {
        (false, _) | (true, Concurrency::Allow) => Due::Run(fire),
        (true, Concurrency::Forbid) => Due::Skip(fire),
        (true, Concurrency::Replace) => Due::Replace(fire),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 2026-12-07 10:00:00 UTC.
    const TEN: u64 = 1_796_637_600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", None).unwrap()
    }

    const FORBID: (Duration, Concurrency) = (Duration::from_secs(15 * 60), Concurrency::Forbid);

    #[test]
    fn nothing_is_due_before_the_next_fire() {
        let s = every_minute();
        let d = decide(&s, at(TEN), at(TEN + 30), FORBID, false);
        assert_eq!(d, Due::Wait(Some(at(TEN + 60))));
    }

    #[test]
    fn a_fire_just_passed_runs() {
        let s = every_minute();
        let d = decide(&s, at(TEN), at(TEN + 61), FORBID, false);
        assert_eq!(d, Due::Run(at(TEN + 60)));
        // Once handled, it is not due again.
        let d = decide(&s, at(TEN + 60), at(TEN + 62), FORBID, false);
        assert_eq!(d, Due::Wait(Some(at(TEN + 120))));
    }

    #[test]
    fn after_three_hours_down_only_the_latest_fire_counts() {
        let s = every_minute();
        let back = at(TEN + 3 * 3600 + 5);
        assert_eq!(
            decide(&s, at(TEN), back, FORBID, false),
            Due::Run(at(TEN + 3 * 3600)),
            "one catch-up run, for the latest fire"
        );
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        let back = at(TEN + 3 * 3600 + 20 * 60);
        assert_eq!(
            decide(&hourly, at(TEN), back, FORBID, false),
            Due::Missed(at(TEN + 3 * 3600)),
            "20 minutes late is past a 15 minute deadline"
        );
        assert_eq!(
            decide(&hourly, at(TEN + 3 * 3600), back, FORBID, false),
            Due::Wait(Some(at(TEN + 4 * 3600))),
            "a missed fire, once recorded, is not missed again"
        );
    }

    #[test]
    fn the_deadline_is_inclusive() {
        let s = every_minute();
        let rule = (Duration::from_secs(10), Concurrency::Forbid);
        assert_eq!(
            decide(&s, at(TEN), at(TEN + 70), rule, false),
            Due::Run(at(TEN + 60))
        );
        assert_eq!(
            decide(&s, at(TEN), at(TEN + 71), rule, false),
            Due::Missed(at(TEN + 60))
        );
    }

    #[test]
    fn a_run_in_flight_is_met_by_the_concurrency_rule() {
        let s = every_minute();
        let (now, fire) = (at(TEN + 61), at(TEN + 60));
        let with = |c| decide(&s, at(TEN), now, (Duration::from_secs(60), c), true);
        assert_eq!(with(Concurrency::Forbid), Due::Skip(fire));
        assert_eq!(with(Concurrency::Allow), Due::Run(fire));
        assert_eq!(with(Concurrency::Replace), Due::Replace(fire));
        assert_eq!(decide_now(now, Concurrency::Forbid, true), Due::Skip(now));
        assert_eq!(decide_now(now, Concurrency::Forbid, false), Due::Run(now));
    }

    #[test]
    fn a_clock_stepped_back_runs_nothing_twice() {
        let s = every_minute();
        // Handled 10:05; the clock now says 10:01:30.
        let d = decide(&s, at(TEN + 300), at(TEN + 90), FORBID, false);
        assert_eq!(d, Due::Wait(Some(at(TEN + 360))));
    }

    #[test]
    fn a_wall_time_skipped_by_spring_forward_fires_once_after_the_gap() {
        // 02:30 in Berlin does not exist on 2027-03-28: it fires at 03:30 CEST (01:30 UTC),
        // once, as the day before's 02:30 CET did at 01:30 UTC.
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let (before, gap_day) = (1_806_111_000, 1_806_197_400);
        let d = decide(&s, at(before), at(gap_day + 30), FORBID, false);
        assert_eq!(d, Due::Run(at(gap_day)));
        let d = decide(&s, at(gap_day), at(gap_day + 3600), FORBID, false);
        assert_eq!(
            d,
            Due::Wait(Some(at(gap_day + 86_400 - 3600))),
            "next: 02:30 CEST"
        );
    }
}
