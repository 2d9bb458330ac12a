//! Sliding-window kernels with AVX-512, 16 output columns per vector: depthwise convolution
//! and max pooling over one zero- (or −∞-) padded input plane at a time.
//!
//! Each input channel is copied once into a padded plane whose border is written once per
//! call, so no output position tests bounds. A stride-1 window reads its 16 inputs with one
//! unaligned load per tap; a stride-2 window reads 32 and keeps the even lanes with one
//! permute. Other strides and dilations are left to the portable loops (the functions say
//! so by returning `false`).

use crate::conv::Geometry;
use crate::epilogue::Act;
use crate::gemm::Isa;

/// A padded plane: `ph` rows of `pw` floats, the image at row `pt`, column `pl`, the rest
/// `fill`, plus slack for the vector loads that run past the last row.
struct Plane {
    buf: Vec<f32>,
    pw: usize,
}

/// Floats a vector load may read past the plane (32 lanes of a stride-2 load past the last
/// window start).
const SLACK: usize = 64;

impl Plane {
    fn new(g: &Geometry, fill: f32) -> Plane {
        let ph = (g.oh - 1) * g.sh + g.kh;
        let pw = (g.ow - 1) * g.sw + g.kw;
        Plane {
            buf: vec![fill; ph * pw + SLACK],
            pw,
        }
    }

    /// Copies one `h × w` input plane into the interior (the border keeps its fill: these
    /// positions are never written). AVX-512 only (as every caller): rows are short, so
    /// masked vector moves, not a `memcpy` call per row.
    fn load(&mut self, g: &Geometry, src: &[f32]) {
        let ph = (self.buf.len() - SLACK) / self.pw;
        let n = g.w.min(self.pw.saturating_sub(g.pl));
        for iy in 0..g.h {
            let py = iy + g.pt;
            if py >= ph {
                break;
            }
            let dst = py * self.pw + g.pl;
            let (to, from) = (&mut self.buf[dst..dst + n], &src[iy * g.w..iy * g.w + n]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the callers checked AVX-512 (`handles`); both slices hold n floats.
            #[allow(unsafe_code)]
            unsafe {
                kernels::copy(to, from);
            }
            #[cfg(not(target_arch = "x86_64"))]
            to.copy_from_slice(from);
        }
    }
}

/// Whether [`depthwise`] and [`max_pool`] take this geometry and kernel set.
fn handles(isa: Isa, g: &Geometry) -> bool {
    g.dh == 1 && g.dw == 1 && (g.sw == 1 || g.sw == 2) && g.oh > 0 && g.ow > 0 && isa == Isa::Avx512
}

/// A depthwise convolution of one image (`w`: `[m, kh, kw]`; output channel `o` reads
/// input channel `o / (m / c)`). Returns `false`, computing nothing, if it does not take
/// this geometry or kernel set (`isa` must be one the CPU has).
pub fn depthwise(
    isa: Isa,
    x: &[f32],
    g: &Geometry,
    m: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> bool {
    if !handles(isa, g) {
        return false;
    }
    let mult = (m / g.c.max(1)).max(1);
    let (hw, p, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let mut plane = Plane::new(g, 0.0);
    let spots = spots(g, plane.pw);
    for o in 0..m {
        if o % mult == 0 {
            plane.load(g, &x[(o / mult) * hw..(o / mult + 1) * hw]);
        }
        let ker = &w[o * kk..(o + 1) * kk];
        let b = bias.map_or(0.0, |b| b[o]);
        let out = &mut y[o * p..(o + 1) * p];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `handles` checked AVX-512; the plane holds every window (plus SLACK for
        // the vector loads) and `out` holds `oh·ow` floats.
        #[allow(unsafe_code)]
        unsafe {
            if g.sw == 1 {
                kernels::run::<1, false>(&plane.buf, plane.pw, g, &spots, ker, b, act, out);
            } else {
                kernels::run::<2, false>(&plane.buf, plane.pw, g, &spots, ker, b, act, out);
            }
        }
    }
    true
}

/// Max pooling of one image (`[c, h, w]` → `[c, oh, ow]`). Returns `false`, computing
/// nothing, if it does not take this geometry or kernel set (one the CPU has).
pub fn max_pool(isa: Isa, x: &[f32], g: &Geometry, y: &mut [f32]) -> bool {
    // A NaN must win every window it is in: the portable loop's exact path does that.
    // (Checked in blocks whose inner test vectorizes.)
    if !handles(isa, g)
        || x.chunks(256)
            .any(|c| c.iter().fold(false, |n, v| n | v.is_nan()))
    {
        return false;
    }
    let (hw, p) = (g.h * g.w, g.oh * g.ow);
    let mut plane = Plane::new(g, f32::NEG_INFINITY);
    let spots = spots(g, plane.pw);
    for c in 0..g.c {
        plane.load(g, &x[c * hw..(c + 1) * hw]);
        let out = &mut y[c * p..(c + 1) * p];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `depthwise`.
        #[allow(unsafe_code)]
        unsafe {
            if g.sw == 1 {
                kernels::run::<1, true>(&plane.buf, plane.pw, g, &spots, &[], 0.0, Act::None, out);
            } else {
                kernels::run::<2, true>(&plane.buf, plane.pw, g, &spots, &[], 0.0, Act::None, out);
            }
        }
    }
    true
}

/// Where one vector of 16 outputs reads (its window's top-left corner in the padded plane)
/// and writes (its first output), and how many of the 16 lanes it keeps.
#[derive(Clone, Copy)]
struct Spot {
    from: usize,
    to: usize,
    cols: usize,
}

/// The vectors of one output plane, in order.
fn spots(g: &Geometry, pw: usize) -> Vec<Spot> {
    let mut v = Vec::with_capacity(g.oh * g.ow.div_ceil(16));
    for oy in 0..g.oh {
        for ox0 in (0..g.ow).step_by(16) {
            v.push(Spot {
                from: oy * g.sh * pw + ox0 * g.sw,
                to: oy * g.ow + ox0,
                cols: (g.ow - ox0).min(16),
            });
        }
    }
    v
}

/// Vectors computed together: independent accumulators hide the FMA latency.
const GROUP: usize = 8;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernels {
    use super::{GROUP, Spot};
    use crate::conv::Geometry;
    use crate::epilogue::{Act, Bias, Epilogue};
    use std::arch::x86_64::*;

    /// `dst` = `src` (equal lengths) by masked 16-lane moves.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy(dst: &mut [f32], src: &[f32]) {
        let n = dst.len().min(src.len());
        let mut i = 0;
        while i < n {
            let left = n - i;
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
            // SAFETY: the mask covers only elements below n in both slices.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, v);
            }
            i += 16;
        }
    }

    /// One output plane: the weighted sum (or, with `MAX`, the maximum) of each window of
    /// the padded plane `pad` (row length `pw`), stride `S` across columns.
    ///
    /// # Safety
    /// AVX-512F; `pad` holds `((oh − 1)·sh + kh)·pw` floats plus 64 of slack, `out`
    /// `oh·ow`, `ker` `kh·kw` unless `MAX`; `spots` are those of `g` and `pw`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run<const S: usize, const MAX: bool>(
        pad: &[f32],
        pw: usize,
        g: &Geometry,
        spots: &[Spot],
        ker: &[f32],
        bias: f32,
        act: Act,
        out: &mut [f32],
    ) {
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let ep = Epilogue {
            bias: Bias::None,
            residual: None,
            act,
        };
        let fast_act = ep.is_vectorizable();
        let base = pad.as_ptr();
        for group in spots.chunks(GROUP) {
            // A short last group repeats its last vector (computed and stored twice).
            let at: [Spot; GROUP] = std::array::from_fn(|i| group[i.min(group.len() - 1)]);
            let init = if MAX {
                _mm512_set1_ps(f32::NEG_INFINITY)
            } else {
                _mm512_set1_ps(bias)
            };
            let mut acc = [init; GROUP];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let tap = ky * pw + kx;
                    let w = if MAX {
                        init
                    } else {
                        _mm512_set1_ps(ker[ky * g.kw + kx])
                    };
                    for (a, s) in acc.iter_mut().zip(&at) {
                        // SAFETY: the window lies in the plane; a vector load ends at most
                        // 32 + kw floats past a row's last window: inside the slack.
                        let v = unsafe {
                            let p = base.add(s.from + tap);
                            if S == 1 {
                                _mm512_loadu_ps(p)
                            } else {
                                let lo = _mm512_loadu_ps(p);
                                let hi = _mm512_loadu_ps(p.add(16));
                                _mm512_permutex2var_ps(lo, even, hi)
                            }
                        };
                        *a = if MAX {
                            _mm512_max_ps(*a, v)
                        } else {
                            _mm512_fmadd_ps(w, v, *a)
                        };
                    }
                }
            }
            for (&a, s) in acc.iter().zip(&at) {
                let mask: __mmask16 = if s.cols == 16 {
                    0xffff
                } else {
                    (1 << s.cols) - 1
                };
                // SAFETY: `cols` outputs from `to` lie in `out`.
                unsafe {
                    let dst = out.as_mut_ptr().add(s.to);
                    if MAX || fast_act {
                        let v = if MAX {
                            a
                        } else {
                            ep.apply_avx512(a, 0, 0, s.cols)
                        };
                        _mm512_mask_storeu_ps(dst, mask, v);
                    } else {
                        let mut lanes = [0f32; 16];
                        _mm512_storeu_ps(lanes.as_mut_ptr(), a);
                        for (j, &v) in lanes.iter().enumerate().take(s.cols) {
                            *dst.add(j) = act.apply(v);
                        }
                    }
                }
            }
        }
    }
}
