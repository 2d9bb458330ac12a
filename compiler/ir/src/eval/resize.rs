//! ONNX `Resize` for the reference evaluator: output sizes, then each resized axis
//! interpolated on its own (the operator is separable), in f64.
//!
//! Along one axis of input length `n`, output index `x` maps to the input coordinate
//! `x_ori` of the coordinate transformation (with `output_width = scale · n`, fractional when
//! it came from a scale, as ONNX defines it). Then:
//!
//! * `nearest` takes one index, `x_ori` itself when it is whole, else `⌊x_ori⌋` or `⌈x_ori⌉`
//!   by `nearest_mode`;
//! * `linear` and `cubic` weigh the taps `i0 + j` around `i0 = ⌈x_ori⌉ − 1` (so the
//!   fraction `r = x_ori − i0` is in (0, 1]) by their kernel at distance `j − r` — the tent
//!   `1 − |t|` over `j ∈ {0, 1}`, Keys' cubic with `a = cubic_coeff_a` over `j ∈ {−1…2}`.
//!   With `antialias` and a scale `s < 1` the kernel is stretched (`kernel(s·t)`, taps out to
//!   `|t| < 1/s` or `2/s`) and the weights are normalized to sum 1; with `exclude_outside`
//!   taps outside the input get weight 0 and the rest are normalized.
//!
//! Taps outside the input read the nearest edge value. Under `tf_crop_and_resize` an output
//! whose coordinate leaves `[0, n − 1]` on any axis is `extrapolation_value`. A tap of weight 0
//! is skipped, so an infinite input value does not turn its neighbours into NaN.

use ndarray::{ArrayD, IxDyn};

use super::math::norm_axes;
use super::nn::Float;
use super::scalar::Scalar;
use super::{OpError, check_numel, invalid, opt, req, unsupported};
use crate::attr::{CoordinateTransform, KeepAspectRatio, NearestMode, ResizeMode};
use crate::geometry::unravel;
use crate::op::Resize;
use crate::{Tensor, with_numeric};

/// What the operands ask of the resized axes, one entry per axis of `axes`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Target {
    /// Scale factors.
    Scales(Vec<f64>),
    /// Output sizes (read by `keep_aspect_ratio_policy`).
    Sizes(Vec<i64>),
}

/// The axes `roi`, `scales` and `sizes` refer to: `axes` normalized, or all of them.
pub(crate) fn resized_axes(r: &Resize, rank: usize) -> Result<Vec<usize>, OpError> {
    if r.axes.is_empty() {
        Ok((0..rank).collect())
    } else {
        norm_axes(&r.axes, rank)
    }
}

/// `floor(n · scale)`, the size a scale gives an axis of `n`.
pub(crate) fn scaled_size(n: usize, scale: f64) -> Result<usize, OpError> {
    if !(scale.is_finite() && scale > 0.0) {
        return invalid(format!("Resize scales must be positive, found {scale}"));
    }
    let v = (n as f64 * scale).floor();
    if v > crate::tensor::MAX_ELEMENTS as f64 {
        return invalid(format!(
            "Resize would make an axis of {n} {v} long, more than 2^28"
        ));
    }
    Ok(v as usize)
}

/// The one scale `not_larger` (the smallest ratio) or `not_smaller` (the largest) takes from
/// the sizes of the resized axes, whose input lengths are `input`.
fn aspect_scale(input: &[usize], sizes: &[i64], policy: KeepAspectRatio) -> Result<f64, OpError> {
    let mut pick: Option<f64> = None;
    for (&n, &s) in input.iter().zip(sizes) {
        if n == 0 {
            return invalid("Resize cannot keep the aspect ratio of an empty axis");
        }
        let ratio = s as f64 / n as f64;
        pick = Some(match (pick, policy) {
            (None, _) => ratio,
            (Some(p), KeepAspectRatio::NotLarger) => p.min(ratio),
            (Some(p), _) => p.max(ratio),
        });
    }
    pick.ok_or_else(|| OpError::Invalid("Resize has no axis to resize".into()))
}

/// `round(n · scale)`, halves up: the size an aspect-keeping scale gives an axis of `n`.
fn rounded_size(n: usize, scale: f64) -> Result<usize, OpError> {
    let v = (n as f64 * scale + 0.5).floor();
    if !(0.0..=crate::tensor::MAX_ELEMENTS as f64).contains(&v) {
        return invalid(format!(
            "Resize would make an axis of {n} {v} long, outside 0..2^28"
        ));
    }
    Ok(v as usize)
}

/// For each axis of `axes` (input lengths `input`), its output length and scale.
pub(crate) fn resolve(
    input: &[usize],
    target: &Target,
    policy: KeepAspectRatio,
) -> Result<Vec<(usize, f64)>, OpError> {
    let want = input.len();
    match target {
        Target::Scales(s) => {
            if s.len() != want {
                return invalid(format!(
                    "Resize has {} scales for {want} resized axes",
                    s.len()
                ));
            }
            input
                .iter()
                .zip(s)
                .map(|(&n, &s)| Ok((scaled_size(n, s)?, s)))
                .collect()
        }
        Target::Sizes(z) => {
            if z.len() != want {
                return invalid(format!(
                    "Resize has {} sizes for {want} resized axes",
                    z.len()
                ));
            }
            if let Some(&bad) = z.iter().find(|&&v| v < 0) {
                return invalid(format!("Resize sizes must not be negative, found {bad}"));
            }
            if policy == KeepAspectRatio::Stretch {
                return input
                    .iter()
                    .zip(z)
                    .map(|(&n, &o)| {
                        if o as u64 > crate::tensor::MAX_ELEMENTS as u64 {
                            return invalid(format!("Resize size {o} is more than 2^28"));
                        }
                        let o = o as usize;
                        match (n, o) {
                            (0, 0) => Ok((0, 1.0)),
                            (0, _) => {
                                invalid("Resize cannot fill a non-empty axis from an empty one")
                            }
                            _ => Ok((o, o as f64 / n as f64)),
                        }
                    })
                    .collect();
            }
            let scale = aspect_scale(input, z, policy)?;
            input
                .iter()
                .map(|&n| Ok((rounded_size(n, scale)?, scale)))
                .collect()
        }
    }
}

/// The target the `scales` (slot 2) and `sizes` (slot 3) operands give: exactly one of them,
/// a `scales` without elements counting as absent.
pub(crate) fn target_of(
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> Result<Target, OpError> {
    let scales = scales.filter(|t| !t.is_empty());
    match (scales, sizes) {
        (Some(_), Some(_)) => invalid("Resize takes scales or sizes, not both"),
        (Some(s), None) => {
            if !s.dtype().is_float() {
                return invalid(format!("Resize scales must be floats, found {}", s.dtype()));
            }
            Ok(Target::Scales(s.to_f64_vec()))
        }
        (None, Some(z)) => {
            if !matches!(z.dtype(), crate::DType::I64 | crate::DType::I32) {
                return invalid(format!(
                    "Resize sizes must be integers, found {}",
                    z.dtype()
                ));
            }
            Ok(Target::Sizes(z.to_i64_vec()))
        }
        (None, None) => invalid("Resize needs scales or sizes"),
    }
}

/// One resized axis: for every output index, its taps (input index, weight), and whether it
/// lies outside the input (`tf_crop_and_resize`; then it has no taps).
#[derive(Clone, Debug, PartialEq)]
pub struct AxisMap {
    /// The axis.
    pub axis: usize,
    /// Per output index, its taps: input index and weight (none of weight 0).
    pub taps: Vec<Vec<(usize, f64)>>,
    /// Per output index, whether it lies outside the input (the element is the
    /// extrapolation value).
    pub outside: Vec<bool>,
}

/// What a `Resize` computes, as the evaluator computes it: its output shape and its resized
/// axes in the order they are interpolated (an axis left as it is has none).
#[derive(Clone, Debug, PartialEq)]
pub struct ResizePlan {
    /// The output shape.
    pub out_shape: Vec<usize>,
    /// The resized axes, the first interpolated first (linear and cubic: the axes that
    /// shrink first, so no intermediate is larger than the input or the output).
    pub maps: Vec<AxisMap>,
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(a: f64, t: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    } else {
        0.0
    }
}

/// The input coordinate of output index `x` along an axis of length `n` resized to `out`
/// by `scale`, and whether it falls outside the input (`tf_crop_and_resize` only).
fn coordinate(
    mode: CoordinateTransform,
    x: f64,
    n: usize,
    out: usize,
    scale: f64,
    roi: (f64, f64),
) -> (f64, bool) {
    let n_f = n as f64;
    let width = scale * n_f;
    match mode {
        CoordinateTransform::HalfPixel => ((x + 0.5) / scale - 0.5, false),
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = out as f64 / width;
            let offset = n_f / 2.0 * (1.0 - adjustment);
            (offset + (x + 0.5) / scale - 0.5, false)
        }
        CoordinateTransform::PytorchHalfPixel => {
            if width == 1.0 {
                (0.0, false)
            } else {
                ((x + 0.5) / scale - 0.5, false)
            }
        }
        CoordinateTransform::AlignCorners => {
            if width == 1.0 {
                (0.0, false)
            } else {
                (x * (n_f - 1.0) / (width - 1.0), false)
            }
        }
        CoordinateTransform::Asymmetric => (x / scale, false),
        CoordinateTransform::TfCropAndResize => {
            let (start, end) = roi;
            let c = if width == 1.0 {
                (end - start) * (n_f - 1.0) / 2.0
            } else {
                x * (end - start) * (n_f - 1.0) / (width - 1.0)
            } + start * (n_f - 1.0);
            (c, !(0.0..=n_f - 1.0).contains(&c))
        }
    }
}

/// The taps of every output index along one axis.
fn axis_map(
    r: &Resize,
    axis: usize,
    n: usize,
    out: usize,
    scale: f64,
    roi: (f64, f64),
) -> Result<AxisMap, OpError> {
    let mut taps = Vec::with_capacity(out);
    let mut outside = Vec::with_capacity(out);
    if out == 0 {
        return Ok(AxisMap {
            axis,
            taps,
            outside,
        });
    }
    if n == 0 {
        return invalid("Resize cannot fill a non-empty axis from an empty one");
    }
    let last = n as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    let a = f64::from(r.cubic_coeff_a);
    let antialias = r.antialias != 0 && r.mode != ResizeMode::Nearest;
    let s = if antialias { scale.min(1.0) } else { 1.0 };
    // The taps j run over [start, 1 − start] around i0: 2 − 2·start of them.
    let start = match r.mode {
        ResizeMode::Nearest => 0.0,
        ResizeMode::Linear => (-1.0 / s).floor() + 1.0,
        ResizeMode::Cubic => (-2.0 / s).floor() + 1.0,
    };
    let all_taps = (2.0 - 2.0 * start) * out as f64;
    if all_taps.is_nan() || all_taps > crate::tensor::MAX_ELEMENTS as f64 {
        return invalid("Resize's antialiasing kernel is too wide for this scale");
    }
    let start = start as i64;
    // Far outside the input every tap reads the edge: a coordinate is held to ±2^40, where
    // f64 still has its fraction and no index arithmetic below can overflow.
    let far = (1u64 << 40) as f64;
    for x in 0..out {
        let (c, off) = coordinate(
            r.coordinate_transformation_mode,
            x as f64,
            n,
            out,
            scale,
            roi,
        );
        if !c.is_finite() {
            return invalid(format!("Resize maps output {x} to coordinate {c}"));
        }
        outside.push(off);
        if off {
            taps.push(vec![]);
            continue;
        }
        let c = c.clamp(-far, far);
        let whole = c.fract() == 0.0;
        if r.mode == ResizeMode::Nearest {
            let lo = c.floor();
            let frac = c - lo;
            let up = match r.nearest_mode {
                _ if whole => false,
                NearestMode::RoundPreferFloor => frac > 0.5,
                NearestMode::RoundPreferCeil => frac >= 0.5,
                NearestMode::Floor => false,
                NearestMode::Ceil => true,
            };
            taps.push(vec![(clamp(lo as i64 + i64::from(up)), 1.0)]);
            continue;
        }
        let i0 = c.ceil() as i64 - 1;
        let frac = c - i0 as f64;
        let mut w: Vec<(i64, f64)> = (start..=1 - start)
            .map(|j| {
                let t = s * (j as f64 - frac);
                let k = match r.mode {
                    ResizeMode::Linear => (1.0 - t.abs()).max(0.0),
                    _ => cubic(a, t),
                };
                (i0 + j, k)
            })
            .collect();
        let normalize = |w: &mut Vec<(i64, f64)>| {
            let sum: f64 = w.iter().map(|p| p.1).sum();
            if sum != 0.0 {
                for p in w.iter_mut() {
                    p.1 /= sum;
                }
            }
        };
        if antialias {
            normalize(&mut w);
        }
        if r.exclude_outside != 0 {
            for p in &mut w {
                if p.0 < 0 || p.0 > last {
                    p.1 = 0.0;
                }
            }
            normalize(&mut w);
        }
        taps.push(
            w.into_iter()
                .filter(|p| p.1 != 0.0)
                .map(|(i, k)| (clamp(i), k))
                .collect(),
        );
    }
    Ok(AxisMap {
        axis,
        taps,
        outside,
    })
}

/// ONNX `Resize`. Nearest works on every numeric type (it only moves values); linear and
/// cubic on f32 and f64.
pub(crate) fn resize(r: &Resize, inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0)?;
    let plan = resize_plan(r, x.shape(), opt(inputs, 1), opt(inputs, 2), opt(inputs, 3))?;
    let extrapolation = f64::from(r.extrapolation_value);
    if r.mode == ResizeMode::Nearest {
        return with_numeric!(x, arr => nearest(arr, &plan.out_shape, &plan.maps, extrapolation), unsupported("Resize of bool"));
    }
    match x {
        Tensor::F32(arr) => interpolate(arr, &plan.out_shape, plan.maps, extrapolation),
        Tensor::F64(arr) => interpolate(arr, &plan.out_shape, plan.maps, extrapolation),
        other => unsupported(format!(
            "element type {} in {} Resize (f32 and f64 only)",
            other.dtype(),
            r.mode
        )),
    }
}

/// The plan of a `Resize` of an input of `shape` by its operands `roi`, `scales` and `sizes`
/// (the one function the evaluator and native code take its sizes and taps from).
pub fn resize_plan(
    r: &Resize,
    shape: &[usize],
    roi: Option<&Tensor>,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> Result<ResizePlan, OpError> {
    let shape = shape.to_vec();
    let rank = shape.len();
    let axes = resized_axes(r, rank)?;
    let target = target_of(scales, sizes)?;
    if matches!(target, Target::Scales(_)) && r.keep_aspect_ratio_policy != KeepAspectRatio::Stretch
    {
        return invalid("keep_aspect_ratio_policy applies to sizes, not scales");
    }
    let in_sizes: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let resolved = resolve(&in_sizes, &target, r.keep_aspect_ratio_policy)?;
    // roi: starts then ends of the resized axes, read by tf_crop_and_resize only.
    let roi: Vec<(f64, f64)> =
        if r.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize {
            let v = roi
                .ok_or_else(|| OpError::Invalid("tf_crop_and_resize needs roi".into()))?
                .to_f64_vec();
            if v.len() != 2 * axes.len() {
                return invalid(format!(
                    "Resize roi has {} entries, {} resized axes need {}",
                    v.len(),
                    axes.len(),
                    2 * axes.len()
                ));
            }
            (0..axes.len()).map(|i| (v[i], v[i + axes.len()])).collect()
        } else {
            vec![(0.0, 1.0); axes.len()]
        };
    let mut out_shape = shape.clone();
    for (&a, &(o, _)) in axes.iter().zip(&resolved) {
        out_shape[a] = o;
    }
    check_numel(&out_shape)?;
    // Per resized axis, its map; an axis left as it is (scale 1, same length, whole roi) has
    // none, as ONNX's reference skips it.
    let mut maps: Vec<AxisMap> = vec![];
    for (i, &a) in axes.iter().enumerate() {
        let (o, scale) = resolved[i];
        let same = (scale - 1.0).abs() <= 1e-9 && o == shape[a] && roi[i] == (0.0, 1.0);
        if !same {
            maps.push(axis_map(r, a, shape[a], o, scale, roi[i])?);
        }
    }
    let growth = |m: &AxisMap| m.taps.len() as f64 / shape[m.axis].max(1) as f64;
    maps.sort_by(|p, q| growth(p).total_cmp(&growth(q)));
    Ok(ResizePlan { out_shape, maps })
}

/// Nearest: every output element copies one input element (or is the extrapolation value).
fn nearest<T: Scalar>(
    a: &ArrayD<T>,
    out_shape: &[usize],
    maps: &[AxisMap],
    extrapolation: f64,
) -> Result<Tensor, OpError> {
    let rank = out_shape.len();
    let mut pick: Vec<Option<&AxisMap>> = vec![None; rank];
    for m in maps {
        if let Some(p) = pick.get_mut(m.axis) {
            *p = Some(m);
        }
    }
    let fill = T::from_f64(extrapolation);
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let (mut oi, mut si) = (vec![0; rank], vec![0; rank]);
    for f in 0..total {
        unravel(f, out_shape, &mut oi);
        let mut inside = true;
        for d in 0..rank {
            si[d] = match pick[d] {
                None => oi[d],
                Some(m) if m.outside[oi[d]] => {
                    inside = false;
                    0
                }
                Some(m) => m.taps[oi[d]].first().map_or(0, |t| t.0),
            };
        }
        out.push(if inside { a[IxDyn(&si)] } else { fill });
    }
    Tensor::from_vec(out_shape, out).map_err(|e| OpError::Invalid(e.to_string()))
}

/// Linear and cubic: one axis at a time in f64, in the plan's order, rounded to `T` once.
fn interpolate<T: Float>(
    a: &ArrayD<T>,
    out_shape: &[usize],
    maps: Vec<AxisMap>,
    extrapolation: f64,
) -> Result<Tensor, OpError> {
    let mut shape = a.shape().to_vec();
    let mut data: Vec<f64> = a.iter().map(|v| v.to_f64()).collect();
    let mut outside: Vec<(usize, Vec<bool>)> = vec![];
    for m in maps {
        let ax = m.axis;
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        let (n, o) = (shape[ax], m.taps.len());
        let mut next = vec![0f64; outer * o * inner];
        for b in 0..outer {
            for (j, taps) in m.taps.iter().enumerate() {
                let dst = &mut next[(b * o + j) * inner..(b * o + j + 1) * inner];
                for &(i, w) in taps {
                    let src = &data[(b * n + i) * inner..(b * n + i + 1) * inner];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d += w * v;
                    }
                }
            }
        }
        data = next;
        shape[ax] = o;
        outside.push((ax, m.outside));
    }
    if outside.iter().any(|(_, o)| o.iter().any(|&b| b)) {
        let mut idx = vec![0; shape.len()];
        for (f, v) in data.iter_mut().enumerate() {
            unravel(f, &shape, &mut idx);
            if outside.iter().any(|(ax, o)| o[idx[*ax]]) {
                *v = extrapolation;
            }
        }
    }
    if shape != out_shape {
        return invalid(format!(
            "Resize computed shape {shape:?}, expected {out_shape:?}"
        ));
    }
    let out: Vec<T> = data.into_iter().map(T::from_f64).collect();
    Tensor::from_vec(out_shape, out).map_err(|e| OpError::Invalid(e.to_string()))
}
