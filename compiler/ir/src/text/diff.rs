//! Unified diffs of IR text: what reviewers read to see what a pass or a recipe change did.
//!
//! The text form is name-based and ordered deterministically, so a diff shows only real
//! changes: a rewritten node, a removed one, a constant whose data changed (its fingerprint).

/// A unified diff from `before` to `after` with three lines of context; empty when equal.
pub fn unified(before: &str, after: &str, from: &str, to: &str) -> String {
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(from, to)
        .to_string()
}
