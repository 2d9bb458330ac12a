//! Source text a diagnostic can show whatever its lines: lines longer than [`MAX_LINE`] bytes
//! are clipped to a window around the span they hold, so the renderer never lays out a line of
//! millions of characters (miette's layout panics past column 65,535), while the header still
//! names the true line and column.
//!
//! A [`Snippet`] is the text with its long lines clipped: a clipped line keeps
//! [`BEFORE`] bytes before its first span and [`AFTER`] bytes from there, and shows `…` where
//! text was cut. Spans are moved into the clipped text with [`Snippet::span`]; the column
//! [`SourceCode::read_span`] reports is the one in the original text.

use std::ops::Range;

use mcc_plan::plan::LineIndex;
use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Lines of context an excerpt keeps on each side of its span (the renderer shows one).
pub const CONTEXT_LINES: usize = 3;
/// Lines longer than this (in bytes) are clipped.
pub const MAX_LINE: usize = 512;
/// Bytes a clipped line keeps before its first span.
pub const BEFORE: usize = 80;
/// Bytes a clipped line keeps from its first span on.
pub const AFTER: usize = 160;

const ELLIPSIS: &str = "…";

/// Source text with long lines clipped around the spans a diagnostic points at. It may be
/// an excerpt of a larger file ([`Snippet::excerpt`]): spans and lines are then the file's.
#[derive(Debug, Clone)]
pub struct Snippet {
    name: String,
    text: String,
    clips: Vec<Clip>,
    /// Where the text starts in its file (bytes).
    base: usize,
    /// The 0-based line of the file the text starts on.
    first_line: usize,
}

/// One clipped line: original bytes `kept` are at `at` in the clipped text.
#[derive(Debug, Clone)]
struct Clip {
    /// The line's extent in the original text (without its newline).
    line: Range<usize>,
    /// The part of it that is shown.
    kept: Range<usize>,
    /// Where `kept` starts in the clipped text.
    at: usize,
    /// Where the line starts in the clipped text.
    line_at: usize,
}

impl Snippet {
    /// The text named `name`, its long lines clipped around `anchors` (byte offsets of the
    /// spans that will be shown; a long line without one keeps its start).
    pub fn new(name: impl Into<String>, text: &str, anchors: &[usize]) -> Snippet {
        let name = name.into();
        if text.split('\n').all(|l| l.len() <= MAX_LINE) {
            return Snippet {
                name,
                text: text.to_string(),
                clips: Vec::new(),
                base: 0,
                first_line: 0,
            };
        }
        let mut out = String::with_capacity(text.len().min(1 << 20));
        let mut clips = Vec::new();
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            let end = start + body.len();
            if body.len() <= MAX_LINE {
                out.push_str(line);
            } else {
                let anchor = anchors
                    .iter()
                    .copied()
                    .filter(|&a| (start..=end).contains(&a))
                    .min()
                    .unwrap_or(start);
                let from = floor_char(text, anchor.saturating_sub(BEFORE).max(start));
                let to = floor_char(text, (anchor + AFTER).min(end));
                let line_at = out.len();
                if from > start {
                    out.push_str(ELLIPSIS);
                }
                let at = out.len();
                out.push_str(&text[from..to]);
                if to < end {
                    out.push_str(ELLIPSIS);
                }
                out.push_str(&line[body.len()..]);
                clips.push(Clip {
                    line: start..end,
                    kept: from..to,
                    at,
                    line_at,
                });
            }
            start += line.len();
        }
        Snippet {
            name,
            text: out,
            clips,
            base: 0,
            first_line: 0,
        }
    }

    /// The lines of `text` (named `name`, line index `lines`) around the span `start..end`,
    /// [`CONTEXT_LINES`] on each side, as a snippet of the whole file (the lines and offsets
    /// it reports are the file's): a diagnostic holds a few lines, not a copy of the file,
    /// and the renderer scans those, not the file from its top (a recipe with a warning on
    /// each of its 16,000 lines once rendered a copy of all of them for each).
    pub fn excerpt(name: &str, text: &str, lines: &LineIndex, start: usize, end: usize) -> Snippet {
        let first = lines.line(start).saturating_sub(CONTEXT_LINES).max(1);
        let last = lines.line(end) + CONTEXT_LINES;
        let from = lines.start(first).min(text.len());
        let to = if last >= lines.len() {
            text.len()
        } else {
            lines.start(last + 1)
        };
        let local = text.get(from..to.max(from)).unwrap_or("");
        let mut s = Snippet::new(name, local, &[start.saturating_sub(from)]);
        s.base = from;
        s.first_line = first - 1;
        s
    }

    /// The span `start..start + len` of the original text, in the clipped text (an end
    /// in a cut part moves to the edge of what is shown).
    pub fn span(&self, start: usize, len: usize) -> SourceSpan {
        let start = start.saturating_sub(self.base);
        let a = self.offset(start);
        let b = self.offset(start + len).max(a);
        (a + self.base, b - a).into()
    }

    /// An offset of the original text in the clipped text.
    fn offset(&self, orig: usize) -> usize {
        // Clips are in text order; `shift` is how much earlier clips moved the text.
        let mut shift: isize = 0;
        for c in &self.clips {
            if orig < c.line.start {
                break;
            }
            if orig <= c.line.end {
                let base = (orig.clamp(c.kept.start, c.kept.end) - c.kept.start) + c.at;
                return if orig < c.kept.start {
                    c.line_at.max(base.saturating_sub(ELLIPSIS.len()))
                } else if orig > c.kept.end {
                    base + ELLIPSIS.len()
                } else {
                    base
                };
            }
            let orig_len = c.line.end - c.line.start;
            let new_len = self.line_len_at(c);
            shift += new_len as isize - orig_len as isize;
        }
        (orig as isize + shift).clamp(0, self.text.len() as isize) as usize
    }

    /// The clipped length of a clipped line (without its newline).
    fn line_len_at(&self, c: &Clip) -> usize {
        let end = c.at + (c.kept.end - c.kept.start);
        let tail = if c.kept.end < c.line.end {
            ELLIPSIS.len()
        } else {
            0
        };
        end + tail - c.line_at
    }

    /// How many bytes of the original line precede a clipped offset's shown position, minus
    /// those shown before it: what to add to a column counted in the clipped text.
    fn column_shift(&self, clipped: usize) -> isize {
        self.clips
            .iter()
            .find(|c| (c.line_at..=c.line_at + self.line_len_at(c)).contains(&clipped))
            .map_or(0, |c| {
                (c.kept.start - c.line.start) as isize - (c.at - c.line_at) as isize
            })
    }
}

/// The largest char boundary of `text` at or below `i`.
fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let local: SourceSpan = (span.offset().saturating_sub(self.base), span.len()).into();
        let inner = self
            .text
            .read_span(&local, context_lines_before, context_lines_after)?;
        // With context lines, miette's column is 0 (the context starts a line).
        let column = if context_lines_before > 0 {
            0
        } else {
            (inner.column() as isize + self.column_shift(local.offset())).max(0) as usize
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            (inner.span().offset() + self.base, inner.span().len()).into(),
            inner.line() + self.first_line,
            column,
            inner.line_count(),
        )))
    }
}

/// Errors keep their snippet boxed (it is large; `Result`s stay small).
impl SourceCode for Box<Snippet> {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        (**self).read_span(span, context_lines_before, context_lines_after)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        let s = Snippet::new("f", "a\nbc\n", &[3]);
        assert_eq!(s.text, "a\nbc\n");
        assert_eq!(s.span(3, 1), (3, 1).into());
    }

    #[test]
    fn a_long_line_is_clipped_around_its_span_and_keeps_its_column() {
        let long = format!("{}X{}", "a".repeat(70_000), "b".repeat(70_000));
        let text = format!("first\n{long}\nlast\n");
        let at = 6 + 70_000;
        let s = Snippet::new("f", &text, &[at]);
        assert!(s.text.len() < 400, "{}", s.text.len());
        let span = s.span(at, 1);
        assert_eq!(&s.text[span.offset()..span.offset() + 1], "X");
        let c = s.read_span(&span, 0, 0).unwrap();
        assert_eq!((c.line(), c.column()), (1, 70_000));
        assert!(s.text.ends_with("…\nlast\n"));
        // A span running past the window ends at its edge; one after the line is unmoved.
        let wide = s.span(at, 100_000);
        assert!(wide.offset() + wide.len() <= s.text.len());
        let last = s.span(text.len() - 5, 4);
        assert_eq!(&s.text[last.offset()..last.offset() + 4], "last");
    }
}
