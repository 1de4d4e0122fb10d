//! The shape of the code, checked: the layer map and the size rules (no function over 60
//! lines outside tests, no file over 500 lines).
//!
//! The layer map: every `crate::<module>` path in a layer's files must name a module
//! that layer may depend on. Dependencies run one way (model <- reconcile <- runtime, state,
//! store <- api <- portal <- daemon <- cli), and the API reaches the runtime only through its read-only
//! container reader and the purge-request handle, never the engine or the executor. (The
//! engine's writes are also `pub(in crate::runtime)`, so calling one from outside is a
//! compile error; this test keeps the imports honest too.)

use std::path::{Path, PathBuf};

/// Which `crate::` paths each layer may use (a prefix match on the path after `crate::`).
const RULES: &[(&str, &[&str])] = &[
    ("model", &["model"]),
    ("reconcile", &["model", "reconcile"]),
    ("runtime", &["model", "reconcile", "runtime", "error_chain"]),
    ("store", &["model", "reconcile", "store", "error_chain"]),
    (
        "state",
        &[
            "model",
            "reconcile",
            "store",
            "state",
            "metrics",
            "error_chain",
        ],
    ),
    ("metrics", &["model", "reconcile", "metrics"]),
    ("error_chain", &[]),
    (
        "api",
        &[
            "model",
            "reconcile",
            "state",
            "store",
            "metrics",
            "error_chain",
            "api",
            "runtime::reader",
            "runtime::removals",
            "runtime::job_asks",
        ],
    ),
    (
        "portal",
        &[
            "model",
            "store",
            "portal",
            "api::AppState",
            "api::router",
            "api::source_ip",
        ],
    ),
    (
        "daemon",
        &[
            "portal",
            "model",
            "reconcile",
            "runtime",
            "state",
            "store",
            "metrics",
            "error_chain",
            "api",
            "daemon",
        ],
    ),
];

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        return vec![path.to_path_buf()];
    }
    let Ok(dir) = std::fs::read_dir(path) else {
        return vec![];
    };
    dir.flatten().flat_map(|e| rust_files(&e.path())).collect()
}

/// Every `crate::a::b` path in `text` outside comments, as `a::b`.
fn crate_paths(text: &str) -> Vec<String> {
    let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
    let mut out = Vec::new();
    for line in code {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The paths in `layer`'s files that its rule does not allow, as `file: path`.
fn violations(src: &Path, layer: &str, allowed: &[&str]) -> Vec<String> {
    let mut files = rust_files(&src.join(layer));
    files.extend(rust_files(&src.join(format!("{layer}.rs"))));
    assert!(
        !files.is_empty(),
        "layer {layer} has no files under {}",
        src.display()
    );
    let mut bad = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for path in crate_paths(&text) {
            let ok = allowed
                .iter()
                .any(|a| path == *a || path.starts_with(&format!("{a}::")));
            if !ok {
                bad.push(format!("{}: crate::{path}", file.display()));
            }
        }
    }
    bad
}

#[test]
fn every_layer_imports_only_what_it_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad: Vec<String> = RULES
        .iter()
        .flat_map(|(layer, allowed)| violations(&src, layer, allowed))
        .collect();
    assert!(bad.is_empty(), "layer rule broken:\n{}", bad.join("\n"));
}

#[test]
fn the_rule_catches_an_api_import_of_an_engine_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    std::fs::write(
        dir.path().join("api/bad.rs"),
        "// crate::runtime::engine in a comment is fine\nuse crate::runtime::engine::Engine;\nuse crate::runtime::reader::ContainerReader;\n",
    )
    .unwrap();
    let api = RULES.iter().find(|(l, _)| *l == "api").unwrap().1;
    let bad = violations(dir.path(), "api", api);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].ends_with("crate::runtime::engine::Engine"),
        "{bad:?}"
    );
}

/// Most lines a function may have outside tests.
const MAX_FN_LINES: usize = 60;
/// Most lines a source file may have.
const MAX_FILE_LINES: usize = 500;

/// Functions over [`MAX_FN_LINES`] in `text`, as `name (lines)`. rustfmt's layout makes this
/// simple: a function ends at the first line that is its own indentation plus `}`. Test-only
/// functions (`#[cfg(test)]` just above) and everything from `mod tests` on are not counted.
fn long_functions(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("mod tests") {
            break;
        }
        let test_only = i > 0 && lines[i - 1].trim() == "#[cfg(test)]";
        if test_only || !is_fn_start(code) || code.ends_with(';') {
            continue;
        }
        let close = format!("{}}}", &line[..line.len() - code.len()]);
        if let Some(len) = lines[i..].iter().position(|l| *l == close) {
            if len + 1 > MAX_FN_LINES {
                let name = code.trim_end_matches('{').trim();
                out.push(format!("{name} ({} lines)", len + 1));
            }
        }
    }
    out
}

/// Whether a trimmed line starts a function: `fn` after any visibility and qualifiers.
fn is_fn_start(code: &str) -> bool {
    let mut rest = code;
    loop {
        if let Some(r) = rest.strip_prefix("pub(") {
            match r.find(')') {
                Some(end) => rest = r[end + 1..].trim_start(),
                None => return false,
            }
            continue;
        }
        let qualifier = ["pub ", "async ", "const ", "unsafe ", "extern \"C\" "]
            .iter()
            .find(|q| rest.starts_with(**q));
        match qualifier {
            Some(q) => rest = &rest[q.len()..],
            None => return rest.starts_with("fn "),
        }
    }
}

#[test]
fn no_function_over_60_lines_and_no_file_over_500() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            bad.push(format!("{}: {n} lines", file.display()));
        }
        let tests_only = file.to_string_lossy().ends_with("_tests.rs");
        if !tests_only {
            for f in long_functions(&text) {
                bad.push(format!("{}: {f}", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "too long:\n{}", bad.join("\n"));
}

#[test]
fn the_size_rule_counts_a_long_function_and_skips_tests() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let text = format!("fn short() {{\n}}\n\npub async fn long() {{\n{body}}}\n#[cfg(test)]\nfn t() {{\n{body}}}\n");
    assert_eq!(
        long_functions(&text),
        [format!("pub async fn long() ({} lines)", MAX_FN_LINES + 2)]
    );
}
