use std::collections::BTreeSet;

/// Every `(method, path)` the routers in `src/api/` declare, read from their source.
fn declared() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with("_tests.rs") {
            continue;
        }
        out.extend(routes_in(&std::fs::read_to_string(entry.path()).unwrap()));
    }
    out
}

/// The `(method, path)` pairs one source file's routers declare: each `.route(` call's path
/// and the method routers chained in it, up to the file's own tests (not its router).
/// `{*rest}` is OpenAPI's `{rest}`.
fn routes_in(text: &str) -> BTreeSet<(String, String)> {
    let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").unwrap();
    let mut out = BTreeSet::new();
    let mut rest = text.split("#[cfg(test)]").next().unwrap_or_default();
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        let end = closing_paren(call);
        let args = &call[..end];
        let path = args
            .split('"')
            .nth(1)
            .unwrap_or_default()
            .replace("{*", "{");
        for m in method.captures_iter(args) {
            out.insert((m[1].to_string(), path.clone()));
        }
        rest = &call[end..];
    }
    out
}

/// The index of the `)` that closes a call whose arguments start `text`.
fn closing_paren(text: &str) -> usize {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len()
}

fn documented() -> BTreeSet<(String, String)> {
    let doc = super::document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

#[test]
fn every_route_is_in_the_document_and_nothing_else_is() {
    let (code, doc) = (declared(), documented());
    assert!(code.len() > 30, "the route reader found only {code:?}");
    let missing: Vec<_> = code.difference(&doc).collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        stale.is_empty(),
        "documented routes no router has: {stale:?}"
    );
}

#[test]
fn every_operation_has_responses_and_errors_share_one_shape() {
    let doc = super::document();
    assert_eq!(doc["openapi"], "3.0.3");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
            let params = op["parameters"].as_array().unwrap().len();
            assert_eq!(
                params,
                path.matches('{').count(),
                "{method} {path}: path parameters"
            );
        }
    }
}

#[test]
fn the_route_reader_sees_a_new_route() {
    // The reader is what makes the first test able to fail: run on a router's text as
    // `declared` runs it, it must see chained methods, a path parameter, a handler with
    // parentheses inside, and nothing past the file's tests.
    let sample = r#"
        Router::new()
            .route("/x/{*p}", get(a).put(b))
            .route("/y", post(|| async { f(1) }))
            .route("/z/{id}", delete(c));
        #[cfg(test)]
        mod tests { fn t() { Router::new().route("/only-in-tests", get(t)); } }
    "#;
    let seen = routes_in(sample);
    let want: BTreeSet<(String, String)> = [
        ("get", "/x/{p}"),
        ("put", "/x/{p}"),
        ("post", "/y"),
        ("delete", "/z/{id}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(seen, want);
}
