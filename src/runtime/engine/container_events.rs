//! Docker's container events as berth reads them: the app an event is about (from the labels
//! Docker copies into its attributes) and its action.

use crate::model::labels;
use crate::model::names::AppKey;

/// One event on one of this instance's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The app it is about, from the container's labels (`None`: not one berth can name).
    pub app: Option<AppKey>,
    /// Docker's action: `create`, `die`, `destroy`, `exec_start: sh`, ...
    pub action: String,
}

pub(super) fn event_of(m: &bollard::models::EventMessage) -> ContainerEvent {
    ContainerEvent {
        app: event_app(m),
        action: m.action.clone().unwrap_or_default(),
    }
}

/// The app an event is about, from the container labels Docker puts in its attributes.
fn event_app(m: &bollard::models::EventMessage) -> Option<AppKey> {
    let attrs = m.actor.as_ref()?.attributes.as_ref()?;
    AppKey::new(attrs.get(labels::USERID)?, attrs.get(labels::APPNAME)?).ok()
}
