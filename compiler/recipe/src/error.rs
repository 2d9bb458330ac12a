//! Syntax errors: a message saying what was expected, in words, at a span.

use crate::ast::Span;

/// The recipe is not valid syntax.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(mcc::recipe::syntax))]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    #[label("here")]
    pub span: miette::SourceSpan,
}

impl SyntaxError {
    /// An error at a byte range.
    pub fn at(start: usize, len: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            span: (start, len).into(),
        }
    }

    /// The span as an AST span.
    pub fn span(&self) -> Span {
        Span::new(self.span.offset(), self.span.offset() + self.span.len())
    }
}
