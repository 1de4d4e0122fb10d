//! Policy parsing, per-user overrides and each rule with its code.

use super::*;
use crate::model::config::Config;

fn config(toml: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("berth.toml"), toml).unwrap();
    Config::load(None, Some(dir.path())).map_err(|e| e.to_string())
}

fn spec(
    host_port: Option<u16>,
    host_ip: &str,
    memory: u64,
    cpus: i64,
    domain: Option<&str>,
) -> ContainerSpec {
    let mut s: ContainerSpec = serde_json::from_value(serde_json::json!({
        "template": "t", "image": "i", "command": [], "workdir": null, "env": {}, "mounts": [],
        "memory": memory, "nano_cpus": cpus, "pids_limit": 256, "port": 3000,
        "host_port": host_port, "host_ip": host_ip, "domain": domain, "restart": null,
        "template_files": {}, "init": true, "security_opt": [], "cap_drop": [],
        "log_max_size": "10m", "log_max_file": 3
    }))
    .unwrap();
    s.host_ip = host_ip.into();
    s
}

fn code(rules: &Rules, s: &ContainerSpec) -> Option<&'static str> {
    let key = AppKey::new("alice", "web").unwrap();
    let api = ReservedPort {
        port: 7070,
        holder: "berth's own API port (listen)".into(),
    };
    check_app(&key, s, rules, &[api], Publishing::Confined)
        .err()
        .map(|v| v.code)
}

const MB: u64 = 1 << 20;

#[test]
fn defaults_follow_the_spec() {
    let r = Rules::default();
    let ok = spec(Some(8080), "127.0.0.1", 256 * MB, 500_000_000, None);
    assert_eq!(code(&r, &ok), None);
    let cases = [
        (
            spec(Some(80), "127.0.0.1", MB * 64, 1, None),
            "host_port_not_allowed",
        ),
        (
            spec(Some(8080), "0.0.0.0", MB * 64, 1, None),
            "host_ip_not_allowed",
        ),
        (
            spec(Some(7070), "127.0.0.1", MB * 64, 1, None),
            "port_reserved",
        ),
        (
            spec(None, "127.0.0.1", 2048 * MB, 1, None),
            "memory_over_limit",
        ),
        (
            spec(None, "127.0.0.1", 64 * MB, 2_000_000_000, None),
            "cpus_over_limit",
        ),
        (
            spec(None, "127.0.0.1", 64 * MB, 1, Some("a.example.com")),
            "domain_not_allowed",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(code(&r, &s), Some(want), "{s:?}");
    }
}

#[test]
fn user_tables_override_single_rules() {
    let c = config(
        "[policy]\nhost_ports = \"8000-8999\"\ndomains = [\"*.{userid}.apps.test\"]\n\
         [policy.users.alice]\nhost_ports = \"none\"\nmax_memory = \"2g\"\n",
    )
    .unwrap();
    let (alice, bob) = (c.policy.rules("alice"), c.policy.rules("bob"));
    assert_eq!(alice.host_ports, PortRange(None));
    assert_eq!(alice.max_memory, 2 << 30);
    assert_eq!(
        alice.domains, bob.domains,
        "unset rules fall back to [policy]"
    );
    assert_eq!(bob.host_ports, PortRange(Some((8000, 8999))));
    assert_eq!(bob.max_memory, 1 << 30);
}

#[test]
fn domain_patterns_take_one_label_and_the_users_own_id() {
    let p = DomainPattern::parse("*.{userid}.apps.test").unwrap();
    assert!(p.allows("alice", "web.alice.apps.test"));
    assert!(!p.allows("alice", "web.bob.apps.test"));
    assert!(!p.allows("alice", "a.b.alice.apps.test"));
    assert!(!p.allows("alice", "alice.apps.test"));
    let exact = DomainPattern::parse("shop.example.com").unwrap();
    assert!(exact.allows("x", "shop.example.com") && !exact.allows("x", "a.shop.example.com"));
}

#[test]
fn bad_policy_tables_name_the_key() {
    for (toml, want) in [
        ("[policy]\nhost_ports = \"9-1\"", "host_ports"),
        ("[policy]\nhost_ports = \"0-100\"", "host_ports"),
        ("[policy]\nhost_ips = [\"localhost\"]", "2:13: invalid IP"),
        ("[policy]\nmax_cpus = -1", "cpus"),
        ("[policy]\ndomains = [\"Evil.COM\"]", "domain pattern"),
        (
            "[policy]\nnetwork = \"host\"",
            "expected `per-user` or `bridge`",
        ),
        ("[policy]\nflavour = 1", "flavour"),
        (
            "[policy]\nreserved_ports = [22, 70000]",
            "berth.toml:2:18: reserved_ports: 70000 is not a port (1-65535)",
        ),
        (
            "[policy]\nreserved_ports = [0]",
            "reserved_ports: 0 is not a port",
        ),
        (
            "[policy]\nreserved_ports = [-5]",
            "reserved_ports: -5 is not a port",
        ),
        (
            "[policy.users.bob]\nreserved_ports = [9000]",
            "[policy.users.bob] reserved_ports: only [policy] may reserve ports",
        ),
        (
            "[policy.users.Bad]\nmax_memory = \"1g\"",
            "policy.users.Bad",
        ),
        (
            "[policy.users.a.users.b]\nmax_memory = \"1g\"",
            "users of its own",
        ),
    ] {
        let e = config(toml).unwrap_err();
        assert!(e.contains(want), "{toml}: {e}");
    }
    assert!(config("[policy]\nhost_ports = \"none\"\nnetwork = \"bridge\"").is_ok());
}

#[test]
fn ports_berths_neighbours_need_are_refused_naming_the_neighbour() {
    let c = config(
        "listen = \"127.0.0.1:7171\"\n[policy]\nhost_ports = \"1-65535\"\nreserved_ports = [5432, 9100]\n\
         [proxy]\ncaddy_admin = \"http://127.0.0.1:2119\"\nhttp_port = 8080\nhttps_port = 8443\n",
    )
    .unwrap();
    let key = AppKey::new("alice", "web").unwrap();
    let rules = c.policy.rules("alice");
    let reserved = c.reserved_ports();
    for (port, holder) in [
        (7171, "berth's own API port (listen)"),
        (2119, "Caddy's admin API (caddy_admin in [proxy])"),
        (8080, "Caddy's HTTP port (http_port in [proxy])"),
        (8443, "Caddy's HTTPS port (https_port in [proxy])"),
        (5432, "listed in [policy] reserved_ports"),
        (9100, "listed in [policy] reserved_ports"),
    ] {
        let s = spec(Some(port), "127.0.0.1", MB, 1, None);
        let v = check_app(&key, &s, rules, &reserved, Publishing::Confined).expect_err(holder);
        assert_eq!(v.code, "port_reserved", "{port}");
        assert!(v.message.contains(holder), "{port}: {}", v.message);
    }
    let free = spec(Some(8081), "127.0.0.1", MB, 1, None);
    assert_eq!(
        check_app(&key, &free, rules, &reserved, Publishing::Confined),
        Ok(())
    );
    let no_proxy = config("[policy]\nhost_ports = \"1-65535\"\n").unwrap();
    let ports: Vec<u16> = no_proxy.reserved_ports().iter().map(|r| r.port).collect();
    assert_eq!(
        ports,
        [7070],
        "without [proxy] only berth's API port is berth's"
    );
}

/// Swarm publishes a port on every address of its node: a host port must say so and be
/// allowed to, and a domain app runs only with the operator's consent. One engine is as before.
#[test]
fn swarm_refuses_ports_it_cannot_confine_naming_the_rule_and_the_setting() {
    let c = config(
        "runtime = \"swarm\"\nregistry = \"r:5000\"\n[policy]\ndomains = [\"*.example.com\"]\n\
         [policy.users.bob]\nhost_ips = [\"0.0.0.0\"]\n",
    )
    .unwrap();
    let swarm = c.runtime.publishing();
    let check = |user: &str, s: &ContainerSpec, publishing| {
        let key = AppKey::new(user, "web").unwrap();
        check_app(&key, s, c.policy.rules(user), &[], publishing)
    };
    let local = spec(Some(8080), "127.0.0.1", MB, 1, None);
    assert_eq!(check("alice", &local, Publishing::Confined), Ok(()));
    let v = check("alice", &local, swarm).unwrap_err();
    assert_eq!(v.code, "swarm_port_unconfined");
    for said in [
        "host port 8080",
        "every address",
        "host_ip 127.0.0.1",
        "host_ips",
    ] {
        assert!(v.message.contains(said), "{said}: {}", v.message);
    }
    let every = spec(Some(8080), "0.0.0.0", MB, 1, None);
    let v = check("alice", &every, swarm).unwrap_err();
    assert_eq!(v.code, "host_ip_not_allowed", "the policy still decides");
    assert_eq!(check("bob", &every, swarm), Ok(()), "host_ips allows it");

    let site = spec(None, "127.0.0.1", MB, 1, Some("a.example.com"));
    assert_eq!(check("alice", &site, Publishing::Confined), Ok(()));
    let v = check("alice", &site, swarm).unwrap_err();
    assert_eq!(v.code, "swarm_port_unconfined");
    for said in [
        "a.example.com",
        "every address",
        "swarm_publish_domain_ports = true",
    ] {
        assert!(v.message.contains(said), "{said}: {}", v.message);
    }
    let opted = Publishing::EveryAddress { domain_ports: true };
    assert_eq!(check("alice", &site, opted), Ok(()));
    let plain = spec(None, "127.0.0.1", MB, 1, None);
    assert_eq!(check("alice", &plain, swarm), Ok(()), "nothing published");
    let e = config("swarm_publish_domain_ports = true\n").unwrap_err();
    assert!(
        e.contains("berth.toml") && e.contains("runtime = \"swarm\""),
        "{e}"
    );
}
