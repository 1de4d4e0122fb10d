//! What berth puts into Caddy for a pass.

use super::*;
use crate::model::fixtures::{app, container, desired, key, wanted_container};
use crate::model::names::AppKey;
use crate::model::observed::ContainerState;

fn proxy(tls: &str) -> ProxyConfig {
    toml::from_str(&format!(
        "http_port = 8080\nhttps_port = 8443\ntls = \"{tls}\"\n"
    ))
    .unwrap()
}

fn with_domain(k: &str, domain: &str, state: &str) -> (AppKey, Entry) {
    app(
        k,
        &format!("template = \"web-v1\"\ndomain = \"{domain}\"\nstate = \"{state}\"\n"),
    )
}

fn routes(r: &Rendered) -> &Vec<Value> {
    r.servers["berth-main"]["routes"].as_array().unwrap()
}

#[test]
fn a_running_domain_app_is_proxied_to_its_container_and_a_stopped_one_answers_503() {
    let d = desired(vec![
        with_domain("alice/shop", "shop.example.test", "running"),
        with_domain("bob/blog", "blog.example.test", "stopped"),
    ]);
    let running = wanted_container(&d, "alice/shop", "c1", ContainerState::Running);
    let r = render(
        "main",
        &proxy("internal"),
        &d,
        &[running],
        &Pins::new(),
        &Via::new(),
    );
    let routes = routes(&r);
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["match"][0]["host"][0], "blog.example.test");
    assert_eq!(routes[0]["handle"][0]["status_code"], 503);
    assert_eq!(
        routes[1]["handle"][0]["upstreams"][0]["dial"],
        "10.0.0.2:3000"
    );
    let (id, policy) = r.tls_policy.clone().unwrap();
    assert_eq!(id, "berth-main-tls");
    assert_eq!(
        policy["subjects"],
        json!(["blog.example.test", "shop.example.test"])
    );
    assert_eq!(policy["issuers"][0]["module"], "internal");
    assert_eq!(r.servers["berth-main"]["listen"][0], ":8443");
    assert_eq!(
        r.servers["berth-main-http"]["routes"][0]["handle"][0]["status_code"],
        308
    );
    assert_eq!(
        render(
            "main",
            &proxy("internal"),
            &d,
            &[],
            &Pins::new(),
            &Via::new()
        ),
        render(
            "main",
            &proxy("internal"),
            &d,
            &[],
            &Pins::new(),
            &Via::new()
        )
    );
}

#[test]
fn without_tls_one_plain_server_and_without_domains_no_policy() {
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let off = render("main", &proxy("off"), &d, &[], &Pins::new(), &Via::new());
    assert_eq!(off.servers.len(), 1);
    assert_eq!(off.servers["berth-main"]["listen"][0], ":8080");
    assert!(off.tls_policy.is_none());
    let none = render(
        "main",
        &proxy("acme"),
        &desired(vec![]),
        &[],
        &Pins::new(),
        &Via::new(),
    );
    assert!(
        none.tls_policy.is_none(),
        "a policy without subjects would cover every name"
    );
    assert!(routes(&none).is_empty());
}

#[test]
fn a_frozen_apps_running_container_keeps_its_route() {
    let d0 = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let c = wanted_container(&d0, "alice/shop", "c1", ContainerState::Running);
    let frozen = desired(vec![(key("alice/shop"), Entry::Frozen("bad toml".into()))]);
    let r = render(
        "main",
        &proxy("off"),
        &frozen,
        &[c],
        &Pins::new(),
        &Via::new(),
    );
    assert_eq!(
        routes(&r)[0]["handle"][0]["upstreams"][0]["dial"],
        "10.0.0.2:3000"
    );
}

#[test]
fn of_two_running_containers_the_route_goes_to_the_one_the_manifest_wants() {
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let stale = container(
        "alice/shop",
        "old-container",
        "an-old-hash",
        ContainerState::Running,
    );
    let fresh = wanted_container(&d, "alice/shop", "c1", ContainerState::Running);
    let r = render(
        "main",
        &proxy("off"),
        &d,
        &[stale, fresh],
        &Pins::new(),
        &Via::new(),
    );
    assert_eq!(
        routes(&r)[0]["handle"][0]["upstreams"][0]["dial"],
        "10.0.0.2:3000"
    );
}

fn dial(r: &Rendered) -> Value {
    routes(r)[0]["handle"][0]["upstreams"][0]["dial"].clone()
}

#[test]
fn during_a_rollout_the_route_stays_on_the_old_container_until_it_is_pinned_to_the_new() {
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let old = container("alice/shop", "old", "an-old-hash", ContainerState::Running);
    let mut next = wanted_container(&d, "alice/shop", "next-c", ContainerState::Running);
    next.next = true;
    let both = [old.clone(), next.clone()];
    let r = render("main", &proxy("off"), &d, &both, &Pins::new(), &Via::new());
    assert_eq!(
        dial(&r),
        "10.0.0.3:3000",
        "the unproven new container takes no traffic"
    );
    let pins = Pins::from([(key("alice/shop"), vec!["10.9.9.9:3000".to_string()])]);
    let r = render("main", &proxy("off"), &d, &both, &pins, &Via::new());
    assert_eq!(
        dial(&r),
        "10.9.9.9:3000",
        "the rollout's switch wins while it drains"
    );
    let mut stopped = old;
    stopped.state = ContainerState::Exited(Some(0));
    let r = render(
        "main",
        &proxy("off"),
        &d,
        &[stopped.clone()],
        &Pins::new(),
        &Via::new(),
    );
    assert_eq!(routes(&r)[0]["handle"][0]["status_code"], 503);
    let both = [stopped.clone(), next.clone()];
    let r = render("main", &proxy("off"), &d, &both, &Pins::new(), &Via::new());
    assert_eq!(
        routes(&r)[0]["handle"][0]["status_code"],
        503,
        "a new container is unchecked before the switch, even beside a stopped old one"
    );
    let mut retired = stopped;
    retired.old = true;
    for state in [ContainerState::Running, ContainerState::Exited(Some(0))] {
        retired.state = state;
        let both = [retired.clone(), next.clone()];
        let r = render("main", &proxy("off"), &d, &both, &Pins::new(), &Via::new());
        assert_eq!(
            dial(&r),
            "10.0.0.6:3000",
            "past the switch the new one serves on"
        );
    }
    let r = render(
        "main",
        &proxy("off"),
        &d,
        &[next],
        &Pins::new(),
        &Via::new(),
    );
    assert_eq!(
        dial(&r),
        "10.0.0.6:3000",
        "once the old one is gone, the new one serves"
    );
}

#[test]
fn a_service_is_proxied_to_every_live_task_and_one_with_none_answers_503() {
    use crate::model::observed::Tasks;
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let mut service = wanted_container(&d, "alice/shop", "s1", ContainerState::Running);
    service.address = None;
    let dials = vec!["10.0.0.1:30001".to_string(), "10.0.0.2:30002".to_string()];
    service.tasks = Some(Tasks {
        wanted: 2,
        running: 2,
        nodes: vec!["n1".into(), "n2".into()],
        dials: dials.clone(),
    });
    let r = render(
        "main",
        &proxy("off"),
        &d,
        &[service.clone()],
        &Pins::new(),
        &Via::new(),
    );
    let proxy_handler = &routes(&r)[0]["handle"][0];
    let upstreams: Vec<&str> = proxy_handler["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["dial"].as_str().unwrap())
        .collect();
    assert_eq!(upstreams, dials);
    assert_eq!(
        proxy_handler["health_checks"]["passive"]["fail_duration"],
        "2s"
    );
    service.tasks.as_mut().unwrap().dials.clear();
    let r = render(
        "main",
        &proxy("off"),
        &d,
        &[service],
        &Pins::new(),
        &Via::new(),
    );
    assert_eq!(routes(&r)[0]["handle"][0]["status_code"], 503);
}

#[test]
fn with_tls_acme_the_policy_asks_acme_for_exactly_berths_domains() {
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let r = render("main", &proxy("acme"), &d, &[], &Pins::new(), &Via::new());
    let (_, policy) = r.tls_policy.unwrap();
    assert_eq!(policy["subjects"], json!(["shop.example.test"]));
    assert_eq!(policy["issuers"], json!([{"module": "acme"}]));
    let mut with_email = proxy("acme");
    with_email.acme_email = Some("ops@example.test".into());
    let r = render("main", &with_email, &d, &[], &Pins::new(), &Via::new());
    let issuer = &r.tls_policy.unwrap().1["issuers"][0];
    assert_eq!(issuer["email"], "ops@example.test");
}

#[test]
fn an_app_with_a_forwarder_is_routed_to_it_whatever_its_container() {
    let d = desired(vec![with_domain(
        "alice/shop",
        "shop.example.test",
        "running",
    )]);
    let old = wanted_container(&d, "alice/shop", "c1", ContainerState::Running);
    let mut new = old.clone();
    new.address = Some("10.0.0.9".into());
    let via = Via::from([(key("alice/shop"), "127.0.0.1:41000".to_string())]);
    let before = render(
        "main",
        &proxy("off"),
        &d,
        std::slice::from_ref(&old),
        &Pins::new(),
        &via,
    );
    let proxied = &routes(&before)[0]["handle"][0];
    assert_eq!(proxied["upstreams"], json!([{"dial": "127.0.0.1:41000"}]));
    assert_eq!(proxied["transport"]["keep_alive"]["enabled"], false);
    let after = render(
        "main",
        &proxy("off"),
        &d,
        &[new.clone()],
        &Pins::new(),
        &via,
    );
    assert_eq!(before, after, "a new container changes nothing in Caddy");
    let pinned = Pins::from([(key("alice/shop"), vec!["10.0.0.9:3000".to_string()])]);
    assert_eq!(
        upstreams(&d, &[old], &pinned)[&key("alice/shop")],
        vec!["10.0.0.9:3000".to_string()],
        "the forwarder is pointed where the pin says"
    );
    assert_eq!(
        upstreams(&d, &[new], &Pins::new())[&key("alice/shop")],
        vec!["10.0.0.9:3000".to_string()]
    );
}
