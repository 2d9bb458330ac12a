//! `merge branches`: parallel Convs that read the same tensor and meet again become one Conv
//! (DeepRebirth's branch merge; RepVGG's re-parameterization).
//!
//! - **Concat** (along channels) of Convs reading x: one Conv whose filters are the branches'
//!   filters stacked, biases concatenated. Branches whose kernels differ in size are merged
//!   only with `kernels: pad`: the smaller kernels are zero-padded to the largest, which is
//!   exact but adds multiply-accumulates (the zeros are computed).
//! - **Add / Sum** of Convs reading x, of x itself (the identity branch) and of a
//!   BatchNormalization of x: one Conv whose kernel is the branches' kernels summed (the
//!   identity and the norm are 1×1 diagonal kernels), biases summed. This always saves work.
//!
//! A kernel k with begin padding p sits in the merged kernel K at offset P − p, where P (the
//! merged begin padding) is the largest p; the end padding is chosen so the output size is
//! unchanged. Every output then reads the same input positions with the same weights, and
//! positions outside the input are zero in both, so the merge is exact up to float rounding
//! (weights are combined in f64).
//!
//! Keeps: every graph output. The first Conv branch keeps its name, records the step and
//! takes over the join's output; the other branches and the join are removed.
//!
//! Leaves alone (reported with the reason): a join whose inputs are not such branches of one
//! tensor; branches with different strides, groups (Concat: any grouping), dilation, auto_pad
//! or epilogues (Add: any epilogue, which is not additive); a branch whose output is also
//! read elsewhere; placements no single padding can express; unknown spatial sizes.

use mcc_ir::{AutoPad, Graph, NodeId, Op, Origin, StepId, Tensor, ValueId};

use crate::PassError;
use crate::merge::{
    LeftAlone, Merged, OrSkip, Reason, Skip, a_or_an, bug, leave, spatial_dims, store_const,
};
use mcc_plan::plan::{ParamValue, Step};
use mcc_plan::registry::{Applies, Default, ParamType, Status, VariantSchema, no_param_check, p};
use mcc_plan::{Outcome, Stats, Technique, TechniqueError};

/// A branch of the join, as a convolution of the shared input.
struct Branch {
    /// The layer (None for the identity branch).
    node: Option<NodeId>,
    /// The shared input.
    input: ValueId,
    kind: Kind,
}

enum Kind {
    /// A Conv.
    Conv {
        /// `[M, C/g, k…]`, row-major.
        w: Vec<f64>,
        shape: Vec<usize>,
        bias: Option<Vec<f64>>,
        pads: Vec<usize>,
        strides: Vec<usize>,
        group: usize,
        epilogue: Option<mcc_ir::op::Activation>,
    },
    /// y[c] = scale[c]·x[c] + shift[c] (identity or BatchNormalization).
    Diagonal { scale: Vec<f64>, shift: Vec<f64> },
}

fn only_read_once(graph: &Graph, v: ValueId) -> bool {
    graph.users(v).len() == 1 && !graph.outputs().contains(&v)
}

fn f64s(graph: &Graph, v: Option<ValueId>) -> Option<Vec<f64>> {
    Some(
        graph
            .const_data(v?)?
            .as_f32()?
            .iter()
            .map(|&x| f64::from(x))
            .collect(),
    )
}

/// The branch that produces `v`; `shared` is the input the other branches read, when known
/// (needed to recognise the identity branch).
fn branch(graph: &Graph, v: ValueId, shared: Option<ValueId>) -> Result<Branch, Skip> {
    let Some(p) = graph.producer(v) else {
        return match shared {
            Some(x) if x == v => identity(graph, v),
            _ => Err(leave(
                Reason::UnsupportedOp,
                format!("`{}` is not a branch's output", graph.value(v).name),
            )),
        };
    };
    if shared == Some(v) {
        return identity(graph, v);
    }
    let n = graph.node(p).or_bug("no producer")?;
    let input = n
        .inputs
        .first()
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "a branch has no input")?;
    if !only_read_once(graph, v) {
        return Err(leave(
            Reason::SharedOutput,
            format!("`{}`'s output is also read elsewhere", n.name),
        ));
    }
    let kind = match &n.op {
        Op::Conv(c) => {
            if c.dilations.iter().any(|&d| d != 1) || !matches!(c.auto_pad, AutoPad::NotSet) {
                return Err(leave(
                    Reason::UnsupportedAttribute,
                    format!("`{}` uses dilation or auto_pad", n.name),
                ));
            }
            let wv = n.inputs.get(1).copied().flatten();
            let shape = wv
                .and_then(|w| graph.const_data(w))
                .map(|t| t.shape().to_vec())
                .ok_or_else(|| {
                    leave(
                        Reason::NotConstant,
                        format!("`{}`'s weights are not a constant", n.name),
                    )
                })?;
            let w = f64s(graph, wv).ok_or_else(|| {
                leave(
                    Reason::NotConstant,
                    format!("`{}`'s weights are not f32", n.name),
                )
            })?;
            let nd = shape.len().saturating_sub(2);
            let bias = match n.inputs.get(2).copied().flatten() {
                None => None,
                Some(b) => {
                    let not_f32 = |reason| {
                        leave(
                            reason,
                            format!("`{}`'s bias is not an f32 constant", n.name),
                        )
                    };
                    let b = f64s(graph, Some(b)).ok_or_else(|| not_f32(Reason::NotConstant))?;
                    if shape.first() != Some(&b.len()) {
                        return Err(not_f32(Reason::ShapeMismatch));
                    }
                    Some(b)
                }
            };
            let nat = |v: &[i64], default: usize| -> Vec<usize> {
                (0..nd)
                    .map(|d| v.get(d).map_or(default, |&x| x.max(0) as usize))
                    .collect()
            };
            Kind::Conv {
                w,
                bias,
                pads: nat(&c.pads, 0),
                strides: nat(&c.strides, 1),
                group: c.group.max(1) as usize,
                epilogue: n.op.epilogue().map_err(bug)?,
                shape,
            }
        }
        Op::BatchNormalization(b) => {
            let stat = |slot| f64s(graph, n.inputs.get(slot).copied().flatten());
            let (Some(s), Some(bias), Some(mean), Some(var)) = (stat(1), stat(2), stat(3), stat(4))
            else {
                return Err(leave(
                    Reason::NotConstant,
                    format!("`{}`'s statistics are not f32 constants", n.name),
                ));
            };
            if [&bias, &mean, &var].iter().any(|v| v.len() != s.len()) {
                return Err(leave(
                    Reason::ShapeMismatch,
                    format!("`{}`'s statistics differ in length", n.name),
                ));
            }
            let eps = f64::from(b.epsilon);
            let scale: Vec<f64> = s
                .iter()
                .zip(&var)
                .map(|(s, v)| s / (v + eps).sqrt())
                .collect();
            let shift = (0..scale.len())
                .map(|c| bias[c] - scale[c] * mean[c])
                .collect();
            Kind::Diagonal { scale, shift }
        }
        other => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!("`{}` is {}, not a Conv", n.name, a_or_an(other.name())),
            ));
        }
    };
    Ok(Branch {
        node: Some(p),
        input,
        kind,
    })
}

fn identity(graph: &Graph, x: ValueId) -> Result<Branch, Skip> {
    let c = graph
        .value(x)
        .ty
        .shape
        .as_ref()
        .and_then(|s| s.get(1))
        .and_then(mcc_ir::Dim::fixed)
        .or_leave(
            Reason::UnknownShape,
            "the shared input's channel count is not known",
        )?;
    Ok(Branch {
        node: None,
        input: x,
        kind: Kind::Diagonal {
            scale: vec![1.0; c],
            shift: vec![0.0; c],
        },
    })
}

/// A branch as a plain convolution, once the group and rank are known.
struct ConvLike {
    /// `[M, C/g, k…]`.
    shape: Vec<usize>,
    w: Vec<f64>,
    bias: Option<Vec<f64>>,
    pads: Vec<usize>,
}

/// The merged layer's geometry.
struct Layout {
    kernel: Vec<usize>,
    pads_begin: Vec<usize>,
    pads_end: Vec<usize>,
    strides: Vec<usize>,
    group: usize,
}

fn as_conv(b: &Branch, group: usize, nd: usize) -> Result<ConvLike, Skip> {
    match &b.kind {
        Kind::Conv {
            w,
            shape,
            bias,
            pads,
            ..
        } => Ok(ConvLike {
            shape: shape.clone(),
            w: w.clone(),
            bias: bias.clone(),
            pads: pads.clone(),
        }),
        Kind::Diagonal { scale, shift } => {
            let m = scale.len();
            if m % group != 0 {
                return Err(leave(
                    Reason::ShapeMismatch,
                    "the channels do not divide into the groups",
                ));
            }
            let cg = m / group;
            let mut w = vec![0.0; m * cg];
            for (c, &s) in scale.iter().enumerate() {
                w[c * cg + c % cg] = s;
            }
            let mut shape = vec![m, cg];
            shape.extend(std::iter::repeat_n(1, nd));
            Ok(ConvLike {
                shape,
                w,
                bias: shift.iter().any(|&s| s != 0.0).then(|| shift.clone()),
                pads: vec![0; nd],
            })
        }
    }
}

/// Checks that the branches fit one Conv and returns its geometry and the branches as convs.
fn layout(
    graph: &Graph,
    branches: &[Branch],
    out: ValueId,
    concat: bool,
    pad_kernels: bool,
) -> Result<(Layout, Vec<ConvLike>), Skip> {
    let convs: Vec<&Branch> = branches
        .iter()
        .filter(|b| matches!(b.kind, Kind::Conv { .. }))
        .collect();
    let Some(Branch {
        kind:
            Kind::Conv {
                strides,
                group,
                epilogue,
                shape,
                ..
            },
        ..
    }) = convs.first()
    else {
        return Err(leave(Reason::UnsupportedOp, "none of its inputs is a Conv"));
    };
    for b in &convs {
        if let Kind::Conv {
            strides: s,
            group: g,
            epilogue: e,
            shape: sh,
            ..
        } = &b.kind
        {
            if s != strides {
                return Err(leave(
                    Reason::UnsupportedAttribute,
                    "the branches have different strides",
                ));
            }
            if g != group || (concat && *g != 1) {
                return Err(leave(
                    Reason::UnsupportedAttribute,
                    "the branches are grouped (differently)",
                ));
            }
            if e != epilogue || (!concat && e.is_some()) {
                return Err(leave(
                    Reason::HasActivation,
                    if concat {
                        "the branches end in different activations"
                    } else {
                        "a branch ends in an activation, and activations do not add up"
                    },
                ));
            }
            if sh.len() != shape.len() {
                return Err(leave(
                    Reason::ShapeMismatch,
                    "the branches' kernels differ in rank",
                ));
            }
        }
    }
    let nd = shape.len() - 2;
    let x = branches[0].input;
    let (Some(h), Some(o)) = (spatial_dims(graph, x), spatial_dims(graph, out)) else {
        return Err(leave(
            Reason::UnknownShape,
            "the spatial sizes are not known",
        ));
    };
    if h.len() != nd || o.len() != nd {
        return Err(leave(
            Reason::ShapeMismatch,
            "the branches and their input disagree on the spatial rank",
        ));
    }
    let parts: Vec<ConvLike> = branches
        .iter()
        .map(|b| as_conv(b, *group, nd))
        .collect::<Result<_, _>>()?;
    let (m, cg) = (parts[0].shape[0], parts[0].shape[1]);
    if parts
        .iter()
        .any(|p| p.shape[1] != cg || (!concat && p.shape[0] != m))
    {
        return Err(leave(
            Reason::ShapeMismatch,
            "the branches' channel counts do not line up",
        ));
    }
    let kernel: Vec<usize> = (0..nd)
        .map(|d| parts.iter().map(|p| p.shape[2 + d]).max().unwrap_or(1))
        .collect();
    if concat && !pad_kernels && parts.iter().any(|p| p.shape[2..] != kernel[..]) {
        return Err(leave(
            Reason::MoreWork,
            "the branches' kernels differ in size; `kernels: pad` merges them by zero-padding, \
             at the cost of extra multiply-accumulates",
        ));
    }
    let pads_begin: Vec<usize> = (0..nd)
        .map(|d| parts.iter().map(|p| p.pads[d]).max().unwrap_or(0))
        .collect();
    for p in &parts {
        for d in 0..nd {
            if pads_begin[d] - p.pads[d] + p.shape[2 + d] > kernel[d] {
                return Err(leave(
                    Reason::ShapeMismatch,
                    "no single padding lines the branches' kernels up",
                ));
            }
        }
    }
    let mut pads_end = vec![0; nd];
    for d in 0..nd {
        let (s, k, pb) = (strides[d].max(1), kernel[d], pads_begin[d]);
        let need = (o[d].saturating_sub(1) * s + k) as i64 - (h[d] + pb) as i64;
        pads_end[d] = need.max(0) as usize;
        let count = (h[d] + pb + pads_end[d]).checked_sub(k).map(|n| n / s + 1);
        if count != Some(o[d]) {
            return Err(leave(
                Reason::ShapeMismatch,
                "no single padding gives the branches' output size",
            ));
        }
    }
    Ok((
        Layout {
            kernel,
            pads_begin,
            pads_end,
            strides: strides.clone(),
            group: *group,
        },
        parts,
    ))
}

/// `part`'s kernel placed in a `[M, C/g, K…]` block.
fn placed(part: &ConvLike, l: &Layout) -> Vec<f64> {
    let nd = l.kernel.len();
    let k_src = &part.shape[2..];
    let per_src: usize = k_src.iter().product();
    let per: usize = l.kernel.iter().product();
    let planes = part.shape[0] * part.shape[1];
    let mut out = vec![0.0; planes * per];
    let mut idx = vec![0; nd];
    for plane in 0..planes {
        for f in 0..per_src {
            mcc_ir::geometry::unravel(f, k_src, &mut idx);
            let t = (0..nd).fold(0, |t, d| {
                t * l.kernel[d] + idx[d] + l.pads_begin[d] - part.pads[d]
            });
            out[plane * per + t] = part.w[plane * per_src + f];
        }
    }
    out
}

/// The merged weights and bias.
fn combine(parts: &[ConvLike], l: &Layout, concat: bool) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let per: usize = l.kernel.iter().product();
    let cg = parts.first().map_or(0, |p| p.shape[1]);
    let ms: Vec<usize> = parts.iter().map(|p| p.shape[0]).collect();
    let m: usize = if concat {
        ms.iter().sum()
    } else {
        ms.first().copied().unwrap_or(0)
    };
    let (mut w, mut b) = (vec![0.0; m * cg * per], vec![0.0; m]);
    let mut first = 0;
    for p in parts {
        let block = placed(p, l);
        let at = if concat { first * cg * per } else { 0 };
        for (o, v) in w[at..at + block.len()].iter_mut().zip(&block) {
            *o += v;
        }
        if let Some(pb) = &p.bias {
            let at = if concat { first } else { 0 };
            for (o, v) in b[at..at + pb.len()].iter_mut().zip(pb) {
                *o += v;
            }
        }
        first += p.shape[0];
    }
    let mut shape = vec![m, cg];
    shape.extend(&l.kernel);
    (shape, w, b)
}

/// Rewrites the first Conv branch into the merged Conv and returns it.
fn rewrite(
    graph: &mut Graph,
    branches: &[Branch],
    parts: &[ConvLike],
    l: &Layout,
    concat: bool,
) -> Result<NodeId, String> {
    let keep = branches
        .iter()
        .find(|b| matches!(b.kind, Kind::Conv { .. }))
        .and_then(|b| b.node)
        .ok_or("no Conv branch")?;
    let (shape, w, b) = combine(parts, l, concat);
    let name = graph.node(keep).map(|n| n.name.clone()).unwrap_or_default();
    let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let wt = Tensor::from_vec(&shape, to_f32(&w)).map_err(|e| e.to_string())?;
    store_const(graph, keep, 1, &format!("{name}.weight"), wt).map_err(|e| e.to_string())?;
    if parts.iter().any(|p| p.bias.is_some()) {
        let bt = Tensor::from_vec(&[shape[0]], to_f32(&b)).map_err(|e| e.to_string())?;
        store_const(graph, keep, 2, &format!("{name}.bias"), bt).map_err(|e| e.to_string())?;
    }
    let n = graph.node_mut(keep).ok_or("the Conv vanished")?;
    let Op::Conv(c) = &mut n.op else {
        return Err("the kept branch is not a Conv".into());
    };
    let i64s = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
    // Write attributes only where they say something (as importers leave them).
    if !c.kernel_shape.is_empty() {
        c.kernel_shape = i64s(&l.kernel);
    }
    let mut pads = i64s(&l.pads_begin);
    pads.extend(i64s(&l.pads_end));
    c.pads = if c.pads.is_empty() && pads.iter().all(|&p| p == 0) {
        vec![]
    } else {
        pads
    };
    if !c.strides.is_empty() {
        c.strides = i64s(&l.strides);
    }
    c.group = l.group as i64;
    c.dilations.clear();
    Ok(keep)
}

/// A join found mergeable.
struct Found {
    branches: Vec<Branch>,
    parts: Vec<ConvLike>,
    layout: Layout,
    concat: bool,
}

/// Whether the join's branches can be merged, and how; reads the graph only.
fn check(graph: &Graph, join: NodeId, pad_kernels: bool) -> Result<Found, Skip> {
    let n = graph.node(join).or_bug("no such layer")?;
    let out = n.outputs[0];
    let operands: Vec<ValueId> = n
        .inputs
        .iter()
        .copied()
        .collect::<Option<_>>()
        .or_leave(Reason::MissingOperand, "it lacks an operand")?;
    let concat = match &n.op {
        Op::Concat(_) => true,
        Op::Add(_) | Op::Sum(_) => false,
        other => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!("it is {}, not a Concat, Add or Sum", a_or_an(other.name())),
            ));
        }
    };
    // The shared input: one that a Conv operand reads and at least one more operand is a
    // branch of. Joins of different tensors (residual connections, DenseNet's and
    // Inception's concatenations) are not this pattern.
    let reads = |v: ValueId| -> Option<(ValueId, bool)> {
        let p = graph.node(graph.producer(v)?)?;
        let input = p.inputs.first().copied().flatten()?;
        match &p.op {
            Op::Conv(_) => Some((input, true)),
            Op::BatchNormalization(_) if !concat => Some((input, false)),
            _ => None,
        }
    };
    let branches_of = |x: ValueId| {
        operands
            .iter()
            .filter(|&&v| reads(v).is_some_and(|(i, _)| i == x) || (!concat && v == x))
            .count()
    };
    let shared = operands
        .iter()
        .filter_map(|&v| reads(v).filter(|&(_, conv)| conv).map(|(i, _)| i))
        .find(|&x| branches_of(x) >= 2)
        .ok_or(Skip::NotACandidate)?;
    if concat {
        let rank = graph.value(out).ty.shape.as_ref().map_or(0, Vec::len) as i64;
        let Op::Concat(c) = &n.op else {
            return Err(bug("a Concat that is not one"));
        };
        if c.axis != 1 && c.axis != 1 - rank {
            return Err(leave(
                Reason::UnsupportedAttribute,
                "it does not join along the channel axis",
            ));
        }
    } else {
        let ty = &graph.value(out).ty;
        if operands
            .iter()
            .any(|&v| graph.value(v).ty.shape != ty.shape)
        {
            return Err(leave(Reason::ShapeMismatch, "its operands broadcast"));
        }
    }
    if operands.iter().filter(|&&v| v == shared).count() > 1 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it reads the shared input more than once",
        ));
    }
    let branches: Vec<Branch> = operands
        .iter()
        .map(|&v| {
            let b = branch(graph, v, (!concat).then_some(shared))?;
            if b.input != shared {
                return Err(leave(
                    Reason::UnsupportedOp,
                    format!(
                        "`{}` does not read the same tensor as the other branches",
                        graph.value(v).name
                    ),
                ));
            }
            if concat && !matches!(b.kind, Kind::Conv { .. }) {
                return Err(leave(
                    Reason::UnsupportedOp,
                    format!("`{}` is not a Conv's output", graph.value(v).name),
                ));
            }
            Ok(b)
        })
        .collect::<Result<_, Skip>>()?;
    let (layout, parts) = layout(graph, &branches, out, concat, pad_kernels)?;
    Ok(Found {
        branches,
        parts,
        layout,
        concat,
    })
}

/// Merges a checked join; returns the removed layers and what they merged into.
fn apply(
    graph: &mut Graph,
    join: NodeId,
    f: &Found,
    step: StepId,
) -> Result<Vec<(String, String)>, String> {
    let out = graph
        .node(join)
        .map(|n| n.outputs[0])
        .ok_or("the join vanished")?;
    let keep = rewrite(graph, &f.branches, &f.parts, &f.layout, f.concat)?;
    let keep_out = graph.node(keep).map(|k| k.outputs[0]).ok_or("vanished")?;
    let ty = graph.value(out).ty.clone();
    graph.value_mut(keep_out).ty = ty;
    graph.replace_all_uses(out, keep_out);
    let mut removed = vec![];
    let keep_name = graph.node(keep).map(|k| k.name.clone()).unwrap_or_default();
    let remove = |graph: &mut Graph, id: NodeId, removed: &mut Vec<(String, String)>| {
        let name = graph.node(id).map(|x| x.name.clone()).unwrap_or_default();
        graph.remove_node(id).map_err(|e| e.to_string())?;
        removed.push((name, keep_name.clone()));
        Ok::<_, String>(())
    };
    let join_name = graph.node(join).map(|x| x.name.clone()).unwrap_or_default();
    graph.remove_node(join).map_err(|e| e.to_string())?;
    for b in &f.branches {
        match b.node {
            Some(id) if id != keep => remove(graph, id, &mut removed)?,
            _ => {}
        }
    }
    removed.push((join_name, keep_name.clone()));
    if let Some(k) = graph.node_mut(keep) {
        k.origin = Origin::Step(step);
    }
    Ok(removed)
}

/// Merges the branches of each named Concat, Add or Sum it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    pad_kernels: bool,
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        let Some(join) = graph.find_node(name) else {
            // An earlier step merged it away.
            continue;
        };
        match check(graph, join, pad_kernels) {
            Ok(found) => {
                let removed =
                    apply(graph, join, &found, step).map_err(|message| PassError::Node {
                        pass: "merge-branches",
                        node: name.clone(),
                        op: "",
                        message,
                    })?;
                merged.extend(removed.into_iter().map(|(removed, into)| Merged {
                    removed,
                    into,
                    stands_for: name.clone(),
                }));
            }
            Err(skip) => left.extend(skip.report(name, "merge-branches")?),
        }
    }
    graph.remove_unused_consts();
    Ok((merged, left))
}

/// `merge branches`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "branches",
    summary: "merge parallel Convs of one tensor that meet in a Concat, Add or Sum into one Conv",
    params: &[p(
        "kernels",
        ParamType::Choice(&["same", "pad"]),
        Default::Word("same"),
        "Concat branches: `same` merges kernels of one size only; `pad` zero-pads smaller kernels to the largest (exact, but computes the zeros)",
    )],
    applies: Applies::Ops(&["Concat", "Add", "Sum"]),
    status: Status::Ready(&Branches),
    check_params: no_param_check,
    sweep: None,
};

/// `merge branches` as a technique: its `kernels` parameter says whether kernels of different
/// sizes are padded to one.
pub struct Branches;

impl Technique for Branches {
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let pad = matches!(step.param("kernels"), Some(ParamValue::Word(w)) if w == "pad");
        let (merged, left) = run(graph, &step.nodes, pad, id)?;
        Ok(crate::merge::outcome(merged, left))
    }
}
