//! Per-node statistics for `mcc inspect`: shapes, parameters and multiply-accumulates.
//!
//! MACs count Conv, Gemm and MatMul only (as the corpus MANIFEST does), per sample: a
//! symbolic dimension (the batch) counts as 1.

use std::collections::HashSet;

use mcc_ir::{Dim, Graph, Op, TensorType, ValueDef};

/// One node's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Node name.
    pub name: String,
    /// Operator.
    pub op: &'static str,
    /// Types of the non-constant operands.
    pub inputs: Vec<String>,
    /// Types of the outputs.
    pub outputs: Vec<String>,
    /// Elements of the float constant operands (weights).
    pub params: usize,
    /// Multiply-accumulates per sample.
    pub macs: u64,
}

/// The whole table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// One row per node, in the text form's order.
    pub rows: Vec<Row>,
    /// Elements over all float constants (each counted once).
    pub params: usize,
    /// MACs per sample over all nodes.
    pub macs: u64,
}

fn per_sample(ty: &TensorType) -> u64 {
    ty.shape.as_ref().map_or(0, |s| {
        s.iter().fold(1u64, |a, d| {
            a.saturating_mul(if let Dim::Fixed(n) = d { *n as u64 } else { 1 })
        })
    })
}

/// Computes the table for a graph.
pub fn table(graph: &Graph) -> Table {
    let order = graph.topo_order().unwrap_or_else(|_| graph.node_ids());
    let mut rows = vec![];
    let mut seen = HashSet::new();
    let mut total_params: usize = 0;
    let mut total_macs: u64 = 0;
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        let mut params: usize = 0;
        let mut inputs = vec![];
        for (slot, v) in node.inputs.iter().enumerate() {
            let Some(v) = v else { continue };
            let val = graph.value(*v);
            if matches!(val.def, ValueDef::Const(_)) {
                // Parameters as the report counts them: float weights and a quantized
                // layer's integer weights and bias; not shapes, axes or zero points.
                let param = graph.const_data(*v).is_some_and(|t| {
                    crate::build::role(&node.op, slot, t) == crate::build::Role::Param
                });
                if !param {
                    continue;
                }
                let k = val.ty.numel().unwrap_or(0);
                params = params.saturating_add(k);
                if seen.insert(*v) {
                    total_params = total_params.saturating_add(k);
                }
            } else {
                inputs.push(val.ty.to_string());
            }
        }
        let out_ty = node.outputs.first().map(|&o| graph.value(o).ty.clone());
        let in_ty = |i: usize| {
            node.inputs
                .get(i)
                .copied()
                .flatten()
                .map(|v| graph.value(v).ty.clone())
        };
        let macs = match (&node.op, &out_ty) {
            // The integer layers: their weights are operand 3 (QLinearConv) or their depth
            // the input's last axis, as the float ones.
            (Op::QLinearConv(_), Some(out)) => {
                let w = in_ty(3).and_then(|t| t.fixed_dims()).unwrap_or_default();
                per_sample(out).saturating_mul(
                    w.iter()
                        .skip(1)
                        .fold(1u64, |a, &d| a.saturating_mul(d as u64)),
                )
            }
            (Op::MatMul(_) | Op::QLinearMatMul(_) | Op::DynamicQuantMatMul(_), Some(out)) => {
                let a = in_ty(0).and_then(|t| t.shape).unwrap_or_default();
                per_sample(out).saturating_mul(a.last().and_then(Dim::fixed).unwrap_or(0) as u64)
            }
            (Op::Conv(_), Some(out)) => {
                let w = in_ty(1).and_then(|t| t.fixed_dims()).unwrap_or_default();
                per_sample(out).saturating_mul(
                    w.iter()
                        .skip(1)
                        .fold(1u64, |a, &d| a.saturating_mul(d as u64)),
                )
            }
            (Op::Gemm(g), Some(out)) => {
                let a = in_ty(0).and_then(|t| t.shape).unwrap_or_default();
                let k = if g.transA != 0 { a.first() } else { a.get(1) };
                per_sample(out).saturating_mul(k.and_then(Dim::fixed).unwrap_or(0) as u64)
            }
            _ => 0,
        };
        total_macs = total_macs.saturating_add(macs);
        rows.push(Row {
            name: node.name.clone(),
            op: node.op.name(),
            inputs,
            outputs: node
                .outputs
                .iter()
                .map(|&o| graph.value(o).ty.to_string())
                .collect(),
            params,
            macs,
        });
    }
    Table {
        rows,
        params: total_params,
        macs: total_macs,
    }
}
