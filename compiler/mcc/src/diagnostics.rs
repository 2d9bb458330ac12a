//! Planner diagnostics as miette reports (for people) and as JSON lines (for editors and
//! build systems, one object per diagnostic, like cargo's `--message-format json`).

use mcc_plan::plan::{Checked, Diag, LineIndex, Severity};
use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

use crate::snippet::Snippet;

/// Lines of context an [`Excerpt`] keeps on each side of its span (the renderer shows one).
const CONTEXT_LINES: usize = 3;

/// One diagnostic with its source attached, ready for miette.
#[derive(Debug)]
pub struct Rendered {
    diag: Diag,
    src: Excerpt,
}

/// The lines of a file around one diagnostic's span, read as if it were the whole file (the
/// lines and offsets it reports are the file's): each diagnostic holds a few lines, not a
/// copy of the file, and the renderer scans those, not the file from its top. A recipe with
/// a warning on each of its 16,000 lines rendered a copy of all of them for each. Long lines
/// among them are clipped around the span ([`Snippet`]).
#[derive(Debug)]
struct Excerpt {
    name: String,
    /// The excerpt's lines, long ones clipped.
    snippet: Snippet,
    /// Where the excerpt starts in the file.
    offset: usize,
    /// The 0-based line of the file the excerpt starts on.
    first_line: usize,
}

impl Excerpt {
    fn new(name: &str, text: &str, lines: &LineIndex, start: usize, end: usize) -> Excerpt {
        let first = lines.line(start).saturating_sub(CONTEXT_LINES).max(1);
        let last = lines.line(end) + CONTEXT_LINES;
        let from = lines.start(first).min(text.len());
        let to = if last >= lines.len() {
            text.len()
        } else {
            lines.start(last + 1)
        };
        let local = text.get(from..to.max(from)).unwrap_or("");
        Excerpt {
            name: name.to_string(),
            snippet: Snippet::new(name, local, &[start.saturating_sub(from)]),
            offset: from,
            first_line: first - 1,
        }
    }

    /// A span of the file, as the renderer addresses it (the excerpt's clipped offsets,
    /// shifted by where the excerpt starts).
    fn span(&self, start: usize, len: usize) -> SourceSpan {
        let s = self.snippet.span(start.saturating_sub(self.offset), len);
        (s.offset() + self.offset, s.len()).into()
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let local = span.offset().saturating_sub(self.offset);
        let inner = self.snippet.read_span(
            &(local, span.len()).into(),
            context_lines_before,
            context_lines_after,
        )?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            (inner.span().offset() + self.offset, inner.span().len()).into(),
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        )))
    }
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
                src: Excerpt::new(&f.name, &f.text, &lines[d.file], start, end),
            }
        })
        .collect()
}

/// Every diagnostic as one JSON object per line.
pub fn json_lines(checked: &Checked) -> String {
    let lines: Vec<LineIndex> = checked
        .files
        .iter()
        .map(|f| LineIndex::new(&f.text))
        .collect();
    let mut out = String::new();
    for d in &checked.diags {
        let f = &checked.files[d.file];
        let (line, column) = lines[d.file].line_col(&f.text, d.span.start as usize);
        let (end_line, end_column) = lines[d.file].line_col(&f.text, d.span.end as usize);
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
