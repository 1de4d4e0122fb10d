//! Colour for people at a terminal: phases in `berth status` and changes in `berth plan`.
//! Only when stdout is a terminal, `NO_COLOR` is unset and `TERM` is not `dumb`; piped or
//! captured output (scripts, tests, CI logs) stays plain text.

use std::sync::OnceLock;

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Whether this process colours its output.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        // SAFETY: isatty only reads the descriptor's state.
        let tty = unsafe { libc::isatty(1) } == 1;
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        tty && !no_color && std::env::var("TERM").map_or(true, |t| t != "dumb")
    })
}

fn paint(text: &str, colour: Option<&str>, on: bool) -> String {
    match (on, colour) {
        (true, Some(c)) => format!("{c}{text}{RESET}"),
        _ => text.to_string(),
    }
}

/// `shown` (a phase, already padded) coloured by what `phase` means: green running, red for
/// what needs a person, yellow for what is on its way.
pub fn phase(shown: &str, phase: &str, on: bool) -> String {
    let colour = match phase {
        "running" => Some(GREEN),
        "failed" | "frozen" | "crash-loop" | "rollout-failed" | "build-failed"
        | "prune-blocked" | "over-quota" => Some(RED),
        "pending" | "stopped" => Some(YELLOW),
        _ => None,
    };
    paint(shown, colour, on)
}

/// One line of `berth plan`: removals red, recreates yellow, creations green.
pub fn plan_line(line: &str, on: bool) -> String {
    let colour = if line.contains(" remove") {
        Some(RED)
    } else if line.contains("recreate") || line.contains("settle") {
        Some(YELLOW)
    } else if line.contains(" create") || line.contains(" start") {
        Some(GREEN)
    } else {
        None
    };
    paint(line, colour, on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_when_on_and_keeps_the_text() {
        assert_eq!(phase("running   ", "running", false), "running   ");
        assert_eq!(
            phase("running   ", "running", true),
            "\x1b[32mrunning   \x1b[0m"
        );
        assert!(phase("frozen", "frozen", true).starts_with(RED));
        assert_eq!(phase("weird", "weird", true), "weird");
        assert!(plan_line("  a/b  remove (manifest gone)", true).starts_with(RED));
        assert!(plan_line("  a/b  recreate and start", true).starts_with(YELLOW));
        assert!(plan_line("  a/b  create and start", true).starts_with(GREEN));
        assert_eq!(plan_line("No changes", true), "No changes");
        assert_eq!(
            plan_line("  a/b  create and start", false),
            "  a/b  create and start"
        );
    }
}
