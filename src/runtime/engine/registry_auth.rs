//! berth's login at its registry (`[registry_login]`, swarm mode): given with pushes,
//! registry reads and service creates and updates, so every node pulls with it, and with the
//! pull of a template image kept in that same registry.

use bollard::auth::DockerCredentials;

use super::Engine;
use crate::model::runtime_mode::Runtime;

impl Engine {
    /// This engine, logging in to the registry wherever it pushes, reads the registry or
    /// makes and updates a service, when `runtime` has `[registry_login]` (its password read
    /// now: a change to the file is taken at the next start).
    pub fn logged_in(mut self, runtime: &Runtime) -> Result<Engine, String> {
        let Runtime::Swarm {
            registry,
            login: Some(source),
            ..
        } = runtime
        else {
            return Ok(self);
        };
        let login = source.read()?;
        self.registry_auth = Some(DockerCredentials {
            username: Some(login.username),
            password: Some(login.password),
            serveraddress: Some(registry.clone()),
            ..Default::default()
        });
        Ok(self)
    }

    /// `[registry_login]`'s user and password, for the registry's own API.
    pub(in crate::runtime) fn registry_user(&self) -> Option<(&str, &str)> {
        let auth = self.registry_auth.as_ref()?;
        Some((auth.username.as_deref()?, auth.password.as_deref()?))
    }

    /// The login to give a pull of `image`: berth's, when `image` is in berth's registry.
    pub(super) fn registry_auth_for(&self, image: &str) -> Option<DockerCredentials> {
        let auth = self.registry_auth.as_ref()?;
        let registry = auth.serveraddress.as_deref()?;
        from_registry(image, registry).then(|| auth.clone())
    }
}

/// Whether `image` names `registry` as its host (`<registry>/<path>...`).
fn from_registry(image: &str, registry: &str) -> bool {
    image
        .strip_prefix(registry)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_image_in_berths_registry_is_pulled_with_its_login() {
        assert!(from_registry("10.0.0.1:5000/base/node:22", "10.0.0.1:5000"));
        assert!(!from_registry(
            "10.0.0.1:50001/base/node:22",
            "10.0.0.1:5000"
        ));
        assert!(!from_registry("node:22-alpine", "10.0.0.1:5000"));
        assert!(!from_registry("docker.io/library/node:22", "10.0.0.1:5000"));
    }
}
