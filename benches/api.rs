//! The API's hot paths at the HTTP floor, measured with wrk (64 connections, 2 threads) on one
//! `berth serve` with 200 running apps, in one run: `GET /healthz` (the floor: no auth, no
//! state), `GET /apps` as an admin (all 200 apps) and the bridge `GET /bridge/apps/...` with a
//! client key, in three interleaved rounds. Prints each one's median req/s and p99, and the ratios to `/healthz` (issue 16's goals:
//! the bridge >= 0.8x the floor's req/s with p99 <= 1.5x; `GET /apps` >= 0.1x).
//!
//! Run: `cargo bench --bench api` (needs the engine, `berth-test-busybox:1` and wrk, as the
//! tests do: `scripts/ensure-docker.sh && scripts/build-test-image.sh && apt install wrk`).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const APPS: usize = 200;
const IMAGE: &str = "berth-test-busybox:1";

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// req/s and p99 (ms) of `wrk` against `url` with `header`.
fn wrk(url: &str, header: &str) -> (f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c64", "-d5s", "--latency", "-H", header, url])
        .output()
        .expect("wrk (Debian's wrk package)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| latency_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% in wrk's output:\n{text}"));
    assert!(!text.contains("Non-2xx"), "errors under load:\n{text}");
    (rps, p99)
}

/// Rounds of the wrk runs; each endpoint's figures are the medians over them.
const ROUNDS: usize = 3;

/// The median req/s and the median p99 of some runs.
fn medians(runs: Vec<(f64, f64)>) -> (f64, f64) {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (
        mid(runs.iter().map(|r| r.0).collect()),
        mid(runs.iter().map(|r| r.1).collect()),
    )
}

/// wrk's `1.23ms` / `456.00us` / `1.20s` in milliseconds.
fn latency_ms(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap() * scale
}

/// The daemon, killed however the bench ends (a panic must not leave it holding the pipe).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl`'s time (ms) and size (bytes) of one GET of `url` with `cookie`.
fn curl_get(url: &str, cookie: &str) -> (f64, usize) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_total} %{size_download}",
        ])
        .args(["-H", &format!("Cookie: {cookie}"), url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (t, n) = text.split_once(' ').expect("curl's -w output");
    (t.parse::<f64>().unwrap() * 1000.0, n.parse().unwrap())
}

/// The portal with every app on one page: its weight, its time per request one at a time
/// (median and worst of 50: the render, as the server adds little else on loopback), and its
/// throughput under wrk against the floor.
fn portal(base: &str, token: &str, floor: (f64, f64)) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-d",
            &format!("token={token}"),
        ])
        .arg(format!("{base}/ui/login"))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).to_string();
    let cookie = headers
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    for (label, path) in [
        ("apps page", "/ui/apps"),
        ("app page", "/ui/apps/user0/app0"),
        ("revisions page", "/ui/apps/user0/app0/revisions"),
    ] {
        let mut times: Vec<f64> = Vec::new();
        let mut size = 0;
        for _ in 0..50 {
            let (ms, n) = curl_get(&format!("{base}{path}"), &cookie);
            times.push(ms);
            size = n;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "portal {label} ({APPS} apps, admin): {size} bytes, {:.2} ms median, {:.2} ms worst of 50",
            times[25], times[49]
        );
    }
    let css = curl_get(&format!("{base}/ui/static/portal.css"), &cookie).1;
    let js = curl_get(&format!("{base}/ui/static/portal.js"), &cookie).1;
    println!("portal assets: portal.css {css} bytes, portal.js {js} bytes");
    let (rps, p99) = wrk(&format!("{base}/ui/apps"), &format!("Cookie: {cookie}"));
    println!(
        "GET /ui/apps ({APPS} apps): {rps:.0} req/s ({:.2}x /healthz), p99 {p99:.2} ms",
        rps / floor.0
    );
}

fn main() {
    let instance = format!("benchapi{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(&root.join("berth.toml"), &format!(
        "instance = \"{instance}\"\nlisten = \"127.0.0.1:{port}\"\nstop_timeout = \"1s\"\nresync = \"1h\"\nmax_apps_per_user = 20\nmax_total_apps = {APPS}\nmax_parallel = 8\n\n[policy]\napi_writes_per_minute = 100000\n\n[http]\n# wrk's 64 connections come from one address: past the default share of 32.\nmax_connections_per_address = 128\n"));
    write(&root.join("templates/bb-v1/template.toml"), &format!(
        "image = \"{IMAGE}\"\ncommand = [\"sleep\", \"3600\"]\nport = 8080\n[defaults]\nmemory = \"8m\"\ncpus = 0.05\n"));
    for i in 0..APPS {
        let path = format!("state/apps/user{}/app{}.toml", i / 20, i % 20);
        write(&root.join(path), "template = \"bb-v1\"\n");
    }
    let bin = env!("CARGO_BIN_EXE_berth");
    let berth = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    let token = berth(&["users", "add", "bench", "--admin"]);
    let serve = Command::new(bin)
        .args(["--root", root.to_str().unwrap(), "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = KillOnDrop(serve);
    let base = format!("http://127.0.0.1:{port}");
    // apply goes through the daemon only once its socket answers; wait for the API.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    berth(&["apply"]); // through the daemon: returns once all 200 run
    println!(
        "{APPS} apps converged under serve in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let key = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .arg(format!("{base}/apps/user0/app0/client-keys"))
        .output()
        .unwrap();
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let key = key["key"].as_str().expect("a client key").to_string();
    std::thread::sleep(Duration::from_millis(500));

    // Rounds of all three, interleaved, and the median of each: a burst of noise on a small
    // machine (dockerd settling after 200 creates) then hits every endpoint alike.
    let (mut floors, mut appss, mut bridges) = (vec![], vec![], vec![]);
    // The floor is sent the bridge's header too (it ignores it): both then read requests of
    // the same size, and the ratio is what the bridge's own work costs.
    let app_key = format!("X-App-Key: {key}");
    for _ in 0..ROUNDS {
        floors.push(wrk(&format!("{base}/healthz"), &app_key));
        let bearer = format!("Authorization: Bearer {token}");
        appss.push(wrk(&format!("{base}/apps"), &bearer));
        bridges.push(wrk(&format!("{base}/bridge/apps/user0/app0"), &app_key));
    }
    let (floor, apps, bridge) = (medians(floors), medians(appss), medians(bridges));
    let show = |label: &str, (rps, p99): (f64, f64)| {
        println!(
            "{label}: {rps:.0} req/s ({:.2}x /healthz), p99 {p99:.2} ms ({:.2}x /healthz)",
            rps / floor.0,
            p99 / floor.1
        );
    };
    show("GET /healthz (the floor)", floor);
    show(&format!("GET /apps ({APPS} apps, admin)"), apps);
    show("GET /bridge/apps/user0/app0 (client key)", bridge);
    portal(&base, &token, floor);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", serve.0.id())).unwrap_or_default();
    if let Some(line) = rss.lines().find(|l| l.starts_with("VmRSS")) {
        println!(
            "serve resident memory with {APPS} apps after the load: {}",
            line[6..].trim()
        );
    }
    drop(serve);
    support::remove_instance(&instance);
}
