//! Diagnostics as miette reports (for people) and as JSON lines (for editors and build
//! systems, like cargo's `--message-format json`).
//!
//! The JSON form (documented in `docs/json-diagnostics.md`) is one object per line: every
//! diagnostic — the planner's, any [`Error`], a note — is `{"type": "diagnostic", …}` with the
//! same fields, and the run ends with one `{"type": "result", …}`. Files are named as the user
//! gave them on the command line.

use std::path::Path;

use mcc_plan::plan::{Checked, Diag, LineIndex, Severity};
use miette::{Diagnostic, LabeledSpan, SourceCode};
use serde_json::{Value, json};

use crate::Error;
use crate::recipe::Session;
use crate::snippet::Snippet;

/// One diagnostic with its source attached, ready for miette.
#[derive(Debug)]
pub struct Rendered {
    diag: Diag,
    src: Snippet,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.diag.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let s = self.diag.span;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.diag.label.clone()),
            self.src.span(s.start as usize, s.len()),
        ))))
    }
}

/// Every diagnostic of a check, rendered for miette.
pub fn rendered(checked: &Checked) -> Vec<Rendered> {
    let lines: Vec<LineIndex> = checked
        .files
        .iter()
        .map(|f| LineIndex::new(&f.text))
        .collect();
    checked
        .diags
        .iter()
        .map(|d| {
            let f = &checked.files[d.file];
            let (start, end) = (d.span.start as usize, d.span.end as usize);
            Rendered {
                diag: d.clone(),
                src: Snippet::excerpt(&f.name, &f.text, &lines[d.file], start, end),
            }
        })
        .collect()
}

/// Every diagnostic of a checked recipe as one JSON object per line (no result line). The
/// recipe is named as `session.recipe` holds it; the standard library's files by their names.
pub fn json_lines(session: &Session) -> String {
    checked_json_lines(&session.checked, &session.recipe.display().to_string())
}

/// [`json_lines`] of a check, its recipe (file 0) named `recipe`.
pub fn checked_json_lines(checked: &Checked, recipe: &str) -> String {
    // One line index per file: positions cost a search, not a scan from the top.
    let lines: Vec<LineIndex> = checked
        .files
        .iter()
        .map(|f| LineIndex::new(&f.text))
        .collect();
    let mut out = String::new();
    for d in &checked.diags {
        out.push_str(&diag_json(checked, recipe, d, &lines[d.file]).to_string());
        out.push('\n');
    }
    out
}

/// One planner diagnostic as a `"diagnostic"` object (`lines`: its file's line index).
fn diag_json(checked: &Checked, recipe: &str, d: &Diag, lines: &LineIndex) -> Value {
    let f = &checked.files[d.file];
    let (line, column) = lines.line_col(&f.text, d.span.start as usize);
    let (end_line, end_column) = lines.line_col(&f.text, d.span.end as usize);
    let file = if d.file == 0 {
        recipe.to_string()
    } else {
        f.name.clone()
    };
    let mut v = diagnostic(
        severity_name(d.severity),
        Some(&d.code),
        &d.message,
        d.help.as_deref(),
    );
    v["file"] = json!(file);
    v["line"] = json!(line);
    v["column"] = json!(column);
    v["end_line"] = json!(end_line);
    v["end_column"] = json!(end_column);
    v["label"] = json!(d.label);
    v
}

/// A `"diagnostic"` object with every field, those not given `null` (callers fill in the
/// place): the one definition of the object's shape (docs/json-diagnostics.md).
fn diagnostic(severity: &str, code: Option<&str>, message: &str, help: Option<&str>) -> Value {
    json!({
        "type": "diagnostic",
        "severity": severity,
        "code": code,
        "message": message,
        "file": null,
        "line": null,
        "column": null,
        "end_line": null,
        "end_column": null,
        "label": null,
        "help": help,
    })
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// An error as `"diagnostic"` objects: the error itself, then any related diagnostics it
/// carries. Its file is the one it names, else the one its source snippet shows, else
/// `model` for an import error (the model being read). A multi-line message keeps its first
/// line in `message` and the rest in `detail`; a missed budget lists its `violations`.
pub fn error_json(e: &Error, model: Option<&Path>) -> Vec<Value> {
    let mut v = diagnostic_json(e, "error");
    let file = e
        .file()
        .or(match e {
            Error::Import(_) => model,
            _ => None,
        })
        .map(|p| p.display().to_string());
    if let Some(file) = file {
        v["file"] = json!(file);
    }
    if let Error::Budget {
        violations,
        costliest,
        regains,
        ..
    } = e
    {
        if let Some(r) = regains {
            v["restoring_regains"] = json!({
                "metric": r.metric,
                "compressed": r.compressed,
                "layers": r.layers.iter().map(|(layer, restored, bytes)| {
                    json!({"layer": layer, "restored": restored, "bytes": bytes})
                }).collect::<Vec<_>>(),
                "together": r.together,
            });
        }
        v["costliest_layers"] = costliest
            .iter()
            .map(|(layer, err)| json!({"layer": layer, "output_relative_l2": err}))
            .collect();
        v["line"] = json!(violations.first().map(|(_, l, _)| *l));
        v["violations"] = violations
            .iter()
            .map(|(c, l, m)| json!({"constraint": c, "line": l, "measured": m}))
            .collect();
    }
    let mut out = vec![v];
    if let Some(related) = e.related() {
        out.extend(related.map(|r| diagnostic_json(r, "error")));
    }
    out
}

/// Any miette diagnostic as a `"diagnostic"` object: code, message, help, and where its
/// first label points when it has source code.
fn diagnostic_json(d: &dyn Diagnostic, default_severity: &str) -> Value {
    let text = d.to_string();
    let (message, detail) = match text.split_once('\n') {
        Some((first, rest)) => (
            first.trim_end_matches(':').to_string(),
            Some(rest.to_string()),
        ),
        None => (text, None),
    };
    let severity = match d.severity() {
        Some(miette::Severity::Warning) => "warning",
        Some(miette::Severity::Advice) => "note",
        Some(miette::Severity::Error) => "error",
        None => default_severity,
    };
    let code = d.code().map(|c| c.to_string());
    let help = d.help().map(|h| h.to_string());
    let mut v = diagnostic(severity, code.as_deref(), &message, help.as_deref());
    if let Some(detail) = detail {
        v["detail"] = json!(detail);
    }
    let label = d.labels().and_then(|mut l| l.next());
    if let (Some(src), Some(label)) = (d.source_code(), label) {
        v["label"] = json!(label.label());
        let start = src.read_span(label.inner(), 0, 0);
        let end = src.read_span(&(label.offset() + label.len(), 0).into(), 0, 0);
        if let Ok(c) = &start {
            v["file"] = json!(c.name());
            v["line"] = json!(c.line() + 1);
            v["column"] = json!(c.column() + 1);
        }
        if let Ok(c) = &end {
            v["end_line"] = json!(c.line() + 1);
            v["end_column"] = json!(c.column() + 1);
        }
    }
    v
}

/// A note or warning of the driver's own (no file), as a `"diagnostic"` object.
pub fn note_json(severity: &str, code: &str, message: &str) -> Value {
    diagnostic(severity, Some(code), message, None)
}

/// The last line of a run: whether it succeeded, and how many errors and warnings it reported.
pub fn result_json(ok: bool, errors: usize, warnings: usize) -> Value {
    json!({"type": "result", "ok": ok, "errors": errors, "warnings": warnings})
}
