//! Job run containers (docs/guides/jobs.md): a one-off container of an app's spec with a
//! job's command, labelled `paas.type=job-run` (never `user-app`, so no pass observes,
//! plans or removes it), found again by label after a restart, its logs read bounded.

use std::collections::HashMap;

use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, LogsOptions};
use futures_util::StreamExt;

use super::{create_body, fail, Engine, EngineError};
use crate::model::desired::DesiredApp;
use crate::model::labels;

/// A job run container found on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRun {
    /// The container's id.
    pub id: String,
    /// `paas.job-run`: the run's id in the database.
    pub run: u64,
    /// Whether it still runs.
    pub running: bool,
    /// Whether it was made but never started (a berth killed between the two).
    pub created: bool,
}

impl Engine {
    /// Creates (not starts) the run container `name` of `app` with `command` and `labels`;
    /// `network` is the id of the user's network. No host port (the app holds it) and no
    /// alias (the app's name answers for the app only).
    pub(in crate::runtime) async fn create_job_run(
        &self,
        app: &DesiredApp,
        (name, command, labels): (&str, &[String], HashMap<String, String>),
        network: Option<&str>,
    ) -> Result<String, EngineError> {
        let mut body = create_body(&app.spec, &app.key.appname, labels, network);
        body.cmd = Some(command.to_vec());
        body.exposed_ports = None;
        if let Some(host) = body.host_config.as_mut() {
            host.port_bindings = None;
        }
        if let Some(endpoint) = body
            .networking_config
            .as_mut()
            .and_then(|n| n.endpoints_config.as_mut())
        {
            endpoint.values_mut().for_each(|e| e.aliases = None);
        }
        // Secrets reach the environment here and nowhere else, as for the app's container.
        let env = body.env.get_or_insert_with(Vec::new);
        env.extend(
            app.secret_env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose())),
        );
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let what = format!("create {name}");
        let created = self
            .docker
            .call("create")
            .create_container(Some(opts), body);
        let bound = self.docker.write_bound();
        let created = self
            .docker
            .bounded(("create", &what), bound, created)
            .await?;
        Ok(created.map_err(fail(what))?.id)
    }

    /// This instance's job run containers, in any state.
    pub(in crate::runtime) async fn job_runs(&self) -> Result<Vec<FoundRun>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}={}", labels::TYPE, labels::TYPE_JOB_RUN),
                format!("{}={}", labels::INSTANCE, self.instance),
            ],
        )]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .call("list")
            .list_containers(Some(opts))
            .await
            .map_err(fail("list job runs"))?;
        let found = list.into_iter().filter_map(|c| {
            let run = c.labels.as_ref()?.get(labels::JOB_RUN)?.parse().ok()?;
            use bollard::models::ContainerSummaryStateEnum as State;
            Some(FoundRun {
                id: c.id?,
                run,
                running: c.state == Some(State::RUNNING),
                created: c.state == Some(State::CREATED),
            })
        });
        Ok(found.collect())
    }

    /// The last `max` bytes the container wrote (stdout and stderr as they came).
    pub(in crate::runtime) async fn logs_bounded(&self, id: &str, max: usize) -> String {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: "all".into(),
            ..Default::default()
        };
        let mut stream = self.docker.call("logs").logs(id, Some(opts));
        let mut kept: std::collections::VecDeque<u8> = Default::default();
        while let Some(Ok(chunk)) = stream.next().await {
            kept.extend(chunk.into_bytes().iter());
            let over = kept.len().saturating_sub(max);
            kept.drain(..over);
        }
        let bytes: Vec<u8> = kept.into_iter().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
