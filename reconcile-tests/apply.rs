//! `berth apply` and `berth plan` on healthy input: the container a manifest produces (every
//! label and limit), idempotence (no Docker writes on a converged engine), recreates on a real
//! change only, stop/start, and removal of deleted or hand-removed apps.

use std::time::{Duration, SystemTime};

use bollard::models::RestartPolicyNameEnum;

use crate::support::docker::{action_times, describe, docker_cli};
use crate::support::{free_port, EventLog, TestRoot, MINIMAL};

fn web_manifest(host_port: u16, greeting: &str) -> String {
    format!(
        "template = \"bb-v1\"\ndomain = \"web.example.test\"\nhost_port = {host_port}\n\n\
         [env]\nGREETING = \"{greeting}\"\n"
    )
}

const API: &str = r#"template = "bb-v1"
port = 9090

[resources]
memory = "32m"
cpus = 0.5
"#;

#[tokio::test]
async fn first_apply_creates_containers_with_every_label_and_limit() {
    let root = TestRoot::new("create").await;
    let hp = free_port();
    root.write_manifest("alice", "web", &web_manifest(hp, "hello"));
    root.write_manifest("bob", "api", API);

    let run = root.berth(&["apply"]).await;
    run.expect_code(0).expect_contains("create");

    let web = root
        .container("alice", "web")
        .await
        .expect("alice/web created");
    assert_eq!(
        web.name.as_deref(),
        Some(format!("/{}", root.container_name("alice", "web")).as_str())
    );
    let config = web.config.clone().unwrap();
    let labels = config.labels.clone().unwrap_or_default();
    let want = [
        ("paas.type", "user-app"),
        ("paas.instance", root.instance.as_str()),
        ("paas.userid", "alice"),
        ("paas.appname", "web"),
        ("paas.domain", "web.example.test"),
        ("paas.template", "bb-v1"),
    ];
    for (k, v) in want {
        assert_eq!(
            labels.get(k).map(String::as_str),
            Some(v),
            "label {k}: {labels:#?}"
        );
    }
    let hash = labels.get("paas.spec-hash").expect("paas.spec-hash label");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "paas.spec-hash is not 64 hex chars: {hash:?}"
    );

    assert_eq!(config.image.as_deref(), Some("berth-test-busybox:1"));
    assert_eq!(
        config.cmd,
        Some(vec!["sleep".to_string(), "3600".to_string()])
    );
    assert_eq!(config.working_dir.as_deref(), Some("/"));
    let env = config.env.clone().unwrap_or_default();
    for e in ["PORT=8080", "GREETING=hello"] {
        assert!(env.iter().any(|x| x == e), "env lacks {e}: {env:?}");
    }

    let hc = web.host_config.clone().unwrap();
    assert_eq!(
        hc.memory,
        Some(64 * 1024 * 1024),
        "template default memory 64m"
    );
    assert_eq!(
        hc.nano_cpus,
        Some(250_000_000),
        "template default cpus 0.25"
    );
    assert_eq!(hc.pids_limit, Some(256));
    let secopt = hc.security_opt.clone().unwrap_or_default();
    assert!(
        secopt.iter().any(|s| s.starts_with("no-new-privileges")),
        "SecurityOpt lacks no-new-privileges: {secopt:?}"
    );
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.init, Some(true), "HostConfig.Init");
    let policy = hc.restart_policy.clone().and_then(|p| p.name);
    assert!(
        matches!(
            policy,
            Some(RestartPolicyNameEnum::NO) | Some(RestartPolicyNameEnum::EMPTY) | None
        ),
        "Docker must not restart apps itself: {policy:?}"
    );
    let log = hc.log_config.clone().unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    let log_opts = log.config.unwrap_or_default();
    assert_eq!(log_opts.get("max-size").map(String::as_str), Some("10m"));
    assert_eq!(log_opts.get("max-file").map(String::as_str), Some("3"));
    let bindings = hc.port_bindings.clone().unwrap_or_default();
    let b = bindings
        .get("8080/tcp")
        .cloned()
        .flatten()
        .unwrap_or_default();
    assert_eq!(b.len(), 1, "one binding for 8080/tcp: {bindings:?}");
    assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(b[0].host_port.as_deref(), Some(hp.to_string().as_str()));
    assert!(root.running("alice", "web").await, "alice/web runs");

    let api = root.container("bob", "api").await.expect("bob/api created");
    let hc = api.host_config.unwrap();
    assert_eq!(hc.memory, Some(32 * 1024 * 1024), "manifest memory 32m");
    assert_eq!(hc.nano_cpus, Some(500_000_000), "manifest cpus 0.5");
    let env = api.config.unwrap().env.unwrap_or_default();
    assert!(
        env.iter().any(|x| x == "PORT=9090"),
        "manifest port: {env:?}"
    );
    assert!(root.running("bob", "api").await, "bob/api runs");
    assert_eq!(root.instance_containers().await.len(), 2);
}

#[tokio::test]
async fn second_apply_changes_nothing_and_makes_no_docker_events() {
    let root = TestRoot::new("idem").await;
    root.write_manifest("alice", "web", &web_manifest(free_port(), "hello"));
    root.write_manifest("bob", "api", API);
    let t_start = SystemTime::now();
    let events = EventLog::start(&root.docker, &root.instance, t_start);

    root.berth(&["apply"]).await.expect_code(0);
    let web = root.id("alice", "web").await;
    let api = root.id("bob", "api").await;

    // Docker stamps an event when it acts, before it answers: whatever the first apply
    // did is stamped before t0, whatever the second did before t1.
    let t0 = SystemTime::now();
    root.berth(&["apply"]).await.expect_code(0);
    let t1 = SystemTime::now();
    // A marker after t1 (SIGWINCH, which the app ignores): events arrive in order, so once
    // it is seen, every event stamped before it has been.
    let name = root.container_name("alice", "web");
    let winch = bollard::query_parameters::KillContainerOptionsBuilder::new()
        .signal("SIGWINCH")
        .build();
    root.docker
        .kill_container(&name, Some(winch))
        .await
        .unwrap();
    crate::support::wait_until(Duration::from_secs(10), "the marker's event", || async {
        !action_times(&events.all(), "kill", &name).is_empty()
    })
    .await;

    // The subscription works: it saw the first apply create both containers.
    let first = events.between(t_start, t0);
    for app in [("alice", "web"), ("bob", "api")] {
        let name = root.container_name(app.0, app.1);
        assert_eq!(
            action_times(&first, "create", &name).len(),
            1,
            "first apply creates {name} once: {:?}",
            describe(&first)
        );
    }
    let second = events.between(t0, t1);
    assert!(
        second.is_empty(),
        "a converged apply must not write to Docker: {:?}",
        describe(&second)
    );
    assert_eq!(root.id("alice", "web").await, web);
    assert_eq!(root.id("bob", "api").await, api);
}

#[tokio::test]
async fn env_change_recreates_exactly_that_app_and_plan_names_the_field() {
    let root = TestRoot::new("envchg").await;
    let hp = free_port();
    root.write_manifest("alice", "web", &web_manifest(hp, "old-greeting-value"));
    root.write_manifest("bob", "api", API);
    root.berth(&["apply"]).await.expect_code(0);
    let web = root.id("alice", "web").await;
    let api = root.id("bob", "api").await;

    root.write_manifest("alice", "web", &web_manifest(hp, "new-greeting-value"));
    let plan = root.berth(&["plan"]).await;
    plan.expect_code(0)
        .expect_contains("recreate")
        .expect_contains("env.GREETING changed");
    assert!(
        !plan.contains("new-greeting-value") && !plan.contains("old-greeting-value"),
        "plan must name env fields, not print their values\n{plan}"
    );
    assert_eq!(root.id("alice", "web").await, web, "plan changed nothing");

    root.berth(&["apply"]).await.expect_code(0);
    let new_web = root.id("alice", "web").await;
    assert_ne!(new_web, web, "alice/web was recreated");
    assert_eq!(root.id("bob", "api").await, api, "bob/api was left alone");
    assert!(root.running("alice", "web").await);
    let env = root
        .container("alice", "web")
        .await
        .unwrap()
        .config
        .unwrap()
        .env
        .unwrap();
    assert!(
        env.iter().any(|e| e == "GREETING=new-greeting-value"),
        "{env:?}"
    );
    assert_eq!(
        root.instance_containers().await.len(),
        2,
        "the old container is gone"
    );
}

#[tokio::test]
async fn formatting_only_edit_recreates_nothing() {
    let root = TestRoot::new("fmt").await;
    root.write_manifest(
        "alice",
        "web",
        "template = \"bb-v1\"\nport = 9000\n\n[env]\nA = \"1\"\nB = \"2\"\n\n[resources]\nmemory = \"48m\"\ncpus = 0.5\n",
    );
    root.berth(&["apply"]).await.expect_code(0);
    let id = root.id("alice", "web").await;

    // Same values: comments, blank lines, other key order, an inline table, spacing, quotes.
    root.write_manifest(
        "alice",
        "web",
        "# the web app\nport=9000\n   template =   'bb-v1'\nenv = { B = \"2\", A = \"1\" }\n\n\
         [resources]   # limits\ncpus   = 0.5   # half a core\nmemory = \"48m\"\n",
    );
    // `--root` after the subcommand is accepted too.
    let plan =
        crate::support::run_berth(vec!["plan".into(), "--root".into(), root.path().into()]).await;
    plan.expect_code(0).expect_contains("no changes");
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(root.id("alice", "web").await, id, "nothing was recreated");
    assert!(root.running("alice", "web").await);
}

#[tokio::test]
async fn container_removed_by_hand_comes_back_on_next_apply() {
    let root = TestRoot::new("handrm").await;
    root.write_manifest("alice", "web", crate::support::MINIMAL);
    root.write_manifest("bob", "api", API);
    root.berth(&["apply"]).await.expect_code(0);
    let old = root.id("alice", "web").await;
    let api = root.id("bob", "api").await;

    docker_cli(&["rm", "-f", &root.container_name("alice", "web")]);
    assert!(root.container("alice", "web").await.is_none());

    root.berth(&["apply"]).await.expect_code(0);
    let new = root.id("alice", "web").await;
    assert_ne!(new, old);
    assert!(root.running("alice", "web").await, "alice/web runs again");
    assert_eq!(root.id("bob", "api").await, api, "bob/api untouched");
}

#[tokio::test]
async fn stopped_state_stops_the_container_and_running_starts_it_again() {
    let root = TestRoot::new("stop").await;
    root.write_manifest("alice", "web", crate::support::MINIMAL);
    root.berth(&["apply"]).await.expect_code(0);
    let id = root.id("alice", "web").await;
    assert!(root.running("alice", "web").await);

    root.write_manifest(
        "alice",
        "web",
        "template = \"bb-v1\"\nstate = \"stopped\"\n",
    );
    root.berth(&["apply"]).await.expect_code(0);
    let c = root
        .container("alice", "web")
        .await
        .expect("a stopped app keeps its container");
    assert!(
        !c.state.unwrap().running.unwrap_or(false),
        "alice/web is stopped"
    );
    assert_eq!(
        c.id.as_deref(),
        Some(id.as_str()),
        "state is not a spec change: no recreate"
    );

    root.write_manifest(
        "alice",
        "web",
        "template = \"bb-v1\"\nstate = \"running\"\n",
    );
    root.berth(&["apply"]).await.expect_code(0);
    assert!(root.running("alice", "web").await, "alice/web runs again");
    assert_eq!(root.id("alice", "web").await, id, "started, not recreated");
}

#[tokio::test]
async fn deleted_manifest_removes_its_container_only() {
    let root = TestRoot::new("delete").await;
    root.write_manifest("alice", "web", crate::support::MINIMAL);
    root.write_manifest("bob", "api", API);
    root.berth(&["apply"]).await.expect_code(0);
    let api = root.id("bob", "api").await;

    root.remove_manifest("alice", "web");
    let plan = root.berth(&["plan"]).await;
    plan.expect_code(0).expect_contains("remove");
    assert!(
        root.container("alice", "web").await.is_some(),
        "plan removed nothing"
    );

    root.berth(&["apply"]).await.expect_code(0);
    assert!(
        root.container("alice", "web").await.is_none(),
        "alice/web removed"
    );
    assert_eq!(root.id("bob", "api").await, api);
    let left = root.instance_containers().await;
    assert_eq!(left.len(), 1, "only bob/api is left: {left:?}");
}

#[tokio::test]
async fn plan_exit_code_says_whether_anything_would_change() {
    let root = TestRoot::new("planexit").await;
    root.write_manifest("alice", "web", MINIMAL);
    root.berth(&["plan", "--exit-code"]).await.expect_code(2);
    root.berth(&["plan"]).await.expect_code(0);
    root.berth(&["apply"]).await.expect_code(0);
    root.berth(&["plan", "--exit-code"]).await.expect_code(0);
    root.write_manifest("alice", "broken", "template = 3\n");
    root.berth(&["plan", "--exit-code"]).await.expect_code(1);
}

#[tokio::test]
async fn completions_are_valid_shell_and_name_every_command() {
    let script = std::env::temp_dir().join(format!("berth-completion-{}.bash", std::process::id()));
    let run = crate::support::run_berth(vec!["completions".into(), "bash".into()]).await;
    run.expect_code(0);
    for cmd in [
        "serve",
        "plan",
        "apply",
        "backup",
        "secrets",
        "rotate",
        "--exit-code",
    ] {
        assert!(run.stdout.contains(cmd), "{cmd} missing");
    }
    std::fs::write(&script, &run.stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let bad = crate::support::run_berth(vec!["completions".into(), "tcsh".into()]).await;
    assert_ne!(bad.code, Some(0));
}

#[tokio::test]
async fn status_without_a_daemon_is_read_live_from_the_files_and_the_engine() {
    let root = TestRoot::new("livestatus").await;
    root.write_manifest("alice", "web", MINIMAL);
    root.berth(&["apply"]).await.expect_code(0);
    root.write_manifest("alice", "next", MINIMAL);
    root.write_manifest("alice", "broken", "template = 3\n");
    let st = root.berth(&["status"]).await;
    st.expect_code(0)
        .expect_contains("read from the files and the engine now");
    let phase = |app: &str| {
        st.stdout
            .lines()
            .find(|l| l.starts_with(&format!("alice/{app} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(phase("web").as_deref(), Some("running"), "{st}");
    assert_eq!(phase("next").as_deref(), Some("pending"), "{st}");
    assert_eq!(phase("broken").as_deref(), Some("frozen"), "{st}");
}
