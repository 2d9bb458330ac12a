//! Inference rules of the neural-network layers: norms, dropout, convolution (plain and
//! transposed), pooling, Gemm, MatMul.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::op;

/// `Lrn`.
pub(super) fn lrn(args: &[Option<Arg<'_>>], _n_out: usize) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    if x.ty.rank().is_some_and(|r| r < 3) {
        return err(format!(
            "LRN needs an input of rank ≥ 3 (N, C, spatial…), got {}",
            x.ty
        ));
    }
    one(same_as(x))
}

/// `BatchNormalization`.
pub(super) fn batch_normalization(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `LayerNormalization`: `Y` like `X`; `Mean` and `InvStdDev` like `X` with the normalized
/// axes kept as 1.
pub(super) fn layer_normalization(
    l: &op::LayerNormalization,
    args: &[Option<Arg<'_>>],
    n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let scale = req(args, 1)?;
    if !x.ty.dtype.is_float() || scale.ty.dtype != x.ty.dtype {
        return err(format!(
            "LayerNormalization needs float X and Scale of its type, got {} and {}",
            x.ty, scale.ty
        ));
    }
    if let Some(Some(b)) = args.get(2)
        && b.ty.dtype != x.ty.dtype
    {
        return err(format!("LayerNormalization's B is {}, not {}", b.ty, x.ty));
    }
    let stats = match &x.ty.shape {
        Some(s) => {
            let ax = norm_axis(l.axis, s.len())?;
            let mut t = s.clone();
            for d in t.iter_mut().skip(ax) {
                *d = Dim::Fixed(1);
            }
            TensorType {
                dtype: x.ty.dtype,
                shape: Some(t),
            }
        }
        None => TensorType::unknown(x.ty.dtype),
    };
    let mut out = vec![same_as(x)];
    for _ in 1..n_out.min(3) {
        out.push(stats.clone());
    }
    Ok(out)
}

/// `Dropout`.
pub(super) fn dropout(
    args: &[Option<Arg<'_>>],
    n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
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

/// `Conv`.
pub(super) fn conv(
    c: &op::Conv,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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
        && (c.group < 1 || wc.checked_mul(c.group as usize) != Some(cin))
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

/// `ConvTranspose`: `N` flows through; `M = W[1] · group` channels; the spatial sizes from
/// [`crate::geometry::transposed_window`] when the input's and the kernel's are fixed, else
/// from `output_shape` when it is given (it alone decides them), else unknown.
pub(super) fn conv_transpose(
    c: &op::ConvTranspose,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    let w = req(args, 1)?;
    if !x.ty.dtype.is_float() || w.ty.dtype != x.ty.dtype {
        return err(format!(
            "ConvTranspose needs float X and W of its type, got {} and {}",
            x.ty, w.ty
        ));
    }
    let (Some(xs), Some(ws)) = (&x.ty.shape, &w.ty.shape) else {
        return one(TensorType::unknown(x.ty.dtype));
    };
    if xs.len() < 3 || ws.len() != xs.len() {
        return err(format!(
            "ConvTranspose needs X of rank ≥ 3 (N, C, spatial…) and W of the same rank, got {} and {}",
            x.ty, w.ty
        ));
    }
    if c.group < 1 {
        return err(format!("ConvTranspose group {} must be positive", c.group));
    }
    if let (Some(cin), Some(wc)) = (xs[1].fixed(), ws[0].fixed())
        && (cin != wc || cin % c.group as usize != 0)
    {
        return err(format!(
            "input has {cin} channels, W's first axis {wc}, and group {} must divide them",
            c.group
        ));
    }
    let m = match ws[1].fixed() {
        Some(mg) => mg
            .checked_mul(c.group as usize)
            .map_or(Dim::Unknown, Dim::Fixed),
        None => Dim::Unknown,
    };
    if let Some(b) = opt(args, 2)
        && let (Some(bs), Dim::Fixed(m)) = (&b.ty.shape, &m)
        && (bs.len() != 1 || bs[0].fixed().is_some_and(|n| n != *m))
    {
        return err(format!(
            "ConvTranspose bias is {}, not a vector of the {m} output channels",
            b.ty
        ));
    }
    let nd = xs.len() - 2;
    let kernel: Option<Vec<usize>> = ws[2..].iter().map(Dim::fixed).collect();
    if let Some(k) = &kernel
        && !c.kernel_shape.is_empty()
        && usz(&c.kernel_shape) != *k
    {
        return err(format!(
            "kernel_shape {:?} does not match W's {k:?}",
            c.kernel_shape
        ));
    }
    let spatial: Option<Vec<usize>> = xs[2..].iter().map(Dim::fixed).collect();
    let mut out = vec![xs[0].clone(), m];
    match (spatial, kernel) {
        (Some(sp), Some(k)) => {
            let w = crate::geometry::transposed_window(
                &sp,
                &k,
                &c.strides,
                &c.dilations,
                &c.pads,
                &c.output_padding,
                &c.output_shape,
                c.auto_pad,
            )
            .map_err(|e| InferError(e.to_string()))?;
            out.extend(w.out.into_iter().map(Dim::Fixed));
        }
        _ if c.output_shape.len() == nd || c.output_shape.len() == nd + 2 => {
            let given = &c.output_shape[c.output_shape.len() - nd..];
            for &o in given {
                if !(0..=crate::tensor::MAX_ELEMENTS as i64).contains(&o) {
                    return err(format!("output_shape entry {o} is not a size"));
                }
                out.push(Dim::Fixed(o as usize));
            }
        }
        _ => out.extend(std::iter::repeat_n(Dim::Unknown, nd)),
    }
    one(TensorType {
        dtype: x.ty.dtype,
        shape: Some(out),
    })
}

/// `InstanceNormalization`: like its input; scale and B are vectors of its channels.
pub(super) fn instance_normalization(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
    if !x.ty.dtype.is_float() {
        return err(format!("InstanceNormalization of {}, not a float", x.ty));
    }
    if x.ty.rank().is_some_and(|r| r < 3) {
        return err(format!(
            "InstanceNormalization needs an input of rank ≥ 3 (N, C, spatial…), got {}",
            x.ty
        ));
    }
    let channels =
        x.ty.shape
            .as_ref()
            .and_then(|s| s.get(1))
            .and_then(Dim::fixed);
    for (slot, what) in [(1, "scale"), (2, "B")] {
        let p = req(args, slot)?;
        if p.ty.dtype != x.ty.dtype {
            return err(format!(
                "InstanceNormalization's {what} is {}, not {}",
                p.ty.dtype, x.ty.dtype
            ));
        }
        if let (Some(c), Some(shape)) = (channels, p.ty.shape.as_ref())
            && (shape.len() != 1 || shape[0].fixed().is_some_and(|n| n != c))
        {
            return err(format!(
                "InstanceNormalization's {what} is not a vector of the {c} channels"
            ));
        }
    }
    one(same_as(x))
}

/// `MaxPool`.
pub(super) fn max_pool(
    p: &op::MaxPool,
    args: &[Option<Arg<'_>>],
    n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `AveragePool`.
pub(super) fn average_pool(
    p: &op::AveragePool,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `GlobalAveragePool`.
pub(super) fn global_pool(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0)?;
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

/// `Gemm`.
pub(super) fn gemm(
    g: &op::Gemm,
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
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

/// `MatMul`.
pub(super) fn matmul(
    args: &[Option<Arg<'_>>],
    _n_out: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = req(args, 0);
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
