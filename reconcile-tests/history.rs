//! Revision history: every manifest version the loop takes up is kept with its spec hash and
//! source; a rollback writes an old version back and restores its container spec.

use std::time::Duration;

use serde_json::json;

use crate::support::api::ApiRoot;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

async fn spec_hash(r: &ApiRoot, app: &str) -> Option<String> {
    let c = r.root.container("alice", app).await?;
    c.config?.labels?.get("paas.spec-hash").cloned()
}

#[tokio::test]
async fn revisions_record_sources_and_rollback_restores_the_old_spec() {
    let r = ApiRoot::start("history", &[("revisions_kept", "3")]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    api.create_app(alice, "web", "bb-v1").await.expect(201);
    r.root.wait_running("alice", "web", T).await;
    let revisions =
        || async { api.get("/apps/alice/web/revisions", alice).await.json()["revisions"].clone() };
    wait_until(T, "revision 1", || async {
        revisions().await.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let first = revisions().await[0].clone();
    assert_eq!(first["revision"], 1);
    assert_eq!(first["source"], "api:alice");
    let hash1 = spec_hash(&r, "web").await.unwrap();
    assert_eq!(
        first["spec_hash"],
        hash1.as_str(),
        "the recorded hash is the container's"
    );

    // An edit on disk is revision 2, with source "file" and a new container.
    r.root
        .write_manifest("alice", "web", "template = \"bb-v1\"\n[env]\nV = \"2\"\n");
    wait_until(T, "the edit to be applied", || async {
        spec_hash(&r, "web").await.is_some_and(|h| h != hash1)
            && r.root.running("alice", "web").await
    })
    .await;
    wait_until(T, "revision 2", || async {
        revisions().await.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(revisions().await[1]["source"], "file");
    // A comment-only edit changes the text, so it is a revision, with the same spec hash.
    r.root.write_manifest(
        "alice",
        "web",
        "# note\ntemplate = \"bb-v1\"\n[env]\nV = \"2\"\n",
    );
    wait_until(T, "revision 3", || async {
        revisions().await.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let revs = revisions().await;
    assert_eq!(revs[2]["spec_hash"], revs[1]["spec_hash"]);
    assert_eq!(
        api.get("/apps/alice/web", alice).await.json()["revision"],
        3
    );

    // Roll back to revision 1: the file and the container spec are revision 1's again.
    let back = api
        .post(
            "/apps/alice/web/rollback",
            alice,
            Some(json!({"revision": 1})),
        )
        .await;
    back.expect(200);
    assert_eq!(
        std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap(),
        first["content"].as_str().unwrap()
    );
    wait_until(
        T,
        "the rollback to restore revision 1's spec hash",
        || async {
            spec_hash(&r, "web").await.as_deref() == Some(hash1.as_str())
                && r.root.running("alice", "web").await
        },
    )
    .await;
    wait_until(T, "the rollback's own revision", || async {
        revisions().await.as_array().unwrap().last().unwrap()["revision"] == 4
    })
    .await;
    let revs = revisions().await;
    assert_eq!(
        revs.as_array().unwrap().len(),
        3,
        "only revisions_kept = 3 are kept"
    );
    assert_eq!(revs[2]["source"], "api:alice (rollback to 1)");
    assert_eq!(revs[2]["spec_hash"], hash1.as_str());

    // Revision 1 is gone now: 404. Bad bodies: 4xx. Another user's app: 403.
    api.post(
        "/apps/alice/web/rollback",
        alice,
        Some(json!({"revision": 1})),
    )
    .await
    .expect(404);
    api.post(
        "/apps/alice/web/rollback",
        alice,
        Some(json!({"revision": -1})),
    )
    .await
    .expect(422);
    api.post("/apps/alice/web/rollback", alice, Some(json!({"rev": 2})))
        .await
        .expect(422);
    api.post(
        "/apps/alice/web/rollback",
        &r.bob,
        Some(json!({"revision": 2})),
    )
    .await
    .expect(403);
    api.get("/apps/alice/web/revisions", &r.bob)
        .await
        .expect(403);
}
