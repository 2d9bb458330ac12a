//! Specialization of a model's input sizes: every axis but the batch of each input is fixed
//! at the size the user gives (or the data has), then canonicalization folds what that
//! decides — the size arithmetic of a dynamic export, the `Shape → Gather` of a height —
//! so native code, which needs every size but the batch at compile time, can take the model.
//!
//! Keeps: the graph's outputs for every input of the given sizes (canonicalization is
//! exact); the batch axis stays as it was. An axis already fixed must agree with the size
//! given: otherwise, a typed error naming the input and the axis.

use mcc_ir::{Dim, Graph};

use crate::{PassError, StepRecord};

/// Fixes the sizes of `graph`'s inputs: `sizes[i]` is input `i`'s shape (its first axis, the
/// batch, is not fixed), then canonicalizes. Fewer sizes than inputs leave the rest alone.
pub fn specialize(graph: &mut Graph, sizes: &[Vec<usize>]) -> Result<Vec<StepRecord>, PassError> {
    let fail = |node: String, message: String| PassError::Node {
        pass: "specialize",
        node,
        op: "",
        message,
    };
    let inputs = graph.inputs().to_vec();
    if sizes.len() > inputs.len() {
        return Err(fail(
            graph.name.clone(),
            format!(
                "{} input sizes given; the model has {} input(s)",
                sizes.len(),
                inputs.len()
            ),
        ));
    }
    for (&v, dims) in inputs.iter().zip(sizes) {
        let val = graph.value(v);
        let name = val.name.clone();
        let Some(shape) = val.ty.shape.clone() else {
            return Err(fail(
                name,
                "its rank is not known; give its sizes in the model".into(),
            ));
        };
        if shape.len() != dims.len() {
            return Err(fail(
                name,
                format!(
                    "the model gives it rank {}, the sizes {:?} rank {}",
                    shape.len(),
                    dims,
                    dims.len()
                ),
            ));
        }
        let mut fixed = shape.clone();
        for (axis, (d, &n)) in shape.iter().zip(dims).enumerate().skip(1) {
            match d {
                Dim::Fixed(k) if *k != n => {
                    return Err(fail(
                        name,
                        format!("axis {axis} is {k} in the model, not {n}"),
                    ));
                }
                _ => fixed[axis] = Dim::Fixed(n),
            }
        }
        graph.value_mut(v).ty.shape = Some(fixed);
    }
    crate::canonicalize(graph)
}
