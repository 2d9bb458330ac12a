//! 2-D convolution of one image (NCHW, one sample): as a GEMM with the packed weights
//! (1×1 stride-1 unpadded convolutions read the input directly, strided 1×1 ones through
//! im2col, all others through stride-phase planes read in place), or, for depthwise
//! convolutions, a direct loop per channel (the portable path of `window`).

use crate::kernels::epilogue::{Bias, Epilogue};
use crate::kernels::gemm::{
    Crop, Isa, PackedA, gemm_packed_a, gemm_packed_a_indirect, gemm_packed_a_panels,
};

/// The geometry of a 2-D convolution (or pooling window) over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows).
    pub sh: usize,
    /// Stride (columns).
    pub sw: usize,
    /// Dilation (rows).
    pub dh: usize,
    /// Dilation (columns).
    pub dw: usize,
    /// Top padding.
    pub pt: usize,
    /// Left padding.
    pub pl: usize,
}

impl Geometry {
    /// A 3×3 stride-1 window over `c` channels of `h`×`w`, padded by `pad` (0 or 1) on every
    /// side: the convolution image models have most.
    pub fn three_by_three(c: usize, h: usize, w: usize, pad: usize) -> Geometry {
        Geometry {
            c,
            h,
            w,
            oh: (h + 2 * pad).saturating_sub(2),
            ow: (w + 2 * pad).saturating_sub(2),
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: pad,
            pl: pad,
        }
    }

    /// The input row read by output row `oy` and kernel row `ky`, if inside the image.
    #[inline(always)]
    pub fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.pt)
            .filter(|&y| y < self.h)
    }

    /// The input column read by output column `ox` and kernel column `kx`, if inside.
    #[inline(always)]
    pub fn in_col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx * self.dw)
            .checked_sub(self.pl)
            .filter(|&x| x < self.w)
    }

    /// Whether this is a 1×1 stride-1 unpadded window (the input is already the GEMM's B).
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }
}

/// A convolution of one image with `groups` groups of packed weights (one [`PackedA`] per
/// group, `m/groups × (c/groups)·kh·kw` each): `y` (`[M, oh, ow]`) = W ⊛ `x` + epilogue.
/// `scratch` must hold `(c/groups)·kh·kw·oh·ow` floats unless the conv is pointwise.
pub fn conv2d(
    isa: Isa,
    x: &[f32],
    g: &Geometry,
    weights: &[PackedA<'_>],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: crate::kernels::epilogue::Act,
    y: &mut [f32],
    scratch: &mut [f32],
    cols: std::ops::Range<usize>,
) -> Result<(), String> {
    let groups = weights.len().max(1);
    if residual.is_some_and(|r| r.len() < y.len()) {
        return Err("conv: the residual is smaller than the output".into());
    }
    let cg = g.c / groups;
    let p = g.oh * g.ow;
    let mut m0 = 0;
    for (gi, wa) in weights.iter().enumerate() {
        let mg = wa.m;
        let ep = Epilogue {
            bias: bias.map_or(Bias::None, |b| Bias::PerRow(&b[m0..m0 + mg])),
            residual: residual.map(|r| &r[m0 * p..(m0 + mg) * p]),
            act,
        };
        let out = &mut y[m0 * p..(m0 + mg) * p];
        if g.is_pointwise() {
            let b = &x[gi * cg * p..(gi + 1) * cg * p];
            gemm_packed_a(isa, *wa, b, p, p, out, p, &ep, cols.clone())?;
        } else if cols.start == 0 && cols.end >= p && g.kh * g.kw > 1 {
            // (A strided 1×1 convolution reads one input pixel per output: its im2col is a
            // plain subsampling, cheaper through the panels below; measured.)
            conv_indirect(isa, x, g, gi * cg, cg, *wa, &ep, out, scratch)?;
        } else {
            let k = cg * g.kh * g.kw;
            let tw = isa.tile_cols();
            let col = scratch
                .get_mut(..crate::kernels::gemm::panels_len(k, p, tw))
                .ok_or("conv: scratch buffer too small")?;
            im2col_panels(x, g, gi * cg, cg, tw, col);
            gemm_packed_a_panels(isa, *wa, col, p, out, p, &ep, cols.clone())?;
        }
        m0 += mg;
    }
    Ok(())
}

/// Floats of scratch a convolution needs (either path; tiles up to 64 columns wide).
pub fn scratch_len(g: &Geometry, groups: usize) -> usize {
    let groups = groups.max(1);
    let cg = g.c / groups;
    let k = cg * g.kh * g.kw;
    crate::kernels::gemm::panels_len(k, g.oh * g.ow, 64).max(padded_len(g, cg))
}

/// Readable floats past the phase planes: the last tap's row runs `((kw − 1)·dw) / sw` past
/// the end of the last plane, and a tile may read up to 64 columns past the result's end.
fn slack(g: &Geometry) -> usize {
    64 + (g.kw - 1) * g.dw / g.sw.max(1)
}

/// The zero-padded input split by stride phase: phase (ψ, φ) of a channel holds padded row
/// `r·sh + ψ`, column `q·sw + φ` at (r, q), in `qh × qw` planes. Tap (ky, kx) of output
/// (oy, ox) then reads phase ((ky·dh) % sh, (kx·dw) % sw) at row oy + (ky·dh) / sh, column
/// ox + (kx·dw) / sw: for every stride, a stride-1 window over one plane. Returns
/// (phases, qh, qw).
pub(crate) fn phase_dims(g: &Geometry) -> (usize, usize, usize) {
    let (sh, sw) = (g.sh.max(1), g.sw.max(1));
    (
        sh * sw,
        g.oh + (g.kh - 1) * g.dh / sh,
        g.ow + (g.kw - 1) * g.dw / sw,
    )
}

/// A convolution with no im2col: the input is copied once into zero-padded stride-phase
/// planes (see [`phase_dims`]); B's row for tap (c, ky, kx) is then one of them shifted,
/// read in place by the GEMM (an indirect B). The result is computed `qw` wide and stored
/// `ow` wide (a [`Crop`]).
#[allow(clippy::too_many_arguments)]
fn conv_indirect(
    isa: Isa,
    x: &[f32],
    g: &Geometry,
    c0: usize,
    cg: usize,
    wa: PackedA<'_>,
    ep: &Epilogue,
    out: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), String> {
    let split = padded_len(g, cg);
    if scratch.len() < split {
        return Err("conv: scratch buffer too small".into());
    }
    let padded = &mut scratch[..split];
    pad_input(x, g, c0, cg, padded)?;
    conv_indirect_rows(isa, wa, 0..wa.m, ep, padded, g, cg, out)
}

/// Floats of the phase planes (and slack) of `cg` channels.
pub fn padded_len(g: &Geometry, cg: usize) -> usize {
    let (phases, qh, qw) = phase_dims(g);
    cg * phases * qh * qw + slack(g)
}

/// Copies channels `c0..c0 + cg` of `x` into zero-padded phase planes (see
/// [`padded_len`]).
pub fn pad_input(
    x: &[f32],
    g: &Geometry,
    c0: usize,
    cg: usize,
    padded: &mut [f32],
) -> Result<(), String> {
    pad_phases(x, g, c0, cg, padded, 0.0).map(|_| ())
}

/// For column phase `phs` (planes `qw` wide): the plane columns `lo..hi` that hold input
/// columns (ix = q·sw + φ − pl in [0, w)), and the input column at `lo`.
fn phase_span(g: &Geometry, phs: usize, qw: usize) -> (usize, usize, usize) {
    let sw = g.sw.max(1);
    let lo = g.pl.saturating_sub(phs).div_ceil(sw).min(qw);
    let hi = (g.w + g.pl).saturating_sub(phs).div_ceil(sw).clamp(lo, qw);
    (lo, hi, (lo * sw + phs).saturating_sub(g.pl))
}

/// Where tap (ky, kx) reads in one channel's phase planes, relative to the output position
/// (see [`phase_dims`]).
pub(crate) fn phase_taps(g: &Geometry) -> Vec<usize> {
    let (_, qh, qw) = phase_dims(g);
    let (sh, sw) = (g.sh.max(1), g.sw.max(1));
    let mut t = Vec::with_capacity(g.kh * g.kw);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let (dy, dx) = (ky * g.dh, kx * g.dw);
            let phase = (dy % sh) * sw + dx % sw;
            t.push(phase * qh * qw + (dy / sh) * qw + dx / sw);
        }
    }
    t
}

/// [`pad_input`] with `fill` around the image (−∞ for max pooling); returns whether the
/// copied channels hold a NaN.
pub(crate) fn pad_phases(
    x: &[f32],
    g: &Geometry,
    c0: usize,
    cg: usize,
    padded: &mut [f32],
    fill: f32,
) -> Result<bool, String> {
    PhaseLayout::new(g).pad(g, x, c0, cg, padded, Some(fill))
}

/// What [`PhaseLayout::pad`] needs of a geometry, worked out once (a pool or depthwise layer
/// pads one channel at a time: per-row divisions would cost more than the copy).
pub(crate) struct PhaseLayout {
    phases: usize,
    qh: usize,
    qw: usize,
    /// Per column phase: [`phase_span`], and whether any tap reads the phase.
    cols: Vec<((usize, usize, usize), bool)>,
    /// Per row phase: whether any tap reads it.
    rows: Vec<bool>,
    /// Readable floats past the planes ([`slack`]).
    slack: usize,
}

impl PhaseLayout {
    pub(crate) fn new(g: &Geometry) -> PhaseLayout {
        let (phases, qh, qw) = phase_dims(g);
        let (sh, sw) = (g.sh.max(1), g.sw.max(1));
        PhaseLayout {
            phases,
            qh,
            qw,
            cols: (0..sw)
                .map(|phs| {
                    let used = (0..g.kw).any(|kx| kx * g.dw % sw == phs);
                    (phase_span(g, phs, qw), used)
                })
                .collect(),
            rows: (0..sh)
                .map(|ps| (0..g.kh).any(|ky| ky * g.dh % sh == ps))
                .collect(),
            slack: slack(g),
        }
    }

    /// Copies channels `c0..c0 + cg` of `x` into the phase planes (see [`padded_len`]) with
    /// `fill` around the image (`None`: the buffer already holds the planes' borders, as
    /// when one channel after another goes through the same buffer); returns whether they
    /// hold a NaN. Every position of the phases some tap reads is written once (a strided
    /// 1×1 window reads one phase of four; no fill of the whole plane first: at 224×224 that
    /// was a third of the copy's memory traffic).
    pub(crate) fn pad(
        &self,
        g: &Geometry,
        x: &[f32],
        c0: usize,
        cg: usize,
        padded: &mut [f32],
        fill: Option<f32>,
    ) -> Result<bool, String> {
        let (phases, qh, qw) = (self.phases, self.qh, self.qw);
        let (sh, sw) = (self.rows.len(), self.cols.len());
        let plane = qh * qw;
        let padded = padded
            .get_mut(..cg * phases * plane + self.slack)
            .ok_or("conv: padding buffer too small")?;
        let (body, tail) = padded.split_at_mut(cg * phases * plane);
        if let Some(f) = fill {
            tail.fill(f);
        }
        // (Rows are short: a `memset`/`memcpy` call per border and row cost more than the
        // copy itself; measured. Plain loops, and masked vector moves in `window`.)
        let set = |s: &mut [f32]| {
            if let Some(f) = fill {
                for v in s {
                    *v = f;
                }
            }
        };
        let mut nan = false;
        for c in 0..cg {
            let src = &x[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
            let block = &mut body[c * phases * plane..(c + 1) * phases * plane];
            for ps in (0..sh).filter(|&ps| self.rows[ps]) {
                let in_row = |r: usize| (r * sh + ps).checked_sub(g.pt).filter(|&iy| iy < g.h);
                if sw == 1 {
                    // One column phase: the image's rows in one call (input rows sh apart).
                    let (lo, hi, ix0) = self.cols[0].0;
                    let mut inside = (0..qh).filter(|&r| in_row(r).is_some());
                    if let (Some(r0), true) = (inside.next(), lo < hi) {
                        let r1 = inside.next_back().unwrap_or(r0) + 1;
                        let iy0 = in_row(r0).unwrap_or(0);
                        let at = (ps * qh + r0) * qw + lo;
                        let rows = crate::kernels::window::Rows {
                            d0: at,
                            ds: qw,
                            s0: iy0 * g.w + ix0,
                            ss: sh * g.w,
                            rows: r1 - r0,
                            len: hi - lo,
                        };
                        nan |= crate::kernels::window::copy_rows(block, src, rows)?;
                    }
                }
                for r in 0..qh {
                    let iy = (r * sh + ps).checked_sub(g.pt).filter(|&iy| iy < g.h);
                    let at = |phs: usize| ((ps * sw + phs) * qh + r) * qw;
                    for (phs, &((lo, hi, _), used)) in self.cols.iter().enumerate() {
                        if !used || fill.is_none() {
                            continue;
                        }
                        let line = &mut block[at(phs)..at(phs) + qw];
                        if iy.is_none() || lo >= hi {
                            set(line);
                        } else {
                            set(&mut line[..lo]);
                            set(&mut line[hi..]);
                        }
                    }
                    let Some(iy) = iy else { continue };
                    if sw == 1 {
                        continue;
                    }
                    let row = &src[iy * g.w..(iy + 1) * g.w];
                    if sw == 2
                        && let Some(n) =
                            crate::kernels::window::split_row2(block, at(0), at(1), qw, g.pl, row)
                    {
                        nan |= n;
                        continue;
                    }
                    for (phs, &((lo, hi, ix0), used)) in self.cols.iter().enumerate() {
                        if !used || lo >= hi {
                            continue;
                        }
                        // (Strides of 3 and more, or 2 without AVX-512: a column at a time.)
                        let dst = &mut block[at(phs) + lo..at(phs) + hi];
                        for (j, d) in dst.iter_mut().enumerate() {
                            *d = row[ix0 + j * sw];
                            nan |= d.is_nan();
                        }
                    }
                }
            }
        }
        Ok(nan)
    }
}

/// Output channels `rows` (a multiple of MR to a multiple of MR or m) of a convolution over
/// phase planes: into `out` (just those channels, `[rows, oh, ow]`). The GEMM computes `qw`
/// columns per output row and stores the first `ow` of them.
#[allow(clippy::too_many_arguments)]
pub fn conv_indirect_rows(
    isa: Isa,
    wa: PackedA<'_>,
    rows: std::ops::Range<usize>,
    ep: &Epilogue,
    padded: &[f32],
    g: &Geometry,
    cg: usize,
    out: &mut [f32],
) -> Result<(), String> {
    use crate::kernels::gemm::MR;
    if rows.is_empty() {
        return Ok(());
    }
    if !rows.start.is_multiple_of(MR) || rows.end > wa.m {
        return Err("conv: row range not aligned to the weight panels".into());
    }
    let (phases, qh, qw) = phase_dims(g);
    let taps = phase_taps(g);
    let tab: Vec<usize> = (0..cg)
        .flat_map(|c| taps.iter().map(move |t| c * phases * qh * qw + t))
        .collect();
    let n = g.oh * qw;
    let pw = qw;
    let mr = rows.len();
    let p = g.oh * g.ow;
    let out = out
        .get_mut(..mr * p)
        .ok_or("conv: output buffer too small")?;
    let first = rows.start / MR * wa.k * MR;
    let sub = PackedA {
        m: mr,
        k: wa.k,
        data: &wa.data[first..],
    };
    let ep = Epilogue {
        bias: match ep.bias {
            Bias::PerRow(b) => Bias::PerRow(&b[rows.start..rows.end]),
            other => other,
        },
        // Laid out like `out`: these channels' rows already.
        residual: ep.residual,
        act: ep.act,
    };
    let crop = Crop { pw, ow: g.ow };
    gemm_packed_a_indirect(isa, sub, padded, &tab, n, out, p, &ep, crop)
}

/// The im2col matrix of channels `c0..c0 + cg` straight in the GEMM's B panels:
/// `out[(p / tw)·K·tw + k·tw + p % tw]` = patch element k of output pixel p (zero outside
/// the image and past the last pixel).
pub fn im2col_panels(x: &[f32], g: &Geometry, c0: usize, cg: usize, tw: usize, out: &mut [f32]) {
    let k_all = cg * g.kh * g.kw;
    let p_all = g.oh * g.ow;
    let blocks = p_all.div_ceil(tw);
    // The zero tail of the last panel.
    if !p_all.is_multiple_of(tw) {
        let last = (blocks - 1) * k_all * tw;
        for k in 0..k_all {
            out[last + k * tw + p_all % tw..last + (k + 1) * tw].fill(0.0);
        }
    }
    let mut k = 0;
    for c in c0..c0 + cg {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (lo, hi, ix0) = col_span(g, kx);
                for oy in 0..g.oh {
                    let p0 = oy * g.ow;
                    let row = g.in_row(oy, ky).map(|iy| &plane[iy * g.w..(iy + 1) * g.w]);
                    // Output pixels p0..p0 + ow, written run by run within each panel.
                    let mut ox = 0;
                    while ox < g.ow {
                        let p = p0 + ox;
                        let (blk, lane) = (p / tw, p % tw);
                        let run = (tw - lane).min(g.ow - ox);
                        let dst = &mut out[blk * k_all * tw + k * tw + lane..][..run];
                        match row {
                            None => dst.fill(0.0),
                            Some(src) => {
                                // Valid outputs [a, b) of this run; zeros around them.
                                let a = lo.clamp(ox, ox + run);
                                let b = hi.clamp(a, ox + run);
                                dst[..a - ox].fill(0.0);
                                dst[b - ox..].fill(0.0);
                                let mid = &mut dst[a - ox..b - ox];
                                if mid.is_empty() {
                                    ox += run;
                                    continue;
                                }
                                let s0 = ix0 + (a - lo) * g.sw;
                                if g.sw == 1 {
                                    mid.copy_from_slice(&src[s0..s0 + (b - a)]);
                                } else {
                                    for (i, d) in mid.iter_mut().enumerate() {
                                        *d = src[s0 + i * g.sw];
                                    }
                                }
                            }
                        }
                        ox += run;
                    }
                }
                k += 1;
            }
        }
    }
}

/// For kernel column `kx`: the output columns whose input column is inside the image, as
/// `(first, end)`, and the input column of `first`.
#[inline]
pub fn col_span(g: &Geometry, kx: usize) -> (usize, usize, usize) {
    // ix = ox·sw + kx·dw − pl must lie in [0, w).
    let shift = kx * g.dw;
    let lo = if shift >= g.pl {
        0
    } else {
        (g.pl - shift).div_ceil(g.sw)
    };
    let hi = if g.w + g.pl > shift {
        ((g.w + g.pl - shift - 1) / g.sw + 1).min(g.ow)
    } else {
        0
    };
    let lo = lo.min(hi);
    (lo, hi, (lo * g.sw + shift).saturating_sub(g.pl))
}

avx2_dispatch! {
    /// A depthwise convolution of one image: output channel `o` reads input channel
    /// `o / multiplier` with its own `kh × kw` kernel (`w`: `[M, kh, kw]`). Each kernel tap is
    /// one pass over the output rows it reaches (a vectorizable multiply-add over a run of
    /// columns), so no bounds are tested per element.
    pub fn depthwise(x: &[f32],
    g: &Geometry,
    m: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    act: crate::kernels::epilogue::Act,
    y: &mut [f32]) => depthwise_generic
}

#[inline(always)]
fn depthwise_generic(
    x: &[f32],
    g: &Geometry,
    m: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    act: crate::kernels::epilogue::Act,
    y: &mut [f32],
) {
    let mult = (m / g.c.max(1)).max(1);
    let (hw, p, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    if g.dh == 1 && g.dw == 1 {
        // Split each zero-padded input plane by stride phase: Q[ψ][φ][r][q] =
        // padded[r·sh + ψ][q·sw + φ]. Tap (ky, kx) then reads phase (ky % sh, kx % sw) at
        // row oy + ky / sh, column ox + kx / sw: one contiguous multiply-add over the whole
        // output computed `qw` wide (extra columns dropped), which vectorizes fully, for any
        // stride.
        let (sh, sw) = (g.sh, g.sw);
        let qh = g.oh + (g.kh - 1) / sh + 2;
        let qw = g.ow + (g.kw - 1) / sw + 1;
        let mut phases = vec![0f32; sh * sw * qh * qw];
        let mut wide = vec![0f32; g.oh * qw];
        for o in 0..m {
            if o % mult == 0 {
                let plane = &x[(o / mult) * hw..(o / mult + 1) * hw];
                for ps in 0..sh {
                    for phs in 0..sw {
                        let q = &mut phases[(ps * sw + phs) * qh * qw..][..qh * qw];
                        for r in 0..qh {
                            let iy = (r * sh + ps).checked_sub(g.pt).filter(|&iy| iy < g.h);
                            let row = &mut q[r * qw..(r + 1) * qw];
                            match iy {
                                None => row.fill(0.0),
                                Some(iy) => {
                                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                                    // Columns c with ix = c·sw + φ − pl in [0, w).
                                    let lo = g.pl.saturating_sub(phs).div_ceil(sw).min(qw);
                                    let hi =
                                        (g.w + g.pl).saturating_sub(phs).div_ceil(sw).clamp(lo, qw);
                                    row[..lo].fill(0.0);
                                    row[hi..].fill(0.0);
                                    let ix0 = lo * sw + phs - g.pl;
                                    if sw == 1 {
                                        row[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                                    } else {
                                        for (j, d) in row[lo..hi].iter_mut().enumerate() {
                                            *d = src[ix0 + j * sw];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let ker = &w[o * kk..(o + 1) * kk];
            wide.fill(bias.map_or(0.0, |b| b[o]));
            let n = wide.len();
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = ker[ky * g.kw + kx];
                    let q = &phases[((ky % sh) * sw + kx % sw) * qh * qw..][..qh * qw];
                    let at = (ky / sh) * qw + kx / sw;
                    for (d, &v) in wide.iter_mut().zip(&q[at..at + n]) {
                        *d += wv * v;
                    }
                }
            }
            let out = &mut y[o * p..(o + 1) * p];
            for oy in 0..g.oh {
                let row = &wide[oy * qw..oy * qw + g.ow];
                let dst = &mut out[oy * g.ow..(oy + 1) * g.ow];
                if act == crate::kernels::epilogue::Act::None {
                    dst.copy_from_slice(row);
                } else {
                    for (d, &v) in dst.iter_mut().zip(row) {
                        *d = act.apply(v);
                    }
                }
            }
        }
        return;
    }
    let spans: Vec<(usize, usize, usize)> = (0..g.kw).map(|kx| col_span(g, kx)).collect();
    for o in 0..m {
        let plane = &x[(o / mult) * hw..(o / mult + 1) * hw];
        let ker = &w[o * kk..(o + 1) * kk];
        let out = &mut y[o * p..(o + 1) * p];
        out.fill(bias.map_or(0.0, |b| b[o]));
        for oy in 0..g.oh {
            let dst = &mut out[oy * g.ow..(oy + 1) * g.ow];
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                let row = &plane[iy * g.w..(iy + 1) * g.w];
                for (kx, &(lo, hi, ix0)) in spans.iter().enumerate() {
                    if lo >= hi {
                        // No output column of this tap reads inside the image.
                        continue;
                    }
                    let wv = ker[ky * g.kw + kx];
                    let d = &mut dst[lo..hi];
                    // Plain multiply-add: `mul_add` without FMA enabled is a libm call.
                    if g.sw == 1 {
                        for (o, &v) in d.iter_mut().zip(&row[ix0..ix0 + (hi - lo)]) {
                            *o += wv * v;
                        }
                    } else {
                        for (j, o) in d.iter_mut().enumerate() {
                            *o += wv * row[ix0 + j * g.sw];
                        }
                    }
                }
            }
        }
        if act != crate::kernels::epilogue::Act::None {
            for v in out.iter_mut() {
                *v = act.apply(*v);
            }
        }
    }
}
