//! `factorize svd`: a linear layer `y = W·x` (W: out × in) becomes a pair `y = B·(A·x)` of
//! rank `r`, A: r × in and B: out × r, from the truncated SVD of W — or, with `data: on`, of
//! W as seen through the calibration inputs (`W·L` where `H = XᵀX/n + λI = L·Lᵀ`), which
//! minimizes the output error on the calibration data instead of the weight error.
//!
//! Both come from one symmetric eigenproblem: with `C = W·Wᵀ` (or `W·H·Wᵀ`) = `U·S²·Uᵀ`,
//! `B = U_r` and `A = U_rᵀ·W`; so `B·A = U_r·U_rᵀ·W` projects W's outputs onto the `r`
//! directions that carry most of their energy (plain or as the data sees it).
//!
//! The rank is `rank` when given; else from `size` (the pair keeps at most that fraction of
//! the layer's weights: `r·(in + out) ≤ size·in·out`) when given; else the smallest rank
//! keeping `energy` of `Σ s²`. A rank from `size` or `energy` of 32 or more is rounded to a
//! multiple of 16, the kernels' vector width (down for `size`, up for `energy`, so the
//! bound still holds): a rank of 54 runs barely faster than one of 64.
//!
//! Keeps: the layer's name, output value, bias and activation epilogue (on the second of the
//! pair, the original node, whose input becomes the first's output). The first, named
//! `<layer>.lowrank`, is a Gemm (`transB`), MatMul or 1×1 Conv like the original, with its
//! strides and pads; the second's Conv has none. Shapes outside the layer do not change.
//!
//! Applies to: Gemm without transA, MatMul with 2-D constant weights, 1×1 one-group Conv.
//! Leaves alone (reported): other layers, and a rank at which the pair would store as many
//! weights as the layer or more (`not_smaller`).

use mcc_ir::{Graph, NodeId, Op, StepId};
use mcc_plan::plan::{ParamValue, Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, Status, VariantSchema, num, p,
};
use mcc_plan::{
    Infeasible, LeftAlone, Outcome, Reason, StatRequest, Stats, Technique, TechniqueError,
};

use crate::factorize::{self, Part};
use crate::layers;
use crate::linalg::eig_sym;
use crate::reconstruct::{self, Rows, View};

/// `factorize svd`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "svd",
    summary: "a linear layer as a low-rank pair, from the truncated SVD of its weights",
    params: &[
        factorize::RANK,
        factorize::ENERGY,
        factorize::SIZE,
        p(
            "data",
            ParamType::Choice(&["off", "on"]),
            Default::Word("off"),
            "factorize the weights as the calibration inputs see them (needs calibrate with)",
        ),
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&FactorizeSvd),
    check_params,
    sweep: Some(factorize::SWEEP),
};

/// Keeping no energy or no size leaves nothing.
fn check_params(params: &Params) -> Vec<ParamIssue> {
    let zero = |name: &'static str, what: &str| ParamIssue {
        severity: Severity::Error,
        param: name,
        message: format!("a factorization that keeps no {what} removes the layer"),
        label: format!("{name} must be above 0%"),
        help: None,
    };
    let mut out = vec![];
    if num(params, "energy") == Some(0.0) && num(params, "rank") == Some(0.0) {
        out.push(zero("energy", "energy"));
    }
    if num(params, "size") == Some(1.0) {
        out.push(ParamIssue {
            severity: Severity::Warning,
            param: "size",
            message: "a pair the size of the layer saves nothing".into(),
            label: "no effect".into(),
            help: Some("give the fraction of the layer's weights to keep, e.g. 25%".into()),
        });
    }
    out
}

/// Truncated SVD as a technique.
pub struct FactorizeSvd;

fn data(step: &Step) -> bool {
    matches!(step.param("data"), Some(ParamValue::Word(w)) if w == "on")
}

impl Technique for FactorizeSvd {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        if !data(step) {
            return Vec::new();
        }
        layers::first_gram(step)
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn infeasible(&self, graph: &Graph, step: &Step) -> Vec<Infeasible> {
        let given = num(&step.params, "rank").unwrap_or(0.0) as usize;
        step.nodes
            .iter()
            .filter_map(|name| {
                let l = layer(graph, name).ok()?;
                let max = l.w.rows.min(l.w.k);
                (given > max).then(|| Infeasible {
                    node: name.clone(),
                    message: format!(
                        "rank {given} is above the rank of its {}×{} weight matrix (at most {max})",
                        l.w.rows, l.w.k
                    ),
                    help: Some(format!(
                        "give a rank of at most {max}, or use size or energy"
                    )),
                })
            })
            .collect()
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        Ok(step
            .nodes
            .iter()
            .filter_map(|name| layer(graph, name).err())
            .collect())
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let mut out = Outcome::default();
        for name in &step.nodes {
            let l = match layer(graph, name) {
                Ok(l) => l,
                Err(left) => {
                    out.left_alone.push(left);
                    continue;
                }
            };
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            let h = if data(step) {
                Some(layers::hessian(graph, stats, name, l.w.k).map_err(fail)?)
            } else {
                None
            };
            let (out_n, in_n) = (l.w.rows, l.w.k);
            // The smaller side's eigenproblem: W·Wᵀ (out × out) or, for a plain SVD of a
            // layer with fewer inputs than outputs, Wᵀ·W (in × in); their nonzero eigenvalues
            // are the same squared singular values.
            let input_side = h.is_none() && in_n < out_n;
            let side = if input_side { in_n } else { out_n };
            if side > factorize::MAX_EIG {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::TooLarge,
                    detail: format!(
                        "its SVD needs a {side}-wide eigenproblem (at most {})",
                        factorize::MAX_EIG
                    ),
                });
                continue;
            }
            let (s2, u) = if input_side {
                eig_sym(&covariance(&transpose(&l.w), None), in_n)
            } else {
                eig_sym(&covariance(&l.w, h.as_deref()), out_n)
            };
            let r = rank(step, &s2, in_n, out_n);
            if r * (in_n + out_n) >= in_n * out_n {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::NotSmaller,
                    detail: format!(
                        "at rank {r} the pair stores {} weights, the layer {}",
                        r * (in_n + out_n),
                        in_n * out_n
                    ),
                });
                continue;
            }
            let (a, b) = if input_side {
                // A = V_rᵀ (r × in), B = W·V_r (out × r).
                let a = Rows {
                    rows: r,
                    k: in_n,
                    data: (0..r * in_n)
                        .map(|i| u[(i % in_n) * in_n + i / in_n])
                        .collect(),
                };
                let mut b = Rows {
                    rows: out_n,
                    k: r,
                    data: vec![0.0; out_n * r],
                };
                for o in 0..out_n {
                    let row = &l.w.data[o * in_n..(o + 1) * in_n];
                    for c in 0..r {
                        b.data[o * r + c] = row
                            .iter()
                            .enumerate()
                            .map(|(i, &w)| w * u[i * in_n + c])
                            .sum();
                    }
                }
                (a, b)
            } else {
                // A = U_rᵀ·W (r × in), B = U_r (out × r).
                let mut a = Rows {
                    rows: r,
                    k: in_n,
                    data: vec![0.0; r * in_n],
                };
                for c in 0..r {
                    for o in 0..out_n {
                        let uc = u[o * out_n + c];
                        if uc == 0.0 {
                            continue;
                        }
                        let (dst, src) = (
                            &mut a.data[c * in_n..(c + 1) * in_n],
                            &l.w.data[o * in_n..(o + 1) * in_n],
                        );
                        for (d, &w) in dst.iter_mut().zip(src) {
                            *d += uc * w;
                        }
                    }
                }
                let b = Rows {
                    rows: out_n,
                    k: r,
                    data: (0..out_n * r).map(|i| u[(i / r) * out_n + i % r]).collect(),
                };
                (a, b)
            };
            split(graph, &l, a, b, id).map_err(fail)?;
            out.changed.push(name.clone());
            if h.is_some() {
                stats.invalidate();
            }
        }
        Ok(out)
    }
}

/// `Wᵀ` (in × out).
fn transpose(w: &Rows) -> Rows {
    Rows {
        rows: w.k,
        k: w.rows,
        data: (0..w.rows * w.k)
            .map(|i| w.data[(i % w.rows) * w.k + i / w.rows])
            .collect(),
    }
}

/// `W·Wᵀ`, or `W·H·Wᵀ` (out × out).
fn covariance(w: &Rows, h: Option<&[f64]>) -> Vec<f64> {
    let (o, k) = (w.rows, w.k);
    // WH = W·H (out × in) when weighted.
    let wh: Vec<f64> = match h {
        None => w.data.clone(),
        Some(h) => {
            let mut wh = vec![0.0; o * k];
            for r in 0..o {
                let row = &w.data[r * k..(r + 1) * k];
                let dst = &mut wh[r * k..(r + 1) * k];
                for (i, &x) in row.iter().enumerate() {
                    if x == 0.0 {
                        continue;
                    }
                    for (d, &hv) in dst.iter_mut().zip(&h[i * k..(i + 1) * k]) {
                        *d += x * hv;
                    }
                }
            }
            wh
        }
    };
    let mut c = vec![0.0; o * o];
    for i in 0..o {
        for j in i..o {
            let v: f64 = wh[i * k..(i + 1) * k]
                .iter()
                .zip(&w.data[j * k..(j + 1) * k])
                .map(|(a, b)| a * b)
                .sum();
            c[i * o + j] = v;
            c[j * o + i] = v;
        }
    }
    c
}

/// The rank the step asks for, from the eigenvalues `s2` (descending) of the covariance.
fn rank(step: &Step, s2: &[f64], in_n: usize, out_n: usize) -> usize {
    let full = in_n.min(out_n).max(1);
    let given = num(&step.params, "rank").unwrap_or(0.0) as usize;
    let size = num(&step.params, "size").unwrap_or(0.0);
    if given > 0 {
        return given.min(full);
    }
    if size > 0.0 {
        let r = (size * (in_n * out_n) as f64 / (in_n + out_n) as f64).floor() as usize;
        // Down to a whole number of vectors: still within the size.
        return factorize::align_rank(r, false).clamp(1, full);
    }
    let energy = num(&step.params, "energy").unwrap_or(0.95);
    let total: f64 = s2.iter().map(|v| v.max(0.0)).sum();
    let mut kept = 0.0;
    for (i, v) in s2.iter().enumerate().take(full) {
        kept += v.max(0.0);
        if kept >= energy * total {
            // Up to a whole number of vectors: still at least the energy.
            return factorize::align_rank(i + 1, true).min(full);
        }
    }
    full
}

/// A layer SVD can factorize: its node, its weights as out × in, and how they are laid out.
struct Layer {
    node: NodeId,
    w: Rows,
    view: View,
}

fn layer(graph: &Graph, name: &str) -> Result<Layer, LeftAlone> {
    let leave = |reason: Reason, detail: String| layers::leave(name, reason, detail);
    let w = layers::weighted(graph, name)?;
    let (n, node, t) = (w.id, w.node, w.tensor);
    let shape = t.shape().to_vec();
    if matches!(node.op, Op::Conv(_)) && shape.len() == 4 && (shape[2], shape[3]) != (1, 1) {
        return Err(leave(
            Reason::UnsupportedAttribute,
            format!(
                "a {}×{} convolution (svd factorizes 1×1 ones; `factorize tucker` is for k×k)",
                shape[2], shape[3]
            ),
        ));
    }
    if let Op::Conv(c) = &node.op
        && (!c.dilations.iter().all(|&d| d == 1) || c.auto_pad != mcc_ir::AutoPad::NotSet)
    {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "a Conv with dilations or auto_pad".into(),
        ));
    }
    let view = reconstruct::view(&node.op, &shape)
        .map_err(|why| leave(Reason::UnsupportedAttribute, why))?;
    let w = reconstruct::to_rows(t, view).ok_or_else(|| {
        leave(
            Reason::NotConstant,
            "its weights are not an f32 constant".into(),
        )
    })?;
    Ok(Layer { node: n, w, view })
}

/// Rewrites `l` as `B·(A·x)`: a new first layer computes `A·x`, the original one `B·(…)`.
fn split(graph: &mut Graph, l: &Layer, a: Rows, b: Rows, id: StepId) -> Result<(), String> {
    let op = graph.node(l.node).ok_or("the layer vanished")?.op.clone();
    let r = a.rows;
    let (a_shape, b_shape): (Vec<usize>, Vec<usize>) = match (&op, l.view) {
        (Op::Conv(_), _) => (vec![r, a.k, 1, 1], vec![b.rows, r, 1, 1]),
        (_, View::Direct) => (vec![r, a.k], vec![b.rows, r]),
        (_, View::Transposed) => (vec![a.k, r], vec![r, b.rows]),
    };
    let (first, last) = match &op {
        Op::Gemm(g) => (
            Op::Gemm(mcc_ir::op::Gemm {
                transB: g.transB,
                ..std::default::Default::default()
            }),
            op.clone(),
        ),
        Op::MatMul(_) => (op.clone(), op.clone()),
        // The first takes the strides and pads; the second is a plain 1×1.
        Op::Conv(c) => {
            let mut last = c.clone();
            last.strides = vec![];
            last.pads = vec![];
            (Op::Conv(factorize::plain(c)), Op::Conv(last))
        }
        other => return Err(format!("{} cannot be factorized", other.name())),
    };
    let part = Part {
        suffix: "lowrank",
        op: first,
        weights: reconstruct::from_rows(&a, l.view, &a_shape)?,
        channels: r,
        size: factorize::Size::Output,
    };
    factorize::chain(
        graph,
        l.node,
        vec![part],
        last,
        reconstruct::from_rows(&b, l.view, &b_shape)?,
        id,
    )
}
