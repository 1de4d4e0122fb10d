//! A cuttable path to the Docker engine: a unix socket that relays every connection to the
//! real engine's socket. A test points one berth at it (`DOCKER_HOST`) and cuts it to stage an
//! engine outage for that berth alone, leaving the engine (and every other test) untouched.

use std::path::PathBuf;

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The engine's own socket.
const ENGINE: &str = "/var/run/docker.sock";

/// One relay; cut on drop.
pub struct DockerRelay {
    dir: tempfile::TempDir,
    accept: Option<JoinHandle<()>>,
}

impl DockerRelay {
    /// A relay, up.
    pub fn start() -> DockerRelay {
        let dir = tempfile::Builder::new()
            .prefix("berth-relay-")
            .tempdir()
            .unwrap();
        let mut relay = DockerRelay { dir, accept: None };
        relay.restore();
        relay
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `DOCKER_HOST` for a berth that should reach the engine through this relay.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path().display())
    }

    /// Every connection, open or new, fails until [`restore`](Self::restore).
    pub fn cut(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(self.path());
    }

    /// Relays again.
    pub fn restore(&mut self) {
        self.cut();
        let listener = UnixListener::bind(self.path()).unwrap();
        self.accept = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(ENGINE).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }
}

impl Drop for DockerRelay {
    fn drop(&mut self) {
        self.cut();
    }
}
