//! `remove-identities`: removes `Identity` nodes and inference-mode `Dropout` (whose mask
//! output is unused); their readers read the operand directly.
//!
//! Keeps: graph outputs bit-identical. A graph output keeps its name.
//!
//! Leaves alone: a node whose operand is a graph input and whose result is a graph output
//! (removing it would rename the model's interface), and Dropout whose mask is read or that
//! is given a `training_mode` operand.

use mcc_ir::{Graph, Op};

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "remove-identities",
    summary: "Remove Identity and inference Dropout",
    run,
};

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let mut removed = 0;
    for n in graph.node_ids() {
        let Some(node) = graph.node(n) else { continue };
        let ok = match &node.op {
            Op::Identity(_) => true,
            Op::Dropout(_) => {
                node.inputs.get(2).is_none_or(Option::is_none)
                    && node.outputs.get(1).is_none_or(|&m| !graph.is_used(m))
            }
            _ => false,
        };
        let (Some(Some(src)), Some(&out)) = (node.inputs.first(), node.outputs.first()) else {
            continue;
        };
        let src = *src;
        if !ok
            || (graph.outputs().contains(&out)
                && (graph.inputs().contains(&src) || graph.outputs().contains(&src)))
        {
            continue;
        }
        graph.replace_all_uses(out, src);
        graph.remove_node(n).map_err(|e| PassError::Node {
            pass: INFO.name,
            node: String::new(),
            op: "",
            message: e.to_string(),
        })?;
        removed += 1;
    }
    Ok(removed)
}
