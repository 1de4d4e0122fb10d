//! Unit tests of the isolation rules' plan: what `iptables -S` shows in, commands out.

use super::*;

const CHAIN: &str = "BERTH-main";

/// A filter table with Docker's chains and whatever `extra` lines.
fn listing(extra: &[&str]) -> String {
    let mut lines = vec![
        "-P INPUT ACCEPT",
        "-P FORWARD DROP",
        "-N DOCKER",
        "-N DOCKER-USER",
        "-A FORWARD -j DOCKER-USER",
        "-A DOCKER-USER -j RETURN",
    ];
    lines.extend_from_slice(extra);
    lines.join("\n")
}

fn set(bridges: &[&str]) -> BTreeSet<String> {
    bridges.iter().map(|b| b.to_string()).collect()
}

fn shown(steps: Vec<Vec<String>>) -> Vec<String> {
    steps.into_iter().map(|s| s.join(" ")).collect()
}

#[test]
fn a_first_network_makes_the_chain_its_rule_and_the_jump() {
    let steps = plan_steps(&listing(&[]), CHAIN, &set(&["br-aaa"])).unwrap();
    assert_eq!(
        shown(steps),
        [
            "-N BERTH-main",
            "-A BERTH-main -i br-aaa ! -o br-aaa -j DROP",
            "-I DOCKER-USER 1 -o br-+ -j BERTH-main",
        ]
    );
}

#[test]
fn rules_in_line_need_nothing_and_a_change_touches_only_what_differs() {
    let now = listing(&[
        "-N BERTH-main",
        "-A DOCKER-USER -o br-+ -j BERTH-main",
        "-A BERTH-main -i br-aaa ! -o br-aaa -j DROP",
        "-A BERTH-main -i br-bbb ! -o br-bbb -j DROP",
    ]);
    let same = plan_steps(&now, CHAIN, &set(&["br-aaa", "br-bbb"])).unwrap();
    assert!(same.is_empty(), "{same:?}");
    let changed = plan_steps(&now, CHAIN, &set(&["br-bbb", "br-ccc"])).unwrap();
    assert_eq!(
        shown(changed),
        [
            "-D BERTH-main -i br-aaa ! -o br-aaa -j DROP",
            "-A BERTH-main -i br-ccc ! -o br-ccc -j DROP",
        ]
    );
}

#[test]
fn a_rule_or_jump_deleted_by_hand_is_put_back_and_a_second_jump_removed() {
    let lost = listing(&["-N BERTH-main"]);
    assert_eq!(
        shown(plan_steps(&lost, CHAIN, &set(&["br-aaa"])).unwrap()),
        [
            "-A BERTH-main -i br-aaa ! -o br-aaa -j DROP",
            "-I DOCKER-USER 1 -o br-+ -j BERTH-main",
        ]
    );
    let twice = listing(&[
        "-N BERTH-main",
        "-A DOCKER-USER -o br-+ -j BERTH-main",
        "-A DOCKER-USER -o br-+ -j BERTH-main",
        "-A BERTH-main -i br-aaa ! -o br-aaa -j DROP",
    ]);
    assert_eq!(
        shown(plan_steps(&twice, CHAIN, &set(&["br-aaa"])).unwrap()),
        ["-D DOCKER-USER -o br-+ -j BERTH-main"]
    );
}

#[test]
fn the_last_network_gone_removes_the_jump_and_the_chain_and_nothing_else() {
    let now = listing(&[
        "-N BERTH-main",
        "-N BERTH-other",
        "-A DOCKER-USER -o br-+ -j BERTH-other",
        "-A DOCKER-USER -o br-+ -j BERTH-main",
        "-A BERTH-main -i br-aaa ! -o br-aaa -j DROP",
        "-A BERTH-other -i br-zzz ! -o br-zzz -j DROP",
    ]);
    assert_eq!(
        shown(plan_steps(&now, CHAIN, &BTreeSet::new()).unwrap()),
        [
            "-D DOCKER-USER -o br-+ -j BERTH-main",
            "-F BERTH-main",
            "-X BERTH-main",
        ]
    );
    assert!(plan_steps("", CHAIN, &BTreeSet::new()).unwrap().is_empty());
}

#[test]
fn another_instances_chain_is_never_read_as_ours() {
    let now = listing(&[
        "-N BERTH-mainx",
        "-A BERTH-mainx -i br-zzz ! -o br-zzz -j DROP",
    ]);
    let steps = shown(plan_steps(&now, CHAIN, &set(&["br-aaa"])).unwrap());
    assert!(steps.iter().all(|s| !s.contains("mainx")), "{steps:?}");
    assert_eq!(steps[0], "-N BERTH-main");
}

#[test]
fn without_docker_user_berth_says_so_rather_than_run_unisolated() {
    let err = plan_steps("-P FORWARD DROP", CHAIN, &set(&["br-aaa"])).unwrap_err();
    assert!(matches!(err, IsolationError::NoDockerUser), "{err}");
}

#[test]
fn chain_names_fit_iptables_and_stay_one_per_instance() {
    assert_eq!(chain_name("main"), "BERTH-main");
    let long = "a".repeat(22);
    assert_eq!(chain_name(&long), format!("BERTH-{long}"));
    let (a, b) = (
        chain_name(&"b".repeat(30)),
        chain_name(&format!("{}c", "b".repeat(29))),
    );
    assert!(a.len() <= MAX_CHAIN && b.len() <= MAX_CHAIN, "{a} {b}");
    assert_ne!(a, b);
    assert_eq!(bridge_name("0123456789abcdef"), "br-0123456789ab");
}
