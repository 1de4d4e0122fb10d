//! The layer map, checked: every `crate::<module>` path in a layer's files must name a module
//! that layer may depend on. Dependencies run one way (model <- reconcile <- runtime, state,
//! store <- api <- daemon <- cli), and the API reaches the runtime only through its read-only
//! container reader and the purge-request handle, never the engine or the executor. (The
//! engine's writes are also `pub(in crate::runtime)`, so calling one from outside is a
//! compile error; this test keeps the imports honest too.)

use std::path::{Path, PathBuf};

/// Which `crate::` paths each layer may use (a prefix match on the path after `crate::`).
const RULES: &[(&str, &[&str])] = &[
    ("model", &["model"]),
    ("reconcile", &["model", "reconcile"]),
    ("runtime", &["model", "reconcile", "runtime", "error_chain"]),
    ("store", &["model", "reconcile", "store"]),
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
            "runtime::purges",
        ],
    ),
    (
        "daemon",
        &[
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
