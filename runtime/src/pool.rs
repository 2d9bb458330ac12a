//! Pooling over one image (NCHW, one sample): max and average windows, and global average.

use crate::conv::Geometry;

/// Max pooling: padding never wins (it counts as −∞).
pub fn max_pool(x: &[f32], g: &Geometry, y: &mut [f32]) {
    let (hw, p) = (g.h * g.w, g.oh * g.ow);
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        let out = &mut y[c * p..(c + 1) * p];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..g.kh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    for kx in 0..g.kw {
                        if let Some(ix) = g.in_col(ox, kx) {
                            let v = plane[iy * g.w + ix];
                            // NaN propagates, as in the reference evaluator.
                            if v > m || v.is_nan() {
                                m = v;
                            }
                        }
                    }
                }
                out[oy * g.ow + ox] = m;
            }
        }
    }
}

/// Average pooling. With `count_pad`, the divisor is the window clipped to the padded
/// image; otherwise the number of real inputs in the window.
pub fn avg_pool(x: &[f32], g: &Geometry, count_pad: bool, pb: usize, pr: usize, y: &mut [f32]) {
    let (hw, p) = (g.h * g.w, g.oh * g.ow);
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        let out = &mut y[c * p..(c + 1) * p];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (mut s, mut n) = (0.0f32, 0usize);
                for ky in 0..g.kh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    for kx in 0..g.kw {
                        if let Some(ix) = g.in_col(ox, kx) {
                            s += plane[iy * g.w + ix];
                            n += 1;
                        }
                    }
                }
                let d = if count_pad {
                    // Window positions inside the padded image [−pt, h + pb) × [−pl, w + pr).
                    let rows = (0..g.kh)
                        .filter(|&ky| {
                            let v = oy * g.sh + ky * g.dh;
                            v < g.h + g.pt + pb
                        })
                        .count();
                    let cols = (0..g.kw)
                        .filter(|&kx| {
                            let v = ox * g.sw + kx * g.dw;
                            v < g.w + g.pl + pr
                        })
                        .count();
                    rows * cols
                } else {
                    n
                };
                out[oy * g.ow + ox] = if d == 0 { 0.0 } else { s / d as f32 };
            }
        }
    }
}

/// Global average pooling: `y[c]` = mean of channel c's `hw` values.
pub fn global_avg_pool(x: &[f32], c: usize, hw: usize, y: &mut [f32]) {
    for (ch, o) in y.iter_mut().enumerate().take(c) {
        let s: f32 = x[ch * hw..(ch + 1) * hw].iter().sum();
        *o = s / hw.max(1) as f32;
    }
}
