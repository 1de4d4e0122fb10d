//! Swarms on the test engine, one test at a time, each left as it was found. A
//! [`SwarmLease`] holds a process-wide lock for its whole test (swarm tests run one after
//! another, whatever else runs beside them), refuses an engine that is already in a swarm it
//! did not make, and makes the engine leave the swarm it initialised when dropped. And a
//! registry of the test's own (Debian's `docker-registry`, plain HTTP on a loopback port, which
//! Docker trusts without configuration), stopped and its storage removed on drop.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::TestRoot;

/// Held by the [`SwarmLease`] of the swarm test that runs.
static SWARM_TESTS: Mutex<()> = Mutex::new(());

fn swarm_state() -> String {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output()
        .expect("docker info");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn has_gwbridge() -> bool {
    Command::new("docker")
        .args(["network", "inspect", "docker_gwbridge"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The test engine's swarm, this test's alone while this lives.
pub struct SwarmLease {
    initialised: bool,
    had_gwbridge: bool,
    _turn: MutexGuard<'static, ()>,
}

impl SwarmLease {
    /// Waits for the swarm tests before this one to finish (blocking: each test has its own
    /// runtime thread), then checks that the engine is in no swarm.
    pub fn take() -> SwarmLease {
        let turn = SWARM_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let state = swarm_state();
        assert_eq!(
            state, "inactive",
            "the test engine is already in a swarm (LocalNodeState {state:?}) that no test \
             made: not touching it; `docker swarm leave --force` if it is a leftover"
        );
        SwarmLease {
            initialised: false,
            had_gwbridge: has_gwbridge(),
            _turn: turn,
        }
    }

    /// Makes the engine the manager of a new swarm advertised on `addr` (and listening there).
    pub fn init(&mut self, addr: &str) {
        let out = Command::new("docker")
            .args(["swarm", "init", "--advertise-addr", addr])
            .args(["--listen-addr", &format!("{addr}:2377")])
            .output()
            .expect("docker swarm init");
        assert!(
            out.status.success(),
            "swarm init on {addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.initialised = true;
    }

    /// [`take`](Self::take) and [`init`](Self::init) on `addr`.
    pub fn init_on(addr: &str) -> SwarmLease {
        let mut lease = SwarmLease::take();
        lease.init(addr);
        lease
    }
}

impl Drop for SwarmLease {
    fn drop(&mut self) {
        if !self.initialised {
            return;
        }
        let _ = Command::new("docker")
            .args(["swarm", "leave", "--force"])
            .output();
        if !self.had_gwbridge && has_gwbridge() {
            let _ = Command::new("docker")
                .args(["network", "rm", "docker_gwbridge"])
                .output();
        }
    }
}

/// A registry on `127.0.0.1:<port>`, its storage in a temp dir; stopped on drop.
pub struct Registry {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's docker-registry package)");
        let address = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Registry {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scripts/swarm-node.sh` with `args` (and `env`); its stdout, or a panic with its stderr.
fn swarm_node(args: &[&str], env: &[(&str, &str)]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/swarm-node.sh");
    // A default bridge on the node: berth's tasks join no network, and a host-mode port
    // is published through the bridge.
    let out = Command::new(script)
        .args(args)
        .env("BERTH_NODE_BRIDGE", "1")
        .envs(env.iter().copied())
        .output()
        .expect(script);
    assert!(
        out.status.success(),
        "swarm-node.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tags a registry's `tags/list` URL answers, through curl with `extra` arguments.
pub fn registry_tags(url: &str, extra: &[&str]) -> std::collections::BTreeSet<String> {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let tags = list["tags"].as_array().cloned().unwrap_or_default();
    tags.iter()
        .filter_map(|t| Some(t.as_str()?.to_string()))
        .collect()
}

/// The login the second node's registry asks for.
/// The password holds what must survive the file, JSON and basic auth: quotes, a backslash,
/// `$`, `:` and a space.
pub const REGISTRY_LOGIN: (&str, &str) = ("berth", r#"tw0 "n0des":$x\y"#);

/// A second engine on this machine (`scripts/swarm-node.sh up`: its own network namespace,
/// veth pair, data root and socket) and a TLS registry on the host side of its veth that both
/// engines trust and that asks for [`REGISTRY_LOGIN`] (`registry-up`). Dropped: the node
/// goes down, then the registry (its certificates leave `/etc/docker/certs.d`).
pub struct SecondNode {
    /// `berth-<name>` is its netns and hostname.
    pub name: String,
    /// `unix:///run/berth-<name>/docker.sock`.
    pub docker_host: String,
    /// Its address, in its namespace.
    pub node_addr: String,
    /// The host's end of its veth pair.
    pub host_addr: String,
    /// `<host_addr>:<port>`, empty until the registry answers.
    pub registry: String,
    registry_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl SecondNode {
    pub fn up() -> SecondNode {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("t{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
        let out = swarm_node(&["up", &name], &[]);
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k} in swarm-node.sh up: {out}"))
                .to_string()
        };
        let mut node = SecondNode {
            docker_host: field("DOCKER_HOST"),
            node_addr: field("NODE_ADDR"),
            host_addr: field("HOST_ADDR"),
            name,
            registry: String::new(),
            registry_port: None,
            dir: tempfile::tempdir().unwrap(),
        };
        let port = super::free_port();
        node.registry_port = Some(port);
        let dir = node.dir.path().join("registry");
        let (p, d) = (port.to_string(), dir.to_string_lossy().into_owned());
        let login = format!("{}:{}", REGISTRY_LOGIN.0, REGISTRY_LOGIN.1);
        let env = [("BERTH_REGISTRY_LOGIN", login.as_str())];
        swarm_node(&["registry-up", &p, &d, &node.host_addr], &env);
        node.registry = format!("{}:{port}", node.host_addr);
        node
    }

    /// berth.toml's `[registry_login]` for the registry, with `password` in a file in
    /// `root` (the right one is [`REGISTRY_LOGIN`]'s).
    pub fn registry_login_table(&self, root: &std::path::Path, password: &str) -> String {
        std::fs::write(root.join("registry-password"), format!("{password}\n")).unwrap();
        format!(
            "[registry_login]\nusername = {:?}\npassword_file = \"registry-password\"\n",
            REGISTRY_LOGIN.0
        )
    }

    /// The tags of `repo` (the path after the registry) in the node's registry, asked over
    /// TLS with its CA and the login.
    pub fn registry_tags(&self, repo: &str) -> std::collections::BTreeSet<String> {
        let url = format!("https://{}/v2/{repo}/tags/list", self.registry);
        let ca = self.dir.path().join("registry/ca.pem");
        let login = format!("{}:{}", REGISTRY_LOGIN.0, REGISTRY_LOGIN.1);
        registry_tags(&url, &["--cacert", &ca.to_string_lossy(), "-u", &login])
    }

    /// Joins the swarm the host's engine manages (advertised on `host_addr`) as a worker.
    pub fn join(&self) {
        let token = super::docker::docker_cli(&["swarm", "join-token", "-q", "worker"]);
        let out = Command::new("docker")
            .args([
                "-H",
                &self.docker_host,
                "swarm",
                "join",
                "--token",
                token.trim(),
            ])
            .args(["--advertise-addr", &self.node_addr])
            .args(["--listen-addr", &format!("{}:2377", self.node_addr)])
            .arg(format!("{}:2377", self.host_addr))
            .output()
            .expect("docker swarm join");
        assert!(
            out.status.success(),
            "swarm join: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The node's engine dies (SIGKILL), as on a machine lost: no leave, its containers
    /// orphaned until `down`.
    pub fn kill_engine(&self) {
        let pidfile = format!("/run/berth-{}/docker.pid", self.name);
        let pid = std::fs::read_to_string(&pidfile).expect("the node's pidfile");
        let out = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .output()
            .expect("kill");
        assert!(out.status.success(), "kill the node's dockerd");
    }

    /// `docker -H <node> args...`.
    pub fn docker(&self, args: &[&str]) -> String {
        let mut all = vec!["-H", &self.docker_host];
        all.extend_from_slice(args);
        super::docker::docker_cli(&all)
    }
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/swarm-node.sh");
        let _ = Command::new(script).args(["down", &self.name]).output();
        if let Some(port) = self.registry_port {
            let _ = Command::new(script)
                .args(["registry-down", &port.to_string()])
                .output();
        }
    }
}

/// Removes a test's services (and waits for their containers on this engine to go) and the
/// images it built under its registry; drop it before the node, the registry and the swarm.
pub struct ServiceCleanup {
    pub instance: String,
    pub registry: String,
}

impl Drop for ServiceCleanup {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            let out = Command::new("docker").args(args).output();
            out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let label = format!("label=paas.instance={}", self.instance);
        for id in run(&["service", "ls", "-q", "--filter", &label]).split_whitespace() {
            run(&["service", "rm", id]);
        }
        for _ in 0..60 {
            if run(&["ps", "-aq", "--filter", &label]).trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        for id in run(&["network", "ls", "-q", "--filter", &label]).split_whitespace() {
            run(&["network", "rm", id]);
        }
        let ours = format!("{}/berth-{}/", self.registry, self.instance);
        let images = run(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        for image in images.lines().filter(|i| i.starts_with(&ours)) {
            run(&["image", "rm", "-f", image]);
        }
    }
}

/// A root with `runtime = "swarm"` on a single-node swarm of this engine and a registry of
/// its own. Fields drop in order: the services and images, the registry, the swarm, the root.
pub struct SwarmRoot {
    _cleanup: ServiceCleanup,
    _registry: Registry,
    _lease: SwarmLease,
    pub root: TestRoot,
    pub registry: String,
}

impl SwarmRoot {
    pub async fn new(prefix: &str) -> SwarmRoot {
        let root = TestRoot::new(prefix).await;
        let lease = SwarmLease::init_on("127.0.0.1");
        let registry = Registry::start();
        let address = registry.address.clone();
        let quoted = format!("{address:?}");
        root.config(&[("runtime", "\"swarm\""), ("registry", &quoted)], "");
        SwarmRoot {
            _cleanup: ServiceCleanup {
                instance: root.instance.clone(),
                registry: address.clone(),
            },
            _registry: registry,
            _lease: lease,
            root,
            registry: address,
        }
    }

    /// Rewrites berth.toml: swarm mode with this registry, plus `overrides` and `extra`.
    pub fn config(&self, overrides: &[(&str, &str)], extra: &str) {
        let quoted = format!("{:?}", self.registry);
        let mut all = vec![("runtime", "\"swarm\""), ("registry", quoted.as_str())];
        all.extend_from_slice(overrides);
        self.root.config(&all, extra);
    }
}
