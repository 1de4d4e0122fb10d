//! The memory ceiling of builds (docs/guides/builds.md): the engine's BuildKit runs every
//! `RUN` step of every build in a cgroup under `docker/buildkit`, whatever `--memory` or
//! `--cgroup-parent` a build asks for (Docker 20.10 honours neither with BuildKit). So berth
//! holds that parent cgroup to `[builds] memory`: a build that needs more is killed by the
//! kernel (its step exits 137), and the apps beside it keep their memory.

use std::path::{Path, PathBuf};

/// The parent cgroups BuildKit's steps run under (cgroupfs driver): v1's memory controller,
/// then the unified v2 hierarchy.
const V1: &str = "/sys/fs/cgroup/memory/docker/buildkit";
const V2: &str = "/sys/fs/cgroup/docker/buildkit";

/// Holds every build step to `bytes` of memory (and, where swap is accounted, of memory
/// and swap together, so a step cannot spill into swap).
pub fn hold_to(bytes: u64) -> Result<(), String> {
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        let dir = made(V1)?;
        let (memory, swap) = (
            dir.join("memory.limit_in_bytes"),
            dir.join("memory.memsw.limit_in_bytes"),
        );
        if !swap.exists() {
            return write(&memory, bytes);
        }
        // The kernel keeps memory <= memory+swap at every step: lowering sets memory first,
        // raising sets memory+swap first.
        return write(&memory, bytes)
            .and_then(|()| write(&swap, bytes))
            .or_else(|_| write(&swap, bytes).and_then(|()| write(&memory, bytes)));
    }
    let dir = made(V2)?;
    write(&dir.join("memory.max"), bytes)?;
    write(&dir.join("memory.swap.max"), 0)
}

/// The cgroup at `path`, made when missing (BuildKit makes it at its first build otherwise).
fn made(path: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(path);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{path}: {e}"))?;
    Ok(dir)
}

fn write(file: &Path, value: u64) -> Result<(), String> {
    std::fs::write(file, value.to_string()).map_err(|e| format!("{}: {e}", file.display()))
}
