//! One test per row of docs/reference/reconcile-rules.md's table, plus the guard and held apps.

use super::*;
use crate::model::fixtures::*;

pub(super) fn only_action(p: &Plan) -> &Action {
    assert_eq!(p.changes.len(), 1, "{p:?}");
    p.changes[0].action.as_ref().unwrap()
}

#[test]
fn no_container_creates_and_starts_when_running() {
    let d = desired(vec![app("alice/a", RUN), app("alice/b", STOP)]);
    let p = plan(&d, &[], PlanOptions::default());
    assert_eq!(p.changes[0].action, Some(Action::Create { start: true }));
    assert_eq!(p.changes[1].action, Some(Action::Create { start: false }));
}

#[test]
fn hash_difference_recreates_and_names_the_field() {
    let d = desired(vec![app(
        "alice/a",
        "template = \"web-v1\"\n[env]\nX = \"2\"",
    )]);
    let (_, old_entry) = app("alice/a", "template = \"web-v1\"\n[env]\nX = \"1\"");
    let Entry::Valid(old) = old_entry else {
        unreachable!()
    };
    let mut c = container("alice/a", "1", &old.hash, ContainerState::Running);
    c.spec = Some(old.spec.clone());
    let p = plan(&d, &[c], PlanOptions::default());
    match only_action(&p) {
        Action::Recreate {
            start: true,
            changed,
            old,
            strategy,
        } => {
            assert_eq!(*strategy, Strategy::StopFirst);
            assert_eq!(changed, &["env.X changed"]);
            assert_eq!(old.id, "1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_hash_not_running_starts_only_if_desired_running() {
    let d = desired(vec![app("alice/a", RUN), app("alice/b", STOP)]);
    let obs = [
        container(
            "alice/a",
            "1",
            &hash_of(&d, "alice/a"),
            ContainerState::Exited(Some(1)),
        ),
        container(
            "alice/b",
            "2",
            &hash_of(&d, "alice/b"),
            ContainerState::Exited(Some(0)),
        ),
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    assert!(matches!(
        only_action(&p),
        Action::Start {
            exited: Some(Some(1)),
            ..
        }
    ));
}

#[test]
fn same_hash_running_but_stopped_in_manifest_stops() {
    let d = desired(vec![app("alice/a", STOP)]);
    let obs = [container(
        "alice/a",
        "1",
        &hash_of(&d, "alice/a"),
        ContainerState::Running,
    )];
    assert!(matches!(
        only_action(&plan(&d, &obs, PlanOptions::default())),
        Action::Stop { .. }
    ));
}

#[test]
fn matching_state_is_a_noop() {
    let d = desired(vec![app("alice/a", RUN), app("alice/b", STOP)]);
    let obs = [
        container(
            "alice/a",
            "1",
            &hash_of(&d, "alice/a"),
            ContainerState::Running,
        ),
        container(
            "alice/b",
            "2",
            &hash_of(&d, "alice/b"),
            ContainerState::Exited(Some(0)),
        ),
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    assert!(p.is_noop(), "{p:?}");
    assert!(p.to_string().contains("no changes"));
}

#[test]
fn duplicates_keep_the_matching_running_one() {
    let d = desired(vec![app("alice/a", RUN)]);
    let h = hash_of(&d, "alice/a");
    let mut newer_wrong = container("alice/a", "3", "other", ContainerState::Running);
    newer_wrong.created = 99;
    let obs = [
        container("alice/a", "1", &h, ContainerState::Exited(Some(0))),
        container("alice/a", "2", &h, ContainerState::Running),
        newer_wrong,
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    assert_eq!(p.changes.len(), 1);
    let mut ids: Vec<&str> = p.changes[0]
        .duplicates
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["1", "3"],
        "the running one with the matching hash is kept"
    );
    assert_eq!(p.changes[0].action, None, "the kept one already matches");
}

#[test]
fn orphan_is_removed() {
    let d = desired(vec![]);
    let obs = [container("bob/old", "9", "h", ContainerState::Running)];
    let p = plan(&d, &obs, PlanOptions::default());
    match only_action(&p) {
        Action::Remove {
            containers,
            template,
        } => {
            assert_eq!(containers[0].id, "9");
            assert_eq!(template.as_deref(), Some("web-v1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn held_apps_get_no_action_even_without_a_valid_manifest() {
    let mut d = desired(vec![]);
    d.apps
        .insert(key("alice/bad"), Entry::Frozen("broken".into()));
    d.apps
        .insert(key("alice/big"), Entry::OverQuota("quota".into()));
    d.frozen_users.insert("eve".into(), "unreadable".into());
    let obs = [
        container("alice/bad", "1", "h", ContainerState::Running),
        container("alice/big", "2", "h", ContainerState::Running),
        container("eve/x", "3", "h", ContainerState::Running),
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    assert!(p.is_noop(), "{p:?}");
    assert_eq!(p.held.len(), 3);
}

#[test]
fn mass_removal_guard_withholds_every_removal() {
    let d = desired(vec![]);
    let obs: Vec<Observed> = (0..4)
        .map(|i| {
            container(
                &format!("bob/a{i}"),
                &i.to_string(),
                "h",
                ContainerState::Running,
            )
        })
        .collect();
    let p = plan(&d, &obs, PlanOptions::default());
    assert!(p.is_noop());
    assert_eq!(p.prune_blocked.len(), 4);
    assert!(p.to_string().contains("prune blocked"));
    let p = plan(
        &d,
        &obs,
        PlanOptions {
            allow_mass_prune: true,
            ..Default::default()
        },
    );
    assert_eq!(p.changes.len(), 4);
    assert!(p.prune_blocked.is_empty());
}

#[test]
fn guard_rule_matches_the_spec() {
    assert!(!prune_is_blocked(3, 3, None), "3 is not more than 3");
    assert!(prune_is_blocked(4, 4, None));
    assert!(
        !prune_is_blocked(4, 10, None),
        "4 of 10 is not more than half"
    );
    assert!(prune_is_blocked(6, 10, None));
    assert!(prune_is_blocked(2, 100, Some(1)));
    assert!(!prune_is_blocked(1, 100, Some(1)));
}

#[test]
fn plan_is_deterministic_and_printable() {
    let d = desired(vec![app("bob/b", RUN), app("alice/a", RUN)]);
    let obs = [container("carol/z", "1", "h", ContainerState::Exited(None))];
    let a = plan(&d, &obs, PlanOptions::default());
    let b = plan(&d, &obs, PlanOptions::default());
    assert_eq!(a, b);
    let keys: Vec<String> = a.changes.iter().map(|c| c.key.to_string()).collect();
    assert_eq!(keys, ["alice/a", "bob/b", "carol/z"]);
    let text = a.to_string();
    assert!(
        text.contains("create and start") && text.contains("no manifest"),
        "{text}"
    );
}

#[test]
fn removals_asked_through_the_api_are_neither_held_nor_counted_by_the_guard() {
    let d = desired(vec![]);
    let obs: Vec<Observed> = ["alice/a", "alice/b", "alice/c", "alice/d", "alice/e"]
        .iter()
        .enumerate()
        .map(|(i, k)| container(k, &i.to_string(), "h", ContainerState::Running))
        .collect();
    let everything = plan(&d, &obs, PlanOptions::default());
    assert_eq!(
        everything.prune_blocked.len(),
        5,
        "five vanished manifests are held"
    );
    let asked: BTreeSet<AppKey> = ["alice/a", "alice/b", "alice/c"].map(key).into();
    let opts = PlanOptions {
        asked: Some(&asked),
        ..Default::default()
    };
    let p = plan(&d, &obs, opts);
    let removed: Vec<String> = p.changes.iter().map(|c| c.key.to_string()).collect();
    assert_eq!(
        removed,
        ["alice/a", "alice/b", "alice/c", "alice/d", "alice/e"],
        "two unasked are under the guard's limit"
    );
    let all: BTreeSet<AppKey> = obs.iter().map(|o| o.key.clone()).collect();
    let mut obs9 = obs.clone();
    for k in ["bob/f", "bob/g", "bob/h", "bob/i", "bob/j", "bob/k"] {
        obs9.push(container(k, k, "h", ContainerState::Running));
    }
    let p = plan(
        &d,
        &obs9,
        PlanOptions {
            asked: Some(&all),
            ..Default::default()
        },
    );
    assert_eq!(p.changes.len(), 5, "the asked ones go");
    assert_eq!(
        p.prune_blocked.len(),
        6,
        "the six vanished without asking are held"
    );
}

#[test]
fn a_renamed_app_takes_the_old_names_containers_over_before_it_gets_its_own() {
    let renamed = "renamed_from = \"old\"\ntemplate = \"web-v1\"";
    let d = desired(vec![app("alice/new", renamed), app("alice/other", RUN)]);
    let obs = [
        container("alice/old", "1", "whatever", ContainerState::Running),
        container(
            "alice/other",
            "2",
            &hash_of(&d, "alice/other"),
            ContainerState::Running,
        ),
    ];
    let p = plan(&d, &obs, PlanOptions::default());
    match only_action(&p) {
        Action::Rename { from, containers } => {
            assert_eq!(from.to_string(), "alice/old");
            assert_eq!(
                containers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                ["1"]
            );
        }
        other => panic!("the old container must be taken over, not removed: {other:?}"),
    }
    assert!(p.prune_blocked.is_empty());
    // Nothing of the old name left: the takeover is still planned (its workspace and
    // volumes are not in view), and it is never a create.
    let p = plan(&d, &obs[1..], PlanOptions::default());
    assert!(matches!(only_action(&p), Action::Rename { containers, .. } if containers.is_empty()));
}
