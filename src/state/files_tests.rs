//! The manifest write path: atomic, validated, etag-checked, link-refusing.

use super::*;

fn setup(extra: &str) -> (tempfile::TempDir, ManifestFiles) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates/t1");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("template.toml"), "image = \"x:1\"\nport = 3000\n").unwrap();
    std::fs::write(dir.path().join("berth.toml"), extra).unwrap();
    let config = Config::load(None, Some(dir.path())).unwrap();
    (dir, ManifestFiles::new(Arc::new(config)))
}

fn key(u: &str, a: &str) -> AppKey {
    AppKey::new(u, a).unwrap()
}

#[tokio::test]
async fn create_then_replace_with_etag() {
    let (_d, files) = setup("");
    let k = key("alice", "web");
    let c = files.create(&k, "t1").await.unwrap();
    assert!(matches!(
        files.create(&k, "t1").await,
        Err(WriteError::Exists(_))
    ));
    let next = "template = \"t1\"\nstate = \"stopped\"\n";
    assert!(matches!(
        files.replace(&k, next, "nope").await,
        Err(WriteError::Stale { .. })
    ));
    let n = files.replace(&k, next, &c.etag).await.unwrap();
    assert_eq!(files.read(&k).unwrap().unwrap().text, next);
    assert_eq!(n.etag, etag(next.as_bytes()));
    // The old etag is stale now.
    assert!(matches!(
        files.replace(&k, next, &c.etag).await,
        Err(WriteError::Stale { .. })
    ));
}

#[tokio::test]
async fn bad_text_leaves_the_file_as_it_was() {
    let (d, files) = setup("");
    let k = key("alice", "web");
    let c = files.create(&k, "t1").await.unwrap();
    for bad in [
        "template = ",
        "template = \"t1\"\nbogus = 1\n",
        "template = \"nope\"\n",
        "template = \"../t1\"\n",
        "",
    ] {
        let err = files.replace(&k, bad, &c.etag).await.unwrap_err();
        assert!(
            matches!(err, WriteError::Invalid(_) | WriteError::UnknownTemplate(_)),
            "{bad:?}: {err}"
        );
        assert!(
            err.to_string().contains("state/apps/alice/web.toml"),
            "{err}"
        );
    }
    assert_eq!(files.read(&k).unwrap().unwrap().etag, c.etag);
    let leftovers: Vec<_> = std::fs::read_dir(d.path().join("state/apps/alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["web.toml"]);
}

#[tokio::test]
async fn edit_keeps_comments() {
    let (_d, files) = setup("");
    let k = key("alice", "web");
    let c = files.create(&k, "t1").await.unwrap();
    let text = "# my app\ntemplate = \"t1\" # the template\n\n[env]\nA = \"1\" # keep\n";
    files.replace(&k, text, &c.etag).await.unwrap();
    files
        .edit(&k, |doc| doc["state"] = toml_edit::value("stopped"))
        .await
        .unwrap();
    let now = files.read(&k).unwrap().unwrap().text;
    assert!(
        now.contains("# my app") && now.contains("# the template") && now.contains("# keep"),
        "{now}"
    );
    assert!(now.contains("state = \"stopped\""), "{now}");
    assert!(matches!(
        files.edit(&key("alice", "none"), |_| {}).await,
        Err(WriteError::NotFound(_))
    ));
}

#[tokio::test]
async fn quotas_name_the_limit() {
    let (_d, files) = setup("max_apps_per_user = 2\nmax_total_apps = 3\n");
    files.create(&key("alice", "a"), "t1").await.unwrap();
    files.create(&key("alice", "b"), "t1").await.unwrap();
    let e = files.create(&key("alice", "c"), "t1").await.unwrap_err();
    assert!(e.to_string().contains("max_apps_per_user = 2"), "{e}");
    files.create(&key("bob", "a"), "t1").await.unwrap();
    let e = files.create(&key("carol", "a"), "t1").await.unwrap_err();
    assert!(e.to_string().contains("max_total_apps = 3"), "{e}");
}

#[tokio::test]
async fn concurrent_replaces_with_one_etag_have_one_winner() {
    let (_d, files) = setup("");
    let files = Arc::new(files);
    let k = key("alice", "web");
    let c = files.create(&k, "t1").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (files, k, etag) = (files.clone(), k.clone(), c.etag.clone());
            tokio::spawn(async move {
                let text = format!("template = \"t1\"\n[env]\nN = \"{i}\"\n");
                files.replace(&k, &text, &etag).await.is_ok()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn a_planted_symlink_is_never_written_through() {
    let (d, files) = setup("");
    let k = key("alice", "web");
    files.create(&k, "t1").await.unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // Whatever temp name berth picks, a link at the manifest's own path is replaced, not
    // followed, and a link where the user directory belongs is refused.
    std::os::unix::fs::symlink(&victim, d.path().join("state/apps/alice/web.toml.lnk")).unwrap();
    let c = files.read(&k).unwrap().unwrap();
    files
        .replace(&k, "template = \"t1\"\n", &c.etag)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(d.path().join("state/apps/alice/web.toml")).unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join("state/apps/alice/web.toml")).unwrap();
    let err = files.read(&k).unwrap_err();
    assert!(matches!(err, WriteError::OddPath(_)), "{err}");
    assert!(files.edit(&k, |_| {}).await.is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[tokio::test]
async fn symlinked_user_dirs_are_not_written_through() {
    let (d, files) = setup("");
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(d.path().join("state/apps")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, d.path().join("state/apps/eve")).unwrap();
    assert!(files.create(&key("eve", "x"), "t1").await.is_err());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[tokio::test]
async fn swarm_only_fields_are_refused_on_the_docker_runtime_as_the_loop_refuses_them() {
    let (_d, files) = setup("");
    let k = key("alice", "web");
    let c = files.create(&k, "t1").await.unwrap();
    for (text, rule) in [
        (
            "template = \"t1\"\nreplicas = 3\n",
            "replicas = 3 needs runtime = \"swarm\"",
        ),
        (
            "template = \"t1\"\nconstraints = [\"node.role == worker\"]\n",
            "constraints need runtime = \"swarm\"",
        ),
    ] {
        let err = files.replace(&k, text, &c.etag).await.unwrap_err();
        assert!(matches!(err, WriteError::Invalid(_)), "{text:?}: {err}");
        let shown = err.to_string();
        assert!(
            shown.contains("state/apps/alice/web.toml") && shown.contains(rule),
            "{shown}"
        );
        // The loop's own verdict on the same text is the same rule.
        let m = Manifest::parse(Path::new("m.toml"), text).unwrap();
        let t = files.template_of(Path::new("m.toml"), &m).unwrap();
        let loop_says = crate::model::desired::check_runtime(&m, &t, &files.config).unwrap_err();
        assert!(shown.contains(&loop_says), "{shown} vs {loop_says}");
    }
    assert_eq!(files.read(&k).unwrap().unwrap().etag, c.etag);
}
