//! `runtime = "swarm"` against its floor, in one run, on a single-node swarm of this engine
//! (made for the run and left again, unless the engine already was in a swarm, which is then
//! left alone and the bench refuses to run) with a registry of the run's own:
//! - a no-op `berth apply` over 50 services against one raw service list call (bollard);
//! - one deploy (one app's files and `restart` changed: a new image built, pushed, the service
//!   updated, and waited for until Swarm calls the update complete, its 5 s monitor of the new
//!   task included) against a raw `docker service update --detach=false` of one service.
//!
//! Run: `cargo bench --bench swarm` (needs the engine, `berth-test-busybox:1` and
//! `docker-registry`: `scripts/ensure-docker.sh && scripts/build-test-image.sh &&
//! scripts/ensure-tools.sh`).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APPS: usize = 50;
const TEMPLATE: &str = "image = \"berth-test-busybox:1\"\ncommand = [\"sleep\", \"3600\"]\nport = 8080\n\
[[mounts]]\nsource = \"{app_dir}\"\ntarget = \"/work\"\n[defaults]\nmemory = \"16m\"\ncpus = 0.05\n";

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Everything the run made, removed in order: services, images, registry, the swarm.
struct Run {
    instance: String,
    registry: Child,
    address: String,
    left_swarm: bool,
}

impl Drop for Run {
    fn drop(&mut self) {
        let filter = format!("label=paas.instance={}", self.instance);
        for id in docker(&["service", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker(&["service", "rm", id]);
        }
        let ours = format!("{}/berth-{}/", self.address, self.instance);
        let images = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        for image in images.lines().filter(|i| i.starts_with(&ours)) {
            docker(&["image", "rm", "-f", image]);
        }
        let _ = self.registry.kill();
        if self.left_swarm {
            docker(&["swarm", "leave", "--force"]);
        }
        support::remove_instance(&self.instance);
    }
}

fn start(root: &Path, instance: &str) -> Run {
    let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(
        state, "inactive",
        "this engine is in a swarm already; the bench leaves it alone"
    );
    docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let config = root.join("registry.yml");
    let data = root.join("registry");
    write(&config, &format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n", data.display()));
    let registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    while std::net::TcpStream::connect(&address).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Run {
        instance: instance.to_string(),
        registry,
        address,
        left_swarm: true,
    }
}

fn apply(root: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .arg("apply")
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let instance = format!("swbench{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run = start(root, &instance);
    write(&root.join("berth.toml"), &format!(
        "instance = \"{instance}\"\nruntime = \"swarm\"\nregistry = \"{}\"\nmax_apps_per_user = {APPS}\nmax_total_apps = {APPS}\n[policy]\nmax_memory_per_user = \"4g\"\n",
        run.address));
    write(&root.join("templates/sleep-v1/template.toml"), TEMPLATE);
    for i in 0..APPS {
        write(&root.join(format!("apps/bench/app{i}/msg")), "hello\n");
        write(
            &root.join(format!("state/apps/bench/app{i}.toml")),
            "template = \"sleep-v1\"\nrestart = \"0\"\n",
        );
    }
    let cold = apply(root);
    let noop = median((0..5).map(|_| apply(root)).collect());
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("paas.instance={instance}")],
    )]);
    let mut raw = Vec::new();
    for _ in 0..5 {
        let opts = bollard::query_parameters::ListServicesOptions {
            filters: Some(filters.clone()),
            status: Some(true),
        };
        let t = Instant::now();
        let listed = docker.list_services(Some(opts)).await.unwrap();
        raw.push(t.elapsed());
        assert_eq!(listed.len(), APPS);
    }
    let raw_list = median(raw);
    println!("swarm, {APPS} services: cold start {}; no-op apply {} (median of 5) vs one raw service list {} (median of 5): {:.1}x",
        ms(cold), ms(noop), ms(raw_list), noop.as_secs_f64() / raw_list.as_secs_f64());
    let (deploy, floor) = deploys(root, &instance);
    println!("swarm deploy of one app (build + push + service update): {} (median of 3) vs raw `docker service update --force --detach=false` of one service (waits for Swarm to call it complete, as berth does): {} (median of 3): {:.2}x",
        ms(deploy), ms(floor), deploy.as_secs_f64() / floor.as_secs_f64());
    drop(run);
}

/// Three berth deploys of app0 (new files, new `restart`) and three raw forced updates of
/// app1, each waited for until Swarm calls it complete.
fn deploys(root: &Path, instance: &str) -> (Duration, Duration) {
    let mut berth = Vec::new();
    for n in 1..=3 {
        write(&root.join("apps/bench/app0/msg"), &format!("hello {n}\n"));
        write(
            &root.join("state/apps/bench/app0.toml"),
            &format!("template = \"sleep-v1\"\nrestart = \"{n}\"\n"),
        );
        berth.push(apply(root));
    }
    let service = format!("paas-app-{instance}-bench-app1");
    let mut raw = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new("docker")
            // Waits as berth does: until Swarm calls the update complete, its 5 s monitor
            // of the new task included.
            .args([
                "service",
                "update",
                "--force",
                "--detach=false",
                "--quiet",
                &service,
            ])
            .output()
            .unwrap();
        raw.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (median(berth), median(raw))
}
