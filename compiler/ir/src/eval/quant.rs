//! Quantized operators for the reference evaluator: `QuantizeLinear`, `DequantizeLinear`,
//! `QLinearConv`, `QLinearMatMul` and mcc's `DynamicQuantMatMul`, element by element through `mcc_runtime::quant` (the
//! one definition of the integer arithmetic).
//!
//! The integer layers are computed by the float layers in f64 on `x − zx` and `w − zw`:
//! every product and partial sum is an integer below 2^53, so f64 holds them exactly and the
//! result is the exact integer accumulator, whatever order the sum takes. It is then wrapped
//! to i32 (as the kernels' i32 accumulators wrap) before the bias and requantization.

use mcc_runtime::quant::{self, Requant};

use super::{OpError, invalid, opt, req, unsupported};
use crate::op::{Conv, DequantizeLinear, Op, QLinearConv, QLinearMatMul, QuantizeLinear};
use crate::{DType, Tensor};

/// Per-element scale and zero point: one for the tensor or one per index along an axis.
struct Params {
    scales: Vec<f32>,
    zps: Vec<i32>,
    /// The axis when per axis.
    axis: Option<usize>,
}

impl Params {
    fn read(
        scale: &Tensor,
        zp: Option<&Tensor>,
        shape: &[usize],
        axis: i64,
        what: &str,
    ) -> Result<Params, OpError> {
        let scales: Vec<f32> = match scale.as_f32() {
            Some(a) => a.iter().copied().collect(),
            None => return invalid(format!("{what} scale must be f32, found {}", scale.dtype())),
        };
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return invalid(format!(
                "{what} scale {bad} is not a positive finite number"
            ));
        }
        let zps: Vec<i32> = match zp {
            None => vec![0; scales.len()],
            Some(z) => z.to_i64_vec().into_iter().map(|v| v as i32).collect(),
        };
        if zps.len() != scales.len() {
            return invalid(format!(
                "{what} zero point has {} element(s), its scale {}",
                zps.len(),
                scales.len()
            ));
        }
        if scale.shape().len() > 1 {
            return unsupported(format!(
                "{what} scale of rank {} (blocked quantization)",
                scale.shape().len()
            ));
        }
        let axis = if scales.len() == 1 {
            None
        } else {
            let r = shape.len() as i64;
            let a = if axis < 0 { axis + r } else { axis };
            if !(0..r).contains(&a) {
                return invalid(format!("axis {axis} out of range for rank {r}"));
            }
            let a = a as usize;
            if shape[a] != scales.len() {
                return invalid(format!(
                    "{what} has {} scale(s), axis {a} has {} element(s)",
                    scales.len(),
                    shape[a]
                ));
            }
            Some(a)
        };
        Ok(Params { scales, zps, axis })
    }

    /// `(scale, zp)` of each element of a tensor of `shape`, in row-major order.
    fn each<'a>(&'a self, shape: &'a [usize]) -> impl Iterator<Item = (f32, i32)> + 'a {
        let (inner, len) = match self.axis {
            Some(a) => (shape[a + 1..].iter().product::<usize>(), shape[a]),
            None => (1, 1),
        };
        let n: usize = shape.iter().product();
        (0..n).map(move |i| {
            let k = if len == 1 { 0 } else { i / inner % len };
            (self.scales[k], self.zps[k])
        })
    }
}

/// The element type of a zero point (u8 without one); an error for other types.
fn code_type(zp: Option<&Tensor>, output_dtype: i64) -> Result<DType, OpError> {
    let t = match (zp, output_dtype) {
        (Some(z), _) => z.dtype(),
        (None, 0 | 2) => DType::U8,
        (None, 3) => DType::I8,
        (None, other) => return unsupported(format!("QuantizeLinear to ONNX type {other}")),
    };
    match t {
        DType::U8 | DType::I8 => Ok(t),
        other => unsupported(format!("quantization to {other} (u8 and i8 only)")),
    }
}

fn codes(dtype: DType, shape: &[usize], v: Vec<i32>) -> Result<Tensor, OpError> {
    let r = match dtype {
        DType::U8 => Tensor::from_vec(shape, v.into_iter().map(|x| x as u8).collect()),
        DType::I8 => Tensor::from_vec(shape, v.into_iter().map(|x| x as i8).collect()),
        _ => Tensor::from_vec(shape, v),
    };
    r.map_err(|e| OpError::Invalid(e.to_string()))
}

/// ONNX `QuantizeLinear`.
pub(crate) fn quantize_linear(
    a: &QuantizeLinear,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    if a.block_size != 0 {
        return unsupported("blocked quantization (block_size)");
    }
    let x = req(inputs, 0)?;
    let Some(xf) = x.as_f32() else {
        return unsupported(format!("QuantizeLinear of {} (f32 only)", x.dtype()));
    };
    let zp = opt(inputs, 2);
    let dtype = code_type(zp, a.output_dtype)?;
    let p = Params::read(req(inputs, 1)?, zp, x.shape(), a.axis, "y")?;
    let (lo, hi) = quant::range(dtype == DType::I8);
    let xs = xf.as_standard_layout();
    let v = xs
        .iter()
        .zip(p.each(x.shape()))
        .map(|(&x, (s, z))| quant::quantize(x, s, z, lo, hi))
        .collect();
    codes(dtype, x.shape(), v)
}

/// ONNX `DequantizeLinear`.
pub(crate) fn dequantize_linear(
    a: &DequantizeLinear,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    if a.block_size != 0 {
        return unsupported("blocked quantization (block_size)");
    }
    let x = req(inputs, 0)?;
    if !matches!(x.dtype(), DType::U8 | DType::I8 | DType::I32) {
        return unsupported(format!("DequantizeLinear of {} (u8, i8, i32)", x.dtype()));
    }
    let zp = opt(inputs, 2);
    if let Some(z) = zp
        && z.dtype() != x.dtype()
    {
        return invalid(format!("zero point is {}, input {}", z.dtype(), x.dtype()));
    }
    let p = Params::read(req(inputs, 1)?, zp, x.shape(), a.axis, "x")?;
    let v: Vec<f32> = x
        .to_i64_vec()
        .into_iter()
        .zip(p.each(x.shape()))
        .map(|(q, (s, z))| quant::dequantize(q as i32, s, z))
        .collect();
    Tensor::from_vec(x.shape(), v).map_err(|e| OpError::Invalid(e.to_string()))
}

/// `q − zp` as f64, per tensor or along `axis`.
fn centred(q: &Tensor, zp: &Tensor, axis: usize, what: &str) -> Result<Tensor, OpError> {
    if !matches!(q.dtype(), DType::U8 | DType::I8) {
        return unsupported(format!("{what} of type {} (u8 and i8)", q.dtype()));
    }
    if zp.dtype() != q.dtype() {
        return invalid(format!(
            "{what}'s zero point is {}, {what} {}",
            zp.dtype(),
            q.dtype()
        ));
    }
    let ones = Tensor::full(&[zp.len().max(1)], 1.0f32);
    let p = Params::read(&ones, Some(zp), q.shape(), axis as i64, what)?;
    let v: Vec<f64> = q
        .to_i64_vec()
        .into_iter()
        .zip(p.each(q.shape()))
        .map(|(q, (_, z))| (q - i64::from(z)) as f64)
        .collect();
    Tensor::from_vec(q.shape(), v).map_err(|e| OpError::Invalid(e.to_string()))
}

fn scalar_f32(t: &Tensor, what: &str) -> Result<f32, OpError> {
    match t.as_f32() {
        Some(a) if a.len() == 1 => {
            let s = a.iter().next().copied().unwrap_or(0.0);
            if s.is_finite() && s > 0.0 {
                Ok(s)
            } else {
                invalid(format!("{what} {s} is not a positive finite number"))
            }
        }
        _ => invalid(format!(
            "{what} must be one f32, found {:?} {}",
            t.shape(),
            t.dtype()
        )),
    }
}

/// Requantizes exact accumulators (f64, integers) with the bias and per-channel multipliers.
#[allow(clippy::too_many_arguments)]
fn requantize(
    acc: Tensor,
    bias: Option<&Tensor>,
    channel_axis: usize,
    sx: f32,
    w_scale: &Tensor,
    y_scale: &Tensor,
    y_zp: &Tensor,
    act: quant::QAct,
) -> Result<Tensor, OpError> {
    let shape = acc.shape().to_vec();
    let channels = shape.get(channel_axis).copied().unwrap_or(1);
    let sw: Vec<f32> = match w_scale.as_f32() {
        Some(a) => a.iter().copied().collect(),
        None => return invalid("w_scale must be f32"),
    };
    if sw.len() != 1 && sw.len() != channels {
        return invalid(format!(
            "w has {} scale(s) for {channels} output channel(s)",
            sw.len()
        ));
    }
    let sy = scalar_f32(y_scale, "y_scale")?;
    if y_zp.len() != 1 {
        return invalid("y_zero_point must be one value");
    }
    let dtype = code_type(Some(y_zp), 0)?;
    let zy = y_zp.to_i64_vec()[0] as i32;
    let (lo, hi) = act.bounds(sy, zy, dtype == DType::I8);
    let mults = (0..channels)
        .map(|c| {
            let s = sw[if sw.len() == 1 { 0 } else { c }];
            Requant::of_scales(sx, s, sy).ok_or_else(|| {
                OpError::Invalid(format!(
                    "requantization multiplier {sx}·{s}/{sy} is not a positive number below 2^30"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let b: Option<Vec<i64>> = match bias {
        None => None,
        Some(b) if b.dtype() != DType::I32 => {
            return invalid(format!("B must be i32, found {}", b.dtype()));
        }
        Some(b) if b.len() != channels => {
            return invalid(format!(
                "B has {} element(s) for {channels} channel(s)",
                b.len()
            ));
        }
        Some(b) => Some(b.to_i64_vec()),
    };
    let inner: usize = shape[channel_axis + 1..].iter().product();
    let v: Vec<i32> = acc
        .to_f64_vec()
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let c = i / inner % channels;
            // Exact integer; wrapped to i32 as the kernels' accumulators wrap.
            let mut acc = (a as i64) as i32;
            if let Some(b) = &b {
                acc = acc.wrapping_add(b[c] as i32);
            }
            mults[c].apply(acc, zy, lo, hi)
        })
        .collect();
    codes(dtype, &shape, v)
}

/// ONNX `QLinearConv`, with mcc's requantization.
pub(crate) fn qlinear_conv(
    a: &QLinearConv,
    act: quant::QAct,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let x = centred(req(inputs, 0)?, req(inputs, 2)?, 0, "x")?;
    let w = centred(req(inputs, 3)?, req(inputs, 5)?, 0, "w")?;
    let sx = scalar_f32(req(inputs, 1)?, "x_scale")?;
    let conv = Conv {
        auto_pad: a.auto_pad,
        dilations: a.dilations.clone(),
        group: a.group,
        kernel_shape: a.kernel_shape.clone(),
        pads: a.pads.clone(),
        strides: a.strides.clone(),
        ..Conv::default()
    };
    let acc = super::nn::conv(&conv, &[Some(&x), Some(&w)])?;
    requantize(
        acc,
        opt(inputs, 8),
        1,
        sx,
        req(inputs, 4)?,
        req(inputs, 6)?,
        req(inputs, 7)?,
        act,
    )
}

/// ONNX `QLinearMatMul`, with mcc's requantization and optional bias.
pub(crate) fn qlinear_matmul(
    _a: &QLinearMatMul,
    act: quant::QAct,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let a = req(inputs, 0)?;
    let b = req(inputs, 3)?;
    if a.shape().len() < 2 || b.shape().len() != 2 {
        return unsupported("QLinearMatMul other than (…, K) × (K, N)");
    }
    let x = centred(a, req(inputs, 2)?, 0, "a")?;
    let w = centred(b, req(inputs, 5)?, 1, "b")?;
    let sx = scalar_f32(req(inputs, 1)?, "a_scale")?;
    let acc = super::nn::matmul(&x, &w)?;
    let axis = acc.shape().len() - 1;
    requantize(
        acc,
        opt(inputs, 8),
        axis,
        sx,
        req(inputs, 4)?,
        req(inputs, 6)?,
        req(inputs, 7)?,
        act,
    )
}

/// mcc's `DynamicQuantMatMul`: each row of `a` quantized by its own range
/// (`quant::dynamic_row`), the exact accumulator wrapped to i32, then `quant::dequantize_acc`
/// and the clamp — the arithmetic of the kernels, element by element.
pub(crate) fn dynamic_quant_matmul(
    act: quant::QAct,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor, OpError> {
    let a = req(inputs, 0)?;
    let b = req(inputs, 1)?;
    let shape = a.shape().to_vec();
    let (Some(&k), [kb, n], true) = (shape.last(), b.shape(), shape.len() >= 2) else {
        return unsupported("DynamicQuantMatMul other than (…, M, K) × (K, N)");
    };
    let n = *n;
    if *kb != k {
        return invalid(format!(
            "DynamicQuantMatMul of {shape:?} by {:?}: the depths differ",
            b.shape()
        ));
    }
    let x: Vec<f32> = match a.as_f32() {
        Some(t) => t.iter().copied().collect(),
        None => return invalid(format!("a must be f32, found {}", a.dtype())),
    };
    if b.dtype() != DType::I8 {
        return invalid(format!("b must be i8 codes, found {}", b.dtype()));
    }
    let w: Vec<i64> = b.to_i64_vec();
    let sw: Vec<f32> = match req(inputs, 2)?.as_f32() {
        Some(t) => t.iter().copied().collect(),
        None => return invalid("b_scale must be f32"),
    };
    if sw.len() != 1 && sw.len() != n {
        return invalid(format!("b has {} scale(s) for {n} column(s)", sw.len()));
    }
    if let Some(bad) = sw.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return invalid(format!("b_scale {bad} is not a positive finite number"));
    }
    let bias: Vec<f32> = match opt(inputs, 3) {
        None => vec![0.0; n],
        Some(t) => match t.as_f32() {
            Some(v) if v.len() == n => v.iter().copied().collect(),
            _ => return invalid(format!("bias must be {n} f32 values")),
        },
    };
    let clamp = quant::FloatClamp::of(act);
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        let row = &x[r * k..(r + 1) * k];
        let (s, z) = quant::dynamic_row(quant::row_range(row));
        let codes: Vec<i64> = row
            .iter()
            .map(|&v| i64::from(quant::quantize(v, s, z, 0, 255) - z))
            .collect();
        for j in 0..n {
            // Exact in i64 (|Σ| < K·2^15), wrapped to i32 as the kernels' accumulators.
            let acc: i64 = (0..k).map(|kk| codes[kk] * w[kk * n + j]).sum();
            let scale = s * sw[if sw.len() == 1 { 0 } else { j }];
            out.push(clamp.apply(quant::dequantize_acc(acc as i32, scale, bias[j])));
        }
    }
    let mut oshape = shape;
    if let Some(l) = oshape.last_mut() {
        *l = n;
    }
    Tensor::from_vec(&oshape, out).map_err(|e| OpError::Invalid(e.to_string()))
}

/// Evaluates the quantization operators; `None` for every other op.
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>]) -> Option<Result<Tensor, OpError>> {
    let act = || op.q_activation().map_err(OpError::Invalid);
    Some(match op {
        Op::QuantizeLinear(a) => quantize_linear(a, inputs),
        Op::DequantizeLinear(a) => dequantize_linear(a, inputs),
        Op::QLinearConv(a) => act().and_then(|q| qlinear_conv(a, q, inputs)),
        Op::QLinearMatMul(a) => act().and_then(|q| qlinear_matmul(a, q, inputs)),
        Op::DynamicQuantMatMul(_) => act().and_then(|q| dynamic_quant_matmul(q, inputs)),
        _ => return None,
    })
}
