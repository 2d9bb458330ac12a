//! `mcc-recipe`: the `.mcr` recipe language's syntax. Text in, span-carrying AST out.
//!
//! **Invariant:** depends on no other mcc crate and knows nothing of models: whether a
//! layer, technique or parameter exists is the planner's question (`mcc-passes`). A typo'd
//! layer name is valid syntax.
//!
//! The language reference is `docs/recipes.md`; the grammar is `src/grammar.pest`.

pub mod ast;
mod error;
mod format;
mod parse;

pub use error::SyntaxError;
pub use format::format;
pub use parse::{MAX_NESTING, is_glob, parse};
