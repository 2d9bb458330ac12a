//! The recipe language reference (`docs/recipes.md`) stays true: every ```mcr example checks
//! cleanly against the model named in its first line, every ```mcr planned example fails
//! only with "not supported yet", and every technique, variant and parameter of the
//! registry is documented. The report's reference (`docs/report.md`) names every "left
//! alone" reason with its description, and the JSON diagnostics reference shows valid JSON.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_plan::plan::Severity;
use mcc_tests::{corpus, workspace};

#[test]
fn every_example_in_the_reference_is_true() {
    let docs = workspace().join("docs");
    let md = std::fs::read_to_string(docs.join("recipes.md")).unwrap();
    let examples = mcc_tests::mcr_blocks(&md);
    assert!(examples.len() >= 15, "found {} examples", examples.len());
    for (i, (info, src)) in examples.iter().enumerate() {
        let model = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# model: "))
            .unwrap_or_else(|| panic!("example {i} does not name its model:\n{src}"));
        // Paths in examples are relative to docs/: check from a file there.
        let path = docs.join(format!(".example-{}-{i}.mcr", std::process::id()));
        std::fs::write(&path, src).unwrap();
        let checked = mcc::recipe::check(&path, &corpus(&format!("{}.onnx", model.trim())));
        std::fs::remove_file(&path).unwrap();
        let s = checked.unwrap();
        let errors: Vec<&mcc_plan::plan::Diag> = s
            .checked
            .diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        match info.as_str() {
            "" => assert!(
                s.checked.diags.is_empty(),
                "example {i} does not check cleanly:\n{src}\n{:#?}",
                s.checked.diags
            ),
            "planned" => {
                assert!(
                    !errors.is_empty(),
                    "example {i} is marked planned but checks cleanly — update the docs:\n{src}"
                );
                for e in errors {
                    assert_eq!(
                        e.code, "mcc::plan::not_supported_yet",
                        "example {i}:\n{src}\n{e:#?}"
                    );
                }
            }
            other => panic!("unknown example kind `{other}`"),
        }
    }
}

#[test]
fn every_technique_variant_and_parameter_is_documented() {
    let md = std::fs::read_to_string(workspace().join("docs/recipes.md")).unwrap();
    for t in mcc_passes::TECHNIQUES {
        assert!(
            md.contains(&format!("### `{}`", t.name)),
            "technique `{}` has no section",
            t.name
        );
        for v in t.variants {
            assert!(
                md.contains(&format!("{} {}", t.name, v.name))
                    || md.contains(&format!("**`{}`**", v.name)),
                "`{} {}` is not documented",
                t.name,
                v.name
            );
            for p in v.params {
                assert!(
                    md.contains(&format!("`{}`", p.name)),
                    "parameter `{}` of `{} {}` is not documented",
                    p.name,
                    t.name,
                    v.name
                );
            }
        }
    }
}

/// Every planner diagnostic code is named in the reference.
#[test]
fn every_diagnostic_code_is_documented() {
    let md = std::fs::read_to_string(workspace().join("docs/recipes.md")).unwrap();
    for code in mcc_plan::code::Code::ALL {
        assert!(
            md.contains(&format!("`{}`", code.name())),
            "docs/recipes.md does not name the code `{}`",
            code.name()
        );
    }
}

/// Every "left alone" reason is in the report reference's table, with the description the
/// code gives it, and the table lists no other.
#[test]
fn every_left_alone_reason_is_documented() {
    let md = std::fs::read_to_string(workspace().join("docs/report.md")).unwrap();
    for r in mcc_plan::Reason::ALL {
        let row = format!("| `{}` | {} |", r.code(), r.description());
        assert!(
            md.lines().any(|l| l == row),
            "docs/report.md lacks the row\n{row}"
        );
    }
    let table = md
        .split("| `reason` | meaning |")
        .nth(1)
        .expect("docs/report.md has the reason table");
    let rows = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .count();
    assert_eq!(
        rows,
        mcc_plan::Reason::ALL.len(),
        "the reason table in docs/report.md lists codes mcc does not have"
    );
}

/// `docs/json-diagnostics.md` shows lines `mcc` could print: every line of its ```json
/// examples parses, and a diagnostic has every field the page lists.
#[test]
fn the_json_diagnostics_reference_is_valid_json() {
    let md = std::fs::read_to_string(workspace().join("docs/json-diagnostics.md")).unwrap();
    let fields = [
        "type",
        "severity",
        "code",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "label",
        "help",
    ];
    let mut lines = md.lines();
    let mut seen = 0;
    while let Some(l) = lines.next() {
        if l.starts_with("```json") {
            for l in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                seen += 1;
                if v["type"] == "diagnostic" {
                    for f in fields {
                        assert!(v.get(f).is_some(), "the example lacks `{f}`: {l}");
                        assert!(md.contains(&format!("`{f}`")), "`{f}` is not documented");
                    }
                }
            }
        }
    }
    assert!(seen >= 2, "found {seen} JSON lines");
}
