//! App backups (docs/guides/backups-and-recovery.md): a manifest's `[backup]` table (when and
//! how many snapshots to keep, and where), a template's `[backup]` table (how a consistent
//! copy of what it keeps is taken and put back), and the restic arguments both turn into:
//! the tags that name an app's snapshots and the `forget` policy applied to them alone.
//! Pure: nothing here runs restic.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::names::AppKey;

/// The only target this version knows: the local repository under berth's root.
pub const LOCAL_TARGET: &str = "local";

/// Longest schedule expression accepted.
const MAX_SCHEDULE: usize = 128;

/// The largest count a keep rule takes (restic takes more; nobody needs it).
const MAX_KEEP: u32 = 10_000;

/// `[backup]` in a manifest: backups turned on for this app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupDecl {
    /// When to back up: five cron fields (minute hour day-of-month month day-of-week) or
    /// `@daily`, `@hourly` and the like, read in `timezone`. Checked now; this version runs
    /// no backup on its own (`berth backups run` takes one).
    #[serde(default, deserialize_with = "schedule")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default "UTC", never the host's zone).
    #[serde(default, deserialize_with = "timezone")]
    #[schemars(length(min = 1, max = 64))]
    pub timezone: Option<String>,
    /// Which snapshots survive retention (restic's `forget --keep-*`), applied to this app's
    /// snapshots only. Nothing set keeps every snapshot.
    #[serde(default)]
    pub keep: Keep,
    /// Where snapshots go: `"local"` (default), the restic repository under berth's root.
    #[serde(default, deserialize_with = "target")]
    #[schemars(regex(pattern = "^local$"))]
    pub target: Option<String>,
}

/// `keep = { last, daily, weekly, monthly }`: restic's `--keep-last` and friends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest N snapshots (1 to 10000).
    #[serde(default, deserialize_with = "count")]
    #[schemars(range(min = 1, max = 10000))]
    pub last: Option<u32>,
    /// The newest snapshot of each of the last N days.
    #[serde(default, deserialize_with = "count")]
    #[schemars(range(min = 1, max = 10000))]
    pub daily: Option<u32>,
    /// The newest snapshot of each of the last N weeks.
    #[serde(default, deserialize_with = "count")]
    #[schemars(range(min = 1, max = 10000))]
    pub weekly: Option<u32>,
    /// The newest snapshot of each of the last N months.
    #[serde(default, deserialize_with = "count")]
    #[schemars(range(min = 1, max = 10000))]
    pub monthly: Option<u32>,
}

impl Keep {
    /// Whether any rule is set (none: retention deletes nothing).
    pub fn is_set(&self) -> bool {
        !self.forget_args().is_empty()
    }

    /// `--keep-last N` and the rest, for the rules that are set.
    pub fn forget_args(&self) -> Vec<String> {
        [
            ("--keep-last", self.last),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
        ]
        .into_iter()
        .filter_map(|(flag, n)| n.map(|n| [flag.to_string(), n.to_string()]))
        .flatten()
        .collect()
    }
}

/// `[backup]` in template.toml: how an app's consistent copy is taken.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackupMethod {
    /// A logical dump: `dump` runs inside the app's running container and writes the copy to
    /// its standard output; only a dump that exits 0 becomes a snapshot. `restore` gets the
    /// same bytes on its standard input, in the running container.
    Dump {
        /// The dump command (1 to 16 arguments).
        #[serde(deserialize_with = "command")]
        #[schemars(length(min = 1, max = 16))]
        dump: Vec<String>,
        /// The restore command (1 to 16 arguments).
        #[serde(deserialize_with = "command")]
        #[schemars(length(min = 1, max = 16))]
        restore: Vec<String>,
        /// The dump's file name inside a snapshot (`[a-z0-9._-]`, default "dump").
        #[serde(default = "dump_file", deserialize_with = "file_name")]
        #[schemars(regex(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$"))]
        file: String,
    },
    /// A copy of the app's volumes, byte for byte with owners and modes. The app is stopped
    /// while they are restored; a backup is crash-consistent (taken while it runs).
    Volume {},
}

fn dump_file() -> String {
    "dump".into()
}

/// The default for a template without `[backup]` but with volumes: copy them.
pub fn method_of(declared: Option<&BackupMethod>, has_volumes: bool) -> Option<BackupMethod> {
    match declared {
        Some(m) => Some(m.clone()),
        None if has_volumes => Some(BackupMethod::Volume {}),
        None => None,
    }
}

/// The restic tags every snapshot of `key` on `instance` carries. Retention and listing
/// select by all three, so no other app's (or instance's) snapshots are ever touched.
pub fn tags(instance: &str, key: &AppKey) -> [String; 3] {
    [
        format!("berth-instance={instance}"),
        format!("berth-user={}", key.userid),
        format!("berth-app={}", key.appname),
    ]
}

/// The one `--tag` filter (comma = all of them) that selects `key`'s snapshots.
pub fn tag_filter(instance: &str, key: &AppKey) -> String {
    tags(instance, key).join(",")
}

/// `restic forget` arguments for `key`: its snapshots only, grouped by their tags (so the
/// policy counts this app's snapshots, whatever the host or paths), and pruned.
pub fn forget_args(instance: &str, key: &AppKey, keep: &Keep) -> Option<Vec<String>> {
    if !keep.is_set() {
        return None;
    }
    let mut args = vec![
        "forget".to_string(),
        "--tag".into(),
        tag_filter(instance, key),
        "--group-by".into(),
        "tags".into(),
    ];
    args.extend(keep.forget_args());
    args.push("--prune".into());
    Some(args)
}

fn schedule<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_schedule(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

/// A cron expression `Schedule` can read (its time zone is checked on its own field).
pub fn check_schedule(s: &str) -> Result<(), String> {
    if s.len() > MAX_SCHEDULE {
        return Err(format!("schedule: at most {MAX_SCHEDULE} characters"));
    }
    crate::model::schedule::Schedule::parse(s, None)
        .map(drop)
        .map_err(|e| format!("schedule {s:?}: {e}"))
}

fn timezone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > 64 {
        return Err(serde::de::Error::custom("timezone: at most 64 characters"));
    }
    crate::model::schedule::Schedule::parse("@daily", Some(&s))
        .map_err(|e| serde::de::Error::custom(format!("timezone: {e}")))?;
    Ok(Some(s))
}

fn target<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s != LOCAL_TARGET {
        return Err(serde::de::Error::custom(format!(
            "target {s:?}: only \"local\" (the repository under berth's root) is known"
        )));
    }
    Ok(Some(s))
}

fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=i64::from(MAX_KEEP)).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "{n} is outside 1..={MAX_KEEP} (leave the rule out to not use it)"
        )));
    }
    Ok(Some(n as u32))
}

fn command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let c = Vec::<String>::deserialize(d)?;
    let fits = |a: &String| !a.is_empty() && a.len() <= 4096 && !a.contains('\0');
    if c.is_empty() || c.len() > 16 || !c.iter().all(fits) {
        return Err(serde::de::Error::custom(
            "a command is 1 to 16 arguments of 1 to 4096 characters (no NUL)",
        ));
    }
    Ok(c)
}

fn file_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "file {s:?}: use a-z, 0-9, '.', '_' and '-', starting with a letter or digit (at most 64)"
        )));
    }
    Ok(s)
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
