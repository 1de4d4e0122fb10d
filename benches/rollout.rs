//! Rollouts through a real Caddy, measured against their floor in the same run (SPEC §9):
//! - a deploy of a domain app, from the manifest write to Caddy answering with the new
//!   version, against the raw floor: create + start a container of the same image with raw
//!   Docker calls and poll it until it answers;
//! - request latency through Caddy (16 connections) while deploys run, against steady state:
//!   the p99 ratio.
//!
//! Run: `cargo bench --bench rollout` (needs the engine, `caddy` and `berth-test-node:2`:
//! `scripts/ensure-docker.sh && scripts/ensure-tools.sh && scripts/build-node-image.sh`).
//! `BENCH_LOG=1` also prints when each manifest was written and berth's log, to place a
//! deploy's steps in time; `BENCH_CPUS` and `BENCH_GAP_MS` change the app's CPU limit and
//! put a pause between deploys (see [`env_or`]).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(v: &[Sample]) -> Duration {
    let mut v: Vec<Duration> = v.iter().map(|s| s.0).collect();
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// A Caddy with only its admin API, its data in `dir`; killed on drop.
struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_caddy(dir: &Path, admin: u16) -> Caddy {
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
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy (scripts/ensure-tools.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Caddy(child)
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

/// The names of `instance`'s containers, running or not.
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

/// Where in a deploy the slow requests (over `slow`) began: counted by 100 ms from the
/// deploy's start (`from`) before them, to tell which step of a rollout costs the latency.
fn slow_by_phase(during: &str, from: &str, samples: &[Sample], writes: &[Instant], slow: Duration) {
    let mut buckets = std::collections::BTreeMap::<u128, usize>::new();
    for (took, _, at) in samples.iter().filter(|s| s.0 > slow) {
        let _ = took;
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

#[tokio::main]
async fn main() {
    let instance = format!("rbench{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (admin, http, api) = (free_port(), free_port(), free_port());
    let _caddy = start_caddy(root, admin);
    let cpus: f64 = env_or("BENCH_CPUS", 1.0);
    write(&root.join("berth.toml"), &format!(
        "instance = \"{instance}\"\nstop_timeout = \"1s\"\nlisten = \"127.0.0.1:{}\"\n\
         [policy]\ndomains = [\"*.example.test\"]\nmax_cpus = {cpus:?}\n\
         [proxy]\ncaddy_admin = \"http://127.0.0.1:{admin}\"\ntls = \"off\"\nhttp_port = {http}\nhttps_port = {}\ndrain = \"200ms\"\n",
        api, free_port()));
    write(
        &root.join("templates/node-v1/template.toml"),
        &format!(
            "image = \"{IMAGE}\"\ncommand = [\"node\", \"-e\", {SERVER:?}]\nport = 8080\n\
         [defaults]\nmemory = \"128m\"\ncpus = {cpus:?}\n[health]\npath = \"/\"\ninterval = \"100ms\"\n"
        ),
    );
    let manifest = root.join("state/apps/bench/shop.toml");
    let gap = Duration::from_millis(env_or("BENCH_GAP_MS", 2000));
    let shop =
        |n: u32| format!("template = \"node-v1\"\ndomain = \"{DOMAIN}\"\n[env]\nNAME = \"v{n}\"\n");
    write(&manifest, &shop(0));
    let log = std::fs::File::create(root.join("serve.log")).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
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

    let (steady, _) = under_load(&url, async {}).await;
    let cpu_raw = cpu_by_pid();
    let (during_raw, (raw, raw_starts, raw_windows)) = under_load(&url, async {
        let (mut raw, mut starts, mut windows) = (Vec::new(), Vec::new(), Vec::new());
        for n in 1..=DEPLOYS {
            let like = format!("paas-app-{instance}-bench-shop");
            let t = Instant::now();
            starts.push(t);
            raw.push(raw_deploy(&docker, &client, &like, n).await);
            windows.push((t, Instant::now()));
            tokio::time::sleep(gap).await;
        }
        (raw, starts, windows)
    })
    .await;
    let (during_reloads, ()) = under_load(&url, caddy_reloads(&client, admin, &instance)).await;
    let cpu_before = cpu_by_pid();
    println!(
        "CPU used during raw create+start (the load's own included): {}",
        cpu_used(&cpu_raw, &cpu_before)
    );
    let (during, (berth, writes, windows)) = under_load(&url, async {
        let (mut berth, mut writes, mut windows) = (Vec::new(), Vec::new(), Vec::new());
        for n in 1..=DEPLOYS {
            let t = Instant::now();
            writes.push(t);
            if std::env::var("BENCH_LOG").is_ok() {
                eprintln!(
                    "WRITE {}",
                    humantime::format_rfc3339_micros(std::time::SystemTime::now())
                );
            }
            write(&manifest, &shop(n));
            until_answers(&client, &url, &format!("hello-v{n}")).await;
            berth.push(t.elapsed());
            // Deploys come one at a time: the old container drains and goes first.
            let settled = vec![format!("/paas-app-{instance}-bench-shop")];
            while containers(&docker, &instance).await != settled {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            windows.push((t, Instant::now()));
            tokio::time::sleep(gap).await;
        }
        (berth, writes, windows)
    })
    .await;
    println!(
        "CPU used during berth deploys (the load's own included): {}",
        cpu_used(&cpu_before, &cpu_by_pid())
    );
    let (raw, berth) = (median(raw), median(berth));
    println!(
        "deploy, write -> new version answers through Caddy: {} (median of {DEPLOYS}); raw create+start+first answer: {}; ratio {:.2}x",
        ms(berth), ms(raw), berth.as_secs_f64() / raw.as_secs_f64()
    );
    let p_steady = p99(&steady);
    slow_by_phase(
        "berth deploys",
        "the manifest write",
        &during,
        &writes,
        p_steady * 2,
    );
    let what = "raw create+start+remove";
    slow_by_phase(what, "the create", &during_raw, &raw_starts, p_steady * 2);
    for (what, samples, windows) in [
        ("berth deploys", &during, &windows),
        ("raw create+start+remove", &during_raw, &raw_windows),
    ] {
        let inside = within(samples, windows);
        let p = p99(&inside);
        println!(
            "p99 through Caddy within the {what} themselves (from the write or create until the old container is gone): {} ({} requests) vs steady {}; ratio {:.2}x",
            ms(p), inside.len(), ms(p_steady), p.as_secs_f64() / p_steady.as_secs_f64(),
        );
    }
    for (what, samples) in [
        ("berth deploys", during),
        ("raw create+start of the same container", during_raw),
        ("Caddy config loads alone (same routes)", during_reloads),
    ] {
        let p = p99(&samples);
        let first_try: Vec<Sample> = samples.iter().filter(|s| !s.1).copied().collect();
        println!(
            "p99 through Caddy at 16 connections during {what}: {} ({} requests) vs steady {} ({} requests); ratio {:.2}x; \
             {} requests sent twice (Caddy closed their keep-alive connection at a config reload); p99 of the rest {} ({:.2}x)",
            ms(p), samples.len(), ms(p_steady), steady.len(),
            p.as_secs_f64() / p_steady.as_secs_f64(),
            samples.len() - first_try.len(),
            ms(p99(&first_try)),
            p99(&first_try).as_secs_f64() / p_steady.as_secs_f64(),
        );
    }
    // What berth did for it: passes by cause.
    let metrics = client
        .get(format!("http://127.0.0.1:{api}/metrics"))
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
        eprintln!(
            "{}",
            std::fs::read_to_string(root.join("serve.log")).unwrap_or_default()
        );
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("docker rm -f $(docker ps -aq --filter label=paas.instance={instance}) >/dev/null 2>&1; docker network prune -f --filter label=paas.instance={instance} >/dev/null 2>&1"))
        .status();
}
