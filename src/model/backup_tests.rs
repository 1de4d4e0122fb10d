use super::*;

#[derive(Deserialize)]
struct Doc {
    backup: BackupDecl,
}

#[derive(Deserialize)]
struct TemplateDoc {
    backup: BackupMethod,
}

fn parse(text: &str) -> Result<BackupDecl, String> {
    toml::from_str::<Doc>(text)
        .map(|d| d.backup)
        .map_err(|e| e.to_string())
}

fn key(user: &str, app: &str) -> AppKey {
    AppKey::new(user, app).unwrap()
}

#[test]
fn the_issue_example_parses_with_every_field() {
    let b = parse(
        "[backup]\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nkeep = { last = 3, daily = 7, weekly = 4, monthly = 6 }\ntarget = \"local\"",
    )
    .unwrap();
    assert_eq!(b.schedule.as_deref(), Some("30 2 * * *"));
    assert_eq!(b.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        b.keep.forget_args(),
        [
            "--keep-last",
            "3",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "6"
        ]
    );
    let empty = parse("[backup]").unwrap();
    assert!(!empty.keep.is_set());
    assert_eq!(
        parse("[backup]\nschedule = \"@daily\"")
            .unwrap()
            .schedule
            .as_deref(),
        Some("@daily")
    );
}

#[test]
fn hostile_backup_tables_are_refused_naming_the_field_and_rule() {
    for (text, needle) in [
        (
            "schedule = \"every day\"",
            "schedule \"every day\": \"every day\" has 2 fields",
        ),
        ("schedule = \"* * * *\"", "has 4 fields"),
        ("schedule = \"* * * * * *\"", "has 6 fields"),
        ("schedule = \"61 * * * *\"", "minute field \"61\""),
        ("schedule = \"0 0 30 2 *\"", "never fires"),
        ("schedule = \"* * * * ;rm\"", "schedule \"* * * * ;rm\""),
        ("schedule = 5", "invalid type"),
        (
            "timezone = \"../../etc/passwd\"",
            "timezone: time zone \"../../etc/passwd\" is not an IANA",
        ),
        ("timezone = \"Mars/Olympus\"", "is not an IANA time zone"),
        ("keep = { last = 0 }", "0 is outside 1..=10000"),
        ("keep = { daily = -1 }", "-1 is outside"),
        ("keep = { weekly = 100000 }", "100000 is outside"),
        ("keep = { yearly = 1 }", "unknown field `yearly`"),
        ("keep = { last = \"3\" }", "invalid type"),
        ("target = \"offsite\"", "target \"offsite\": only \"local\""),
        ("colour = 1", "unknown field `colour`"),
    ] {
        let err = parse(&format!("[backup]\n{text}")).unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
        assert!(
            err.contains("line 2"),
            "{text}: the error has a location: {err}"
        );
    }
}

#[test]
fn a_template_says_dump_or_volume_and_commands_are_checked() {
    let t: TemplateDoc = toml::from_str(
        "[backup]\nkind = \"dump\"\ndump = [\"pg_dump\"]\nrestore = [\"pg_restore\"]",
    )
    .unwrap();
    assert!(matches!(&t.backup, BackupMethod::Dump { file, .. } if file == "dump"));
    let v: TemplateDoc = toml::from_str("[backup]\nkind = \"volume\"").unwrap();
    assert_eq!(v.backup, BackupMethod::Volume {});
    for (text, needle) in [
        ("kind = \"tar\"", "unknown variant `tar`"),
        ("kind = \"dump\"\nrestore = [\"r\"]", "missing field `dump`"),
        (
            "kind = \"dump\"\ndump = []\nrestore = [\"r\"]",
            "1 to 16 arguments",
        ),
        (
            "kind = \"dump\"\ndump = [\"\"]\nrestore = [\"r\"]",
            "1 to 16 arguments",
        ),
        (
            "kind = \"dump\"\ndump = [\"d\"]\nrestore = [\"r\"]\nfile = \"../x\"",
            "file \"../x\"",
        ),
        ("kind = \"volume\"\ndump = [\"d\"]", "unknown field `dump`"),
    ] {
        let err = toml::from_str::<TemplateDoc>(&format!("[backup]\n{text}"))
            .err()
            .unwrap_or_else(|| panic!("{text}: accepted"))
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    assert_eq!(method_of(None, true), Some(BackupMethod::Volume {}));
    assert_eq!(method_of(None, false), None);
}

#[test]
fn retention_selects_one_apps_snapshots_by_all_its_tags() {
    let keep = Keep {
        last: Some(2),
        ..Keep::default()
    };
    let args = forget_args("prod", &key("alice", "db"), &keep).unwrap();
    assert_eq!(
        args,
        [
            "forget",
            "--tag",
            "berth-instance=prod,berth-user=alice,berth-app=db",
            "--group-by",
            "tags",
            "--keep-last",
            "2",
            "--prune"
        ]
    );
    // Names cannot run into each other: `db` and `db2`, `alice` and `al`, are separate tags.
    assert_ne!(
        tag_filter("prod", &key("alice", "db")),
        tag_filter("prod", &key("alice", "db2"))
    );
    assert!(forget_args("prod", &key("alice", "db"), &Keep::default()).is_none());
}
