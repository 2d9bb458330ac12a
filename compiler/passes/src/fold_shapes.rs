//! `fold-shapes`: replaces every small integer tensor whose value the declared shapes
//! decide — `Shape → Gather` of a fixed axis, the size arithmetic exporters write around a
//! dynamic batch — by a constant ([`mcc_ir::infer::known_value`]).
//!
//! Keeps: graph outputs bit-identical for every input that fits the declared input types
//! (a folded value is what evaluation computes for all of them: `known_value`'s invariant).
//! Folded values keep their names.
//!
//! Leaves alone: values that depend on a symbolic size (the batch: they stay computed, and
//! inference reads them as [`mcc_ir::infer::Known::Sym`]), floats (`fold-constants` takes
//! a float computed from a folded integer), and values of more than
//! [`mcc_ir::infer::MAX_ELEMENTS`] elements.

use mcc_ir::infer::{Known, known_value};
use mcc_ir::{DType, Graph, Op, Tensor, ValueDef, eval_op, op};

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "fold-shapes",
    summary: "Replace integer tensors the declared shapes decide by constants",
    run,
};

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let fail = |node: String, message: String| PassError::Node {
        pass: INFO.name,
        node,
        op: "",
        message,
    };
    let order = graph
        .topo_order()
        .map_err(|e| fail(String::new(), e.to_string()))?;
    let mut folded = 0;
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        let [out] = node.outputs[..] else { continue };
        let ty = &graph.value(out).ty;
        let (dtype, Some(dims)) = (ty.dtype, ty.fixed_dims()) else {
            continue;
        };
        if !matches!(graph.value(out).def, ValueDef::Node { .. }) {
            continue;
        }
        let Some(ints) = known_value(graph, out).and_then(|k| {
            k.into_iter()
                .map(|e| match e {
                    Known::Int(v) => Some(v),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
        }) else {
            continue;
        };
        let name = node.name.clone();
        let t = Tensor::from_vec(&dims, ints).map_err(|e| fail(name.clone(), e.to_string()))?;
        let t = if dtype == DType::I64 {
            t
        } else {
            let cast = Op::Cast(op::Cast {
                to: dtype,
                ..Default::default()
            });
            eval_op(&cast, &[Some(&t)], 1)
                .map_err(|e| fail(name.clone(), e.to_string()))?
                .pop()
                .ok_or_else(|| fail(name.clone(), "Cast gave no value".into()))?
        };
        graph
            .replace_node_by_consts(n, vec![t])
            .map_err(|e| fail(name, e.to_string()))?;
        folded += 1;
    }
    Ok(folded)
}
