//! `simplify-softmax`: drops the opset < 13 `legacy_2d` flag of Softmax/LogSoftmax where
//! it means the same as the current semantics (the axis is the last one).
//!
//! Keeps: outputs bit-identical (both forms normalize the same rows).
//!
//! Leaves alone: a legacy softmax over a non-last axis, or on an input of unknown rank.

use mcc_ir::{Graph, Op};

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "simplify-softmax",
    summary: "Rewrite opset<13 Softmax to the current form",
    run,
};

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let mut changed = 0;
    for n in graph.node_ids() {
        let Some(node) = graph.node(n) else { continue };
        let Some(rank) = node
            .inputs
            .first()
            .copied()
            .flatten()
            .and_then(|v| graph.value(v).ty.rank())
        else {
            continue;
        };
        let last = |axis: i64| axis == -1 || axis == rank as i64 - 1;
        let new = match &node.op {
            Op::Softmax(s) if s.legacy_2d != 0 && last(s.axis) => {
                Op::Softmax(mcc_ir::op::Softmax {
                    axis: -1,
                    legacy_2d: 0,
                })
            }
            Op::LogSoftmax(s) if s.legacy_2d != 0 && last(s.axis) => {
                Op::LogSoftmax(mcc_ir::op::LogSoftmax {
                    axis: -1,
                    legacy_2d: 0,
                })
            }
            _ => continue,
        };
        if let Some(node) = graph.node_mut(n) {
            node.op = new;
            changed += 1;
        }
    }
    Ok(changed)
}
