//! Shape and data-movement operators for the reference evaluator.

use ndarray::{ArrayD, Axis, IxDyn};

use super::math::{broadcast_shape, norm_axes};
use super::scalar::Scalar;
use super::{OpError, invalid, opt, req, unsupported};
use crate::geometry::unravel;
use crate::tensor::Element;
use crate::{DType, Tensor, map_tensor, with_numeric, with_tensor};

fn reshaped<T: Element>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, OpError> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|_| OpError::Invalid(format!("cannot reshape {:?} to {shape:?}", a.shape())))
}

fn reshape_to(x: &Tensor, shape: &[usize]) -> Result<Tensor, OpError> {
    Ok(map_tensor!(x, a => reshaped(a, shape)?))
}

/// Inference Dropout: the identity, with an all-true mask when asked for.
pub(crate) fn dropout(
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0)?;
    let training = opt(inputs, 2).is_some_and(|t| t.to_i64_vec().iter().any(|&v| v != 0));
    let ratio = opt(inputs, 1)
        .map(|r| r.to_f64_vec().first().copied().unwrap_or(0.5))
        .unwrap_or(0.5);
    if training && ratio != 0.0 {
        return unsupported(
            "training-mode Dropout draws random masks; mcc compiles models for inference",
        );
    }
    let mut out = vec![x.clone()];
    if n_outputs > 1 {
        out.push(Tensor::full(x.shape(), true));
    }
    Ok(out)
}

/// The output shape of ONNX Reshape (`0` copies unless `allowzero`, one `-1` is inferred).
pub fn reshape_target(
    input: &[usize],
    shape: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
    let Some(total) = input.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
        return invalid("Reshape input's size overflows");
    };
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 => {
                if infer.replace(i).is_some() {
                    return invalid("Reshape shape has more than one -1");
                }
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                OpError::Invalid(format!(
                    "Reshape copies dim {i}, but the input has rank {}",
                    input.len()
                ))
            })?),
            s if s < 0 => return invalid(format!("Reshape shape entry {s} is negative")),
            s => out.push(s as usize),
        }
    }
    let known = out
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| OpError::Invalid(format!("Reshape shape {shape:?} is too large")))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return invalid(format!(
                "cannot reshape {input:?} ({total} elements) to {shape:?}"
            ));
        }
        out[i] = total / known;
    }
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(total) {
        return invalid(format!(
            "cannot reshape {input:?} ({total} elements) to {shape:?}"
        ));
    }
    Ok(out)
}

/// ONNX `Reshape`.
pub(crate) fn reshape(x: &Tensor, shape: &Tensor, allowzero: bool) -> Result<Tensor, OpError> {
    let target = reshape_target(x.shape(), &shape.to_i64_vec(), allowzero)?;
    reshape_to(x, &target)
}

/// ONNX `Flatten`.
pub(crate) fn flatten(x: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let r = x.shape().len() as i64;
    if axis < -r || axis > r {
        return invalid(format!("Flatten axis {axis} is out of range for rank {r}"));
    }
    let ax = if axis < 0 { axis + r } else { axis } as usize;
    let rows: usize = x.shape()[..ax].iter().product();
    let cols: usize = x.shape()[ax..].iter().product();
    reshape_to(x, &[rows, cols])
}

/// Checks and completes a Transpose permutation (empty = reverse).
pub fn transpose_perm(perm: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    if perm.is_empty() {
        return Ok((0..rank).rev().collect());
    }
    let p = norm_axes(perm, rank)?;
    if p.len() != rank {
        return invalid(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    Ok(p)
}

/// ONNX `Transpose`.
pub(crate) fn transpose(x: &Tensor, perm: &[i64]) -> Result<Tensor, OpError> {
    let p = transpose_perm(perm, x.shape().len())?;
    Ok(map_tensor!(x, a => a.view().permuted_axes(IxDyn(&p)).as_standard_layout().into_owned()))
}

/// The output shape of Unsqueeze.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>, OpError> {
    let out_rank = input.len() + axes.len();
    let mut ax = norm_axes(axes, out_rank)?;
    ax.sort_unstable();
    let mut out = Vec::with_capacity(out_rank);
    let mut it = input.iter();
    for i in 0..out_rank {
        if ax.contains(&i) {
            out.push(1);
        } else {
            out.push(
                *it.next()
                    .ok_or_else(|| OpError::Invalid("bad Unsqueeze axes".into()))?,
            );
        }
    }
    Ok(out)
}

/// ONNX `Unsqueeze`.
pub(crate) fn unsqueeze(x: &Tensor, axes: &Tensor) -> Result<Tensor, OpError> {
    let shape = unsqueeze_shape(x.shape(), &axes.to_i64_vec())?;
    reshape_to(x, &shape)
}

/// The output shape of Squeeze.
pub fn squeeze_shape(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, OpError> {
    match axes {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let ax = norm_axes(axes, input.len())?;
            for &a in &ax {
                if input[a] != 1 {
                    return invalid(format!("cannot squeeze axis {a} of size {}", input[a]));
                }
            }
            Ok(input
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// ONNX `Squeeze`.
pub(crate) fn squeeze(x: &Tensor, axes: Option<&Tensor>) -> Result<Tensor, OpError> {
    let axes = axes.map(Tensor::to_i64_vec);
    let shape = squeeze_shape(x.shape(), axes.as_deref())?;
    reshape_to(x, &shape)
}

/// ONNX `Concat`.
pub(crate) fn concat(inputs: &[Option<&Tensor>], axis: i64) -> Result<Tensor, OpError> {
    let first = req(inputs, 0)?;
    let ax = norm_axes(&[axis], first.shape().len().max(1))?[0];
    fn go<T: Element>(
        first: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
        ax: usize,
    ) -> Result<Tensor, OpError> {
        let mut views = Vec::with_capacity(inputs.len());
        for (i, t) in inputs.iter().enumerate() {
            let t = t.ok_or_else(|| OpError::Invalid(format!("operand {i} is required")))?;
            let a = T::view(t).ok_or_else(|| {
                OpError::Invalid("Concat operands must share an element type".into())
            })?;
            if a.ndim() != first.ndim()
                || a.shape()
                    .iter()
                    .enumerate()
                    .any(|(d, &s)| d != ax && s != first.shape()[d])
            {
                return invalid(format!(
                    "cannot concatenate {:?} with {:?} along axis {ax}",
                    first.shape(),
                    a.shape()
                ));
            }
            views.push(a.view());
        }
        Ok(T::wrap(
            ndarray::concatenate(Axis(ax), &views).map_err(|e| OpError::Invalid(e.to_string()))?,
        ))
    }
    with_tensor!(first, a => go(a, inputs, ax))
}

/// `Split`: consecutive parts along an axis, sized by the `split` operand or equally
/// (⌈n / parts⌉ each, the last smaller).
pub(crate) fn split(
    sp: &crate::op::Split,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let x = req(inputs, 0)?;
    let ax = norm_axes(&[sp.axis], x.shape().len().max(1))?[0];
    let n = x.shape().get(ax).copied().unwrap_or(0);
    let parts = if sp.num_outputs > 0 {
        sp.num_outputs as usize
    } else {
        n_outputs
    };
    if parts == 0 || parts != n_outputs {
        return invalid(format!("Split into {parts} parts has {n_outputs} outputs"));
    }
    let sizes: Vec<usize> = match opt(inputs, 1) {
        Some(t) => {
            let v = t.to_i64_vec();
            if v.len() != parts
                || v.iter().any(|&d| d < 0)
                || v.iter().try_fold(0usize, |a, &d| a.checked_add(d as usize)) != Some(n)
            {
                return invalid(format!("Split sizes {v:?} do not cut {n} into {parts}"));
            }
            v.iter().map(|&d| d as usize).collect()
        }
        None => {
            let each = n.div_ceil(parts);
            (0..parts)
                .map(|i| each.min(n.saturating_sub(i * each)))
                .collect()
        }
    };
    fn go<T: Element>(a: &ArrayD<T>, ax: usize, sizes: &[usize]) -> Vec<Tensor> {
        let mut at = 0;
        sizes
            .iter()
            .map(|&len| {
                let part = a.slice_axis(Axis(ax), ndarray::Slice::from(at..at + len));
                at += len;
                T::wrap(part.to_owned())
            })
            .collect()
    }
    Ok(with_tensor!(x, a => go(a, ax, &sizes)))
}

/// Clamps ONNX Shape's start/end to a rank.
pub fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (fix(start), fix(end.unwrap_or(r)));
    (s, e.max(s))
}

/// ONNX `Shape`.
pub(crate) fn shape(x: &Tensor, start: i64, end: Option<i64>) -> Result<Tensor, OpError> {
    let (s, e) = shape_range(x.shape().len(), start, end);
    let dims: Vec<i64> = x.shape()[s..e].iter().map(|&d| d as i64).collect();
    Tensor::from_vec(&[dims.len()], dims).map_err(|e| OpError::Invalid(e.to_string()))
}

/// ONNX `Gather`.
pub(crate) fn gather(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let rank = x.shape().len();
    if rank == 0 {
        return invalid("Gather of a scalar");
    }
    let ax = norm_axes(&[axis], rank)?[0];
    let dim = x.shape()[ax] as i64;
    let mut flat = Vec::with_capacity(indices.len());
    for i in indices.to_i64_vec() {
        let j = if i < 0 { i + dim } else { i };
        if j < 0 || j >= dim {
            return invalid(format!(
                "index {i} is out of range for axis {ax} of size {dim}"
            ));
        }
        flat.push(j as usize);
    }
    let mut shape: Vec<usize> = x.shape()[..ax].to_vec();
    shape.extend(indices.shape());
    shape.extend(&x.shape()[ax + 1..]);
    super::check_numel(&shape)?;
    Ok(map_tensor!(x, a => reshaped(&a.select(Axis(ax), &flat), &shape)?))
}

/// ONNX `Slice`.
pub(crate) fn slice(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0)?;
    let picks = slice_indices(
        x.shape(),
        &req(inputs, 1)?.to_i64_vec(),
        &req(inputs, 2)?.to_i64_vec(),
        opt(inputs, 3).map(Tensor::to_i64_vec).as_deref(),
        opt(inputs, 4).map(Tensor::to_i64_vec).as_deref(),
    )?;
    let mut out = x.clone();
    for (ax, idx) in picks {
        out = map_tensor!(&out, a => a.select(Axis(ax), &idx));
    }
    Ok(out)
}

/// The indices ONNX Slice keeps along each sliced axis of `shape` (ends clamp, negative
/// positions count from the end, negative steps walk backwards).
pub fn slice_indices(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(usize, Vec<usize>)>, OpError> {
    let rank = shape.len();
    let axes = match axes {
        Some(a) => norm_axes(a, rank)?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return invalid("Slice starts, ends, axes and steps must have the same length");
    }
    let mut picks = Vec::with_capacity(starts.len());
    for i in 0..starts.len() {
        let (ax, step) = (axes[i], steps[i]);
        if step == 0 {
            return invalid("Slice step must not be 0");
        }
        if ax >= rank {
            return invalid(format!("Slice axis {ax} is out of range for rank {rank}"));
        }
        let dim = shape[ax] as i64;
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let mut idx = vec![];
        if step > 0 {
            let (mut k, e) = (s.clamp(0, dim), e.clamp(0, dim));
            while k < e {
                idx.push(k as usize);
                k = k.saturating_add(step);
            }
        } else {
            let (mut k, e) = (s.clamp(0, dim - 1), e.clamp(-1, dim - 1));
            while k > e {
                idx.push(k as usize);
                k = k.saturating_add(step);
            }
        }
        picks.push((ax, idx));
    }
    Ok(picks)
}

fn shape_operand(t: &Tensor, what: &str) -> Result<Vec<usize>, OpError> {
    t.to_i64_vec()
        .into_iter()
        .map(|d| {
            if d < 0 {
                Err(OpError::Invalid(format!("{what} has a negative entry {d}")))
            } else {
                Ok(d as usize)
            }
        })
        .collect()
}

/// ONNX `ConstantOfShape`.
pub(crate) fn constant_of_shape(shape: &Tensor, value: Option<&Tensor>) -> Result<Tensor, OpError> {
    let dims = shape_operand(shape, "the shape")?;
    super::check_numel(&dims)?;
    match value {
        None => Ok(Tensor::zeros(DType::F32, &dims)),
        Some(v) => {
            if v.len() != 1 {
                return invalid("ConstantOfShape value must have one element");
            }
            Ok(with_tensor!(v, a => {
                let x = *a.iter().next().ok_or_else(|| OpError::Invalid("empty value".into()))?;
                Element::wrap(ArrayD::from_elem(IxDyn(&dims), x))
            }))
        }
    }
}

fn convert<S: Scalar, T: Scalar>(v: S) -> T {
    if S::FLOAT {
        T::from_f64(v.to_f64())
    } else {
        T::from_i128(v.to_i128())
    }
}

fn cast_to<T: Scalar>(x: &Tensor) -> ArrayD<T> {
    match x {
        Tensor::Bool(a) => a.mapv(|b| if b { T::one() } else { T::zero() }),
        Tensor::F32(a) => a.mapv(convert),
        Tensor::F64(a) => a.mapv(convert),
        Tensor::I8(a) => a.mapv(convert),
        Tensor::I16(a) => a.mapv(convert),
        Tensor::I32(a) => a.mapv(convert),
        Tensor::I64(a) => a.mapv(convert),
        Tensor::U8(a) => a.mapv(convert),
        Tensor::U16(a) => a.mapv(convert),
        Tensor::U32(a) => a.mapv(convert),
        Tensor::U64(a) => a.mapv(convert),
    }
}

/// ONNX `Cast` between the supported element types.
pub(crate) fn cast(x: &Tensor, to: DType) -> Tensor {
    match to {
        DType::F32 => Tensor::F32(cast_to(x)),
        DType::F64 => Tensor::F64(cast_to(x)),
        DType::I8 => Tensor::I8(cast_to(x)),
        DType::I16 => Tensor::I16(cast_to(x)),
        DType::I32 => Tensor::I32(cast_to(x)),
        DType::I64 => Tensor::I64(cast_to(x)),
        DType::U8 => Tensor::U8(cast_to(x)),
        DType::U16 => Tensor::U16(cast_to(x)),
        DType::U32 => Tensor::U32(cast_to(x)),
        DType::U64 => Tensor::U64(cast_to(x)),
        DType::Bool => Tensor::Bool(
            with_numeric!(x, a => a.mapv(|v| v.to_f64() != 0.0), match x { Tensor::Bool(b) => b.clone(), _ => ArrayD::from_elem(IxDyn(&[]), false) }),
        ),
    }
}

/// ONNX `Expand`.
pub(crate) fn expand(x: &Tensor, shape: &Tensor) -> Result<Tensor, OpError> {
    let target = broadcast_shape(x.shape(), &shape_operand(shape, "the shape")?)?;
    super::check_numel(&target)?;
    Ok(
        map_tensor!(x, a => a.broadcast(IxDyn(&target)).ok_or_else(|| OpError::Invalid("broadcast failed".into()))?.to_owned()),
    )
}

/// ONNX `Tile`.
pub(crate) fn tile(x: &Tensor, repeats: &Tensor) -> Result<Tensor, OpError> {
    let reps = shape_operand(repeats, "repeats")?;
    if reps.len() != x.shape().len() {
        return invalid(format!(
            "Tile needs {} repeats, got {}",
            x.shape().len(),
            reps.len()
        ));
    }
    let sizes: Vec<usize> = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    super::check_numel(&sizes)?;
    let mut out = x.clone();
    for (ax, &r) in reps.iter().enumerate() {
        let dim = x.shape()[ax];
        let idx: Vec<usize> = (0..dim * r).map(|i| i % dim.max(1)).collect();
        out = map_tensor!(&out, a => a.select(Axis(ax), &idx));
    }
    Ok(out)
}

/// ONNX `Pad` (constant, reflect, edge, wrap; negative pads crop).
pub(crate) fn pad(inputs: &[Option<&Tensor>], mode: &str) -> Result<Tensor, OpError> {
    let x = req(inputs, 0)?;
    let rank = x.shape().len();
    let pads = req(inputs, 1)?.to_i64_vec();
    let axes = match opt(inputs, 3) {
        Some(a) => norm_axes(&a.to_i64_vec(), rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return invalid(format!(
            "Pad needs {} pads, got {}",
            2 * axes.len(),
            pads.len()
        ));
    }
    let (mut pb, mut pe) = (vec![0i64; rank], vec![0i64; rank]);
    for (i, &a) in axes.iter().enumerate() {
        pb[a] = pads[i];
        pe[a] = pads[i + axes.len()];
    }
    // For each axis: the source index of every output position (None = constant fill).
    let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(rank);
    let mut out_shape = Vec::with_capacity(rank);
    for d in 0..rank {
        let dim = x.shape()[d] as i64;
        let n = dim.saturating_add(pb[d]).saturating_add(pe[d]);
        if n > crate::tensor::MAX_ELEMENTS as i64 {
            return invalid("Pad would create a tensor that is too large");
        }
        if n < 0 {
            return invalid("Pad crops more than the input has");
        }
        let mut m = Vec::with_capacity(n as usize);
        for o in 0..n {
            let i = o - pb[d];
            m.push(match mode {
                _ if (0..dim).contains(&i) => Some(i as usize),
                "constant" => None,
                _ if dim == 0 => return invalid("cannot pad an empty axis except with a constant"),
                "edge" => Some(i.clamp(0, dim - 1) as usize),
                "wrap" => Some(i.rem_euclid(dim) as usize),
                "reflect" => {
                    if dim == 1 {
                        Some(0)
                    } else {
                        let period = 2 * (dim - 1);
                        let k = i.rem_euclid(period);
                        Some(if k < dim { k } else { period - k } as usize)
                    }
                }
                other => return invalid(format!("unknown Pad mode `{other}`")),
            });
        }
        out_shape.push(n as usize);
        maps.push(m);
    }
    fn go<T: Element>(
        a: &ArrayD<T>,
        fill: Option<&Tensor>,
        maps: &[Vec<Option<usize>>],
        shape: &[usize],
    ) -> Result<Tensor, OpError> {
        let fill = match fill {
            None => T::default(),
            Some(t) => *T::view(t).and_then(|v| v.iter().next()).ok_or_else(|| {
                OpError::Invalid("constant_value must have the input's type".into())
            })?,
        };
        let total: usize = shape.iter().product();
        let mut out = Vec::with_capacity(total);
        let (mut oi, mut si) = (vec![0; shape.len()], vec![0; shape.len()]);
        for f in 0..total {
            unravel(f, shape, &mut oi);
            let mut inside = true;
            for d in 0..shape.len() {
                match maps[d][oi[d]] {
                    Some(s) => si[d] = s,
                    None => inside = false,
                }
            }
            out.push(if inside { a[IxDyn(&si)] } else { fill });
        }
        Tensor::from_vec(shape, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_tensor!(x, a => go(a, opt(inputs, 2), &maps, &out_shape))
}

/// ONNX `Range`.
pub(crate) fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor, OpError> {
    fn go<T: Scalar>(s: &ArrayD<T>, limit: &Tensor, delta: &Tensor) -> Result<Tensor, OpError> {
        let one = |t: &Tensor| {
            T::view(t)
                .and_then(|a| a.iter().next().copied())
                .ok_or_else(|| {
                    OpError::Invalid("Range operands must be scalars of one type".into())
                })
        };
        let s0 = *s
            .iter()
            .next()
            .ok_or_else(|| OpError::Invalid("empty start".into()))?;
        let (l, d) = (one(limit)?, one(delta)?);
        if d.to_f64() == 0.0 {
            return invalid("Range delta must not be 0");
        }
        let n = ((l.to_f64() - s0.to_f64()) / d.to_f64()).ceil().max(0.0);
        if n.is_nan() || n > crate::tensor::MAX_ELEMENTS as f64 {
            return invalid("Range would create a tensor that is too large");
        }
        let n = n as usize;
        let mut out = Vec::with_capacity(n);
        let mut v = s0;
        for _ in 0..n {
            out.push(v);
            v = v.add(d);
        }
        Tensor::from_vec(&[n], out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_numeric!(start, a => go(a, limit, delta), unsupported("Range of bool"))
}

/// The output shape of `DepthToSpace` (`to_space`) or `SpaceToDepth` with block side
/// `blocksize` over an `(N, C, H, W)` input.
pub fn block_shape(input: &[usize], blocksize: i64, to_space: bool) -> Result<Vec<usize>, OpError> {
    let &[n, c, h, w] = input else {
        return invalid(format!(
            "expected an input of rank 4 (N, C, H, W), got shape {input:?}"
        ));
    };
    if !(1..=crate::geometry::MAX_WINDOW_ATTR).contains(&blocksize) {
        return invalid(format!(
            "blocksize must be between 1 and 2^20, found {blocksize}"
        ));
    }
    let b = blocksize as usize;
    let area = b * b;
    let out = if to_space {
        if c % area != 0 {
            return invalid(format!("{c} channels do not split into blocks of {b}×{b}"));
        }
        vec![n, c / area, h.saturating_mul(b), w.saturating_mul(b)]
    } else {
        if h % b != 0 || w % b != 0 {
            return invalid(format!("{h}×{w} does not split into blocks of {b}×{b}"));
        }
        vec![n, c.saturating_mul(area), h / b, w / b]
    };
    super::check_numel(&out)?;
    Ok(out)
}

/// ONNX `DepthToSpace` (`to_space`) and `SpaceToDepth`: every output element copies one
/// input element. On the spread-out side, position `(c, row, col)` is channel
/// `(by·b + bx)·C + c` (`DCR`) or `c·b² + by·b + bx` (`CRD`) at `(row / b, col / b)` on the
/// deep side, with `by, bx = row % b, col % b`.
pub(crate) fn depth_space(
    x: &Tensor,
    blocksize: i64,
    mode: crate::BlockOrder,
    to_space: bool,
) -> Result<Tensor, OpError> {
    let out_shape = block_shape(x.shape(), blocksize, to_space)?;
    let b = blocksize as usize;
    // The channels of the spread-out side.
    let c = if to_space { out_shape[1] } else { x.shape()[1] };
    let pick = |o: &[usize]| -> [usize; 4] {
        let ni = o[0];
        if to_space {
            let (ci, row, col) = (o[1], o[2], o[3]);
            let (by, bx) = (row % b, col % b);
            let ch = match mode {
                crate::BlockOrder::Dcr => (by * b + bx) * c + ci,
                crate::BlockOrder::Crd => ci * b * b + by * b + bx,
            };
            [ni, ch, row / b, col / b]
        } else {
            let (ch, hi, wi) = (o[1], o[2], o[3]);
            let (ci, by, bx) = match mode {
                crate::BlockOrder::Dcr => (ch % c, ch / c / b, ch / c % b),
                crate::BlockOrder::Crd => (ch / (b * b), ch % (b * b) / b, ch % b),
            };
            [ni, ci, hi * b + by, wi * b + bx]
        }
    };
    fn go<T: Element>(
        a: &ArrayD<T>,
        out_shape: &[usize],
        pick: &dyn Fn(&[usize]) -> [usize; 4],
    ) -> Result<Tensor, OpError> {
        let total: usize = out_shape.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut oi = [0; 4];
        for f in 0..total {
            unravel(f, out_shape, &mut oi);
            out.push(a[IxDyn(&pick(&oi))]);
        }
        Tensor::from_vec(out_shape, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_tensor!(x, a => go(a, &out_shape, &pick))
}
