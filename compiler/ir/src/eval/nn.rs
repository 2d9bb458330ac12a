//! Neural-network layers for the reference evaluator: convolution (via an explicit im2col
//! matrix) and transposed convolution (a scatter), Gemm/MatMul, normalization, pooling and
//! softmax.

use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Ix2, IxDyn, LinalgScalar};

use super::math::{broadcast_shape, norm_axes};
use super::scalar::Scalar;
use super::{OpError, invalid, opt, req, unsupported};
use crate::geometry::{Window, transposed_window, unravel, window};
use crate::op::{
    AveragePool, BatchNormalization, Conv, ConvTranspose, Gemm, InstanceNormalization, Lrn, MaxPool,
};
use crate::{Tensor, with_numeric};

/// Float element types (the layers below are defined for these).
pub(crate) trait Float: Scalar + LinalgScalar {}
impl Float for f32 {}
impl Float for f64 {}

macro_rules! with_float {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::F32($a) => $body,
            Tensor::F64($a) => $body,
            other => unsupported(format!("element type {} (f32 and f64 only)", other.dtype())),
        }
    };
}

fn same<'a, T: Float>(t: &'a Tensor, what: &str) -> Result<&'a ArrayD<T>, OpError> {
    T::view(t).ok_or_else(|| {
        OpError::Invalid(format!(
            "{what} must have the input's element type, found {}",
            t.dtype()
        ))
    })
}

fn as_usize(v: &[i64]) -> Vec<usize> {
    v.iter().map(|&x| x.max(0) as usize).collect()
}

/// For every (tap, output position) pair, the input spatial offset, or `None` in padding.
fn tap_offsets(win: &Window, spatial: &[usize]) -> Vec<Option<usize>> {
    let (k_total, p_total) = win.taps();
    let nd = spatial.len();
    let mut out = vec![None; k_total * p_total];
    let (mut ki, mut pi) = (vec![0; nd], vec![0; nd]);
    for k in 0..k_total {
        unravel(k, &win.kernel, &mut ki);
        for p in 0..p_total {
            unravel(p, &win.out, &mut pi);
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..nd {
                let c = win.coord(d, pi[d], ki[d]);
                if c < 0 || c >= spatial[d] as i64 {
                    inside = false;
                    break;
                }
                off = off * spatial[d] + c as usize;
            }
            if inside {
                out[k * p_total + p] = Some(off);
            }
        }
    }
    out
}

fn check_rank(x: &[usize], what: &str) -> Result<(), OpError> {
    if x.len() < 3 {
        return invalid(format!(
            "{what} needs an input of rank ≥ 3 (N, C, spatial…), got rank {}",
            x.len()
        ));
    }
    Ok(())
}

/// ONNX `Conv`.
pub(crate) fn conv(attrs: &Conv, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    fn go<T: Float>(
        attrs: &Conv,
        x: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Tensor, OpError> {
        let w = same::<T>(req(inputs, 1)?, "W")?;
        let b = opt(inputs, 2).map(|b| same::<T>(b, "B")).transpose()?;
        let xs = x.shape();
        check_rank(xs, "Conv")?;
        let ws = w.shape();
        if ws.len() != xs.len() {
            return invalid(format!("W has rank {}, X has rank {}", ws.len(), xs.len()));
        }
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let g = attrs.group;
        if g < 1 || c % g as usize != 0 || m % g as usize != 0 {
            return invalid(format!(
                "group {g} must divide input channels {c} and output channels {m}"
            ));
        }
        let g = g as usize;
        let (cg, mg) = (c / g, m / g);
        if ws[1] != cg {
            return invalid(format!(
                "W expects {} input channels per group, X has {cg}",
                ws[1]
            ));
        }
        let kernel = if attrs.kernel_shape.is_empty() {
            ws[2..].to_vec()
        } else {
            as_usize(&attrs.kernel_shape)
        };
        if kernel != ws[2..] {
            return invalid(format!(
                "kernel_shape {kernel:?} does not match W's {:?}",
                &ws[2..]
            ));
        }
        if let Some(b) = b
            && b.shape() != [m]
        {
            return invalid(format!("B must have shape [{m}], found {:?}", b.shape()));
        }
        let spatial = &xs[2..];
        let win = window(
            spatial,
            &kernel,
            &attrs.strides,
            &attrs.dilations,
            &attrs.pads,
            attrs.auto_pad,
            false,
        )
        .map_err(|e| OpError::Invalid(e.to_string()))?;
        let offs = tap_offsets(&win, spatial);
        let (kt, pt) = win.taps();
        let s_in: usize = spatial.iter().product();
        let x = x.as_standard_layout();
        let xf = x
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous input".into()))?;
        let w2 = w
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((m, cg * kt))
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        super::check_numel(&[n, m, pt])?;
        let mut out = vec![<T as Scalar>::zero(); n * m * pt];
        let mut cols = Array2::<T>::zeros((cg * kt, pt));
        for ni in 0..n {
            for gi in 0..g {
                cols.fill(<T as Scalar>::zero());
                for ci in 0..cg {
                    let base = (ni * c + gi * cg + ci) * s_in;
                    for k in 0..kt {
                        let mut row = cols.row_mut(ci * kt + k);
                        for (p, slot) in row.iter_mut().enumerate() {
                            if let Some(o) = offs[k * pt + p] {
                                *slot = xf[base + o];
                            }
                        }
                    }
                }
                let wg = w2.slice(ndarray::s![gi * mg..(gi + 1) * mg, ..]);
                let y = wg.dot(&cols);
                for mi in 0..mg {
                    let oc = gi * mg + mi;
                    let bias = b.map_or(<T as Scalar>::zero(), |b| b[[oc]]);
                    let dst = &mut out[(ni * m + oc) * pt..(ni * m + oc + 1) * pt];
                    for (d, &v) in dst.iter_mut().zip(y.row(mi)) {
                        *d = v + bias;
                    }
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend(&win.out);
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(&shape), out)
                .map_err(|e| OpError::Invalid(e.to_string()))?,
        ))
    }
    with_float!(req(inputs, 0)?, x => go(attrs, x, inputs))
}

/// ONNX `ConvTranspose`: every input cell, times each kernel tap, is added to the output
/// cell `i·stride + k·dilation − pad_begin` (when that lies in the output), per group; then
/// the bias. Accumulated in f64 and rounded once.
pub(crate) fn conv_transpose(
    attrs: &ConvTranspose,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    fn go<T: Float>(
        attrs: &ConvTranspose,
        x: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Tensor, OpError> {
        let w = same::<T>(req(inputs, 1)?, "W")?;
        let b = opt(inputs, 2).map(|b| same::<T>(b, "B")).transpose()?;
        let xs = x.shape();
        check_rank(xs, "ConvTranspose")?;
        let ws = w.shape();
        if ws.len() != xs.len() {
            return invalid(format!("W has rank {}, X has rank {}", ws.len(), xs.len()));
        }
        let (n, c) = (xs[0], xs[1]);
        let g = attrs.group;
        if g < 1 || c % g as usize != 0 {
            return invalid(format!("group {g} must divide the input channels {c}"));
        }
        let g = g as usize;
        if ws[0] != c {
            return invalid(format!(
                "W has {} input channels (its first axis), X has {c}",
                ws[0]
            ));
        }
        let (cg, mg) = (c / g, ws[1]);
        let m = mg
            .checked_mul(g)
            .ok_or_else(|| OpError::Invalid("too many output channels".into()))?;
        let kernel = ws[2..].to_vec();
        if !attrs.kernel_shape.is_empty() && as_usize(&attrs.kernel_shape) != kernel {
            return invalid(format!(
                "kernel_shape {:?} does not match W's {kernel:?}",
                attrs.kernel_shape
            ));
        }
        if let Some(b) = b
            && b.shape() != [m]
        {
            return invalid(format!("B must have shape [{m}], found {:?}", b.shape()));
        }
        let spatial = &xs[2..];
        let win = transposed_window(
            spatial,
            &kernel,
            &attrs.strides,
            &attrs.dilations,
            &attrs.pads,
            &attrs.output_padding,
            &attrs.output_shape,
            attrs.auto_pad,
        )
        .map_err(|e| OpError::Invalid(e.to_string()))?;
        let nd = spatial.len();
        let s_in: usize = spatial.iter().product();
        let s_out: usize = win.out.iter().product();
        let kt: usize = kernel.iter().product();
        let mut shape = vec![n, m];
        shape.extend(&win.out);
        super::check_numel(&shape)?;
        super::check_numel(&[s_in, kt])?;
        // For every (input cell, tap): the output cell it lands on, if any.
        let mut lands = vec![None; s_in * kt];
        let (mut pi, mut ki) = (vec![0; nd], vec![0; nd]);
        for p in 0..s_in {
            unravel(p, spatial, &mut pi);
            for k in 0..kt {
                unravel(k, &kernel, &mut ki);
                let mut off = 0usize;
                let mut inside = true;
                for d in 0..nd {
                    let o = (pi[d] * win.strides[d] + ki[d] * win.dilations[d]) as i64
                        - win.pad_begin[d];
                    if o < 0 || o >= win.out[d] as i64 {
                        inside = false;
                        break;
                    }
                    off = off * win.out[d] + o as usize;
                }
                if inside {
                    lands[p * kt + k] = Some(off);
                }
            }
        }
        let x = x.as_standard_layout();
        let xf = x
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous input".into()))?;
        let w = w.as_standard_layout();
        let wf = w
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous weights".into()))?;
        let mut acc = vec![0f64; n * m * s_out];
        for ni in 0..n {
            for gi in 0..g {
                for ci in 0..cg {
                    let ic = gi * cg + ci;
                    let plane = &xf[(ni * c + ic) * s_in..(ni * c + ic + 1) * s_in];
                    for mi in 0..mg {
                        let oc = gi * mg + mi;
                        let taps = &wf[(ic * mg + mi) * kt..(ic * mg + mi + 1) * kt];
                        let dst = &mut acc[(ni * m + oc) * s_out..(ni * m + oc + 1) * s_out];
                        for (p, &v) in plane.iter().enumerate() {
                            let v = v.to_f64();
                            for (k, &wk) in taps.iter().enumerate() {
                                if let Some(o) = lands[p * kt + k] {
                                    dst[o] += v * wk.to_f64();
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(b) = b {
            for (i, chunk) in acc.chunks_mut(s_out.max(1)).enumerate() {
                let bias = b[[i % m]].to_f64();
                for v in chunk {
                    *v += bias;
                }
            }
        }
        let out: Vec<T> = acc.into_iter().map(T::from_f64).collect();
        Tensor::from_vec(&shape, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_float!(req(inputs, 0)?, x => go(attrs, x, inputs))
}

/// ONNX `InstanceNormalization`: each (sample, channel) plane becomes
/// `(x − mean) / sqrt(var + ε) · scale[c] + B[c]` with its own mean and (biased) variance,
/// in f64, rounded once.
pub(crate) fn instance_norm(
    attrs: &InstanceNormalization,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    fn go<T: Float>(
        eps: f64,
        x: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Tensor, OpError> {
        let xs = x.shape().to_vec();
        check_rank(&xs, "InstanceNormalization")?;
        let c = xs[1];
        let mut p = Vec::with_capacity(2);
        for (i, what) in [(1, "scale"), (2, "B")] {
            let t = same::<T>(req(inputs, i)?, what)?;
            if t.shape() != [c] {
                return invalid(format!(
                    "{what} must have shape [{c}], found {:?}",
                    t.shape()
                ));
            }
            p.push(t.iter().map(|v| v.to_f64()).collect::<Vec<f64>>());
        }
        let plane: usize = xs[2..].iter().product();
        let x = x.as_standard_layout();
        let xf = x
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous input".into()))?;
        let mut out = Vec::with_capacity(xf.len());
        for (i, row) in xf.chunks(plane.max(1)).enumerate().take(xs[0] * c) {
            let ch = i % c;
            let k = row.len().max(1) as f64;
            let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / k;
            let var = row
                .iter()
                .map(|v| (v.to_f64() - mean) * (v.to_f64() - mean))
                .sum::<f64>()
                / k;
            let r = p[0][ch] / (var + eps).sqrt();
            out.extend(
                row.iter()
                    .map(|v| T::from_f64((v.to_f64() - mean) * r + p[1][ch])),
            );
        }
        Tensor::from_vec(&xs, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_float!(req(inputs, 0)?, x => go(f64::from(attrs.epsilon), x, inputs))
}

/// ONNX `Gemm`: `alpha·A'·B' + beta·C`.
pub(crate) fn gemm(attrs: &Gemm, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    fn go<T: Float>(
        attrs: &Gemm,
        a: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Tensor, OpError> {
        let b = same::<T>(req(inputs, 1)?, "B")?;
        fn two<'t, T>(t: &'t ArrayD<T>, what: &str) -> Result<ndarray::ArrayView2<'t, T>, OpError> {
            t.view().into_dimensionality::<Ix2>().map_err(|_| {
                OpError::Invalid(format!("{what} must be 2-D, found shape {:?}", t.shape()))
            })
        }
        let mut a2 = two(a, "A")?;
        let mut b2 = two(b, "B")?;
        if attrs.transA != 0 {
            a2 = a2.reversed_axes();
        }
        if attrs.transB != 0 {
            b2 = b2.reversed_axes();
        }
        if a2.ncols() != b2.nrows() {
            return invalid(format!(
                "A' is {}×{} but B' is {}×{}",
                a2.nrows(),
                a2.ncols(),
                b2.nrows(),
                b2.ncols()
            ));
        }
        super::check_numel(&[a2.nrows(), b2.ncols()])?;
        let alpha = T::from_f64(f64::from(attrs.alpha));
        let beta = T::from_f64(f64::from(attrs.beta));
        let mut y = a2.dot(&b2).into_dyn();
        if attrs.alpha != 1.0 {
            y.mapv_inplace(|v| v * alpha);
        }
        if let Some(c) = opt(inputs, 2) {
            let c = same::<T>(c, "C")?;
            let cv = c.broadcast(y.raw_dim()).ok_or_else(|| {
                OpError::Invalid(format!(
                    "C of shape {:?} does not broadcast to {:?}",
                    c.shape(),
                    y.shape()
                ))
            })?;
            ndarray::Zip::from(&mut y)
                .and(&cv)
                .for_each(|y, &c| *y = *y + c * beta);
        }
        Ok(T::wrap(y))
    }
    with_float!(req(inputs, 0)?, a => go(attrs, a, inputs))
}

/// ONNX `MatMul` (numpy semantics: 1-D promotion, broadcast batch dims).
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    fn go<T: Float>(a: &ArrayD<T>, b: &Tensor) -> Result<Tensor, OpError> {
        let b = same::<T>(b, "B")?;
        let (mut av, mut bv) = (a.view(), b.view());
        let (a1, b1) = (av.ndim() == 1, bv.ndim() == 1);
        if av.ndim() == 0 || bv.ndim() == 0 {
            return invalid("MatMul operands must have rank ≥ 1");
        }
        if a1 {
            av = av.insert_axis(Axis(0));
        }
        if b1 {
            bv = bv.insert_axis(Axis(1));
        }
        let (ra, rb) = (av.ndim(), bv.ndim());
        let (m, k, k2, nn) = (
            av.shape()[ra - 2],
            av.shape()[ra - 1],
            bv.shape()[rb - 2],
            bv.shape()[rb - 1],
        );
        if k != k2 {
            return invalid(format!("inner dimensions differ: {k} and {k2}"));
        }
        let batch = broadcast_shape(&av.shape()[..ra - 2], &bv.shape()[..rb - 2])?;
        let mut full_a = batch.clone();
        full_a.extend([m, k]);
        let mut full_b = batch.clone();
        full_b.extend([k, nn]);
        let bad = || OpError::Invalid("broadcast failed".into());
        let ab = av.broadcast(IxDyn(&full_a)).ok_or_else(bad)?;
        let bb = bv.broadcast(IxDyn(&full_b)).ok_or_else(bad)?;
        let mut full = batch.clone();
        full.extend([m, nn]);
        super::check_numel(&full)?;
        let nb: usize = batch.iter().product();
        let mut out = Vec::with_capacity(nb * m * nn);
        let mut idx = vec![0; batch.len()];
        for f in 0..nb {
            unravel(f, &batch, &mut idx);
            fn pick<'v, T>(
                v: &ArrayViewD<'v, T>,
                idx: &[usize],
            ) -> Result<ndarray::ArrayView2<'v, T>, OpError> {
                let mut s = v.clone();
                for &i in idx {
                    s = s.index_axis_move(Axis(0), i);
                }
                s.into_dimensionality::<Ix2>()
                    .map_err(|e| OpError::Invalid(e.to_string()))
            }
            let y = pick(&ab, &idx)?.dot(&pick(&bb, &idx)?);
            out.extend(y.iter().copied());
        }
        let mut shape = batch;
        if !a1 {
            shape.push(m);
        }
        if !b1 {
            shape.push(nn);
        }
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(&shape), out)
                .map_err(|e| OpError::Invalid(e.to_string()))?,
        ))
    }
    with_float!(a, x => go(x, b))
}

/// ONNX `BatchNormalization` in inference mode.
pub(crate) fn batch_norm(
    attrs: &BatchNormalization,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    if let Some(t) = opt(inputs, 5)
        && t.to_i64_vec().iter().any(|&v| v != 0)
    {
        return unsupported(
            "training-mode BatchNormalization (mcc compiles trained models for inference)",
        );
    }
    fn go<T: Float>(
        eps: f64,
        x: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
    ) -> Result<Tensor, OpError> {
        let xs = x.shape();
        if xs.len() < 2 {
            return invalid("BatchNormalization needs rank ≥ 2");
        }
        let c = xs[1];
        let mut p = Vec::with_capacity(4);
        for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            let t = same::<T>(req(inputs, i)?, what)?;
            if t.shape() != [c] {
                return invalid(format!(
                    "{what} must have shape [{c}], found {:?}",
                    t.shape()
                ));
            }
            p.push(t.iter().map(|v| v.to_f64()).collect::<Vec<f64>>());
        }
        let mut y = x.to_owned();
        for (ci, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
            let k = p[0][ci] / (p[3][ci] + eps).sqrt();
            let (mean, bias) = (p[2][ci], p[1][ci]);
            lane.mapv_inplace(|v| T::from_f64((v.to_f64() - mean) * k + bias));
        }
        Ok(T::wrap(y))
    }
    with_float!(req(inputs, 0)?, x => go(f64::from(attrs.epsilon), x, inputs))
}

fn pool_window(
    x: &[usize],
    kernel_shape: &[i64],
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    auto_pad: crate::AutoPad,
    ceil: i64,
) -> Result<Window, OpError> {
    check_rank(x, "pooling")?;
    if kernel_shape.is_empty() {
        return invalid("kernel_shape is required");
    }
    window(
        &x[2..],
        &as_usize(kernel_shape),
        strides,
        dilations,
        pads,
        auto_pad,
        ceil != 0,
    )
    .map_err(|e| OpError::Invalid(e.to_string()))
}

/// ONNX `MaxPool`, with the optional `Indices` output.
pub(crate) fn max_pool(
    attrs: &MaxPool,
    x: &Tensor,
    n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    let win = pool_window(
        x.shape(),
        &attrs.kernel_shape,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        attrs.ceil_mode,
    )?;
    fn go<T: Scalar>(a: &ArrayD<T>, win: &Window, col_major: bool, want_idx: bool) -> Vec<Tensor> {
        let xs = a.shape();
        let spatial = &xs[2..];
        let offs = tap_offsets(win, spatial);
        let (kt, pt) = win.taps();
        let s_in: usize = spatial.iter().product();
        let a = a.as_standard_layout();
        let af: Vec<T> = a.iter().copied().collect();
        let planes = xs[0] * xs[1];
        let mut out = Vec::with_capacity(planes * pt);
        let mut idx = Vec::with_capacity(if want_idx { planes * pt } else { 0 });
        let mut mi = vec![0; spatial.len()];
        for plane in 0..planes {
            let base = plane * s_in;
            for p in 0..pt {
                let mut best: Option<(T, usize)> = None;
                for k in 0..kt {
                    if let Some(o) = offs[k * pt + p] {
                        let v = af[base + o];
                        // The first NaN in the window wins it (ONNX: the window's max).
                        let nan = |x: T| T::FLOAT && x.to_f64().is_nan();
                        if best.is_none_or(|(b, _)| !nan(b) && (v > b || nan(v))) {
                            best = Some((v, o));
                        }
                    }
                }
                let (v, o) = best.unwrap_or((T::from_f64(f64::NEG_INFINITY), 0));
                out.push(v);
                if want_idx {
                    let local = if col_major {
                        unravel(o, spatial, &mut mi);
                        let (mut acc, mut stride) = (0, 1);
                        for d in 0..spatial.len() {
                            acc += mi[d] * stride;
                            stride *= spatial[d];
                        }
                        acc
                    } else {
                        o
                    };
                    idx.push((base + local) as i64);
                }
            }
        }
        let mut shape = vec![xs[0], xs[1]];
        shape.extend(&win.out);
        let mut res = vec![];
        if let Ok(t) = Tensor::from_vec(&shape, out) {
            res.push(t);
        }
        if want_idx && let Ok(t) = Tensor::from_vec(&shape, idx) {
            res.push(t);
        }
        res
    }
    let want_idx = n_outputs > 1;
    let res = with_numeric!(x, a => go(a, &win, attrs.storage_order != 0, want_idx), return unsupported("MaxPool of bool"));
    Ok(res)
}

/// ONNX `AveragePool`.
pub(crate) fn average_pool(attrs: &AveragePool, x: &Tensor) -> Result<Tensor, OpError> {
    let win = pool_window(
        x.shape(),
        &attrs.kernel_shape,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        attrs.ceil_mode,
    )?;
    fn go<T: Float>(a: &ArrayD<T>, win: &Window, include_pad: bool) -> Result<Tensor, OpError> {
        let xs = a.shape();
        let spatial = &xs[2..];
        let nd = spatial.len();
        let offs = tap_offsets(win, spatial);
        let (kt, pt) = win.taps();
        // Divisor per output position: taps inside the input, or inside the explicitly
        // padded input when count_include_pad is set.
        let mut div = vec![0usize; pt];
        let (mut ki, mut pi) = (vec![0; nd], vec![0; nd]);
        for (p, dv) in div.iter_mut().enumerate() {
            unravel(p, &win.out, &mut pi);
            for k in 0..kt {
                unravel(k, &win.kernel, &mut ki);
                let ok = (0..nd).all(|d| {
                    let c = win.coord(d, pi[d], ki[d]);
                    if include_pad {
                        c >= -(win.pad_begin[d] as i64) && c < (spatial[d] + win.pad_end[d]) as i64
                    } else {
                        c >= 0 && c < spatial[d] as i64
                    }
                });
                if ok {
                    *dv += 1;
                }
            }
        }
        let s_in: usize = spatial.iter().product();
        let a = a.as_standard_layout();
        let af = a
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous input".into()))?;
        let planes = xs[0] * xs[1];
        let mut out = Vec::with_capacity(planes * pt);
        for plane in 0..planes {
            let base = plane * s_in;
            for p in 0..pt {
                let mut s = 0f64;
                for k in 0..kt {
                    if let Some(o) = offs[k * pt + p] {
                        s += af[base + o].to_f64();
                    }
                }
                out.push(T::from_f64(if div[p] == 0 {
                    0.0
                } else {
                    s / div[p] as f64
                }));
            }
        }
        let mut shape = vec![xs[0], xs[1]];
        shape.extend(&win.out);
        Tensor::from_vec(&shape, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_float!(x, a => go(a, &win, attrs.count_include_pad != 0))
}

/// ONNX `GlobalAveragePool` / `GlobalMaxPool`.
pub(crate) fn global_pool(x: &Tensor, max: bool) -> Result<Tensor, OpError> {
    check_rank(x.shape(), "global pooling")?;
    fn go<T: Float>(a: &ArrayD<T>, max: bool) -> Result<Tensor, OpError> {
        let xs = a.shape().to_vec();
        let s: usize = xs[2..].iter().product();
        let a = a.as_standard_layout();
        let af = a
            .as_slice()
            .ok_or_else(|| OpError::Invalid("non-contiguous input".into()))?;
        let out: Vec<T> = af
            .chunks(s.max(1))
            .take(xs[0] * xs[1])
            .map(|ch| {
                if max {
                    ch.iter()
                        .copied()
                        .fold(T::from_f64(f64::NEG_INFINITY), |m, v| {
                            // A NaN wins (ONNX: the plane's max).
                            if m.to_f64().is_nan() || !(v > m || v.to_f64().is_nan()) {
                                m
                            } else {
                                v
                            }
                        })
                } else {
                    T::from_f64(ch.iter().map(|v| v.to_f64()).sum::<f64>() / s as f64)
                }
            })
            .collect();
        let mut shape = vec![xs[0], xs[1]];
        shape.extend(std::iter::repeat_n(1, xs.len() - 2));
        Tensor::from_vec(&shape, out).map_err(|e| OpError::Invalid(e.to_string()))
    }
    with_float!(x, a => go(a, max))
}

/// ONNX `LRN` across channels.
pub(crate) fn lrn(attrs: &Lrn, x: &Tensor) -> Result<Tensor, OpError> {
    check_rank(x.shape(), "LRN")?;
    if attrs.size < 1 {
        return invalid("LRN size must be positive");
    }
    fn go<T: Float>(a: &ArrayD<T>, at: &Lrn) -> Tensor {
        let xs = a.shape();
        let c = xs[1];
        let size = at.size as usize;
        let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
        let (alpha, beta, bias) = (f64::from(at.alpha), f64::from(at.beta), f64::from(at.bias));
        let mut y = a.to_owned();
        let mut idx = vec![0; xs.len()];
        for (flat, out) in y.iter_mut().enumerate() {
            unravel(flat, xs, &mut idx);
            let ci = idx[1];
            let mut sq = 0f64;
            let mut j = idx.clone();
            for cc in ci.saturating_sub(lo)..=(ci + hi).min(c - 1) {
                j[1] = cc;
                let v = a[IxDyn(&j)].to_f64();
                sq += v * v;
            }
            let v = a[IxDyn(&idx)].to_f64();
            *out = T::from_f64(v / (bias + alpha / size as f64 * sq).powf(beta));
        }
        T::wrap(y)
    }
    with_float!(x, a => Ok(go(a, attrs)))
}

/// `LayerNormalization`: over the axes from `axis` on, `(x − mean) / sqrt(var + ε) · Scale`
/// plus `B` (Scale and B broadcast to those axes), in f64, rounded once; `Mean` and
/// `InvStdDev` when the node has them.
pub(crate) fn layer_norm(
    attrs: &crate::op::LayerNormalization,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    fn go<T: Float>(
        attrs: &crate::op::LayerNormalization,
        x: &ArrayD<T>,
        inputs: &[Option<&Tensor>],
        n_outputs: usize,
    ) -> Result<Vec<Tensor>, OpError> {
        let shape = x.shape().to_vec();
        let ax = norm_axes(&[attrs.axis], shape.len().max(1))?[0];
        let inner_shape = &shape[ax..];
        let inner: usize = inner_shape.iter().product();
        let outer: usize = shape[..ax].iter().product();
        let param = |i: usize, what: &str| -> Result<Option<Vec<f64>>, OpError> {
            let Some(t) = opt(inputs, i) else {
                return Ok(None);
            };
            let a = same::<T>(t, what)?;
            let b = a.broadcast(IxDyn(inner_shape)).ok_or_else(|| {
                OpError::Invalid(format!(
                    "{what} {:?} does not broadcast to the normalized axes {inner_shape:?}",
                    a.shape()
                ))
            })?;
            Ok(Some(b.iter().map(|v| v.to_f64()).collect()))
        };
        let scale = param(1, "Scale")?
            .ok_or_else(|| OpError::Invalid("LayerNormalization needs Scale".into()))?;
        let bias = param(2, "B")?;
        let eps = f64::from(attrs.epsilon);
        let flat: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        let mut y = Vec::with_capacity(flat.len());
        let (mut means, mut inv) = (Vec::with_capacity(outer), Vec::with_capacity(outer));
        for row in flat.chunks(inner.max(1)).take(outer) {
            let n = row.len().max(1) as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let r = 1.0 / (var + eps).sqrt();
            for (i, v) in row.iter().enumerate() {
                let b = bias.as_ref().map_or(0.0, |b| b[i]);
                y.push(T::from_f64((v - mean) * r * scale[i] + b));
            }
            means.push(T::from_f64(mean));
            inv.push(T::from_f64(r));
        }
        let wrap = |v: Vec<T>, dims: &[usize]| -> Result<Tensor, OpError> {
            ArrayD::from_shape_vec(IxDyn(dims), v)
                .map(T::wrap)
                .map_err(|e| OpError::Invalid(e.to_string()))
        };
        let mut stats_shape = shape.clone();
        for d in stats_shape.iter_mut().skip(ax) {
            *d = 1;
        }
        let mut out = vec![wrap(y, &shape)?];
        if n_outputs > 1 {
            out.push(wrap(means, &stats_shape)?);
        }
        if n_outputs > 2 {
            out.push(wrap(inv, &stats_shape)?);
        }
        Ok(out)
    }
    with_float!(req(inputs, 0)?, x => go(attrs, x, inputs, n_outputs))
}

/// ONNX `Softmax` / `LogSoftmax`, current or opset < 13 (2-D coercion) semantics.
pub(crate) fn softmax(
    x: &Tensor,
    axis: i64,
    legacy_2d: bool,
    log: bool,
) -> Result<Tensor, OpError> {
    fn go<T: Float>(a: &ArrayD<T>, axis: i64, legacy: bool, log: bool) -> Result<Tensor, OpError> {
        let rank = a.ndim();
        if rank == 0 {
            return invalid("softmax of a scalar");
        }
        let ax = norm_axes(&[axis], rank)?[0];
        let (mut work, ax) = if legacy {
            let outer: usize = a.shape()[..ax].iter().product();
            let inner: usize = a.shape()[ax..].iter().product();
            let two = a
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&[outer, inner]))
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            (two, 1)
        } else {
            (a.to_owned(), ax)
        };
        for mut lane in work.lanes_mut(Axis(ax)) {
            let m = lane
                .iter()
                .map(|v| v.to_f64())
                .fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = lane.iter().map(|v| (v.to_f64() - m).exp()).sum();
            lane.mapv_inplace(|v| {
                let z = v.to_f64() - m;
                T::from_f64(if log { z - s.ln() } else { z.exp() / s })
            });
        }
        if legacy {
            work = work
                .into_shape_with_order(IxDyn(a.shape()))
                .map_err(|e| OpError::Invalid(e.to_string()))?;
        }
        Ok(T::wrap(work))
    }
    with_float!(x, a => go(a, axis, legacy_2d, log))
}
