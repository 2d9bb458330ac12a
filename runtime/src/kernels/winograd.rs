//! Winograd convolution F(2×2, 3×3) on the channel-blocked layout (NCHW16c): 3×3 kernels,
//! stride 1, dilation 1, one group, input and output channels in whole blocks of 16.
//!
//! **Algorithm** (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//! The output is cut into 2×2 tiles; tile (i, j) reads the 4×4 input window whose corner is
//! input (2i − pt, 2j − pl) (zero outside the image: padding and the partial tiles at the
//! bottom and right edges, whose outputs past the image are not stored). With
//! `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`, `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]` and
//! `Aᵀ = [1 1 1 0; 0 1 −1 −1]`, each output tile is `Aᵀ·[Σ_c (G·g_c·Gᵀ) ⊙ (Bᵀ·d_c·B)]·A`:
//! - the **weight transform** `U = G·g·Gᵀ` is done once, at compile time ([`pack_weights`],
//!   in f64, rounded once to f32), laid out `[16 positions][m/16][c][16]`;
//! - the **input transform** `V = Bᵀ·d·B` is 32 additions of whole vectors per tile and
//!   input block (a vector holds one pixel's 16 channels, so the transform runs along
//!   channels with no shuffle), stored `[16 positions][c/16][tiles][16]` in the thread's
//!   scratch for a group of tiles that fits in L2;
//! - per position, a **GEMM over channels** `M = V·U` in register tiles of P tiles × F
//!   blocks of 16 output channels (the dense blocked kernel's tile shape: P broadcasts and F
//!   weight vectors feed P·F fused multiply-adds), and the **output transform** `Aᵀ·M·A`
//!   (24 additions per tile and output block) with the bias, residual and activation
//!   epilogue fused before the store.
//!
//! **Why it is fast**: a 2×2 output tile of a `c → m` layer costs 16·c·m multiply-adds
//! instead of 36·c·m, and the transforms are O(c + m) vector additions per tile, so on the
//! 16–128 channel layers of the corpus the arithmetic falls by 1.6–2.1× once the transforms
//! are counted. F(4×4, 3×3) would cut it further (36 products per 16 outputs) but its
//! transforms' constants (up to 8 and 1/24) cost accuracy: simulated in f32 on 16–128
//! channel 14×14 layers its error relative to the largest output was 3–8·10⁻⁶ per layer,
//! 25–40× the direct convolution's, against the 1·10⁻⁵ absolute / 1·10⁻⁴ relative
//! tolerance a whole network's outputs are held to; F(2×2)'s was 1.5–2× the direct one's
//! (1.9–4.8·10⁻⁷), every constant of its transforms exact in binary.
//!
//! **Error bound measured** (the test below, against an f64 direct convolution on 16–48
//! input channels, 16–64 outputs, images 1–30, data in [−1, 1)): at worst 3.8·10⁻⁷ of the
//! largest output's magnitude; the test holds every output to 2·10⁻⁶ of it.
//!
//! Deterministic: every output's arithmetic depends only on its tile, never on how tiles are
//! grouped or split over threads, so the bits are the same for any thread count. The
//! AVX-512 path and the portable one perform the same transforms in the same order; the
//! portable GEMM rounds each product before adding it (no fused multiply-add), so the two
//! paths may differ in the last bits.

use crate::kernels::blocked::LANES;
use crate::kernels::conv::Geometry;
use crate::kernels::epilogue::Act;
use crate::kernels::gemm::Isa;

/// Positions of a transformed tile (4×4).
pub const POSITIONS: usize = 16;

/// Output rows (and columns) of a tile.
pub const TILE: usize = 2;

/// Floats of transformed input one group of tiles holds at most (256 KiB, half this CPU's L2
/// per core): the group's GEMMs read it once per output block group.
const GROUP_FLOATS: usize = 64 * 1024;

/// Accumulators of the largest register tile (P·F), the floats of whose 16 positions the
/// output transform reads back from the scratch.
const MAX_ACC: usize = 24;

/// Whether the kernel computes this convolution's window: 3×3, stride 1, dilation 1, input
/// channels in whole blocks (any padding).
pub fn applies(g: &Geometry) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (3, 3, 1, 1, 1, 1)
        && g.c > 0
        && g.c.is_multiple_of(LANES)
        && g.oh > 0
        && g.ow > 0
}

/// Tile rows and columns of the output.
pub fn tiles(g: &Geometry) -> (usize, usize) {
    (g.oh.div_ceil(TILE), g.ow.div_ceil(TILE))
}

/// Floats of packed weights of `m` output channels (whole blocks) over `c` input channels.
pub fn weights_len(m: usize, c: usize) -> usize {
    POSITIONS
        .saturating_mul(m.div_ceil(LANES) * LANES)
        .saturating_mul(c)
}

/// Floats of the 3×3 kernels [`pack_weights`] transforms: `m × c × 9`.
pub fn source_len(m: usize, c: usize) -> usize {
    m.saturating_mul(c).saturating_mul(9)
}

/// Tiles transformed together, for `c` input channels and `n` tiles to compute.
fn group_tiles(c: usize, n: usize) -> usize {
    (GROUP_FLOATS / (POSITIONS * c.max(1))).max(8).min(n.max(1))
}

/// Floats of scratch a task computing (up to) all of `g`'s tiles needs.
pub fn scratch_len(g: &Geometry) -> usize {
    let (th, tw) = tiles(g);
    POSITIONS * g.c * group_tiles(g.c, th * tw) + POSITIONS * MAX_ACC * LANES
}

/// The weight transform: `w` `[m][c][3][3]` → `U = G·g·Gᵀ` per output and input channel,
/// laid out `[16 positions][m/16][c][16]` (zero for the padding channels of the last
/// block). Computed in f64 and rounded once.
pub fn pack_weights(w: &[f32], m: usize, c: usize) -> Vec<f32> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let nb = m.div_ceil(LANES);
    let mut out = vec![0.0; weights_len(m, c)];
    for o in 0..m {
        for ic in 0..c {
            let k = |a: usize, b: usize| {
                f64::from(w.get((o * c + ic) * 9 + a * 3 + b).copied().unwrap_or(0.0))
            };
            for i in 0..4 {
                for j in 0..4 {
                    let mut s = 0.0;
                    for (a, ga) in G[i].iter().enumerate() {
                        for (b, gb) in G[j].iter().enumerate() {
                            s += ga * k(a, b) * gb;
                        }
                    }
                    out[(((i * 4 + j) * nb + o / LANES) * c + ic) * LANES + o % LANES] = s as f32;
                }
            }
        }
    }
    out
}

/// A Winograd convolution's operands for one sample.
pub struct Args<'a> {
    /// The input, blocked and unpadded: `[c/16][h][w][16]`.
    pub x: &'a [f32],
    /// The geometry ([`applies`]).
    pub g: &'a Geometry,
    /// The transformed weights of every output block ([`pack_weights`]).
    pub w: &'a [f32],
    /// Output blocks (of 16 channels).
    pub blocks: usize,
    /// Tile rows to compute (of [`tiles`]'s).
    pub rows: std::ops::Range<usize>,
    /// Bias of all output channels (whole blocks).
    pub bias: Option<&'a [f32]>,
    /// A tensor added before the activation, laid out like the whole output
    /// (`[blocks][oh][ow][16]`).
    pub residual: Option<&'a [f32]>,
    /// The activation.
    pub act: Act,
}

/// The input transform `Bᵀ·d·B` of one 4×4 tile `d[row][column]`, positions row-major;
/// `$add`/`$sub` are the vector operations (the same order on every path).
macro_rules! input_tile {
    ($d:expr, $zero:expr, $add:expr, $sub:expr) => {{
        let d = $d;
        let mut e = [[$zero; 4]; 4];
        for c in 0..4 {
            e[0][c] = $sub(d[0][c], d[2][c]);
            e[1][c] = $add(d[1][c], d[2][c]);
            e[2][c] = $sub(d[2][c], d[1][c]);
            e[3][c] = $sub(d[1][c], d[3][c]);
        }
        let mut v = [$zero; POSITIONS];
        for r in 0..4 {
            v[r * 4] = $sub(e[r][0], e[r][2]);
            v[r * 4 + 1] = $add(e[r][1], e[r][2]);
            v[r * 4 + 2] = $sub(e[r][2], e[r][1]);
            v[r * 4 + 3] = $sub(e[r][1], e[r][3]);
        }
        v
    }};
}

/// The output transform `Aᵀ·m·A` of one tile's 16 products: outputs (0,0), (0,1), (1,0),
/// (1,1).
macro_rules! output_tile {
    ($m:expr, $zero:expr, $add:expr, $sub:expr) => {{
        let m = $m;
        let (mut t0, mut t1) = ([$zero; 4], [$zero; 4]);
        for c in 0..4 {
            t0[c] = $add($add(m[c], m[4 + c]), m[8 + c]);
            t1[c] = $sub($sub(m[4 + c], m[8 + c]), m[12 + c]);
        }
        [
            $add($add(t0[0], t0[1]), t0[2]),
            $sub($sub(t0[1], t0[2]), t0[3]),
            $add($add(t1[0], t1[1]), t1[2]),
            $sub($sub(t1[1], t1[2]), t1[3]),
        ]
    }};
}

/// Computes tile rows `a.rows` of every output block of one sample: `y[b]` holds output rows
/// `2·rows.start .. min(2·rows.end, oh)` of block b (`[rows][ow][16]`). `scratch` holds at
/// least [`scratch_len`] floats.
pub fn conv(isa: Isa, a: &Args, y: &mut [&mut [f32]], scratch: &mut [f32]) -> Result<(), String> {
    let g = a.g;
    if !applies(g) {
        return Err("not a 3×3 stride-1 convolution of whole blocks".into());
    }
    let (th, tw) = tiles(g);
    let (nb, q) = (a.blocks, g.oh * g.ow);
    if a.x.len() < g.c * g.h * g.w {
        return Err("a convolution's input is smaller than its shape".into());
    }
    if a.w.len() < weights_len(nb * LANES, g.c) {
        return Err("a convolution's weights are fewer than its shape".into());
    }
    if a.bias.is_some_and(|b| b.len() < nb * LANES) {
        return Err("a convolution's bias is shorter than its channels".into());
    }
    let rows = a.rows.clone();
    if rows.end > th || a.residual.is_some_and(|r| r.len() < nb * q * LANES) {
        return Err("a convolution's output is smaller than its shape".into());
    }
    if rows.is_empty() || nb == 0 {
        return Ok(());
    }
    let (r0, r1) = (rows.start * TILE, (rows.end * TILE).min(g.oh));
    if y.len() < nb || y.iter().any(|b| b.len() < (r1 - r0) * g.ow * LANES) {
        return Err("a convolution's output is smaller than its shape".into());
    }
    let (t0, t1) = (rows.start * tw, rows.end * tw);
    let tg = group_tiles(g.c, t1 - t0);
    if scratch.len() < POSITIONS * g.c * tg + POSITIONS * MAX_ACC * LANES {
        return Err("the scratch buffer is too small".into());
    }
    let (v, mloc) = scratch.split_at_mut(POSITIONS * g.c * tg);
    let mut start = t0;
    while start < t1 {
        let group = start..(start + tg).min(t1);
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && isa.runs_here() && a.act.is_vectorizable() {
            // SAFETY: AVX-512F: this CPU has it (`runs_here`). The other preconditions of
            // `avx512::group` were checked above: `a` passed the length checks (input,
            // weights of `nb` blocks, bias, residual), `group` is at most `tg` tiles of rows
            // `rows` (< th), `v` holds 16·c·tg floats and `mloc` 16·MAX_ACC·16, and each of
            // the `nb` output slices holds rows r0..r1 of its block.
            #[allow(unsafe_code)]
            unsafe {
                avx512::group(a, group.clone(), tg, v, mloc, y, r0)
            };
            start = group.end;
            continue;
        }
        let _ = isa;
        portable::group(a, group.clone(), tg, v, y, r0);
        start = group.end;
    }
    Ok(())
}

/// The portable path: the same transforms on arrays of 16 lanes.
mod portable {
    use super::{Args, LANES, POSITIONS, TILE, tiles};

    type L = [f32; LANES];
    const ZERO: L = [0.0; LANES];

    fn add(a: L, b: L) -> L {
        std::array::from_fn(|l| a[l] + b[l])
    }

    fn sub(a: L, b: L) -> L {
        std::array::from_fn(|l| a[l] - b[l])
    }

    /// One group of tiles `group` (at most `tg`), its transformed input in `v`.
    pub(super) fn group(
        a: &Args,
        group: std::ops::Range<usize>,
        tg: usize,
        v: &mut [f32],
        y: &mut [&mut [f32]],
        r0: usize,
    ) {
        let g = a.g;
        let (_, tw) = tiles(g);
        let cbs = g.c / LANES;
        for (k, t) in group.clone().enumerate() {
            let (oy, ox) = (t / tw * TILE, t % tw * TILE);
            for cb in 0..cbs {
                let plane = &a.x[cb * g.h * g.w * LANES..(cb + 1) * g.h * g.w * LANES];
                let mut d = [[ZERO; 4]; 4];
                for (r, row) in d.iter_mut().enumerate() {
                    let Some(iy) = (oy + r).checked_sub(g.pt).filter(|&iy| iy < g.h) else {
                        continue;
                    };
                    for (c, px) in row.iter_mut().enumerate() {
                        if let Some(ix) = (ox + c).checked_sub(g.pl).filter(|&ix| ix < g.w) {
                            px.copy_from_slice(&plane[(iy * g.w + ix) * LANES..][..LANES]);
                        }
                    }
                }
                let tv: [L; POSITIONS] = input_tile!(d, ZERO, add, sub);
                for (xi, vv) in tv.iter().enumerate() {
                    v[((xi * cbs + cb) * tg + k) * LANES..][..LANES].copy_from_slice(vv);
                }
            }
        }
        let q = g.oh * g.ow;
        for (k, t) in group.enumerate() {
            let (oy, ox) = (t / tw * TILE, t % tw * TILE);
            for (b, yb) in y.iter_mut().enumerate().take(a.blocks) {
                let mut m = [ZERO; POSITIONS];
                for (xi, acc) in m.iter_mut().enumerate() {
                    let u = &a.w[(xi * a.blocks + b) * g.c * LANES..][..g.c * LANES];
                    for (c, wv) in u.chunks_exact(LANES).enumerate() {
                        let xv = v[((xi * cbs + c / LANES) * tg + k) * LANES + c % LANES];
                        for l in 0..LANES {
                            acc[l] += xv * wv[l];
                        }
                    }
                }
                let o: [L; 4] = output_tile!(m, ZERO, add, sub);
                let bias = a.bias.map_or(ZERO, |bs| {
                    let mut v = ZERO;
                    v.copy_from_slice(&bs[b * LANES..(b + 1) * LANES]);
                    v
                });
                for (i, ov) in o.iter().enumerate() {
                    let (py, px) = (oy + i / 2, ox + i % 2);
                    if py >= g.oh || px >= g.ow {
                        continue;
                    }
                    let at = ((py - r0) * g.ow + px) * LANES;
                    let res = (b * q + py * g.ow + px) * LANES;
                    for l in 0..LANES {
                        let r = a.residual.map_or(0.0, |rs| rs[res + l]);
                        yb[at + l] = a.act.apply(ov[l] + bias[l] + r);
                    }
                }
            }
        }
    }
}

/// The AVX-512 path. Every function here requires AVX-512F, which [`conv`] checks
/// (`Isa::runs_here`) before calling in.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{Args, LANES, MAX_ACC, POSITIONS, TILE, tiles};
    use crate::kernels::epilogue::Act;
    use std::arch::x86_64::*;

    /// What one register tile (P tiles × F output blocks) reads and writes.
    struct Tile {
        /// Transformed input of the tile's first tile, position 0, input block 0; input
        /// block cb of position ξ at `+ (ξ·cbs + cb)·tg·16`.
        v: *const f32,
        tg: usize,
        cbs: usize,
        /// Transformed weights of the first block, position 0; block f of position ξ at
        /// `+ (ξ·nb + f)·c·16`.
        u: *const f32,
        nb: usize,
        /// Products of the 16 positions, P·F vectors each.
        m: *mut f32,
        /// The output row and column of each of the P tiles' corner.
        at: [(usize, usize); 8],
        /// Output rows and columns, and the first output row the slices hold.
        oh: usize,
        ow: usize,
        r0: usize,
        /// The F blocks' outputs (rows r0.. of each) and residuals (whole blocks), or null.
        y: [*mut f32; 4],
        res: [*const f32; 4],
        /// The F blocks' bias, or null.
        bias: *const f32,
        act: Act,
    }

    /// A [`tile`] for one shape.
    type TileFn = unsafe fn(&Tile);

    /// One register tile: the 16 positions' GEMMs over the input channels, then the output
    /// transform and epilogue.
    ///
    /// # Safety
    /// The CPU has AVX-512F. For p < P, f < F, ξ < 16, cb < cbs and l < 16 these are readable:
    /// `v + ((ξ·cbs + cb)·tg + p)·16 + l`, the 16 floats at `u + ((ξ·nb + f)·cbs·16 + cb·16 +
    /// l)·16`, 16 floats at `bias + f·16` unless null; `m` has 16·P·F·16 writable floats
    /// nothing else uses; for each output (py, px) = at[p] + (dy, dx), dy, dx < 2, with
    /// py < oh and px < ow, 16 floats at `y[f] + ((py − r0)·ow + px)·16` are writable and
    /// used by nothing else meanwhile (py ≥ r0), and unless null, 16 at
    /// `res[f] + (py·ow + px)·16` readable.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const P: usize, const F: usize>(t: &Tile) {
        let c16 = t.cbs * LANES * LANES;
        // SAFETY: AVX-512F (the contract) for every intrinsic. Reads and writes are those
        // the contract lists: the loops stay within p < P, f < F, ξ < 16, cb < cbs, l < 16,
        // and an output is stored only when inside the image.
        unsafe {
            for xi in 0..POSITIONS {
                let mut acc = [[_mm512_setzero_ps(); F]; P];
                let u = t.u.add(xi * t.nb * c16);
                for cb in 0..t.cbs {
                    let v = t.v.add(((xi * t.cbs + cb) * t.tg) * LANES);
                    let ub = u.add(cb * LANES * LANES);
                    for l in 0..LANES {
                        let wv: [__m512; F] =
                            std::array::from_fn(|f| _mm512_loadu_ps(ub.add(f * c16 + l * LANES)));
                        for p in 0..P {
                            let b = _mm512_set1_ps(*v.add(p * LANES + l));
                            for f in 0..F {
                                acc[p][f] = _mm512_fmadd_ps(b, wv[f], acc[p][f]);
                            }
                        }
                    }
                }
                for p in 0..P {
                    for f in 0..F {
                        _mm512_storeu_ps(t.m.add(((xi * P + p) * F + f) * LANES), acc[p][f]);
                    }
                }
            }
            for f in 0..F {
                let bias = if t.bias.is_null() {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(t.bias.add(f * LANES))
                };
                for p in 0..P {
                    let m: [__m512; POSITIONS] = std::array::from_fn(|xi| {
                        _mm512_loadu_ps(t.m.add(((xi * P + p) * F + f) * LANES))
                    });
                    let o: [__m512; 4] =
                        output_tile!(m, _mm512_setzero_ps(), _mm512_add_ps, _mm512_sub_ps);
                    let (oy, ox) = t.at[p];
                    for (i, ov) in o.iter().enumerate() {
                        let (py, px) = (oy + i / 2, ox + i % 2);
                        if py >= t.oh || px >= t.ow {
                            continue;
                        }
                        let mut r = _mm512_add_ps(*ov, bias);
                        if !t.res[f].is_null() {
                            r = _mm512_add_ps(
                                r,
                                _mm512_loadu_ps(t.res[f].add((py * t.ow + px) * LANES)),
                            );
                        }
                        let out = t.y[f].add(((py - t.r0) * t.ow + px) * LANES);
                        _mm512_storeu_ps(out, t.act.apply_avx512(r));
                    }
                }
            }
        }
    }

    macro_rules! tiles {
        ($($f:literal: [$($p:literal)*]),*) => {
            |f: usize, p: usize| -> Option<TileFn> {
                match (f, p) {
                    $($( ($f, $p) => Some(tile::<$p, $f> as TileFn), )*)*
                    _ => None,
                }
            }
        };
    }

    /// Most tiles per register tile for `f` blocks (at most [`MAX_ACC`] accumulators).
    fn max_tiles(f: usize) -> usize {
        if f == 4 { 6 } else { 8 }
    }

    /// [`super::conv`]'s AVX-512 path for one group of tiles: the input transform into `v`,
    /// then the register tiles.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and the arguments are as [`super::conv`] checked them: `a`'s
    /// slices hold what its shape needs for `a.blocks` blocks, `group` is at most `tg` tiles
    /// of tile rows `a.rows` (inside the output), `v` holds 16·c·tg floats and `m`
    /// 16·MAX_ACC·16, and `y` has `a.blocks` slices of output rows `r0 = 2·a.rows.start` to
    /// `min(2·a.rows.end, oh)`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn group(
        a: &Args,
        group: std::ops::Range<usize>,
        tg: usize,
        v: &mut [f32],
        m: &mut [f32],
        y: &mut [&mut [f32]],
        r0: usize,
    ) {
        let g = a.g;
        let (_, tw) = tiles(g);
        let cbs = g.c / LANES;
        let plane = g.h * g.w * LANES;
        let vp = v.as_mut_ptr();
        // Floats between a tile's transformed vectors of consecutive positions.
        let stride = cbs * tg * LANES;
        for (k, t) in group.clone().enumerate() {
            let (oy, ox) = (t / tw * TILE, t % tw * TILE);
            // The window's corner in the image, when all of it lies inside.
            let inside = (oy >= g.pt && oy + 4 <= g.pt + g.h && ox >= g.pl && ox + 4 <= g.pl + g.w)
                .then(|| ((oy - g.pt) * g.w + ox - g.pl) * LANES);
            let iy: [Option<usize>; 4] =
                std::array::from_fn(|r| (oy + r).checked_sub(g.pt).filter(|&i| i < g.h));
            let ix: [Option<usize>; 4] =
                std::array::from_fn(|c| (ox + c).checked_sub(g.pl).filter(|&i| i < g.w));
            for cb in 0..cbs {
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                if let Some(corner) = inside {
                    // SAFETY: cb < c/16, and the window's 4×4 pixels from `corner` lie in
                    // the image (checked just above): 16 floats each inside `a.x` (c·h·w,
                    // checked by `conv`).
                    let x = unsafe { a.x.as_ptr().add(cb * plane + corner) };
                    for (r, row) in d.iter_mut().enumerate() {
                        for (c, px) in row.iter_mut().enumerate() {
                            // SAFETY: pixel (r, c) of the window, as above.
                            *px = unsafe { _mm512_loadu_ps(x.add((r * g.w + c) * LANES)) };
                        }
                    }
                } else {
                    for r in 0..4 {
                        let Some(iy) = iy[r] else { continue };
                        for c in 0..4 {
                            if let Some(ix) = ix[c] {
                                // SAFETY: cb < c/16, iy < h and ix < w: pixel (iy, ix) of
                                // input block cb, 16 floats inside `a.x` (c·h·w, checked by
                                // `conv`).
                                d[r][c] = unsafe {
                                    _mm512_loadu_ps(
                                        a.x.as_ptr().add(cb * plane + (iy * g.w + ix) * LANES),
                                    )
                                };
                            }
                        }
                    }
                }
                let tv: [__m512; POSITIONS] =
                    input_tile!(d, _mm512_setzero_ps(), _mm512_add_ps, _mm512_sub_ps);
                // SAFETY: cb < c/16 and k < tg: position 0's vector of this tile and block,
                // inside `v`'s 16·c·tg floats; position ξ's is ξ·stride further, the last
                // (ξ = 15) at ((15·cbs + cb)·tg + k)·16, inside too.
                let mut out = unsafe { vp.add((cb * tg + k) * LANES) };
                for (xi, vv) in tv.iter().enumerate() {
                    // SAFETY: `out` is position ξ's vector (above).
                    unsafe { _mm512_storeu_ps(out, *vv) };
                    if xi + 1 < POSITIONS {
                        // SAFETY: position ξ + 1's vector, inside `v` (above).
                        out = unsafe { out.add(stride) };
                    }
                }
            }
        }
        let pick = tiles!(1: [1 2 3 4 5 6 7 8], 2: [1 2 3 4 5 6 7 8], 3: [1 2 3 4 5 6 7 8], 4: [1 2 3 4 5 6]);
        let nb = a.blocks;
        let groups = nb.div_ceil(4);
        let n = group.len();
        let mut done = 0;
        for gi in 0..groups {
            let f = (nb - done) / (groups - gi);
            let pmax = max_tiles(f);
            debug_assert!(pmax * f <= MAX_ACC);
            let mut k = 0;
            while k < n {
                let p = pmax.min(n - k);
                let Some(run) = pick(f, p) else { return };
                let mut at = [(0, 0); 8];
                for (j, c) in at.iter_mut().enumerate().take(p) {
                    let t = group.start + k + j;
                    *c = (t / tw * TILE, t % tw * TILE);
                }
                let mut yp = [std::ptr::null_mut(); 4];
                let mut rp = [std::ptr::null(); 4];
                for i in 0..f {
                    yp[i] = y[done + i].as_mut_ptr();
                    if let Some(r) = a.residual {
                        // SAFETY: done + i < nb: block done + i's q·16 floats lie in the
                        // residual's nb·q·16 (checked by `conv`).
                        rp[i] = unsafe { r.as_ptr().add((done + i) * g.oh * g.ow * LANES) };
                    }
                }
                let t = Tile {
                    // SAFETY: k < n ≤ tg: tile k's vector of position 0, block 0 in `v`.
                    v: unsafe { vp.add(k * LANES) },
                    tg,
                    cbs,
                    // SAFETY: done < nb: block `done`'s weights of position 0, inside the
                    // 16·nb·16·c floats `conv` checked.
                    u: unsafe { a.w.as_ptr().add(done * g.c * LANES) },
                    nb,
                    m: m.as_mut_ptr(),
                    at,
                    oh: g.oh,
                    ow: g.ow,
                    r0,
                    y: yp,
                    res: rp,
                    // SAFETY: done < nb: block `done`'s 16 floats of the nb·16 bias.
                    bias: a.bias.map_or(std::ptr::null(), |b| unsafe {
                        b.as_ptr().add(done * LANES)
                    }),
                    act: a.act,
                };
                // SAFETY: AVX-512F (the contract). `pick` gave the kernel for P = p, F = f.
                // Its reads: tiles k..k + p < n ≤ tg of `v` for every position and input
                // block; blocks done..done + f ≤ nb of the weights for every position; the
                // bias and residual of those blocks. `m` holds 16·MAX_ACC·16 ≥ 16·p·f·16
                // floats. Each tile's corner `at[j]` is a tile of rows `a.rows`, so an output
                // inside the image has r0 ≤ py < min(2·rows.end, oh), inside block done + i's
                // slice, which only this call writes.
                unsafe { run(&t) };
                k += p;
            }
            done += f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::blocked;
    use crate::testing::{diff, suite_isas, uniform};

    /// An f64 direct convolution of one NCHW sample (the reference), with bias, residual
    /// and activation.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        g: &Geometry,
        w: &[f32],
        m: usize,
        bias: &[f32],
        res: &[f32],
        act: Act,
    ) -> Vec<f64> {
        let mut y = vec![0.0; m * g.oh * g.ow];
        for o in 0..m {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = f64::from(bias[o]);
                    for c in 0..g.c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                if let (Some(iy), Some(ix)) = (g.in_row(oy, ky), g.in_col(ox, kx)) {
                                    s += f64::from(x[(c * g.h + iy) * g.w + ix])
                                        * f64::from(w[((o * g.c + c) * 3 + ky) * 3 + kx]);
                                }
                            }
                        }
                    }
                    let at = (o * g.oh + oy) * g.ow + ox;
                    s += f64::from(res[at]);
                    y[at] = f64::from(act.apply(s as f32));
                }
            }
        }
        y
    }

    fn geometry(c: usize, h: usize, w: usize, pad: usize) -> Geometry {
        Geometry::three_by_three(c, h, w, pad)
    }

    /// Random shapes (channels 16/32/48, odd and even images 1..30, pads 0 and 1, bias,
    /// residual, ReLU), every ISA, the rows split in parts: within 2·10⁻⁶ of the largest
    /// output of an f64 direct convolution, and the same bits for every split.
    #[test]
    fn matches_a_direct_convolution_on_random_shapes() {
        let isas = suite_isas("winograd").unwrap();
        let mut seed = 1u64;
        let mut worst = 0.0f64;
        for case in 0..40 {
            let c = [16, 32, 48][case % 3];
            let m = [16, 48, 32, 64][case % 4];
            let pad = case / 2 % 2;
            let (h, w) = (1 + (case * 7 + 3) % 30, 1 + (case * 11 + 5) % 30);
            if h + 2 * pad < 3 || w + 2 * pad < 3 {
                continue;
            }
            let g = geometry(c, h, w, pad);
            let q = g.oh * g.ow;
            seed += 4;
            let x = uniform(seed, c * h * w);
            let wt = uniform(seed + 1, m * c * 9);
            let bias = uniform(seed + 2, m);
            let res = if case % 2 == 0 {
                uniform(seed + 3, m * q)
            } else {
                vec![0.0; m * q]
            };
            let act = if case % 3 == 0 { Act::None } else { Act::Relu };
            let want = reference(&x, &g, &wt, m, &bias, &res, act);
            let scale = want.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(1.0);
            let mut xb = vec![0.0; c * h * w];
            blocked::to_blocked(Isa::Scalar, &x, c, h * w, &mut xb).unwrap();
            let mut rb = vec![0.0; m * q];
            blocked::to_blocked(Isa::Scalar, &res, m, q, &mut rb).unwrap();
            let packed = pack_weights(&wt, m, c);
            let (th, _) = tiles(&g);
            for &isa in &isas {
                let mut first: Option<Vec<f32>> = None;
                for parts in [1, 2, 3] {
                    let mut yb = vec![f32::NAN; m * q];
                    let mut scratch = vec![f32::NAN; scratch_len(&g)];
                    for part in 0..parts {
                        let rows = crate::threads::split(th, parts, 1, part);
                        let r0 = (rows.start * TILE).min(g.oh);
                        let r1 = (rows.end * TILE).min(g.oh);
                        let mut views: Vec<&mut [f32]> = yb
                            .chunks_mut(q * LANES)
                            .map(|b| &mut b[r0 * g.ow * LANES..r1 * g.ow * LANES])
                            .collect();
                        let args = Args {
                            x: &xb,
                            g: &g,
                            w: &packed,
                            blocks: m / LANES,
                            rows,
                            bias: Some(&bias),
                            residual: (case % 2 == 0).then_some(&rb[..]),
                            act,
                        };
                        conv(isa, &args, &mut views, &mut scratch).unwrap();
                    }
                    let mut y = vec![0.0; m * q];
                    blocked::from_blocked(Isa::Scalar, &yb, m, q, &mut y).unwrap();
                    let d = diff(&y, &want, 0.0, 2e-6 * scale);
                    assert!(d.allclose, "{} case {case} {g:?} m={m}: {d:?}", isa.name());
                    worst = worst.max(d.max_abs / scale);
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert!(
                            f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{} case {case}: {parts} parts changed the bits",
                            isa.name()
                        ),
                    }
                }
            }
        }
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            format!("winograd: worst error {worst:.2e} of the largest output\n").as_bytes(),
        );
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let g = geometry(16, 6, 6, 1);
        let strided = Geometry { sh: 2, ..g };
        let x = vec![0.0; 16 * 36];
        let w = pack_weights(&[0.0; 16 * 16 * 9], 16, 16);
        let mut scratch = vec![0.0; scratch_len(&g)];
        let mut out = vec![0.0; 16 * 36];
        for (geo, out_len, scratch_len, ok) in [
            (&g, 16 * 36, scratch.len(), true),
            (&g, 16, scratch.len(), false),
            (&g, 16 * 36, 10, false),
            (&strided, 16 * 36, scratch.len(), false),
        ] {
            let args = Args {
                x: &x,
                g: geo,
                w: &w,
                blocks: 1,
                rows: 0..3,
                bias: None,
                residual: None,
                act: Act::None,
            };
            let r = conv(
                Isa::Scalar,
                &args,
                &mut [&mut out[..out_len]],
                &mut scratch[..scratch_len],
            );
            assert_eq!(r.is_ok(), ok, "{geo:?} {out_len} {scratch_len}: {r:?}");
        }
    }
}
