//! `runtime = "swarm"` (docs/guides/swarm.md) on a single-node swarm of the test engine, with a registry of
//! the test's own: an app becomes a service running an image of its template plus its
//! workspace (not a bind mount); a no-op pass writes nothing; an edit and a deploy roll the
//! service to a new image; a hand-removed service comes back; stopped means no task; a
//! rollback to an earlier manifest reuses the image built for it; a delete removes the
//! service. The swarm is left as it was found.

use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::docker::docker_cli;
use crate::support::swarm::SwarmRoot;
use crate::support::{wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(60);

/// Prints its workspace's `msg` and stays up.
const SHOW: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "cat /work/msg; exec sleep 3600"]
workdir = "/"
port = 8080

[[mounts]]
source = "{app_dir}"
target = "/work"

[defaults]
memory = "32m"
cpus = 0.25
"#;

fn service(root: &TestRoot) -> String {
    format!("paas-app-{}-alice-web", root.instance)
}

/// `docker service inspect` of the app's service, one Go template field.
fn inspect(root: &TestRoot, field: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["service", "inspect", "--format", field, &service(root)])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What the service's running task printed (its workspace's `msg`, from the image).
fn task_says(root: &TestRoot) -> String {
    let filter = format!("label=com.docker.swarm.service.name={}", service(root));
    let ids = docker_cli(&["ps", "-q", "--filter", &filter]);
    let Some(id) = ids.split_whitespace().next() else {
        return String::new();
    };
    let out = std::process::Command::new("docker")
        .args(["logs", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn apply(root: &TestRoot) {
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn an_app_runs_as_a_service_from_an_image_of_its_workspace_and_follows_its_manifest() {
    let swarm = SwarmRoot::new("swarm").await;
    let root = &swarm.root;
    root.write_template("show-v1", SHOW);
    let dir = root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    // A whole line: Docker logs a line only once it ends.
    std::fs::write(dir.join("msg"), "v1\n").unwrap();
    let v1 = "template = \"show-v1\"\nrestart = \"1\"\nconstraints = [\"node.role == manager\"]\n";
    root.write_manifest("alice", "web", v1);
    apply(root).await;
    let image1 = inspect(root, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").expect("a service");
    assert!(
        image1.starts_with(&format!(
            "{}/berth-{}/alice-web:",
            swarm.registry, root.instance
        )),
        "{image1}"
    );
    let mounts = inspect(root, "{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}").unwrap();
    assert!(
        !mounts.contains("bind"),
        "the workspace is in the image, not mounted: {mounts}"
    );
    let placed = inspect(root, "{{json .Spec.TaskTemplate.Placement.Constraints}}").unwrap();
    assert_eq!(placed, r#"["node.role == manager"]"#);
    wait_until(T, "the task to print v1", || async {
        task_says(root) == "v1"
    })
    .await;
    let (tag1, digest1) = image1.split_once('@').expect("pinned by digest");
    assert!(digest1.starts_with("sha256:"), "{image1}");
    let built1 = docker_cli(&["image", "inspect", "--format", "{{.Id}}", tag1]);

    let plan = root.berth(&["plan", "--exit-code"]).await;
    assert_eq!(plan.code, Some(0), "a no-op: {}", plan.text());
    let version = inspect(root, "{{.Version.Index}}").unwrap();
    apply(root).await;
    assert_eq!(
        inspect(root, "{{.Version.Index}}").unwrap(),
        version,
        "no write on a no-op"
    );

    // A new file and a deploy: a new image, rolled out by Swarm.
    std::fs::write(dir.join("msg"), "v2\n").unwrap();
    root.write_manifest("alice", "web", "template = \"show-v1\"\nrestart = \"2\"\n");
    apply(root).await;
    let image2 = inspect(root, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").unwrap();
    assert_ne!(image2, image1);
    wait_until(T, "the task to print v2", || async {
        task_says(root) == "v2"
    })
    .await;

    // Back to the first manifest: the image built for it runs again, not a rebuild of today's files.
    root.write_manifest("alice", "web", v1);
    apply(root).await;
    let back = inspect(root, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").unwrap();
    assert_eq!(back, image1);
    assert_eq!(
        docker_cli(&["image", "inspect", "--format", "{{.Id}}", tag1]),
        built1
    );
    wait_until(T, "the task to print v1 again", || async {
        task_says(root) == "v1"
    })
    .await;

    // Removed by hand: back on the next pass. Stopped: no task.
    docker_cli(&["service", "rm", &service(root)]);
    apply(root).await;
    assert!(inspect(root, "{{.ID}}").is_some(), "the service is back");
    root.write_manifest("alice", "web", &format!("{v1}state = \"stopped\"\n"));
    apply(root).await;
    let replicas = inspect(root, "{{.Spec.Mode.Replicated.Replicas}}").unwrap();
    assert_eq!(replicas, "0");

    root.remove_manifest("alice", "web");
    apply(root).await;
    assert!(inspect(root, "{{.ID}}").is_none(), "the service is gone");
}

#[tokio::test]
async fn swarm_settings_are_checked_and_replicas_need_swarm() {
    let root = TestRoot::new("swarmcfg").await;
    root.config(&[("runtime", "\"swarm\"")], "");
    let run = root.berth(&["plan"]).await;
    assert_eq!(run.code, Some(2), "{}", run.text());
    assert!(run.text().contains("needs registry"), "{}", run.text());
    root.config(&[], "");
    root.write_manifest("alice", "web", "template = \"bb-v1\"\nreplicas = 3\n");
    let run = root.berth(&["plan"]).await;
    assert!(
        run.text()
            .contains("replicas = 3 needs runtime = \"swarm\""),
        "{}",
        run.text()
    );
    assert!(root.container("alice", "web").await.is_none());
    let constrained = "template = \"bb-v1\"\nconstraints = [\"node.role == manager\"]\n";
    root.write_manifest("alice", "web", constrained);
    let run = root.berth(&["plan"]).await;
    assert!(
        run.text().contains("constraints need runtime = \"swarm\""),
        "{}",
        run.text()
    );
    root.config(
        &[("runtime", "\"swarm\""), ("registry", "\"127.0.0.1:5000\"")],
        "",
    );
    root.write_template(
        "vol-v1",
        "image = \"berth-test-busybox:1\"\nport = 80\n[[volumes]]\nname = \"data\"\ntarget = \"/data\"\n",
    );
    root.write_manifest("alice", "db", "template = \"vol-v1\"\nreplicas = 2\n");
    let run = root.berth(&["validate"]).await;
    assert!(
        run.text()
            .contains("has [[volumes]]: with runtime = \"swarm\" such an app runs one task"),
        "{}",
        run.text()
    );
    root.write_manifest("alice", "db", "template = \"vol-v1\"\n");
    let run = root.berth(&["validate"]).await;
    assert_eq!(
        run.code,
        Some(0),
        "one task with a volume is fine: {}",
        run.text()
    );
    root.remove_manifest("alice", "db");
    // As TOML writes them: no operator, two, a control character, a third `=`, a bidi override.
    for bad in [
        r#""node.role""#,
        r#""a == b == c""#,
        r#""x\u0007 == y""#,
        r#""a === b""#,
        r#""disk == s\u202esd""#,
    ] {
        let text = format!("template = \"bb-v1\"\nconstraints = [{bad}]\n");
        root.write_manifest("alice", "web", &text);
        let run = root.berth(&["validate"]).await;
        assert!(
            run.text().contains("must be one comparison"),
            "{bad}: {}",
            run.text()
        );
    }
    ports_swarm_cannot_confine_are_frozen_naming_the_rule(&root).await;
}

/// A host port for one address and a domain app's engine-picked port would be open on every
/// address of every node: frozen naming `swarm_port_unconfined` until the manifest says every
/// address (and `host_ips` allows it) and the operator consents to domain ports, a consent
/// only swarm mode takes.
async fn ports_swarm_cannot_confine_are_frozen_naming_the_rule(root: &TestRoot) {
    let swarm = [("runtime", "\"swarm\""), ("registry", "\"127.0.0.1:5000\"")];
    let policy =
        "[policy]\ndomains = [\"*.example.test\"]\nhost_ips = [\"127.0.0.1\", \"0.0.0.0\"]\n";
    root.config(&swarm, policy);
    let web = "template = \"bb-v1\"\nhost_port = 18080\n";
    root.write_manifest("alice", "web", web);
    let site = "template = \"bb-v1\"\ndomain = \"site.example.test\"\n";
    root.write_manifest("alice", "site", site);
    let run = root.berth(&["validate"]).await;
    run.expect_code(1);
    run.expect_contains("alice/web: frozen: policy swarm_port_unconfined: in swarm mode host port 18080 would listen on every address of every node its tasks run on, not only on host_ip 127.0.0.1");
    run.expect_contains(
        "alice/site: frozen: policy swarm_port_unconfined: in swarm mode domain site.example.test",
    );
    run.expect_contains("swarm_publish_domain_ports = true allows it");
    root.write_manifest("alice", "web", &format!("{web}host_ip = \"0.0.0.0\"\n"));
    let consent = [swarm.as_slice(), &[("swarm_publish_domain_ports", "true")]].concat();
    root.config(&consent, policy);
    root.berth(&["validate"]).await.expect_code(0);
    root.config(&[("swarm_publish_domain_ports", "true")], policy);
    let run = root.berth(&["validate"]).await;
    run.expect_code(2);
    run.expect_contains("swarm_publish_domain_ports is for runtime = \"swarm\"");
}

/// Exits at once when `FAIL` is 1, so a deploy with it fails Swarm's update monitor.
const FLAKY: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "if [ \"$FAIL\" = 1 ]; then exit 3; fi; cat /work/msg; exec sleep 3600"]
workdir = "/"
port = 8080

[[mounts]]
source = "{app_dir}"
target = "/work"

[defaults]
memory = "32m"
cpus = 0.25
"#;

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn a_deploy_swarm_rolls_back_is_refused_and_not_tried_again() {
    let swarm = SwarmRoot::new("swarmfail").await;
    let root = &swarm.root;
    // A container left from runtime = "docker" holds the switch back until it is gone.
    let leftover = format!("berth-leftover-{}", root.instance);
    let labels = [
        "paas.type=user-app".to_string(),
        format!("paas.instance={}", root.instance),
        "paas.userid=alice".into(),
        "paas.appname=old".into(),
    ];
    let mut run = vec!["create", "--name", &leftover];
    for l in &labels {
        run.extend(["--label", l.as_str()]);
    }
    run.extend(["berth-test-busybox:1", "sleep", "1"]);
    docker_cli(&run);
    let refused = root.berth(&["apply"]).await;
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.text().contains("still has 1 container"),
        "{}",
        refused.text()
    );
    docker_cli(&["rm", "-f", &leftover]);
    root.write_template("show-v1", FLAKY);
    let dir = root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("msg"), "v1\n").unwrap();
    root.write_manifest("alice", "web", "template = \"show-v1\"\n");
    let serve = crate::support::Serve::start(root);
    wait_until(T, "the task to print v1", || async {
        task_says(root) == "v1"
    })
    .await;
    let image1 = inspect(root, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").unwrap();

    root.write_manifest(
        "alice",
        "web",
        "template = \"show-v1\"\n[env]\nFAIL = \"1\"\n",
    );
    wait_until(
        Duration::from_secs(90),
        "rollout-failed in berth status",
        || async {
            root.berth(&["status"])
                .await
                .text()
                .contains("rollout-failed")
        },
    )
    .await;
    let status = root.berth(&["status"]).await.text();
    assert!(status.contains("rolled back by Swarm"), "{status}");
    assert_eq!(
        inspect(root, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").unwrap(),
        image1,
        "Swarm put the working version back"
    );
    assert_eq!(task_says(root), "v1", "the old task kept serving");
    // Not rolled again: the service's spec stays as Swarm left it over three more passes,
    // each asked for through the daemon and waited for.
    let state = inspect(root, "{{.UpdateStatus.State}}").unwrap();
    assert_eq!(
        state, "rollback_completed",
        "berth waited for Swarm's rollback"
    );
    let version = inspect(root, "{{.Version.Index}}").unwrap();
    for _ in 0..3 {
        let pass = root.berth(&["apply"]).await;
        assert!(pass.contains("rollout-failed"), "{pass}");
    }
    assert_eq!(
        inspect(root, "{{.Version.Index}}").unwrap(),
        version,
        "{}",
        serve.log()
    );
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn on_a_swarm_a_broken_manifest_freezes_its_service_and_a_mass_removal_is_held() {
    let swarm = SwarmRoot::new("swarmguard").await;
    let root = &swarm.root;
    root.write_template("show-v1", SHOW);
    let apps = ["a1", "a2", "a3", "a4", "a5"];
    for app in apps {
        std::fs::create_dir_all(root.app_dir("alice", app)).unwrap();
        std::fs::write(root.app_dir("alice", app).join("msg"), "hi\n").unwrap();
        root.write_manifest("alice", app, "template = \"show-v1\"\n");
    }
    apply(root).await;
    let services = || {
        let filter = format!("label=paas.instance={}", root.instance);
        let ids = docker_cli(&["service", "ls", "-q", "--filter", &filter]);
        ids.split_whitespace().count()
    };
    assert_eq!(services(), 5);

    // A manifest that does not parse: its service is left exactly as it is.
    let a1 = format!("paas-app-{}-alice-a1", root.instance);
    let version = docker_cli(&["service", "inspect", "--format", "{{.Version.Index}}", &a1]);
    root.write_manifest("alice", "a1", "template = \"show-v1\"\nstate = \n");
    let run = root.berth(&["apply"]).await;
    assert!(run.text().contains("alice/a1: frozen"), "{}", run.text());
    let after = docker_cli(&["service", "inspect", "--format", "{{.Version.Index}}", &a1]);
    assert_eq!(after, version, "a frozen app's service is not touched");

    // Every manifest gone at once: the guard holds the removals until they are allowed.
    std::fs::rename(
        root.path().join("state/apps/alice"),
        root.path().join("away"),
    )
    .unwrap();
    let run = root.berth(&["apply"]).await;
    assert!(run.text().contains("prune blocked"), "{}", run.text());
    assert_eq!(services(), 5, "nothing removed past the guard");
    root.berth(&["apply", "--allow-mass-prune"])
        .await
        .expect_code(0);
    assert_eq!(services(), 0);
}

/// Counts its boots in its volume and prints the count.
const COUNTER: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "echo boot >> /data/boots; echo boots=$(wc -l < /data/boots); exec sleep 3600"]
workdir = "/"
port = 8080

[[volumes]]
name = "data"
target = "/data"

[defaults]
memory = "32m"
cpus = 0.25
"#;

fn volumes_of(root: &TestRoot) -> String {
    let label = format!("label=paas.instance={}", root.instance);
    docker_cli(&["volume", "ls", "-q", "--filter", &label])
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn on_a_swarm_an_app_keeps_its_volume_across_deploys_and_a_rename_until_a_purge() {
    let swarm = SwarmRoot::new("swarmvol").await;
    let root = &swarm.root;
    root.write_template("count-v1", COUNTER);
    root.write_manifest("alice", "db", "template = \"count-v1\"\nrestart = \"1\"\n");
    let alice = add_user(root, "alice", false).await;
    let mut serve = Serve::start(root);
    let api = Api::new(serve.api_base());
    let logs_say = |app: &'static str, want: &'static str| {
        let (api, alice) = (&api, &alice);
        async move {
            let path = format!("/apps/alice/{app}/logs?tail=10");
            api.get(&path, alice).await.text.contains(want)
        }
    };
    wait_until(T, "the first boot", || logs_say("db", "boots=1")).await;
    let placed = inspect_app(
        root,
        "db",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
    );
    assert!(
        placed.contains("node.id == "),
        "pinned where its volume is: {placed}"
    );
    assert_eq!(volumes_of(root).lines().count(), 1);

    // A deploy: a new task on the same node finds the same data.
    root.write_manifest("alice", "db", "template = \"count-v1\"\nrestart = \"2\"\n");
    wait_until(T, "the second boot", || logs_say("db", "boots=2")).await;

    // A rename: the old service goes, its volume is copied into the new name's, and the new
    // name's service boots a third time on the same data.
    let body = serde_json::json!({"appname": "store"});
    let asked = api.post("/apps/alice/db/rename", &alice, Some(body)).await;
    assert!(matches!(asked.status, 200 | 202), "{}", asked.text);
    wait_until(T, "the renamed app's third boot", || {
        logs_say("store", "boots=3")
    })
    .await;
    assert!(
        inspect_app(root, "db", "{{.ID}}").is_empty(),
        "the old service is gone"
    );
    wait_until(T, "one volume left, the new name's", || async {
        let left = volumes_of(root);
        left.lines().count() == 1 && left.contains("store")
    })
    .await;

    // A confirmed purge removes the service, then the volume it used, then the workspace.
    let ask = api.delete("/apps/alice/store?purge=true", &alice).await;
    ask.expect(202);
    let token = ask.json()["confirm"].as_str().unwrap().to_string();
    let path = format!("/apps/alice/store?purge=true&confirm={token}");
    api.delete(&path, &alice).await.expect(200);
    wait_until(T, "the purge to drop the volume", || async {
        volumes_of(root).trim().is_empty()
    })
    .await;
    assert!(
        inspect_app(root, "store", "{{.ID}}").is_empty(),
        "the service is gone"
    );
    assert!(
        !root.app_dir("alice", "store").exists(),
        "the workspace is purged"
    );
}

/// `docker service inspect` of `alice/<app>`'s service, one field; empty when there is none.
fn inspect_app(root: &TestRoot, app: &str, field: &str) -> String {
    let name = format!("paas-app-{}-alice-{app}", root.instance);
    let out = std::process::Command::new("docker")
        .args(["service", "inspect", "--format", field, &name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
