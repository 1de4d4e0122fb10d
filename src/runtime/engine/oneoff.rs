//! One-off job containers (a template's shared install): created, run to the end within a
//! time limit, their last lines read, and removed, whatever happened. They carry berth's
//! instance label but not the app type, so no pass ever sees them as an app's.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{fail, Engine, EngineError};
use crate::model::labels;

/// What to run.
pub struct Job<'a> {
    /// The container's name (a leftover of that name is removed first).
    pub name: String,
    /// The image (present: the caller made sure of it).
    pub image: &'a str,
    /// The command.
    pub command: &'a [String],
    /// Its working directory.
    pub workdir: &'a str,
    /// `host:container[:ro]` bind mounts.
    pub binds: Vec<String>,
    /// `NAME=value` environment.
    pub env: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
    /// Capabilities it keeps (every other one is dropped): a copy that must read and keep
    /// every owner's files needs `CHOWN`, `DAC_OVERRIDE`, `FOWNER` and `FSETID`.
    pub cap_add: Vec<String>,
    /// Run as root with the image's entrypoint cleared (a copy must not depend on how the
    /// image starts its app, nor run as its app's user).
    pub as_root: bool,
    /// Written to its standard input, then closed: a secret it needs (a repository's
    /// password) reaches it this way, never through its environment, which the engine keeps
    /// on disk with the container's config.
    pub stdin: Option<crate::model::secrets::SecretValue>,
    /// How many of its last output lines to keep (at least 30).
    pub tail: u32,
}

/// How a job ended.
pub struct Ended {
    /// Its exit code (`None`: killed at the time limit).
    pub code: Option<i64>,
    /// Its last lines.
    pub tail: String,
}

impl Engine {
    /// Runs `job` to its end and removes its container.
    pub(in crate::runtime) async fn run_once(&self, job: Job<'_>) -> Result<Ended, EngineError> {
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = self
            .docker
            .call("remove")
            .remove_container(&job.name, Some(force.clone()))
            .await;
        let opts = CreateContainerOptions {
            name: Some(job.name.clone()),
            ..Default::default()
        };
        self.docker
            .call("create")
            .create_container(Some(opts), job_body(&job, &self.instance))
            .await
            .map_err(fail(format!("create {}", job.name)))?;
        let ended = self.started_and_waited(&job).await;
        let tail = self.tail_of(&job.name, job.tail.max(30)).await;
        let _ = self
            .docker
            .call("remove")
            .remove_container(&job.name, Some(force))
            .await;
        Ok(Ended { code: ended?, tail })
    }

    async fn started_and_waited(&self, job: &Job<'_>) -> Result<Option<i64>, EngineError> {
        let input = match &job.stdin {
            Some(_) => Some(self.attach_stdin(&job.name).await?),
            None => None,
        };
        self.docker
            .call("start")
            .start_container(
                &job.name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(fail(format!("start {}", job.name)))?;
        if let (Some(mut input), Some(secret)) = (input, &job.stdin) {
            use tokio::io::AsyncWriteExt;
            let line = format!("{}\n", secret.expose());
            let fed = async {
                input.write_all(line.as_bytes()).await?;
                input.shutdown().await
            };
            // A job that exits before reading its input says so by its exit code.
            let _ = fed.await;
        }
        let mut wait = self
            .docker
            .call("wait")
            .wait_container(&job.name, None::<WaitContainerOptions>);
        match tokio::time::timeout(job.timeout, wait.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(r))) => Ok(Some(r.status_code)),
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
                Ok(Some(code))
            }
            Ok(Some(Err(e))) => Err(fail(format!("wait for {}", job.name))(e)),
            Ok(None) => Ok(Some(-1)),
        }
    }

    /// The container's standard input, attached before its start so nothing is missed.
    async fn attach_stdin(
        &self,
        name: &str,
    ) -> Result<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>, EngineError> {
        let opts = bollard::query_parameters::AttachContainerOptions {
            stdin: true,
            stream: true,
            ..Default::default()
        };
        let attached = self
            .docker
            .call("attach")
            .attach_container(name, Some(opts))
            .await
            .map_err(fail(format!("attach {name}")))?;
        Ok(attached.input)
    }

    async fn tail_of(&self, name: &str, lines: u32) -> String {
        let chunks: Vec<_> = self.logs(name, lines, false).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flatten()
            .flat_map(|b| b.to_vec())
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

/// The job's container: hardened as an app's is, with a memory and process cap.
fn job_body(job: &Job<'_>, instance: &str) -> ContainerCreateBody {
    let labels = HashMap::from([
        (labels::TYPE.to_string(), "install-job".to_string()),
        (labels::INSTANCE.to_string(), instance.to_string()),
    ]);
    ContainerCreateBody {
        user: job.as_root.then(|| "0:0".to_string()),
        entrypoint: job.as_root.then(|| vec![String::new()]),
        image: Some(job.image.to_string()),
        cmd: Some(job.command.to_vec()),
        working_dir: Some(job.workdir.to_string()),
        open_stdin: Some(job.stdin.is_some()),
        stdin_once: Some(job.stdin.is_some()),
        attach_stdin: Some(job.stdin.is_some()),
        env: Some(job.env.clone()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(job.binds.clone()),
            memory: Some(1 << 30),
            pids_limit: Some(1024),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(job.cap_add.clone()),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}
