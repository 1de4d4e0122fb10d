//! The process groups of running hooks, recorded on disk (one file per group, holding the
//! group leader's start time), so that a berth killed in the middle of a hook kills what it
//! left at its next start, before any hook of the same template can run again. The start time
//! guards against a reused process id: a group is killed only if its leader is the process
//! that was recorded.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

/// Where the groups are recorded.
#[derive(Debug, Clone)]
pub struct HookGroups {
    dir: PathBuf,
}

/// A recorded group; the record goes when this is dropped (the hook is over).
pub struct Recorded {
    file: Option<PathBuf>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl HookGroups {
    /// Groups recorded under `dir` (made when first needed).
    pub fn new(dir: PathBuf) -> HookGroups {
        HookGroups { dir }
    }

    /// Records the group led by `pgid`. A record that cannot be written is logged: the hook
    /// still runs, it just could not be reaped after a crash.
    pub fn record(&self, pgid: i32) -> Recorded {
        let file = self.dir.join(pgid.to_string());
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let started = start_time(pgid).unwrap_or_default();
            std::fs::write(&file, started)
        });
        match written {
            Ok(()) => Recorded { file: Some(file) },
            Err(e) => {
                warn!(dir = %self.dir.display(), cause = %e, "cannot record a hook's process group");
                Recorded { file: None }
            }
        }
    }

    /// Kills every recorded group whose leader still is the recorded process, and forgets
    /// them all. Returns how many were killed.
    pub fn reap(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(pgid) = alive_recorded_group(&path) {
                // SAFETY: a plain syscall on a group whose leader is the recorded process.
                if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
                    info!(pgid, "killed a hook left running by an earlier berth");
                    killed += 1;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }
}

/// The group id a record names, if its leader still is the recorded process.
fn alive_recorded_group(path: &Path) -> Option<i32> {
    let pgid: i32 = path.file_name()?.to_str()?.parse().ok()?;
    let recorded = std::fs::read_to_string(path).ok()?;
    (pgid > 1 && !recorded.is_empty() && start_time(pgid)? == recorded).then_some(pgid)
}

/// Field 22 of `/proc/<pid>/stat` (start time since boot, in clock ticks).
fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_recorded_group_is_reaped_and_a_finished_one_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let groups = HookGroups::new(dir.path().join("hooks"));
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let record = groups.record(pgid);
        std::mem::forget(record); // as if berth were killed: the record stays
        assert_eq!(groups.reap(), 1);
        let status = child.wait().unwrap();
        assert!(!status.success(), "the hook's group was killed");
        assert_eq!(groups.reap(), 0, "records are forgotten once reaped");
        drop(groups.record(pgid));
        assert!(std::fs::read_dir(dir.path().join("hooks"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn a_reused_process_id_is_not_killed() {
        let dir = tempfile::tempdir().unwrap();
        let groups = HookGroups::new(dir.path().to_path_buf());
        let own = std::process::id() as i32;
        std::fs::write(dir.path().join(own.to_string()), "1").unwrap();
        assert_eq!(groups.reap(), 0, "another process now has that id");
    }
}
