//! Sliding-window kernels with AVX-512, 16 outputs per vector: depthwise convolution and max
//! pooling, one channel at a time.
//!
//! Each input channel is copied once into zero- (or −∞-) padded stride-phase planes, the
//! ones convolutions read ([`conv::pad_phases`]: phase (ψ, φ) holds padded row `r·sh + ψ`,
//! column `q·sw + φ` at (r, q), in `qh × qw` planes), so no output tests bounds. Tap (ky, kx) of output
//! (oy, ox) then reads one phase at row oy + (ky·dh) / sh, column ox + (kx·dw) / sw: for
//! every stride and dilation, a shifted copy of the output grid. The outputs are computed on
//! that grid `qw` wide, flat, 16 consecutive positions per vector whatever the image width
//! (a 7-wide image fills whole vectors), then the `qw − ow` extra columns per row are
//! squeezed out by compress-stores.

use crate::kernels::conv::{self, Geometry};
use crate::kernels::epilogue::Act;
use crate::kernels::gemm::Isa;

/// Vectors computed together: independent accumulators hide the FMA latency.
const GROUP: usize = 8;

/// The phase planes of one channel (written by [`conv::PhaseLayout::pad`]), plus slack for
/// the vector loads past the last one.
struct Phases {
    buf: Vec<f32>,
    /// Floats `pad` writes (the rest is slack).
    len: usize,
    qw: usize,
    layout: conv::PhaseLayout,
}

impl Phases {
    fn new(g: &Geometry, fill: f32) -> Phases {
        let len = conv::padded_len(g, 1);
        // A group's loads run up to GROUP vectors past the grid's last position.
        Phases {
            buf: vec![fill; len + 16 * GROUP + 16],
            len,
            qw: conv::phase_dims(g).2,
            layout: conv::PhaseLayout::new(g),
        }
    }

    /// Copies channel `c` of `x` into the planes; returns whether it holds a NaN, or `None`
    /// if it could not (the buffer is sized for one channel: never). The borders hold the
    /// fill from the start (no channel writes them), so only the image is copied.
    fn load(&mut self, g: &Geometry, x: &[f32], c: usize) -> Option<bool> {
        let buf = &mut self.buf[..self.len];
        self.layout.pad(g, x, c, 1, buf, None).ok()
    }

    /// For each vector of 16 grid positions: where its kept lanes go in the output, and
    /// which lanes those are (the same for every channel).
    fn stores(&self, g: &Geometry) -> Vec<(usize, u16)> {
        let (qw, n) = (self.qw, g.oh * self.qw);
        (0..n)
            .step_by(16)
            .map(|j| {
                let mut mask = 0u16;
                for l in 0..16.min(n - j) {
                    if (j + l) % qw < g.ow {
                        mask |= 1 << l;
                    }
                }
                ((j / qw) * g.ow + (j % qw).min(g.ow), mask)
            })
            .collect()
    }
}

/// A copy of `rows` rows of `len` floats: row r from `src[s0 + r·ss..]` to `dst[d0 + r·ds..]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows {
    pub(crate) d0: usize,
    pub(crate) ds: usize,
    pub(crate) s0: usize,
    pub(crate) ss: usize,
    pub(crate) rows: usize,
    pub(crate) len: usize,
}

/// Does the copy `c`: by masked AVX-512 moves where the CPU has them, every row in one call
/// (a call per short row cost more than its copy), else `copy_from_slice`. Returns whether
/// it copied a NaN.
pub(crate) fn copy_rows(dst: &mut [f32], src: &[f32], c: Rows) -> Result<bool, String> {
    if c.rows == 0 || c.len == 0 {
        return Ok(false);
    }
    let end = |at: usize, stride: usize| (c.rows - 1) * stride + at + c.len;
    if end(c.d0, c.ds) > dst.len() || end(c.s0, c.ss) > src.len() {
        return Err("a row copy reaches outside its buffers".into());
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::cached() == Isa::Avx512 {
        // SAFETY: `Isa::cached()` is Avx512 only where `Isa::detect` found AVX-512F on this
        // CPU. Row r < rows spans `len` floats from `s0 + r·ss` in `src` and `d0 + r·ds` in
        // `dst`; the last row's ends were checked above and the others end before them, so
        // every row lies inside both slices (which cannot overlap: one is borrowed
        // exclusively).
        #[allow(unsafe_code)]
        return Ok(unsafe { kernels::copy_rows(dst, src, c) });
    }
    let mut nan = false;
    for r in 0..c.rows {
        let (s0, d0) = (c.s0 + r * c.ss, c.d0 + r * c.ds);
        let s = &src[s0..s0 + c.len];
        dst[d0..d0 + c.len].copy_from_slice(s);
        nan |= s.iter().any(|v| v.is_nan());
    }
    Ok(nan)
}

/// Splits an input row into its two column phases (stride 2): input column ix goes to phase
/// φ = (ix + pl) % 2 at q = (ix + pl − φ) / 2, for q < qw, the phase rows starting at `at0`
/// and `at1` in `buf`. Returns whether the row holds a NaN, or `None` (nothing written)
/// without AVX-512.
pub(crate) fn split_row2(
    buf: &mut [f32],
    at0: usize,
    at1: usize,
    qw: usize,
    pl: usize,
    row: &[f32],
) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    if Isa::cached() == Isa::Avx512 {
        // SAFETY: `Isa::cached()` is Avx512 only where `Isa::detect` found AVX-512F on this
        // CPU, `split2`'s one precondition (it checks every store against `buf`).
        #[allow(unsafe_code)]
        return Some(unsafe { kernels::split2(buf, at0, at1, qw, pl, row) });
    }
    let _ = (buf, at0, at1, qw, pl, row);
    None
}

/// Whether [`depthwise`] and [`max_pool`] take this geometry and kernel set: an AVX-512 one
/// this CPU runs (their `unsafe` calls rely on it).
fn handles(isa: Isa, g: &Geometry) -> bool {
    g.oh > 0
        && g.ow > 0
        && g.kh > 0
        && g.kw > 0
        && g.sh > 0
        && g.sw > 0
        && g.dh > 0
        && g.dw > 0
        && isa == Isa::Avx512
        && isa.runs_here()
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
    let (p, kk) = (g.oh * g.ow, g.kh * g.kw);
    let mut phases = Phases::new(g, 0.0);
    let (taps, stores) = (conv::phase_taps(g), phases.stores(g));
    for o in 0..m {
        if o % mult == 0 {
            // (A NaN simply propagates through the multiply-adds. Declining here leaves the
            // whole image to the portable loop, which rewrites every channel.)
            if phases.load(g, x, o / mult).is_none() {
                return false;
            }
        }
        let ker = &w[o * kk..(o + 1) * kk];
        let b = bias.map_or(0.0, |b| b[o]);
        let out = &mut y[o * p..(o + 1) * p];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F: `handles` checked this CPU has it. `phases` was sized by
        // `Phases::new` for this geometry and `taps`, `stores` made from it (`run`'s
        // contract); `ker` holds a weight per tap (kh·kw of them, sliced above).
        #[allow(unsafe_code)]
        unsafe {
            kernels::run::<false>(
                &phases.buf,
                g.oh * phases.qw,
                &taps,
                &stores,
                ker,
                b,
                act,
                out,
            );
        }
    }
    true
}

/// Max pooling of one image (`[c, h, w]` → `[c, oh, ow]`). Returns `false`, computing
/// nothing, if it does not take this geometry or kernel set (one the CPU has).
pub fn max_pool(isa: Isa, x: &[f32], g: &Geometry, y: &mut [f32]) -> bool {
    if !handles(isa, g) {
        return false;
    }
    let p = g.oh * g.ow;
    let plain_2x2 = (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl) == (2, 2, 2, 2, 1, 1, 0, 0);
    if plain_2x2 && 2 * g.oh <= g.h && 2 * g.ow <= g.w {
        if x.len() < g.c * g.h * g.w || y.len() < g.c * p {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F: `handles` checked this CPU has it. `max_2x2`'s other
        // preconditions are the lengths and the `2·oh ≤ h`, `2·ow ≤ w` just checked.
        #[allow(unsafe_code)]
        unsafe {
            // A NaN makes it decline; the portable loop then does every channel exactly.
            return kernels::max_2x2(x, g, y);
        }
    }
    let mut phases = Phases::new(g, f32::NEG_INFINITY);
    let (taps, stores) = (conv::phase_taps(g), phases.stores(g));
    for c in 0..g.c {
        // A NaN must win every window it is in: the portable loop's exact path does that
        // (and recomputes every channel).
        if phases.load(g, x, c) != Some(false) {
            return false;
        }
        let out = &mut y[c * p..(c + 1) * p];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `depthwise` (`handles`; `phases`, `taps`, `stores` made for this
        // geometry); a maximum reads no weights, so `ker` may be empty.
        #[allow(unsafe_code)]
        unsafe {
            let none = Act::None;
            kernels::run::<true>(
                &phases.buf,
                g.oh * phases.qw,
                &taps,
                &stores,
                &[],
                0.0,
                none,
                out,
            );
        }
    }
    true
}

/// The AVX-512 kernels; every function here requires AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernels {
    use super::GROUP;
    use crate::kernels::epilogue::{Act, Bias, Epilogue};
    use std::arch::x86_64::*;

    /// The 2×2 stride-2 unpadded max pooling of every channel, 16 outputs per vector (the
    /// even and odd columns of 32 inputs, picked apart by permutes). Returns `false` if the
    /// input holds a NaN (the caller then computes it exactly).
    ///
    /// # Safety
    /// AVX-512F; `x` holds `c·h·w` floats and `y` `c·oh·ow`, `2·oh ≤ h`, `2·ow ≤ w`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_2x2(x: &[f32], g: &super::Geometry, y: &mut [f32]) -> bool {
        let (even, odd) = (
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        );
        let bits = |n: usize| -> __mmask16 { if n >= 16 { 0xffff } else { (1 << n) - 1 } };
        let mut nan: __mmask16 = 0;
        for ch in 0..g.c {
            let plane = x.as_ptr().wrapping_add(ch * g.h * g.w);
            let out = y.as_mut_ptr().wrapping_add(ch * g.oh * g.ow);
            for oy in 0..g.oh {
                let mut ox = 0;
                while ox < g.ow {
                    let n = (g.ow - ox).min(16);
                    let (lo, hi) = (bits(2 * n), bits((2 * n).saturating_sub(16)));
                    // The second half's address can pass the buffer's end (then `hi` is 0):
                    // made with `wrapping_add`, and masked-off lanes are never accessed.
                    let r0 = plane.wrapping_add(2 * oy * g.w + 2 * ox);
                    let r1 = r0.wrapping_add(g.w);
                    // SAFETY: AVX-512F (the contract). The masks' lanes are columns
                    // 2·ox .. 2·(ox + n) ≤ w of rows 2·oy and 2·oy + 1 < h of channel ch < c,
                    // inside `x` (c·h·w floats), and `bits(n)` outputs ox .. ox + n ≤ ow of
                    // row oy < oh, inside `y` (c·oh·ow).
                    unsafe {
                        let (a0, a1) = (
                            _mm512_maskz_loadu_ps(lo, r0),
                            _mm512_maskz_loadu_ps(hi, r0.wrapping_add(16)),
                        );
                        let (b0, b1) = (
                            _mm512_maskz_loadu_ps(lo, r1),
                            _mm512_maskz_loadu_ps(hi, r1.wrapping_add(16)),
                        );
                        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a0, a1)
                            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b0, b1);
                        // Each row's left and right taps, then the larger of each pair and
                        // of the two rows (the portable loop's order).
                        let top = _mm512_max_ps(
                            _mm512_permutex2var_ps(a0, odd, a1),
                            _mm512_permutex2var_ps(a0, even, a1),
                        );
                        let bottom = _mm512_max_ps(
                            _mm512_permutex2var_ps(b0, odd, b1),
                            _mm512_permutex2var_ps(b0, even, b1),
                        );
                        _mm512_mask_storeu_ps(
                            out.wrapping_add(oy * g.ow + ox),
                            bits(n),
                            _mm512_max_ps(bottom, top),
                        );
                    }
                    ox += n;
                }
            }
            if nan != 0 {
                return false;
            }
        }
        true
    }

    /// [`super::copy_rows`] with AVX-512.
    ///
    /// # Safety
    /// AVX-512F; every row lies inside both slices.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_rows(dst: &mut [f32], src: &[f32], c: super::Rows) -> bool {
        let mut nan: __mmask16 = 0;
        for r in 0..c.rows {
            let (d, s) = (
                dst.as_mut_ptr().wrapping_add(c.d0 + r * c.ds),
                src.as_ptr().wrapping_add(c.s0 + r * c.ss),
            );
            let mut i = 0;
            while i < c.len {
                let left = c.len - i;
                let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
                // SAFETY: AVX-512F (the contract); `i` < len, so `s + i` and `d + i` are in the
                // row, and the mask's lanes are the row's floats i .. min(i + 16, len),
                // inside both slices (the contract).
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, s.add(i));
                    nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    _mm512_mask_storeu_ps(d.add(i), mask, v);
                }
                i += 16;
            }
        }
        nan != 0
    }

    /// Splits an input row into its two column phases: input column ix goes to phase
    /// φ = (ix + pl) % 2 at q = (ix + pl − φ) / 2, for q < qw; phase rows start at `at0` and
    /// `at1` in `buf`. Returns whether the row holds a NaN.
    ///
    /// # Safety
    /// AVX-512F. (Everything else is checked: loads are masked to `row`, stores to `buf`.)
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split2(
        buf: &mut [f32],
        at0: usize,
        at1: usize,
        qw: usize,
        pl: usize,
        row: &[f32],
    ) -> bool {
        let mut nan: __mmask16 = 0;
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let w = row.len();
        let mut ix = 0;
        while ix < w {
            let left = w - ix;
            let m0: __mmask16 = if left >= 16 {
                0xffff
            } else {
                (1u32 << left) as u16 - 1
            };
            let m1: __mmask16 = if left >= 32 {
                0xffff
            } else if left > 16 {
                (1u32 << (left - 16)) as u16 - 1
            } else {
                0
            };
            // SAFETY: AVX-512F (the contract). The masks' lanes are columns ix .. min(ix + 32,
            // w) of `row`; the second half's address may pass its end (`m1` is then 0), so
            // it is made with `wrapping_add`, and masked-off lanes are never accessed.
            let (v0, v1) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m0, row.as_ptr().wrapping_add(ix)),
                    _mm512_maskz_loadu_ps(m1, row.as_ptr().wrapping_add(ix + 16)),
                )
            };
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v0, v0)
                | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v1, v1);
            for (lanes, first) in [(even, ix), (odd, ix + 1)] {
                if first >= w {
                    continue;
                }
                let phs = (first + pl) % 2;
                let q0 = (first + pl - phs) / 2;
                // Lanes l: input column first + 2l (below w) at q0 + l (below qw).
                let count = (w - first).div_ceil(2).min(16).min(qw.saturating_sub(q0));
                if count == 0 {
                    continue;
                }
                let mask: __mmask16 = if count >= 16 {
                    0xffff
                } else {
                    (1u32 << count) as u16 - 1
                };
                let at = if phs == 0 { at0 } else { at1 } + q0;
                if at + count > buf.len() {
                    continue;
                }
                // SAFETY: AVX-512F (the contract); the mask's `count` lanes are the floats
                // `at .. at + count` of `buf`, checked just above.
                unsafe {
                    let v = _mm512_permutex2var_ps(v0, lanes, v1);
                    _mm512_mask_storeu_ps(buf.as_mut_ptr().add(at), mask, v);
                }
            }
            ix += 32;
        }
        nan != 0
    }

    /// One output plane: the weighted sum (or, with `MAX`, the maximum) over the taps of
    /// the phase planes `phases`, on the output grid (`n` positions), its vectors stored as
    /// `stores` says.
    ///
    /// # Safety
    /// AVX-512F; `phases` is a [`super::Phases`] buffer for the geometry `n`, `taps` and
    /// `stores` come from: `n` = oh·qw grid positions, `taps` = `conv::phase_taps`, whose
    /// every offset plus a position of the grid, plus 15, lies inside it (its
    /// `conv::padded_len` includes the slack for the last tap's columns past the last
    /// plane, with 16·(GROUP + 1) floats more); `stores` = [`super::Phases::stores`], whose
    /// kept lanes land inside `out` (oh·ow floats); `ker` holds a weight per tap unless `MAX`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn run<const MAX: bool>(
        phases: &[f32],
        n: usize,
        taps: &[usize],
        stores: &[(usize, u16)],
        ker: &[f32],
        bias: f32,
        act: Act,
        out: &mut [f32],
    ) {
        let ep = Epilogue {
            bias: Bias::None,
            residual: None,
            act,
        };
        let fast_act = ep.is_vectorizable();
        let base = phases.as_ptr();
        let init = if MAX {
            _mm512_set1_ps(f32::NEG_INFINITY)
        } else {
            _mm512_set1_ps(bias)
        };
        let mut j0 = 0;
        while j0 < n {
            // Whole groups while they fit the grid, then halves, quarters... (a tiny image would
            // otherwise compute a whole group for one vector; a single vector is latency-bound,
            // so only the last one runs alone).
            let left = (n - j0).div_ceil(16);
            // SAFETY: `block`'s contract is this function's, for a block of V ≤ `left`
            // vectors from j0 (so none starts past the grid).
            j0 = unsafe {
                if left >= GROUP {
                    block::<MAX, GROUP>(base, j0, taps, stores, ker, init, &ep, fast_act, out)
                } else if left >= 4 {
                    block::<MAX, 4>(base, j0, taps, stores, ker, init, &ep, fast_act, out)
                } else if left >= 2 {
                    block::<MAX, 2>(base, j0, taps, stores, ker, init, &ep, fast_act, out)
                } else {
                    block::<MAX, 1>(base, j0, taps, stores, ker, init, &ep, fast_act, out)
                }
            };
        }
    }

    /// `V` vectors of the grid from `j0`; returns where the next block starts.
    ///
    /// # Safety
    /// As [`run`]'s, with `base` = `phases.as_ptr()`, and j0 + 16·(V − 1) below the grid's
    /// `n` positions.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const MAX: bool, const V: usize>(
        base: *const f32,
        j0: usize,
        taps: &[usize],
        stores: &[(usize, u16)],
        ker: &[f32],
        init: __m512,
        ep: &Epilogue,
        fast_act: bool,
        out: &mut [f32],
    ) -> usize {
        let mut acc = [init; V];
        for (t, &off) in taps.iter().enumerate() {
            let w = if MAX { init } else { _mm512_set1_ps(ker[t]) };
            for (v, a) in acc.iter_mut().enumerate() {
                // SAFETY: AVX-512F (the contract). Vector v < V reads grid positions
                // j0 + 16·v .. + 16 < n + 15 at tap offset `off`: inside the phases and their
                // slack (the contract); lanes past the grid are computed and never stored.
                let x = unsafe { _mm512_loadu_ps(base.add(off + j0 + 16 * v)) };
                *a = if MAX {
                    _mm512_max_ps(*a, x)
                } else {
                    _mm512_fmadd_ps(w, x, *a)
                };
            }
        }
        for (&a, &(at, mask)) in acc.iter().zip(&stores[j0 / 16..]) {
            if mask == 0 {
                continue;
            }
            // SAFETY: AVX-512F (the contract). `stores` says where this vector's kept lanes
            // go: `mask`'s lanes, written one after another from `at`, are output positions
            // inside `out` (all 16 of them when the mask is full), as `Phases::stores`
            // computes them from the grid (the contract); `lanes` is a 16-float array.
            unsafe {
                let dst = out.as_mut_ptr().add(at);
                let a = if MAX || fast_act {
                    if MAX { a } else { ep.apply_avx512(a, 0, 0, 16) }
                } else {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), a);
                    for x in &mut lanes {
                        *x = ep.act.apply(*x);
                    }
                    _mm512_loadu_ps(lanes.as_ptr())
                };
                if mask == 0xffff {
                    _mm512_storeu_ps(dst, a);
                } else {
                    _mm512_mask_compressstoreu_ps(dst, mask, a);
                }
            }
        }
        j0 + 16 * V
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry {
            c: 2,
            h: 5,
            w: 37,
            oh: 3,
            ow: 19,
            kh: 3,
            kw: 3,
            sh: 2,
            sw: 2,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
        }
    }

    #[test]
    fn max_pool_agrees_with_the_portable_loop_and_leaves_nans_to_it() {
        // The general phase kernel, and the 2×2/2 one on an odd width (a row's last vector
        // partly masked, the last input column unread) and on 16 outputs per row exactly.
        let two = |h: usize, w: usize| Geometry {
            c: 3,
            h,
            w,
            oh: h / 2,
            ow: w / 2,
            kh: 2,
            kw: 2,
            sh: 2,
            sw: 2,
            pt: 0,
            pl: 0,
            ..geo()
        };
        for g in [geo(), two(9, 37), two(4, 32)] {
            max_pool_case(&g);
        }
    }

    fn max_pool_case(g: &Geometry) {
        let g = *g;
        let mut x: Vec<f32> = (0..g.c * g.h * g.w)
            .map(|i| ((i * 37 % 101) as f32) - 50.0)
            .collect();
        let mut want = vec![0f32; g.c * g.oh * g.ow];
        crate::kernels::pool::max_pool(&x, &g, &mut want);
        let mut got = vec![f32::NAN; want.len()];
        let isa = Isa::cached();
        if max_pool(isa, &x, &g, &mut got) {
            assert_eq!(got, want);
        } else {
            // Only a CPU without AVX-512 declines a NaN-free image.
            assert_ne!(isa, Isa::Avx512);
        }
        // A NaN in the last channel: declined (the portable loop propagates it).
        x[(g.c - 1) * g.h * g.w + 7] = f32::NAN;
        assert!(!max_pool(isa, &x, &g, &mut got));
    }
}
