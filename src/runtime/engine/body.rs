//! The container create body: a canonical spec translated into Docker's terms (limits,
//! hardening, logging, the published port, bind mounts and named volumes, the network).
//! Pure, so it is unit-tested without an engine.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, MountType,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::model::spec::ContainerSpec;

/// Translates a canonical spec into Docker's create body. Pure, so it is unit-tested.
/// `network_id` is the id of the network the spec names: given, the container names its
/// network by id (mode and endpoint), so a second network of that name cannot make its
/// start ambiguous.
pub fn create_body(
    spec: &ContainerSpec,
    appname: &str,
    labels: HashMap<String, String>,
    network_id: Option<&str>,
) -> ContainerCreateBody {
    let network = spec
        .network
        .as_ref()
        .map(|name| network_id.unwrap_or(name).to_string());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        working_dir: spec.workdir.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: Some(vec![format!("{}/tcp", spec.port)]),
        host_config: Some(HostConfig {
            network_mode: network.clone(),
            ..host_config(spec)
        }),
        // On the user's network the app answers to its app name.
        networking_config: network.map(|net| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net,
                EndpointSettings {
                    aliases: Some(vec![appname.to_string()]),
                    network_id: network_id.map(str::to_string),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Limits, hardening, logging, the published port and mounts.
fn host_config(spec: &ContainerSpec) -> HostConfig {
    let port_bindings = spec.host_port.map(|hp| {
        HashMap::from([(
            format!("{}/tcp", spec.port),
            Some(vec![PortBinding {
                host_ip: Some(spec.host_ip.clone()),
                host_port: Some(hp.to_string()),
            }]),
        )])
    });
    let mounts = spec
        .mounts
        .iter()
        .map(|m| bollard::models::Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .chain(spec.volumes.iter().map(|v| bollard::models::Mount {
            target: Some(v.target.clone()),
            source: Some(v.volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }))
        .collect();
    HostConfig {
        memory: Some(spec.memory as i64),
        memory_swap: Some(spec.memory as i64),
        nano_cpus: Some(spec.nano_cpus),
        pids_limit: Some(spec.pids_limit),
        init: Some(spec.init),
        security_opt: Some(spec.security_opt.clone()),
        cap_drop: Some(spec.cap_drop.clone()),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), spec.log_max_size.clone()),
                ("max-file".to_string(), spec.log_max_file.to_string()),
            ])),
        }),
        port_bindings,
        mounts: Some(mounts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_on(network: Option<&str>) -> ContainerSpec {
        serde_json::from_value(serde_json::json!({
            "template": "t", "image": "i", "command": [], "workdir": null, "env": {},
            "mounts": [], "memory": 1, "nano_cpus": 1, "pids_limit": 1, "port": 3000,
            "host_port": null, "host_ip": "127.0.0.1", "domain": null, "restart": null,
            "template_files": {}, "init": true, "security_opt": [], "cap_drop": [],
            "log_max_size": "10m", "log_max_file": 3, "network": network
        }))
        .unwrap()
    }

    #[test]
    fn a_users_network_is_named_by_id_when_known() {
        let body = create_body(&spec_on(Some("net")), "web", HashMap::new(), Some("abc"));
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("abc")
        );
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        let e = &endpoints["abc"];
        assert_eq!(e.network_id.as_deref(), Some("abc"));
        assert_eq!(e.aliases, Some(vec!["web".to_string()]));
        let body = create_body(&spec_on(Some("net")), "web", HashMap::new(), None);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("net")
        );
        let bridge = create_body(&spec_on(None), "web", HashMap::new(), Some("abc"));
        assert_eq!(bridge.host_config.unwrap().network_mode, None);
        assert!(bridge.networking_config.is_none());
    }
}
