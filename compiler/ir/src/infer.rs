//! Shape and type inference: the output types of every operator from its operand types
//! (and the values of constant shape-like operands).
//!
//! Symbolic dims flow through where the arithmetic allows (a batch `N` survives Conv,
//! Flatten and Gemm); where it does not, the result is [`Dim::Unknown`], never a guess.
//! Size arithmetic is shared with the evaluator ([`crate::geometry`] and the `*_shape`
//! helpers), so inference and evaluation agree by construction.

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

/// One operand as inference sees it: its type and, for constants, its data.
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    /// The operand's type.
    pub ty: &'a TensorType,
    /// Its data when it is a constant.
    pub value: Option<&'a Tensor>,
}

/// Output types of `node` in `graph`.
pub fn infer_node(graph: &Graph, node: &Node) -> Result<Vec<TensorType>, InferError> {
    let args: Vec<Option<Arg<'_>>> = node
        .inputs
        .iter()
        .map(|v| {
            v.map(|v| Arg {
                ty: &graph.value(v).ty,
                value: graph.const_data(v),
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
    let one = |t: TensorType| Ok(vec![t]);
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
        | Op::Exp(_)
        | Op::Log(_)
        | Op::Sqrt(_)
        | Op::Erf(_)
        | Op::Identity(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_) => one(same_as(x?)),
        Op::Lrn(_) => {
            let x = x?;
            if x.ty.rank().is_some_and(|r| r < 3) {
                return err(format!(
                    "LRN needs an input of rank ≥ 3 (N, C, spatial…), got {}",
                    x.ty
                ));
            }
            one(same_as(x))
        }
        Op::BatchNormalization(_) => {
            let x = x?;
            // scale, B, mean and var are float vectors over the channels (axis 1).
            let channels =
                x.ty.shape
                    .as_ref()
                    .and_then(|s| s.get(1))
                    .and_then(Dim::fixed);
            for slot in 1..5 {
                let Some(Some(p)) = args.get(slot) else {
                    return err("BatchNormalization needs scale, B, mean and var");
                };
                if !p.ty.dtype.is_float() {
                    return err(format!(
                        "BatchNormalization parameter {slot} is {}, not a float",
                        p.ty.dtype.name()
                    ));
                }
                if let (Some(c), Some(shape)) = (channels, p.ty.shape.as_ref())
                    && (shape.len() != 1 || shape[0].fixed().is_some_and(|n| n != c))
                {
                    return err(format!(
                        "BatchNormalization parameter {slot} is not a vector of the {c} channels"
                    ));
                }
            }
            one(same_as(x))
        }
        Op::Dropout(_) => {
            let t = same_as(x?);
            let mut out = vec![t.clone()];
            if n_out > 1 {
                out.push(TensorType {
                    dtype: DType::Bool,
                    shape: t.shape,
                });
            }
            Ok(out)
        }
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
        Op::Conv(c) => {
            let x = x?;
            let w = req(args, 1)?;
            let Some(ws) = &w.ty.shape else {
                return one(TensorType::unknown(x.ty.dtype));
            };
            if ws.len() < 3 {
                return err(format!("Conv weights must have rank ≥ 3, found {}", w.ty));
            }
            let kernel = if c.kernel_shape.is_empty() {
                match ws[2..].iter().map(Dim::fixed).collect::<Option<Vec<_>>>() {
                    Some(k) => k,
                    None => return one(TensorType::unknown(x.ty.dtype)),
                }
            } else {
                usz(&c.kernel_shape)
            };
            if let (Some(xs), Some(wc)) = (&x.ty.shape, ws[1].fixed())
                && let Some(cin) = xs.get(1).and_then(Dim::fixed)
                && (c.group < 1 || cin != wc * c.group as usize)
            {
                return err(format!(
                    "input has {cin} channels, weights expect {wc} × group {}",
                    c.group
                ));
            }
            // The bias is a vector of the output channels.
            if let Some(b) = opt(args, 2)
                && let (Some(bs), Some(m)) = (&b.ty.shape, ws[0].fixed())
                && (bs.len() != 1 || bs[0].fixed().is_some_and(|n| n != m))
            {
                return err(format!(
                    "Conv bias is {}, not a vector of the {m} output channels",
                    b.ty
                ));
            }
            one(window_out(
                x.ty,
                ws[0].clone(),
                &kernel,
                &c.strides,
                &c.dilations,
                &c.pads,
                c.auto_pad,
                false,
            )?)
        }
        Op::MaxPool(p) => {
            let x = x?;
            let c =
                x.ty.shape
                    .as_ref()
                    .and_then(|s| s.get(1).cloned())
                    .unwrap_or(Dim::Unknown);
            let t = window_out(
                x.ty,
                c,
                &usz(&p.kernel_shape),
                &p.strides,
                &p.dilations,
                &p.pads,
                p.auto_pad,
                p.ceil_mode != 0,
            )?;
            let mut out = vec![t.clone()];
            if n_out > 1 {
                out.push(TensorType {
                    dtype: DType::I64,
                    shape: t.shape,
                });
            }
            Ok(out)
        }
        Op::AveragePool(p) => {
            let x = x?;
            let c =
                x.ty.shape
                    .as_ref()
                    .and_then(|s| s.get(1).cloned())
                    .unwrap_or(Dim::Unknown);
            one(window_out(
                x.ty,
                c,
                &usz(&p.kernel_shape),
                &p.strides,
                &p.dilations,
                &p.pads,
                p.auto_pad,
                p.ceil_mode != 0,
            )?)
        }
        Op::GlobalAveragePool(_) | Op::GlobalMaxPool(_) => {
            let x = x?;
            let shape = x.ty.shape.as_ref().map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Fixed(1) })
                    .collect()
            });
            one(TensorType {
                dtype: x.ty.dtype,
                shape,
            })
        }
        Op::Gemm(g) => {
            let (a, b) = (x?, req(args, 1)?);
            let (Some(sa), Some(sb)) = (&a.ty.shape, &b.ty.shape) else {
                return one(TensorType::unknown(a.ty.dtype));
            };
            if sa.len() != 2 || sb.len() != 2 {
                return err(format!(
                    "Gemm operands must be 2-D, found {} and {}",
                    a.ty, b.ty
                ));
            }
            let (m, ka) = if g.transA != 0 {
                (&sa[1], &sa[0])
            } else {
                (&sa[0], &sa[1])
            };
            let (kb, n) = if g.transB != 0 {
                (&sb[1], &sb[0])
            } else {
                (&sb[0], &sb[1])
            };
            if let (Dim::Fixed(p), Dim::Fixed(q)) = (ka, kb)
                && p != q
            {
                return err(format!("Gemm inner dimensions differ: {p} and {q}"));
            }
            // C broadcasts (one way) to [M, N]: each of its sizes is 1 or the result's.
            if let Some(c) = opt(args, 2)
                && let Some(sc) = &c.ty.shape
            {
                let out = [m, n];
                let fits = sc.len() <= 2
                    && sc
                        .iter()
                        .rev()
                        .zip(out.iter().rev())
                        .all(|(d, o)| match (d, o) {
                            (Dim::Fixed(1), _) => true,
                            (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
                            _ => true,
                        });
                if !fits {
                    return err(format!(
                        "Gemm C is {}, which does not broadcast to the result",
                        c.ty
                    ));
                }
            }
            one(TensorType {
                dtype: a.ty.dtype,
                shape: Some(vec![m.clone(), n.clone()]),
            })
        }
        Op::MatMul(_) => {
            let (a, b) = (x?, req(args, 1)?);
            let (Some(sa), Some(sb)) = (&a.ty.shape, &b.ty.shape) else {
                return one(TensorType::unknown(a.ty.dtype));
            };
            if sa.is_empty() || sb.is_empty() {
                return err("MatMul operands must have rank ≥ 1");
            }
            let (mut sa, mut sb) = (sa.clone(), sb.clone());
            let (a1, b1) = (sa.len() == 1, sb.len() == 1);
            if a1 {
                sa.insert(0, Dim::Fixed(1));
            }
            if b1 {
                sb.push(Dim::Fixed(1));
            }
            let (ra, rb) = (sa.len(), sb.len());
            if let (Dim::Fixed(p), Dim::Fixed(q)) = (&sa[ra - 1], &sb[rb - 2])
                && p != q
            {
                return err(format!("MatMul inner dimensions differ: {p} and {q}"));
            }
            let ba = TensorType {
                dtype: a.ty.dtype,
                shape: Some(sa[..ra - 2].to_vec()),
            };
            let bb = TensorType {
                dtype: a.ty.dtype,
                shape: Some(sb[..rb - 2].to_vec()),
            };
            let mut shape = bcast(&ba, &bb)?.unwrap_or_default();
            if !a1 {
                shape.push(sa[ra - 2].clone());
            }
            if !b1 {
                shape.push(sb[rb - 1].clone());
            }
            one(TensorType {
                dtype: a.ty.dtype,
                shape: Some(shape),
            })
        }
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
        Op::Reshape(r) => {
            let x = x?;
            let s = req(args, 1)?;
            let Some(target) = s.value.map(Tensor::to_i64_vec) else {
                let rank = s.ty.fixed_dims().and_then(|d| d.first().copied());
                return one(TensorType {
                    dtype: x.ty.dtype,
                    shape: rank.map(|r| vec![Dim::Unknown; r]),
                });
            };
            if let Some(dims) = x.ty.fixed_dims() {
                return one(fixed(
                    x.ty.dtype,
                    reshape_target(&dims, &target, r.allowzero != 0)?,
                ));
            }
            let out = symbolic_reshape(x.ty, &target, r.allowzero != 0);
            // With symbolic sizes, the element counts must still agree: the same symbols on
            // both sides, then the same product of the fixed sizes.
            if let Some(input) = &x.ty.shape {
                let split = |dims: &[Dim]| -> Option<(usize, Vec<String>)> {
                    let mut fixed = 1usize;
                    let mut syms = vec![];
                    for d in dims {
                        match d {
                            Dim::Fixed(n) => fixed = fixed.checked_mul(*n)?,
                            Dim::Sym(s) => syms.push(s.clone()),
                            Dim::Unknown => return None,
                        }
                    }
                    syms.sort();
                    Some((fixed, syms))
                };
                if let (Some((a, sa)), Some((b, sb))) = (split(input), split(&out))
                    && sa == sb
                    && a != b
                {
                    return err(format!(
                        "Reshape cannot make {} elements per {} into {b}",
                        a,
                        if sa.is_empty() {
                            "tensor".to_string()
                        } else {
                            sa.join("·")
                        }
                    ));
                }
            }
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(out),
            })
        }
        Op::Flatten(f) => {
            let x = x?;
            let Some(s) = &x.ty.shape else {
                return one(TensorType {
                    dtype: x.ty.dtype,
                    shape: Some(vec![Dim::Unknown; 2]),
                });
            };
            let r = s.len() as i64;
            if f.axis < -r || f.axis > r {
                return err(format!(
                    "Flatten axis {} is out of range for rank {r}",
                    f.axis
                ));
            }
            let ax = if f.axis < 0 { f.axis + r } else { f.axis } as usize;
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(vec![product(&s[..ax]), product(&s[ax..])]),
            })
        }
        Op::Transpose(t) => {
            let x = x?;
            let Some(s) = &x.ty.shape else {
                return one(same_as(x));
            };
            let p = transpose_perm(&t.perm, s.len())?;
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(p.iter().map(|&i| s[i].clone()).collect()),
            })
        }
        Op::Unsqueeze(_) => {
            let x = x?;
            let (Some(s), Some(axes)) = (&x.ty.shape, consts_i64(opt(args, 1))) else {
                return one(TensorType::unknown(x.ty.dtype));
            };
            // Compute positions with placeholder sizes, then put the real dims back.
            let probe = unsqueeze_shape(&vec![2; s.len()], &axes)?;
            let mut it = s.iter();
            let shape = probe
                .iter()
                .map(|&d| {
                    if d == 1 {
                        Dim::Fixed(1)
                    } else {
                        it.next().cloned().unwrap_or(Dim::Unknown)
                    }
                })
                .collect();
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(shape),
            })
        }
        Op::Squeeze(_) => {
            let x = x?;
            let Some(s) = &x.ty.shape else {
                return one(TensorType::unknown(x.ty.dtype));
            };
            match (opt(args, 1), consts_i64(opt(args, 1))) {
                (Some(_), None) => one(TensorType::unknown(x.ty.dtype)),
                (_, axes) => {
                    if axes.is_none() && s.iter().any(|d| d.fixed().is_none()) {
                        return one(TensorType::unknown(x.ty.dtype));
                    }
                    let probe: Vec<usize> = s.iter().map(|d| d.fixed().unwrap_or(1)).collect();
                    let keep = squeeze_shape(&probe, axes.as_deref())?;
                    let _ = keep;
                    let ax: Vec<usize> = match &axes {
                        Some(a) => a
                            .iter()
                            .map(|&v| norm_axis(v, s.len()))
                            .collect::<Result<_, _>>()?,
                        None => (0..s.len()).filter(|&i| s[i] == Dim::Fixed(1)).collect(),
                    };
                    let shape = s
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !ax.contains(i))
                        .map(|(_, d)| d.clone())
                        .collect();
                    one(TensorType {
                        dtype: x.ty.dtype,
                        shape: Some(shape),
                    })
                }
            }
        }
        Op::Concat(c) => {
            let first = x?;
            let Some(s0) = &first.ty.shape else {
                return one(TensorType::unknown(first.ty.dtype));
            };
            let ax = norm_axis(c.axis, s0.len())?;
            let mut shape = s0.clone();
            let mut along = vec![s0[ax].clone()];
            for i in 1..args.len() {
                let t = req(args, i)?;
                let Some(s) = &t.ty.shape else {
                    return one(TensorType::unknown(first.ty.dtype));
                };
                if s.len() != s0.len() {
                    return err(format!("cannot concatenate {} with {}", first.ty, t.ty));
                }
                for d in 0..s.len() {
                    if d != ax
                        && let (Dim::Fixed(p), Dim::Fixed(q)) = (&shape[d], &s[d])
                        && p != q
                    {
                        return err(format!(
                            "cannot concatenate {} with {} along axis {ax}",
                            first.ty, t.ty
                        ));
                    }
                }
                along.push(s[ax].clone());
            }
            shape[ax] = match along.iter().map(Dim::fixed).collect::<Option<Vec<_>>>() {
                Some(v) => v
                    .iter()
                    .try_fold(0usize, |a, &d| a.checked_add(d))
                    .map_or(Dim::Unknown, Dim::Fixed),
                None => Dim::Unknown,
            };
            one(TensorType {
                dtype: first.ty.dtype,
                shape: Some(shape),
            })
        }
        Op::Shape(s) => {
            let x = x?;
            let len = x.ty.rank().map(|r| {
                let (a, b) = shape_range(r, s.start, s.end);
                Dim::Fixed(b - a)
            });
            one(TensorType {
                dtype: DType::I64,
                shape: Some(vec![len.unwrap_or(Dim::Unknown)]),
            })
        }
        Op::Gather(g) => {
            let (x, i) = (x?, req(args, 1)?);
            let (Some(s), Some(is)) = (&x.ty.shape, &i.ty.shape) else {
                return one(TensorType::unknown(x.ty.dtype));
            };
            let ax = norm_axis(g.axis, s.len())?;
            let mut shape = s[..ax].to_vec();
            shape.extend(is.iter().cloned());
            shape.extend(s[ax + 1..].iter().cloned());
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(shape),
            })
        }
        Op::Slice(_) => {
            let x = x?;
            let Some(s) = &x.ty.shape else {
                return one(same_as(x));
            };
            // Exact when the data shape and the slice operands are known constants;
            // otherwise the rank is known, the sizes are not.
            let val = |i: usize| opt(args, i).map(|a| a.value.map(Tensor::to_i64_vec));
            if let (Some(dims), Some(Some(starts)), Some(Some(ends))) =
                (x.ty.fixed_dims(), val(1), val(2))
            {
                let (axes, steps) = (val(3), val(4));
                if !matches!(axes, Some(None)) && !matches!(steps, Some(None)) {
                    let picks = slice_indices(
                        &dims,
                        &starts,
                        &ends,
                        axes.flatten().as_deref(),
                        steps.flatten().as_deref(),
                    )?;
                    let mut out = dims.clone();
                    for (ax, idx) in picks {
                        out[ax] = idx.len();
                    }
                    return one(fixed(x.ty.dtype, out));
                }
            }
            one(TensorType {
                dtype: x.ty.dtype,
                shape: Some(vec![Dim::Unknown; s.len()]),
            })
        }
        Op::ConstantOfShape(c) => {
            let s = x?;
            let dtype = c.value.as_ref().map_or(DType::F32, Tensor::dtype);
            match s.value {
                Some(v) => one(fixed(dtype, usz(&v.to_i64_vec()))),
                None => {
                    let rank = s.ty.fixed_dims().and_then(|d| d.first().copied());
                    one(TensorType {
                        dtype,
                        shape: rank.map(|r| vec![Dim::Unknown; r]),
                    })
                }
            }
        }
        Op::Cast(c) => one(TensorType {
            dtype: c.to,
            shape: x?.ty.shape.clone(),
        }),
        Op::Expand(_) => {
            let x = x?;
            match consts_i64(opt(args, 1)) {
                Some(v) => {
                    let target = fixed(x.ty.dtype, usz(&v));
                    one(TensorType {
                        dtype: x.ty.dtype,
                        shape: bcast(x.ty, &target)?,
                    })
                }
                None => one(TensorType::unknown(x.ty.dtype)),
            }
        }
        Op::Tile(_) => {
            let x = x?;
            match (&x.ty.shape, consts_i64(opt(args, 1))) {
                (Some(s), Some(r)) if r.len() == s.len() => {
                    let shape = s
                        .iter()
                        .zip(&r)
                        .map(|(d, &k)| match d {
                            Dim::Fixed(n) => n
                                .checked_mul(k.max(0) as usize)
                                .map_or(Dim::Unknown, Dim::Fixed),
                            _ if k == 1 => d.clone(),
                            _ => Dim::Unknown,
                        })
                        .collect();
                    one(TensorType {
                        dtype: x.ty.dtype,
                        shape: Some(shape),
                    })
                }
                (Some(_), Some(_)) => err("Tile needs one repeat per axis"),
                _ => one(TensorType::unknown(x.ty.dtype)),
            }
        }
        Op::Pad(_) => {
            let x = x?;
            let Some(s) = &x.ty.shape else {
                return one(same_as(x));
            };
            let pads = consts_i64(opt(args, 1));
            let axes: Option<Vec<usize>> = match opt(args, 3) {
                None => Some((0..s.len()).collect()),
                Some(a) => a
                    .value
                    .map(|v| {
                        v.to_i64_vec()
                            .iter()
                            .map(|&a| norm_axis(a, s.len()))
                            .collect::<Result<_, _>>()
                    })
                    .transpose()?,
            };
            match (pads, axes) {
                (Some(p), Some(ax)) if p.len() == 2 * ax.len() => {
                    let mut shape = s.clone();
                    for (i, &a) in ax.iter().enumerate() {
                        if let Dim::Fixed(n) = shape[a] {
                            shape[a] = Dim::Fixed(
                                (n as i64)
                                    .saturating_add(p[i])
                                    .saturating_add(p[i + ax.len()])
                                    .max(0) as usize,
                            );
                        } else if p[i] != 0 || p[i + ax.len()] != 0 {
                            shape[a] = Dim::Unknown;
                        }
                    }
                    one(TensorType {
                        dtype: x.ty.dtype,
                        shape: Some(shape),
                    })
                }
                (Some(_), Some(_)) => err("Pad needs two pads per axis"),
                _ => one(TensorType {
                    dtype: x.ty.dtype,
                    shape: Some(vec![Dim::Unknown; s.len()]),
                }),
            }
        }
        Op::Range(_) => {
            let s = x?;
            let vals: Option<Vec<&Tensor>> =
                (0..3).map(|i| opt(args, i).and_then(|a| a.value)).collect();
            if let Some(v) = vals {
                let out = crate::eval::eval_op(op, &[Some(v[0]), Some(v[1]), Some(v[2])], 1)?;
                return one(out[0].ty());
            }
            one(TensorType {
                dtype: s.ty.dtype,
                shape: Some(vec![Dim::Unknown]),
            })
        }
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
fn symbolic_reshape(x: &TensorType, target: &[i64], allowzero: bool) -> Vec<Dim> {
    let Some(s) = &x.shape else {
        return vec![Dim::Unknown; target.len()];
    };
    let mut out: Vec<Dim> = vec![];
    let mut in_syms: Vec<Dim> = s
        .iter()
        .filter(|d| !matches!(d, Dim::Fixed(_)))
        .cloned()
        .collect();
    let in_fixed: usize = s.iter().filter_map(Dim::fixed).product();
    let mut t_fixed = 1usize;
    let mut infer_at = None;
    for (i, &v) in target.iter().enumerate() {
        match v {
            -1 => {
                infer_at = Some(i);
                out.push(Dim::Unknown);
            }
            0 if !allowzero => {
                let d = s.get(i).cloned().unwrap_or(Dim::Unknown);
                match &d {
                    Dim::Fixed(n) => t_fixed *= n,
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
                t_fixed *= v.max(0) as usize;
                out.push(Dim::Fixed(v.max(0) as usize));
            }
        }
    }
    if let Some(i) = infer_at {
        out[i] = match in_syms.as_slice() {
            [] if t_fixed != 0 && in_fixed.is_multiple_of(t_fixed) => {
                Dim::Fixed(in_fixed / t_fixed)
            }
            [Dim::Sym(n)] if in_fixed == t_fixed => Dim::Sym(n.clone()),
            _ => Dim::Unknown,
        };
    }
    out
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
