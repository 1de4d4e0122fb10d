//! Scheduled jobs under `serve` (docs/guides/jobs.md): a run on schedule with its output and
//! exit code kept and the app's container untouched; `forbid` skipping while a slow run is in
//! flight, over several ticks of a clock moved by libfaketime; a timeout that kills; a run
//! asked for now, and refused under `forbid`; a deploy during a run leaving it running; berth
//! SIGKILLed during a run, the restarted one following the same run to its end; a broken schedule freezing the app with the field
//! named while its container keeps running.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::api::{add_user, Api};
use crate::support::{wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(60);

/// A clock for `serve` that starts `before` seconds ahead of a minute boundary and can be
/// moved forward.
struct FakeClock {
    file: std::path::PathBuf,
    lib: String,
    offset: i64,
}

impl FakeClock {
    fn new(root: &Path, before: u64) -> FakeClock {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let boundary = (now / 60 + 2) * 60;
        let offset = (boundary - before) as i64 - now as i64;
        let clock = FakeClock {
            file: root.join("clock-offset"),
            lib: crate::support::libfaketime(),
            offset,
        };
        clock.write();
        clock
    }

    fn write(&self) {
        std::fs::write(&self.file, format!("{:+}\n", self.offset)).unwrap();
    }

    fn forward(&mut self, secs: i64) {
        self.offset += secs;
        self.write();
    }

    fn serve(&self, root: &TestRoot) -> Serve {
        let file = self.file.display().to_string();
        let env = [
            ("LD_PRELOAD", self.lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        Serve::start_env(root, &env)
    }
}

fn manifest(job: &str) -> String {
    format!("template = \"bb-v1\"\n\n[[jobs]]\nname = \"tick\"\n{job}\n")
}

/// `alice/web` with `job` under a started `serve`, once its scheduler knows the job; the
/// daemon, its API and alice's token.
async fn serving_job(root: &TestRoot, job: &str) -> (Serve, Api, String) {
    let alice = add_user(root, "alice", false).await;
    root.write_manifest("alice", "web", &manifest(job));
    let mut serve = Serve::start(root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    wait_until(T, "the scheduler to know the job", || async {
        jobs_of(&api, &alice).await["jobs"]
            .as_array()
            .is_some_and(|j| !j.is_empty())
    })
    .await;
    (serve, api, alice)
}

async fn jobs_of(api: &Api, token: &str) -> Value {
    let r = api.get("/apps/alice/web/jobs", token).await;
    r.expect(200);
    r.json()
}

fn runs(v: &Value) -> Vec<Value> {
    v["runs"].as_array().cloned().unwrap_or_default()
}

fn with_result<'a>(v: &'a Value, result: &str) -> Vec<&'a Value> {
    let all = v["runs"].as_array().map(|a| a.iter()).into_iter().flatten();
    all.filter(|r| r["result"] == result).collect()
}

/// Job run containers of this root's instance, in any state.
fn run_containers(root: &TestRoot) -> Vec<String> {
    containers(root, "-a")
}

/// Job run containers of this root's instance that run (`-a`: in any state).
fn containers(root: &TestRoot, all: &str) -> Vec<String> {
    let out = crate::support::docker::docker_cli(&[
        "ps",
        all,
        "--filter",
        &format!("label=paas.instance={}", root.instance),
        "--filter",
        "label=paas.type=job-run",
        "--format",
        "{{.Names}}",
    ]);
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn a_job_runs_on_schedule_keeps_its_output_and_forbid_never_overlaps() {
    let root = TestRoot::new("jobtick").await;
    let alice = add_user(&root, "alice", false).await;
    let job = "schedule = \"* * * * *\"\ncommand = [\"sh\", \"-c\", \"echo ran-$MARK; exit 3\"]";
    let text =
        format!("template = \"bb-v1\"\n[env]\nMARK = \"m1\"\n\n[[jobs]]\nname = \"tick\"\n{job}\n");
    root.write_manifest("alice", "web", &text);
    let mut clock = FakeClock::new(root.path(), 15);
    let mut serve = clock.serve(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    let app_id = root.id("alice", "web").await;
    wait_until(
        Duration::from_secs(90),
        "the first scheduled run to end",
        || async { !with_result(&jobs_of(&api, &alice).await, "failed").is_empty() },
    )
    .await;
    let v = jobs_of(&api, &alice).await;
    let run = with_result(&v, "failed")[0].clone();
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_eq!(run["trigger"], "schedule", "{run}");
    assert_eq!(run["scheduled_for"].as_u64().unwrap() % 60, 0, "{run}");
    let one = api
        .get(&format!("/apps/alice/web/jobs/runs/{}", run["id"]), &alice)
        .await;
    one.expect(200);
    assert!(
        one.json()["run"]["logs"]
            .as_str()
            .unwrap()
            .contains("ran-m1"),
        "{}",
        one.text
    );
    wait_until(T, "the finished run's container to go", || async {
        run_containers(&root).is_empty()
    })
    .await;
    assert_eq!(
        root.id("alice", "web").await,
        app_id,
        "a job run must not touch the app's container"
    );
    let metrics = reqwest::get(format!("{}/metrics", serve.api_base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        crate::support::metric_value(&metrics, "berth_job_runs_total{result=\"failed\"}") >= 1,
        "{metrics}"
    );
    // A slow job under forbid: one run in flight, each later tick skipped, never a second container.
    let slow = "schedule = \"* * * * *\"\ncommand = [\"sleep\", \"600\"]";
    root.write_manifest("alice", "web", &manifest(slow));
    clock.forward(60);
    wait_until(T, "the slow run to start", || async {
        !with_result(&jobs_of(&api, &alice).await, "running").is_empty()
    })
    .await;
    for tick in 1..=3 {
        clock.forward(60);
        wait_until(T, "the next tick to be skipped", || async {
            with_result(&jobs_of(&api, &alice).await, "skipped").len() >= tick
        })
        .await;
        assert_eq!(run_containers(&root).len(), 1, "forbid ran two at once");
    }
    let v = jobs_of(&api, &alice).await;
    assert_eq!(with_result(&v, "running").len(), 1, "{v}");
    assert_eq!(v["jobs"][0]["running"].as_array().unwrap().len(), 1, "{v}");
    drop(serve);
}

#[tokio::test]
async fn a_run_now_a_refusal_under_forbid_and_a_timeout() {
    let root = TestRoot::new("jobnow").await;
    let alice = add_user(&root, "alice", false).await;
    let bob = add_user(&root, "bob", false).await;
    let job = "schedule = \"@yearly\"\ncommand = [\"sleep\", \"600\"]\ntimeout = \"4s\"";
    root.write_manifest("alice", "web", &manifest(job));
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    wait_until(T, "the scheduler to know the job", || async {
        jobs_of(&api, &alice).await["jobs"]
            .as_array()
            .is_some_and(|j| !j.is_empty())
    })
    .await;
    api.post("/apps/alice/web/jobs/tick/run", &bob, None)
        .await
        .expect(403);
    api.post("/apps/alice/web/jobs/nope/run", &alice, None)
        .await
        .expect(404);
    // Hostile reads: another user's runs, a run id that is not a number, a path name trick.
    api.get("/apps/alice/web/jobs", &bob).await.expect(403);
    api.get("/apps/alice/web/jobs/runs/1", &bob)
        .await
        .expect(403);
    api.get("/apps/alice/web/jobs/runs/1%2F..", &alice)
        .await
        .expect(400);
    api.get("/apps/alice/web/jobs/runs/99999", &alice)
        .await
        .expect(404);
    api.post("/apps/alice/web/jobs/..%2F..%2Fx/run", &alice, None)
        .await
        .expect(404);
    let started = api
        .post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await;
    started.expect(202);
    let id = started.json()["run"].as_u64().unwrap();
    let busy = api
        .post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await;
    busy.expect(409);
    assert!(busy.text.contains("forbid"), "{}", busy.text);
    wait_until(T, "the run to time out", || async {
        let r = api
            .get(&format!("/apps/alice/web/jobs/runs/{id}"), &alice)
            .await;
        r.json()["run"]["result"] == "timed_out"
    })
    .await;
    wait_until(T, "the killed run's container to go", || async {
        run_containers(&root).is_empty()
    })
    .await;
    let v = jobs_of(&api, &alice).await;
    assert_eq!(
        with_result(&v, "skipped").len(),
        1,
        "the refused run is recorded: {v}"
    );
    assert!(root
        .berth(&["jobs", "alice/web"])
        .await
        .expect_code(0)
        .contains("timed_out"));
    let cli = root.berth(&["jobs", "run", "alice/web", "tick"]).await;
    cli.expect_code(0).expect_contains("started run");
    assert!(root.running("alice", "web").await);
    drop(serve);
}

#[tokio::test]
async fn a_restarted_berth_follows_the_run_it_was_killed_during() {
    let root = TestRoot::new("jobkill").await;
    let job = "schedule = \"@yearly\"\ncommand = [\"sh\", \"-c\", \"sleep 15; echo finished\"]";
    let (mut serve, api, alice) = serving_job(&root, job).await;
    let id = api
        .post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await
        .json()["run"]
        .as_u64()
        .unwrap();
    wait_until(T, "the run's container to run", || async {
        containers(&root, "--filter=status=running").len() == 1
    })
    .await;
    // A deploy of the app during the run leaves the run alone.
    let app_id = root.id("alice", "web").await;
    let deployed =
        format!("template = \"bb-v1\"\nrestart = \"1\"\n\n[[jobs]]\nname = \"tick\"\n{job}\n");
    root.write_manifest("alice", "web", &deployed);
    wait_until(T, "the app to be deployed", || async {
        root.running("alice", "web").await && root.id("alice", "web").await != app_id
    })
    .await;
    assert_eq!(
        containers(&root, "--filter=status=running").len(),
        1,
        "the deploy stopped the run"
    );
    serve.kill();
    drop(serve);
    let container = run_containers(&root);
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    wait_until(T, "the same run to be followed to its end", || async {
        let r = api
            .get(&format!("/apps/alice/web/jobs/runs/{id}"), &alice)
            .await;
        r.json()["run"]["result"] == "succeeded"
    })
    .await;
    let r = api
        .get(&format!("/apps/alice/web/jobs/runs/{id}"), &alice)
        .await
        .json();
    assert!(
        r["run"]["logs"].as_str().unwrap().contains("finished"),
        "{r}"
    );
    assert_eq!(container.len(), 1);
    let v = jobs_of(&api, &alice).await;
    assert_eq!(runs(&v).len(), 1, "no second run started: {v}");
    assert!(serve
        .log()
        .contains("following a job run an earlier berth started"));
    // The last success outlives a restart, so an alert on its age cannot go quiet.
    serve.stop(Duration::from_secs(10));
    drop(serve);
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let series = "berth_job_last_success_timestamp_seconds{app=\"alice/web\",job=\"tick\"}";
    wait_until(T, "the last success to be exported again", || async {
        let m = reqwest::get(format!("{base}/metrics")).await.unwrap();
        crate::support::metric_value(&m.text().await.unwrap(), series) > 0
    })
    .await;
}

#[tokio::test]
async fn a_broken_schedule_freezes_the_app_and_leaves_it_running() {
    let root = TestRoot::new("jobbad").await;
    root.write_manifest(
        "alice",
        "web",
        &manifest("schedule = \"@hourly\"\ncommand = [\"true\"]"),
    );
    let serve = Serve::start(&root);
    root.wait_running("alice", "web", T).await;
    let id = root.id("alice", "web").await;
    root.write_manifest(
        "alice",
        "web",
        &manifest("schedule = \"61 * * * *\"\ncommand = [\"true\"]"),
    );
    wait_until(T, "the app to be frozen", || async {
        let status = root.berth(&["status"]).await;
        status.contains("frozen") && status.contains("[[jobs]] schedule")
    })
    .await;
    let status = root.berth(&["status"]).await;
    assert!(status.contains("web.toml:5:12"), "{}", status.text());
    assert_eq!(root.id("alice", "web").await, id);
    assert!(root.running("alice", "web").await);
    drop(serve);
}

#[tokio::test]
async fn after_hours_down_a_job_runs_once_and_a_late_one_is_missed() {
    let root = TestRoot::new("jobdown").await;
    let alice = add_user(&root, "alice", false).await;
    let text = "template = \"bb-v1\"\n\n[[jobs]]\nname = \"every\"\nschedule = \"* * * * *\"\ncommand = [\"true\"]\n\n[[jobs]]\nname = \"hourly\"\nschedule = \"0 * * * *\"\nstarting_deadline = \"5m\"\ncommand = [\"true\"]\n";
    root.write_manifest("alice", "web", text);
    let mut clock = FakeClock::new(root.path(), 40);
    let mut serve = clock.serve(&root);
    let api = Api::new(serve.api_base());
    wait_until(T, "the scheduler to know both jobs", || async {
        jobs_of(&api, &alice).await["jobs"]
            .as_array()
            .is_some_and(|j| j.len() == 2)
    })
    .await;
    serve.stop(Duration::from_secs(10));
    drop(serve);
    // Three hours and a half later by the clock, at half past an hour: 180 minutes and three
    // hours missed.
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fake = real + clock.offset;
    let target = ((fake + 3 * 3600) / 3600) * 3600 + 1800;
    clock.forward(target - fake);
    let mut serve = clock.serve(&root);
    let api = Api::new(serve.api_base());
    let after = |v: &Value, job: &str| -> Vec<Value> {
        let runs = runs(v).into_iter().filter(|r| r["job"] == job);
        runs.filter(|r| r["scheduled_for"].as_i64().unwrap() >= target - 3600)
            .collect()
    };
    wait_until(T, "the catch-up run and the missed record", || async {
        let v = jobs_of(&api, &alice).await;
        after(&v, "every")
            .iter()
            .any(|r| r["result"] == "succeeded")
            && !after(&v, "hourly").is_empty()
    })
    .await;
    let v = jobs_of(&api, &alice).await;
    let every = after(&v, "every");
    assert_eq!(every.len(), 1, "exactly one catch-up run: {v}");
    assert_eq!(every[0]["scheduled_for"].as_i64().unwrap(), target, "{v}");
    let hourly = after(&v, "hourly");
    assert_eq!(hourly.len(), 1, "{v}");
    assert_eq!(hourly[0]["result"], "missed", "{v}");
    assert_eq!(
        hourly[0]["scheduled_for"].as_i64().unwrap(),
        target - 1800,
        "{v}"
    );
}

#[tokio::test]
async fn a_run_whose_container_is_removed_by_hand_ends_and_frees_forbid() {
    let root = TestRoot::new("jobgone").await;
    let job = "schedule = \"@yearly\"\ncommand = [\"sleep\", \"600\"]";
    let (mut serve, api, alice) = serving_job(&root, job).await;
    let started = api
        .post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await;
    started.expect(202);
    let id = started.json()["run"].as_u64().unwrap();
    wait_until(T, "the run's container to run", || async {
        containers(&root, "--filter=status=running").len() == 1
    })
    .await;
    for name in run_containers(&root) {
        crate::support::docker::docker_cli(&["rm", "-f", &name]);
    }
    let path = format!("/apps/alice/web/jobs/runs/{id}");
    wait_until(T, "the removed run to end", || async {
        api.get(&path, &alice).await.json()["run"]["result"] == "failed"
    })
    .await;
    // Under `forbid`, the next run may start: nothing is left running.
    api.post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await
        .expect(202);
    serve.assert_alive();
}

#[tokio::test]
async fn deleting_an_app_stops_its_run_in_flight() {
    let root = TestRoot::new("jobdel").await;
    let job = "schedule = \"@yearly\"\ncommand = [\"sleep\", \"600\"]";
    let (mut serve, api, alice) = serving_job(&root, job).await;
    api.post("/apps/alice/web/jobs/tick/run", &alice, None)
        .await
        .expect(202);
    wait_until(T, "the run's container to run", || async {
        containers(&root, "--filter=status=running").len() == 1
    })
    .await;
    root.remove_manifest("alice", "web");
    wait_until(
        T,
        "the deleted app's run to be stopped and removed",
        || async { run_containers(&root).is_empty() },
    )
    .await;
    root.wait_gone("alice", "web", T).await;
    serve.assert_alive();
}
