//! Shape and type inference: the output types of every operator from its operand types
//! (and the values of constant shape-like operands).
//!
//! Symbolic dims flow through where the arithmetic allows (a batch `N` survives Conv,
//! Flatten and Gemm); where it does not, the result is [`Dim::Unknown`], never a guess.
//! Size arithmetic is shared with the evaluator ([`crate::geometry`] and the `*_shape`
//! helpers), so inference and evaluation agree by construction.
//!
//! [`infer`] is the table from operator to rule: elementwise and reduction rules are here,
//! layers in `nn.rs`, shape manipulation in `array.rs` (as in the evaluator).

mod array;
mod known;
mod nn;

pub use known::{Known, MAX_ELEMENTS, MAX_VISITS, known_value};

use crate::eval::OpError;
use crate::eval::array_shapes::slice_indices;
use crate::eval::array_shapes::{
    reshape_target, shape_range, squeeze_shape, transpose_perm, unsqueeze_shape,
};
use crate::geometry::window;
use crate::{DType, Dim, Graph, Node, Op, Tensor, TensorType};

/// Inference failed: the operands cannot be valid for the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InferError(pub String);

impl From<OpError> for InferError {
    fn from(e: OpError) -> Self {
        InferError(e.to_string())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, InferError> {
    Err(InferError(msg.into()))
}

/// One output of this type.
fn one(t: TensorType) -> Result<Vec<TensorType>, InferError> {
    Ok(vec![t])
}

/// One operand as inference sees it: its type and, for constants, its data.
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    /// The operand's type.
    pub ty: &'a TensorType,
    /// Its data when it is a constant.
    pub value: Option<&'a Tensor>,
    /// Its elements when it is not a constant but a small integer tensor whose value
    /// follows from constants and declared shapes ([`known_value`]).
    pub known: Option<&'a [Known]>,
}

impl Arg<'_> {
    /// The elements as known: the constant's, else the inferred ones.
    fn elements(&self) -> Option<Vec<Known>> {
        match (self.value, self.known) {
            (Some(t), _) => Some(t.to_i64_vec().into_iter().map(Known::Int).collect()),
            (None, Some(k)) => Some(k.to_vec()),
            (None, None) => None,
        }
    }
}

/// Output types of `node` in `graph`.
pub fn infer_node(graph: &Graph, node: &Node) -> Result<Vec<TensorType>, InferError> {
    let known: Vec<Option<Vec<Known>>> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(slot, v)| {
            v.filter(|&v| node.op.shape_operands().contains(&slot) && graph.const_data(v).is_none())
                .and_then(|v| known_value(graph, v))
        })
        .collect();
    let args: Vec<Option<Arg<'_>>> = node
        .inputs
        .iter()
        .zip(&known)
        .map(|(v, k)| {
            v.map(|v| Arg {
                ty: &graph.value(v).ty,
                value: graph.const_data(v),
                known: k.as_deref(),
            })
        })
        .collect();
    infer(&node.op, &args, node.outputs.len())
}

fn req<'a>(args: &[Option<Arg<'a>>], i: usize) -> Result<Arg<'a>, InferError> {
    args.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| InferError(format!("operand {i} is required")))
}

fn opt<'a>(args: &[Option<Arg<'a>>], i: usize) -> Option<Arg<'a>> {
    args.get(i).copied().flatten()
}

/// Broadcast of two dims (the operands are assumed valid unless two sizes clash).
fn bcast_dim(a: &Dim, b: &Dim) -> Result<Dim, InferError> {
    Ok(match (a, b) {
        (x, y) if x == y => x.clone(),
        (Dim::Fixed(1), y) => y.clone(),
        (x, Dim::Fixed(1)) => x.clone(),
        (Dim::Fixed(x), Dim::Fixed(y)) => return err(format!("dims {x} and {y} do not broadcast")),
        (Dim::Fixed(x), _) | (_, Dim::Fixed(x)) => Dim::Fixed(*x),
        _ => Dim::Unknown,
    })
}

fn bcast(a: &TensorType, b: &TensorType) -> Result<Option<Vec<Dim>>, InferError> {
    let (Some(x), Some(y)) = (&a.shape, &b.shape) else {
        return Ok(None);
    };
    let n = x.len().max(y.len());
    let one = Dim::Fixed(1);
    (0..n)
        .map(|i| {
            let p = if i + x.len() >= n {
                &x[i + x.len() - n]
            } else {
                &one
            };
            let q = if i + y.len() >= n {
                &y[i + y.len() - n]
            } else {
                &one
            };
            bcast_dim(p, q)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The product of dims: fixed when all are, the symbol when one symbol times 1.
fn product(dims: &[Dim]) -> Dim {
    let mut fixed = 1usize;
    let mut syms = vec![];
    for d in dims {
        match d {
            Dim::Fixed(n) => match fixed.checked_mul(*n) {
                Some(v) => fixed = v,
                None => return Dim::Unknown,
            },
            Dim::Sym(s) => syms.push(s),
            Dim::Unknown => return Dim::Unknown,
        }
    }
    match syms.as_slice() {
        [] => Dim::Fixed(fixed),
        [s] if fixed == 1 => Dim::Sym((*s).clone()),
        _ => Dim::Unknown,
    }
}

fn same_as(a: Arg<'_>) -> TensorType {
    a.ty.clone()
}

fn fixed(dtype: DType, dims: Vec<usize>) -> TensorType {
    TensorType {
        dtype,
        shape: Some(dims.into_iter().map(Dim::Fixed).collect()),
    }
}

fn consts_i64(a: Option<Arg<'_>>) -> Option<Vec<i64>> {
    a.and_then(|a| a.value).map(Tensor::to_i64_vec)
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize, InferError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

fn window_out(
    x: &TensorType,
    m: Dim,
    kernel: &[usize],
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    auto_pad: crate::AutoPad,
    ceil: bool,
) -> Result<TensorType, InferError> {
    let Some(xs) = &x.shape else {
        return Ok(TensorType::unknown(x.dtype));
    };
    if xs.len() < 3 {
        return err(format!(
            "expected an input of rank ≥ 3 (N, C, spatial…), got {x}"
        ));
    }
    if kernel.len() != xs.len() - 2 {
        return err(format!(
            "a {}-d kernel does not fit input {x}",
            kernel.len()
        ));
    }
    let mut out = vec![xs[0].clone(), m];
    match xs[2..]
        .iter()
        .map(Dim::fixed)
        .collect::<Option<Vec<usize>>>()
    {
        Some(sp) => {
            let w = window(&sp, kernel, strides, dilations, pads, auto_pad, ceil)
                .map_err(|e| InferError(e.to_string()))?;
            out.extend(w.out.into_iter().map(Dim::Fixed));
        }
        None => out.extend(std::iter::repeat_n(Dim::Unknown, xs.len() - 2)),
    }
    Ok(TensorType {
        dtype: x.dtype,
        shape: Some(out),
    })
}

fn usz(v: &[i64]) -> Vec<usize> {
    v.iter().map(|&x| x.max(0) as usize).collect()
}

/// Output types of `op` applied to `args`, for a node with `n_out` outputs.
pub fn infer(
    op: &Op,
    args: &[Option<Arg<'_>>],
    n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
    match op {
        // Elementwise, shape-preserving.
        Op::Relu(_)
        | Op::LeakyRelu(_)
        | Op::PRelu(_)
        | Op::Sigmoid(_)
        | Op::HardSigmoid(_)
        | Op::HardSwish(_)
        | Op::Tanh(_)
        | Op::Elu(_)
        | Op::Selu(_)
        | Op::Softplus(_)
        | Op::Gelu(_)
        | Op::Clip(_)
        | Op::Abs(_)
        | Op::Neg(_)
        | Op::Round(_)
        | Op::Exp(_)
        | Op::Log(_)
        | Op::Sqrt(_)
        | Op::Erf(_)
        | Op::Identity(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_) => one(same_as(x?)),
        Op::Lrn(_) => nn::lrn(args, n_out),
        Op::BatchNormalization(_) => nn::batch_normalization(args, n_out),
        Op::Dropout(_) => nn::dropout(args, n_out),
        Op::LayerNormalization(l) => nn::layer_normalization(l, args, n_out),
        Op::Add(_)
        | Op::Sub(_)
        | Op::Mul(_)
        | Op::Div(_)
        | Op::Pow(_)
        | Op::Equal(_)
        | Op::Sum(_)
        | Op::Max(_)
        | Op::Min(_)
        | Op::Mean(_) => {
            let first = x?;
            // Binary operators take exactly two operands; the variadic ones at least one.
            let variadic = matches!(op, Op::Sum(_) | Op::Max(_) | Op::Min(_) | Op::Mean(_));
            if !variadic && args.len() != 2 {
                return err(format!(
                    "{} takes 2 operands, not {}",
                    op.name(),
                    args.len()
                ));
            }
            let mut shape = first.ty.shape.clone();
            for i in 1..args.len() {
                let t = TensorType {
                    dtype: first.ty.dtype,
                    shape,
                };
                shape = bcast(&t, req(args, i)?.ty)?;
            }
            let dtype = if matches!(op, Op::Equal(_)) {
                DType::Bool
            } else {
                first.ty.dtype
            };
            one(TensorType { dtype, shape })
        }
        Op::Where(_) => {
            let (c, a, b) = (x?, req(args, 1)?, req(args, 2)?);
            let s = bcast(c.ty, a.ty)?;
            let s = bcast(
                &TensorType {
                    dtype: a.ty.dtype,
                    shape: s,
                },
                b.ty,
            )?;
            one(TensorType {
                dtype: a.ty.dtype,
                shape: s,
            })
        }
        Op::Conv(c) => nn::conv(c, args, n_out),
        Op::ConvTranspose(c) => nn::conv_transpose(c, args, n_out),
        Op::InstanceNormalization(_) => nn::instance_normalization(args, n_out),
        Op::QuantizeLinear(q) => {
            let x = x?;
            let dtype = match (opt(args, 2), q.output_dtype) {
                (Some(z), _) => z.ty.dtype,
                (None, 3) => DType::I8,
                (None, _) => DType::U8,
            };
            if !matches!(dtype, DType::U8 | DType::I8) {
                return err(format!("QuantizeLinear to {dtype} (u8 and i8 only)"));
            }
            one(TensorType {
                dtype,
                shape: x.ty.shape.clone(),
            })
        }
        Op::DequantizeLinear(_) => {
            let x = x?;
            one(TensorType {
                dtype: DType::F32,
                shape: x.ty.shape.clone(),
            })
        }
        Op::QLinearConv(q) => {
            let conv = crate::op::Conv {
                auto_pad: q.auto_pad,
                dilations: q.dilations.clone(),
                group: q.group,
                kernel_shape: q.kernel_shape.clone(),
                pads: q.pads.clone(),
                strides: q.strides.clone(),
                ..Default::default()
            };
            let inner = [Some(x?), Some(req(args, 3)?), opt(args, 8)];
            let mut t = nn::conv(&conv, &inner, 1)?;
            t[0].dtype = req(args, 7)?.ty.dtype;
            Ok(t)
        }
        Op::DynamicQuantMatMul(_) => {
            let inner = [Some(x?), Some(req(args, 1)?)];
            let mut t = nn::matmul(&inner, 1)?;
            t[0].dtype = DType::F32;
            Ok(t)
        }
        Op::QLinearMatMul(_) => {
            let inner = [Some(x?), Some(req(args, 3)?)];
            let mut t = nn::matmul(&inner, 1)?;
            t[0].dtype = req(args, 7)?.ty.dtype;
            Ok(t)
        }
        Op::MaxPool(p) => nn::max_pool(p, args, n_out),
        Op::AveragePool(p) => nn::average_pool(p, args, n_out),
        Op::GlobalAveragePool(_) | Op::GlobalMaxPool(_) => nn::global_pool(args, n_out),
        Op::Gemm(g) => nn::gemm(g, args, n_out),
        Op::MatMul(_) => nn::matmul(args, n_out),
        Op::ReduceMax(r) => reduce(
            x?,
            opt(args, 1),
            r.keepdims != 0,
            r.noop_with_empty_axes != 0,
        ),
        Op::ReduceMin(r) => reduce(
            x?,
            opt(args, 1),
            r.keepdims != 0,
            r.noop_with_empty_axes != 0,
        ),
        Op::ReduceSum(r) => reduce(
            x?,
            opt(args, 1),
            r.keepdims != 0,
            r.noop_with_empty_axes != 0,
        ),
        Op::ReduceMean(r) => reduce(
            x?,
            opt(args, 1),
            r.keepdims != 0,
            r.noop_with_empty_axes != 0,
        ),
        Op::Reshape(r) => array::reshape(r, args, n_out),
        Op::Flatten(f) => array::flatten(f, args, n_out),
        Op::Transpose(t) => array::transpose(t, args, n_out),
        Op::Unsqueeze(_) => array::unsqueeze(args, n_out),
        Op::Squeeze(_) => array::squeeze(args, n_out),
        Op::Concat(c) => array::concat(c, args, n_out),
        Op::Split(sp) => array::split(sp, args, n_out),
        Op::Shape(s) => array::shape(s, args, n_out),
        Op::Gather(g) => array::gather(g, args, n_out),
        Op::Slice(_) => array::slice(args, n_out),
        Op::ConstantOfShape(c) => array::constant_of_shape(c, args, n_out),
        Op::Cast(c) => one(TensorType {
            dtype: c.to,
            shape: x?.ty.shape.clone(),
        }),
        Op::Expand(_) => array::expand(args, n_out),
        Op::Tile(_) => array::tile(args, n_out),
        Op::Pad(_) => array::pad(args, n_out),
        Op::Resize(r) => array::resize(r, args, n_out),
        Op::DepthToSpace(d) => array::depth_space(d.blocksize, true, args, n_out),
        Op::SpaceToDepth(d) => array::depth_space(d.blocksize, false, args, n_out),
        Op::Range(_) => array::range(op, args, n_out),
    }
}

fn reduce(
    x: Arg<'_>,
    axes: Option<Arg<'_>>,
    keepdims: bool,
    noop: bool,
) -> Result<Vec<TensorType>, InferError> {
    let Some(s) = &x.ty.shape else {
        return Ok(vec![TensorType::unknown(x.ty.dtype)]);
    };
    let axes = match axes {
        None => vec![],
        Some(a) => match a.value {
            Some(v) => v.to_i64_vec(),
            None => {
                return Ok(vec![TensorType {
                    dtype: x.ty.dtype,
                    shape: if keepdims {
                        Some(vec![Dim::Unknown; s.len()])
                    } else {
                        None
                    },
                }]);
            }
        },
    };
    if axes.is_empty() && noop {
        return Ok(vec![x.ty.clone()]);
    }
    let ax: Vec<usize> = if axes.is_empty() {
        (0..s.len()).collect()
    } else {
        axes.iter()
            .map(|&a| norm_axis(a, s.len()))
            .collect::<Result<_, _>>()?
    };
    let mut shape = vec![];
    for (i, d) in s.iter().enumerate() {
        if ax.contains(&i) {
            if keepdims {
                shape.push(Dim::Fixed(1));
            }
        } else {
            shape.push(d.clone());
        }
    }
    Ok(vec![TensorType {
        dtype: x.ty.dtype,
        shape: Some(shape),
    }])
}

/// Reshape over a symbolic input: `0` copies a dim (symbol included); `-1` becomes the
/// one leftover symbol when the fixed sizes cancel, the quotient when no symbol is left.
/// Sizes whose product overflows are an error.
fn symbolic_reshape(
    x: &TensorType,
    target: &[Known],
    allowzero: bool,
) -> Result<Vec<Dim>, InferError> {
    let Some(s) = &x.shape else {
        return Ok(vec![Dim::Unknown; target.len()]);
    };
    let overflow = || InferError("Reshape: the product of the sizes overflows".into());
    let mut out: Vec<Dim> = vec![];
    let mut in_syms: Vec<Dim> = s
        .iter()
        .filter(|d| !matches!(d, Dim::Fixed(_)))
        .cloned()
        .collect();
    let in_fixed = s
        .iter()
        .filter_map(Dim::fixed)
        .try_fold(1usize, usize::checked_mul)
        .ok_or_else(overflow)?;
    let mut t_fixed = 1usize;
    let mut infer_at = None;
    // A target element inference does not know: no `-1` can be worked out.
    let mut blind = false;
    for (i, k) in target.iter().enumerate() {
        let v = match k {
            Known::Int(v) => *v,
            Known::Sym(s) => {
                let d = Dim::Sym(s.clone());
                match in_syms.iter().position(|q| *q == d) {
                    Some(p) => {
                        in_syms.remove(p);
                    }
                    None => blind = true,
                }
                out.push(d);
                continue;
            }
            Known::Unknown => {
                blind = true;
                out.push(Dim::Unknown);
                continue;
            }
        };
        match v {
            -1 => {
                infer_at = Some(i);
                out.push(Dim::Unknown);
            }
            0 if !allowzero => {
                let d = s.get(i).cloned().unwrap_or(Dim::Unknown);
                match &d {
                    Dim::Fixed(n) => t_fixed = t_fixed.checked_mul(*n).ok_or_else(overflow)?,
                    other => {
                        if let Some(p) = in_syms
                            .iter()
                            .position(|q| q == other && *q != Dim::Unknown)
                        {
                            in_syms.remove(p);
                        }
                    }
                }
                out.push(d);
            }
            v => {
                t_fixed = t_fixed
                    .checked_mul(v.max(0) as usize)
                    .ok_or_else(overflow)?;
                out.push(Dim::Fixed(v.max(0) as usize));
            }
        }
    }
    if let Some(i) = infer_at {
        out[i] = match in_syms.as_slice() {
            _ if blind => Dim::Unknown,
            [] if t_fixed != 0 && in_fixed.is_multiple_of(t_fixed) => {
                Dim::Fixed(in_fixed / t_fixed)
            }
            [Dim::Sym(n)] if in_fixed == t_fixed => Dim::Sym(n.clone()),
            _ => Dim::Unknown,
        };
    }
    Ok(out)
}

/// Re-derives the type of every node output, in topological order. On failure, returns the
/// node's name and op with the reason.
pub fn infer_all(graph: &mut Graph) -> Result<(), (String, &'static str, InferError)> {
    let order = graph
        .topo_order()
        .map_err(|e| (String::new(), "", InferError(e.to_string())))?;
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        let types = infer_node(graph, node).map_err(|e| (node.name.clone(), node.op.name(), e))?;
        let outs = node.outputs.clone();
        for (o, t) in outs.into_iter().zip(types) {
            graph.value_mut(o).ty = t;
        }
    }
    Ok(())
}
