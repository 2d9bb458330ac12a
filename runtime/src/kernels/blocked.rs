//! Kernels on the channel-blocked layout: a sample of `c` channels (a multiple of 16) over an
//! `h × w` image is stored as `[c/16][h][w][16]` ("NCHW16c"), so one 512-bit vector holds
//! one pixel's 16 channels of a block.
//!
//! In this layout a convolution's register tile is P output pixels × F blocks of 16 output
//! channels: per input channel and tap, F weight vectors are loaded and each of the P
//! pixels' input values is broadcast into F fused multiply-adds. The P pixels are any P
//! consecutive outputs (the tile may wrap output rows: each pixel has its own input offset),
//! so small images waste no lanes, and stride and dilation are only offsets. Depthwise
//! convolution and pooling are vectors over 16 channels with no lane unused.
//!
//! Every kernel has an AVX-512 path and a portable one (the same arithmetic, summation
//! order per output identical within a path); both are checked against the reference
//! evaluator through the program tests.

use crate::kernels::conv::Geometry;
use crate::kernels::epilogue::Act;
use crate::kernels::gemm::Isa;

/// Channels per block (the lanes of an AVX-512 vector of f32).
pub const LANES: usize = 16;

/// NCHW → NCHW16c for one sample of `c` channels (a multiple of 16) of `hw` pixels.
pub fn to_blocked(isa: Isa, x: &[f32], c: usize, hw: usize, y: &mut [f32]) -> Result<(), String> {
    check_reorder(x, c, hw, y)?;
    for (src, dst) in x
        .chunks_exact(LANES * hw.max(1))
        .zip(y.chunks_exact_mut(LANES * hw.max(1)))
    {
        transpose(isa, src, LANES, hw, dst);
    }
    Ok(())
}

/// NCHW16c → NCHW for one sample of `c` channels of `hw` pixels. When `c` is not a
/// multiple of 16 the input holds `c/16` rounded up blocks, and the last block's unused
/// lanes (the padding channels of a convolution computed on whole blocks) are dropped.
pub fn from_blocked(isa: Isa, x: &[f32], c: usize, hw: usize, y: &mut [f32]) -> Result<(), String> {
    let (whole, rest) = (c / LANES * LANES, c % LANES);
    if x.len() < c.next_multiple_of(LANES) * hw || y.len() < c * hw {
        return Err("a reordered tensor is smaller than its shape".into());
    }
    for (src, dst) in x[..whole * hw]
        .chunks_exact(LANES * hw.max(1))
        .zip(y[..whole * hw].chunks_exact_mut(LANES * hw.max(1)))
    {
        transpose(isa, src, hw, LANES, dst);
    }
    let (src, dst) = (&x[whole * hw..], &mut y[whole * hw..c * hw]);
    for ch in 0..rest {
        for (p, v) in dst[ch * hw..(ch + 1) * hw].iter_mut().enumerate() {
            *v = src[p * LANES + ch];
        }
    }
    Ok(())
}

/// `dst` (`cols × rows`) = the transpose of `src` (`rows × cols`, one of them 16): 16×16
/// register transposes where the CPU has AVX-512, element by element at the edges.
fn transpose(isa: Isa, src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    // Rows and columns (from 0) the register tiles covered.
    let (mut rc, mut cc) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512
        && isa.runs_here()
        && (rows == LANES || cols == LANES)
        && src.len() >= rows * cols
        && dst.len() >= rows * cols
    {
        // Full 16×16 tiles along the side that is not 16.
        let tiles = if rows == LANES { cols } else { rows } / LANES;
        for t in 0..tiles {
            let (i, j) = if rows == LANES {
                (0, t * LANES)
            } else {
                (t * LANES, 0)
            };
            // SAFETY: AVX-512F: this CPU has it (`runs_here`). One side is 16 and the tile
            // steps along the other by whole tiles, so i + 16 ≤ rows and j + 16 ≤ cols: the
            // 16 rows of 16 floats from `src[i·cols + j]` (stride `cols`) lie in its
            // rows·cols floats, and the 16 rows from `dst[j·rows + i]` (stride `rows`) in
            // `dst`'s (both checked above); a shared and an exclusive borrow cannot overlap.
            #[allow(unsafe_code)]
            unsafe {
                avx512::transpose16(
                    src.as_ptr().add(i * cols + j),
                    cols,
                    dst.as_mut_ptr().add(j * rows + i),
                    rows,
                )
            };
        }
        (rc, cc) = if rows == LANES {
            (rows, tiles * LANES)
        } else {
            (tiles * LANES, cols)
        };
    }
    let _ = isa;
    for i in 0..rows {
        for j in if i < rc { cc..cols } else { 0..cols } {
            dst[j * rows + i] = src[i * cols + j];
        }
    }
}

fn check_reorder(x: &[f32], c: usize, hw: usize, y: &[f32]) -> Result<(), String> {
    if !c.is_multiple_of(LANES) {
        return Err(format!("{c} channels are not whole blocks of {LANES}"));
    }
    if x.len() < c * hw || y.len() < c * hw {
        return Err("a reordered tensor is smaller than its shape".into());
    }
    Ok(())
}

/// The extent (rows, columns) of a convolution's input as its kernel reads it: the image
/// with its padding, grown to whatever the last window reaches.
pub fn padded_dims(g: &Geometry) -> (usize, usize) {
    let reach = |o: usize, s: usize, k: usize, d: usize| {
        o.saturating_sub(1) * s + k.saturating_sub(1) * d + 1
    };
    (
        (g.pt + g.h).max(reach(g.oh, g.sh, g.kh, g.dh)),
        (g.pl + g.w).max(reach(g.ow, g.sw, g.kw, g.dw)),
    )
}

/// Whether the convolution reads a padded copy of its input (else the input in place).
pub fn needs_padding(g: &Geometry) -> bool {
    padded_dims(g) != (g.h, g.w) || g.pt != 0 || g.pl != 0
}

/// Floats of the padded copy of one sample's input (blocked or plain: the same count).
pub fn padded_len(g: &Geometry) -> usize {
    let (hp, wp) = padded_dims(g);
    g.c * hp * wp
}

/// Writes one sample's input, zero-padded to [`padded_dims`], into `out`: `[c/16][hp][wp][16]`
/// when `blocked`, else `[c][hp][wp]`.
pub fn pad(x: &[f32], g: &Geometry, blocked: bool, out: &mut [f32]) -> Result<(), String> {
    pad_rows(x, g, blocked, 0..padded_dims(g).0, out)
}

/// Like [`pad`] for the padded rows `rows` of every plane only (the rest of `out` is left
/// as it was): what a task computing some output rows reads.
pub fn pad_rows(
    x: &[f32],
    g: &Geometry,
    blocked: bool,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<(), String> {
    let (hp, wp) = padded_dims(g);
    let lanes = if blocked { LANES } else { 1 };
    if (blocked && !g.c.is_multiple_of(LANES)) || x.len() < g.c * g.h * g.w {
        return Err("a convolution's input is smaller than its shape".into());
    }
    if out.len() < g.c * hp * wp {
        return Err("the padding buffer is too small".into());
    }
    let rows = rows.start.min(hp)..rows.end.min(hp);
    let (row, prow) = (g.w * lanes, wp * lanes);
    for p in 0..g.c / lanes {
        let src = &x[p * g.h * row..(p + 1) * g.h * row];
        let dst = &mut out[p * hp * prow..(p + 1) * hp * prow];
        for r in rows.clone() {
            let d = &mut dst[r * prow..(r + 1) * prow];
            match r.checked_sub(g.pt).filter(|&y| y < g.h) {
                Some(y) => {
                    d[..g.pl * lanes].fill(0.0);
                    d[g.pl * lanes..g.pl * lanes + row]
                        .copy_from_slice(&src[y * row..(y + 1) * row]);
                    d[g.pl * lanes + row..].fill(0.0);
                }
                None => d.fill(0.0),
            }
        }
    }
    Ok(())
}

/// The padded rows that output pixels `pixels` (row-major over `oh·ow`) read.
pub fn rows_read(g: &Geometry, pixels: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    if pixels.is_empty() || g.ow == 0 {
        return 0..0;
    }
    let (first, last) = (pixels.start / g.ow, (pixels.end - 1) / g.ow);
    first * g.sh..last * g.sh + g.kh.saturating_sub(1) * g.dh + 1
}

/// Packs a convolution's weights `[m][c][kh][kw]` (`m` a multiple of 16) as
/// `[m/16][k][16]`, `k` running over input channels and taps in the order the kernel reads
/// them: `(c/16, kh, kw, 16)` for a blocked input, `(c, kh, kw)` for a plain one.
pub fn pack_conv(w: &[f32], m: usize, c: usize, kh: usize, kw: usize, blocked: bool) -> Vec<f32> {
    let kk = kh * kw;
    let k = c * kk;
    let mut out = vec![0.0; m.div_ceil(LANES) * k * LANES];
    for o in 0..m {
        let (ob, lane) = (o / LANES, o % LANES);
        for ic in 0..c {
            for t in 0..kk {
                let kidx = if blocked {
                    ((ic / LANES) * kk + t) * LANES + ic % LANES
                } else {
                    ic * kk + t
                };
                out[(ob * k + kidx) * LANES + lane] =
                    w.get((o * c + ic) * kk + t).copied().unwrap_or(0.0);
            }
        }
    }
    out
}

/// Packs depthwise weights `[c][1][kh][kw]` (`c` a multiple of 16) as `[c/16][kh·kw][16]`.
pub fn pack_depthwise(w: &[f32], c: usize, kk: usize) -> Vec<f32> {
    let mut out = vec![0.0; c * kk];
    for ch in 0..c {
        for t in 0..kk {
            out[((ch / LANES) * kk + t) * LANES + ch % LANES] =
                w.get(ch * kk + t).copied().unwrap_or(0.0);
        }
    }
    out
}

/// A blocked convolution's operands for one sample: input (already padded when
/// [`needs_padding`]), packed weights, and the output blocks to compute.
pub struct ConvArgs<'a> {
    /// The input as the kernel reads it: `[c/16][hp][wp][16]` or `[c][hp][wp]`, where
    /// `(hp, wp)` are [`padded_dims`] when padded, else `(h, w)`.
    pub x: &'a [f32],
    /// Whether `x` is blocked.
    pub x_blocked: bool,
    /// Its rows and columns.
    pub hp: usize,
    /// Its columns.
    pub wp: usize,
    /// The geometry (`c` input channels).
    pub g: &'a Geometry,
    /// Packed weights of every output block ([`pack_conv`]).
    pub w: &'a [f32],
    /// Output blocks to compute (of 16 channels).
    pub blocks: std::ops::Range<usize>,
    /// Output pixels to compute (of `oh·ow`, row-major).
    pub pixels: std::ops::Range<usize>,
    /// Bias of all output channels.
    pub bias: Option<&'a [f32]>,
    /// A tensor added before the activation, laid out like the blocks' whole output
    /// (`[blocks][oh][ow][16]`).
    pub residual: Option<&'a [f32]>,
    /// The activation.
    pub act: Act,
}

/// Most pixels per tile for `f` blocks of output channels (at most 24 accumulators).
fn max_pixels(f: usize) -> usize {
    match f {
        4 => 6,
        _ => 8,
    }
}

/// Computes pixels `a.pixels` of output blocks `a.blocks` of one sample: `y[i]` holds those
/// pixels (`[pixels][16]`) of the i-th block.
pub fn conv(isa: Isa, a: &ConvArgs, y: &mut [&mut [f32]]) -> Result<(), String> {
    let g = a.g;
    let lanes = if a.x_blocked { LANES } else { 1 };
    let k = g.c * g.kh * g.kw;
    let q = g.oh * g.ow;
    let nb = a.blocks.len();
    if a.x_blocked && !g.c.is_multiple_of(LANES) {
        return Err("a blocked input's channels are not whole blocks".into());
    }
    if a.x.len() < g.c * a.hp * a.wp {
        return Err("a convolution's input is smaller than its shape".into());
    }
    let (hp, wp) = padded_dims(g);
    let padded = (a.hp, a.wp) == (hp, wp);
    if !padded && (needs_padding(g) || (a.hp, a.wp) != (g.h, g.w)) {
        return Err("a convolution's input is not padded as it needs".into());
    }
    if a.w.len() < a.blocks.end * k * LANES {
        return Err("a convolution's weights are fewer than its shape".into());
    }
    let px = a.pixels.clone();
    if px.end > q
        || y.len() < nb
        || y.iter().any(|b| b.len() < px.len() * LANES)
        || a.residual.is_some_and(|r| r.len() < nb * q * LANES)
    {
        return Err("a convolution's output is smaller than its shape".into());
    }
    if a.bias.is_some_and(|b| b.len() < a.blocks.end * LANES) {
        return Err("a convolution's bias is shorter than its channels".into());
    }
    // Offsets of the tap groups (16 input channels of a block, or one plain channel).
    let mut tab = vec![];
    for p in 0..g.c / lanes {
        for ty in 0..g.kh {
            for tx in 0..g.kw {
                tab.push(((p * a.hp + ty * g.dh) * a.wp + tx * g.dw) as isize * lanes as isize);
            }
        }
    }
    // Input offset of each output pixel's window.
    let origin: Vec<isize> = (0..q)
        .map(|i| (((i / g.ow) * g.sh * a.wp + (i % g.ow) * g.sw) * lanes) as isize)
        .collect();
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && isa.runs_here() && a.act.is_vectorizable() {
        // SAFETY: AVX-512F: this CPU has it (`runs_here`). `avx512::conv`'s other
        // preconditions are what was checked above: the input's extent (`a.hp`, `a.wp`) is
        // `padded_dims`, or the image itself when it needs no padding, so every window of
        // every output pixel lies inside it, and `x` holds all of it; `tab` and `origin`
        // are those windows' offsets; weights, bias, residual and outputs are as long as
        // the blocks and pixels need.
        #[allow(unsafe_code)]
        unsafe {
            avx512::conv(a, &tab, &origin, y, avx512::CHUNKS)
        };
        return Ok(());
    }
    let _ = isa;
    let gk = if a.x_blocked { LANES } else { 1 };
    for (bi, ob) in a.blocks.clone().enumerate() {
        let wb = &a.w[ob * k * LANES..(ob + 1) * k * LANES];
        for (i, &o) in origin.iter().enumerate().take(px.end).skip(px.start) {
            let mut acc = [0.0f32; LANES];
            if let Some(b) = a.bias {
                acc.copy_from_slice(&b[ob * LANES..(ob + 1) * LANES]);
            }
            for (j, &t) in tab.iter().enumerate() {
                let base = (o + t) as usize;
                for ii in 0..gk {
                    let xv = a.x[base + ii];
                    let wv = &wb[(j * gk + ii) * LANES..(j * gk + ii + 1) * LANES];
                    for l in 0..LANES {
                        acc[l] += xv * wv[l];
                    }
                }
            }
            let (at, out) = ((bi * q + i) * LANES, (i - px.start) * LANES);
            for l in 0..LANES {
                let r = a.residual.map_or(0.0, |r| r[at + l]);
                y[bi][out + l] = a.act.apply(acc[l] + r);
            }
        }
    }
    Ok(())
}

/// A window operation on blocked channels.
#[derive(Clone, Copy, Debug)]
pub enum Window<'a> {
    /// Max pooling (padding never wins; a NaN in the window propagates).
    Max,
    /// Average pooling; the divisor as in [`crate::kernels::pool::avg_pool`].
    Avg {
        /// Whether padding counts in the divisor.
        count_pad: bool,
        /// Bottom padding.
        pb: usize,
        /// Right padding.
        pr: usize,
    },
    /// Depthwise convolution: weights `[c/16][kh·kw][16]`, a bias per channel, activation.
    Depthwise {
        /// Weights ([`pack_depthwise`]).
        w: &'a [f32],
        /// Bias.
        bias: Option<&'a [f32]>,
        /// Activation.
        act: Act,
    },
}

/// The valid taps `[lo, hi)` along one axis for each output position.
fn tap_ranges(o: usize, k: usize, s: usize, d: usize, pad: usize, n: usize) -> Vec<(usize, usize)> {
    (0..o)
        .map(|i| {
            let inside = |t: usize| {
                let v = i * s + t * d;
                v >= pad && v - pad < n
            };
            let lo = (0..k).find(|&t| inside(t)).unwrap_or(k);
            let hi = (lo..k)
                .take_while(|&t| inside(t))
                .last()
                .map_or(lo, |t| t + 1);
            (lo, hi)
        })
        .collect()
}

/// A window operation over `g.c` blocked channels of one sample (`x` unpadded).
pub fn window(isa: Isa, x: &[f32], g: &Geometry, op: &Window, y: &mut [f32]) -> Result<(), String> {
    let (hw, q) = (g.h * g.w, g.oh * g.ow);
    if !g.c.is_multiple_of(LANES) || x.len() < g.c * hw || y.len() < g.c * q {
        return Err("a blocked window's tensors are smaller than its shape".into());
    }
    let kk = g.kh * g.kw;
    if let Window::Depthwise { w, bias, .. } = op
        && (w.len() < g.c * kk || bias.is_some_and(|b| b.len() < g.c))
    {
        return Err("depthwise weights are fewer than the channels".into());
    }
    let rows = tap_ranges(g.oh, g.kh, g.sh, g.dh, g.pt, g.h);
    let cols = tap_ranges(g.ow, g.kw, g.sw, g.dw, g.pl, g.w);
    // Reciprocal divisors of an average, per output row and column.
    let (div_r, div_c): (Vec<f32>, Vec<f32>) = match *op {
        Window::Avg { count_pad, pb, pr } => {
            let (r, c) = crate::kernels::pool::window_counts(g, count_pad, pb, pr);
            (
                r.iter().map(|&v| v as f32).collect(),
                c.iter().map(|&v| v as f32).collect(),
            )
        }
        _ => (vec![], vec![]),
    };
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512
        && isa.runs_here()
        && !matches!(op, Window::Depthwise { act, .. } if !act.is_vectorizable())
    {
        // SAFETY: AVX-512F: this CPU has it (`runs_here`). `avx512::window`'s other
        // preconditions were checked or built above: `x` holds c·h·w floats and `y`
        // c·oh·ow, c whole blocks; depthwise weights c·kh·kw and bias c; `rows` and `cols`
        // are `tap_ranges` of this geometry; an average's divisors have oh and ow entries.
        #[allow(unsafe_code)]
        unsafe {
            avx512::window(x, g, op, &rows, &cols, &div_r, &div_c, y)
        };
        return Ok(());
    }
    let _ = isa;
    for cb in 0..g.c / LANES {
        let xb = &x[cb * hw * LANES..(cb + 1) * hw * LANES];
        for oy in 0..g.oh {
            let (r0, r1) = rows[oy];
            for ox in 0..g.ow {
                let (c0, c1) = cols[ox];
                let mut acc = [0.0f32; LANES];
                if matches!(op, Window::Max) {
                    acc = [f32::NEG_INFINITY; LANES];
                }
                let mut nan = [false; LANES];
                for ty in r0..r1 {
                    let iy = oy * g.sh + ty * g.dh - g.pt;
                    for tx in c0..c1 {
                        let ix = ox * g.sw + tx * g.dw - g.pl;
                        let v = &xb[(iy * g.w + ix) * LANES..(iy * g.w + ix + 1) * LANES];
                        match op {
                            Window::Max => {
                                for l in 0..LANES {
                                    nan[l] |= v[l].is_nan();
                                    acc[l] = if v[l] > acc[l] { v[l] } else { acc[l] };
                                }
                            }
                            Window::Avg { .. } => {
                                for l in 0..LANES {
                                    acc[l] += v[l];
                                }
                            }
                            Window::Depthwise { w, .. } => {
                                let wv = &w[((cb * kk) + ty * g.kw + tx) * LANES..][..LANES];
                                for l in 0..LANES {
                                    acc[l] += v[l] * wv[l];
                                }
                            }
                        }
                    }
                }
                let out = &mut y[((cb * q) + oy * g.ow + ox) * LANES..][..LANES];
                for l in 0..LANES {
                    out[l] = match op {
                        Window::Max => {
                            if nan[l] {
                                f32::NAN
                            } else {
                                acc[l]
                            }
                        }
                        Window::Avg { .. } => {
                            let d = div_r[oy] * div_c[ox];
                            if d == 0.0 { 0.0 } else { acc[l] / d }
                        }
                        Window::Depthwise { bias, act, .. } => {
                            act.apply(acc[l] + bias.map_or(0.0, |b| b[cb * LANES + l]))
                        }
                    };
                }
            }
        }
    }
    Ok(())
}

/// Global average pooling of `c` blocked channels of `hw` pixels: `y[c]` (the same floats
/// in either layout).
pub fn global_avg(x: &[f32], c: usize, hw: usize, y: &mut [f32]) -> Result<(), String> {
    if !c.is_multiple_of(LANES) || x.len() < c * hw || y.len() < c {
        return Err("a blocked global pooling's tensors are smaller than its shape".into());
    }
    for cb in 0..c / LANES {
        let mut acc = [0.0f32; LANES];
        for px in x[cb * hw * LANES..(cb + 1) * hw * LANES].chunks_exact(LANES) {
            for l in 0..LANES {
                acc[l] += px[l];
            }
        }
        for l in 0..LANES {
            y[cb * LANES + l] = acc[l] / hw as f32;
        }
    }
    Ok(())
}

/// The AVX-512 kernels. Every function here requires AVX-512F, which [`conv`], [`window`]
/// and [`transpose`] check (`Isa::runs_here`) before calling in.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{ConvArgs, LANES, Window, max_pixels};
    use crate::kernels::conv::Geometry;
    use crate::kernels::epilogue::Act;
    use std::arch::x86_64::*;

    /// What one register tile reads and writes.
    struct Tile {
        /// The input.
        x: *const f32,
        /// Window origins of the run's pixels in the input (`tiles · P` of them).
        origin: *const isize,
        /// Tiles in the run (consecutive, P pixels each).
        tiles: usize,
        tab: *const isize,
        ntab: usize,
        /// The first block's weights; block f at `w + f·ws`.
        w: *const f32,
        ws: usize,
        /// Bias of the first block, or null.
        bias: *const f32,
        /// The run's first pixel of each block in the output (and residual, or null).
        y: [*mut f32; 4],
        res: [*const f32; 4],
        act: Act,
        /// Whether these taps are the first (the output holds no partial sums yet) and the
        /// last (the epilogue runs) of the reduction.
        first: bool,
        last: bool,
        /// The weights the next run will read, fetched into L2 while this one computes.
        next: Prefetch,
    }

    /// Cache lines to prefetch, spread over a run's tiles: `blocks` ranges of `lines`
    /// lines each, `stride` bytes apart from `base`; tile `tt` of the run takes lines
    /// `(first + tt)·per_tile ..` of them, a few at each of its tap groups.
    #[derive(Clone, Copy)]
    struct Prefetch {
        base: *const i8,
        stride: usize,
        lines: usize,
        blocks: usize,
        first: usize,
        per_tile: usize,
    }

    impl Prefetch {
        const NONE: Prefetch = Prefetch {
            base: std::ptr::null(),
            stride: 0,
            lines: 0,
            blocks: 0,
            first: 0,
            per_tile: 0,
        };
    }

    /// A [`tile`] for one shape, unsafe to call as `tile` is.
    type TileFn = unsafe fn(&Tile);

    /// The cut in use: a reduction chunk's weights stay in L2 (2 MiB a core here) beside
    /// the next chunk's, which the tiles prefetch. Measured on this machine's 3×3 layers
    /// (64–512 channels): tiles reading their weights from L2 ran as fast as or faster than
    /// chunks sized for L1 (24–64 KiB), whose partial sums cost more than the L1 hits
    /// saved. Half-MiB chunks with the next one prefetched: a 512-channel 3×3 layer on
    /// 14×14 whose 9.4 MB of weights come from memory 6.2 → 5.7 ms (1 MiB chunks, with or
    /// without prefetching: 6.0–6.2 ms), light ResNet-50 2–4% faster.
    pub(super) const CHUNKS: Chunks = Chunks {
        weights: 512 * 1024,
        partial_sums: 256 * 1024,
    };

    /// How the reduction is cut: bytes of weights per chunk, bytes of partial sums per span
    /// of pixels.
    #[derive(Clone, Copy)]
    pub(super) struct Chunks {
        pub(super) weights: usize,
        pub(super) partial_sums: usize,
    }

    /// One tile: P pixels × F blocks, GK input channels per tap group.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and `t` describes a run of `t.tiles` tiles as [`conv`] builds
    /// it. For each tile tt and its pixels p < P: `origin[tt·P + p]` is readable, and for
    /// every tap group j < `ntab` and channel i < GK, `x + origin + tab[j] + i` is a readable
    /// float of the input; F weight blocks `ws` apart each hold `ntab·GK·16` floats from `w`;
    /// `bias`, unless null, F·16 floats; `y[f] + (tt·P + p)·16` (f < F) 16 floats that
    /// nothing else reads or writes while the run computes, and `res[f]`, unless null, 16
    /// readable floats at the same offset.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const P: usize, const F: usize, const GK: usize>(t: &Tile) {
        for tt in 0..t.tiles {
            // SAFETY: `one`'s contract is this function's, for a tile tt < `t.tiles`.
            unsafe { one::<P, F, GK>(t, tt) };
        }
    }

    /// Tile `tt` of a run.
    ///
    /// # Safety
    /// As [`tile`]'s, with tt < `t.tiles`; AVX-512F is enabled in `tile`, into which this
    /// is inlined.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn one<const P: usize, const F: usize, const GK: usize>(t: &Tile, tt: usize) {
        // SAFETY: AVX-512F (the contract), for every intrinsic below. Reads: the P origins
        // of tile tt, `x` at `origin + tab[j] + i` (`d[p]` is origin p relative to origin
        // 0), F·GK·16 weights per tap group at `w` (advancing GK·16 a group, `ntab` groups),
        // the bias' F·16 floats, the residual's and the outputs' 16 floats per pixel and
        // block (`yo` = the tile's first pixel): all readable by the contract. Writes: the
        // outputs' floats alone. Prefetches never fault (their addresses are made with
        // `wrapping_add`).
        unsafe {
            let o = t.origin.add(tt * P);
            let o0 = *o;
            let x = t.x.offset(o0);
            let d: [isize; P] = std::array::from_fn(|p| *o.add(p) - o0);
            let yo = tt * P * LANES;
            let y: [*mut f32; F] = std::array::from_fn(|f| t.y[f].wrapping_add(yo));
            let mut acc = [[_mm512_setzero_ps(); F]; P];
            if !t.first {
                for (p, row) in acc.iter_mut().enumerate() {
                    for (f, v) in row.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(y[f].add(p * LANES));
                    }
                }
            }
            let mut w = t.w;
            // This tile's share of the next run's weights: `each` lines per tap group.
            let pf = t.next;
            let total = pf.lines * pf.blocks;
            let mut line = ((pf.first + tt) * pf.per_tile).min(total);
            let end = (line + pf.per_tile).min(total);
            let each = pf.per_tile.div_ceil(t.ntab.max(1));
            for j in 0..t.ntab {
                for _ in 0..each {
                    if line < end {
                        let (b, l) = (line / pf.lines, line % pf.lines);
                        // A prefetch never faults; the address lies in the weights anyway.
                        _mm_prefetch::<_MM_HINT_T1>(pf.base.wrapping_add(b * pf.stride + l * 64));
                        line += 1;
                    }
                }
                let xp = x.offset(*t.tab.add(j));
                for i in 0..GK {
                    let wv: [__m512; F] =
                        std::array::from_fn(|f| _mm512_loadu_ps(w.add(f * t.ws + i * LANES)));
                    for p in 0..P {
                        let b = _mm512_set1_ps(*xp.offset(d[p] + i as isize));
                        for f in 0..F {
                            acc[p][f] = _mm512_fmadd_ps(b, wv[f], acc[p][f]);
                        }
                    }
                }
                w = w.add(GK * LANES);
            }
            if !t.last {
                for f in 0..F {
                    for p in 0..P {
                        _mm512_storeu_ps(y[f].add(p * LANES), acc[p][f]);
                    }
                }
                return;
            }
            for f in 0..F {
                let b = if t.bias.is_null() {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(t.bias.add(f * LANES))
                };
                for p in 0..P {
                    let mut v = _mm512_add_ps(acc[p][f], b);
                    if !t.res[f].is_null() {
                        v = _mm512_add_ps(v, _mm512_loadu_ps(t.res[f].add(yo + p * LANES)));
                    }
                    _mm512_storeu_ps(y[f].add(p * LANES), t.act.apply_avx512(v));
                }
            }
        }
    }

    macro_rules! tiles {
        ($gk:literal; $($f:literal: [$($p:literal)*]),*) => {
            |f: usize, p: usize| -> Option<TileFn> {
                match (f, p) {
                    $($( ($f, $p) => Some(tile::<$p, $f, $gk> as TileFn), )*)*
                    _ => None,
                }
            }
        };
    }

    /// [`super::conv`]'s AVX-512 path: the register tiles over `a.blocks` × `a.pixels`, the
    /// reduction cut into chunks as `cut` says.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and `a`, `tab`, `origin`, `y` are as [`super::conv`] checks and
    /// builds them: `origin` has an entry per output pixel (oh·ow) and `tab` one per tap
    /// group, and every `origin[q] + tab[j] + i` (i below 16 for a blocked input, else 1)
    /// is inside `a.x`; `a.w` holds `a.blocks.end · k · 16` floats, a bias
    /// `a.blocks.end · 16`, a residual `a.blocks.len() · oh·ow · 16`; `a.pixels` ends by
    /// oh·ow, and `y` has a slice of `a.pixels.len() · 16` floats per block.
    pub(super) unsafe fn conv(
        a: &ConvArgs,
        tab: &[isize],
        origin: &[isize],
        y: &mut [&mut [f32]],
        cut: Chunks,
    ) {
        let g = a.g;
        let k = g.c * g.kh * g.kw;
        let q = origin.len();
        let px = a.pixels.clone();
        let pick: fn(usize, usize) -> Option<TileFn> = if a.x_blocked {
            tiles!(16; 1: [1 2 3 4 5 6 7 8], 2: [1 2 3 4 5 6 7 8], 3: [1 2 3 4 5 6 7 8], 4: [1 2 3 4 5 6])
        } else {
            tiles!(1; 1: [1 2 3 4 5 6 7 8], 2: [1 2 3 4 5 6 7 8], 3: [1 2 3 4 5 6 7 8], 4: [1 2 3 4 5 6])
        };
        let nb = a.blocks.len();
        let groups = nb.div_ceil(4);
        let gk = if a.x_blocked { LANES } else { 1 };
        // Group `gi` (its first block `done` blocks in): F blocks of output channels, and
        // the reduction in chunks of `per` taps whose weights (of F blocks) stay in L2 while
        // the pixel tiles of a span use them.
        let shape = |gi: usize, done: usize| {
            let f = (nb - done) / (groups - gi);
            let per = (cut.weights / (gk * LANES * 4 * f)).max(1);
            (f, per, tab.len().div_ceil(per))
        };
        // Chunk `ci` of group `gi`'s weights, as lines to prefetch (a weight row of 16
        // floats is one 64-byte line).
        let piece = |gi: usize, done: usize, ci: usize| {
            let (f, per, _) = shape(gi, done);
            let taps = ((ci + 1) * per).min(tab.len()) - ci * per;
            Prefetch {
                base: a.w[((a.blocks.start + done) * k + ci * per * gk) * LANES..]
                    .as_ptr()
                    .cast(),
                stride: k * LANES * 4,
                lines: taps * gk,
                blocks: f,
                ..Prefetch::NONE
            }
        };
        let mut done = 0;
        for gi in 0..groups {
            let (f, per, chunks) = shape(gi, done);
            let ob = a.blocks.start + done;
            let pmax = max_pixels(f);
            // The span's partial sums wait in the output (also in L2: spans of
            // `cut.partial_sums` bytes).
            let span = (cut.partial_sums / (f * LANES * 4)).max(pmax);
            let spans = px.len().div_ceil(span);
            let mut s0 = px.start;
            for si in 0..spans {
                let s1 = s0 + (px.end - s0) / (spans - si);
                let tiles = (s1 - s0).div_ceil(pmax);
                for ci in 0..chunks {
                    let part = &tab[ci * per..((ci + 1) * per).min(tab.len())];
                    // The weights read next, unless they are these (still in L2). Without
                    // this, the first tiles of each chunk wait on memory for all of it:
                    // 512-channel 3×3 layers read 9.4 MB of weights once per sample.
                    let mut next = if ci + 1 < chunks {
                        piece(gi, done, ci + 1)
                    } else if si + 1 < spans {
                        if chunks > 1 {
                            piece(gi, done, 0)
                        } else {
                            Prefetch::NONE
                        }
                    } else if gi + 1 < groups {
                        piece(gi + 1, done + f, 0)
                    } else {
                        Prefetch::NONE
                    };
                    next.per_tile = (next.lines * next.blocks).div_ceil(tiles.max(1));
                    // Balanced tiles: a run of `extra` tiles of `base + 1` pixels, then one
                    // of `base`.
                    let (base, extra) = ((s1 - s0) / tiles.max(1), (s1 - s0) % tiles.max(1));
                    let mut q0 = s0;
                    for (n, p) in [(extra, base + 1), (tiles - extra, base)] {
                        if n == 0 || p == 0 {
                            continue;
                        }
                        let Some(run) = pick(f, p) else { return };
                        let mut yp = [std::ptr::null_mut(); 4];
                        let mut rp = [std::ptr::null(); 4];
                        for i in 0..f {
                            // SAFETY: q0 < px.end, so the tile's first pixel lies in block
                            // done + i's output slice of px.len()·16 floats (the contract).
                            yp[i] =
                                unsafe { y[done + i].as_mut_ptr().add((q0 - px.start) * LANES) };
                            if let Some(r) = a.residual {
                                // SAFETY: done + i < nb blocks and q0 < q pixels: inside the
                                // residual's nb·q·16 floats (the contract).
                                rp[i] = unsafe { r.as_ptr().add(((done + i) * q + q0) * LANES) };
                            }
                        }
                        let t = Tile {
                            x: a.x.as_ptr(),
                            origin: origin[q0..].as_ptr(),
                            tiles: n,
                            tab: part.as_ptr(),
                            ntab: part.len(),
                            // SAFETY: block ob < blocks.end and tap group ci·per < k/gk:
                            // inside the weights' blocks.end·k·16 floats (the contract).
                            w: unsafe { a.w.as_ptr().add((ob * k + ci * per * gk) * LANES) },
                            ws: k * LANES,
                            // SAFETY: ob < blocks.end: inside the bias' blocks.end·16.
                            bias: a.bias.map_or(std::ptr::null(), |b| unsafe {
                                b.as_ptr().add(ob * LANES)
                            }),
                            y: yp,
                            res: rp,
                            act: a.act,
                            first: ci == 0,
                            last: ci + 1 == chunks,
                            next,
                        };
                        // SAFETY: AVX-512F (the contract); `t` is a run as `tile` requires: n
                        // tiles of p pixels from q0 end by s1 ≤ px.end, so their origins
                        // exist and their outputs lie in the blocks' slices (each tile writes
                        // only its own pixels); the chunk's `part.len()` tap groups from
                        // ci·per read weights inside each of the f blocks, `k·16` apart; the
                        // windows lie inside the input (the contract). `pick` gave the kernel
                        // for exactly f blocks and p pixels, so P = p and F = f.
                        unsafe { run(&t) };
                        q0 += n * p;
                        next.first += n;
                    }
                }
                s0 = s1;
            }
            done += f;
        }
    }

    /// Transposes 16 rows of 16 floats (row i at `src + i·ss`) into 16 rows (row j at
    /// `dst + j·ds` holds column j).
    ///
    /// # Safety
    /// The CPU has AVX-512F; the 16 floats at each `src + i·ss` are readable and those at
    /// each `dst + j·ds` writable (i, j < 16), and the two sets do not overlap.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose16(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        // SAFETY: row i < 16 of the source: 16 readable floats (the contract).
        let r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * ss)) });
        // Pairs of rows interleaved, then pairs of pairs, then 128-bit lanes twice.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let base = i / 4 * 4;
            let (a, b) = (
                _mm512_castps_pd(t[base + (i % 4) / 2]),
                _mm512_castps_pd(t[base + (i % 4) / 2 + 2]),
            );
            _mm512_castpd_ps(if i % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        let v: [__m512; 16] = std::array::from_fn(|i| {
            let base = i / 8 * 8;
            let (a, b) = (u[base + i % 4], u[base + i % 4 + 4]);
            if (i % 8) < 4 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        });
        let o: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (v[i % 8], v[i % 8 + 8]);
            if i < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        });
        for (j, row) in o.iter().enumerate() {
            // SAFETY: row j < 16 of the destination: 16 writable floats (the contract).
            unsafe { _mm512_storeu_ps(dst.add(j * ds), *row) };
        }
    }

    /// The window kinds, as const parameters of the kernel.
    const MAX: u8 = 0;
    const AVG: u8 = 1;
    const DW: u8 = 2;

    /// One output vector's accumulator update with input `v` and tap weights `wv`. Called
    /// only from [`run`] (AVX-512F), into which it is inlined.
    #[inline(always)]
    fn tap<const K: u8>(acc: __m512, nan: &mut __mmask16, v: __m512, wv: __m512) -> __m512 {
        // SAFETY: these intrinsics only need AVX-512F (they touch no memory). `tap` is
        // private to this module and its one caller, `run`, enables AVX-512F and runs only
        // where the CPU has it (`run`'s contract).
        unsafe {
            match K {
                MAX => {
                    *nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    _mm512_max_ps(v, acc)
                }
                AVG => _mm512_add_ps(acc, v),
                _ => _mm512_fmadd_ps(v, wv, acc),
            }
        }
    }

    /// [`super::window`]'s AVX-512 path.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `g.c·h·w` floats and `y` `g.c·oh·ow`, `g.c` whole
    /// blocks; a depthwise `op`'s weights hold `g.c·kh·kw` floats and its bias `g.c`;
    /// `rows` and `cols` are [`super::tap_ranges`] of `g`'s rows and columns; for an
    /// average, `div_r` and `div_c` have `oh` and `ow` entries.
    pub(super) unsafe fn window(
        x: &[f32],
        g: &Geometry,
        op: &Window,
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        div_r: &[f32],
        div_c: &[f32],
        y: &mut [f32],
    ) {
        let (w, bias, a) = match *op {
            Window::Depthwise { w, bias, act } => (w.as_ptr(), bias, act),
            _ => (std::ptr::null(), None, Act::None),
        };
        let k = match op {
            Window::Max => MAX,
            Window::Avg { .. } => AVG,
            Window::Depthwise { .. } => DW,
        };
        let run = match k {
            MAX => run::<MAX>,
            AVG => run::<AVG>,
            _ => run::<DW>,
        };
        let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
        // SAFETY: `run`'s contract is this function's (pointers to the same slices: `w` is
        // null unless depthwise, `bias` null unless given).
        unsafe {
            run(
                x.as_ptr(),
                g,
                w,
                bias,
                a,
                rows,
                cols,
                div_r,
                div_c,
                y.as_mut_ptr(),
            )
        };
    }

    /// The window kernel of kind `K`: interior pixels of a row four at a time (every tap
    /// inside the image), edge pixels one by one on their valid taps.
    ///
    /// # Safety
    /// As [`window`]'s, for `x` and `y` pointing at those slices, `w` at the depthwise
    /// weights when `K` is `DW`, and `bias` at `g.c` floats or null.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run<const K: u8>(
        x: *const f32,
        g: &Geometry,
        w: *const f32,
        bias: *const f32,
        a: Act,
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        div_r: &[f32],
        div_c: &[f32],
        y: *mut f32,
    ) {
        let (hw, q, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
        // Interior columns: all kw taps inside the image.
        let lo = cols.iter().position(|&c| c == (0, g.kw)).unwrap_or(g.ow);
        let hi = lo + cols[lo..].iter().take_while(|&&c| c == (0, g.kw)).count();
        let init = if K == MAX {
            _mm512_set1_ps(f32::NEG_INFINITY)
        } else {
            _mm512_setzero_ps()
        };
        let (s16, d16) = (g.sw * LANES, g.dw * LANES);
        for cb in 0..g.c / LANES {
            // SAFETY: cb < c/16: block cb's plane of hw·16 floats lies in `x` (c·hw).
            let xb = unsafe { x.add(cb * hw * LANES) };
            let wk = if K == DW {
                // SAFETY: a depthwise kernel's `w` holds c·kk floats: block cb's kk·16.
                unsafe { w.add(cb * kk * LANES) }
            } else {
                std::ptr::null()
            };
            let bv = if K == DW && !bias.is_null() {
                // SAFETY: a non-null bias holds c floats: block cb's 16 are readable.
                unsafe { _mm512_loadu_ps(bias.add(cb * LANES)) }
            } else {
                _mm512_setzero_ps()
            };
            // SAFETY: block cb's output plane of q·16 floats lies in `y` (c·q).
            let yb = unsafe { y.add(cb * q * LANES) };
            let finish = |acc: __m512, nan: __mmask16, oy: usize, ox: usize| -> __m512 {
                match K {
                    MAX => _mm512_mask_blend_ps(nan, acc, _mm512_set1_ps(f32::NAN)),
                    AVG => {
                        let d = div_r[oy] * div_c[ox];
                        if d == 0.0 {
                            _mm512_setzero_ps()
                        } else {
                            _mm512_div_ps(acc, _mm512_set1_ps(d))
                        }
                    }
                    _ => a.apply_avx512(_mm512_add_ps(acc, bv)),
                }
            };
            for (oy, &(r0, r1)) in rows.iter().enumerate() {
                // SAFETY: oy < oh: output row oy (ow·16 floats) lies in the block's plane.
                let out = unsafe { yb.add(oy * g.ow * LANES) };
                // The input row of tap ty, at column 0.
                // SAFETY: called only with r0 ≤ ty < r1, a tap whose input row
                // oy·sh + ty·dh − pt lies in the image (`tap_ranges`), so the subtraction
                // does not wrap and the row lies in the block's plane.
                let row =
                    |ty: usize| unsafe { xb.add((oy * g.sh + ty * g.dh - g.pt) * g.w * LANES) };
                let edge = |ox: usize| {
                    let (c0, c1) = cols[ox];
                    let mut acc = init;
                    let mut nan: __mmask16 = 0;
                    for ty in r0..r1 {
                        let rp = row(ty);
                        for tx in c0..c1 {
                            let ix = ox * g.sw + tx * g.dw - g.pl;
                            // SAFETY: c0 ≤ tx < c1, a tap whose input column ix lies in
                            // the image (`tap_ranges`): 16 floats of row ty.
                            let v = unsafe { _mm512_loadu_ps(rp.add(ix * LANES)) };
                            let wv = if K == DW {
                                // SAFETY: tap (ty, tx) < kh·kw of block cb's weights.
                                unsafe { _mm512_loadu_ps(wk.add((ty * g.kw + tx) * LANES)) }
                            } else {
                                init
                            };
                            acc = tap::<K>(acc, &mut nan, v, wv);
                        }
                    }
                    let r = finish(acc, nan, oy, ox);
                    // SAFETY: ox < ow (every caller's): pixel ox of output row oy.
                    unsafe { _mm512_storeu_ps(out.add(ox * LANES), r) };
                };
                for ox in 0..lo.min(g.ow) {
                    edge(ox);
                }
                let mut ox = lo;
                while ox + 4 <= hi {
                    let mut acc = [init; 4];
                    let mut nan: [__mmask16; 4] = [0; 4];
                    for ty in r0..r1 {
                        // Column of pixel ox's first tap.
                        // SAFETY: ox..ox + 4 are interior columns (lo ≤ ox, ox + 4 ≤ hi):
                        // all kw taps of each lie in the image, so ox·sw ≥ pl and every
                        // (ox + j)·sw + tx·dw − pl is a column of row ty.
                        let rp = unsafe { row(ty).add((ox * g.sw - g.pl) * LANES) };
                        for tx in 0..g.kw {
                            let wv = if K == DW {
                                // SAFETY: tap (ty, tx) < kh·kw of block cb's weights.
                                unsafe { _mm512_loadu_ps(wk.add((ty * g.kw + tx) * LANES)) }
                            } else {
                                init
                            };
                            // SAFETY: tap tx of pixel ox, then of ox + j (`s16` on each):
                            // interior columns of row ty, as above.
                            let tp = unsafe { rp.add(tx * d16) };
                            for j in 0..4 {
                                // SAFETY: as above: 16 floats of row ty.
                                let v = unsafe { _mm512_loadu_ps(tp.add(j * s16)) };
                                acc[j] = tap::<K>(acc[j], &mut nan[j], v, wv);
                            }
                        }
                    }
                    for j in 0..4 {
                        let r = finish(acc[j], nan[j], oy, ox + j);
                        // SAFETY: ox + j < hi ≤ ow: pixel ox + j of output row oy.
                        unsafe { _mm512_storeu_ps(out.add((ox + j) * LANES), r) };
                    }
                    ox += 4;
                }
                for ox in ox..g.ow {
                    edge(ox);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunked reduction (partial sums through the output, spans of pixels) computes what
    /// the portable loop does.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn chunked_reductions_match_the_portable_loop() {
        // The chunked reduction is AVX-512 only; `suite_isas` has logged what this CPU runs,
        // and fails the test when MCC_TEST_ISAS says AVX-512 must be exercised.
        if !crate::testing::suite_isas("blocked chunked reductions")
            .unwrap()
            .contains(&Isa::Avx512)
        {
            use std::io::Write;
            let _ = std::io::stderr()
                .write_all(b"NOT RUN: blocked chunked reductions (this CPU has no AVX-512)\n");
            return;
        }
        let g = Geometry::three_by_three(32, 9, 7, 1);
        let (m, q) = (64, 63);
        let r = |n: usize, s: u32| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    ((i as u32).wrapping_mul(2654435761).wrapping_add(s) >> 16) as f32 / 65536.0
                        - 0.5
                })
                .collect()
        };
        let (x, w, bias, res) = (r(g.c * 63, 1), r(m * g.c * 9, 2), r(m, 3), r(m * q, 4));
        let (hp, wp) = padded_dims(&g);
        let mut xp = vec![0.0; padded_len(&g)];
        let mut xb = vec![0.0; g.c * 63];
        to_blocked(Isa::Scalar, &x, g.c, 63, &mut xb).unwrap();
        pad(&xb, &g, true, &mut xp).unwrap();
        let packed = pack_conv(&w, m, g.c, 3, 3, true);
        let args = ConvArgs {
            x: &xp,
            x_blocked: true,
            hp,
            wp,
            g: &g,
            w: &packed,
            blocks: 0..m / LANES,
            pixels: 0..q,
            bias: Some(&bias),
            residual: Some(&res),
            act: Act::Relu,
        };
        let mut want = vec![0.0; m * q];
        let mut views: Vec<&mut [f32]> = want.chunks_mut(q * LANES).collect();
        conv(Isa::Scalar, &args, &mut views).unwrap();
        // Chunks of 2 tap groups, spans of 8 pixels; and of 5 groups and 20 pixels.
        for (wb, pb) in [
            (2 * 1024 * 4, 8 * 4 * LANES * 4),
            (5 * 1024 * 4, 20 * 4 * LANES * 4),
        ] {
            // NaN, so that an element the kernel does not write shows.
            let mut got = vec![f32::NAN; m * q];
            let mut views: Vec<&mut [f32]> = got.chunks_mut(q * LANES).collect();
            let tab: Vec<isize> = (0..2)
                .flat_map(|p| {
                    (0..9).map(move |t| (((p * hp + t / 3) * wp + t % 3) * LANES) as isize)
                })
                .collect();
            let origin: Vec<isize> = (0..q)
                .map(|i| (((i / 7) * wp + i % 7) * LANES) as isize)
                .collect();
            let cut = avx512::Chunks {
                weights: wb,
                partial_sums: pb,
            };
            // SAFETY: AVX-512F: `suite_isas` lists Avx512 only when `Isa::detect` found it.
            // `tab` and `origin` are what `conv` computes for these 2 input blocks on the
            // padded 11×9 extent (3×3 taps, stride 1), `args` passed `conv`'s checks above,
            // and `views` are the 4 output blocks of q·16 floats.
            #[allow(unsafe_code)]
            unsafe {
                avx512::conv(&args, &tab, &origin, &mut views, cut)
            };
            let d = crate::testing::diff(&got, &want, 0.0, f64::INFINITY);
            assert!(d.max_abs < 1e-4, "chunks {wb} spans {pb}: {d:?}");
        }
    }

    #[test]
    fn reorders_round_trip_and_match_the_portable_loops() {
        let isas = crate::testing::suite_isas("blocked reorders").unwrap();
        // Fewer pixels than a tile, exactly one, and tiles with a tail.
        for (isa, hw) in isas
            .iter()
            .flat_map(|&i| [(i, 1), (i, 9), (i, 16), (i, 37)])
        {
            let c = 32;
            let x: Vec<f32> = (0..c * hw).map(|i| i as f32).collect();
            let (mut b, mut back) = (vec![f32::NAN; c * hw], vec![f32::NAN; c * hw]);
            to_blocked(isa, &x, c, hw, &mut b).unwrap();
            for ch in 0..c {
                for p in 0..hw {
                    assert_eq!(
                        b[((ch / LANES) * hw + p) * LANES + ch % LANES],
                        x[ch * hw + p]
                    );
                }
            }
            from_blocked(isa, &b, c, hw, &mut back).unwrap();
            assert_eq!(back, x, "{}", isa.name());
        }
    }

    #[test]
    fn a_partial_last_block_loses_only_its_padding_lanes() {
        let isas = crate::testing::suite_isas("blocked partial blocks").unwrap();
        for (isa, c, hw) in isas
            .iter()
            .flat_map(|&i| [(i, 40usize, 9usize), (i, 7, 16), (i, 56, 13)])
        {
            // Blocks as a convolution on whole blocks leaves them: padding lanes hold
            // whatever its zero weights made, here NaN so that any leak shows.
            let blocks = c.div_ceil(LANES);
            let b: Vec<f32> = (0..blocks * hw * LANES)
                .map(|i| {
                    let (blk, lane) = (i / (hw * LANES), i % LANES);
                    let ch = blk * LANES + lane;
                    if ch < c {
                        (ch * hw + i / LANES % hw) as f32
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            let mut y = vec![-1.0; c * hw + 3];
            from_blocked(isa, &b, c, hw, &mut y).unwrap();
            let want: Vec<f32> = (0..c * hw).map(|i| i as f32).collect();
            assert_eq!(&y[..c * hw], &want[..], "{} c={c}", isa.name());
            assert_eq!(&y[c * hw..], &[-1.0; 3], "wrote past its channels");
            assert!(from_blocked(isa, &b[1..], c, hw, &mut y).is_err());
        }
    }
}
