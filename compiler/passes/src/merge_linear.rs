//! `merge linear`: collapse a linear layer into the linear layer that feeds it, when nothing
//! nonlinear sits between them (DeepRebirth's "streamline" merge for tensor layers).
//!
//! - A 1×1 Conv (stride 1, no padding, one group) after a Conv with one group: W'[m, c, k] =
//!   Σ_j W₂[m, j]·W₁[j, c, k], b' = W₂·b₁ + b₂. A 1×1 conv mixes channels pixel by pixel, so the
//!   first conv's padding, stride and dilation carry over unchanged.
//! - Gemm or MatMul (by a constant matrix) after Gemm or MatMul: with each layer seen as
//!   x ↦ x·B + c (a Gemm's B = α·op(B), c = β·C), the pair is x ↦ x·(B₁B₂) + (c₁B₂ + c₂). Two
//!   MatMuls stay a MatMul; otherwise the result is a Gemm with `transB = 1`.
//!
//! The product is computed in f64 and stored in f32, so outputs agree up to float rounding.
//! The first layer keeps its name, input and options, takes the second's epilogue (an
//! activation fused into it) and records the step; the second is removed.
//!
//! Leaves alone (reported with the reason): a layer whose input is not a Conv/Gemm/MatMul's
//! output; a first layer that ends in an activation (an activation between them is not
//! linear) or whose output is also read elsewhere; a grouped or non-1×1 second Conv; a grouped
//! first Conv (merging would make it dense); a Gemm that transposes its input or whose C varies
//! by row; a MatMul whose matrix is computed at run time; and any pair whose merged layer
//! would do more multiply-accumulates than the two did (an expanding 1×1 after a narrow one).

use mcc_ir::{Graph, NodeId, Op, StepId, Tensor, ValueId};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{self, a_or_an, bug, leave, store_const};
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

/// The rewritten first layer: its new operator, weights and bias.
pub struct Fold {
    op: Op,
    weights: Tensor,
    bias: Option<Tensor>,
}

fn operand(graph: &Graph, node: NodeId, slot: usize) -> Option<ValueId> {
    graph.node(node)?.inputs.get(slot).copied().flatten()
}

fn f64s(graph: &Graph, v: ValueId) -> Option<(Vec<usize>, Vec<f64>)> {
    let t = graph.const_data(v)?.as_f32()?;
    Some((
        t.shape().to_vec(),
        t.iter().map(|&x| f64::from(x)).collect(),
    ))
}

/// The merged weights as f32, or the layer left alone when a product leaves the f32 range
/// (each layer alone computes finite values; their merged product need not be).
fn tensor(shape: &[usize], data: &[f64]) -> Result<Tensor, Skip> {
    if let Some(v) = data.iter().find(|x| !(**x as f32).is_finite()) {
        return Err(crate::merge::leave(
            Reason::TooLarge,
            format!("a merged weight would be {v:e}, beyond f32"),
        ));
    }
    Tensor::from_vec(shape, data.iter().map(|&x| x as f32).collect())
        .map_err(|e| bug(e.to_string()))
}

fn too_costly(before: usize, after: usize) -> Result<(), Skip> {
    if after > before {
        return Err(leave(
            Reason::MoreWork,
            format!(
                "merging would raise the multiply-accumulates per output from {before} to {after}"
            ),
        ));
    }
    Ok(())
}

/// Whether `node` can be merged into its producer, and into what.
pub fn check(graph: &Graph, node: NodeId) -> Result<(NodeId, Fold), Skip> {
    let n = graph.node(node).or_bug("no such layer")?;
    if !matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_)) {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("it is {}, not a Conv, Gemm or MatMul", a_or_an(n.op.name())),
        ));
    }
    let x = operand(graph, node, 0).or_leave(Reason::MissingOperand, "it has no input")?;
    let linear = |op: &Op| matches!(op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_));
    let Some(p) = graph.producer(x) else {
        return Err(Skip::NotACandidate);
    };
    let pn = graph.node(p).or_bug("no producer")?;
    if !linear(&pn.op) {
        // Report a single non-linear layer between two linear ones; skip the rest.
        let before = pn
            .inputs
            .first()
            .copied()
            .flatten()
            .and_then(|v| graph.producer(v))
            .and_then(|q| graph.node(q))
            .filter(|q| linear(&q.op));
        return Err(match before {
            Some(q) if pn.inputs.iter().flatten().count() == 1 => leave(
                Reason::UnsupportedOp,
                format!(
                    "`{}` ({}) sits between it and `{}`, and is not linear",
                    pn.name,
                    a_or_an(pn.op.name()),
                    q.name
                ),
            ),
            _ => Skip::NotACandidate,
        });
    }
    if let Ok(Some(e)) = pn.op.epilogue() {
        return Err(leave(
            Reason::HasActivation,
            format!(
                "`{}` ends in a {e}, which is not linear, so the two do not compose",
                pn.name
            ),
        ));
    }
    match (&pn.op, &n.op) {
        (Op::Conv(_), Op::Conv(_)) => {}
        (Op::Gemm(_) | Op::MatMul(_), Op::Gemm(_) | Op::MatMul(_)) => {}
        (a, _) => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!("it reads {}, not a layer of its kind", a_or_an(a.name())),
            ));
        }
    }
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(leave(
            Reason::SharedOutput,
            format!("`{}`'s output is also read elsewhere", pn.name),
        ));
    }
    let fold = match n.op {
        Op::Conv(_) => conv_pair(graph, p, node)?,
        _ => dense_pair(graph, p, node)?,
    };
    Ok((p, fold))
}

/// A 1×1 Conv (`second`) after a Conv (`first`).
fn conv_pair(graph: &Graph, first: NodeId, second: NodeId) -> Result<Fold, Skip> {
    let (Some(f), Some(s)) = (graph.node(first), graph.node(second)) else {
        return Err(bug("a layer vanished"));
    };
    let (Op::Conv(c1), Op::Conv(c2)) = (&f.op, &s.op) else {
        return Err(bug("not two Convs"));
    };
    let all = |v: &[i64], x: i64| v.iter().all(|&d| d == x);
    if c2.group != 1
        || !all(&c2.strides, 1)
        || !all(&c2.pads, 0)
        || !all(&c2.dilations, 1)
        || !matches!(
            c2.auto_pad,
            mcc_ir::AutoPad::NotSet | mcc_ir::AutoPad::Valid
        )
    {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it is not a plain pointwise Conv (stride 1, no padding, one group)",
        ));
    }
    if c1.group != 1 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            format!("`{}` is grouped; merging would make it dense", f.name),
        ));
    }
    let weights = |node: NodeId, name: &str| {
        operand(graph, node, 1)
            .and_then(|w| f64s(graph, w))
            .ok_or_else(|| {
                leave(
                    Reason::NotConstant,
                    format!("`{name}`'s weights are not an f32 constant"),
                )
            })
    };
    let (s1, w1) = weights(first, &f.name)?;
    let (s2, w2) = weights(second, &s.name)?;
    if s2.len() < 3 || s2[2..].iter().any(|&k| k != 1) {
        return Err(leave(Reason::UnsupportedAttribute, "it is not a 1×1 Conv"));
    }
    let (m1, m2) = (s1[0], s2[0]);
    if s2[1] != m1 || s1.len() != s2.len() {
        return Err(leave(
            Reason::ShapeMismatch,
            "its channels do not line up with the Conv before it",
        ));
    }
    let per: usize = s1[1..].iter().product();
    too_costly(m1 * per + m2 * m1, m2 * per)?;
    let bias = |node: NodeId, len: usize| -> Result<Option<Vec<f64>>, Skip> {
        const NOT_A_VECTOR: &str = "a bias is not an f32 constant vector";
        match operand(graph, node, 2) {
            None => Ok(None),
            Some(b) => match f64s(graph, b) {
                Some((_, v)) if v.len() == len => Ok(Some(v)),
                Some(_) => Err(leave(Reason::ShapeMismatch, NOT_A_VECTOR)),
                None => Err(leave(Reason::NotConstant, NOT_A_VECTOR)),
            },
        }
    };
    let (b1, b2) = (bias(first, m1)?, bias(second, m2)?);
    let mut w = vec![0f64; m2 * per];
    for m in 0..m2 {
        for j in 0..m1 {
            let k = w2[m * m1 + j];
            if k != 0.0 {
                for (o, &i) in w[m * per..(m + 1) * per]
                    .iter_mut()
                    .zip(&w1[j * per..(j + 1) * per])
                {
                    *o += k * i;
                }
            }
        }
    }
    let b: Option<Vec<f64>> = (b1.is_some() || b2.is_some()).then(|| {
        (0..m2)
            .map(|m| {
                let from1: f64 = b1
                    .as_ref()
                    .map_or(0.0, |b1| (0..m1).map(|j| w2[m * m1 + j] * b1[j]).sum());
                from1 + b2.as_ref().map_or(0.0, |b2| b2[m])
            })
            .collect()
    });
    let mut op = Op::Conv(c1.clone());
    op.set_epilogue(s.op.epilogue().map_err(bug)?);
    let mut shape = s1.clone();
    shape[0] = m2;
    Ok(Fold {
        op,
        weights: tensor(&shape, &w)?,
        bias: b.map(|b| tensor(&[m2], &b)).transpose()?,
    })
}

/// A dense layer seen as x ↦ x·B + c.
struct Affine {
    k: usize,
    n: usize,
    /// `k × n`, row-major.
    b: Vec<f64>,
    c: Option<Vec<f64>>,
    trans_a: i64,
}

fn affine(graph: &Graph, node: NodeId) -> Result<Affine, Skip> {
    let n = graph.node(node).or_bug("no such layer")?;
    let w = operand(graph, node, 1).ok_or_else(|| {
        leave(
            Reason::MissingOperand,
            format!("`{}` has no matrix", n.name),
        )
    })?;
    if operand(graph, node, 0).is_some_and(|a| graph.const_data(a).is_some()) {
        return Err(leave(
            Reason::UnsupportedAttribute,
            format!("`{}` multiplies a constant from the left", n.name),
        ));
    }
    let (shape, data) = f64s(graph, w).ok_or_else(|| {
        leave(
            Reason::NotConstant,
            format!(
                "`{}`'s matrix is not an f32 constant (it is computed at run time)",
                n.name
            ),
        )
    })?;
    let &[r, c] = shape.as_slice() else {
        return Err(leave(
            Reason::ShapeMismatch,
            format!("`{}`'s matrix is not 2-D", n.name),
        ));
    };
    match &n.op {
        Op::MatMul(_) => Ok(Affine {
            k: r,
            n: c,
            b: data,
            c: None,
            trans_a: 0,
        }),
        Op::Gemm(g) => {
            let alpha = f64::from(g.alpha);
            let (k, cols) = if g.transB != 0 { (c, r) } else { (r, c) };
            let b = (0..k * cols)
                .map(|i| {
                    let (row, col) = (i / cols, i % cols);
                    alpha
                        * if g.transB != 0 {
                            data[col * c + row]
                        } else {
                            data[i]
                        }
                })
                .collect();
            let bias = match operand(graph, node, 2) {
                None => None,
                Some(cv) => {
                    let (cs, cd) = f64s(graph, cv).ok_or_else(|| {
                        leave(
                            Reason::NotConstant,
                            format!("`{}`'s C is not an f32 constant", n.name),
                        )
                    })?;
                    let beta = f64::from(g.beta);
                    if cd.len() == 1 {
                        Some(vec![beta * cd[0]; cols])
                    } else if cd.len() == cols && cs.iter().rev().skip(1).all(|&d| d == 1) {
                        Some(cd.iter().map(|&x| beta * x).collect())
                    } else {
                        return Err(leave(
                            Reason::ShapeMismatch,
                            format!("`{}`'s C varies by row", n.name),
                        ));
                    }
                }
            };
            Ok(Affine {
                k,
                n: cols,
                b,
                c: bias,
                trans_a: g.transA,
            })
        }
        other => Err(bug(format!("it is {}", a_or_an(other.name())))),
    }
}

/// A Gemm/MatMul (`second`) after a Gemm/MatMul (`first`).
fn dense_pair(graph: &Graph, first: NodeId, second: NodeId) -> Result<Fold, Skip> {
    let (Some(f), Some(s)) = (graph.node(first), graph.node(second)) else {
        return Err(bug("a layer vanished"));
    };
    let (a1, a2) = (affine(graph, first)?, affine(graph, second)?);
    if a2.trans_a != 0 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it transposes its input (transA)",
        ));
    }
    if a2.k != a1.n {
        return Err(leave(
            Reason::ShapeMismatch,
            "its rows do not line up with the layer before it",
        ));
    }
    let (k, mid, n) = (a1.k, a1.n, a2.n);
    too_costly(k * mid + mid * n, k * n)?;
    // B = B₁·B₂ ([k, n]); c = c₁·B₂ + c₂.
    let mut b = vec![0f64; k * n];
    for i in 0..k {
        for j in 0..mid {
            let x = a1.b[i * mid + j];
            if x != 0.0 {
                for (o, &y) in b[i * n..(i + 1) * n]
                    .iter_mut()
                    .zip(&a2.b[j * n..(j + 1) * n])
                {
                    *o += x * y;
                }
            }
        }
    }
    let c: Option<Vec<f64>> = (a1.c.is_some() || a2.c.is_some()).then(|| {
        (0..n)
            .map(|col| {
                let from1: f64 =
                    a1.c.as_ref()
                        .map_or(0.0, |c1| (0..mid).map(|j| c1[j] * a2.b[j * n + col]).sum());
                from1 + a2.c.as_ref().map_or(0.0, |c2| c2[col])
            })
            .collect()
    });
    let epilogue = s.op.epilogue().map_err(bug)?;
    let both_matmul = matches!((&f.op, &s.op), (Op::MatMul(_), Op::MatMul(_)));
    let (mut op, weights) = if both_matmul {
        (f.op.clone(), tensor(&[k, n], &b)?)
    } else {
        let transposed: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let gemm = mcc_ir::op::Gemm {
            transA: a1.trans_a,
            transB: 1,
            ..Default::default()
        };
        (Op::Gemm(gemm), tensor(&[n, k], &transposed)?)
    };
    op.set_epilogue(epilogue);
    Ok(Fold {
        op,
        weights,
        bias: c.map(|c| tensor(&[n], &c)).transpose()?,
    })
}

fn fold_into(graph: &mut Graph, first: NodeId, fold: Fold) -> Result<(), String> {
    let base = graph
        .node(first)
        .map(|n| n.name.clone())
        .ok_or("the layer vanished")?;
    store_const(graph, first, 1, &format!("{base}.weight"), fold.weights)
        .map_err(|e| e.to_string())?;
    match fold.bias {
        Some(b) => store_const(graph, first, 2, &format!("{base}.bias"), b),
        None => graph.set_inputs(first, {
            let mut ins = graph
                .node(first)
                .map(|n| n.inputs.clone())
                .unwrap_or_default();
            ins.truncate(2);
            ins
        }),
    }
    .map_err(|e| e.to_string())?;
    if let Some(n) = graph.node_mut(first) {
        n.op = fold.op;
    }
    Ok(())
}

/// Merges each named layer it can into the linear layer before it; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    merge::each(graph, nodes, step, "merge-linear", check, fold_into)
}

/// `merge linear`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "linear",
    summary: "collapse a Conv/Gemm/MatMul into the linear layer before it (1×1 Conv after Conv, Gemm/MatMul chains)",
    params: &[],
    applies: Applies::Ops(&["Conv", "Gemm", "MatMul"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
