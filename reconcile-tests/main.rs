//! The reconcile integration tests: the real `berth` binary against a real Docker engine.
//! Every test owns a temp root and a unique `instance`, so tests run in parallel and touch
//! only their own containers. Layout:
//! - `support/`: `TestRoot`, running berth, Docker helpers, the `Serve` guard;
//! - `apply.rs`: what one `apply` creates, and idempotence, recreates, stop/start, removal;
//! - `backups.rs`: postgres-v1 and another app reading it; app backups with restic, restores
//!   in place, a failing dump, retention per app;
//! - `catalogue.rs`: template values, redis-v1 with its volume and generated password, purge;
//! - `cli.rs`: `berth --version` names the commit it was built from; `berth init`;
//! - `deciders.rs`: one decider per root (a second `serve`, an `apply` without the socket), and
//!   a name conflict with another writer retried, not refused;
//! - `guard.rs`: the mass-removal guard, instance isolation, quotas;
//! - `faults.rs`: faults staged for one berth (an engine outage through a cuttable relay);
//! - `fault_suite.rs`: seeded SIGKILLs of `serve` (while API writes race) and of `apply`, each
//!   ending with the same check (converged, no duplicate, no orphan, no 2xx write lost);
//! - `secrets.rs`: `[secrets]` reach only the container's environment; re-encryption, new
//!   values, garbage, key file permissions and a missing key;
//! - `slow_clients.rs`: stalled heads and bodies, the connection cap, the webhook's byte budget;
//!   `/healthz` and the socket answering while non-readers and slowloris hold the API;
//! - `failures.rs`: broken manifests, missing images, template overrides, fatal config errors;
//! - `hooks.rs`: hook environment and cwd, which hook runs when, a failing hook;
//! - `hostile.rs`: hostile file names, symlinks, non-UTF-8 and ignored files;
//! - `jobs.rs`: scheduled jobs under `serve`: on schedule (libfaketime), forbid, timeout, run
//!   now, a SIGKILLed berth following its run, a broken schedule freezing the app;
//! - `informer.rs`: zero engine calls while idle (the container list kept from Docker's
//!   events), a hand-removed container healed through the event path alone, and one removed
//!   while the event stream was cut healed by the relist a lost stream means;
//! - `serve.rs`: the long-running loop: watcher latency, crash restarts, healing, SIGTERM;
//! - `api.rs`, `api_auth.rs`, `api_hostile.rs`: the HTTP API over real HTTP against `serve`;
//! - `files_api.rs`: the files API: etags and If-Match, sizes, path tricks sent raw, symlinks
//!   planted in workspaces (to /etc, to another user's app), scope, and a node app edited
//!   through it then deployed;
//! - `protect.rs`: confirm tokens for purge and prune release; purge drops one workspace;
//! - `git.rs`: git mode against a local bare repository;
//! - `history.rs`: revision history and rollback;
//! - `node_lite.rs`: the shipped node-lite-v1 template with real node and real `npm ci`;
//! - `python_lite.rs`: the shipped python-lite-v1 template with real python3 and real `pip install`
//!   (one shared read-only install, a requirements change, a failing install);
//! - `packaging.rs`: the .deb built from the binary under test: contents, lintian, the unit;
//! - `portal.rs`, `portal_hostile.rs`: the web UI in a real headless Chromium (WebDriver), and
//!   forged posts, CSRF, escaping and path tricks over plain HTTP;
//! - `portal_forms.rs`: the portal's forms hold the name rules, ask before a delete or a
//!   user's removal, and keep a file's line ends on save (plain HTTP);
//! - `proxy.rs`: domain apps through a real Caddy per test (HTTPS with Caddy's local CA);
//! - `rollout.rs`: deploys under load through Caddy, rollback of unhealthy versions, SIGKILL at
//!   each rollout step;
//! - `networks.rs`: users' networks when Docker holds two of one name (a killed berth's late
//!   create): one is kept, the apps on the others move onto it;
//! - `tenancy.rs`, `tenancy_api.rs`: the `[policy]` rules through files and the API, port and
//!   domain holders, networks, file modes, labels; keys, write limits, the audit log;
//! - `examples.rs`: every script under examples/, run as the README says, in a fresh copy of the repository.
//! - `readme.rs`: the README's curl session, run as written.
//! - `docs.rs`: links and anchors, TOML examples, `berth` commands in docs; generated pages.
//! - `rename.rs`: renames through the API and `berth mv`: workspace, volume data, keys,
//!   revisions and domain kept; serve SIGKILLed at each step of the takeover.
//! - `swarm.rs`: `runtime = "swarm"` on a single-node swarm of the test engine: an app as a
//!   service running an image of its workspace, no-op, update, rollback, heal, stop, delete;
//! - `swarm_nodes.rs`: a two-node swarm (a second dockerd in a network namespace, a TLS
//!   registry both pull from): `replicas = 2` one task per node, answering from both; the
//!   worker's engine killed, its tasks moved to the manager;
//! - `swarm_traffic.rs`: a domain app's service through a real Caddy, three deploys under a
//!   request loop with none failed, a deploy whose probe fails rolled back while the old one
//!   answers, old images pruned, service logs through the API; a user's services reaching
//!   each other by name on their overlay, another user's not, the overlay gone with the last.
//!   Swarm tests run one at a time.

mod support;

mod api;
mod api_auth;
mod api_hostile;
mod apply;
mod backups;
mod build_git;
mod builds;
mod catalogue;
mod cli;
mod deciders;
mod docs;
mod examples;
mod failures;
mod fault_suite;
mod faults;
mod files_api;
mod git;
mod guard;
mod history;
mod hooks;
mod hostile;
mod informer;
mod jobs;
mod networks;
mod node_lite;
mod packaging;
mod portal;
mod portal_forms;
mod portal_hostile;
mod protect;
mod proxy;
mod python_lite;
mod readme;
mod rename;
mod rollout;
mod secrets;
mod serve;
mod slow_clients;
mod swarm;
mod swarm_nodes;
mod swarm_traffic;
mod tenancy;
mod tenancy_api;
mod tenancy_network;
