//! The serve loop's rules, one behaviour per test, under a made-up clock (`t0` plus offsets).

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::model::fixtures::*;
use crate::model::observed::ContainerState;
use crate::reconcile::plan::{plan, Action, ContainerRef, PlanOptions, Refusal};
use crate::reconcile::status::Phase;
use crate::reconcile::trigger::{Trigger, Triggers};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A change that creates `k`'s container.
fn create(k: &str) -> AppChange {
    AppChange {
        key: key(k),
        duplicates: vec![],
        action: Some(Action::Create { start: true }),
        desired_hash: Some(format!("h-{k}")),
    }
}

/// A restart of `k`'s container, which exited by itself.
fn crash_restart(k: &str) -> AppChange {
    let container = ContainerRef {
        id: "c1".into(),
        name: "c1".into(),
        running: false,
    };
    AppChange {
        action: Some(Action::Start {
            container,
            exited: Some(Some(1)),
        }),
        ..create(k)
    }
}

fn plan_of(changes: Vec<AppChange>) -> Plan {
    Plan {
        changes,
        ..Plan::default()
    }
}

fn keys(s: &Schedule) -> Vec<String> {
    s.start.iter().map(|c| c.key.to_string()).collect()
}

#[test]
fn a_busy_app_is_skipped_until_its_change_finishes() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![create("alice/a")]);
    assert_eq!(keys(&st.schedule(&p, t0)), ["alice/a"]);
    assert!(st.schedule(&p, t0).start.is_empty(), "started twice");
    assert_eq!(st.in_flight(), 1);
    assert_eq!(st.finished(&p.changes[0], Ok(()), t0), Outcome::Done);
    assert_eq!(keys(&st.schedule(&p, t0)), ["alice/a"]);
}

#[test]
fn a_rename_waits_while_the_app_it_takes_over_has_a_change_in_flight() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let old = plan_of(vec![create("alice/hi")]);
    assert_eq!(keys(&st.schedule(&old, t0)), ["alice/hi"]);
    let rename = AppChange {
        action: Some(Action::Rename {
            from: key("alice/hi"),
            containers: vec![],
        }),
        ..create("alice/hello")
    };
    let p = plan_of(vec![rename]);
    assert!(st.schedule(&p, t0).start.is_empty(), "the old name is busy");
    st.finished(&old.changes[0], Ok(()), t0);
    assert_eq!(keys(&st.schedule(&p, t0)), ["alice/hello"]);
}

#[test]
fn at_most_max_parallel_changes_run_and_the_rest_wait_for_a_later_pass() {
    let (t0, mut st) = (Instant::now(), LoopState::new(2));
    let p = plan_of(["a/a", "a/b", "a/c", "a/d"].map(create).to_vec());
    assert_eq!(keys(&st.schedule(&p, t0)), ["a/a", "a/b"]);
    assert!(st.schedule(&p, t0).start.is_empty());
    st.finished(&p.changes[1], Ok(()), t0);
    assert_eq!(
        keys(&st.schedule(&p, t0)),
        ["a/b"],
        "first free slot, plan order"
    );
}

#[test]
fn a_change_that_waited_for_a_slot_goes_before_one_that_just_became_ready() {
    let (t0, mut st) = (Instant::now(), LoopState::new(1));
    let p = plan_of(vec![create("a/a"), create("z/z")]);
    assert_eq!(keys(&st.schedule(&p, t0)), ["a/a"]);
    st.finished(&p.changes[0], Ok(()), t0);
    assert_eq!(
        keys(&st.schedule(&p, t0 + secs(1))),
        ["z/z"],
        "a/a would starve z/z"
    );
}

#[test]
fn a_failed_change_waits_out_its_backoff_unless_the_manifest_changes() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![create("alice/a")]);
    st.schedule(&p, t0);
    let wait = st.finished(&p.changes[0], Err("pull failed".into()), t0);
    assert_eq!(wait, Outcome::RetryIn(secs(1)));
    let held = st.schedule(&p, t0 + Duration::from_millis(500));
    assert!(held.start.is_empty());
    assert_eq!(held.wake_at, Some(t0 + secs(1)));
    let mut edited = create("alice/a");
    edited.desired_hash = Some("edited".into());
    let retried = st.schedule(&plan_of(vec![edited]), t0 + Duration::from_millis(500));
    assert_eq!(keys(&retried), ["alice/a"], "an edit retries at once");
}

#[test]
fn failures_back_off_exponentially() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![create("alice/a")]);
    let mut now = t0;
    for expected in [1, 2, 4, 8] {
        assert_eq!(keys(&st.schedule(&p, now)), ["alice/a"]);
        let out = st.finished(&p.changes[0], Err("boom".into()), now);
        assert_eq!(out, Outcome::RetryIn(secs(expected)));
        now += secs(expected);
    }
}

#[test]
fn crash_restarts_are_spaced_out_and_counted_once_each() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![crash_restart("alice/a")]);
    assert_eq!(
        keys(&st.schedule(&p, t0)),
        ["alice/a"],
        "the first is at once"
    );
    st.finished(&p.changes[0], Ok(()), t0);
    let next = st.schedule(&p, t0);
    assert!(next.start.is_empty());
    assert_eq!(next.wake_at, Some(t0 + secs(1)));
    assert_eq!(keys(&st.schedule(&p, t0 + secs(1))), ["alice/a"]);
    st.finished(&p.changes[0], Ok(()), t0 + secs(1));
    assert_eq!(st.schedule(&p, t0 + secs(2)).wake_at, Some(t0 + secs(3)));
    assert_eq!(
        st.backoffs.recent_restarts(&key("alice/a"), t0 + secs(2)),
        2
    );
}

#[test]
fn a_failed_crash_restart_is_not_counted_as_a_restart() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![crash_restart("alice/a")]);
    st.schedule(&p, t0);
    st.finished(&p.changes[0], Err("engine".into()), t0);
    assert_eq!(st.backoffs.recent_restarts(&key("alice/a"), t0), 0);
}

/// A desired running app whose container has exited, planned for real.
fn exited_app() -> (DesiredState, Vec<Observed>, Plan) {
    let d = desired(vec![app("alice/a", RUN)]);
    let obs = vec![wanted_container(
        &d,
        "alice/a",
        "1",
        ContainerState::Exited(Some(3)),
    )];
    let p = plan(&d, &obs, PlanOptions::default());
    (d, obs, p)
}

#[test]
fn three_restarts_in_ten_minutes_are_named_a_crash_loop() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let (d, obs, p) = exited_app();
    let mut now = t0;
    for n in 1..=3u64 {
        let started = st.schedule(&p, now);
        assert_eq!(keys(&started), ["alice/a"], "restart {n}");
        st.finished(&started.start[0], Ok(()), now);
        let s = &st.status(&d, &obs, &p, now, SystemTime::now())[&key("alice/a")];
        let want = if n < 3 {
            Phase::Pending
        } else {
            Phase::CrashLoop
        };
        assert_eq!(s.phase, want, "after restart {n}");
        now += secs(60);
    }
    let s = &st.status(&d, &obs, &p, now, SystemTime::now())[&key("alice/a")];
    let error = s.last_error.as_deref().unwrap();
    assert!(
        error.contains("restarted 3 times") && error.contains("exit code 3"),
        "{error}"
    );
    let later = now + secs(601);
    assert_eq!(
        st.status(&d, &obs, &p, later, SystemTime::now())[&key("alice/a")].phase,
        Phase::Pending
    );
}

#[test]
fn status_is_derived_from_the_plan_busy_apps_and_failures() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let d = desired(vec![
        app("alice/a", RUN),
        app("alice/b", STOP),
        app("alice/c", RUN),
    ]);
    let obs = vec![
        wanted_container(&d, "alice/a", "1", ContainerState::Running),
        wanted_container(&d, "alice/b", "2", ContainerState::Exited(Some(0))),
        container("zed/gone", "3", "h", ContainerState::Running),
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    let started = st.schedule(&p, t0);
    let c = started
        .start
        .iter()
        .find(|c| c.key == key("alice/c"))
        .unwrap();
    st.finished(c, Err("no image".into()), t0);
    let board = st.status(&d, &obs, &p, t0, SystemTime::now());
    let phase = |k: &str| board[&key(k)].phase;
    assert_eq!(phase("alice/a"), Phase::Running);
    assert_eq!(phase("alice/b"), Phase::Stopped);
    assert_eq!(phase("alice/c"), Phase::Failed);
    assert!(board[&key("alice/c")]
        .last_error
        .as_deref()
        .unwrap()
        .contains("no image"));
    assert_eq!(phase("zed/gone"), Phase::Pending, "an orphan being removed");
    assert_eq!(board[&key("alice/a")].container, "running");
}

#[test]
fn purges_are_settled_only_by_a_scan_that_began_after_the_request() {
    let (t0, st) = (Instant::now(), LoopState::new(4));
    let d = desired(vec![app("alice/back", RUN)]);
    let obs = vec![container("alice/held", "1", "h", ContainerState::Running)];
    let p = plan_of(vec![]);
    let pending = vec![
        (key("alice/back"), t0),
        (key("alice/held"), t0),
        (key("alice/done"), t0),
        (key("alice/late"), t0 + secs(5)),
    ];
    let steps = st.settle_removals(&pending, t0 + secs(1), &d, &obs, &p);
    assert_eq!(
        steps,
        [
            (key("alice/back"), PurgeStep::Cancel),
            (key("alice/done"), PurgeStep::Finish)
        ]
    );
}

#[test]
fn a_purge_waits_while_its_removal_is_planned_or_running_or_its_user_is_frozen() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let mut d = desired(vec![]);
    let removal = plan_of(vec![create("alice/x")]);
    let pending = vec![(key("alice/x"), t0), (key("bob/y"), t0)];
    d.frozen_users.insert("bob".into(), "unreadable".into());
    let later = t0 + secs(1);
    assert!(st
        .settle_removals(&pending, later, &d, &[], &removal)
        .is_empty());
    st.schedule(&removal, t0);
    assert!(
        st.settle_removals(&pending, later, &d, &[], &plan_of(vec![]))
            .is_empty(),
        "busy"
    );
    st.finished(&removal.changes[0], Ok(()), t0);
    let steps = st.settle_removals(&pending, later, &d, &[], &plan_of(vec![]));
    assert_eq!(steps, [(key("alice/x"), PurgeStep::Finish)]);
}

fn held(keys: &[&str]) -> Plan {
    Plan {
        prune_blocked: keys.iter().map(|k| key(k)).collect(),
        ..Plan::default()
    }
}

#[test]
fn a_release_lifts_the_guard_only_for_what_was_confirmed() {
    let mut st = LoopState::new(4);
    assert_eq!(st.release(&held(&["a/a", "a/b"])), Release::None);
    st.confirm_release([key("a/a"), key("a/b")].into());
    assert_eq!(st.release(&held(&["a/a", "a/b"])), Release::Lift);
    assert_eq!(st.release(&held(&["a/a", "a/b", "a/c"])), Release::Stale);
    assert_eq!(
        st.release(&held(&["a/a"])),
        Release::None,
        "a stale release is gone"
    );
}

#[test]
fn a_release_lasts_until_every_released_removal_is_done() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let ten: Vec<String> = (0..10).map(|i| format!("a/app{i}")).collect();
    let names: Vec<&str> = ten.iter().map(String::as_str).collect();
    st.confirm_release(names.iter().map(|k| key(k)).collect());
    let mut left = names.clone();
    let mut passes = 0;
    while !left.is_empty() {
        passes += 1;
        assert_eq!(st.release(&held(&left)), Release::Lift, "pass {passes}");
        let unguarded = plan_of(left.iter().map(|k| create(k)).collect());
        let started = st.schedule(&unguarded, t0);
        assert!(started.start.len() <= 4);
        for c in &started.start {
            st.finished(c, Ok(()), t0);
            left.retain(|k| *k != c.key.to_string());
        }
    }
    assert_eq!(passes, 3, "4 + 4 + 2 removals");
    assert_eq!(st.release(&held(&[])), Release::None);
    assert_eq!(
        st.release(&held(&["a/app0"])),
        Release::None,
        "the release ended"
    );
}

#[test]
fn a_held_mass_removal_is_reported_once_per_change() {
    let mut st = LoopState::new(4);
    let mut p = plan_of(vec![]);
    p.prune_blocked = vec![key("a/a")];
    assert_eq!(st.newly_blocked(&p), Some(vec![key("a/a")]));
    assert_eq!(st.newly_blocked(&p), None);
    p.prune_blocked.push(key("a/b"));
    assert!(st.newly_blocked(&p).is_some());
    assert_eq!(st.newly_blocked(&plan_of(vec![])), None);
}

#[test]
fn apps_gone_everywhere_lose_their_backoff() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let p = plan_of(vec![create("alice/a")]);
    st.schedule(&p, t0);
    st.finished(&p.changes[0], Err("x".into()), t0);
    st.forget_gone(&desired(vec![app("alice/a", RUN)]), &[]);
    assert!(
        st.backoffs.failure(&key("alice/a")).is_some(),
        "kept while its manifest exists"
    );
    st.forget_gone(&desired(vec![]), &[]);
    assert!(st.backoffs.failure(&key("alice/a")).is_none());
    assert_eq!(keys(&st.schedule(&p, t0)), ["alice/a"]);
}

#[test]
fn a_rolled_back_spec_shows_rollout_failed_and_is_forgotten_when_the_manifest_changes() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let d = desired(vec![app("alice/a", RUN)]);
    let h = hash_of(&d, "alice/a");
    let old = container("alice/a", "old", "old-hash", ContainerState::Running);
    let p = plan(&d, std::slice::from_ref(&old), PlanOptions::default());
    st.schedule(&p, t0);
    let refusal = Refusal {
        hash: h.clone(),
        reason: "exited with code 3".into(),
        health: Some(None),
        build: false,
    };
    let failed = Failure::RolledBack(refusal.clone());
    assert_eq!(
        st.finished(&p.changes[0], Err(failed), t0),
        Outcome::Refused
    );
    st.settle_refusals(&d);
    let opts = PlanOptions {
        refused: Some(st.refused()),
        ..Default::default()
    };
    let again = plan(&d, std::slice::from_ref(&old), opts);
    assert!(
        st.schedule(&again, t0 + secs(3600)).start.is_empty(),
        "retried"
    );
    let board = st.status(
        &d,
        std::slice::from_ref(&old),
        &again,
        t0,
        SystemTime::now(),
    );
    let s = &board[&key("alice/a")];
    assert_eq!(s.phase, Phase::RolloutFailed);
    assert_eq!(s.refused_hash.as_deref(), Some(h.as_str()));
    assert!(s
        .last_error
        .as_deref()
        .unwrap()
        .contains("exited with code 3"));
    let restored = Refusal::from_shown(&h, s.last_error.as_deref().unwrap());
    assert_eq!(
        (&restored.hash, &restored.reason),
        (&refusal.hash, &refusal.reason)
    );
    assert!(
        restored.refuses(&h, None),
        "a refusal read back refuses whatever the check"
    );
    let edited = desired(vec![app(
        "alice/a",
        "template = \"web-v1\"\nrestart = \"2\"",
    )]);
    st.settle_refusals(&edited);
    assert!(
        st.refused().is_empty(),
        "an edit (or a deploy) is the signal to try again"
    );
}

#[test]
fn docker_events_about_apps_with_a_change_in_flight_need_no_pass() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    st.schedule(&plan_of(vec![create("alice/a")]), t0);
    let events = Triggers::of(Trigger::DockerEvent);
    let busy = Some([key("alice/a")].into());
    assert!(st.only_busy_apps_moved(events, busy.clone()));
    let other = Some([key("alice/a"), key("bob/b")].into());
    assert!(
        !st.only_busy_apps_moved(events, other),
        "bob/b moved on its own"
    );
    assert!(
        !st.only_busy_apps_moved(events, None),
        "an event about no known app"
    );
    let mut with_file = events;
    with_file.add(Trigger::File);
    assert!(!st.only_busy_apps_moved(with_file, busy));
}

#[test]
fn a_spec_whose_image_failed_to_build_shows_build_failed_after_a_restart_too() {
    let (t0, mut st) = (Instant::now(), LoopState::new(4));
    let d = desired(vec![app("alice/a", RUN)]);
    let h = hash_of(&d, "alice/a");
    let p = plan(&d, &[], PlanOptions::default());
    st.schedule(&p, t0);
    let refusal = Refusal {
        hash: h.clone(),
        reason: "build failed (exit status: 1)".into(),
        health: None,
        build: true,
    };
    let failed = Failure::RolledBack(refusal);
    assert_eq!(
        st.finished(&p.changes[0], Err(failed), t0),
        Outcome::Refused
    );
    st.settle_refusals(&d);
    let opts = PlanOptions {
        refused: Some(st.refused()),
        ..Default::default()
    };
    let again = plan(&d, &[], opts);
    let board = st.status(&d, &[], &again, t0, SystemTime::now());
    let s = &board[&key("alice/a")];
    assert_eq!(s.phase, Phase::BuildFailed);
    let shown = s.last_error.as_deref().unwrap();
    assert!(shown.contains("not built: build failed"), "{shown}");
    let restored = Refusal::from_shown(&h, shown);
    assert!(restored.build && restored.reason == "build failed (exit status: 1)");
    assert_eq!(restored.phase(), Phase::BuildFailed);
}
