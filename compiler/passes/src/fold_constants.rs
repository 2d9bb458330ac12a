//! `fold-constants`: evaluates every node whose operands are all constants and replaces it
//! by the constants it computes.
//!
//! Keeps: graph outputs bit-identical (the folded values are computed by the reference
//! evaluator, exactly as evaluation would compute them). Folded values keep their names.
//!
//! Leaves alone: nodes reading any graph input, and nodes whose evaluation fails (they are
//! reported as an error: a constant subgraph that cannot run makes the model invalid).

use mcc_ir::{Graph, eval_op};

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "fold-constants",
    summary: "Evaluate nodes whose operands are all constants",
    run,
};

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let order = graph.topo_order().map_err(|e| PassError::Node {
        pass: INFO.name,
        node: String::new(),
        op: "",
        message: e.to_string(),
    })?;
    let mut folded = 0;
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        let mut args = Vec::with_capacity(node.inputs.len());
        let mut all_const = true;
        for v in &node.inputs {
            match v {
                None => args.push(None),
                Some(v) => match graph.const_data(*v) {
                    Some(t) => args.push(Some(t)),
                    None => {
                        all_const = false;
                        break;
                    }
                },
            }
        }
        if !all_const || !node.op.is_pure() {
            continue;
        }
        let outs = eval_op(&node.op, &args, node.outputs.len()).map_err(|e| PassError::Node {
            pass: INFO.name,
            node: node.name.clone(),
            op: node.op.name(),
            message: e.to_string(),
        })?;
        graph
            .replace_node_by_consts(n, outs)
            .map_err(|e| PassError::Node {
                pass: INFO.name,
                node: String::new(),
                op: "",
                message: e.to_string(),
            })?;
        folded += 1;
    }
    Ok(folded)
}
