//! File modes under `state/apps`: what berth stores is readable by berth's user only
//! (docs/guides/tenancy.md). Manifests carry env values, so berth writes them 0600 in 0700 directories, and at
//! start tightens what an older berth, git or a person left readable by others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Files and directories made private by one [`tighten`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// Manifests (and other files) set to 0600.
    pub files: usize,
    /// Directories set to 0700.
    pub dirs: usize,
}

/// Removes group and other bits from `apps_state_dir`, its user directories and their
/// files, without following links. Errors on single entries are skipped: a file berth
/// cannot chmod is not one it wrote.
pub fn tighten(apps_state_dir: &Path) -> Tightened {
    let mut done = Tightened::default();
    // state/ itself too: in git mode it holds .git, whose objects carry every version of every
    // manifest.
    if let Some(state_dir) = apps_state_dir.parent() {
        if private(state_dir, 0o700) {
            done.dirs += 1;
        }
    }
    if private(apps_state_dir, 0o700) {
        done.dirs += 1;
    }
    let Ok(users) = std::fs::read_dir(apps_state_dir) else {
        return done;
    };
    for user in users.flatten() {
        let Ok(kind) = user.file_type() else { continue };
        if !kind.is_dir() {
            continue;
        }
        if private(&user.path(), 0o700) {
            done.dirs += 1;
        }
        let Ok(files) = std::fs::read_dir(user.path()) else {
            continue;
        };
        for file in files.flatten() {
            if file.file_type().is_ok_and(|t| t.is_file()) && private(&file.path(), 0o600) {
                done.files += 1;
            }
        }
    }
    done
}

/// Sets `mode` on `path` (never through a link) when it grants anything to group or others.
fn private(path: &Path, mode: u32) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if md.file_type().is_symlink() || md.permissions().mode() & 0o077 == 0 {
        return false;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn group_and_other_bits_go_and_links_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("apps");
        std::fs::create_dir_all(apps.join("alice")).unwrap();
        std::fs::write(apps.join("alice/web.toml"), "template = \"t\"").unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, apps.join("alice/link.toml")).unwrap();
        for p in [&apps, &apps.join("alice")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(
            apps.join("alice/web.toml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(tighten(&apps), Tightened { files: 1, dirs: 3 });
        assert_eq!(
            mode(dir.path()),
            0o700,
            "the state directory (its .git) too"
        );
        assert_eq!(mode(&apps.join("alice/web.toml")), 0o600);
        assert_eq!(mode(&apps.join("alice")), 0o700);
        assert_eq!(mode(&outside), 0o644, "a link's target is not berth's");
        assert_eq!(tighten(&apps), Tightened::default(), "nothing left to do");
    }
}
