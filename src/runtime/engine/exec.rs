//! A command run inside an app's running container with its standard streams tied to files
//! (a backup's dump, a restore's input): the container's own image, user, environment and
//! limits, so a template's dump runs exactly where its data is. Its exit status is read from
//! the engine afterwards; a command still running at its time limit is reported as such.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{fail, Engine, EngineError};

/// How much of the command's standard error is kept for a failure's reason.
const STDERR_KEPT: usize = 4096;

/// How an exec ended.
pub struct ExecEnded {
    /// Its exit code (`None`: still running at the time limit).
    pub code: Option<i64>,
    /// The end of its standard error.
    pub stderr: String,
    /// Bytes written to the output file.
    pub bytes: u64,
}

/// The attached streams of a started exec.
type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;
type Input = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

impl Engine {
    /// Runs `command` in `container`; its standard input is `input` (then closed), its
    /// standard output goes to `output`.
    pub(in crate::runtime) async fn exec_with_files(
        &self,
        container: &str,
        command: &[String],
        input: Option<tokio::fs::File>,
        output: Option<tokio::fs::File>,
        limit: Duration,
    ) -> Result<ExecEnded, EngineError> {
        let what = format!("exec in {container}");
        let (id, stream, writer) = self
            .start_exec(container, command, input.is_some(), &what)
            .await?;
        let both = async {
            let (fed, drained) = tokio::join!(feed(input, writer), drain(stream, output, &what));
            // A command that stops reading early closes its input: that is its choice, and
            // its exit status says whether it worked.
            let _ = fed;
            drained
        };
        let (stderr, bytes) = match tokio::time::timeout(limit, both).await {
            Ok(r) => r?,
            Err(_) => {
                return Ok(ExecEnded {
                    code: None,
                    stderr: format!("still running after {}s", limit.as_secs()),
                    bytes: 0,
                })
            }
        };
        let inspected = self
            .docker
            .call("exec_inspect")
            .inspect_exec(&id)
            .await
            .map_err(fail(what))?;
        Ok(ExecEnded {
            code: inspected.exit_code,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            bytes,
        })
    }

    /// Creates and starts the exec, attached; its id and streams.
    async fn start_exec(
        &self,
        container: &str,
        command: &[String],
        stdin: bool,
        what: &str,
    ) -> Result<(String, Output, Input), EngineError> {
        let opts = CreateExecOptions::<String> {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let created = self
            .docker
            .call("exec_create")
            .create_exec(container, opts)
            .await
            .map_err(fail(what))?;
        let start = StartExecOptions {
            output_capacity: Some(1 << 20),
            ..Default::default()
        };
        let started = self
            .docker
            .call("exec_start")
            .start_exec(&created.id, Some(start))
            .await
            .map_err(fail(what))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((created.id, output, input)),
            StartExecResults::Detached => {
                Err(fail(what)(bollard::errors::Error::DockerStreamError {
                    error: "the engine started the command detached".into(),
                }))
            }
        }
    }
}

/// Copies `input` (if any) to the command's standard input, then closes it.
async fn feed(input: Option<tokio::fs::File>, mut writer: Input) -> std::io::Result<()> {
    if let Some(mut file) = input {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n]).await?;
        }
    }
    writer.shutdown().await
}

/// Reads the command's output to its end: standard output into `output` (synced), the end
/// of standard error kept; answers that and the bytes of standard output.
async fn drain(
    mut stream: Output,
    mut output: Option<tokio::fs::File>,
    what: &str,
) -> Result<(Vec<u8>, u64), EngineError> {
    let mut stderr = Vec::new();
    let mut bytes = 0u64;
    while let Some(frame) = stream.next().await {
        match frame.map_err(fail(what))? {
            LogOutput::StdOut { message } => {
                bytes += message.len() as u64;
                if let Some(out) = output.as_mut() {
                    out.write_all(&message).await.map_err(io(what))?;
                }
            }
            LogOutput::StdErr { message } => keep_tail(&mut stderr, &message),
            _ => {}
        }
    }
    if let Some(out) = output.as_mut() {
        out.flush().await.map_err(io(what))?;
        out.sync_all().await.map_err(io(what))?;
    }
    Ok((stderr, bytes))
}

/// Appends `more` to `kept`, keeping only the last [`STDERR_KEPT`] bytes.
fn keep_tail(kept: &mut Vec<u8>, more: &[u8]) {
    kept.extend_from_slice(more);
    if kept.len() > STDERR_KEPT {
        kept.drain(..kept.len() - STDERR_KEPT);
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| fail(format!("{what}: writing its output"))(bollard::errors::Error::IOError { err: e })
}
