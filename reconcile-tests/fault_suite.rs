//! The seeded fault suite (issue 12): `serve` SIGKILLed at random points while API writes race
//! it, and `berth apply` SIGKILLed at random points while manifests change. Each ends with the
//! same check: converged, no duplicate container, no orphan, no write that was answered 2xx
//! lost, no leftover berth process. `BERTH_FAULT_SEED=<n>` replays a run; the seed is printed
//! first and in every failure.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::api::add_user;
use crate::support::verdict::{assert_converged, assert_no_berth_left};
use crate::support::{wait_until, Serve, TestRoot, BERTH, MINIMAL};

const T: Duration = Duration::from_secs(60);
const APPS: usize = 6;
const ROUNDS: usize = 8;

/// xorshift64*: enough randomness for choosing points, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("BERTH_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(1, |d| d.as_nanos() as u64) | 1
            });
        eprintln!("fault suite seed: BERTH_FAULT_SEED={seed}");
        (Rng(seed), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn manifest(mark: u64) -> String {
    format!("{MINIMAL}[env]\nMARK = \"{mark}\"\n")
}

/// What the files must say at the end: the last write answered 2xx per app (`None`: deleted),
/// unless a later write's answer was lost to a kill (then either is fine). Every write is
/// accounted: answered 2xx, refused with another status (the file is as before), or cut.
#[derive(Default)]
struct Ledger {
    confirmed: BTreeMap<String, Option<u64>>,
    /// Apps whose last write was cut by a kill: their file may say either.
    uncertain: BTreeSet<String>,
    attempted: usize,
    answered: usize,
    refused: usize,
    /// Writes in flight when serve was killed (their answer never came).
    cut: usize,
}

impl Ledger {
    /// A write's answer came: 2xx moves the app to `mark`, any other status leaves it.
    fn answer(&mut self, app: &str, ok: bool, mark: Option<u64>) {
        self.uncertain.remove(app);
        if ok {
            self.confirmed.insert(app.into(), mark);
            self.answered += 1;
        } else {
            self.refused += 1;
        }
    }
}

/// One API write on a random app: create, replace (with a fresh MARK) or delete.
async fn one_write(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    app: &str,
    mark: u64,
    ledger: &mut Ledger,
) -> Result<(), reqwest::Error> {
    let url = format!("{base}/apps/alice/{app}");
    let auth = format!("Bearer {token}");
    let current = http.get(&url).header("authorization", &auth).send().await?;
    ledger.uncertain.insert(app.into());
    ledger.attempted += 1;
    if current.status() == 404 {
        let body = serde_json::json!({"appname": app, "templateId": "bb-v1"});
        let r = http
            .post(format!("{base}/apps"))
            .header("authorization", &auth)
            .json(&body)
            .send()
            .await?;
        ledger.answer(app, r.status().as_u16() == 201, Some(0));
        return Ok(());
    }
    let etag = current
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if mark.is_multiple_of(3) {
        let r = http
            .delete(&url)
            .header("authorization", &auth)
            .send()
            .await?;
        ledger.answer(app, r.status().is_success(), None);
    } else {
        let r = http
            .put(format!("{url}/manifest"))
            .header("authorization", &auth)
            .header("if-match", etag)
            .header("content-type", "application/toml")
            .body(manifest(mark))
            .send()
            .await?;
        ledger.answer(app, r.status().is_success(), Some(mark));
    }
    Ok(())
}

/// Writes until the daemon stops answering (it is killed under it).
async fn write_until_cut(base: String, token: String, seed: u64, mut ledger: Ledger) -> Ledger {
    let http = reqwest::Client::new();
    let mut rng = Rng(seed);
    loop {
        let app = format!("a{}", rng.below(APPS as u64));
        let mark = 1 + rng.below(1_000_000);
        if one_write(&http, &base, &token, &app, mark, &mut ledger)
            .await
            .is_err()
        {
            ledger.cut += usize::from(ledger.uncertain.contains(&app));
            return ledger;
        }
    }
}

/// The files say what the ledger confirmed (an app whose last answer was lost may say either).
fn check_files(root: &TestRoot, ledger: &Ledger, seed: u64) {
    for (app, mark) in &ledger.confirmed {
        if ledger.uncertain.contains(app) {
            continue;
        }
        let text = std::fs::read_to_string(root.manifest_path("alice", app)).ok();
        match (mark, text) {
            (None, None) | (Some(0), Some(_)) => {}
            (Some(m), Some(t)) => assert!(
                t.contains(&format!("MARK = \"{m}\"")),
                "seed {seed}: alice/{app} lost the write of MARK={m}:\n{t}"
            ),
            (want, got) => {
                panic!("seed {seed}: alice/{app}: a 2xx answer said {want:?}, the file is {got:?}")
            }
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sigkilled_at_random_points_while_api_writes_race_loses_nothing() {
    let (mut rng, seed) = Rng::seeded();
    let root = TestRoot::new("chaosserve").await;
    root.config(&[("max_apps_per_user", "10")], "");
    let alice = add_user(&root, "alice", false).await;
    let mut ledger = Ledger::default();
    for round in 0..ROUNDS {
        let mut serve = Serve::start(&root);
        let base = serve.api_base();
        let writer = tokio::spawn(write_until_cut(
            base,
            alice.clone(),
            seed ^ round as u64,
            ledger,
        ));
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1200))).await;
        // The kill must hit a running serve, or the round tested nothing.
        serve.assert_alive();
        serve.kill();
        ledger = writer.await.unwrap();
    }
    let mut serve = Serve::start(&root);
    serve.api_base();
    let started = Instant::now();
    root.berth(&["apply"]).await.expect_code(0);
    let converged_in = started.elapsed();
    assert!(
        ledger.answered >= ROUNDS,
        "seed {seed}: only {} writes were answered 2xx",
        ledger.answered
    );
    assert!(ledger.cut >= 1, "seed {seed}: no kill cut a write");
    assert_eq!(
        ledger.answered + ledger.refused + ledger.cut,
        ledger.attempted,
        "seed {seed}: writes unaccounted for"
    );
    check_files(&root, &ledger, seed);
    assert_converged(&root, &format!("seed {seed}")).await;
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, &format!("seed {seed}"));
    eprintln!(
        "seed {seed}: {ROUNDS} rounds, {ROUNDS} serve kills, {} writes: {} answered 2xx, {} refused, {} cut by a kill; converged {converged_in:?} after the last start",
        ledger.attempted,
        ledger.answered,
        ledger.refused,
        ledger.cut
    );
}

#[tokio::test]
async fn apply_sigkilled_at_random_points_converges_without_duplicates() {
    let (mut rng, seed) = Rng::seeded();
    let root = TestRoot::new("chaosapply").await;
    root.config(&[("max_apps_per_user", "10")], "");
    let mut kills = 0;
    for round in 0..ROUNDS {
        for _ in 0..3 {
            let app = format!("a{}", rng.below(APPS as u64));
            match rng.below(4) {
                0 => root.remove_manifest_if_present("alice", &app),
                _ => root.write_manifest("alice", &app, &manifest(rng.below(1000))),
            }
        }
        let mut apply = Command::new(BERTH)
            .arg("--root")
            .arg(root.path())
            .arg("apply")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first round kills early, so at least one pass is cut whatever the seed.
        let wait = if round == 0 { 50 } else { rng.below(1500) };
        std::thread::sleep(Duration::from_millis(wait));
        if apply.try_wait().unwrap().is_none() {
            kills += 1;
        }
        kill(&mut apply);
    }
    let started = Instant::now();
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "seed {seed}: {}", run.text());
    assert!(kills >= 1, "seed {seed}: no apply was killed mid-pass");
    // `--exit-code`: 2 while the plan has changes, 0 once there are none.
    wait_until(T, "nothing left to do", || async {
        root.berth(&["plan", "--exit-code"]).await.code == Some(0)
    })
    .await;
    assert_converged(&root, &format!("seed {seed}")).await;
    assert_no_berth_left(&root, &format!("seed {seed}"));
    eprintln!(
        "seed {seed}: {ROUNDS} rounds, {kills} apply runs killed mid-pass; converged in {:?} by the next apply",
        started.elapsed()
    );
}
