//! `factorize tucker`: a k×k convolution `W` [out, c, kh, kw] as its Tucker-2 decomposition
//! (Kim et al., "Compression of deep convolutional neural networks for fast and low power
//! mobile applications"): a 1×1 convolution c → r_in, the k×k core r_in → r_out with the
//! original strides, pads and dilations, and a 1×1 convolution r_out → out with the bias.
//!
//! The factors come from the HOSVD: `U_out` holds the leading eigenvectors of the output-mode
//! unfolding's `W₀·W₀ᵀ` (out × out), `U_in` those of the input-mode unfolding's `W₁·W₁ᵀ`
//! (c × c), and the core is `G = W ×₀ U_outᵀ ×₁ U_inᵀ`, so the chain computes the projection
//! of `W` onto the leading channel subspaces of both modes.
//!
//! Ranks: `rank` for both modes when given; else from `size` (the three layers keep at most
//! that fraction of the layer's weights, one rank for both modes) when given; else per mode
//! the smallest rank keeping `energy` of its squared singular values. Ranks of 32 or more
//! from `size` or `energy` are rounded to a multiple of 16 (down for size, up for energy).
//!
//! Keeps (`crate::factorize::chain`): the layer's name, output, bias and epilogue, on the
//! last 1×1; the new layers are `<layer>.tucker_in` and `<layer>.tucker_core`.
//!
//! Applies to: one-group 2-D Conv with a kernel larger than 1×1 (1×1 ones are `factorize
//! svd`'s). Leaves alone (reported): other layers, and ranks at which the three layers would
//! store as many weights as the layer or more (`not_smaller`).

use mcc_ir::{Graph, NodeId, Op, StepId, Tensor};
use mcc_plan::plan::{Severity, Step};
use mcc_plan::registry::{Applies, ParamIssue, Params, Status, VariantSchema, num};
use mcc_plan::{LeftAlone, Outcome, Reason, Stats, Technique, TechniqueError};

use crate::factorize::{self, Part};
use crate::layers;
use crate::linalg::eig_sym;

/// `factorize tucker`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "tucker",
    summary: "a k×k convolution as 1×1, a smaller k×k core, 1×1 (Tucker-2)",
    params: &[factorize::RANK, factorize::ENERGY, factorize::SIZE],
    applies: Applies::Weighted,
    status: Status::Ready(&FactorizeTucker),
    check_params,
    sweep: Some(factorize::SWEEP),
};

/// A factorization that keeps no energy removes the layer (shared with `factorize separable`).
pub fn check_params(params: &Params) -> Vec<ParamIssue> {
    if num(params, "energy") == Some(0.0) && num(params, "rank") == Some(0.0) {
        return vec![ParamIssue {
            severity: Severity::Error,
            param: "energy",
            message: "a factorization that keeps no energy removes the layer".into(),
            label: "energy must be above 0%".into(),
            help: None,
        }];
    }
    vec![]
}

/// Tucker-2 as a technique (data-free).
pub struct FactorizeTucker;

impl Technique for FactorizeTucker {
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
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
            let [o, c, kh, kw] = l.shape;
            if o.max(c) > factorize::MAX_EIG {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::TooLarge,
                    detail: format!(
                        "a {}-wide channel mode (at most {})",
                        o.max(c),
                        factorize::MAX_EIG
                    ),
                });
                continue;
            }
            let kk = kh * kw;
            let w = &l.w;
            // Output mode: W₀·W₀ᵀ (o × o); input mode: W₁·W₁ᵀ (c × c).
            let mut c0 = vec![0.0; o * o];
            for a in 0..o {
                for b in a..o {
                    let v: f64 = w[a * c * kk..(a + 1) * c * kk]
                        .iter()
                        .zip(&w[b * c * kk..(b + 1) * c * kk])
                        .map(|(x, y)| x * y)
                        .sum();
                    c0[a * o + b] = v;
                    c0[b * o + a] = v;
                }
            }
            let mut c1 = vec![0.0; c * c];
            for oo in 0..o {
                for i in 0..c {
                    let wi = &w[(oo * c + i) * kk..(oo * c + i + 1) * kk];
                    for j in i..c {
                        let wj = &w[(oo * c + j) * kk..(oo * c + j + 1) * kk];
                        c1[i * c + j] += wi.iter().zip(wj).map(|(x, y)| x * y).sum::<f64>();
                    }
                }
            }
            for i in 0..c {
                for j in 0..i {
                    c1[i * c + j] = c1[j * c + i];
                }
            }
            let (s_out, u_out) = eig_sym(&c0, o);
            let (s_in, u_in) = eig_sym(&c1, c);
            let (r_in, r_out) = ranks(step, &s_in, &s_out, o, c, kk);
            let stored = r_in * c + r_out * r_in * kk + o * r_out;
            if stored >= o * c * kk {
                out.left_alone.push(LeftAlone {
                    node: name.clone(),
                    reason: Reason::NotSmaller,
                    detail: format!(
                        "at ranks {r_in} (in) and {r_out} (out) the three layers store {stored} weights, the layer {}",
                        o * c * kk
                    ),
                });
                continue;
            }
            // T = W ×₀ U_outᵀ: [r_out, c, kk]; G = T ×₁ U_inᵀ: [r_out, r_in, kk].
            let mut t = vec![0.0; r_out * c * kk];
            for oo in 0..o {
                let src = &w[oo * c * kk..(oo + 1) * c * kk];
                for a in 0..r_out {
                    let u = u_out[oo * o + a];
                    if u == 0.0 {
                        continue;
                    }
                    for (d, &x) in t[a * c * kk..(a + 1) * c * kk].iter_mut().zip(src) {
                        *d += u * x;
                    }
                }
            }
            let mut g = vec![0.0; r_out * r_in * kk];
            for a in 0..r_out {
                for i in 0..c {
                    let src = &t[(a * c + i) * kk..(a * c + i + 1) * kk];
                    for b in 0..r_in {
                        let u = u_in[i * c + b];
                        let dst = &mut g[(a * r_in + b) * kk..(a * r_in + b + 1) * kk];
                        for (d, &x) in dst.iter_mut().zip(src) {
                            *d += u * x;
                        }
                    }
                }
            }
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            let tensor = |shape: &[usize], data: Vec<f64>| {
                Tensor::from_vec(
                    shape,
                    data.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
                )
                .map_err(|e| fail(e.to_string()))
            };
            let first = tensor(
                &[r_in, c, 1, 1],
                (0..r_in * c).map(|i| u_in[(i % c) * c + i / c]).collect(),
            )?;
            let core = tensor(&[r_out, r_in, kh, kw], g)?;
            let last = tensor(
                &[o, r_out, 1, 1],
                (0..o * r_out)
                    .map(|i| u_out[(i / r_out) * o + i % r_out])
                    .collect(),
            )?;
            let parts = vec![
                Part {
                    suffix: "tucker_in",
                    op: factorize::pointwise(),
                    weights: first,
                    channels: r_in,
                    size: factorize::Size::Input,
                },
                Part {
                    suffix: "tucker_core",
                    op: Op::Conv(factorize::plain(&l.conv)),
                    weights: core,
                    channels: r_out,
                    size: factorize::Size::Output,
                },
            ];
            let mut last_op = l.conv.clone();
            last_op.kernel_shape = vec![1, 1];
            last_op.strides = vec![];
            last_op.pads = vec![];
            last_op.dilations = vec![];
            factorize::chain(graph, l.node, parts, Op::Conv(last_op), last, id).map_err(fail)?;
            out.changed.push(name.clone());
        }
        Ok(out)
    }
}

/// The input-mode and output-mode ranks the step asks for.
fn ranks(
    step: &Step,
    s_in: &[f64],
    s_out: &[f64],
    o: usize,
    c: usize,
    kk: usize,
) -> (usize, usize) {
    let given = num(&step.params, "rank").unwrap_or(0.0) as usize;
    if given > 0 {
        return (given.min(c), given.min(o));
    }
    let size = num(&step.params, "size").unwrap_or(0.0);
    if size > 0.0 {
        // The largest r with r·c + r²·kk + o·r ≤ size·o·c·kk.
        let budget = size * (o * c * kk) as f64;
        let (qa, qb) = (kk as f64, (c + o) as f64);
        let r = ((-qb + (qb * qb + 4.0 * qa * budget).sqrt()) / (2.0 * qa)).floor() as usize;
        let r = factorize::align_rank(r, false).max(1);
        return (r.min(c), r.min(o));
    }
    let energy = num(&step.params, "energy").unwrap_or(0.95);
    let by_energy = |s: &[f64]| {
        let total: f64 = s.iter().map(|v| v.max(0.0)).sum();
        let mut kept = 0.0;
        for (i, v) in s.iter().enumerate() {
            kept += v.max(0.0);
            if kept >= energy * total {
                return factorize::align_rank(i + 1, true).min(s.len());
            }
        }
        s.len()
    };
    (by_energy(s_in), by_energy(s_out))
}

/// A convolution Tucker-2 can factorize.
struct Layer {
    node: NodeId,
    conv: mcc_ir::op::Conv,
    /// [out, c, kh, kw].
    shape: [usize; 4],
    /// The weights, row-major, in f64.
    w: Vec<f64>,
}

fn layer(graph: &Graph, name: &str) -> Result<Layer, LeftAlone> {
    let leave = |reason: Reason, detail: String| layers::leave(name, reason, detail);
    let w = layers::weighted(graph, name)?;
    let Op::Conv(conv) = &w.node.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("a {} (Tucker-2 factorizes convolutions)", w.node.op.name()),
        ));
    };
    if conv.group != 1 || conv.auto_pad != mcc_ir::AutoPad::NotSet {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "a grouped convolution or one with auto_pad".into(),
        ));
    }
    let n = w.id;
    let Some(t) = w.tensor.as_f32() else {
        return Err(leave(
            Reason::NotConstant,
            "its weights are not an f32 constant".into(),
        ));
    };
    let &[o, c, kh, kw] = t.shape() else {
        return Err(leave(
            Reason::ShapeMismatch,
            format!(
                "weights of rank {} (Tucker-2 takes 2-D convolutions)",
                t.ndim()
            ),
        ));
    };
    if kh * kw == 1 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "a 1×1 convolution (`factorize svd` factorizes those)".into(),
        ));
    }
    Ok(Layer {
        node: n,
        conv: conv.clone(),
        shape: [o, c, kh, kw],
        w: t.iter().map(|&v| f64::from(v)).collect(),
    })
}
