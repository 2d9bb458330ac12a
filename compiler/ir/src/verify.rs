//! The verifier: checks a graph's invariants. Run after import, after parsing, and after
//! every pass; a failure is a bug in whatever produced the graph.
//!
//! Invariants checked:
//! 1. The graph is acyclic.
//! 2. Every operand of every node is a live value (an input, a constant, or a node output).
//! 3. Every node output's definition points back to that node and slot.
//! 4. There is at least one graph output, every graph output is a live value, and graph
//!    inputs are values defined as inputs.
//! 5. Live value names are unique, and node names are unique.
//! 6. Every node output's stored type equals what shape inference derives from its operands.
//! 7. An activation epilogue names a known activation with the right number of parameters.

use std::collections::HashSet;

use crate::Graph;
use crate::graph::ValueDef;
use crate::infer::infer_node;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", node.as_ref().map(|n| format!("node `{n}`: ")).unwrap_or_default())]
pub struct VerifyError {
    /// The node concerned, if any.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// All broken invariants of a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
#[error("the IR is malformed ({} problem(s)): {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
#[diagnostic(code(mcc::ir::verify))]
pub struct VerifyErrors(pub Vec<VerifyError>);

/// Checks every invariant listed in the module doc; returns all failures.
pub fn verify(graph: &Graph) -> Result<(), VerifyErrors> {
    let mut errs = vec![];
    let mut bad = |node: Option<&str>, message: String| {
        errs.push(VerifyError {
            node: node.map(str::to_string),
            message,
        })
    };
    let order = match graph.topo_order() {
        Ok(o) => o,
        Err(e) => {
            bad(None, e.to_string());
            return Err(VerifyErrors(errs));
        }
    };
    let mut names = HashSet::new();
    for v in graph.value_ids() {
        let val = graph.value(v);
        if val.def != ValueDef::Dead && !names.insert(val.name.as_str()) {
            bad(None, format!("two live values are named `{}`", val.name));
        }
    }
    let mut node_names = HashSet::new();
    for &n in &order {
        let Some(node) = graph.node(n) else { continue };
        if !node_names.insert(node.name.as_str()) {
            bad(Some(&node.name), "node name is not unique".into());
        }
        for v in node.inputs.iter().flatten() {
            if graph.value(*v).def == ValueDef::Dead {
                bad(
                    Some(&node.name),
                    format!(
                        "reads `{}`, which is no longer defined",
                        graph.value(*v).name
                    ),
                );
            }
        }
        for (slot, &o) in node.outputs.iter().enumerate() {
            if graph.value(o).def != (ValueDef::Node { node: n, slot }) {
                bad(
                    Some(&node.name),
                    format!(
                        "output `{}` is not defined by this node",
                        graph.value(o).name
                    ),
                );
            }
        }
        if let Err(why) = node.op.epilogue() {
            bad(Some(&node.name), why);
        }
        if let Err(why) = node.op.q_activation() {
            bad(Some(&node.name), why);
        }
        match infer_node(graph, node) {
            Err(e) => bad(
                Some(&node.name),
                format!("{} cannot apply: {e}", node.op.name()),
            ),
            Ok(types) => {
                for (&o, t) in node.outputs.iter().zip(types) {
                    if graph.value(o).ty != t {
                        bad(
                            Some(&node.name),
                            format!(
                                "output `{}` is typed {} but its operands give {t}",
                                graph.value(o).name,
                                graph.value(o).ty
                            ),
                        );
                    }
                }
            }
        }
    }
    if graph.outputs().is_empty() {
        bad(None, "the graph has no outputs".into());
    }
    for &v in graph.outputs() {
        if graph.value(v).def == ValueDef::Dead {
            bad(
                None,
                format!("graph output `{}` is not defined", graph.value(v).name),
            );
        }
    }
    for &v in graph.inputs() {
        if graph.value(v).def != ValueDef::Input {
            bad(
                None,
                format!(
                    "graph input `{}` is not defined as an input",
                    graph.value(v).name
                ),
            );
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors(errs))
    }
}
