//! The IR's text form: what `mcc ir` prints, what IR diffs and snapshots hold, and what
//! test fixtures are written in. It round-trips: `print(parse(print(g))) == print(g)`.
//!
//! ```text
//! graph "lenet" {
//!   input %input: f32[N,1,28,28]
//!   const %conv1.weight: f32[20,1,5,5] = #9f3b6c2d11aa0e47
//!   const %shape: i64[2] = [1, -1]
//!   node /conv1/Conv = Conv(%input, %conv1.weight, %conv1.bias) {kernel_shape=[5,5]} -> %c1: f32[N,20,24,24]
//!   output %logits
//! }
//! ```
//!
//! * Nodes come in a deterministic topological order (ties broken by node name), constants
//!   in order of first use; nothing depends on internal ids.
//! * Names are bare when they only use `[A-Za-z0-9_./-]`, otherwise quoted with `\"`/`\\`
//!   escapes. `%` marks values; node names stand after `node`.
//! * A constant is printed in full when small (≤ 8 elements) or when all its elements are
//!   equal (`splat(0.02)`); otherwise by fingerprint (`#…`), or, in `weights` mode, as
//!   little-endian hex (`hex"…"`) so the text alone can be evaluated.
//! * Only attributes that differ from their default are printed; an absent optional
//!   operand is `_`; a node created by a pipeline step ends with `!stepN`.
//! * Fixtures may also write `seeded(S)` (uniform in [-1, 1)) and `positive(S)` (in
//!   [0.5, 1.5)) for deterministic pseudo-random constants of the declared type.

pub mod diff;
pub mod parse;
pub mod print;

pub use parse::{ParseError, parse};
pub use print::{PrintOptions, print, print_with};
