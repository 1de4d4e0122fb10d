//! Rollouts through a real Caddy, measured against their floor in the same run (docs/guides/deploys-and-rollback.md):
//! - a deploy of a domain app, from the manifest write to Caddy answering with the new
//!   version, against the raw floor: create + start a container of the same image with raw
//!   Docker calls and poll it until it answers;
//! - request latency through Caddy (16 connections) while deploys run, against steady state:
//!   the p99 ratio within the deploys, and the slow requests each deploy adds (a count a
//!   longer window cannot dilute), both beside raw create + start + remove in the same round.
//!
//! - the hot path's cost of berth's forwarder: requests through berth's route (Caddy, then
//!   berth's forwarder, one upstream connection per request) against a route Caddy dials
//!   the container with straight, over its pooled connections (the route before
//!   forwarders), and against the container itself, in the same run.
//!
//! Run: `cargo bench --bench rollout` (needs the engine, `caddy` and `berth-test-node:2`:
//! `scripts/ensure-docker.sh && scripts/ensure-tools.sh && scripts/build-node-image.sh`).
//! `BENCH_LOG=1` also prints (on stderr) when each manifest was written, every slow request,
//! berth's log and Caddy's, which `scripts/rollout-timeline.py` lays beside the engine's events
//! deploy by deploy; `BENCH_CPUS`, `BENCH_GAP_MS` and `BENCH_DRAIN_MS` change the app's CPU
//! limit, the pause between deploys and berth's drain (see [`env_or`]); `BENCH_ROUNDS` (3)
//! repeats the deploys, each round against its own steady state, and the goals are read from
//! the medians of the rounds.
//!
//! The drain is 2 s (berth's default is 10 s). A shorter one packs a deploy's costly steps
//! (the new container's start, the switch, the old one's stop) into about one second, and the
//! p99 within that window is worse; the slow-request count is the figure a window's length does
//! not change.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use bollard::models::{ContainerCreateBody, EndpointSettings, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};

const IMAGE: &str = "berth-test-node:2";
const SERVER: &str =
    "require('http').createServer((q, s) => s.end('hello-' + process.env.NAME + '\\n')).listen(8080)";
const DEPLOYS: u32 = 7;
const DOMAIN: &str = "bench.example.test";

/// `name` from the environment, else `default`: `BENCH_CPUS` (the app's CPU limit, 1.0) and
/// `BENCH_GAP_MS` (a pause after each deploy settles, 2000: a deploy begins with a warmed
/// app, as deploys minutes apart do; 0 deploys back to back, each new container replaced
/// within a second of taking traffic, never warmed) tell how much of the latency comes from
/// the app's own limit and warm-up.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The middle value (of an even count, the upper one): for deploy times and rounds' ratios.
fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn p99(v: &[Sample]) -> Duration {
    let mut v: Vec<Duration> = v.iter().map(|s| s.0).collect();
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn p50(v: &[Sample]) -> Duration {
    let mut v: Vec<Duration> = v.iter().map(|s| s.0).collect();
    v.sort();
    v[v.len() / 2]
}

/// A child process killed on drop, so a bench that panics leaves no Caddy or berth behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Caddy with only its admin API, its data in `dir`.
fn start_caddy(dir: &Path, admin: u16) -> Killed {
    let config = serde_json::json!({
        "admin": {"listen": format!("127.0.0.1:{admin}")},
        "storage": {"module": "file_system", "root": dir.join("data")},
    });
    write(&dir.join("caddy.json"), &config.to_string());
    let child = Command::new("caddy")
        .args(["run", "--config"])
        .arg(dir.join("caddy.json"))
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(match std::env::var("BENCH_LOG") {
            Ok(_) => Stdio::from(std::fs::File::create(dir.join("caddy.log")).unwrap()),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .expect("caddy (scripts/ensure-tools.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

/// `GET /` through Caddy's HTTP port for the bench domain (or directly to `addr`).
async fn get(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).header("Host", DOMAIN).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

async fn until_answers(client: &reqwest::Client, url: &str, want: &str) {
    while get(client, url).await.as_deref().map(str::trim) != Some(want) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The raw floor: create + start, with raw Docker calls, a container exactly like berth's
/// (`like`: same image, command, limits, hardening and network), and poll until it answers.
async fn raw_deploy(
    docker: &bollard::Docker,
    client: &reqwest::Client,
    like: &str,
    n: u32,
) -> Duration {
    let model = docker.inspect_container(like, None).await.unwrap();
    let config = model.config.unwrap();
    let network = model
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.into_keys().next())
        .unwrap();
    let env = config.env.unwrap_or_default().into_iter();
    let env = env.map(|e| {
        if e.starts_with("NAME=") {
            format!("NAME=raw{n}")
        } else {
            e
        }
    });
    let body = ContainerCreateBody {
        image: config.image,
        cmd: config.cmd,
        env: Some(env.collect()),
        working_dir: config.working_dir,
        host_config: model.host_config,
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(format!("berth-bench-raw-{}-{n}", std::process::id())),
        ..Default::default()
    };
    let t = Instant::now();
    let id = docker.create_container(Some(opts), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    let ip = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
        .unwrap();
    let url = format!("http://{ip}:8080/");
    until_answers(client, &url, &format!("hello-raw{n}")).await;
    let took = t.elapsed();
    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker.remove_container(&id, Some(force)).await.unwrap();
    took
}

/// The names of `instance`'s containers, running or not. Asked through the API, not the
/// `docker` CLI: a Go process started every 20 ms would load the 2 cores during berth's
/// deploys only, and count against them.
async fn containers(docker: &bollard::Docker, instance: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("paas.instance={instance}")],
    )]);
    let opts = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let listed = docker.list_containers(Some(opts)).await.unwrap();
    listed
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect()
}

/// The app's container's `address:8080`.
async fn container_dial(docker: &bollard::Docker, instance: &str) -> String {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("paas.instance={instance}")],
    )]);
    let opts = bollard::query_parameters::ListContainersOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let listed = docker.list_containers(Some(opts)).await.unwrap();
    let networks = (listed.into_iter().next())
        .and_then(|c| c.network_settings)
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let ip = (networks.into_values())
        .find_map(|n| n.ip_address.filter(|a| !a.is_empty()))
        .expect("the app's container has an address");
    format!("{ip}:8080")
}

/// The forwarder's cost: the same load (5 s each, twice in turn) through berth's route,
/// through a server added to Caddy by hand whose route dials the container straight (the
/// route before forwarders: Caddy's pooled connections), and at the container itself.
async fn hop(b: &Bench) {
    let dial = container_dial(&b.docker, &b.instance).await;
    let port = free_port();
    let server = serde_json::json!({
        "listen": [format!(":{port}")],
        "automatic_https": {"disable": true},
        "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}]}],
    });
    let url = format!("http://127.0.0.1:{}/config/apps/http/servers/hop", b.admin);
    let posted = b.client.post(&url).json(&server).send().await.unwrap();
    assert!(
        posted.status().is_success(),
        "{}",
        posted.text().await.unwrap()
    );
    let direct = format!("http://127.0.0.1:{port}/");
    let raw = format!("http://{dial}/");
    let (mut via, mut straight, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        via.extend(under_load(&b.url, async {}).await.0);
        straight.extend(under_load(&direct, async {}).await.0);
        bare.extend(under_load(&raw, async {}).await.0);
    }
    let _ = b.client.delete(&url).send().await;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "hot path, 16 clients: through berth's forwarder p50 {} p99 {} ({} requests); Caddy straight to the container p50 {} p99 {} ({}); the container alone p50 {} p99 {} ({}); forwarder vs straight: p50 {:.2}x, p99 {:.2}x",
        ms(p50(&via)), ms(p99(&via)), via.len(),
        ms(p50(&straight)), ms(p99(&straight)), straight.len(),
        ms(p50(&bare)), ms(p99(&bare)), bare.len(),
        ratio(p50(&via), p50(&straight)), ratio(p99(&via), p99(&straight)),
    );
}

/// What a route switch costs Caddy's traffic by itself: berth's server is loaded again
/// `DEPLOYS` times, as far apart as deploys, with the same routes (one harmless field
/// toggled, or Caddy would see no change).
async fn caddy_reloads(client: &reqwest::Client, admin: u16, instance: &str) {
    let url = format!("http://127.0.0.1:{admin}/config/apps/http/servers/berth-{instance}");
    let berths: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    for n in 0..=DEPLOYS {
        let mut server = berths.clone();
        if n < DEPLOYS {
            server["max_header_bytes"] = serde_json::json!(1_000_000 + n);
        }
        let posted = client.post(&url).json(&server).send().await.unwrap();
        assert!(
            posted.status().is_success(),
            "{}",
            posted.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

/// CPU time (clock ticks, with reaped children) of every live process, by pid: its name and
/// ticks. Read before and after berth's deploys, it tells which process the 2 cores went to.
fn cpu_by_pid() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, so split after its last `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime, stime, cutime, cstime are fields 14-17 of stat, 12-15 after the name. Not
        // the reaped children of pid 1: it reaps exited container shims, whose count holds
        // the whole life of the container they ran.
        let upto = if pid == 1 { 13 } else { 15 };
        let ticks = fields[11..upto]
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        out.insert(pid, (stat[open + 1..close].to_string(), ticks));
    }
    out
}

/// The CPU each process name used between two [`cpu_by_pid`] reads, most first (a process
/// gone by `after` is not counted; one new since `before` counts whole).
fn cpu_used(before: &HashMap<u32, (String, u64)>, after: &HashMap<u32, (String, u64)>) -> String {
    let tick_ms = 1000.0 / 100.0;
    let mut by_name = HashMap::<&str, u64>::new();
    for (pid, (name, ticks)) in after {
        let was = before
            .get(pid)
            .filter(|(n, _)| n == name)
            .map_or(0, |b| b.1);
        *by_name.entry(name.as_str()).or_default() += ticks.saturating_sub(was);
    }
    let mut shown: Vec<(&str, u64)> = by_name.into_iter().filter(|(_, t)| *t > 0).collect();
    shown.sort_by_key(|s| std::cmp::Reverse(s.1));
    let shown: Vec<String> = (shown.iter().take(8))
        .map(|(n, t)| format!("{n} {:.0} ms", *t as f64 * tick_ms))
        .collect();
    shown.join(", ")
}

/// A request's latency, whether it was sent twice, and when it began.
type Sample = (Duration, bool, Instant);

/// 16 clients through Caddy until `stop`; every request's latency (failures panic).
fn load(url: String, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<Sample>>> {
    (0..16)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let retried = get(&client, &url).await.is_none();
                    if retried {
                        // As browsers do: once more when Caddy closed the connection.
                        get(&client, &url).await.expect("a request failed");
                    }
                    out.push((t.elapsed(), retried, t));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                out
            })
        })
        .collect()
}

/// The samples that began inside one of `windows`.
fn within(samples: &[Sample], windows: &[(Instant, Instant)]) -> Vec<Sample> {
    let inside = |at: Instant| windows.iter().any(|(from, to)| (*from..=*to).contains(&at));
    samples.iter().filter(|s| inside(s.2)).copied().collect()
}

/// `at` as wall-clock time, to set beside berth's log (`BENCH_LOG`).
fn wall(at: Instant) -> String {
    static ANCHOR: std::sync::OnceLock<(Instant, std::time::SystemTime)> =
        std::sync::OnceLock::new();
    let (i, t) = *ANCHOR.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
    let t = match at >= i {
        true => t + (at - i),
        false => t - (i - at),
    };
    humantime::format_rfc3339_micros(t).to_string()
}

/// Where in a deploy the slow requests (over `slow`) began: counted by 100 ms from the
/// deploy's start (`from`) before them, to tell which step of a rollout costs the latency.
fn slow_by_phase(during: &str, from: &str, samples: &[Sample], writes: &[Instant], slow: Duration) {
    let mut buckets = std::collections::BTreeMap::<u128, usize>::new();
    for (took, _, at) in samples.iter().filter(|s| s.0 > slow) {
        if std::env::var("BENCH_LOG").is_ok() {
            eprintln!("SLOW {during} {} {}", wall(*at), ms(*took));
        }
        if let Some(w) = writes.iter().rev().find(|w| *w <= at) {
            *buckets
                .entry(at.duration_since(*w).as_millis() / 100)
                .or_default() += 1;
        }
    }
    let shown: Vec<String> = buckets
        .iter()
        .map(|(b, n)| format!("{}-{} ms: {n}", b * 100, b * 100 + 99))
        .collect();
    println!(
        "requests over {} during {during}, by when they began after {from}: {}",
        ms(slow),
        shown.join("; ")
    );
}

/// Runs `work` (5 s of nothing when it is empty) under the load; its latencies and result.
async fn under_load<T>(url: &str, work: impl std::future::Future<Output = T>) -> (Vec<Sample>, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(url.to_string(), stop.clone());
    let started = Instant::now();
    let out = work.await;
    if let Some(left) = Duration::from_secs(5).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    stop.store(true, Ordering::Relaxed);
    (latencies(tasks).await, out)
}

async fn latencies(tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>) -> Vec<Sample> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Everything one bench run shares: berth serving one domain app through its own Caddy.
struct Bench {
    // Dropped first, before the root goes.
    _serve: Killed,
    _caddy: Killed,
    root: tempfile::TempDir,
    instance: String,
    admin: u16,
    api: u16,
    url: String,
    manifest: std::path::PathBuf,
    client: reqwest::Client,
    docker: bollard::Docker,
    gap: Duration,
}

fn shop(n: u32) -> String {
    format!("template = \"node-v1\"\ndomain = \"{DOMAIN}\"\n[env]\nNAME = \"v{n}\"\n")
}

/// Starts Caddy and `berth serve` with one domain app, and waits until it answers.
async fn start() -> Bench {
    let instance = format!("rbench{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (admin, http, api) = (free_port(), free_port(), free_port());
    let caddy = start_caddy(root, admin);
    let cpus: f64 = env_or("BENCH_CPUS", 1.0);
    let drain: u64 = env_or("BENCH_DRAIN_MS", 2000);
    write(&root.join("berth.toml"), &format!(
        "instance = \"{instance}\"\nstop_timeout = \"1s\"\nlisten = \"127.0.0.1:{}\"\n\
         [policy]\ndomains = [\"*.example.test\"]\nmax_cpus = {cpus:?}\n\
         [proxy]\ncaddy_admin = \"http://127.0.0.1:{admin}\"\ntls = \"off\"\nhttp_port = {http}\nhttps_port = {}\ndrain = \"{drain}ms\"\nforwarders = true\n",
        api, free_port()));
    write(
        &root.join("templates/node-v1/template.toml"),
        &format!(
            "image = \"{IMAGE}\"\ncommand = [\"node\", \"-e\", {SERVER:?}]\nport = 8080\n\
         [defaults]\nmemory = \"128m\"\ncpus = {cpus:?}\n[health]\npath = \"/\"\ninterval = \"100ms\"\n"
        ),
    );
    let manifest = root.join("state/apps/bench/shop.toml");
    write(&manifest, &shop(0));
    let log = std::fs::File::create(root.join("serve.log")).unwrap();
    let serve = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Killed)
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/");
    let first = until_answers(&client, &url, "hello-v0");
    if tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .is_err()
    {
        let log = std::fs::read_to_string(root.join("serve.log")).unwrap_or_default();
        panic!("the first version never answered through Caddy; berth serve's log:\n{log}");
    }
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let gap = Duration::from_millis(env_or("BENCH_GAP_MS", 2000));
    Bench {
        root: dir,
        instance,
        admin,
        api,
        url,
        manifest,
        client,
        docker,
        gap,
        _serve: serve,
        _caddy: caddy,
    }
}

/// Deploys timed one by one: each one's time, its start, and its window (start until the old
/// container is gone).
#[derive(Default)]
struct Deploys {
    took: Vec<Duration>,
    starts: Vec<Instant>,
    windows: Vec<(Instant, Instant)>,
}

/// `DEPLOYS` raw create + start + first answer + remove, `gap` apart.
async fn raw_deploys(b: &Bench, round: u32) -> Deploys {
    let mut out = Deploys::default();
    let like = format!("paas-app-{}-bench-shop", b.instance);
    for n in 1..=DEPLOYS {
        let t = Instant::now();
        out.starts.push(t);
        let version = round * 100 + n;
        out.took
            .push(raw_deploy(&b.docker, &b.client, &like, version).await);
        out.windows.push((t, Instant::now()));
        tokio::time::sleep(b.gap).await;
    }
    out
}

/// Docker's filter for the destruction of `instance`'s containers from now on.
fn destroy_events(instance: &str) -> bollard::query_parameters::EventsOptions {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["destroy".to_string()]),
        (
            "label".to_string(),
            vec![format!("paas.instance={instance}")],
        ),
    ]);
    // From now on: the stream asks the engine only when first read, after the write.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    bollard::query_parameters::EventsOptions {
        since: Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
        filters: Some(filters),
        ..Default::default()
    }
}

/// `DEPLOYS` deploys through berth, `gap` apart: each from the manifest write until Caddy
/// answers with the new version; its window lasts until the old container is gone.
async fn berth_deploys(b: &Bench, round: u32) -> Deploys {
    let mut out = Deploys::default();
    for n in 1..=DEPLOYS {
        let version = round * 100 + n;
        // The old container's end comes as an event: polling the engine every few ms would
        // load the 2 cores during berth's deploys only.
        let mut destroyed = b.docker.events(Some(destroy_events(&b.instance)));
        let t = Instant::now();
        out.starts.push(t);
        if std::env::var("BENCH_LOG").is_ok() {
            eprintln!("WRITE {}", wall(t));
        }
        write(&b.manifest, &shop(version));
        until_answers(&b.client, &b.url, &format!("hello-v{version}")).await;
        out.took.push(t.elapsed());
        // The old container's destroy event, then a look at what is left; the look alone
        // decides if the event does not come within 10 s.
        let _ = tokio::time::timeout(Duration::from_secs(10), destroyed.next()).await;
        // Deploys come one at a time: the old container drains and goes first.
        let settled = vec![format!("/paas-app-{}-bench-shop", b.instance)];
        while containers(&b.docker, &b.instance).await != settled {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        out.windows.push((t, Instant::now()));
        tokio::time::sleep(b.gap).await;
    }
    out
}

/// The slow requests (over `slow`) a deploy adds: those begun from the first deploy's start
/// on, less what the steady state's share of slow requests (`steady`) predicts for as many
/// requests, per deploy. Unlike a p99 it is not diluted by a longer window: work moved later
/// still counts, up to the next deploy.
fn excess_slow(samples: &[Sample], starts: &[Instant], slow: Duration, steady: &[Sample]) -> f64 {
    let share = steady.iter().filter(|s| s.0 > slow).count() as f64 / steady.len() as f64;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.2 >= starts[0]).collect();
    let slow_after = after.iter().filter(|s| s.0 > slow).count() as f64;
    (slow_after - share * after.len() as f64) / starts.len() as f64
}

/// A summary line: what it says, and the figure it takes from each round.
type Row = (&'static str, fn(&Round) -> f64);

/// One round's ratios against the steady state measured just before it.
struct Round {
    deploy: f64,
    p99_berth: f64,
    p99_raw: f64,
    slow_berth: f64,
    slow_raw: f64,
}

/// Steady state, then raw deploys, then berth's, each under the same load.
async fn round(b: &Bench, r: u32) -> Round {
    let (steady, _) = under_load(&b.url, async {}).await;
    let cpu_raw = cpu_by_pid();
    let (during_raw, raw) = under_load(&b.url, raw_deploys(b, r)).await;
    let cpu_before = cpu_by_pid();
    let (during, berth) = under_load(&b.url, berth_deploys(b, r)).await;
    let cpu_after = cpu_by_pid();
    let p_steady = p99(&steady);
    let slow = p_steady * 2;
    println!(
        "round {}: steady p99 {} ({} requests)",
        r + 1,
        ms(p_steady),
        steady.len()
    );
    println!(
        "  CPU during raw deploys (the load's own included): {}",
        cpu_used(&cpu_raw, &cpu_before)
    );
    println!(
        "  CPU during berth deploys (the load's own included): {}",
        cpu_used(&cpu_before, &cpu_after)
    );
    slow_by_phase(
        "berth deploys",
        "the manifest write",
        &during,
        &berth.starts,
        slow,
    );
    slow_by_phase(
        "raw create+start+remove",
        "the create",
        &during_raw,
        &raw.starts,
        slow,
    );
    let (deploy_berth, deploy_raw) = (median(berth.took.clone()), median(raw.took.clone()));
    let inside_berth = within(&during, &berth.windows);
    let inside_raw = within(&during_raw, &raw.windows);
    let ratio = |d: Duration| d.as_secs_f64() / p_steady.as_secs_f64();
    let (p_berth, p_raw) = (p99(&inside_berth), p99(&inside_raw));
    let out = Round {
        deploy: deploy_berth.as_secs_f64() / deploy_raw.as_secs_f64(),
        p99_berth: ratio(p_berth),
        p99_raw: ratio(p_raw),
        slow_berth: excess_slow(&during, &berth.starts, slow, &steady),
        slow_raw: excess_slow(&during_raw, &raw.starts, slow, &steady),
    };
    println!(
        "  deploy {} vs raw {} ({:.2}x); p99 within the deploys {} ({:.2}x, {} requests), raw {} ({:.2}x, {} requests); \
         slow requests (over 2x steady p99) each deploy adds: berth {:.1}, raw {:.1}; p99 over the whole load incl. gaps: berth {:.2}x, raw {:.2}x",
        ms(deploy_berth), ms(deploy_raw), out.deploy,
        ms(p_berth), out.p99_berth, inside_berth.len(),
        ms(p_raw), out.p99_raw, inside_raw.len(),
        out.slow_berth, out.slow_raw,
        ratio(p99(&during)), ratio(p99(&during_raw)),
    );
    out
}

fn list(v: &[f64]) -> String {
    let shown: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    shown.join(", ")
}

/// `BENCH_ROUNDS` rounds (3): this machine's noise is larger than the goal's margin, so a
/// goal is judged on the median of the rounds' ratios.
#[tokio::main]
async fn main() {
    let b = start().await;
    hop(&b).await;
    let (during_reloads, ()) =
        under_load(&b.url, caddy_reloads(&b.client, b.admin, &b.instance)).await;
    let (steady, _) = under_load(&b.url, async {}).await;
    let reload = p99(&during_reloads).as_secs_f64() / p99(&steady).as_secs_f64();
    let retried = during_reloads.iter().filter(|s| s.1).count();
    println!(
        "Caddy config loads alone (same routes, {DEPLOYS} loads): p99 {reload:.2}x steady; {retried} requests sent twice (Caddy closed their keep-alive connection)"
    );
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let mut all = Vec::new();
    for r in 0..rounds {
        all.push(round(&b, r).await);
    }
    let pick = |f: fn(&Round) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let rows: [Row; 5] = [
        (
            "deploy, write -> new version answers through Caddy, vs raw create+start+first answer",
            |r| r.deploy,
        ),
        (
            "p99 within berth's deploys (write until the old container is gone) vs steady",
            |r| r.p99_berth,
        ),
        ("p99 within raw create+start+remove vs steady", |r| {
            r.p99_raw
        }),
        (
            "slow requests (over 2x steady p99) each berth deploy adds",
            |r| r.slow_berth,
        ),
        (
            "slow requests (over 2x steady p99) each raw create+start+remove adds",
            |r| r.slow_raw,
        ),
    ];
    println!(
        "over {rounds} rounds of {DEPLOYS} deploys, {} apart:",
        ms(b.gap)
    );
    for (what, f) in rows {
        let v = pick(f);
        println!(
            "  {what}: median {:.2} (rounds: {})",
            median(v.clone()),
            list(&v)
        );
    }
    finish(b).await;
}

/// Prints berth's passes by cause (and its log with `BENCH_LOG`), then removes what it made.
async fn finish(b: Bench) {
    let metrics = b
        .client
        .get(format!("http://127.0.0.1:{}/metrics", b.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("berth_reconcile_pass_triggers_total"))
    {
        println!("{line}");
    }
    if std::env::var("BENCH_LOG").is_ok() {
        for file in ["serve.log", "caddy.log"] {
            let log = std::fs::read_to_string(b.root.path().join(file));
            eprintln!("{}", log.unwrap_or_default());
        }
    }
    drop(b._serve);
    let instance = &b.instance;
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("docker rm -f $(docker ps -aq --filter label=paas.instance={instance}) >/dev/null 2>&1; docker network prune -f --filter label=paas.instance={instance} >/dev/null 2>&1"))
        .status();
}
