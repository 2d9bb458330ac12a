//! `mcc-passes`: rewrites over `mcc-ir`, one file per pass.
//!
//! A pass is a free function `run(&mut Graph) -> Result<usize, PassError>` returning how
//! many rewrites it made; its file's doc comment states the invariant it keeps and what it
//! leaves alone. [`run_pipeline`] runs passes in order and verifies the graph after every
//! one, so a broken rewrite is caught at the pass that made it.
//!
//! **Invariant:** every pass here keeps the outputs of the graph unchanged for every input
//! (up to float rounding where a pass says so).

pub mod channels;
pub mod encode_huffman;
pub mod factorize;
pub mod factorize_separable;
pub mod factorize_svd;
pub mod factorize_tucker;
mod fold_constants;
mod fold_shapes;
mod hoist_picks;
pub mod layers;
pub mod linalg;
pub mod merge;
pub mod merge_activations;
pub mod merge_batchnorm;
pub mod merge_branches;
pub mod merge_cleanup;
pub mod merge_linear;
pub mod merge_pad;
pub mod merge_pool;
pub mod merge_scale;
pub mod prune;
pub mod prune_block;
pub mod prune_filters;
pub mod prune_nm;
pub mod prune_unstructured;
pub mod quantize;
pub mod quantize_binary;
pub mod quantize_int;
pub mod quantize_int8;
pub mod quantize_kmeans;
pub mod quantize_ternary;
pub mod reconstruct;
mod remove_dead_nodes;
mod remove_identities;
mod simplify_softmax;
mod specialize;
mod techniques;

pub use specialize::specialize;

pub use techniques::{TECHNIQUES, registry};

use mcc_ir::{Graph, VerifyErrors};

/// A pass's name and what it does, for reports and `--help`.
#[derive(Copy, Clone, Debug)]
pub struct PassInfo {
    /// Kebab-case name used in reports.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// The pass.
    pub run: fn(&mut Graph) -> Result<usize, PassError>,
}

/// A pass failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PassError {
    /// The graph was malformed after a pass (a bug in that pass).
    #[error("after pass `{pass}`: {source}")]
    #[diagnostic(
        code(mcc::passes::verify),
        help("this is a bug in mcc; please report it with the model")
    )]
    Verify {
        /// The pass that ran last.
        pass: &'static str,
        /// What the verifier found.
        source: VerifyErrors,
    },
    /// Evaluating a constant subgraph failed.
    #[error("pass `{pass}`: node `{node}` ({op}): {message}")]
    #[diagnostic(code(mcc::passes::node))]
    Node {
        /// The pass.
        pass: &'static str,
        /// Node name.
        node: String,
        /// Operator.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl From<PassError> for mcc_plan::TechniqueError {
    fn from(e: PassError) -> Self {
        match e {
            PassError::Node { node, message, .. } => mcc_plan::TechniqueError { node, message },
            other => mcc_plan::TechniqueError {
                node: String::new(),
                message: other.to_string(),
            },
        }
    }
}

/// What one pass did in a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// Pass name.
    pub pass: &'static str,
    /// Rewrites made.
    pub changes: usize,
}

/// The canonicalization pipeline every imported model goes through: size arithmetic the
/// declared shapes decide folded, constant subgraphs folded (the light models compute all
/// weights with ConstantOfShape), single indices taken before a Transpose (the batch stays
/// first), Identity and inference Dropout removed, opset < 13 Softmax normalized, dead
/// nodes removed.
pub const CANONICALIZE: &[PassInfo] = &[
    fold_shapes::INFO,
    fold_constants::INFO,
    hoist_picks::INFO,
    remove_identities::INFO,
    simplify_softmax::INFO,
    remove_dead_nodes::INFO,
];

/// Runs passes in order, re-typing and verifying the graph after each.
pub fn run_pipeline(graph: &mut Graph, passes: &[PassInfo]) -> Result<Vec<StepRecord>, PassError> {
    let mut records = Vec::with_capacity(passes.len());
    for p in passes {
        let changes = (p.run)(graph)?;
        mcc_ir::infer_all(graph).map_err(|(node, op, e)| PassError::Node {
            pass: p.name,
            node,
            op,
            message: e.0,
        })?;
        mcc_ir::verify(graph).map_err(|source| PassError::Verify {
            pass: p.name,
            source,
        })?;
        records.push(StepRecord {
            pass: p.name,
            changes,
        });
    }
    Ok(records)
}

/// Runs [`CANONICALIZE`].
pub fn canonicalize(graph: &mut Graph) -> Result<Vec<StepRecord>, PassError> {
    run_pipeline(graph, CANONICALIZE)
}

/// The merge variants in the order `std.merge` runs them (see `stdlib/std/vision.mcr`):
/// summed branches merge before activations fuse, concatenated ones after.
pub const MERGE_ORDER: &[(&str, &[&str])] = &[
    ("pad", &["Pad"]),
    ("batchnorm", &["BatchNormalization"]),
    ("scale", &["Mul", "Add"]),
    ("linear", &["Conv", "Gemm", "MatMul"]),
    ("pool", &["AveragePool"]),
    ("branches", &["Add", "Sum"]),
    (
        "activations",
        &[
            "Relu",
            "Clip",
            "LeakyRelu",
            "Sigmoid",
            "HardSigmoid",
            "HardSwish",
            "Tanh",
        ],
    ),
    ("branches", &["Concat"]),
    ("cleanup", &["Identity", "Dropout", "Reshape", "Flatten"]),
];

/// Runs every exact merge on the whole graph, in [`MERGE_ORDER`] (what `use std.merge` does,
/// without a recipe): the code generator's preparation. Returns how many layers merged.
pub fn merge_everything(graph: &mut Graph) -> Result<usize, PassError> {
    let registry = registry();
    let mut merged = 0;
    for (i, (variant, ops)) in MERGE_ORDER.iter().enumerate() {
        let nodes: Vec<String> = graph
            .topo_order()
            .map_err(|e| PassError::Node {
                pass: "merge",
                node: String::new(),
                op: "",
                message: e.to_string(),
            })?
            .into_iter()
            .filter_map(|n| graph.node(n))
            .filter(|n| ops.contains(&n.op.name()))
            .map(|n| n.name.clone())
            .collect();
        let step = mcc_plan::plan::Step::merge(variant, nodes, "same");
        let technique =
            registry
                .implementation("merge", variant)
                .ok_or_else(|| PassError::Node {
                    pass: "merge",
                    node: String::new(),
                    op: "",
                    message: format!("`merge {variant}` is not in the registry"),
                })?;
        let outcome = technique
            .rewrite(
                graph,
                &step,
                mcc_ir::StepId(i as u32 + 1),
                &mut mcc_plan::technique::NoStats,
            )
            .map_err(|e| PassError::Node {
                pass: "merge",
                node: e.node,
                op: "",
                message: e.message,
            })?;
        merged += outcome.merged.len();
        mcc_ir::infer_all(graph).map_err(|(node, op, e)| PassError::Node {
            pass: "merge",
            node,
            op,
            message: e.0,
        })?;
        mcc_ir::verify(graph).map_err(|source| PassError::Verify {
            pass: "merge",
            source,
        })?;
    }
    Ok(merged)
}
