//! The front door: the one writer of berth's routes in Caddy. The loop hands it each pass's
//! desired and observed state; a rollout asks it to switch one app to its new container
//! (a pin) and to let go once the old container is gone. Every write renders the whole of
//! berth's configuration from the latest pass plus the pins, under one lock, so a switch and
//! a pass can never undo each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::config::Config;
use crate::model::desired::DesiredState;
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::model::proxy::ProxyConfig;
use crate::reconcile::routes::{names, render, Pins};
use crate::runtime::caddy::{Caddy, ProxyError};

/// The latest pass's inputs.
type Snapshot = (Arc<DesiredState>, Arc<Vec<Observed>>);

/// Caddy and what berth renders into it.
pub struct Front {
    caddy: Caddy,
    proxy: ProxyConfig,
    instance: String,
    /// The latest pass; held (async) across a whole sync so syncs never interleave.
    last: tokio::sync::Mutex<Option<Snapshot>>,
    /// Apps switched by a rollout in flight, to the upstream they were switched to.
    pins: Mutex<Pins>,
}

impl Front {
    /// The front door of `config`, if it has `[proxy]` with a usable admin endpoint.
    pub fn new(config: &Config) -> Option<Front> {
        let proxy = config.proxy.clone()?;
        let endpoint = proxy.admin_endpoint().ok()?;
        Some(Front {
            caddy: Caddy::new(endpoint),
            proxy,
            instance: config.instance.clone(),
            last: Default::default(),
            pins: Default::default(),
        })
    }

    /// How long an old container may finish its requests after a switch.
    pub fn drain(&self) -> Duration {
        self.proxy.drain
    }

    /// Brings Caddy in line with a pass; returns the writes made (none when it matched).
    pub async fn sync(
        &self,
        desired: Arc<DesiredState>,
        observed: Arc<Vec<Observed>>,
    ) -> Result<u64, ProxyError> {
        let mut last = self.last.lock().await;
        *last = Some((desired, observed));
        self.write(last.as_ref().expect("just set")).await
    }

    /// Sends `key`'s traffic to `dial` (`address:port`) from now until [`release`]
    /// (Self::release); returns once Caddy has it.
    pub async fn switch(&self, key: &AppKey, dial: String) -> Result<u64, ProxyError> {
        let last = self.last.lock().await;
        let Some(snapshot) = last.as_ref() else {
            return Err(ProxyError::NoPass);
        };
        self.pins.lock().expect("pins").insert(key.clone(), dial);
        self.write(snapshot).await
    }

    /// Drops `key`'s pin. With `rewrite`, Caddy is brought back to what the latest pass says
    /// (a switch that is being undone); without, the next pass does it (the old container
    /// is gone, so the pass routes to the new one anyway).
    pub async fn release(&self, key: &AppKey, rewrite: bool) -> Result<u64, ProxyError> {
        let last = self.last.lock().await;
        self.pins.lock().expect("pins").remove(key);
        match (rewrite, last.as_ref()) {
            (true, Some(snapshot)) => self.write(snapshot).await,
            _ => Ok(0),
        }
    }

    async fn write(&self, (desired, observed): &Snapshot) -> Result<u64, ProxyError> {
        let pins = self.pins.lock().expect("pins").clone();
        let rendered = render(&self.instance, &self.proxy, desired, observed, &pins);
        let (main, redirect, tls_id) = names(&self.instance);
        self.caddy.sync(&rendered, &tls_id, &[main, redirect]).await
    }
}
