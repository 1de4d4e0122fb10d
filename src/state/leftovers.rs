//! What a cut write leaves under `state/apps`, cleaned at start (before anything writes): the
//! temp file of a manifest write killed between its create and its rename
//! (`.<appname>.toml.<id>.tmp`), the old manifest of a rename cut before it was removed
//! (`state::rename`), and a user directory that removing those left empty (it was made for
//! the cut create). Nothing else is touched: a file that is not exactly berth's temp name
//! stays, an empty user directory berth found empty stays (an operator may have made it on
//! purpose), and links are never followed.

use std::path::Path;

/// What one [`clean`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Temp files of cut writes.
    pub temp_files: usize,
    /// User directories emptied by removing the above.
    pub empty_dirs: usize,
    /// Old manifests of renames cut between the new file and the old one's removal.
    pub cut_renames: usize,
}

/// Whether `name` is the temp file of a manifest write (`state::files`).
fn is_write_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    matches!(rest.rsplit_once(".toml."), Some((app, id)) if !app.is_empty() && !id.is_empty() && !id.contains('/'))
}

/// Removes the leftovers of cut writes in each user directory of `apps_state_dir`.
pub fn clean(apps_state_dir: &Path) -> Cleaned {
    let mut done = Cleaned::default();
    let Ok(users) = std::fs::read_dir(apps_state_dir) else {
        return done;
    };
    for user in users.flatten() {
        // A link is not followed, a file is not a user directory.
        if !user.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = user.path();
        let removed_before = done.temp_files + done.cut_renames;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let temp = name.to_str().is_some_and(is_write_temp);
            let file = entry.file_type().is_ok_and(|t| t.is_file());
            if temp && file && std::fs::remove_file(entry.path()).is_ok() {
                done.temp_files += 1;
            }
        }
        if let Some(userid) = user.file_name().to_str() {
            done.cut_renames += crate::state::rename::finish_cut(&dir, userid);
        }
        // Only a directory this clean emptied is a cut write's; one found empty was made by
        // someone on purpose. `remove_dir` fails (and keeps it) unless it is empty.
        let emptied_here = done.temp_files + done.cut_renames > removed_before;
        if emptied_here && std::fs::remove_dir(&dir).is_ok() {
            done.empty_dirs += 1;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_berths_temp_files_and_the_user_directories_they_left_go() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path();
        let alice = apps.join("alice");
        std::fs::create_dir_all(alice.join("web")).unwrap();
        for f in [
            ".web.toml.1a2b.tmp",
            "web.toml",
            ".web.toml.swp",
            "notes.tmp",
            ".x.tmp",
        ] {
            std::fs::write(alice.join(f), "x").unwrap();
        }
        // Made by hand, empty: an operator's, not a cut write's.
        std::fs::create_dir(apps.join("bob")).unwrap();
        std::fs::write(apps.join("carol"), "a file, not a user").unwrap();
        std::fs::create_dir(apps.join("dave")).unwrap();
        std::fs::write(apps.join("dave/.api.toml.9.tmp"), "cut").unwrap();
        let done = clean(apps);
        assert_eq!(
            done,
            Cleaned {
                temp_files: 2,
                empty_dirs: 1,
                cut_renames: 0,
            }
        );
        let mut left: Vec<String> = std::fs::read_dir(&alice)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".web.toml.swp", ".x.tmp", "notes.tmp", "web", "web.toml"]
        );
        assert!(
            apps.join("bob").is_dir(),
            "an empty directory made by hand stays"
        );
        assert!(
            !apps.join("dave").exists(),
            "the cut write's directory goes"
        );
        assert!(apps.join("carol").is_file());
    }
}
