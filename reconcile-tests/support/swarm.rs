//! A single-node swarm on the test engine, shared by the tests that need one and left as it
//! was found: the first lease makes the engine a swarm manager (when it is not one already),
//! the last one to go makes it leave again (only when a lease made it join). And a registry of
//! the test's own (Debian's `docker-registry`, plain HTTP on a loopback port, which Docker
//! trusts without configuration), stopped and its storage removed on drop.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// (leases held, whether a lease initialised the swarm).
static LEASES: Mutex<(usize, bool)> = Mutex::new((0, false));

fn swarm_state() -> String {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output()
        .expect("docker info");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The engine is a swarm manager while this lives.
pub struct SwarmLease;

impl SwarmLease {
    pub fn take() -> SwarmLease {
        let mut leases = LEASES.lock().unwrap_or_else(|e| e.into_inner());
        if leases.0 == 0 && swarm_state() != "active" {
            let out = Command::new("docker")
                .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
                .output()
                .expect("docker swarm init");
            assert!(
                out.status.success(),
                "swarm init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            leases.1 = true;
        }
        leases.0 += 1;
        SwarmLease
    }
}

impl Drop for SwarmLease {
    fn drop(&mut self) {
        let mut leases = LEASES.lock().unwrap_or_else(|e| e.into_inner());
        leases.0 -= 1;
        if leases.0 == 0 && leases.1 {
            let _ = Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .output();
            leases.1 = false;
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
