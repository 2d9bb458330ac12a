//! What the weight-rewriting techniques share when they look at a layer: the node a step
//! names, with its f32 constant weights — or why it is left alone — and the damped Hessian
//! of its input from the calibration context.
//!
//! **Invariant:** nothing here changes the graph; a layer that is not there, has no weight
//! operand or whose weights are not an f32 constant is a [`LeftAlone`] with its reason.

use mcc_ir::{Graph, Node, NodeId, Tensor, ValueId};
use mcc_plan::plan::Step;
use mcc_plan::{LeftAlone, Reason, Stat, StatRequest, Stats};

use crate::reconstruct;

/// A layer and its f32 constant weights (operand 1).
pub struct Weighted<'g> {
    /// The node.
    pub id: NodeId,
    /// Its definition.
    pub node: &'g Node,
    /// The weight constant.
    pub weights: ValueId,
    /// Its data (f32).
    pub tensor: &'g Tensor,
}

/// A left-alone record for `node`.
pub fn leave(node: &str, reason: Reason, detail: impl Into<String>) -> LeftAlone {
    LeftAlone {
        node: node.to_string(),
        reason,
        detail: detail.into(),
    }
}

/// The layer `name` with its f32 constant weights, or why a technique leaves it alone.
pub fn weighted<'g>(graph: &'g Graph, name: &str) -> Result<Weighted<'g>, LeftAlone> {
    let Some((id, node)) = graph
        .find_node(name)
        .and_then(|n| graph.node(n).map(|x| (n, x)))
    else {
        return Err(leave(
            name,
            Reason::MergedAway,
            "an earlier step merged it into another layer",
        ));
    };
    let Some(weights) = node.inputs.get(1).copied().flatten() else {
        return Err(leave(
            name,
            Reason::MissingOperand,
            "it has no weight operand",
        ));
    };
    let Some(tensor) = graph.const_data(weights).filter(|t| t.as_f32().is_some()) else {
        return Err(leave(
            name,
            Reason::NotConstant,
            "its weights are not an f32 constant",
        ));
    };
    Ok(Weighted {
        id,
        node,
        weights,
        tensor,
    })
}

/// What a step that works layer by layer asks for before it starts: the first layer's XᵀX
/// (the others are asked for as the step reaches them).
pub fn first_gram(step: &Step) -> Vec<StatRequest> {
    step.nodes
        .first()
        .map(|layer| StatRequest::Gram {
            layer: layer.clone(),
        })
        .into_iter()
        .collect()
}

/// The damped Hessian `XᵀX/n + λI` of `layer`'s input on the model as it stands, checked to
/// be `k` wide (the layer's inputs per output).
pub fn hessian(
    graph: &Graph,
    stats: &mut dyn Stats,
    layer: &str,
    k: usize,
) -> Result<Vec<f64>, String> {
    let stat = stats
        .get(
            graph,
            &StatRequest::Gram {
                layer: layer.to_string(),
            },
        )
        .map_err(|e| e.message)?;
    let Stat::Gram {
        k: width,
        rows,
        data,
    } = &*stat
    else {
        return Err("the calibration context returned no XᵀX".into());
    };
    if *width != k {
        return Err(format!(
            "XᵀX is {width} wide, the layer has {k} inputs per output"
        ));
    }
    reconstruct::hessian(data, k, *rows)
}
