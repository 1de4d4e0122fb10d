//! One way to show an error with its causes, for logs and status: `outer: cause: root cause`.
//! Error types keep their `#[source]`; this walks the chain at the edge where it is shown.

use std::error::Error;
use std::fmt::Write;

/// `err` and each of its sources, `: `-separated. A source whose text the message before it
/// already ends with (a `#[error("...: {source}")]` variant) is not repeated.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("writing app.toml")]
        Write(#[source] std::io::Error),
        #[error("reading: {0}")]
        Read(#[source] std::io::Error),
    }

    #[test]
    fn shows_every_cause_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(chain(&Outer::Write(io())), "writing app.toml: disk full");
        assert_eq!(chain(&Outer::Read(io())), "reading: disk full");
    }
}
