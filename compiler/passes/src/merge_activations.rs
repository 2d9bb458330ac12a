//! `merge activations`: fuse an activation (Relu, Clip/ReLU6, LeakyRelu, Sigmoid,
//! HardSigmoid, HardSwish, Tanh) into the Conv, Gemm or MatMul that feeds it, as an
//! epilogue the kernels apply on their output tile.
//!
//! Keeps: every graph output exactly (the evaluator applies the epilogue with the same
//! function as the standalone op). The producer keeps its name and records the step as its
//! origin; the activation node is removed and its readers read the producer. If the
//! activation's output was a graph output, the producer's output takes over its name.
//!
//! Leaves alone (reported with the reason, not as an error): an activation whose input is
//! not a Conv/Gemm/MatMul, whose producer already carries an epilogue, whose producer's
//! output is also read elsewhere (or is a graph output), or a Clip whose bounds are not
//! constant scalars.

use mcc_ir::op::Activation;
use mcc_ir::{Graph, NodeId, Op, StepId, Tensor};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{self, LeftAlone, Merged, OrSkip, Reason, Skip, a_or_an, leave};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

fn scalar(graph: &Graph, v: Option<mcc_ir::ValueId>, default: f32) -> Result<f32, ()> {
    match v {
        None => Ok(default),
        Some(v) => match graph.const_data(v).and_then(Tensor::as_f32) {
            Some(t) if t.len() == 1 => t.iter().next().copied().ok_or(()),
            _ => Err(()),
        },
    }
}

/// Whether `act` can be fused: `Ok((producer, epilogue))` or `Err(why not)`.
pub fn check(graph: &Graph, act: NodeId) -> Result<(NodeId, Activation), Skip> {
    let n = graph.node(act).or_bug("no such layer")?;
    let epilogue = match &n.op {
        Op::Relu(_) => Activation::Relu,
        Op::Sigmoid(_) => Activation::Sigmoid,
        Op::Tanh(_) => Activation::Tanh,
        Op::HardSwish(_) => Activation::HardSwish,
        Op::LeakyRelu(l) => Activation::LeakyRelu { alpha: l.alpha },
        Op::HardSigmoid(h) => Activation::HardSigmoid {
            alpha: h.alpha,
            beta: h.beta,
        },
        Op::Clip(_) => {
            let lo = scalar(graph, n.inputs.get(1).copied().flatten(), f32::NEG_INFINITY);
            let hi = scalar(graph, n.inputs.get(2).copied().flatten(), f32::INFINITY);
            match (lo, hi) {
                (Ok(min), Ok(max)) => Activation::Clip { min, max },
                _ => {
                    return Err(leave(
                        Reason::NotConstant,
                        "its bounds are not constant f32 scalars",
                    ));
                }
            }
        }
        other => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!(
                    "{} is not an activation that can be fused",
                    a_or_an(other.name())
                ),
            ));
        }
    };
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "it has no input")?;
    if graph.value(x).ty.dtype != mcc_ir::DType::F32 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it is not on f32 values",
        ));
    }
    let p = graph.producer(x).or_leave(
        Reason::UnsupportedOp,
        "its input is a graph input or a constant, not a layer",
    )?;
    let pn = graph.node(p).or_bug("no producer")?;
    if !matches!(pn.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_)) {
        return Err(leave(
            Reason::UnsupportedOp,
            format!(
                "it reads {}, not a Conv, Gemm or MatMul",
                a_or_an(pn.op.name())
            ),
        ));
    }
    if pn.op.has_epilogue() {
        let e = pn
            .op
            .epilogue()
            .ok()
            .flatten()
            .map_or("activation", Activation::name);
        return Err(leave(
            Reason::HasActivation,
            format!("`{}` already ends in a {e}", pn.name),
        ));
    }
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(leave(
            Reason::SharedOutput,
            format!(
                "`{}`'s output is also read elsewhere, before the activation",
                pn.name
            ),
        ));
    }
    Ok((p, epilogue))
}

/// Fuses each named activation it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    merge::each(
        graph,
        nodes,
        step,
        "merge-activations",
        check,
        |g, p, epilogue| {
            let carried = g
                .node_mut(p)
                .is_some_and(|n| n.op.set_epilogue(Some(epilogue)));
            if carried {
                Ok(())
            } else {
                Err("the layer cannot carry an activation".into())
            }
        },
    )
}

/// `merge activations`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "activations",
    summary: "fuse activations into the producing layer",
    params: &[],
    applies: Applies::Ops(&[
        "Relu",
        "LeakyRelu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
    ]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
