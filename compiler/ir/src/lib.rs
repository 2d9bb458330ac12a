//! `mcc-ir`: the typed graph IR every mcc stage reads and writes.
//!
//! # The IR
//!
//! A [`Graph`] is a dataflow graph of [`Node`]s over [`Value`]s:
//!
//! * A **value** is a typed wire ([`TensorType`]: a [`DType`] plus a shape of [`Dim`]s, which
//!   may be symbolic like the batch `N`). It is a graph input, a constant (a dense
//!   [`Tensor`], held as an ndarray), or one output of a node.
//! * A **node** applies an [`Op`], a closed enum with one typed payload per operator, to
//!   operand values. Operator semantics are those of the newest ONNX opset; the importer
//!   translates older forms. Nodes keep their ONNX names (recipes select layers by them)
//!   and an [`Origin`]: the model, or the pipeline step that last shaped them.
//! * Nodes live in a petgraph `StableDiGraph` behind [`NodeId`]s, so ids survive removal.
//! * One extension beyond ONNX: a Conv, Gemm or MatMul may carry an activation *epilogue*
//!   (`activation`, `activation_params`; see [`op::EPILOGUES`]), applied to its result. The
//!   evaluator applies it; the ONNX exporter writes it back as a separate node.
//!
//! # Guarantees
//!
//! * [`verify()`] checks the invariants listed in `verify.rs` (acyclic, every operand
//!   defined, names unique, stored types equal to inferred ones). Every producer of a graph
//!   (importer, text parser, passes) is followed by it.
//! * [`infer`] derives output types; [`eval`] computes outputs. Both share the size
//!   arithmetic in [`geometry`] and the evaluator's shape helpers, so they agree.
//! * [`text`] prints and parses a stable, name-based text form: `print ∘ parse ∘ print = print`.
//!
//! # Stored constants
//!
//! A constant is dense ([`ConstData::Dense`]) or stored compressed ([`ConstData::Stored`]):
//! values (f32; integers of 1–8 bits with per-tensor, per-channel or per-group scales and
//! zero points; codebook indices plus centroids) × layout (dense, bitmask, CSR) × coding
//! (none, Huffman) — see [`stored`]. A stored constant means the dense tensor its blob decodes
//! to; everything that reads constants reads that. Factorized layers need nothing new: they
//! are ordinary pairs of ops. (Block and N:M layouts arrive with the sparse kernels.)

pub mod attr;
pub mod eval;
pub mod geometry;
mod graph;
mod ids;
pub mod infer;
pub mod op;
mod shape;
pub mod stored;
pub mod tensor;
pub mod text;
mod verify;

pub use attr::{
    AttrError, AttrValue, AutoPad, BlockOrder, CoordinateTransform, KeepAspectRatio, NearestMode,
    ResizeMode,
};
pub use eval::{EvalError, OpError, eval_op, run, run_observed};
pub use graph::{ConstData, Graph, GraphError, Node, Origin, Value, ValueDef};
pub use ids::{NodeId, StepId, ValueId};
pub use infer::{InferError, infer_all, infer_node};
pub use op::Op;
pub use shape::{Dim, TensorType};
pub use stored::{Encoding, Stored};
pub use tensor::{DType, Element, Tensor};
pub use verify::{VerifyError, VerifyErrors, verify};
