//! The canonical layout of a recipe (`mcc fmt`): the same tokens and comments in the same
//! order and on the same lines, with only the whitespace between them made canonical.
//!
//! **Invariant:** formatting changes whitespace only. The significant tokens (words,
//! numbers, strings, regexes, punctuation) and the comments of the output are those of the
//! input, in order — [`format`] checks this, and that the output parses, before it returns —
//! so a formatted recipe means exactly what it did. Formatting is idempotent.
//!
//! The layout: each line indented two spaces per bracket (`{`, `(`, `[`) open at its start (one
//! fewer when it starts by closing one); one space between tokens, except none before `,`,
//! `:`, `?`, `)`, `]`, `%` and after `(`, `[`, around `.`, and between a name and the `(` or
//! `[` that follows it (`use std.int8(per: channel)`, `Conv[kernel == 3]`, `inside("/b")`);
//! a comment one space after the code it follows; no trailing whitespace; at most one blank
//! line in a row, none at the start or end, after a line that opens a block or before one
//! that closes it; one newline at the end.

use crate::SyntaxError;

/// A token of the recipe's text.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier, keyword, unit or number (`-` included when it is a sign).
    Word(String),
    /// A string, with its quotes, as written.
    Str(String),
    /// A regex selector, with its slashes, as written.
    Regex(String),
    /// A comment, from `#` to the end of its line (trailing whitespace removed).
    Comment(String),
    /// Punctuation or an operator.
    Punct(&'static str),
    /// The end of a line.
    Newline,
}

const PUNCT: &[&str] = &[
    "<=", ">=", "==", "!=", "{", "}", "(", ")", "[", "]", ",", ":", "=", "|", "&", "-", "?", "*",
    ".", "<", ">", "%",
];

/// The tokens of `src` (which parsed: every character belongs to some token or is space).
fn tokens(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    // Whether a `-` here starts a number: after what precedes a value.
    let signed = |out: &[Tok]| {
        matches!(
            out.iter()
                .rev()
                .find(|t| !matches!(t, Tok::Newline | Tok::Comment(_))),
            Some(Tok::Punct(
                ":" | "=" | "(" | "," | "<=" | ">=" | "==" | "!=" | "<" | ">"
            ))
        )
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        // Up to the end of the line (a string or regex ends where its line does, at most).
        let until = |i: usize, close: char| {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\n' {
                if chars[j] == '\\' {
                    j += 2;
                    continue;
                }
                if chars[j] == close {
                    return j + 1;
                }
                j += 1;
            }
            j.min(chars.len())
        };
        match c {
            '\n' => {
                out.push(Tok::Newline);
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Comment(text.trim_end().to_string()));
            }
            '"' => {
                i = until(i, '"');
                out.push(Tok::Str(chars[start..i].iter().collect()));
            }
            '/' => {
                i = until(i, '/');
                out.push(Tok::Regex(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_alphanumeric()
                || c == '_'
                || (c == '-'
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                    && signed(&out)) =>
            {
                i += 1;
                let number = c == '-' || c.is_ascii_digit();
                while i < chars.len() {
                    let d = chars[i];
                    let exp_sign =
                        number && (d == '+' || d == '-') && matches!(chars[i - 1], 'e' | 'E');
                    let fraction =
                        number && d == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                    if d.is_ascii_alphanumeric() || d == '_' || exp_sign || fraction {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let p = PUNCT
                    .iter()
                    .find(|p| p.len() == 2 && **p == two)
                    .or_else(|| PUNCT.iter().find(|p| p.len() == 1 && p.starts_with(c)));
                match p {
                    Some(p) => {
                        i += p.len();
                        out.push(Tok::Punct(p));
                    }
                    // Not in the grammar (the source parsed, so this is not reached): kept.
                    None => {
                        i += 1;
                        out.push(Tok::Word(c.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Words after which a `(` is an operand, not a call: a space stays between them.
const KEYWORDS: &[&str] = &["on", "with", "labels"];

/// Whether one space goes between tokens `a` and `b` on a line.
fn space(a: &Tok, b: &Tok) -> bool {
    use Tok::{Comment, Punct, Word};
    match (a, b) {
        (_, Comment(_)) => true,
        (_, Punct("," | ":" | "?" | ")" | "]" | "%" | ".")) => false,
        (Punct("(" | "[" | "."), _) => false,
        (Word(w), Punct("(" | "[")) => KEYWORDS.contains(&w.as_str()),
        _ => true,
    }
}

/// The canonical layout of `src` (see the module documentation), or why it cannot be
/// formatted: a syntax error (as [`crate::parse`] reports it).
pub fn format(src: &str) -> Result<String, SyntaxError> {
    crate::parse(src)?;
    let toks = tokens(src);
    let mut lines: Vec<String> = vec![];
    let mut depth: usize = 0;
    for line in toks.split(|t| *t == Tok::Newline) {
        if line.is_empty() {
            lines.push(String::new());
            continue;
        }
        let closes = matches!(line[0], Tok::Punct("}" | ")" | "]"));
        let indent = depth.saturating_sub(usize::from(closes));
        let mut text = "  ".repeat(indent);
        for (k, t) in line.iter().enumerate() {
            if k > 0 && space(&line[k - 1], t) {
                text.push(' ');
            }
            match t {
                Tok::Word(s) | Tok::Str(s) | Tok::Regex(s) | Tok::Comment(s) => text.push_str(s),
                Tok::Punct(p) => {
                    text.push_str(p);
                    match *p {
                        "{" | "(" | "[" => depth += 1,
                        "}" | ")" | "]" => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
                Tok::Newline => {}
            }
        }
        lines.push(text);
    }
    // At most one blank line in a row; none at the start or the end, after a line that
    // opens a block or before one that closes it.
    let mut out = String::new();
    let mut blank = false;
    for l in lines {
        if l.is_empty() {
            blank = !out.is_empty() && !out.trim_end().ends_with('{');
            continue;
        }
        if blank && !l.trim_start().starts_with('}') {
            out.push('\n');
        }
        blank = false;
        out.push_str(&l);
        out.push('\n');
    }
    // The invariant: the same tokens and comments, and still a recipe.
    let same = |s: &str| -> Vec<Tok> {
        tokens(s)
            .into_iter()
            .filter(|t| *t != Tok::Newline)
            .collect()
    };
    if same(&out) != same(src) {
        return Err(SyntaxError::at(
            0,
            0,
            "formatting would change the recipe's tokens, so it is left as it is (a bug in `mcc fmt`: please report it)",
        ));
    }
    crate::parse(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_becomes_canonical_and_nothing_else_changes() {
        let src = "\n\n# deep compression\ncalibrate   with \"a b.npy\"   # data\n\n\n\nstage  prune{\n      prune unstructured on Conv [ kernel==3 ]|Gemm ? - \"x\"{amount:80 %,by : l1}\n}\nuse std.int8 ( per : channel )\nbudget {\n size <= 400   KiB\n accuracy_drop<=1%\n}\nprune nm on ( inside ( \"/b\" ) & Conv ) - /fc[0-9]/ { n: 2, m: 4, x: -0.5 }\n";
        let want = "# deep compression\ncalibrate with \"a b.npy\" # data\n\nstage prune {\n  prune unstructured on Conv[kernel == 3] | Gemm? - \"x\" { amount: 80%, by: l1 }\n}\nuse std.int8(per: channel)\nbudget {\n  size <= 400 KiB\n  accuracy_drop <= 1%\n}\nprune nm on (inside(\"/b\") & Conv) - /fc[0-9]/ { n: 2, m: 4, x: -0.5 }\n";
        let got = format(src).unwrap();
        assert_eq!(got, want);
        assert_eq!(format(&got).unwrap(), got, "idempotent");
    }

    #[test]
    fn a_recipe_that_does_not_parse_is_not_formatted() {
        assert!(format("prune on {").is_err());
    }
}
