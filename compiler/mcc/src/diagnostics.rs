//! Planner diagnostics as miette reports (for people) and as JSON lines (for editors and
//! build systems, one object per diagnostic, like cargo's `--message-format json`).

use mcc_plan::plan::{Checked, Diag, Severity, line_col};
use miette::{Diagnostic, LabeledSpan, SourceCode};

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
    checked
        .diags
        .iter()
        .map(|d| {
            let f = &checked.files[d.file];
            Rendered {
                diag: d.clone(),
                src: Snippet::new(f.name.clone(), &f.text, &[d.span.start as usize]),
            }
        })
        .collect()
}

/// Every diagnostic as one JSON object per line.
pub fn json_lines(checked: &Checked) -> String {
    let mut out = String::new();
    for d in &checked.diags {
        let f = &checked.files[d.file];
        let (line, column) = line_col(&f.text, d.span.start);
        let (end_line, end_column) = line_col(&f.text, d.span.end);
        let v = serde_json::json!({
            "file": f.name,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "code": d.code,
            "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
            "message": d.message,
            "label": d.label,
            "help": d.help,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}
