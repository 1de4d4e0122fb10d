//! What berth asks restic and how it reads the answers: the shell scripts one-off containers
//! of the restic image run (the repository's password read from standard input into the
//! script's own environment, never the container's), and the JSON lines they print. Pure.

use serde::{Deserialize, Serialize};

/// Where the repository is mounted in a restic job.
pub const REPO: &str = "/repo";
/// Where an app's volumes are mounted in a volume job (one directory per volume name).
pub const DATA: &str = "/data";
/// Where a dump's scratch directory is mounted.
pub const DUMP: &str = "/dump";

/// The opening every script shares: the password from standard input, no cache (a one-off
/// container would only throw it away), the repository mounted at [`REPO`].
const PRELUDE: &str =
    "set -e; read -r RESTIC_PASSWORD; export RESTIC_PASSWORD RESTIC_REPOSITORY=/repo; ";

/// One snapshot of an app, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// restic's short id (8 hex digits).
    pub id: String,
    /// When it was taken (RFC 3339, as restic says it).
    pub time: String,
    /// The bytes a restore writes (restic's restore size); none when not asked.
    pub size: Option<u64>,
    /// Why it was taken: `manual`, `pre-restore`.
    pub reason: String,
}

/// restic's `snapshots --json` entry (the fields berth reads).
#[derive(Debug, Deserialize)]
struct Listed {
    time: String,
    short_id: String,
    id: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// The tag a snapshot's reason is kept in.
pub fn reason_tag(reason: &str) -> String {
    format!("berth-reason={reason}")
}

/// `restic init` when the repository has no config yet.
pub fn init_script() -> String {
    format!("{PRELUDE}restic --no-cache init >/dev/null; echo initialised")
}

/// Backs up `path` with `tags`; prints the JSON summary.
pub fn backup_script(host: &str, tags: &[String], path: &str) -> String {
    let tags: String = tags
        .iter()
        .map(|t| format!(" --tag {}", quote(t)))
        .collect();
    format!(
        "{PRELUDE}cd {path}; exec restic --no-cache backup --json --quiet --host {} {tags} {path}",
        quote(host)
    )
}

/// Lists the snapshots carrying every tag of `filter` (comma separated), one JSON array.
pub fn snapshots_script(filter: &str) -> String {
    format!(
        "{PRELUDE}exec restic --no-cache snapshots --json --tag {}",
        quote(filter)
    )
}

/// The restore size of each of `ids`, one JSON line each, in order.
pub fn stats_script(ids: &[String]) -> String {
    let ids: String = ids.iter().map(|i| format!(" {}", quote(i))).collect();
    format!("{PRELUDE}for id in{ids}; do restic --no-cache stats --json --mode restore-size \"$id\"; echo; done")
}

/// `restic forget` with `args` (see `model::backup::forget_args`).
pub fn forget_script(args: &[String]) -> String {
    let args: String = args.iter().map(|a| format!(" {}", quote(a))).collect();
    format!("{PRELUDE}exec restic --no-cache{args}")
}

/// Empties every volume mounted under [`DATA`] (dot files too), then restores snapshot `id`
/// over them: owners, modes and times as the snapshot has them.
pub fn restore_volumes_script(id: &str) -> String {
    format!(
        "{PRELUDE}for d in {DATA}/*/; do rm -rf \"$d\"..?* \"$d\".[!.]* \"$d\"*; done; exec restic --no-cache restore {} --target /",
        quote(id)
    )
}

/// Restores snapshot `id`'s dump into the scratch directory mounted at [`DUMP`].
pub fn restore_dump_script(id: &str) -> String {
    format!(
        "{PRELUDE}rm -rf {DUMP}/*; exec restic --no-cache restore {} --target / --include {DUMP}",
        quote(id)
    )
}

/// The snapshot id from `backup --json --quiet`'s output.
pub fn parse_backup(out: &str) -> Option<String> {
    out.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l.trim()).ok()?;
        (v["message_type"] == "summary")
            .then(|| v["snapshot_id"].as_str().map(str::to_string))
            .flatten()
    })
}

/// The snapshots in `snapshots --json`'s output, newest first, with their full ids.
pub fn parse_snapshots(out: &str) -> Result<Vec<(String, Snapshot)>, String> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .ok_or_else(|| format!("restic listed no snapshots: {}", last_line(out)))?;
    let mut listed: Vec<Listed> =
        serde_json::from_str(line).map_err(|e| format!("restic's snapshot list: {e}"))?;
    listed.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(listed
        .into_iter()
        .map(|l| {
            let reason = l
                .tags
                .iter()
                .find_map(|t| t.strip_prefix("berth-reason="))
                .unwrap_or("manual")
                .to_string();
            let snap = Snapshot {
                id: l.short_id,
                time: l.time,
                size: None,
                reason,
            };
            (l.id, snap)
        })
        .collect())
}

/// The `total_size` of each `stats --json` line, in order.
pub fn parse_stats(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|v| v["total_size"].as_u64())
        .collect()
}

/// The last non-empty line of a job's output: its reason when it failed.
pub fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `s` single-quoted for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_read_from_restics_json_lines() {
        let out = "repository opened\n{\"message_type\":\"summary\",\"snapshot_id\":\"abc123\",\"total_bytes_processed\":5}\n";
        assert_eq!(parse_backup(out).as_deref(), Some("abc123"));
        assert_eq!(parse_backup("Fatal: wrong password"), None);
        let list = r#"[{"time":"2026-01-01T00:00:00Z","short_id":"aa","id":"aaaa","tags":["berth-app=db"]},{"time":"2026-01-02T00:00:00Z","short_id":"bb","id":"bbbb","tags":["berth-reason=pre-restore"]}]"#;
        let snaps = parse_snapshots(list).unwrap();
        assert_eq!(snaps[0].0, "bbbb", "newest first");
        assert_eq!(snaps[0].1.reason, "pre-restore");
        assert_eq!(snaps[1].1.reason, "manual");
        assert!(parse_snapshots("Fatal: no repository").is_err());
        assert_eq!(
            parse_stats("{\"total_size\":10}\n\n{\"total_size\":20}\n"),
            [10, 20]
        );
    }

    #[test]
    fn every_argument_is_quoted_for_the_shell() {
        let s = backup_script("berth-x", &["a'b".into()], "/data");
        assert!(s.contains("--tag 'a'\\''b'"), "{s}");
        assert!(s.starts_with(PRELUDE));
        assert!(
            !s.contains("RESTIC_PASSWORD="),
            "the password is never in the script"
        );
    }
}
