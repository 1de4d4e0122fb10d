//! Which shell blocks in the docs call berth's HTTP API with curl, and the check that each
//! is run against a live `serve` by a test: the HTTP API reference's session, or a block
//! marked `<!-- api-run: FIXTURE -->` (run by `readme.rs`, or the README tour's deploy step by
//! `tour.rs`).

use super::{md_files, read, split, Block};

/// Whether a shell block calls berth's HTTP API with curl: a `curl` line naming `$API` or
/// the default listen address.
pub(crate) fn calls_the_api(block: &Block) -> bool {
    block.lang == "sh"
        && block
            .text
            .replace("\\\n", " ")
            .lines()
            .any(|l| l.contains("curl ") && (l.contains("$API") || l.contains("127.0.0.1:7070")))
}

/// The fixtures a marked block runs in: `app` and `git` in `readme.rs`, `tour` (the README
/// tour's deploy step) in `docs/tour.rs`.
pub(crate) const API_RUN_FIXTURES: &[&str] = &["app", "git", "tour"];

/// The fixture named by the `<!-- api-run: FIXTURE -->` marker before a block.
pub(crate) fn api_run_fixture(block: &Block) -> Option<&str> {
    let marker = block.before.strip_prefix("<!-- api-run: ")?;
    marker.strip_suffix(" -->")
}

#[test]
fn every_curl_example_that_calls_the_api_is_run_by_a_test() {
    let (mut bad, mut covered) = (Vec::new(), 0);
    for file in md_files() {
        for block in split(&read(&file)).0.iter().filter(|b| calls_the_api(b)) {
            let run = block.before == "<!-- api-example:start -->"
                || api_run_fixture(block).is_some_and(|f| API_RUN_FIXTURES.contains(&f));
            match run {
                true => covered += 1,
                false => bad.push(format!(
                    "{}:{}: a curl example no test runs: mark it <!-- api-run: {} --> \
                     (reconcile-tests/readme.rs runs it) or change it",
                    file.display(),
                    block.line,
                    API_RUN_FIXTURES.join("|")
                )),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        covered >= 4,
        "only {covered} curl examples found: is the search broken?"
    );
}
