//! Import and export errors: each names the file, node, op or tensor it is about, since a
//! binary model has no source text to point into.

use std::path::PathBuf;

/// Why a model could not be imported.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read `{}`: {cause}", path.display())]
    #[diagnostic(code(mcc::onnx::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf.
    #[error("`{path}` is not a valid ONNX model: {message}")]
    #[diagnostic(
        code(mcc::onnx::decode),
        help("the file may be truncated, corrupted, or not an ONNX model at all")
    )]
    Decode {
        /// The file.
        path: PathBuf,
        /// The protobuf decoder's complaint.
        message: String,
    },
    /// The model has no graph, or a graph-level structure mcc cannot use.
    #[error("`{path}`: {message}")]
    #[diagnostic(code(mcc::onnx::graph))]
    Graph {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An operator mcc does not implement.
    #[error("node `{node}` uses operator `{op}`{}, which mcc does not support", domain_note(.domain))]
    #[diagnostic(
        code(mcc::onnx::unsupported_op),
        help("supported operators: {supported}")
    )]
    UnsupportedOp {
        /// Node name.
        node: String,
        /// Operator.
        op: String,
        /// Operator domain (empty for the default one).
        domain: String,
        /// The list of supported operators.
        supported: String,
    },
    /// A node mcc cannot import as written (attributes, arity, semantics).
    #[error("node `{node}` ({op}): {message}")]
    #[diagnostic(code(mcc::onnx::node))]
    Node {
        /// Node name.
        node: String,
        /// Operator.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor (initializer or attribute) is malformed or of an unsupported type.
    #[error("tensor `{name}`: {message}")]
    #[diagnostic(code(mcc::onnx::tensor))]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor's external data could not be read.
    #[error("tensor `{name}` keeps its data in `{}`, which cannot be used: {message}", .file.display())]
    #[diagnostic(
        code(mcc::onnx::external_data),
        help("external data files are looked up relative to the model file's folder")
    )]
    ExternalData {
        /// Tensor name.
        name: String,
        /// The data file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Shapes do not fit the operator.
    #[error("node `{node}` ({op}): {message}")]
    #[diagnostic(code(mcc::onnx::shape))]
    Shape {
        /// Node name.
        node: String,
        /// Operator.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The imported graph failed verification (a bug in mcc's importer).
    #[error(transparent)]
    #[diagnostic(
        code(mcc::onnx::bug),
        help("this is a bug in mcc; please report it with the model")
    )]
    Verify(#[from] mcc_ir::VerifyErrors),
}

fn domain_note(d: &str) -> String {
    if d.is_empty() || d == "ai.onnx" {
        String::new()
    } else {
        format!(" from domain `{d}`")
    }
}

/// Why a graph could not be written as ONNX.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExportError {
    /// A construct with no ONNX equivalent at the export opset.
    #[error("node `{node}` ({op}) cannot be exported: {message}")]
    #[diagnostic(code(mcc::onnx::export))]
    Node {
        /// Node name.
        node: String,
        /// Operator.
        op: String,
        /// Why.
        message: String,
    },
    /// A constant without data.
    #[error("constant `{0}` has no data (the IR text named it by fingerprint only)")]
    #[diagnostic(code(mcc::onnx::export_elided))]
    Elided(String),
    /// The graph is malformed.
    #[error("the graph cannot be exported: {0}")]
    #[diagnostic(code(mcc::onnx::export_graph))]
    Graph(String),
    /// Writing failed.
    #[error("cannot write `{}`: {cause}", path.display())]
    #[diagnostic(code(mcc::onnx::write))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
}
