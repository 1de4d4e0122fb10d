//! The label vocabulary berth writes on its containers (docs/reference/labels.md) and reads back to observe
//! them. Labels are how berth recognises its own containers: it never touches one without
//! `paas.type=user-app` and its own `paas.instance`.

use std::collections::HashMap;

use crate::model::desired::DesiredApp;

/// Marks a container as a berth app.
pub const TYPE: &str = "paas.type";
/// The only value of [`TYPE`] berth manages.
pub const TYPE_USER_APP: &str = "user-app";
/// Which berth instance owns it.
pub const INSTANCE: &str = "paas.instance";
/// Owner user id.
pub const USERID: &str = "paas.userid";
/// App name.
pub const APPNAME: &str = "paas.appname";
/// Public host name, for a proxy.
pub const DOMAIN: &str = "paas.domain";
/// Template id.
pub const TEMPLATE: &str = "paas.template";
/// blake3 of the canonical spec: the whole "did it change?" test.
pub const SPEC_HASH: &str = "paas.spec-hash";
/// The canonical spec with env values as digests, so `plan` can say which field changed.
pub const SPEC: &str = "paas.spec";

/// The value of [`TYPE`] on a job run's container: never [`TYPE_USER_APP`], so no pass
/// observes, plans or removes it.
pub const TYPE_JOB_RUN: &str = "job-run";
/// A job run's job name.
pub const JOB: &str = "paas.job";
/// A job run's id in the database.
pub const JOB_RUN: &str = "paas.job-run";

/// The value of [`TYPE`] on a user's network.
pub const TYPE_USER_NETWORK: &str = "user-network";
/// On a volume a rename made for the new name: the old app whose volume it copies, so a
/// rename cut short knows the half-filled volume is its own to fill again.
pub const RENAMED_FROM: &str = "paas.renamed-from";
/// `paas.type` of an app's named volume.
pub const TYPE_APP_VOLUME: &str = "app-volume";

/// The labels of `userid`'s network under `instance`.
pub fn for_network(instance: &str, userid: &str) -> HashMap<String, String> {
    HashMap::from([
        (TYPE.to_string(), TYPE_USER_NETWORK.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (USERID.to_string(), userid.to_string()),
    ])
}

/// Labels of an app's named volume: whose it is, so only a purge of that app removes it.
pub fn for_volume(instance: &str, key: &crate::model::names::AppKey) -> HashMap<String, String> {
    HashMap::from([
        (TYPE.to_string(), TYPE_APP_VOLUME.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (USERID.to_string(), key.userid.clone()),
        (APPNAME.to_string(), key.appname.clone()),
    ])
}

/// Docker `label` filters that select exactly this instance's app containers.
pub fn instance_filters(instance: &str) -> Vec<String> {
    vec![
        format!("{TYPE}={TYPE_USER_APP}"),
        format!("{INSTANCE}={instance}"),
    ]
}

/// Every label of one app's container.
pub fn for_app(app: &DesiredApp, instance: &str) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (TYPE.to_string(), TYPE_USER_APP.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (USERID.to_string(), app.key.userid.clone()),
        (APPNAME.to_string(), app.key.appname.clone()),
        (TEMPLATE.to_string(), app.spec.template.clone()),
        (SPEC_HASH.to_string(), app.hash.clone()),
        (SPEC.to_string(), app.spec.for_label().canonical_json()),
    ]);
    l.insert(
        DOMAIN.to_string(),
        app.spec.domain.clone().unwrap_or_default(),
    );
    l
}

/// Labels of a run of `app`'s `job` numbered `run`.
pub fn for_job_run(
    app: &DesiredApp,
    instance: &str,
    job: &str,
    run: u64,
) -> HashMap<String, String> {
    HashMap::from([
        (TYPE.to_string(), TYPE_JOB_RUN.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (USERID.to_string(), app.key.userid.clone()),
        (APPNAME.to_string(), app.key.appname.clone()),
        (SPEC_HASH.to_string(), app.hash.clone()),
        (JOB.to_string(), job.to_string()),
        (JOB_RUN.to_string(), run.to_string()),
    ])
}
