//! `factorize separable`: a kh×kw convolution `W` [out, c, kh, kw] as a kh×1 convolution
//! c → r followed by a 1×kw convolution r → out (Jaderberg, Vedaldi & Zisserman, "Speeding
//! up convolutional neural networks with low rank expansions", scheme 2).
//!
//! The chain computes `Σ_k H_k(x) ⋆ (Σ_c V_{k,c}(y) ⋆ in_c)`, a full convolution whose kernel
//! is `Σ_k V_k ⊗ H_k`: the matrix `M[(c, y), (o, x)] = W[o, c, y, x]` at rank r. The best one
//! (least squares) comes from the leading eigenvectors `U` of `M·Mᵀ` ((c·kh)²): the vertical
//! filters are `U`'s columns, the horizontal ones `Uᵀ·M`, so `M ≈ U·Uᵀ·M`.
//!
//! The vertical convolution takes the layer's vertical stride, dilation and top/bottom pads,
//! the horizontal one (the layer itself, keeping its name, bias and activation) the
//! horizontal ones. Ranks as for the other factorizations: `rank`, else `size` (the pair
//! keeps at most that fraction of the weights: `r·(c·kh + out·kw) ≤ size·out·c·kh·kw`), else
//! the smallest keeping `energy` of the squared singular values; from `size` or `energy`,
//! ranks of 32 or more are rounded to a multiple of 16.
//!
//! Keeps (`crate::factorize::chain`): the layer's name, output, bias and epilogue, on the 1×kw
//! convolution; the new layer is `<layer>.vertical`.
//!
//! Applies to: one-group 2-D Conv with kh and kw both above 1. Leaves alone (reported): other
//! layers, `c·kh` above [`factorize::MAX_EIG`], and ranks at which the pair would store as
//! many weights as the layer or more (`not_smaller`).

use mcc_ir::{Graph, NodeId, Op, StepId, Tensor};
use mcc_plan::plan::Step;
use mcc_plan::registry::{Applies, Status, VariantSchema, num};
use mcc_plan::{LeftAlone, Outcome, Reason, Stats, Technique, TechniqueError};

use crate::factorize::{self, Part, Size};
use crate::layers;
use crate::linalg::eig_sym;

/// `factorize separable`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "separable",
    summary: "a kh×kw convolution as kh×1 then 1×kw (Jaderberg et al.)",
    params: &[factorize::RANK, factorize::ENERGY, factorize::SIZE],
    applies: Applies::Weighted,
    status: Status::Ready(&FactorizeSeparable),
    check_params: crate::factorize_tucker::check_params,
    sweep: Some(factorize::SWEEP),
};

/// Spatially separable factorization as a technique (data-free).
pub struct FactorizeSeparable;

impl Technique for FactorizeSeparable {
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let mut out = Outcome::default();
        for name in &step.nodes {
            let (node, conv, [o, c, kh, kw], w) = match layer(graph, name) {
                Ok(l) => l,
                Err(left) => {
                    out.left_alone.push(left);
                    continue;
                }
            };
            let (rows, cols) = (c * kh, o * kw);
            if rows > factorize::MAX_EIG {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::TooLarge,
                    detail: format!(
                        "{c} channels × {kh} rows make a {rows}-wide eigenproblem (at most {})",
                        factorize::MAX_EIG
                    ),
                });
                continue;
            }
            // M[(ci, y), (oo, x)] = W[oo, ci, y, x].
            let m = |r: usize, col: usize| {
                let (ci, y, oo, x) = (r / kh, r % kh, col / kw, col % kw);
                w[((oo * c + ci) * kh + y) * kw + x]
            };
            let mut mm = vec![0.0; rows * rows];
            for a in 0..rows {
                for b in a..rows {
                    let v: f64 = (0..cols).map(|j| m(a, j) * m(b, j)).sum();
                    mm[a * rows + b] = v;
                    mm[b * rows + a] = v;
                }
            }
            let (s, u) = eig_sym(&mm, rows);
            let r = rank(step, &s, o, c, kh, kw);
            let stored = r * (rows + cols);
            if stored >= o * c * kh * kw {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::NotSmaller,
                    detail: format!(
                        "at rank {r} the pair stores {stored} weights, the layer {}",
                        o * c * kh * kw
                    ),
                });
                continue;
            }
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            // Vertical [r, c, kh, 1]: U's columns; horizontal [o, r, 1, kw]: (Uᵀ·M)[k, (oo, x)].
            let vertical: Vec<f32> = (0..r * rows)
                .map(|i| u[(i % rows) * rows + i / rows] as f32)
                .collect();
            let mut horizontal = vec![0f32; o * r * kw];
            for k in 0..r {
                for col in 0..cols {
                    let v: f64 = (0..rows).map(|a| u[a * rows + k] * m(a, col)).sum();
                    let (oo, x) = (col / kw, col % kw);
                    horizontal[(oo * r + k) * kw + x] = v as f32;
                }
            }
            if let Some(v) = horizontal.iter().find(|v| !v.is_finite()) {
                return Err(fail(format!("the factorization gave a weight of {v}")));
            }
            let tensor = |shape: &[usize], data: Vec<f32>| {
                Tensor::from_vec(shape, data).map_err(|e| fail(e.to_string()))
            };
            // ONNX pads: [top, left, bottom, right].
            let pad = |i: usize| conv.pads.get(i).copied().unwrap_or(0);
            let stride = |i: usize| conv.strides.get(i).copied().unwrap_or(1);
            let dilation = |i: usize| conv.dilations.get(i).copied().unwrap_or(1);
            let mut first = factorize::plain(&conv);
            first.kernel_shape = vec![kh as i64, 1];
            first.pads = vec![pad(0), 0, pad(2), 0];
            first.strides = vec![stride(0), 1];
            first.dilations = vec![dilation(0), 1];
            let mut last = conv.clone();
            last.kernel_shape = vec![1, kw as i64];
            last.pads = vec![0, pad(1), 0, pad(3)];
            last.strides = vec![1, stride(1)];
            last.dilations = vec![1, dilation(1)];
            let parts = vec![Part {
                suffix: "vertical",
                op: Op::Conv(first),
                weights: tensor(&[r, c, kh, 1], vertical)?,
                channels: r,
                size: Size::OutputRows,
            }];
            factorize::chain(
                graph,
                node,
                parts,
                Op::Conv(last),
                tensor(&[o, r, 1, kw], horizontal)?,
                id,
            )
            .map_err(fail)?;
            out.changed.push(name.clone());
        }
        Ok(out)
    }
}

/// The rank the step asks for.
fn rank(step: &Step, s: &[f64], o: usize, c: usize, kh: usize, kw: usize) -> usize {
    let most = s.iter().filter(|v| **v > 0.0).count().max(1);
    let given = num(&step.params, "rank").unwrap_or(0.0) as usize;
    if given > 0 {
        return given.min(s.len());
    }
    let size = num(&step.params, "size").unwrap_or(0.0);
    if size > 0.0 {
        let r = (size * (o * c * kh * kw) as f64 / (c * kh + o * kw) as f64).floor() as usize;
        return factorize::align_rank(r, false).clamp(1, most);
    }
    let energy = num(&step.params, "energy").unwrap_or(0.95);
    let total: f64 = s.iter().map(|v| v.max(0.0)).sum();
    let mut kept = 0.0;
    for (i, v) in s.iter().enumerate() {
        kept += v.max(0.0);
        if kept >= energy * total {
            return factorize::align_rank(i + 1, true).min(s.len());
        }
    }
    s.len()
}

type Layer = (NodeId, mcc_ir::op::Conv, [usize; 4], Vec<f64>);

fn layer(graph: &Graph, name: &str) -> Result<Layer, LeftAlone> {
    let leave = |reason: Reason, detail: String| layers::leave(name, reason, detail);
    let w = layers::weighted(graph, name)?;
    let Op::Conv(conv) = &w.node.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!(
                "a {} (separable factorization splits convolutions)",
                w.node.op.name()
            ),
        ));
    };
    if conv.group != 1 || conv.auto_pad != mcc_ir::AutoPad::NotSet {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "a grouped convolution or one with auto_pad".into(),
        ));
    }
    let Some(t) = w.tensor.as_f32() else {
        return Err(leave(
            Reason::NotConstant,
            "its weights are not an f32 constant".into(),
        ));
    };
    let &[o, c, kh, kw] = t.shape() else {
        return Err(leave(
            Reason::ShapeMismatch,
            format!("weights of rank {} (it splits 2-D convolutions)", t.ndim()),
        ));
    };
    if kh < 2 || kw < 2 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            format!("a {kh}×{kw} kernel is separable already"),
        ));
    }
    Ok((
        w.id,
        conv.clone(),
        [o, c, kh, kw],
        t.iter().map(|&v| f64::from(v)).collect(),
    ))
}
