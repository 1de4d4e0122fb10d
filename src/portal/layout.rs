//! The page shell every portal page shares (head, navigation, messages) and the small pieces
//! pages repeat: a form carrying the CSRF token, a button that posts, a notice. maud escapes
//! every interpolated value, so names, env values, logs and file contents render as text.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::Session;

/// A message shown at the top of a page.
pub enum Notice {
    /// It worked.
    Done(String),
    /// It did not; the text says why.
    Failed(String),
}

/// A whole page: `title`, the signed-in user's navigation (none on the sign-in page), an
/// optional notice, and `body`.
pub fn page(title: &str, who: Option<&Session>, notice: Option<Notice>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · berth" }
                link rel="stylesheet" href="/ui/static/portal.css";
                script src="/ui/static/portal.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/apps" { "berth" }
                    @if let Some(s) = who { (nav(s)) }
                }
                main id="main" {
                    @match notice {
                        Some(Notice::Done(text)) => p.notice.done role="status" { (text) },
                        Some(Notice::Failed(text)) => p.notice.failed role="alert" { (text) },
                        None => {},
                    }
                    (body)
                }
            }
        }
    }
}

fn nav(s: &Session) -> Markup {
    html! {
        nav aria-label="main" {
            a href="/ui/apps" { "Apps" }
            @if s.admin {
                a href="/ui/admin/users" { "Users" }
                a href="/ui/admin/audit" { "Audit log" }
                a href="/ui/admin/prune" { "Held removals" }
            }
            span.who { "signed in as " strong { (s.user) } }
            (form_post("/ui/logout", s, html! {}, "Sign out"))
        }
    }
}

/// A POST form to `action` with the session's CSRF token, `fields`, and a submit button.
pub fn form_post(action: &str, s: &Session, fields: Markup, button: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(s.csrf);
            (fields)
            button type="submit" { (button) }
        }
    }
}

/// A rendered page as a response with `status`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// Unix seconds as an RFC 3339 time, for tables.
pub fn when(secs: Option<u64>) -> String {
    secs.map(|s| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        humantime::format_rfc3339_seconds(t).to_string()
    })
    .unwrap_or_else(|| "–".into())
}
