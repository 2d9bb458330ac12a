//! Inference rules of shape manipulation: reshapes, transposes, concatenation, gathers,
//! slices, padding, ranges, resizing, block moves between depth and space.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::op;

/// `Reshape`.
pub(super) fn reshape(
    r: &op::Reshape,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let s = req(args, 1)?;
    let Some(target) = s.elements() else {
        let rank = s.ty.fixed_dims().and_then(|d| d.first().copied());
        return one(TensorType {
            dtype: x.ty.dtype,
            shape: rank.map(|r| vec![Dim::Unknown; r]),
        });
    };
    let ints: Option<Vec<i64>> = target
        .iter()
        .map(|k| match k {
            Known::Int(v) => Some(*v),
            _ => None,
        })
        .collect();
    if let (Some(dims), Some(ints)) = (x.ty.fixed_dims(), &ints) {
        return one(fixed(
            x.ty.dtype,
            reshape_target(&dims, ints, r.allowzero != 0)?,
        ));
    }
    let out = symbolic_reshape(x.ty, &target, r.allowzero != 0)?;
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

/// `Flatten`.
pub(super) fn flatten(
    f: &op::Flatten,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Transpose`.
pub(super) fn transpose(
    t: &op::Transpose,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let Some(s) = &x.ty.shape else {
        return one(same_as(x));
    };
    let p = transpose_perm(&t.perm, s.len())?;
    one(TensorType {
        dtype: x.ty.dtype,
        shape: Some(p.iter().map(|&i| s[i].clone()).collect()),
    })
}

/// `Unsqueeze`.
pub(super) fn unsqueeze(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Squeeze`.
pub(super) fn squeeze(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Concat`.
pub(super) fn concat(
    c: &op::Concat,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
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

/// `Split`: the sizes from the constant `split` operand, else `num_outputs` (or the node's
/// outputs) equal parts of ⌈n / parts⌉, the last one smaller.
pub(super) fn split(
    sp: &op::Split,
    args: &[Option<Arg<'_>>],
    n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let parts = if sp.num_outputs > 0 {
        sp.num_outputs as usize
    } else {
        n_out
    };
    if parts == 0 || parts != n_out {
        return err(format!(
            "Split into {parts} parts needs as many outputs, not {n_out}"
        ));
    }
    let Some(s) = &x.ty.shape else {
        return Ok(vec![TensorType::unknown(x.ty.dtype); n_out]);
    };
    let ax = norm_axis(sp.axis, s.len())?;
    let sizes: Option<Vec<usize>> = match args.get(1) {
        Some(Some(a)) => {
            let Some(v) = a.value else {
                return Ok(vec![TensorType::unknown(x.ty.dtype); n_out]);
            };
            let v = v.to_i64_vec();
            if v.len() != n_out || v.iter().any(|&d| d < 0) {
                return err(format!("Split sizes {v:?} do not give {n_out} parts"));
            }
            if let Some(n) = s[ax].fixed()
                && v.iter().try_fold(0usize, |a, &d| a.checked_add(d as usize)) != Some(n)
            {
                return err(format!("Split sizes {v:?} do not add up to {n}"));
            }
            Some(v.iter().map(|&d| d as usize).collect())
        }
        _ => s[ax].fixed().map(|n| {
            let each = n.div_ceil(parts);
            (0..parts)
                .map(|i| each.min(n.saturating_sub(i * each)))
                .collect()
        }),
    };
    Ok((0..n_out)
        .map(|i| {
            let mut t = s.clone();
            t[ax] = sizes.as_ref().map_or(Dim::Unknown, |v| Dim::Fixed(v[i]));
            TensorType {
                dtype: x.ty.dtype,
                shape: Some(t),
            }
        })
        .collect())
}

/// `Shape`.
pub(super) fn shape(
    s: &op::Shape,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let len = x.ty.rank().map(|r| {
        let (a, b) = shape_range(r, s.start, s.end);
        Dim::Fixed(b - a)
    });
    one(TensorType {
        dtype: DType::I64,
        shape: Some(vec![len.unwrap_or(Dim::Unknown)]),
    })
}

/// `Gather`.
pub(super) fn gather(
    g: &op::Gather,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
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

/// `Slice`.
pub(super) fn slice(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let Some(s) = &x.ty.shape else {
        return one(same_as(x));
    };
    // With constant operands, each sliced axis of a known size gets its exact size and every
    // other axis keeps its dim (a symbolic batch included); a sliced axis of unknown size is
    // unknown unless it is taken whole. Otherwise the rank is known, the sizes are not.
    let val = |i: usize| opt(args, i).map(|a| a.value.map(Tensor::to_i64_vec));
    let (axes, steps) = (val(3), val(4));
    if let (Some(Some(starts)), Some(Some(ends))) = (val(1), val(2))
        && !matches!(axes, Some(None))
        && !matches!(steps, Some(None))
    {
        let axes: Vec<i64> = axes
            .flatten()
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let sliced: Vec<usize> = axes
            .iter()
            .map(|&a| norm_axis(a, s.len()))
            .collect::<Result<_, _>>()?;
        let steps = steps.flatten();
        // Axes of unknown size stand in as 1 for the arithmetic; their results are not used.
        let probe: Vec<usize> = s.iter().map(|d| d.fixed().unwrap_or(1)).collect();
        let picks = slice_indices(&probe, &starts, &ends, Some(&axes), steps.as_deref())?;
        let mut out = s.clone();
        for (ax, idx) in picks {
            out[ax] = Dim::Fixed(idx.len());
        }
        for (i, &a) in sliced.iter().enumerate() {
            if s[a].fixed().is_none() {
                // From 0 to "the end" (ONNX writes INT64_MAX) by 1 keeps any size.
                let whole = starts.get(i) == Some(&0)
                    && ends.get(i).is_some_and(|&e| e >= i64::MAX / 2)
                    && steps.as_ref().is_none_or(|st| st.get(i) == Some(&1));
                out[a] = if whole { s[a].clone() } else { Dim::Unknown };
            }
        }
        return one(TensorType {
            dtype: x.ty.dtype,
            shape: Some(out),
        });
    }
    one(TensorType {
        dtype: x.ty.dtype,
        shape: Some(vec![Dim::Unknown; s.len()]),
    })
}

/// `ConstantOfShape`.
pub(super) fn constant_of_shape(
    c: &op::ConstantOfShape,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
    let s = x?;
    let dtype = c.value.as_ref().map_or(DType::F32, Tensor::dtype);
    match s.elements() {
        Some(v) => one(TensorType {
            dtype,
            shape: Some(v.iter().map(Known::dim).collect()),
        }),
        None => {
            let rank = s.ty.fixed_dims().and_then(|d| d.first().copied());
            one(TensorType {
                dtype,
                shape: rank.map(|r| vec![Dim::Unknown; r]),
            })
        }
    }
}

/// `Expand`.
pub(super) fn expand(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    match opt(args, 1).and_then(|a| a.elements()) {
        Some(v) => {
            let target = TensorType {
                dtype: x.ty.dtype,
                shape: Some(v.iter().map(Known::dim).collect()),
            };
            one(TensorType {
                dtype: x.ty.dtype,
                shape: bcast(x.ty, &target)?,
            })
        }
        // The target's values unknown but its length known: the rank is the larger of the
        // two, and an axis of the input of a fixed size other than 1 keeps it (a target of 1
        // there broadcasts to it; any other target must equal it).
        None => {
            let len = opt(args, 1)
                .and_then(|a| a.ty.fixed_dims())
                .and_then(|d| d.first().copied());
            match (len, &x.ty.shape) {
                (Some(r), Some(s)) => {
                    let rank = r.max(s.len());
                    let mut shape = vec![Dim::Unknown; rank];
                    for (d, dim) in s.iter().enumerate() {
                        // A symbolic size might be 1 at run time: only fixed ones stay.
                        if matches!(dim, Dim::Fixed(n) if *n != 1) {
                            shape[rank - s.len() + d] = dim.clone();
                        }
                    }
                    one(TensorType {
                        dtype: x.ty.dtype,
                        shape: Some(shape),
                    })
                }
                _ => one(TensorType::unknown(x.ty.dtype)),
            }
        }
    }
}

/// `Tile`.
pub(super) fn tile(args: &[Option<Arg<'_>>], _n_out: usize) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Pad`.
pub(super) fn pad(args: &[Option<Arg<'_>>], _n_out: usize) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Range`.
pub(super) fn range(
    op: &Op,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
    let s = x?;
    let vals: Option<Vec<&Tensor>> = (0..3).map(|i| opt(args, i).and_then(|a| a.value)).collect();
    if let Some(v) = vals {
        let out = crate::eval::eval_op(op, &[Some(v[0]), Some(v[1]), Some(v[2])], 1)?;
        return one(out[0].ty());
    }
    one(TensorType {
        dtype: s.ty.dtype,
        shape: Some(vec![Dim::Unknown]),
    })
}

/// Whether a `Resize` operand slot holds `scales`: absent (no operand, or one without
/// elements), present, or not known until run time (its length is not).
enum Scales<'a> {
    Absent,
    Present(Arg<'a>),
    Unsure,
}

/// `Resize`: the input's type with each resized axis sized by the constant scales or the
/// known sizes (the evaluator's arithmetic: [`crate::eval::resize`]). An axis `axes` leaves
/// alone keeps its dim, a symbol included, as does one scaled by exactly 1; a size that is a
/// symbol gives that symbol. What the operands do not say is [`Dim::Unknown`].
pub(super) fn resize(
    r: &op::Resize,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    use crate::KeepAspectRatio;
    use crate::eval::resize::{Target, resized_axes, resolve, scaled_size};
    let x = req(args, 0)?;
    let Some(s) = &x.ty.shape else {
        return one(same_as(x));
    };
    let axes = resized_axes(r, s.len())?;
    let scales = match opt(args, 2) {
        None => Scales::Absent,
        Some(a) => match (a.value, a.ty.fixed_dims()) {
            (Some(t), _) if t.is_empty() => Scales::Absent,
            (Some(_), _) => Scales::Present(a),
            (None, Some(d)) if d.iter().product::<usize>() == 0 => Scales::Absent,
            (None, Some(_)) => Scales::Present(a),
            (None, None) => Scales::Unsure,
        },
    };
    let sizes = opt(args, 3);
    let mut shape = s.clone();
    let unknown = |shape: &mut Vec<Dim>| {
        for &a in &axes {
            shape[a] = Dim::Unknown;
        }
    };
    let count = |n: usize, what: &str| {
        if n == axes.len() {
            Ok(())
        } else {
            err(format!(
                "Resize has {n} {what} for {} resized axes",
                axes.len()
            ))
        }
    };
    match (scales, sizes) {
        (Scales::Present(_), Some(_)) => return err("Resize takes scales or sizes, not both"),
        (Scales::Absent, None) => return err("Resize needs scales or sizes"),
        (Scales::Present(_), None) if r.keep_aspect_ratio_policy != KeepAspectRatio::Stretch => {
            return err("keep_aspect_ratio_policy applies to sizes, not scales");
        }
        (Scales::Present(a), None) => match a.value {
            Some(t) => {
                let v = t.to_f64_vec();
                count(v.len(), "scales")?;
                for (&ax, &f) in axes.iter().zip(&v) {
                    if !(f.is_finite() && f > 0.0) {
                        return err(format!("Resize scales must be positive, found {f}"));
                    }
                    shape[ax] = match &s[ax] {
                        Dim::Fixed(n) => Dim::Fixed(scaled_size(*n, f)?),
                        d if f == 1.0 => d.clone(),
                        _ => Dim::Unknown,
                    };
                }
            }
            None => unknown(&mut shape),
        },
        (Scales::Absent, Some(z)) => match z.elements() {
            Some(k) => {
                count(k.len(), "sizes")?;
                let ints: Option<Vec<i64>> = k
                    .iter()
                    .map(|e| match e {
                        Known::Int(v) => Some(*v),
                        _ => None,
                    })
                    .collect();
                let dims: Option<Vec<usize>> = axes.iter().map(|&a| s[a].fixed()).collect();
                match (ints, dims) {
                    // All known: exactly the evaluator's sizes.
                    (Some(ints), Some(dims)) => {
                        let sized =
                            resolve(&dims, &Target::Sizes(ints), r.keep_aspect_ratio_policy)?;
                        for (&ax, &(o, _)) in axes.iter().zip(&sized) {
                            shape[ax] = Dim::Fixed(o);
                        }
                    }
                    // Stretched, each axis takes its size (a symbol too).
                    _ if r.keep_aspect_ratio_policy == KeepAspectRatio::Stretch => {
                        for (&ax, e) in axes.iter().zip(&k) {
                            if let Known::Int(v) = e
                                && !(0..=crate::tensor::MAX_ELEMENTS as i64).contains(v)
                            {
                                return err(format!("Resize size {v} is not between 0 and 2^28"));
                            }
                            shape[ax] = e.dim();
                        }
                    }
                    _ => unknown(&mut shape),
                }
            }
            None => unknown(&mut shape),
        },
        (Scales::Unsure, _) => unknown(&mut shape),
    }
    one(TensorType {
        dtype: x.ty.dtype,
        shape: Some(shape),
    })
}

/// `DepthToSpace` (`to_space`) and `SpaceToDepth`: the evaluator's shape when every dim is
/// fixed; otherwise the batch flows through, each other fixed dim is scaled (and checked)
/// as the evaluator does, and a symbol stays only under a block of 1.
pub(super) fn depth_space(
    blocksize: i64,
    to_space: bool,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    use crate::eval::array_shapes::block_shape;
    let x = req(args, 0)?;
    let Some(s) = &x.ty.shape else {
        return one(TensorType {
            dtype: x.ty.dtype,
            shape: Some(vec![Dim::Unknown; 4]),
        });
    };
    if let Some(dims) = x.ty.fixed_dims() {
        return one(fixed(x.ty.dtype, block_shape(&dims, blocksize, to_space)?));
    }
    // Each dim on its own: a block shape with the others at their smallest valid sizes.
    let b = blocksize.clamp(1, crate::geometry::MAX_WINDOW_ATTR) as usize;
    let neutral = |i: usize| match (i, to_space) {
        (1, true) => b * b,
        (2 | 3, false) => b,
        _ => 1,
    };
    let mut shape = Vec::with_capacity(s.len());
    for (i, d) in s.iter().enumerate() {
        shape.push(match d {
            Dim::Fixed(n) => {
                let mut probe: Vec<usize> = (0..s.len()).map(neutral).collect();
                if let Some(p) = probe.get_mut(i) {
                    *p = *n;
                }
                Dim::Fixed(block_shape(&probe, blocksize, to_space)?[i])
            }
            _ if i == 0 || blocksize == 1 => d.clone(),
            _ => Dim::Unknown,
        });
    }
    // The rank and blocksize checks, when no dim was fixed to make them.
    block_shape(
        &(0..s.len()).map(neutral).collect::<Vec<_>>(),
        blocksize,
        to_space,
    )?;
    one(TensorType {
        dtype: x.ty.dtype,
        shape: Some(shape),
    })
}
