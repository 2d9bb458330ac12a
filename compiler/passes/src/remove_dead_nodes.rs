//! `remove-dead-nodes`: removes nodes none of whose outputs is read, and constants nothing
//! reads.
//!
//! Keeps: graph outputs unchanged (only unread values go). Graph inputs stay, even unread,
//! so the model's interface does not change.

use mcc_ir::Graph;

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "remove-dead-nodes",
    summary: "Remove nodes and constants nothing reads",
    run,
};

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let mut order = graph.topo_order().map_err(|e| PassError::Node {
        pass: INFO.name,
        node: String::new(),
        op: "",
        message: e.to_string(),
    })?;
    order.reverse();
    let mut removed = 0;
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        if node.outputs.iter().all(|&o| !graph.is_used(o)) {
            graph.remove_node(n).map_err(|e| PassError::Node {
                pass: INFO.name,
                node: String::new(),
                op: "",
                message: e.to_string(),
            })?;
            removed += 1;
        }
    }
    Ok(removed + graph.remove_unused_consts())
}
