//! Rollouts in the plan (docs/guides/deploys-and-rollback.md): the strategy an app's change takes, what is kept after a
//! rollout was interrupted at each step, and a refused spec.

use super::tests::only_action;
use super::*;
use crate::model::fixtures::*;

const DOMAIN_APP: &str = "template = \"web-v1\"\ndomain = \"shop.example.test\"";

fn next_of(mut c: Observed) -> Observed {
    c.next = true;
    c.name.push_str("_next");
    c
}

/// A running `_next` container of alice/a with the spec `d` wants.
fn running_next(d: &DesiredState, id: &str) -> Observed {
    next_of(wanted_container(d, "alice/a", id, ContainerState::Running))
}

#[test]
fn the_strategy_follows_what_the_app_needs() {
    let cases = [
        (DOMAIN_APP.to_string(), Strategy::StartFirst),
        (
            format!("{DOMAIN_APP}\nhost_port = 8080"),
            Strategy::StopFirst,
        ),
        (RUN.to_string(), Strategy::StopFirst),
        (
            format!("{DOMAIN_APP}\nstate = \"stopped\""),
            Strategy::Replace,
        ),
    ];
    for (manifest, want) in cases {
        let d = desired(vec![app("alice/a", &manifest)]);
        let old = container("alice/a", "1", "old", ContainerState::Running);
        let p = plan(&d, &[old], PlanOptions::default());
        match only_action(&p) {
            Action::Recreate { strategy, .. } => assert_eq!(*strategy, want, "{manifest}"),
            other => panic!("{other:?}"),
        }
        assert!(p.to_string().contains(want.as_str()));
    }
}

#[test]
fn an_interrupted_rollout_keeps_the_running_old_container_and_rolls_again() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let old = container("alice/a", "old", "old-hash", ContainerState::Running);
    let half_made = running_next(&d, "new");
    let p = plan(&d, &[half_made, old], PlanOptions::default());
    let ids: Vec<&str> = p.changes[0]
        .duplicates
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["new"], "the unproven new container goes");
    match only_action(&p) {
        Action::Recreate { old, strategy, .. } => {
            assert_eq!(old.id, "old");
            assert_eq!(*strategy, Strategy::StartFirst);
        }
        other => panic!("{other:?}"),
    }
}

fn old_of(mut c: Observed) -> Observed {
    c.old = true;
    c.name.push_str("_old");
    c
}

#[test]
fn past_the_switch_the_new_container_is_kept_whatever_the_old_ones_state_or_spec() {
    // Right after its switch a start-first rollout renames the old container `_old` and the
    // new one to the app's name: a crash anywhere after that keeps the new one.
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let new = wanted_container(&d, "alice/a", "new", ContainerState::Running);
    let h = hash_of(&d, "alice/a");
    let states = [ContainerState::Running, ContainerState::Exited(Some(143))];
    for state in states {
        // The manifest may even have gone back to the old spec meanwhile.
        for old_hash in ["old-hash", h.as_str()] {
            let old = old_of(container("alice/a", "old", old_hash, state.clone()));
            for new in [next_of(new.clone()), new.clone()] {
                let p = plan(&d, &[old.clone(), new.clone()], PlanOptions::default());
                let dups: Vec<&str> = p.changes[0]
                    .duplicates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect();
                assert_eq!(dups, ["old"], "{p:?}");
                let action = p.changes[0].action.as_ref();
                match new.next {
                    true => assert!(
                        matches!(action, Some(Action::Settle { container }) if container.id == "new")
                    ),
                    false => assert_eq!(action, None, "{p:?}"),
                }
            }
        }
    }
}

#[test]
fn an_old_container_left_alone_is_settled_under_the_apps_name() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let alone = old_of(wanted_container(
        &d,
        "alice/a",
        "o",
        ContainerState::Running,
    ));
    let p = plan(&d, &[alone], PlanOptions::default());
    assert!(matches!(only_action(&p), Action::Settle { container } if container.id == "o"));
}

#[test]
fn before_the_switch_a_stopped_old_container_is_kept_over_an_unchecked_new_one() {
    // The old container was not running when a start-first rollout began (crashed, stopped
    // by hand): berth killed during the new one's check must not settle the new one.
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let stopped_old = container(
        "alice/a",
        "old",
        "old-hash",
        ContainerState::Exited(Some(1)),
    );
    let unchecked = running_next(&d, "new");
    let p = plan(&d, &[stopped_old, unchecked], PlanOptions::default());
    assert_eq!(p.changes[0].duplicates[0].id, "new");
    assert!(matches!(only_action(&p), Action::Recreate { old, .. } if old.id == "old"));
}

#[test]
fn a_stop_first_rollout_interrupted_after_the_old_container_stopped_keeps_the_old_one() {
    // Stop-first stops the old container before the new one's check: the new one may not
    // have passed it, so the old one is kept (and rolled again) and the new one goes.
    let d = desired(vec![app(
        "alice/a",
        &format!("{DOMAIN_APP}\nhost_port = 8080"),
    )]);
    let stopped_old = container(
        "alice/a",
        "old",
        "old-hash",
        ContainerState::Exited(Some(0)),
    );
    let new = running_next(&d, "new");
    let p = plan(&d, &[stopped_old, new.clone()], PlanOptions::default());
    assert_eq!(p.changes[0].duplicates[0].id, "new");
    assert!(matches!(only_action(&p), Action::Recreate { old, .. } if old.id == "old"));
    // Alone, it passed its check (the old one goes only after that): settled.
    let alone = plan(&d, &[new], PlanOptions::default());
    assert!(matches!(only_action(&alone), Action::Settle { .. }));
    assert!(alone.to_string().contains("interrupted rollout"));
}

#[test]
fn a_next_container_is_settled_before_another_spec_rolls() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let unsettled = next_of(container(
        "alice/a",
        "n",
        "old-hash",
        ContainerState::Running,
    ));
    let p = plan(&d, &[unsettled], PlanOptions::default());
    assert!(matches!(only_action(&p), Action::Settle { container } if container.id == "n"));
}

#[test]
fn a_refused_apps_old_container_is_started_again_when_it_stops() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let h = hash_of(&d, "alice/a");
    let refused = BTreeMap::from([(
        key("alice/a"),
        Refusal {
            hash: h,
            reason: "exited with code 3".into(),
            health: None,
            build: false,
        },
    )]);
    let opts = PlanOptions {
        refused: Some(&refused),
        ..Default::default()
    };
    let died = container(
        "alice/a",
        "old",
        "old-hash",
        ContainerState::Exited(Some(137)),
    );
    let p = plan(&d, &[died], opts);
    assert!(matches!(only_action(&p), Action::Start { container, .. } if container.id == "old"));
    assert_eq!(p.refused.len(), 1, "still shown as refused");
}

#[test]
fn a_refused_spec_is_not_tried_again_until_the_manifest_changes() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let h = hash_of(&d, "alice/a");
    let old = container("alice/a", "old", "old-hash", ContainerState::Running);
    let refusal = Refusal {
        hash: h.clone(),
        reason: "exited with code 3".into(),
        health: Some(None),
        build: false,
    };
    let refused = BTreeMap::from([(key("alice/a"), refusal.clone())]);
    let opts = PlanOptions {
        refused: Some(&refused),
        ..Default::default()
    };
    let p = plan(&d, std::slice::from_ref(&old), opts);
    assert!(p.is_noop(), "{p:?}");
    assert_eq!(p.refused, vec![(key("alice/a"), refusal)]);
    let shown = p.to_string();
    assert!(
        shown.contains("rollout-failed") && shown.contains("exited with code 3"),
        "{shown}"
    );
    let edited = desired(vec![app(
        "alice/a",
        &format!("{DOMAIN_APP}\nrestart = \"2\""),
    )]);
    let p = plan(&edited, &[old], opts);
    assert!(
        matches!(only_action(&p), Action::Recreate { .. }),
        "a new spec rolls"
    );
}

#[test]
fn a_spec_whose_image_failed_to_build_is_not_created_again_until_it_changes() {
    let d = desired(vec![app("alice/a", DOMAIN_APP)]);
    let h = hash_of(&d, "alice/a");
    let rollout = Refusal {
        hash: h.clone(),
        reason: "exited with code 3".into(),
        health: None,
        build: false,
    };
    let build = Refusal {
        build: true,
        reason: "build failed (exit status: 1)".into(),
        ..rollout.clone()
    };
    let with = |r: &Refusal| BTreeMap::from([(key("alice/a"), r.clone())]);
    let (by_build, by_rollout) = (with(&build), with(&rollout));
    let opts = |refused| PlanOptions {
        refused: Some(refused),
        ..Default::default()
    };
    let p = plan(&d, &[], opts(&by_build));
    assert!(p.is_noop(), "the failed build is tried again: {p:?}");
    assert!(p.to_string().contains("build-failed"), "{p}");
    let p = plan(&d, &[], opts(&by_rollout));
    assert!(
        matches!(only_action(&p), Action::Create { .. }),
        "a rollout refusal never held a first create"
    );
    let edited = desired(vec![app(
        "alice/a",
        &format!("{DOMAIN_APP}\nrestart = \"2\""),
    )]);
    let p = plan(&edited, &[], opts(&by_build));
    assert!(
        matches!(only_action(&p), Action::Create { .. }),
        "a new spec is built"
    );
}
