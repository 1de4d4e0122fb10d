//! Names the commit a binary was built from, for `berth --version`: `git rev-parse --short=12 HEAD`
//! of the checkout, or "unknown" outside a git checkout (a source tarball). And lists the
//! shipped templates (every file under templates/) for `berth init`, which writes them out.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            files(&path, under, out);
        } else {
            out.push(path.strip_prefix(under).unwrap().to_path_buf());
        }
    }
}

/// `$OUT_DIR/shipped_templates.rs`: `(relative path, bytes, executable)` for each file.
fn shipped_templates() {
    use std::os::unix::fs::PermissionsExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut all = Vec::new();
    files(&root, &root, &mut all);
    let mut code = String::from("pub const FILES: &[(&str, &[u8], bool)] = &[\n");
    for rel in all {
        let full = root.join(&rel);
        let exec = full.metadata().unwrap().permissions().mode() & 0o111 != 0;
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?}), {exec}),\n",
            rel.to_str().unwrap(),
            full.to_str().unwrap()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("shipped_templates.rs");
    std::fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=templates");
}

fn main() {
    shipped_templates();
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    // A commit or a checkout moves HEAD or the ref it names (a worktree has its own HEAD).
    if let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={common}/refs/heads");
        // A path that does not exist would make every build rerun this script.
        let packed = format!("{common}/packed-refs");
        if std::path::Path::new(&packed).exists() {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
