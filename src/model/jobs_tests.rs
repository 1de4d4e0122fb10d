use std::path::Path;
use std::time::Duration;

use super::*;
use crate::model::manifest::Manifest;

const FILE: &str = "state/apps/alice/web.toml";

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(Path::new(FILE), text).map_err(|e| e.to_string())
}

fn with_job(job: &str) -> String {
    format!("template = \"t\"\n[[jobs]]\n{job}\n")
}

#[test]
fn a_job_gets_its_defaults() {
    let m = parse(&with_job(
        "name = \"report\"\nschedule = \"0 3 * * *\"\ncommand = [\"node\", \"r.js\"]",
    ))
    .unwrap();
    let j = &m.jobs.0[0];
    assert_eq!(j.name, "report");
    assert_eq!(j.timezone, None);
    assert_eq!(j.concurrency, Concurrency::Forbid);
    assert_eq!(j.starting_deadline, Duration::from_secs(900));
    assert_eq!(j.timeout, Duration::from_secs(3600));
    assert_eq!(j.retries, 0);
    assert_eq!((j.history.succeeded, j.history.failed), (5, 10));
    let resolved = m.jobs.resolve().unwrap();
    assert_eq!(resolved[0].schedule.timezone(), "UTC");
}

#[test]
fn the_issue_example_parses() {
    let m = parse(&with_job(
        r#"name = "report"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
command = ["node", "scripts/report.js"]
concurrency = "replace"
starting_deadline = "5m"
timeout = "30m"
retries = 1
history = { succeeded = 2, failed = 0 }"#,
    ))
    .unwrap();
    let j = &m.jobs.0[0];
    assert_eq!(j.concurrency, Concurrency::Replace);
    assert_eq!(j.timeout, Duration::from_secs(1800));
    assert_eq!(j.starting_deadline, Duration::from_secs(300));
    assert_eq!(
        (j.retries, j.history.succeeded, j.history.failed),
        (1, 2, 0)
    );
    assert_eq!(j.timezone.as_deref(), Some("Europe/Berlin"));
}

#[test]
fn hostile_jobs_name_the_file_line_and_field() {
    let ok = "name = \"r\"\nschedule = \"* * * * *\"\ncommand = [\"true\"]";
    let cases = [
        (
            with_job("name = \"R\"\nschedule = \"* * * * *\"\ncommand = [\"x\"]"),
            "3:8",
            "[[jobs]] name",
        ),
        (
            with_job("name = \"r\"\nschedule = \"61 * * * *\"\ncommand = [\"x\"]"),
            "4:12",
            "[[jobs]] schedule",
        ),
        (
            with_job("name = \"r\"\nschedule = \"* * *\"\ncommand = [\"x\"]"),
            "4:12",
            "a schedule has five",
        ),
        (
            with_job(&format!("{ok}\ntimezone = \"Mars\"")),
            "6:12",
            "[[jobs]] timezone",
        ),
        (
            with_job("name = \"r\"\nschedule = \"* * * * *\"\ncommand = []"),
            "5:11",
            "[[jobs]] command",
        ),
        (
            with_job("name = \"r\"\nschedule = \"* * * * *\"\ncommand = [\"\"]"),
            "5:11",
            "program",
        ),
        (
            with_job("name = \"r\"\nschedule = \"* * * * *\"\ncommand = \"true\""),
            "5:11",
            "",
        ),
        (
            with_job(&format!("{ok}\ncommand = [\"a\\u0000\"]")),
            "",
            "duplicate key",
        ),
        (
            with_job(&format!("{ok}\nconcurrency = \"sometimes\"")),
            "6:15",
            "unknown variant",
        ),
        (
            with_job(&format!("{ok}\ntimeout = \"0s\"")),
            "6:11",
            "more than 0",
        ),
        (
            with_job(&format!("{ok}\ntimeout = \"soon\"")),
            "6:11",
            "[[jobs]] timeout",
        ),
        (
            with_job(&format!("{ok}\nstarting_deadline = \"9w\"")),
            "6:21",
            "over a week",
        ),
        (
            with_job(&format!("{ok}\nretries = 11")),
            "6:11",
            "[[jobs]] retries",
        ),
        (
            with_job(&format!("{ok}\nretries = -1")),
            "6:11",
            "[[jobs]] retries",
        ),
        (
            with_job(&format!("{ok}\nhistory = {{ failed = 101 }}")),
            "",
            "[[jobs]] history",
        ),
        (
            with_job(&format!("{ok}\nhistory = {{ kept = 1 }}")),
            "",
            "unknown field `kept`",
        ),
        (
            with_job(&format!("{ok}\nimage = \"evil\"")),
            "6:1",
            "unknown field `image`",
        ),
        (
            with_job("schedule = \"* * * * *\"\ncommand = [\"x\"]"),
            "",
            "missing field `name`",
        ),
        (
            with_job("name = \"r\"\ncommand = [\"x\"]"),
            "",
            "missing field `schedule`",
        ),
        (
            format!("template = \"t\"\n[[jobs]]\n{ok}\n[[jobs]]\n{ok}\n"),
            "",
            "two jobs are named \"r\"",
        ),
    ];
    for (text, at, msg) in cases {
        let e = parse(&text).unwrap_err();
        assert!(e.starts_with(FILE), "{text:?} -> {e}");
        assert!(e.contains(&format!("{FILE}:{at}")), "{text:?} -> {e}");
        assert!(e.contains(msg), "{text:?} -> {e}");
    }
}

#[test]
fn at_most_sixteen_jobs() {
    let mut text = String::from("template = \"t\"\n");
    for i in 0..=MAX_JOBS {
        text += &format!("[[jobs]]\nname = \"j{i}\"\nschedule = \"@hourly\"\ncommand = [\"x\"]\n");
    }
    let e = parse(&text).unwrap_err();
    assert!(e.contains("at most 16 jobs"), "{e}");
}

#[test]
fn a_job_is_not_part_of_the_spec_hash() {
    use crate::model::config::Config;
    use crate::model::fixtures::template;
    let config = Config::load(None, Some(Path::new("/r"))).unwrap();
    let key = crate::model::names::AppKey::new("alice", "web").unwrap();
    let hash = |text: &str| {
        let m = parse(text).unwrap();
        crate::model::spec::ContainerSpec::derive(&key, &m, &template(), &config).hash()
    };
    let without = hash("template = \"t\"\n");
    let with = hash(&with_job(
        "name = \"r\"\nschedule = \"@daily\"\ncommand = [\"x\"]",
    ));
    assert_eq!(
        without, with,
        "adding a job must not recreate the app's container"
    );
}

#[test]
fn swarm_mode_refuses_jobs() {
    let mut config = crate::model::config::Config::load(None, Some(Path::new("/r"))).unwrap();
    let m = parse(&with_job(
        "name = \"r\"\nschedule = \"@daily\"\ncommand = [\"x\"]",
    ))
    .unwrap();
    assert!(check_runtime(&m.jobs, &config).is_ok());
    config.runtime = crate::model::runtime_mode::Runtime::Swarm {
        registry: "r:5000".into(),
        login: None,
        publish_domain_ports: false,
    };
    let e = check_runtime(&m.jobs, &config).unwrap_err();
    assert!(e.contains("docker runtime only"), "{e}");
}
