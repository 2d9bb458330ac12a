//! `simplify-softmax`: drops the opset < 13 `legacy_2d` flag of Softmax/LogSoftmax where
//! it means the same as the current semantics: every dim after the axis has size 1 (the
//! last axis included), so "flatten from the axis" and "along the axis" pick the same rows.
//!
//! Keeps: outputs bit-identical (both forms normalize the same rows).
//!
//! Leaves alone: a legacy softmax with a larger dim after its axis, or on an input of
//! unknown shape.

use mcc_ir::{Dim, Graph, Op, op};

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
        let input = node.inputs.first().copied().flatten();
        let Some(shape) = input.and_then(|v| graph.value(v).ty.shape.clone()) else {
            continue;
        };
        let rank = shape.len() as i64;
        // The two semantics agree when every dim after the axis is 1.
        let agree = |axis: i64| {
            let a = if axis < 0 { axis + rank } else { axis };
            (0..rank).contains(&a) && shape[a as usize + 1..].iter().all(|d| *d == Dim::Fixed(1))
        };
        let new = match &node.op {
            Op::Softmax(s) if s.legacy_2d != 0 && agree(s.axis) => Op::Softmax(op::Softmax {
                axis: s.axis,
                legacy_2d: 0,
            }),
            Op::LogSoftmax(s) if s.legacy_2d != 0 && agree(s.axis) => {
                Op::LogSoftmax(op::LogSoftmax {
                    axis: s.axis,
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
