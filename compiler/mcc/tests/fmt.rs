//! `mcc fmt` on every recipe mcc ships — `recipes/`, the standard library, the examples in
//! `docs/recipes.md` and the test fixtures that parse: each is already in the canonical
//! layout (as `cargo fmt --check` holds the Rust), formatting is idempotent, and a copy with
//! its whitespace scrambled (indentation, spacing, blank lines) formats back to the original.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every recipe text the repository holds: (where, text).
fn recipes() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = vec![];
    for dir in [
        "recipes",
        "stdlib/std",
        "tests/fixtures/recipes/ok",
        "tests/fixtures/recipes/err",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.map(|e| e.unwrap()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "mcr") {
                out.push((
                    format!("{dir}/{}", e.file_name().to_string_lossy()),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    let md = std::fs::read_to_string(root.join("docs/recipes.md")).unwrap();
    let mut lines = md.lines();
    let mut n = 0;
    while let Some(l) = lines.next() {
        if l.starts_with("```mcr") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((
                format!("docs/recipes.md example {n}"),
                body.join("\n") + "\n",
            ));
            n += 1;
        }
    }
    out.sort();
    out
}

/// `src` with its layout scrambled but its tokens kept: lines re-indented at random, spaces
/// outside strings and comments tripled or (after `:` and `,`) dropped, trailing spaces,
/// blank lines repeated, and blank lines after `{` and before `}`.
fn scramble(src: &str, seed: u64) -> String {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = String::from("\n\n");
    for line in src.lines() {
        if line.trim_start().starts_with('}') && next() % 2 == 0 {
            out.push('\n');
        }
        out.push_str(&" ".repeat((next() % 7) as usize));
        let (mut quoted, mut comment) = (false, false);
        let mut prev = ' ';
        for c in line.trim_start().chars() {
            match c {
                '"' if !comment && prev != '\\' => quoted = !quoted,
                '#' if !quoted => comment = true,
                _ => {}
            }
            if c == ' ' && !quoted && !comment {
                match (prev, next() % 3) {
                    (':' | ',', 0) => {}
                    (_, 1) => out.push_str("   "),
                    _ => out.push(' '),
                }
            } else {
                out.push(c);
            }
            prev = c;
        }
        out.push_str(&" ".repeat((next() % 3) as usize));
        out.push('\n');
        // A blank line becomes several; one after an opening brace or before a closing one
        // (which the layout drops) appears.
        let opens = line.trim_end().ends_with('{');
        if (line.trim().is_empty() || opens) && next() % 2 == 0 {
            out.push_str("\n\n");
        }
    }
    out
}

#[test]
fn every_shipped_recipe_is_formatted_and_scrambled_copies_come_back() {
    let all = recipes();
    assert!(all.len() >= 60, "found only {} recipes", all.len());
    let mut formatted = 0;
    for (i, (name, src)) in all.iter().enumerate() {
        // The syntax-error fixtures cannot be formatted: they must say so.
        let Ok(out) = mcc_recipe::format(src) else {
            assert!(
                mcc_recipe::parse(src).is_err(),
                "{name}: fmt refused a recipe that parses"
            );
            continue;
        };
        assert_eq!(
            &out, src,
            "{name} is not in the canonical layout (run `mcc fmt` on it)"
        );
        assert_eq!(
            mcc_recipe::format(&out).unwrap(),
            out,
            "{name}: not idempotent"
        );
        for seed in 0..3 {
            let messy = scramble(src, (i as u64) << 8 | seed);
            let back = mcc_recipe::format(&messy).unwrap_or_else(|e| {
                panic!("{name}: the scrambled copy does not format: {e}\n{messy}")
            });
            assert_eq!(
                back, *src,
                "{name}: the scrambled copy formats otherwise:\n{messy}"
            );
        }
        formatted += 1;
    }
    assert!(formatted >= 50, "only {formatted} recipes formatted");
}

#[test]
fn fmt_check_names_the_unformatted_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.mcr");
    std::fs::write(&p, "prune unstructured on Conv{amount:50%}   # half\n").unwrap();
    let mcc = |args: &[&Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mcc"))
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let check = mcc(&[Path::new("fmt"), Path::new("--check"), &p]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("r.mcr"));
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "prune unstructured on Conv{amount:50%}   # half\n"
    );
    assert!(mcc(&[Path::new("fmt"), &p]).status.success());
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "prune unstructured on Conv { amount: 50% } # half\n"
    );
    assert!(
        mcc(&[Path::new("fmt"), Path::new("--check"), &p])
            .status
            .success()
    );
    // A syntax error is a diagnostic naming the place, and the file stays as it was.
    std::fs::write(&p, "prune on {\n").unwrap();
    let bad = mcc(&[Path::new("fmt"), &p]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("mcc::recipe::syntax") && err.contains("r.mcr:1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "prune on {\n");
}

/// Random edits of the shipped recipes (characters of the language inserted, deleted or
/// replaced): whatever still parses formats without a panic, to a text that means the same
/// (it parses too) and formats to itself again.
#[test]
fn edited_recipes_format_idempotently_or_are_refused() {
    const ALPHABET: &[u8] = b" \n\t{}()[],:=#\"-/|&?*.%<>!x0a5eK_";
    let all = recipes();
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut formatted, mut refused) = (0, 0);
    for round in 0..3000 {
        let (_, src) = &all[round % all.len()];
        let mut b = src.as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (b.len() + 1);
            let c = ALPHABET[(next() as usize) % ALPHABET.len()];
            match next() % 3 {
                0 => b.insert(at, c),
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ if at < b.len() => b[at] = c,
                _ => b.push(c),
            }
        }
        let Ok(text) = String::from_utf8(b) else {
            continue;
        };
        match mcc_recipe::format(&text) {
            Ok(out) => {
                assert!(mcc_recipe::parse(&out).is_ok());
                assert_eq!(
                    mcc_recipe::format(&out).unwrap(),
                    out,
                    "not idempotent on:\n{text}"
                );
                formatted += 1;
            }
            Err(e) => {
                // Refused only for not parsing, never for its own invariant.
                assert!(mcc_recipe::parse(&text).is_err(), "{e}:\n{text}");
                refused += 1;
            }
        }
    }
    assert!(
        formatted > 500 && refused > 100,
        "{formatted} formatted, {refused} refused"
    );
}
