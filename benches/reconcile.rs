//! Measures the reconcile core against the raw Docker API on the same machine, in one run:
//! - a no-op pass over 50 apps (scan + list + plan) vs one raw `list containers` call;
//! - manifest write -> container running under `berth serve` vs raw create+start;
//! - the HTTP API under `berth serve`: `GET /apps` (50 apps, cached container list) and a
//!   bridge call (client-key check in redb) vs the raw list and `GET /healthz` (the HTTP
//!   floor), and `POST .../deploy` -> new container started vs raw create+start;
//! - the daemon's resident memory with 50 apps, after the API traffic.
//!
//! Run: `cargo bench --bench reconcile` (needs the engine and `berth-test-busybox:1`, as the
//! tests do: `scripts/ensure-docker.sh && scripts/build-test-image.sh`).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::daemon::pass::Reconciler;
use berth::model::config::Config;
use berth::runtime::engine::Engine;
use berth::runtime::executor::Executor;
use bollard::query_parameters::{EventsOptions, ListContainersOptions, RemoveContainerOptions};
use futures_util::StreamExt;

const APPS: usize = 50;
const ROUNDS: usize = 30;
const IMAGE: &str = "berth-test-busybox:1";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Docker's `start` events for the container `name`, to time "until it started".
fn start_events(
    docker: &bollard::Docker,
    name: &str,
) -> impl futures_util::Stream<Item = Result<bollard::models::EventMessage, bollard::errors::Error>>
{
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string()]),
        ("container".to_string(), vec![name.to_string()]),
    ]);
    docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let instance = format!("bench{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("berth.toml"), &format!(
        "instance = \"{instance}\"\nstop_timeout = \"1s\"\nresync = \"1h\"\nmax_apps_per_user = 20\nmax_total_apps = 100\nmax_parallel = 8\n"));
    write(&root.join("templates/bb-v1/template.toml"), &format!(
        "image = \"{IMAGE}\"\ncommand = [\"sleep\", \"3600\"]\nport = 8080\n[defaults]\nmemory = \"16m\"\ncpus = 0.1\n"));
    for i in 0..APPS {
        write(
            &root.join(format!("state/apps/user{}/app{}.toml", i / 10, i % 10)),
            "template = \"bb-v1\"\n",
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut toml = std::fs::read_to_string(root.join("berth.toml")).unwrap();
    toml.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
    write(&root.join("berth.toml"), &toml);
    let config = Arc::new(Config::load(None, Some(root)).unwrap());
    let (token, client_key) = {
        let store = berth::store::Store::open(&config.database).unwrap();
        let token = store.add_user("bench", berth::store::Role::Admin).unwrap();
        let app = berth::model::names::AppKey::new("user0", "app0").unwrap();
        (token, store.issue_client_key(&app, 0, 20).unwrap().1)
    };
    let engine = Engine::connect(&instance).await.expect("a Docker engine");
    // The raw baseline talks to Docker through bollard directly, as a caller without berth would.
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .expect("a Docker engine");
    let reconciler = Reconciler::new(config.clone(), Executor::new(config.clone(), engine));

    let t = Instant::now();
    let report = reconciler.pass_once(false).await.unwrap();
    assert!(
        report.converged(),
        "initial apply failed: {:?}",
        report.failures
    );
    println!("initial apply of {APPS} apps: {}", ms(t.elapsed()));

    // Baseline: the one Docker call a pass cannot avoid.
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("paas.instance={instance}")],
    )]);
    let list = || ListContainersOptions {
        all: true,
        filters: Some(filters.clone()),
        ..Default::default()
    };
    let mut raw = Vec::new();
    let mut noop = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let n = docker.list_containers(Some(list())).await.unwrap().len();
        raw.push(t.elapsed());
        assert_eq!(n, APPS);
        let t = Instant::now();
        let (_, plan) = reconciler.plan_once(false).await.unwrap();
        noop.push(t.elapsed());
        assert!(plan.is_noop(), "pass over converged apps must be a no-op");
    }
    let (raw, noop) = (median(raw), median(noop));
    println!(
        "raw docker list ({APPS} containers), median of {ROUNDS}: {}",
        ms(raw)
    );
    println!(
        "no-op pass over {APPS} apps (scan+list+plan), median of {ROUNDS}: {} = {:.2}x raw list",
        ms(noop),
        noop.as_secs_f64() / raw.as_secs_f64()
    );

    // Baseline for a deploy: raw create + start of the same image.
    let mut raw_start = Vec::new();
    let mut raw_recreate = Vec::new();
    for i in 0..5 {
        let body = bollard::models::ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "3600".into()]),
            labels: Some(HashMap::from([(
                "paas.instance".to_string(),
                instance.clone(),
            )])),
            host_config: Some(bollard::models::HostConfig {
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("{instance}-raw{i}");
        let opts = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let t = Instant::now();
        let id = docker
            .create_container(Some(opts.clone()), body.clone())
            .await
            .unwrap()
            .id;
        docker.start_container(&id, None).await.unwrap();
        raw_start.push(t.elapsed());
        // A recreate by hand: stop + remove the old one, create + start the new one.
        let t = Instant::now();
        docker
            .stop_container(
                &id,
                Some(bollard::query_parameters::StopContainerOptions {
                    t: Some(1),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        docker.remove_container(&id, None).await.unwrap();
        let id = docker.create_container(Some(opts), body).await.unwrap().id;
        docker.start_container(&id, None).await.unwrap();
        raw_recreate.push(t.elapsed());
        docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
    let raw_start = median(raw_start);
    let raw_recreate = median(raw_recreate);

    // berth serve: write a manifest, wait for Docker's start event for that container. The app
    // belongs to a user with apps already, whose network exists (a user's first app also makes
    // its network, which costs a Docker network create).
    let bin = env!("CARGO_BIN_EXE_berth");
    let mut serve = Command::new(bin)
        .args(["--root", root.to_str().unwrap(), "serve"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut deploy = Vec::new();
    for i in 0..5 {
        let name = format!("paas-app-{instance}-user0-late{i}");
        let mut events = start_events(&docker, &name);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = root.join(format!("state/apps/user0/late{i}.toml"));
        let t = Instant::now();
        write(&path, "template = \"bb-v1\"\n");
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("container started")
            .unwrap()
            .unwrap();
        deploy.push(t.elapsed());
        std::fs::remove_file(&path).unwrap();
    }
    let deploy = median(deploy);
    println!("raw docker create+start, median of 5: {}", ms(raw_start));
    println!(
        "file write -> container started under serve, median of 5: {} = {:.2}x raw create+start",
        ms(deploy),
        deploy.as_secs_f64() / raw_start.as_secs_f64()
    );

    // The API, same daemon.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Bearer {token}");
    let timed = |label: &'static str| (label, Vec::new());
    let mut health = timed("GET /healthz");
    let mut apps = timed("GET /apps (50 apps)");
    let mut bridge = timed("GET /bridge/apps/user0/app0 (client key)");
    for _ in 0..ROUNDS {
        for (series, path, header) in [
            (&mut health, "/healthz", ("x-none", "")),
            (&mut apps, "/apps", ("authorization", auth.as_str())),
            (
                &mut bridge,
                "/bridge/apps/user0/app0",
                ("x-app-key", client_key.as_str()),
            ),
        ] {
            let t = Instant::now();
            let resp = http
                .get(format!("{base}{path}"))
                .header(header.0, header.1)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            let _ = resp.bytes().await.unwrap();
            series.1.push(t.elapsed());
        }
    }
    for (label, v) in [health, apps, bridge] {
        let m = median(v);
        println!(
            "{label}, median of {ROUNDS}: {} = {:.2}x raw docker list",
            ms(m),
            m.as_secs_f64() / raw.as_secs_f64()
        );
    }
    let mut api_deploy = Vec::new();
    for _ in 0..5 {
        let name = format!("paas-app-{instance}-user1-app1");
        let mut events = start_events(&docker, &name);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/apps/user1/app1/deploy"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("redeployed container started")
            .unwrap()
            .unwrap();
        api_deploy.push(t.elapsed());
    }
    let api_deploy = median(api_deploy);
    println!(
        "raw docker stop+remove+create+start, median of 5: {}",
        ms(raw_recreate)
    );
    println!(
        "POST /deploy -> new container started, median of 5: {} = {:.2}x raw stop+remove+create+start",
        ms(api_deploy),
        api_deploy.as_secs_f64() / raw_recreate.as_secs_f64()
    );

    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.id())).unwrap();
    for line in status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
    {
        println!("berth serve with {APPS} apps: {line}");
    }
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();

    let ids: Vec<String> = docker
        .list_containers(Some(list()))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    for id in ids {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    // And the per-user networks berth made for this instance.
    let nets = docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .unwrap_or_default();
    for net in nets.into_iter().filter_map(|n| n.id) {
        let _ = docker.remove_network(&net).await;
    }
}
