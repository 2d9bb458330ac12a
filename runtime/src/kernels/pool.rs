//! Pooling over one image (NCHW, one sample): max and average windows, and global average.
//! Like the depthwise convolution, each window tap is one pass over the output rows it
//! reaches, on the run of columns whose input lies inside the image.

use crate::kernels::conv::{Geometry, col_span};

avx2_dispatch! {
    /// Max pooling: padding never wins (it counts as −∞); a NaN in the window propagates.
    pub fn max_pool(x: &[f32], g: &Geometry, y: &mut [f32]) => max_pool_generic
}

#[inline(always)]
fn max_pool_generic(x: &[f32], g: &Geometry, y: &mut [f32]) {
    let (hw, p) = (g.h * g.w, g.oh * g.ow);
    let plain_2x2 = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.dh == 1 && g.dw == 1;
    if plain_2x2 && g.pt == 0 && g.pl == 0 && 2 * g.oh <= g.h && 2 * g.ow <= g.w {
        // The common 2×2/2 window without padding: one pass, four loads per output.
        for c in 0..g.c {
            let plane = &x[c * hw..(c + 1) * hw];
            let out = &mut y[c * p..(c + 1) * p];
            for oy in 0..g.oh {
                let (r0, r1) = (&plane[2 * oy * g.w..], &plane[(2 * oy + 1) * g.w..]);
                for (ox, o) in out[oy * g.ow..(oy + 1) * g.ow].iter_mut().enumerate() {
                    let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                    let m = if b > a { b } else { a };
                    let n = if d > c { d } else { c };
                    let v = if n > m { n } else { m };
                    // A NaN anywhere in the window wins, as in the reference evaluator.
                    *o = if a.is_nan() || b.is_nan() || c.is_nan() || d.is_nan() {
                        f32::NAN
                    } else {
                        v
                    };
                }
            }
        }
        return;
    }
    let spans: Vec<(usize, usize, usize)> = (0..g.kw).map(|kx| col_span(g, kx)).collect();
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        let out = &mut y[c * p..(c + 1) * p];
        // The fast loop is a plain max; a plane holding a NaN takes the exact path.
        let nan = plane.iter().any(|v| v.is_nan());
        out.fill(f32::NEG_INFINITY);
        for oy in 0..g.oh {
            let dst = &mut out[oy * g.ow..(oy + 1) * g.ow];
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                let row = &plane[iy * g.w..(iy + 1) * g.w];
                for &(lo, hi, ix0) in &spans {
                    if lo >= hi {
                        continue;
                    }
                    let d = &mut dst[lo..hi];
                    if nan {
                        for (j, o) in d.iter_mut().enumerate() {
                            let v = row[ix0 + j * g.sw];
                            if v > *o || v.is_nan() || o.is_nan() {
                                *o = if o.is_nan() { *o } else { v };
                            }
                        }
                    } else if g.sw == 1 {
                        for (o, &v) in d.iter_mut().zip(&row[ix0..]) {
                            *o = if v > *o { v } else { *o };
                        }
                    } else {
                        for (j, o) in d.iter_mut().enumerate() {
                            let v = row[ix0 + j * g.sw];
                            *o = if v > *o { v } else { *o };
                        }
                    }
                }
            }
        }
    }
}

/// How many window taps along one axis fall inside `[0, n)` (or the padded `[−pb, n + pe)`
/// when `count_pad`) for output position `o`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn taps(
    o: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
    n: usize,
    pe: usize,
    count_pad: bool,
) -> usize {
    (0..k)
        .filter(|&t| {
            let v = o * s + t * d; // position + pb
            if count_pad {
                v < n + pb + pe
            } else {
                v >= pb && v - pb < n
            }
        })
        .count()
}

avx2_dispatch! {
    /// Average pooling. With `count_pad`, the divisor is the window clipped to the padded
    /// image; otherwise the number of real inputs in the window.
    pub fn avg_pool(x: &[f32], g: &Geometry, count_pad: bool, pb: usize, pr: usize, y: &mut [f32]) => avg_pool_generic
}

#[inline(always)]
fn avg_pool_generic(x: &[f32], g: &Geometry, count_pad: bool, pb: usize, pr: usize, y: &mut [f32]) {
    let (hw, p) = (g.h * g.w, g.oh * g.ow);
    let spans: Vec<(usize, usize, usize)> = (0..g.kw).map(|kx| col_span(g, kx)).collect();
    let (rows, cols) = window_counts(g, count_pad, pb, pr);
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        let out = &mut y[c * p..(c + 1) * p];
        out.fill(0.0);
        for oy in 0..g.oh {
            let dst = &mut out[oy * g.ow..(oy + 1) * g.ow];
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                let row = &plane[iy * g.w..(iy + 1) * g.w];
                for &(lo, hi, ix0) in &spans {
                    if lo >= hi {
                        continue;
                    }
                    for (j, o) in dst[lo..hi].iter_mut().enumerate() {
                        *o += row[ix0 + j * g.sw];
                    }
                }
            }
            for (o, &cn) in dst.iter_mut().zip(&cols) {
                let d = rows[oy] * cn;
                *o = if d == 0 { 0.0 } else { *o / d as f32 };
            }
        }
    }
}

/// How many taps of an average's window count, per output row and per output column (the
/// divisor of output (r, c) is their product).
pub(crate) fn window_counts(
    g: &Geometry,
    count_pad: bool,
    pb: usize,
    pr: usize,
) -> (Vec<usize>, Vec<usize>) {
    (
        (0..g.oh)
            .map(|o| taps(o, g.kh, g.sh, g.dh, g.pt, g.h, pb, count_pad))
            .collect(),
        (0..g.ow)
            .map(|o| taps(o, g.kw, g.sw, g.dw, g.pl, g.w, pr, count_pad))
            .collect(),
    )
}

/// The reciprocal divisor of each output of an average pooling (0 where the window holds
/// nothing that counts), row-major over `oh × ow`.
pub fn avg_scales(g: &Geometry, count_pad: bool, pb: usize, pr: usize) -> Vec<f32> {
    let (rows, cols) = window_counts(g, count_pad, pb, pr);
    rows.iter()
        .flat_map(|&r| {
            cols.iter().map(move |&c| {
                let d = r * c;
                if d == 0 { 0.0 } else { 1.0 / d as f32 }
            })
        })
        .collect()
}

/// Global average pooling: `y[c]` = mean of channel c's `hw` values.
pub fn global_avg_pool(x: &[f32], c: usize, hw: usize, y: &mut [f32]) {
    for (ch, o) in y.iter_mut().enumerate().take(c) {
        *o = sum(&x[ch * hw..(ch + 1) * hw]) / hw.max(1) as f32;
    }
}

/// The sum of `v` in 16 interleaved partial sums: the compiler vectorizes it (a plain fold
/// must add one float at a time, in order).
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}
