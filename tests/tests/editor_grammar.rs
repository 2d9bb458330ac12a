//! The editor grammar (`editors/mcr.tmLanguage.json`) highlights what the recipes hold: its
//! patterns, run the way a TextMate engine runs a flat grammar (at each point the earliest
//! match, the first pattern on ties), give every comment, string, keyword and number of every
//! shipped recipe and docs example its scope.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcc_tests::workspace;

/// The grammar's top-level patterns, in order: (regex, scope).
fn patterns() -> Vec<(regex::Regex, String)> {
    let text = std::fs::read_to_string(workspace().join("editors/mcr.tmLanguage.json")).unwrap();
    let g: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(g["scopeName"], "source.mcr");
    g["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = p["include"].as_str().unwrap().trim_start_matches('#');
            let rule = &g["repository"][key];
            let re = rule["match"]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: no match"));
            (
                regex::Regex::new(re).unwrap_or_else(|e| panic!("{key}: {e}")),
                rule["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The scoped spans of one line: (start, end, scope).
fn highlight(line: &str, pats: &[(regex::Regex, String)]) -> Vec<(usize, usize, String)> {
    let mut out = vec![];
    let mut at = 0;
    while at < line.len() {
        let best = pats
            .iter()
            .filter_map(|(re, scope)| re.find_at(line, at).map(|m| (m.start(), m.end(), scope)))
            .filter(|m| m.1 > m.0)
            .min_by_key(|m| m.0);
        let Some((s, e, scope)) = best else { break };
        out.push((s, e, scope.clone()));
        at = e;
    }
    out
}

/// Every recipe text: shipped recipes, the standard library, the docs examples.
fn texts() -> Vec<(String, String)> {
    let root = workspace();
    let mut out = vec![];
    for dir in ["recipes", "stdlib/std"] {
        for e in std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap())
        {
            if e.path().extension().is_some_and(|x| x == "mcr") {
                out.push((
                    e.path().display().to_string(),
                    std::fs::read_to_string(e.path()).unwrap(),
                ));
            }
        }
    }
    let md = std::fs::read_to_string(root.join("docs/recipes.md")).unwrap();
    for (_, body) in mcc_tests::mcr_blocks(&md) {
        out.push(("docs/recipes.md".into(), body));
    }
    out
}

#[test]
fn the_grammar_scopes_comments_strings_keywords_and_numbers() {
    let pats = patterns();
    let (mut comments, mut strings, mut keywords, mut numbers) = (0, 0, 0, 0);
    for (file, text) in texts() {
        for (n, line) in text.lines().enumerate() {
            let spans = highlight(line, &pats);
            let scope_at = |i: usize| {
                spans
                    .iter()
                    .find(|s| s.0 <= i && i < s.1)
                    .map(|s| s.2.as_str())
            };
            let at = || format!("{file}:{}: {line}", n + 1);
            // Where the comment starts: the first `#` outside a string.
            let mut quoted = false;
            let mut hash = None;
            for (i, c) in line.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    '#' if !quoted => {
                        hash = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(h) = hash {
                let span = spans
                    .iter()
                    .find(|s| s.0 == h)
                    .unwrap_or_else(|| panic!("no span at the comment: {}", at()));
                assert_eq!(span.2, "comment.line.number-sign.mcr", "{}", at());
                assert_eq!(span.1, line.len(), "the comment ends early: {}", at());
                comments += 1;
            }
            let code = &line[..hash.unwrap_or(line.len())];
            // Every string literal is one string span.
            let mut i = 0;
            while let Some(q) = code[i..].find('"') {
                let s = i + q;
                let Some(len) = code[s + 1..].find('"') else {
                    break;
                };
                let e = s + 1 + len + 1;
                assert!(
                    spans.contains(&(s, e, "string.quoted.double.mcr".into())),
                    "string {s}..{e}: {}",
                    at()
                );
                strings += 1;
                i = e;
            }
            // A statement's keyword, and every number outside strings.
            let first = code.trim_start();
            for kw in [
                "use ",
                "stage ",
                "budget ",
                "calibrate ",
                "evaluate ",
                "recipe ",
            ] {
                if first.starts_with(kw) {
                    let s = code.len() - first.len();
                    assert_eq!(scope_at(s), Some("keyword.control.mcr"), "{}", at());
                    keywords += 1;
                }
            }
            for (j, c) in code.char_indices() {
                let prev = code[..j].chars().last();
                if c.is_ascii_digit()
                    && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == '.')
                    && scope_at(j) != Some("string.quoted.double.mcr")
                    && scope_at(j) != Some("string.regexp.mcr")
                {
                    assert_eq!(
                        scope_at(j),
                        Some("constant.numeric.mcr"),
                        "number at {j}: {}",
                        at()
                    );
                    numbers += 1;
                }
            }
        }
    }
    assert!(
        comments > 100 && strings > 50 && keywords > 50 && numbers > 50,
        "{comments} comments, {strings} strings, {keywords} keywords, {numbers} numbers"
    );
}

#[test]
fn units_belong_to_their_numbers() {
    let pats = patterns();
    let spans = highlight("  size <= 400 KiB  accuracy_drop <= 1%  x: -0.5", &pats);
    let numbers: Vec<(usize, usize)> = spans
        .iter()
        .filter(|s| s.2 == "constant.numeric.mcr")
        .map(|s| (s.0, s.1))
        .collect();
    assert_eq!(numbers, [(10, 17), (36, 38), (43, 47)]);
}
