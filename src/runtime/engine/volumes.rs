//! Apps' named volumes (docs/guides/volumes-and-rename.md): made, labelled as the app's, before a container that mounts
//! them is created; never removed by a deploy, a stop or a delete; removed only when a
//! confirmed purge removes the app. A volume of that name berth did not make is not used.

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::ListVolumesOptionsBuilder;

use super::{fail, Engine, EngineError};
use crate::model::desired::DesiredApp;
use crate::model::labels;
use crate::model::names::AppKey;

impl Engine {
    /// Makes every volume of `app` exist (an existing one of berth's for this app is kept
    /// as it is, data and all).
    pub(in crate::runtime) async fn ensure_volumes(
        &self,
        app: &DesiredApp,
    ) -> Result<(), EngineError> {
        let want = labels::for_volume(&self.instance, &app.key);
        for v in &app.spec.volumes {
            match self.docker.call("volume_inspect").inspect_volume(&v.volume).await {
                Ok(found) if want.iter().all(|(k, val)| found.labels.get(k) == Some(val)) => {}
                Ok(_) => {
                    return Err(EngineError {
                        op: format!("use volume {}", v.volume),
                        source: bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            message: "a volume of that name exists and is not this app's; remove or rename it".into(),
                        },
                    })
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    let request = VolumeCreateRequest {
                        name: Some(v.volume.clone()),
                        labels: Some(want.clone()),
                        ..Default::default()
                    };
                    self.docker
                        .call("volume_create")
                        .create_volume(request)
                        .await
                        .map_err(fail(format!("create volume {}", v.volume)))?;
                }
                Err(e) => return Err(fail(format!("inspect volume {}", v.volume))(e)),
            }
        }
        Ok(())
    }

    /// The host source of every mount of every container of this instance, in any state.
    pub(in crate::runtime) async fn mount_sources(
        &self,
    ) -> Result<std::collections::HashSet<String>, EngineError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&std::collections::HashMap::from([(
                "label",
                vec![format!("{}={}", labels::INSTANCE, self.instance)],
            )]))
            .build();
        let listed = self
            .docker
            .call("list")
            .list_containers(Some(opts))
            .await
            .map_err(fail("list containers"))?;
        let mounts = listed
            .into_iter()
            .flat_map(|c| c.mounts.unwrap_or_default());
        Ok(mounts.filter_map(|m| m.source).collect())
    }

    /// Removes every volume berth made for `key` (a confirmed purge); returns their names.
    pub(in crate::runtime) async fn remove_volumes(
        &self,
        key: &AppKey,
    ) -> Result<Vec<String>, EngineError> {
        let names = self.volumes_of(key).await?;
        for name in &names {
            self.remove_volume(name).await?;
        }
        Ok(names)
    }

    /// The names of the volumes berth made for `key`.
    pub(in crate::runtime) async fn volumes_of(
        &self,
        key: &AppKey,
    ) -> Result<Vec<String>, EngineError> {
        let filters: Vec<String> = labels::for_volume(&self.instance, key)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let opts = ListVolumesOptionsBuilder::new()
            .filters(&std::collections::HashMap::from([("label", filters)]))
            .build();
        let listed = self
            .docker
            .call("volume_list")
            .list_volumes(Some(opts))
            .await
            .map_err(fail("list volumes"))?;
        let mut names: Vec<String> = listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        Ok(names)
    }

    pub(in crate::runtime) async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .call("volume_remove")
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(fail(format!("remove volume {name}")))
    }

    /// The labels and creation time of volume `name`, `None` when there is no such volume.
    pub(in crate::runtime) async fn volume_labels(
        &self,
        name: &str,
    ) -> Result<Option<(std::collections::HashMap<String, String>, String)>, EngineError> {
        match self
            .docker
            .call("volume_inspect")
            .inspect_volume(name)
            .await
        {
            Ok(found) => Ok(Some((found.labels, found.created_at.unwrap_or_default()))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(fail(format!("inspect volume {name}"))(e)),
        }
    }

    /// Makes volume `name` with `labels`.
    pub(in crate::runtime) async fn create_volume(
        &self,
        name: &str,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .call("volume_create")
            .create_volume(request)
            .await
            .map(drop)
            .map_err(fail(format!("create volume {name}")))
    }
}
