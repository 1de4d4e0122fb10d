//! The front door: the one writer of berth's routes in Caddy. The loop hands it each pass's
//! desired and observed state; a rollout asks it to switch one app to its new container
//! (a pin) and lets go once the old container is gone. Every write renders the whole of
//! berth's configuration from the latest pass plus the pins, under one lock, so a switch and
//! a pass can never undo each other.
//!
//! **A deploy changes nothing in Caddy.** With containers (not Swarm), each domain app's route
//! dials a forwarder of berth's (`forward`) and every write points the forwarders where the
//! route used to point; Caddy's configuration changes only when an app's forwarder comes or
//! goes (a domain added or removed, an app started or stopped, berth restarted).
//!
//! **A released pin lasts until a pass that looked at the engine after the release.** A pass
//! that listed containers while the old one still ran would otherwise route back to it after
//! the rollout removed it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::config::Config;
use crate::model::desired::DesiredState;
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::model::proxy::ProxyConfig;
use crate::reconcile::routes::{names, render, upstreams, Pins, Rendered, Via};
use crate::runtime::caddy::{Caddy, ProxyError};
use crate::runtime::forward::Forwarders;

/// The latest pass's inputs.
type Snapshot = (Arc<DesiredState>, Arc<Vec<Observed>>);

/// Caddy and what berth renders into it.
pub struct Front {
    caddy: Caddy,
    proxy: ProxyConfig,
    instance: String,
    /// The latest pass; held (async) across a whole sync so syncs never interleave.
    last: tokio::sync::Mutex<Option<Snapshot>>,
    /// Apps switched by a rollout, to the upstream they were switched to, and when the
    /// rollout let go.
    pins: Mutex<BTreeMap<AppKey, Pin>>,
    /// What Caddy last accepted: a render equal to it is not even read back, except when a
    /// sync asks to verify (the resync tick), which is when a restarted Caddy or a hand edit
    /// is found.
    applied: Mutex<Option<Rendered>>,
    /// berth's forwarder per domain app; none in swarm mode, where a route dials the tasks
    /// (on any node) and `swarm_front` follows them, and none in a one-shot process (`apply`
    /// without `serve`), whose forwarders would close when it exits.
    forwarders: Option<Forwarders>,
}

#[derive(Debug, Clone)]
struct Pin {
    dials: Vec<String>,
    released: Option<Instant>,
}

impl Front {
    /// The front door of `config`, if it has `[proxy]` with a usable admin endpoint; with
    /// `forward` (a long-running process, and containers) and `[proxy] forwarders`, through
    /// forwarders.
    pub fn new(config: &Config, forward: bool) -> Option<Front> {
        let proxy = config.proxy.clone()?;
        let endpoint = proxy.admin_endpoint().ok()?;
        let forward = forward && proxy.forwarders && !config.runtime.is_swarm();
        Some(Front {
            caddy: Caddy::new(endpoint),
            proxy,
            instance: config.instance.clone(),
            last: Default::default(),
            pins: Default::default(),
            applied: Default::default(),
            forwarders: forward.then(Forwarders::default),
        })
    }

    /// How long an old container may finish its requests after a switch.
    pub fn drain(&self) -> Duration {
        self.proxy.drain
    }

    /// Brings Caddy in line with a pass whose engine list began at `listed`; returns the
    /// writes made (none when it matched). With `verify`, Caddy's copy is read back even when
    /// the render is what Caddy last accepted.
    pub async fn sync(
        &self,
        desired: Arc<DesiredState>,
        observed: Arc<Vec<Observed>>,
        listed: Instant,
        verify: bool,
    ) -> Result<u64, ProxyError> {
        let mut last = self.last.lock().await;
        self.pins
            .lock()
            .expect("pins")
            .retain(|_, p| p.released.is_none_or(|at| at > listed));
        *last = Some((desired, observed));
        self.write(last.as_ref().expect("just set"), verify).await
    }

    /// Sends `key`'s traffic to `dials` (`address:port` each) from now until [`release`]
    /// (Self::release); returns once Caddy has it.
    pub async fn switch(&self, key: &AppKey, dials: Vec<String>) -> Result<u64, ProxyError> {
        let last = self.last.lock().await;
        let Some(snapshot) = last.as_ref() else {
            return Err(ProxyError::NoPass);
        };
        let pin = Pin {
            dials,
            released: None,
        };
        self.pins.lock().expect("pins").insert(key.clone(), pin);
        self.write(snapshot, false).await
    }

    /// The rollout of `key` is over (its old container is gone, or the rollout failed after
    /// the switch): the pin goes with the first pass that listed containers after now.
    pub fn release(&self, key: &AppKey) {
        if let Some(pin) = self.pins.lock().expect("pins").get_mut(key) {
            pin.released = Some(Instant::now());
        }
    }

    /// Undoes a switch that may or may not have reached Caddy: drops the pin and writes what
    /// the latest pass says (the old container).
    pub async fn undo(&self, key: &AppKey) -> Result<u64, ProxyError> {
        let last = self.last.lock().await;
        self.pins.lock().expect("pins").remove(key);
        match last.as_ref() {
            Some(snapshot) => self.write(snapshot, false).await,
            None => Ok(0),
        }
    }

    /// Whether `rendered` is what Caddy last accepted and no read-back is asked for. If not,
    /// what Caddy holds is unknown until it answers: a sync cut short leaves the next one to
    /// read back.
    fn unchanged(&self, rendered: &Rendered, verify: bool) -> bool {
        let mut applied = self.applied.lock().expect("applied");
        if !verify && applied.as_ref() == Some(rendered) {
            return true;
        }
        *applied = None;
        false
    }

    async fn write(&self, (desired, observed): &Snapshot, verify: bool) -> Result<u64, ProxyError> {
        let pins: Pins = (self.pins.lock().expect("pins").iter())
            .map(|(k, p)| (k.clone(), p.dials.clone()))
            .collect();
        let via = self.point(desired, observed, &pins);
        let rendered = render(&self.instance, &self.proxy, desired, observed, &pins, &via);
        if self.unchanged(&rendered, verify) {
            self.close_unrouted(&via);
            return Ok(0);
        }
        let (main, redirect, tls_id) = names(&self.instance);
        let result = self.caddy.sync(&rendered, &tls_id, &[main, redirect]).await;
        if result.is_ok() {
            *self.applied.lock().expect("applied") = Some(rendered);
            self.close_unrouted(&via);
        }
        result
    }

    /// Points each domain app's forwarder where its route goes (binding one for an app that
    /// has none yet), before Caddy is told to dial it; returns the forwarders' addresses. An
    /// app whose forwarder cannot listen is routed to its container directly.
    fn point(&self, desired: &DesiredState, observed: &[Observed], pins: &Pins) -> Via {
        let Some(forwarders) = &self.forwarders else {
            return Via::new();
        };
        let mut via = Via::new();
        for (key, dials) in upstreams(desired, observed, pins) {
            match forwarders.point(&key, &dials) {
                Ok(addr) => {
                    via.insert(key, addr.to_string());
                }
                Err(e) => {
                    tracing::warn!(app = %key, cause = %e, "forwarder: cannot listen; routing to the container directly");
                }
            }
        }
        via
    }

    /// Closes the forwarders Caddy no longer dials (only once it has what says so).
    fn close_unrouted(&self, via: &Via) {
        if let Some(forwarders) = &self.forwarders {
            forwarders.retain(|key| via.contains_key(key));
        }
    }
}
