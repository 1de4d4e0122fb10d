//! A line diff between two manifest texts (longest common subsequence), for the revisions
//! page. Manifests are small; past [`MAX_LINES`] lines a side the diff is not computed.

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// In both.
    Same(&'a str),
    /// Only in the old text.
    Removed(&'a str),
    /// Only in the new text.
    Added(&'a str),
}

/// Most lines a side that are diffed (the table is lines × lines).
pub const MAX_LINES: usize = 2000;

/// The lines of `old` and `new` in order, each marked; `None` when either is too long.
pub fn lines<'a>(old: &'a str, new: &'a str) -> Option<Vec<Line<'a>>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return None;
    }
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut common = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i * width + j] = if a[i] == b[j] {
                common[(i + 1) * width + j + 1] + 1
            } else {
                common[(i + 1) * width + j].max(common[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(Line::Same(a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len()
            && (j == b.len() || common[(i + 1) * width + j] >= common[i * width + j + 1])
        {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::Line::*;

    #[test]
    fn a_changed_line_is_a_removal_and_an_addition() {
        let old = "template = \"node\"\nstate = \"running\"\nmemory = \"256m\"\n";
        let new = "template = \"node\"\nstate = \"stopped\"\nmemory = \"256m\"\ndomain = \"x\"\n";
        assert_eq!(
            super::lines(old, new).unwrap(),
            vec![
                Same("template = \"node\""),
                Removed("state = \"running\""),
                Added("state = \"stopped\""),
                Same("memory = \"256m\""),
                Added("domain = \"x\""),
            ]
        );
        assert_eq!(super::lines("", "a").unwrap(), vec![Added("a")]);
        assert_eq!(super::lines("a", "").unwrap(), vec![Removed("a")]);
        let huge = "x\n".repeat(super::MAX_LINES + 1);
        assert!(super::lines(&huge, "x").is_none());
    }
}
