//! Docs that cannot rot: README.md, ARCHITECTURE.md and docs/**/*.md are read as a person
//! would follow them. Every relative link and `#anchor` must resolve (GitHub's heading slugs);
//! every ```toml block must parse, and one that names its file (`# state/apps/<u>/<a>.toml`,
//! `# berth.toml`, `#:schema`) or carries a `<!-- check: manifest|template|berth-toml -->`
//! marker must validate as that file; every `berth …` command in a ```sh block must parse with
//! the real CLI (`berth::cli::Cli`), and the synopsis in docs/reference/cli.md must name only
//! subcommands and flags that exist; every ```sh block that calls the API with curl must be
//! one `readme.rs` runs against a live `serve` (the HTTP API reference's session, or a block
//! marked `<!-- api-run: FIXTURE -->`). Generated reference sections (the metric list, the
//! manifest's and template.toml's fields) are rendered from the code and compared with the
//! committed pages; `BERTH_BLESS=1` rewrites them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, ARCHITECTURE.md and every Markdown file under docs/, relative to the repository.
pub(crate) fn md_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p.strip_prefix(repo()).unwrap().to_path_buf());
            }
        }
    }
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("ARCHITECTURE.md")];
    walk(&repo().join("docs"), &mut files);
    files
}

pub(crate) fn read(rel: &Path) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display()))
}

#[test]
fn the_readme_stays_short_enough_to_read_in_five_minutes() {
    let lines = read(Path::new("README.md")).lines().count();
    assert!(
        lines < 250,
        "README.md has {lines} lines: move detail into docs/"
    );
}

/// One fenced block: its language, the line its fence opens on, the line before the fence,
/// and its text.
pub(crate) struct Block {
    pub(crate) lang: String,
    pub(crate) line: usize,
    pub(crate) before: String,
    pub(crate) text: String,
}

/// The fenced blocks of `md`, and its lines outside any block (with their numbers).
pub(crate) fn split(md: &str) -> (Vec<Block>, Vec<(usize, String)>) {
    let (mut blocks, mut prose) = (Vec::new(), Vec::new());
    let mut open: Option<Block> = None;
    let mut before = String::new();
    for (i, line) in md.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    line: i + 1,
                    before: before.clone(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some(b), None) => {
                b.text.push_str(line.trim_start_matches("  "));
                b.text.push('\n');
            }
            (None, None) => prose.push((i + 1, line.to_string())),
        }
        if !line.trim().is_empty() {
            before = line.trim().to_string();
        }
    }
    (blocks, prose)
}

/// GitHub's anchor for a heading: lower case, markup and punctuation dropped (letters,
/// digits, `-` and `_` kept), each space a `-`; a repeated slug gets `-1`, `-2`, ...
fn slugs(md: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in split(md).1 {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// `text` without its inline code spans (a link shown as code is not a link).
fn without_code(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// Every link target in a line of prose: `[..](target)`, `src="target"`, `href="target"`.
fn targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    for (open, close) in [("](", ')'), ("src=\"", '"'), ("href=\"", '"')] {
        let mut rest = line.as_str();
        while let Some(at) = rest.find(open) {
            rest = &rest[at + open.len()..];
            if let Some(end) = rest.find(close) {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// Why `target`, linked from `from`, does not resolve; `None` when it does.
fn broken(from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap().join(path)
    };
    let abs = repo().join(&file);
    if !abs.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    if anchor.is_empty() || abs.is_dir() {
        return None;
    }
    let text = std::fs::read_to_string(&abs).ok()?;
    (!slugs(&text).contains(anchor)).then(|| format!("no heading #{anchor} in {}", file.display()))
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let mut bad = Vec::new();
    for file in md_files() {
        for (n, line) in split(&read(&file)).1 {
            for t in targets(&line) {
                if let Some(why) = broken(&file, &t) {
                    bad.push(format!("{}:{n}: ({t}): {why}", file.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// What a TOML block says it is, by its first line or the marker before its fence.
fn claims(block: &Block) -> Option<&'static str> {
    let first = block.text.lines().next().unwrap_or("");
    let marker = block.before.strip_prefix("<!-- check: ");
    let marker = marker.and_then(|m| m.strip_suffix(" -->"));
    let manifest =
        regex::Regex::new(r"^# state/apps/[a-z][a-z0-9]*/[a-z][a-z0-9-]*\.toml").unwrap();
    match marker {
        Some("manifest") => Some("manifest"),
        Some("template") => Some("template"),
        Some("berth-toml") => Some("berth-toml"),
        Some(other) => panic!("unknown check marker {other:?}"),
        None if manifest.is_match(first) => Some("manifest"),
        None if first.starts_with("#:schema") && first.contains("manifest.schema.json") => {
            Some("manifest")
        }
        None if first.starts_with("# berth.toml") => Some("berth-toml"),
        None => None,
    }
}

fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(to_json).collect(),
        toml::Value::Table(t) => t.into_iter().map(|(k, v)| (k, to_json(v))).collect(),
    }
}

fn schema(name: &str) -> Value {
    let text = read(Path::new(&format!("templates/{name}.schema.json")));
    serde_json::from_str(&text).unwrap()
}

/// The complaints of `schema` about `doc`.
fn against_schema(schema: &Value, doc: toml::Value) -> Vec<String> {
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("a valid schema");
    let doc = to_json(doc);
    v.iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Loads `text` as berth.toml in a temp root, the way `berth --config FILE` does.
fn as_config(text: &str) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("berth.toml");
    std::fs::write(&path, text).unwrap();
    berth::model::config::Config::load(Some(&path), Some(root.path()))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Why one TOML block is wrong, if it is.
fn toml_problems(block: &Block) -> Vec<String> {
    let doc = match toml::from_str::<toml::Value>(&block.text) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("does not parse: {e}")],
    };
    match claims(block) {
        Some("manifest") => against_schema(&schema("manifest"), doc),
        Some("template") => against_schema(&schema("template"), doc),
        Some("berth-toml") => as_config(&block.text).err().into_iter().collect(),
        _ => vec![],
    }
}

#[test]
fn every_toml_example_parses_and_validates_as_the_file_it_claims() {
    let (mut bad, mut checked) = (Vec::new(), 0);
    for file in md_files() {
        for block in split(&read(&file)).0.iter().filter(|b| b.lang == "toml") {
            checked += usize::from(claims(block).is_some());
            for p in toml_problems(block) {
                bad.push(format!("{}:{}: {p}", file.display(), block.line));
            }
        }
    }
    assert!(bad.is_empty(), "bad TOML examples:\n{}", bad.join("\n"));
    assert!(checked >= 4, "only {checked} TOML blocks claim a schema");
}

/// Splits a shell line into words (quotes removed), ending at the first shell operator.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quote) = (Vec::new(), String::new(), None);
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, '|' | '>' | '<' | ';' | ')' | '&' | '#') if !started => break,
            (None, ')' | ';' | '|') => break,
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// Every `berth …` command in a shell block, as words (line continuations joined).
fn berth_commands(sh: &str) -> Vec<Vec<String>> {
    let joined = sh.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("berth ") {
            let starts = at == 0 || {
                let prev = rest[..at].trim_end();
                prev.is_empty()
                    || prev.ends_with("$(")
                    || prev.ends_with('|')
                    || prev.ends_with("&&")
            };
            if starts {
                out.push(words(&rest[at..]));
            }
            rest = &rest[at + "berth ".len()..];
        }
    }
    out
}

#[test]
fn every_berth_command_in_a_shell_block_parses_with_the_real_cli() {
    let (mut bad, mut checked) = (Vec::new(), 0);
    for file in md_files() {
        for block in split(&read(&file)).0.iter().filter(|b| b.lang == "sh") {
            for argv in berth_commands(&block.text) {
                checked += 1;
                if let Err(e) = berth::cli::Cli::try_parse_from(&argv) {
                    let e = e.to_string();
                    let first = e.lines().next().unwrap_or_default();
                    bad.push(format!(
                        "{}:{}: `{}`: {first}",
                        file.display(),
                        block.line,
                        argv.join(" ")
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "commands the CLI refuses:\n{}",
        bad.join("\n")
    );
    assert!(checked >= 10, "only {checked} berth commands found");
}

/// The long flags of `cmd` and of its subcommands (a synopsis line shows them together).
fn flags(cmd: &clap::Command) -> BTreeSet<String> {
    let own = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(String::from);
    own.chain(cmd.get_subcommands().flat_map(flags)).collect()
}

#[test]
fn the_cli_synopsis_names_only_subcommands_and_flags_that_exist() {
    let cli = berth::cli::Cli::command();
    let page = read(Path::new("docs/reference/cli.md"));
    let synopsis = split(&page)
        .0
        .into_iter()
        .find(|b| b.before == "<!-- check: cli-synopsis -->")
        .expect("a synopsis block after <!-- check: cli-synopsis -->");
    let global: BTreeSet<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(String::from)
        .collect();
    let mut bad = Vec::new();
    for line in synopsis.text.lines() {
        let line = line.split(" # ").next().unwrap();
        let mut w = line.split_whitespace();
        assert_eq!(w.next(), Some("berth"), "synopsis line {line:?}");
        let name = w.next().unwrap();
        let Some(sub) = cli.find_subcommand(name) else {
            bad.push(format!("no subcommand `{name}`"));
            continue;
        };
        let longs = flags(sub);
        for flag in line
            .split(|c: char| !(c.is_alphanumeric() || c == '-'))
            .filter_map(|t| t.strip_prefix("--"))
        {
            if !longs.contains(flag) && !global.contains(flag) {
                bad.push(format!("`berth {name}` has no --{flag}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "docs/reference/cli.md synopsis: {}",
        bad.join("; ")
    );
}

pub(crate) mod curl;
mod generated;
mod tour;

/// The field names of `struct NAME` in the source file `src`.
fn struct_fields(src: &str, name: &str) -> Vec<String> {
    let text = read(Path::new(src));
    let body = text
        .split_once(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} in {src}"))
        .1;
    let body = body.split("\n}").next().unwrap();
    let field = regex::Regex::new(r"^\s+(?:pub(?:\(crate\))? )?([a-z_]+): ").unwrap();
    body.lines()
        .filter_map(|l| field.captures(l).map(|c| c[1].to_string()))
        .collect()
}

#[test]
fn the_config_references_name_every_key_berth_reads() {
    let checks = [
        (
            "src/model/config.rs",
            "ConfigFile",
            "docs/reference/berth-toml.md",
        ),
        (
            "src/model/git_config.rs",
            "GitConfig",
            "docs/reference/berth-toml.md",
        ),
        (
            "src/model/http_limits.rs",
            "HttpLimits",
            "docs/reference/berth-toml.md",
        ),
        (
            "src/model/proxy.rs",
            "ProxyConfig",
            "docs/reference/berth-toml.md",
        ),
        ("src/model/policy.rs", "RulesFile", "docs/guides/tenancy.md"),
    ];
    let mut missing = Vec::new();
    for (src, name, page) in checks {
        let keys = struct_fields(src, name);
        assert!(keys.len() >= 3, "read only {keys:?} from {name}");
        let text = read(Path::new(page));
        for k in keys.iter().filter(|k| *k != "users") {
            // `key =` (maybe commented out), a `[key]` table, or a `| `key` |` table row.
            let shown = format!(r"(?m)^\s*(# )?({k} =|\[{k}[\].])|\| `{k}` \|");
            if !regex::Regex::new(&shown).unwrap().is_match(&text) {
                missing.push(format!("{page} does not show {name}.{k}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
