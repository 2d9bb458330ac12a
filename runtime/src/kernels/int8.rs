//! Integer kernels: u8 activations × i8 weights, i32 accumulation, and the one fixed-point
//! requantization of [`crate::quant`] — convolution (as a GEMM over an im2col of the codes),
//! fully connected layers, max pooling of codes, and the f32 ↔ u8 boundaries.
//!
//! The product `C[i][j] = Σ_k R[i][k] · V[j][k]` runs on two operands: **rows** `R`, read
//! four bytes (one depth group) at a time and broadcast, and **panels** `V`, packed
//! `[panel][group][16 lanes][4 bytes]` so one 64-byte load holds a depth group of 16
//! columns. A convolution's rows are its i8 weights and its panels the im2col'd u8 input
//! (the output comes out along pixels, NCHW); a fully connected layer's rows are the u8
//! input rows and its panels the i8 weights (the output comes out along features).
//!
//! Three paths compute it: AVX-512 VNNI (`vpdpbusd`: four u8 × i8 products summed into each
//! i32 lane), AVX2 (bytes widened to i16, `vpmaddwd`: pairs of i16 products into i32, which
//! cannot saturate), and portable scalar. i32 addition wraps and is associative, so every
//! path gives the same accumulators whatever the order, and the same epilogue
//! ([`crate::quant::Requant::apply`]) then gives the same codes: **bit-identical** results on
//! every CPU, equal to the reference evaluator's (tested on random shapes below and in
//! `tests/tests/int8.rs`).
//!
//! Zero points: weights are symmetric (zero point 0); the input's zero point `zx` is folded
//! into the bias when the model is compiled (`Σ (x − zx)·w = Σ x·w − zx·Σ w`), and padding
//! taps read `zx` (a real 0).

use crate::kernels::conv::Geometry;
use crate::kernels::gemm::Isa;
use crate::quant::{FloatClamp, Requant};

/// Columns per panel.
pub const LANES: usize = 16;
/// Bytes per depth group.
pub const GROUP: usize = 4;

/// Depth rounded up to whole groups (saturating, like every size a program's fields make:
/// hostile sizes give a length no weights or buffer holds, which validation rejects).
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(GROUP).saturating_mul(GROUP)
}

/// Bytes of `n` columns of depth `k` packed as panels (saturating).
pub fn panels_len(n: usize, k: usize) -> usize {
    n.div_ceil(LANES)
        .saturating_mul(padded_k(k))
        .saturating_mul(LANES)
}

/// Which code computes the product.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// Portable Rust.
    Scalar,
    /// AVX2: widened to i16, `vpmaddwd`.
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`.
    Vnni,
}

impl Path {
    /// The best path for `isa` on this CPU.
    pub fn of(isa: Isa) -> Path {
        match isa {
            Isa::Scalar => Path::Scalar,
            Isa::Avx512 if Path::Vnni.runs_here() => Path::Vnni,
            _ if Path::Avx2.runs_here() => Path::Avx2,
            _ => Path::Scalar,
        }
    }

    /// Whether this CPU has the instructions the path uses.
    pub fn runs_here(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Path::Vnni => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Packs `n` columns of depth `k`, column `j`'s byte `kk` at `get(j, kk)`, into panels (bytes
/// past `k` or `n` are `fill`).
pub fn pack_panels(n: usize, k: usize, fill: u8, get: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let groups = padded_k(k) / GROUP;
    let mut out = vec![fill; panels_len(n, k)];
    for j in 0..n {
        let (p, lane) = (j / LANES, j % LANES);
        for kk in 0..k {
            let (g, b) = (kk / GROUP, kk % GROUP);
            out[((p * groups + g) * LANES + lane) * GROUP + b] = get(j, kk);
        }
    }
    out
}

/// Per-output requantization: the bias (input zero point folded in), each output's
/// multiplier and shift ([`Requant`], stored apart so a vector loads 16 of each), and the
/// output's zero point and clamp.
#[derive(Clone, Copy, Debug)]
pub struct Requants<'a> {
    /// i32 bias per output.
    pub bias: &'a [i32],
    /// Multiplier per output.
    pub mult: &'a [i32],
    /// Shift per output (each in `1..=62`: [`requants`] checks).
    pub shift: &'a [u32],
    /// Output zero point.
    pub zp: i32,
    /// Lowest code.
    pub lo: i32,
    /// Highest code.
    pub hi: i32,
}

impl Requants<'_> {
    #[inline(always)]
    fn code(&self, i: usize, acc: i32) -> u8 {
        let r = Requant {
            mult: self.mult[i],
            shift: self.shift[i],
        };
        r.apply(acc.wrapping_add(self.bias[i]), self.zp, self.lo, self.hi) as u8
    }

    fn len(&self) -> usize {
        self.bias.len().min(self.mult.len()).min(self.shift.len())
    }
}

/// Where `C[i][j]` goes: `out[i·row_stride + col0 + j]`, requantized as output `col0 + j`.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Stride between rows `i`.
    pub row_stride: usize,
    /// The first column's output (a group's first channel).
    pub col0: usize,
}

/// Where output pixel `(oy, ox)`'s first tap starts in a channels-last input, channel `c0`
/// on, if every tap of its window lies inside the input.
#[inline(always)]
fn conv_base(g: &Geometry, c0: usize, oy: usize, ox: usize) -> Option<usize> {
    let y0 = (oy * g.sh).checked_sub(g.pt)?;
    let x0 = (ox * g.sw).checked_sub(g.pl)?;
    let inside = y0 + (g.kh - 1) * g.dh < g.h && x0 + (g.kw - 1) * g.dw < g.w;
    inside.then_some((y0 * g.w + x0) * g.c + c0)
}

/// The u8 operand of a product, row by row, each row a list of **taps**: runs of bytes whose
/// concatenation is the row (depth `k`).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    /// Row `i` at `bytes[i·stride..i·stride + k]`: one tap.
    Matrix {
        /// The rows.
        bytes: &'a [u8],
        /// Bytes from one row to the next.
        stride: usize,
    },
    /// A convolution's input, NHWC (`[h][w][c]`): row `i` is output pixel `i`, its taps the
    /// `cg` channels from `c0` of the input pixel each (ky, kx) reads — `zeros` (`cg` bytes of
    /// the input's zero point) where it reads padding. Depth order (ky, kx, channel).
    Conv {
        /// The input.
        x: &'a [u8],
        /// Window geometry (`g.c` the input's channels).
        g: Geometry,
        /// First channel of the group.
        c0: usize,
        /// Channels per group.
        cg: usize,
        /// At least `cg` bytes of the input's zero point.
        zeros: &'a [u8],
    },
}

impl<'a> Rows<'a> {
    /// Taps per row and bytes per tap, for depth `k`.
    fn shape(&self, k: usize) -> (usize, usize) {
        match self {
            Rows::Matrix { .. } => (1, k),
            Rows::Conv { g, cg, .. } => (g.kh * g.kw, *cg),
        }
    }

    /// Tap `t` of row `i` (its bytes; the caller checked the sizes, see [`Rows::check`]).
    #[inline(always)]
    fn tap(&self, i: usize, t: usize, k: usize) -> &'a [u8] {
        match *self {
            Rows::Matrix { bytes, stride } => &bytes[i * stride..i * stride + k],
            Rows::Conv {
                x,
                ref g,
                c0,
                cg,
                zeros,
            } => {
                let (oy, ox) = (i / g.ow, i % g.ow);
                let (ky, kx) = (t / g.kw, t % g.kw);
                match (g.in_row(oy, ky), g.in_col(ox, kx)) {
                    (Some(iy), Some(ix)) => {
                        let at = (iy * g.w + ix) * g.c + c0;
                        &x[at..at + cg]
                    }
                    _ => &zeros[..cg],
                }
            }
        }
    }

    /// Each tap's offset from a row's base (a convolution's taps: (ky·dh·w + kx·dw)·c).
    fn offsets(&self) -> Vec<usize> {
        match self {
            Rows::Matrix { .. } => vec![0],
            Rows::Conv { g, .. } => (0..g.kh * g.kw)
                .map(|t| ((t / g.kw) * g.dh * g.w + (t % g.kw) * g.dw) * g.c)
                .collect(),
        }
    }

    /// Where row `i`'s first tap starts when all its taps lie inside the input (a matrix
    /// row; a convolution's pixel away from the padding): tap `t` is then at that plus
    /// `offsets()[t]`.
    #[inline(always)]
    fn interior(&self, i: usize) -> Option<usize> {
        match self {
            Rows::Matrix { stride, .. } => Some(i * stride),
            Rows::Conv { g, c0, .. } => conv_base(g, *c0, i / g.ow.max(1), i % g.ow.max(1)),
        }
    }

    /// [`Rows::interior`] of every row of `rows` (one division for them all), or None if
    /// some row reads padding. A convolution's rows are checked at the corners of the output
    /// window they span (the interior is a rectangle), then laid out a line at a time.
    fn starts(&self, rows: std::ops::Range<usize>) -> Option<Vec<usize>> {
        match self {
            Rows::Matrix { stride, .. } => Some(rows.map(|i| i * stride).collect()),
            Rows::Conv { g, c0, .. } => {
                if rows.is_empty() {
                    return Some(vec![]);
                }
                let ow = g.ow.max(1);
                let (first, last) = (rows.start, rows.end - 1);
                let (y0, y1) = (first / ow, last / ow);
                // The columns the rows use: all of them when they span several lines.
                let (x0, x1) = if y0 == y1 {
                    (first % ow, last % ow)
                } else {
                    (0, ow - 1)
                };
                // `conv_base` is increasing in both coordinates and its interior a
                // rectangle: the four corners inside means every row is.
                for (oy, ox) in [(y0, x0), (y0, x1), (y1, x0), (y1, x1)] {
                    conv_base(g, *c0, oy, ox)?;
                }
                // Row (oy, ox) starts at corner (y0, x0)'s start plus whole lines and steps
                // (every ox used is at least x0).
                let corner = conv_base(g, *c0, y0, x0)?;
                let (line, step) = (g.sh * g.w * g.c, g.sw * g.c);
                let mut out = Vec::with_capacity(rows.len());
                for oy in y0..=y1 {
                    let a = if oy == y0 { first % ow } else { 0 };
                    let b = if oy == y1 { last % ow } else { ow - 1 };
                    let at = corner + (oy - y0) * line;
                    out.extend((a..=b).map(|ox| at + (ox - x0) * step));
                }
                Some(out)
            }
        }
    }

    /// The operand's bytes.
    fn data(&self) -> &'a [u8] {
        match *self {
            Rows::Matrix { bytes, .. } => bytes,
            Rows::Conv { x, .. } => x,
        }
    }

    /// That rows `rows` of depth `k` lie inside the operand.
    fn check(&self, rows: &std::ops::Range<usize>, k: usize) -> Result<(), String> {
        let ok = match self {
            Rows::Matrix { bytes, stride } => {
                rows.is_empty() || (rows.end - 1) * stride + k <= bytes.len()
            }
            Rows::Conv {
                x,
                g,
                c0,
                cg,
                zeros,
                ..
            } => {
                k == g.kh * g.kw * cg
                    && c0 + cg <= g.c
                    && x.len() >= g.h * g.w * g.c
                    && zeros.len() >= *cg
                    && rows.end <= g.oh * g.ow
            }
        };
        if ok {
            Ok(())
        } else {
            Err("int8 gemm: rows outside their operand".into())
        }
    }
}

/// `C = R·Vᵀ` for rows `rows` of `r` (u8, depth `k`) and all `n` columns of the i8 panels
/// `v`, requantized (output `layout.col0 + j` for column `j`) into `out`. Rows whose taps are
/// whole depth groups are read in place (a convolution reads its input where it lies: no
/// im2col); others are gathered four rows at a time, into a buffer of
/// [`gather_len`]`(r, k)` bytes allocated here (see [`gemm_in`] to pass one instead).
#[allow(clippy::too_many_arguments)]
pub fn gemm<E: Epilogue>(
    path: Path,
    r: &Rows,
    rows: std::ops::Range<usize>,
    k: usize,
    v: &[u8],
    n: usize,
    q: &E,
    layout: Layout,
    out: &mut [E::Out],
) -> Result<(), String> {
    let mut gathered = vec![0u8; gather_len(r, k)];
    gemm_in(path, r, rows, k, v, n, q, layout, out, &mut gathered)
}

/// Bytes of the buffer [`gemm_in`] gathers rows of `r` (depth `k`) into: none when every tap
/// is whole depth groups (read in place), else four rows of `padded_k(k)`.
pub fn gather_len(r: &Rows, k: usize) -> usize {
    if r.shape(k).1.is_multiple_of(GROUP) {
        0
    } else {
        4 * padded_k(k)
    }
}

/// [`gemm`], gathering rows into `gathered` (at least [`gather_len`]`(r, k)` bytes, whatever
/// they hold: every gathered row is written whole before it is read).
#[allow(clippy::too_many_arguments)]
pub fn gemm_in<E: Epilogue>(
    path: Path,
    r: &Rows,
    rows: std::ops::Range<usize>,
    k: usize,
    v: &[u8],
    n: usize,
    q: &E,
    layout: Layout,
    out: &mut [E::Out],
    gathered: &mut [u8],
) -> Result<(), String> {
    let kp = padded_k(k);
    let groups = kp / GROUP;
    if rows.is_empty() || n == 0 || k == 0 {
        return Ok(());
    }
    r.check(&rows, k)?;
    if v.len() < panels_len(n, k) {
        return Err("int8 gemm: weights shorter than their sizes".into());
    }
    if q.outputs() < layout.col0 + n {
        return Err("int8 gemm: fewer requantizations than outputs".into());
    }
    if q.rows() < rows.end {
        return Err("int8 gemm: fewer row parameters than rows".into());
    }
    if out.len() < (rows.end - 1) * layout.row_stride + layout.col0 + n {
        return Err("int8 gemm: output shorter than its size".into());
    }
    if !path.runs_here() {
        return Err(format!("int8 gemm: this CPU cannot run the {path:?} path"));
    }
    let (ntaps, tap_len) = r.shape(k);
    let direct = tap_len.is_multiple_of(GROUP);
    // Gathered rows: four of kp bytes, zero past k.
    if gathered.len() < gather_len(r, k) {
        return Err("int8 gemm: the gather buffer is too small".into());
    }
    let panels = n.div_ceil(LANES);
    let block = groups * LANES * GROUP;
    let offsets = r.offsets();
    // One panel of outputs (16 channels or fewer) read in place: 8 rows a tile, so the VNNI
    // tile still has 8 independent accumulators.
    #[cfg(target_arch = "x86_64")]
    if path == Path::Vnni && direct {
        // Every row away from padding (a matrix; a convolution whose padding `conv`
        // materialized): one lean loop over row starts.
        // The farthest tap of any row (offsets need not increase in a hostile program).
        let last = offsets
            .iter()
            .max()
            .and_then(|o| o.checked_add(tap_len))
            .unwrap_or(usize::MAX);
        let data = r.data();
        if let Some(starts) = r.starts(rows.clone())
            && starts
                .iter()
                .all(|&s| s.checked_add(last).is_some_and(|e| e <= data.len()))
        {
            // SAFETY: `runs_here` checked AVX-512F and VNNI; every row's taps lie inside
            // `data` (checked just above); `v` holds `n` columns of depth `k` (checked on
            // entry, `tap_len·ntaps = k`), `q` outputs `col0..col0 + n` and `out` every row's
            // `n` codes (both checked on entry).
            #[allow(unsafe_code)]
            unsafe {
                gemm_vnni_direct(
                    data,
                    &starts,
                    &offsets,
                    tap_len / GROUP,
                    v,
                    n,
                    q,
                    layout,
                    rows.start,
                    out,
                )
            };
            return Ok(());
        }
    }
    let tall = path == Path::Vnni && panels == 1 && direct;
    let height = if tall { 8 } else { 4 };
    let mut acc = [[0i32; LANES]; 8];
    let mut i = rows.start;
    while i < rows.end {
        let tile_rows = (rows.end - i).min(height);
        // Rows past the end repeat the last one (computed, not stored).
        let ids = [0, 1, 2, 3, 4, 5, 6, 7].map(|t| i + t.min(tile_rows - 1));
        if !direct {
            for (t, &row) in ids.iter().enumerate().take(4) {
                let dst = &mut gathered[t * kp..(t + 1) * kp];
                let mut at = 0;
                for tap in 0..ntaps {
                    let src = r.tap(row, tap, k);
                    dst[at..at + src.len()].copy_from_slice(src);
                    at += src.len();
                }
                dst[at..].fill(0);
            }
        }
        let (nt, tg) = if direct {
            (ntaps, tap_len / GROUP)
        } else {
            (1, groups)
        };
        let gathered = &*gathered;
        // Rows whose every tap lies inside the input: a base plus each tap's offset.
        let bases = ids.map(|row| if direct { r.interior(row) } else { None });
        let tap = |t: usize, tp: usize| -> &[u8] {
            if !direct {
                return &gathered[t * kp..(t + 1) * kp];
            }
            match (bases[t], r) {
                (Some(b), Rows::Conv { x, cg, .. }) => {
                    let at = b + offsets[tp];
                    &x[at..at + cg]
                }
                _ => r.tap(ids[t], tp, k),
            }
        };
        // Every row of the tile away from the padding: raw row pointers, each tap at a fixed
        // offset (checked here: the last tap of each row ends inside `x`).
        let fast: Option<[*const u8; 8]> = match *r {
            Rows::Conv { x, cg: len, .. }
            | Rows::Matrix {
                bytes: x,
                stride: len,
            } if direct && bases.iter().take(height).all(Option::is_some) => {
                let len = if matches!(r, Rows::Matrix { .. }) {
                    k
                } else {
                    len
                };
                let last = offsets.last().copied().unwrap_or(0) + len;
                let ok = bases
                    .iter()
                    .take(height)
                    .flatten()
                    .all(|&b| b + last <= x.len());
                ok.then(|| bases.map(|b| x[b.unwrap_or(0)..].as_ptr()))
            }
            _ => None,
        };
        let mut p = 0;
        while p < panels {
            let two = path == Path::Vnni && p + 1 < panels;
            let cols = (n - p * LANES).min(if two { 2 * LANES } else { LANES });
            // The VNNI tile writes all of `acc`; the others add to it.
            if path != Path::Vnni {
                acc = [[0i32; LANES]; 8];
            }
            let vp = &v[p * block..(p + if two { 2 } else { 1 }) * block];
            match path {
                #[cfg(target_arch = "x86_64")]
                Path::Vnni => {
                    // SAFETY: `runs_here` checked AVX-512F and VNNI; every tap has `tg` whole
                    // groups (checked when `fast` was made: row base plus tap offset; else a
                    // tap of `tap_len` bytes or a gathered row of `kp`), and `vp` holds the
                    // tile's 1 or 2 panels of `nt·tg` groups.
                    #[allow(unsafe_code)]
                    unsafe {
                        match &fast {
                            Some(p) => vnni_tile(
                                |t, tp| p[t].wrapping_add(offsets[tp]),
                                tall,
                                two,
                                nt,
                                tg,
                                vp,
                                &mut acc,
                            ),
                            None => vnni_tile(
                                |t, tp| tap(t, tp).as_ptr(),
                                tall,
                                two,
                                nt,
                                tg,
                                vp,
                                &mut acc,
                            ),
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => {
                    // SAFETY: as above, with AVX2 checked.
                    #[allow(unsafe_code)]
                    unsafe {
                        tile_avx2(&tap, nt, tg, vp, &mut acc)
                    }
                }
                _ => tile_scalar(&tap, nt, tg, vp, &mut acc),
            }
            let o0 = layout.col0 + p * LANES;
            let per_row = if tall { 1 } else { 2 };
            let first = i * layout.row_stride + o0;
            q.store_rows(
                path,
                &acc,
                i,
                tile_rows,
                per_row,
                cols,
                o0,
                &mut out[first..],
                layout.row_stride,
            );
            p += if two { 2 } else { 1 };
        }
        i += height;
    }
    Ok(())
}

/// [`gemm`] on the VNNI path when every row's taps lie inside the operand: row `row0 + r`
/// starts at `data[starts[r]]`, its tap `tp` at that plus `offsets[tp]` (`tg` groups of 4
/// bytes each). Tiles of 8 rows × 1 panel, or 4 rows × 2 panels (one if `n` leaves one).
///
/// # Safety
/// The CPU has AVX-512F and VNNI; `starts[r] + offsets[tp] + 4·tg ≤ data.len()` for every
/// row and tap; `v` holds `n` columns of depth `offsets.len()·4·tg` in panels; `q` holds
/// outputs `layout.col0..layout.col0 + n`; `out` holds every row's `n` codes at
/// `(row0 + r)·row_stride + col0`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn gemm_vnni_direct<E: Epilogue>(
    data: &[u8],
    starts: &[usize],
    offsets: &[usize],
    tg: usize,
    v: &[u8],
    n: usize,
    q: &E,
    layout: Layout,
    row0: usize,
    out: &mut [E::Out],
) {
    let rows = starts.len();
    let nt = offsets.len();
    let panels = n.div_ceil(LANES);
    let block = nt * tg * LANES * GROUP;
    // 8 rows × 2 panels: 16 accumulators of the 32 registers, each panel group loaded once
    // for 8 rows and each row's 4 bytes broadcast once for 2 panels.
    let height = 8;
    let per_row = 2;
    let stride = layout.row_stride;
    let mut acc = [[0i32; LANES]; 16];
    let mut i = 0;
    while i < rows {
        let tile_rows = (rows - i).min(height);
        // Rows past the end repeat the last one (computed, not stored).
        let ptrs: [*const u8; 8] =
            std::array::from_fn(|t| data.as_ptr().wrapping_add(starts[i + t.min(tile_rows - 1)]));
        let at = |t: usize, tp: usize| ptrs[t].wrapping_add(offsets[tp]);
        let mut p = 0;
        while p < panels {
            let two = p + 1 < panels;
            let cols = (n - p * LANES).min(if two { 2 * LANES } else { LANES });
            let vp = &v[p * block..];
            // SAFETY: the taps are inside `data` and the panels inside `v` (the contract).
            unsafe {
                if two {
                    tile_vnni::<8, 2, 16>(at, nt, tg, vp, &mut acc)
                } else {
                    tile_vnni::<8, 1, 16>(at, nt, tg, vp, &mut acc)
                }
            }
            let o0 = layout.col0 + p * LANES;
            let first = (row0 + i) * stride + o0;
            q.store_rows(
                Path::Vnni,
                &acc,
                row0 + i,
                tile_rows,
                per_row,
                cols,
                o0,
                &mut out[first..],
                stride,
            );
            p += if two { 2 } else { 1 };
        }
        i += height;
    }
}

/// What a product's accumulators become where a tile stores them: u8 codes ([`Requants`])
/// or f32 values ([`Dequants`]).
pub trait Epilogue {
    /// The output element.
    type Out;
    /// Outputs (columns) it has parameters for.
    fn outputs(&self) -> usize;
    /// Rows it has parameters for (`usize::MAX`: the same for every row).
    fn rows(&self) -> usize;
    /// Stores the `rows` rows of a tile, the first being row `row` of the product (row `t`'s
    /// outputs from `acc[per_row·t]`, `cols` of them, outputs from `o0`), into
    /// `out[t·stride..]`.
    #[allow(clippy::too_many_arguments)]
    fn store_rows(
        &self,
        path: Path,
        acc: &[[i32; LANES]],
        row: usize,
        rows: usize,
        per_row: usize,
        cols: usize,
        o0: usize,
        out: &mut [Self::Out],
        stride: usize,
    );
}

impl Epilogue for Requants<'_> {
    type Out = u8;

    fn outputs(&self) -> usize {
        self.len()
    }

    fn rows(&self) -> usize {
        usize::MAX
    }

    #[inline(always)]
    fn store_rows(
        &self,
        path: Path,
        acc: &[[i32; LANES]],
        _row: usize,
        rows: usize,
        per_row: usize,
        cols: usize,
        o0: usize,
        out: &mut [u8],
        stride: usize,
    ) {
        // A caller outside `gemm` may name any path: the vector code only where it runs.
        let path = if path.runs_here() { path } else { Path::Scalar };
        store_rows(path, acc, rows, per_row, cols, self, o0, out, stride);
    }
}

/// The f32 epilogue of a product on dynamically quantized rows ([`quantize_rows`]): row
/// `r`'s scale `s` and zero point `z` follow its codes in `rows`, and output `j` is
/// `clamp(dequantize_acc(acc − z·Σw_j, s·scale[j], bias[j]))` ([`crate::quant`]).
#[derive(Clone, Copy, Debug)]
pub struct Dequants<'a> {
    /// The rows the product reads, as [`quantize_rows`] wrote them.
    pub rows: &'a [u8],
    /// Depth (the product's `k`, before padding).
    pub k: usize,
    /// Σ of each output's weights.
    pub colsum: &'a [i32],
    /// Each output's weight scale.
    pub scale: &'a [f32],
    /// Each output's bias.
    pub bias: &'a [f32],
    /// The activation's clamp.
    pub clamp: FloatClamp,
}

/// Bytes a dynamically quantized row of depth `k` takes: its codes padded to whole depth
/// groups, then its scale (f32) and zero point (i32), little-endian.
pub fn dynamic_stride(k: usize) -> usize {
    padded_k(k).saturating_add(8)
}

impl Dequants<'_> {
    /// Row `r`'s scale and zero point (the caller checked `r < self.rows()`).
    #[inline(always)]
    fn row(&self, r: usize) -> (f32, i32) {
        let at = r * dynamic_stride(self.k) + padded_k(self.k);
        let word = |i: usize| {
            let b = &self.rows[at + i..at + i + 4];
            [b[0], b[1], b[2], b[3]]
        };
        (f32::from_le_bytes(word(0)), i32::from_le_bytes(word(4)))
    }

    #[inline(always)]
    fn value(&self, s: f32, z: i32, j: usize, acc: i32) -> f32 {
        let a = acc.wrapping_sub(z.wrapping_mul(self.colsum[j]));
        self.clamp.apply(crate::quant::dequantize_acc(
            a,
            s * self.scale[j],
            self.bias[j],
        ))
    }
}

impl Epilogue for Dequants<'_> {
    type Out = f32;

    fn outputs(&self) -> usize {
        self.colsum.len().min(self.scale.len()).min(self.bias.len())
    }

    fn rows(&self) -> usize {
        self.rows.len() / dynamic_stride(self.k)
    }

    #[inline(always)]
    fn store_rows(
        &self,
        path: Path,
        acc: &[[i32; LANES]],
        row: usize,
        rows: usize,
        per_row: usize,
        cols: usize,
        o0: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if path == Path::Vnni
            && path.runs_here()
            && cols.is_multiple_of(LANES)
            && rows > 0
            && (rows - 1) * stride + cols <= out.len()
            && per_row * (rows - 1) + cols / LANES <= acc.len()
            && self.outputs() >= o0 + cols
            && self.rows() >= row + rows
        {
            for t in 0..rows {
                let (s, z) = self.row(row + t);
                // SAFETY: the Vnni path runs here (`runs_here`: AVX-512F); outputs
                // `o0..o0 + cols` are inside the parameters, row `t`'s `cols` values inside
                // `out` and its accumulators inside `acc` (checked just above).
                #[allow(unsafe_code)]
                unsafe {
                    dequant_row(
                        &acc[per_row * t..],
                        cols / LANES,
                        s,
                        z,
                        self,
                        o0,
                        &mut out[t * stride..t * stride + cols],
                    )
                };
            }
            return;
        }
        for t in 0..rows {
            let (s, z) = self.row(row + t);
            let at = t * stride;
            for (j, o) in out[at..at + cols].iter_mut().enumerate() {
                let a = acc[per_row * t + j / LANES][j % LANES];
                *o = self.value(s, z, o0 + j, a);
            }
        }
    }
}

/// [`Dequants`] of one tile row, 16 outputs at a time (AVX-512F): the same i32 wrapping
/// subtraction, the same f32 conversion (round to nearest even), product, sum and clamp
/// (`max(lo, y)` then `min(hi, y)`, which keep a NaN `y`) as [`Dequants::value`].
///
/// # Safety
/// The CPU has AVX-512F; `acc` holds `halves` vectors, `d` outputs `o0..o0 + 16·halves`,
/// `out` `16·halves` values.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn dequant_row(
    acc: &[[i32; LANES]],
    halves: usize,
    s: f32,
    z: i32,
    d: &Dequants,
    o0: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (sv, zv) = (_mm512_set1_ps(s), _mm512_set1_epi32(z));
    let (lo, hi) = (_mm512_set1_ps(d.clamp.lo), _mm512_set1_ps(d.clamp.hi));
    for h in 0..halves {
        let o = o0 + h * LANES;
        // SAFETY: the caller's contract: outputs o..o + 16 inside `d`, vector `h` inside
        // `acc`, values 16h..16h + 16 inside `out`.
        unsafe {
            let a = _mm512_loadu_si512(acc.get_unchecked(h).as_ptr().cast());
            let sums = _mm512_loadu_si512(d.colsum.as_ptr().add(o).cast());
            let a = _mm512_sub_epi32(a, _mm512_mullo_epi32(zv, sums));
            let scale = _mm512_mul_ps(sv, _mm512_loadu_ps(d.scale.as_ptr().add(o)));
            let y = _mm512_add_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(a), scale),
                _mm512_loadu_ps(d.bias.as_ptr().add(o)),
            );
            let y = _mm512_min_ps(hi, _mm512_max_ps(lo, y));
            _mm512_storeu_ps(out.as_mut_ptr().add(h * LANES), y);
        }
    }
}

/// Dynamic quantization of `x`'s rows of `k` values into `y`, row `r` at
/// `y[r·dynamic_stride(k)..]`: its codes ([`crate::quant::quantize`] with the row's own
/// [`crate::quant::dynamic_row`] parameters), zeros up to whole depth groups, the scale and
/// the zero point — the layout [`Dequants`] reads.
pub fn quantize_rows(x: &[f32], k: usize, y: &mut [u8]) -> Result<(), String> {
    let stride = dynamic_stride(k);
    let rows = x.len().checked_div(k).unwrap_or(0);
    if rows * k != x.len() || y.len() < rows * stride {
        return Err("int8 dynamic rows: buffers do not match their sizes".into());
    }
    for (r, out) in y.chunks_exact_mut(stride).take(rows).enumerate() {
        let row = &x[r * k..(r + 1) * k];
        let (s, z) = crate::quant::dynamic_row(row_range_fast(row));
        let (codes, params) = out.split_at_mut(padded_k(k));
        quantize_plain(row, s, z, &mut codes[..k]);
        codes[k..].fill(0);
        params[..4].copy_from_slice(&s.to_le_bytes());
        params[4..8].copy_from_slice(&z.to_le_bytes());
    }
    Ok(())
}

/// [`crate::quant::row_range`] on the best code this CPU runs.
fn row_range_fast(x: &[f32]) -> Option<(f32, f32)> {
    #[cfg(target_arch = "x86_64")]
    if Isa::cached() == Isa::Avx512 {
        // SAFETY: `Isa::cached()` is Avx512 only where AVX-512F was detected on this CPU.
        #[allow(unsafe_code)]
        return unsafe { row_range_avx512(x) };
    }
    row_range(x)
}

avx2_dispatch! {
    /// [`crate::quant::row_range`], 16 lanes apart (the minimum and maximum of finite values
    /// do not depend on the order; a NaN or ±∞ anywhere gives `None`).
    fn row_range(x: &[f32]) -> Option<(f32, f32)> => row_range_generic
}

#[inline(always)]
fn row_range_generic(x: &[f32]) -> Option<(f32, f32)> {
    let (mut lo, mut hi, mut bad) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            let v = c[i];
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            // v · 0 is 0 for a finite v and NaN otherwise, and a NaN stays in the sum.
            bad[i] += v * 0.0;
        }
    }
    let tail = crate::quant::row_range(chunks.remainder())?;
    if bad.iter().any(|&b| b != 0.0) {
        return None;
    }
    let lo = lo.iter().fold(tail.0, |a, &b| a.min(b));
    let hi = hi.iter().fold(tail.1, |a, &b| a.max(b));
    Some((lo, hi))
}

/// Requantizes the `rows` rows of a tile (row `t`'s outputs from `acc[per_row·t]`, `cols`
/// of them, outputs from `o0`; `q` holds them) into `out[t·stride..]`: whole vectors at once
/// on the VNNI path ([`store_tile`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store_rows(
    path: Path,
    acc: &[[i32; LANES]],
    rows: usize,
    per_row: usize,
    cols: usize,
    q: &Requants,
    o0: usize,
    out: &mut [u8],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Vnni
        && cols.is_multiple_of(LANES)
        && rows > 0
        && (rows - 1) * stride + cols <= out.len()
        && per_row * (rows - 1) + cols / LANES <= acc.len()
        && q.len() >= o0 + cols
    {
        // SAFETY: this private function is given the Vnni path only where it runs
        // (`gemm` checked `runs_here`, AVX-512F; `Requants::store_rows` falls back to
        // Scalar otherwise); the outputs, the codes' places and the accumulators are inside
        // `q`, `out` and `acc` (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            store_tile(acc, rows, per_row, cols / LANES, q, o0, out, stride)
        };
        return;
    }
    for t in 0..rows {
        let at = t * stride;
        store(
            path,
            &acc[per_row * t..],
            cols,
            q,
            o0,
            &mut out[at..at + cols],
        );
    }
}

/// Requantizes a tile row (`acc` from the row's first panel; `cols` columns, outputs from
/// `o0`) into `out`.
#[inline(always)]
fn store(path: Path, acc: &[[i32; LANES]], cols: usize, q: &Requants, o0: usize, out: &mut [u8]) {
    let halves = cols.div_ceil(LANES);
    for h in 0..halves {
        let a = &acc[h];
        let c = (cols - h * LANES).min(LANES);
        let dst = &mut out[h * LANES..h * LANES + c];
        let o = o0 + h * LANES;
        #[cfg(target_arch = "x86_64")]
        if path == Path::Vnni && c == LANES {
            // SAFETY: the Vnni path reaches this private function only where it runs (as in
            // `store_rows`, its one caller: AVX-512F); `q` holds outputs o..o + 16 (`gemm`
            // checked `q.len() ≥ col0 + n`), `a` and `dst` are 16 long.
            #[allow(unsafe_code)]
            unsafe {
                requant_store(
                    a,
                    &q.bias[o..o + LANES],
                    &q.mult[o..o + LANES],
                    &q.shift[o..o + LANES],
                    q,
                    dst,
                )
            };
            continue;
        }
        for (j, (d, &x)) in dst.iter_mut().zip(a.iter()).enumerate() {
            *d = q.code(o + j, x);
        }
    }
}

/// Requantizes a whole tile on the VNNI path (AVX-512F): row `t`'s outputs `o0 + 16h..` are
/// `acc[per_row·t + h]` (`h < halves`), written at `out[t·stride + 16h..]`.
///
/// # Safety
/// The CPU has AVX-512F; `q` holds outputs `o0..o0 + 16·halves`; `out` holds
/// `(rows − 1)·stride + 16·halves` bytes; `per_row·(rows − 1) + halves ≤ acc.len()`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile(
    acc: &[[i32; LANES]],
    rows: usize,
    per_row: usize,
    halves: usize,
    q: &Requants,
    o0: usize,
    out: &mut [u8],
    stride: usize,
) {
    use std::arch::x86_64::*;
    for h in 0..halves {
        let o = o0 + h * LANES;
        // SAFETY: outputs o..o + 16 lie in `q` and each row's 16 codes in `out` (the
        // caller's contract); `acc` is indexed inside its 8 rows (also the contract).
        unsafe {
            let bias = _mm512_loadu_si512(q.bias.as_ptr().add(o).cast());
            let mult = _mm512_loadu_si512(q.mult.as_ptr().add(o).cast());
            let shift = _mm512_loadu_si512(q.shift.as_ptr().add(o).cast());
            for t in 0..rows {
                let a = acc.get_unchecked(per_row * t + h);
                let codes = requant16(
                    _mm512_loadu_si512(a.as_ptr().cast()),
                    bias,
                    mult,
                    shift,
                    q.zp,
                    q.lo,
                    q.hi,
                );
                _mm_storeu_si128(out.as_mut_ptr().add(t * stride + h * LANES).cast(), codes);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn requant_store(
    a: &[i32; LANES],
    bias: &[i32],
    mult: &[i32],
    shift: &[u32],
    q: &Requants,
    dst: &mut [u8],
) {
    use std::arch::x86_64::*;
    // SAFETY: each slice is 16 × 4 bytes (the caller's contract); `dst` is 16 bytes.
    unsafe {
        let codes = requant16(
            _mm512_loadu_si512(a.as_ptr().cast()),
            _mm512_loadu_si512(bias.as_ptr().cast()),
            _mm512_loadu_si512(mult.as_ptr().cast()),
            _mm512_loadu_si512(shift.as_ptr().cast()),
            q.zp,
            q.lo,
            q.hi,
        );
        _mm_storeu_si128(dst.as_mut_ptr().cast(), codes);
    }
}

/// [`Requant::apply`] of 16 accumulators at once (AVX-512F): `acc + bias` wrapping, times the
/// multiplier in i64 (even and odd lanes apart), rounded half up and shifted, plus the zero
/// point, clamped — the same integer arithmetic, so the same codes.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
fn requant16(
    acc: std::arch::x86_64::__m512i,
    bias: std::arch::x86_64::__m512i,
    mult: std::arch::x86_64::__m512i,
    shift: std::arch::x86_64::__m512i,
    zp: i32,
    lo: i32,
    hi: i32,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let a = _mm512_add_epi32(acc, bias);
    let low = _mm512_set1_epi64(0xffff_ffff);
    let one = _mm512_set1_epi64(1);
    let (zp, lo, hi) = (
        _mm512_set1_epi64(i64::from(zp)),
        _mm512_set1_epi64(i64::from(lo)),
        _mm512_set1_epi64(i64::from(hi)),
    );
    let scale = |x: __m512i, m: __m512i, s: __m512i| -> __m512i {
        let p = _mm512_mul_epi32(x, m);
        let r = _mm512_sllv_epi64(one, _mm512_sub_epi64(s, one));
        let y = _mm512_srav_epi64(_mm512_add_epi64(p, r), s);
        _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(y, zp), lo), hi)
    };
    let even = scale(a, mult, _mm512_and_si512(shift, low));
    let odd = scale(
        _mm512_srli_epi64(a, 32),
        _mm512_srli_epi64(mult, 32),
        _mm512_srli_epi64(shift, 32),
    );
    let y = _mm512_or_si512(_mm512_and_si512(even, low), _mm512_slli_epi64(odd, 32));
    _mm512_cvtepi32_epi8(y)
}

/// The portable tile: 4 rows × one panel into `acc[2t]`.
fn tile_scalar<'t>(
    tap: &impl Fn(usize, usize) -> &'t [u8],
    nt: usize,
    tg: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 8],
) {
    for t in 0..4 {
        let a = &mut acc[2 * t];
        for tp in 0..nt {
            let row = tap(t, tp);
            for gg in 0..tg {
                let g = tp * tg + gg;
                for (lane, s) in a.iter_mut().enumerate() {
                    let at = (g * LANES + lane) * GROUP;
                    for b in 0..GROUP {
                        let x = i32::from(row[gg * GROUP + b]);
                        *s = s.wrapping_add(x * i32::from(vp[at + b] as i8));
                    }
                }
            }
        }
    }
}

/// [`tile_vnni`] in the shape the tile asks for: 8 rows × 1 panel (`tall`), 4 × 2 (`two`),
/// or 4 × 1.
///
/// # Safety
/// As [`tile_vnni`].
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[inline(always)]
unsafe fn vnni_tile(
    at: impl Fn(usize, usize) -> *const u8,
    tall: bool,
    two: bool,
    nt: usize,
    tg: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 8],
) {
    // SAFETY: the caller's contract is the tile's.
    unsafe {
        if tall {
            tile_vnni::<8, 1, 8>(at, nt, tg, vp, acc)
        } else if two {
            tile_vnni::<4, 2, 8>(at, nt, tg, vp, acc)
        } else {
            tile_vnni::<4, 1, 8>(at, nt, tg, vp, acc)
        }
    }
}

/// The VNNI tile: `R` rows × `P` panels into `S` slots (`acc[t·S/R + h]`: with 8 slots, 4
/// rows keep two a row and 8 rows one; 16 slots hold 8 rows × 2 panels), row `t`'s tap `tp`
/// at `at(t, tp)`.
///
/// # Safety
/// The CPU has AVX-512F and VNNI; for every row and tap, the `tg·4` bytes from `at(t, tp)`
/// are readable; `vp` holds `P` panels of `nt·tg` groups of 64 bytes; `P ≤ S/R`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile_vnni<const R: usize, const P: usize, const S: usize>(
    at: impl Fn(usize, usize) -> *const u8,
    nt: usize,
    tg: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; S],
) {
    use std::arch::x86_64::*;
    let mut a = [_mm512_setzero_si512(); S];
    let v = vp.as_ptr();
    let panel = nt * tg * 64;
    for tp in 0..nt {
        let ptrs: [*const u8; R] = std::array::from_fn(|t| at(t, tp));
        for gg in 0..tg {
            let g = tp * tg + gg;
            // SAFETY: group g of each panel lies inside `vp`, and the 4 bytes at
            // ptrs[t] + 4·gg inside the tap (the caller's contract).
            unsafe {
                let mut vs = [_mm512_setzero_si512(); P];
                for (h, x) in vs.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(v.add(h * panel + g * 64).cast());
                }
                for t in 0..R {
                    let b = _mm512_set1_epi32(ptrs[t].add(gg * 4).cast::<i32>().read_unaligned());
                    for (h, x) in vs.iter().enumerate() {
                        a[t * (S / R) + h] = _mm512_dpbusd_epi32(a[t * (S / R) + h], b, *x);
                    }
                }
            }
        }
    }
    for t in 0..R {
        for h in 0..P {
            let i = t * (S / R) + h;
            // SAFETY: `acc[i]` is 16 i32s, one 64-byte store.
            unsafe { _mm512_storeu_si512(acc[i].as_mut_ptr().cast(), a[i]) };
        }
    }
}

/// The AVX2 tile: 4 rows × one panel (`acc[2t]`). Per row, 4 accumulators of 8 i32: each
/// 16-byte quarter of the panel (4 lanes × 4 bytes) widened to 16 i16, times the row's group
/// widened and repeated, by `vpmaddwd` (i16 products summed in pairs into i32: no
/// saturation) — pairs summed at the end.
///
/// # Safety
/// The CPU has AVX2; the sizes as for [`tile_vnni`] with one panel.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<'t>(
    tap: &impl Fn(usize, usize) -> &'t [u8],
    nt: usize,
    tg: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 8],
) {
    use std::arch::x86_64::*;
    let mut a = [[_mm256_setzero_si256(); 4]; 4];
    for tp in 0..nt {
        let rows = [tap(0, tp), tap(1, tp), tap(2, tp), tap(3, tp)];
        for gg in 0..tg {
            let g = tp * tg + gg;
            let mut wide = [_mm256_setzero_si256(); 4];
            for (qq, w) in wide.iter_mut().enumerate() {
                // SAFETY: bytes g·64 + 16·qq .. +16 lie inside `vp` (the caller's contract).
                let raw = unsafe { _mm_loadu_si128(vp.as_ptr().add(g * 64 + qq * 16).cast()) };
                *w = _mm256_cvtepi8_epi16(raw);
            }
            for (t, at) in a.iter_mut().enumerate() {
                let rb = &rows[t][gg * 4..gg * 4 + 4];
                let pair = |i: usize| i32::from(rb[i]) | (i32::from(rb[i + 1]) << 16);
                let b = _mm256_setr_epi32(
                    pair(0),
                    pair(2),
                    pair(0),
                    pair(2),
                    pair(0),
                    pair(2),
                    pair(0),
                    pair(2),
                );
                for (qq, w) in wide.iter().enumerate() {
                    at[qq] = _mm256_add_epi32(at[qq], _mm256_madd_epi16(*w, b));
                }
            }
        }
    }
    for (t, at) in a.iter().enumerate() {
        for (qq, v) in at.iter().enumerate() {
            let mut s = [0i32; 8];
            // SAFETY: `s` is 8 i32s, one 32-byte store.
            unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), *v) };
            for l in 0..4 {
                acc[2 * t][qq * 4 + l] = s[2 * l].wrapping_add(s[2 * l + 1]);
            }
        }
    }
}

/// How an integer convolution's weights are laid out, by its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvForm {
    /// Depthwise (one input and one output channel a group): `[kh·kw][c]` i8, tap-major.
    Depthwise,
    /// Groups of `cg` input channels (`cg` rounded up to 4 with zero weights for one group,
    /// so every tap is whole depth groups): panels per group, depth (ky, kx, channel).
    Panels {
        /// Channels a tap reads (per group, padded).
        cg: usize,
    },
    /// One group of fewer than 4 channels (a first layer reading a grey or RGB image): each
    /// output pixel's `kh·kw·c` taps gathered into one row (padded to a multiple of 4) and
    /// multiplied as a matrix, instead of padding every tap's channels to 4 — panels of depth
    /// (ky, kx, channel).
    Patches,
}

impl ConvForm {
    /// The form of a convolution of `m` outputs in `groups` groups over `g`.
    pub fn of(g: &Geometry, m: usize, groups: usize) -> ConvForm {
        let groups = groups.max(1);
        if groups > 1 && groups == g.c && groups == m {
            ConvForm::Depthwise
        } else if groups == 1 && g.c < GROUP {
            ConvForm::Patches
        } else if groups == 1 {
            ConvForm::Panels { cg: padded_k(g.c) }
        } else {
            ConvForm::Panels { cg: g.c / groups }
        }
    }

    /// Bytes of the packed weights.
    pub fn weights_len(self, g: &Geometry, m: usize, groups: usize) -> usize {
        match self {
            ConvForm::Depthwise => g.kh.saturating_mul(g.kw).saturating_mul(m),
            ConvForm::Patches => panels_len(m, g.kh.saturating_mul(g.kw).saturating_mul(g.c)),
            ConvForm::Panels { cg } => {
                let groups = groups.max(1);
                groups.saturating_mul(panels_len(
                    m / groups,
                    g.kh.saturating_mul(g.kw).saturating_mul(cg),
                ))
            }
        }
    }
}

/// Packs a convolution's i8 weights, ONNX order `[m][c / groups][kh][kw]`, as
/// [`ConvForm::of`] says the kernel reads them.
pub fn pack_conv(g: &Geometry, m: usize, groups: usize, w: &[i8]) -> Result<Vec<u8>, String> {
    let groups = groups.max(1);
    let (kh, kw) = (g.kh, g.kw);
    let cg = g.c / groups;
    if !g.c.is_multiple_of(groups) || !m.is_multiple_of(groups) || w.len() != m * cg * kh * kw {
        return Err("int8 conv: weights do not match the geometry and groups".into());
    }
    let widx = |o: usize, ci: usize, tap: usize| ((o * cg + ci) * kh + tap / kw) * kw + tap % kw;
    let mg = m / groups;
    Ok(match ConvForm::of(g, m, groups) {
        ConvForm::Depthwise => (0..kh * kw)
            .flat_map(|tap| (0..m).map(move |o| (o, tap)))
            .map(|(o, tap)| w[widx(o, 0, tap)] as u8)
            .collect(),
        ConvForm::Patches => pack_panels(m, kh * kw * cg, 0, |j, kk| {
            w[widx(j, kk % cg, kk / cg)] as u8
        }),
        ConvForm::Panels { cg: cp } => {
            let mut panels = vec![];
            for gi in 0..groups {
                panels.extend(pack_panels(mg, kh * kw * cp, 0, |j, kk| {
                    let (tap, ci) = (kk / cp, kk % cp);
                    if ci < cg {
                        w[widx(gi * mg + j, ci, tap)] as u8
                    } else {
                        0
                    }
                }));
            }
            panels
        }
    })
}

/// The working memory of [`conv`] over `g` (`m` outputs, `groups` groups), carved from one
/// scratch buffer: `words` i32 accumulators first, then byte buffers, each sized for the
/// largest path that may use it (sizes saturate: a hostile geometry asks for too much
/// rather than wrapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConvScratch {
    /// i32 words: a depthwise output row's sums (`ow·c`).
    words: usize,
    /// The padded image ([`ConvForm::Patches`]: with `GROUP` bytes of slack).
    image: usize,
    /// [`ConvForm::Panels`]: `cg` bytes of the zero point; depthwise: each tap's weights
    /// along the row (stride 1) and the VNNI path's interleaved weights.
    weights: usize,
    /// [`ConvForm::Panels`]: gathered rows ([`gather_len`]); [`ConvForm::Patches`]: every
    /// output pixel's row of taps (with `GROUP` bytes of slack).
    rows: usize,
}

impl ConvScratch {
    fn of(g: &Geometry, m: usize, groups: usize) -> ConvScratch {
        let groups = groups.max(1);
        let form = ConvForm::of(g, m, groups);
        let (hp, wp) = padded_dims(g);
        let mul = |a: usize, b: usize| a.saturating_mul(b);
        let taps = mul(g.kh, g.kw);
        match form {
            ConvForm::Patches => ConvScratch {
                words: 0,
                image: mul(mul(hp, wp), g.c).saturating_add(GROUP),
                weights: 0,
                rows: mul(mul(g.oh, g.ow), padded_k(mul(taps, g.c))).saturating_add(GROUP),
            },
            ConvForm::Depthwise => {
                let n = mul(g.ow, g.c);
                ConvScratch {
                    words: n,
                    image: padded_image(g, hp, wp, g.c),
                    weights: mul(taps, n).saturating_add(mul(mul(g.kh, g.c), GROUP)),
                    rows: 0,
                }
            }
            ConvForm::Panels { cg } => {
                let cp = if groups == 1 { cg } else { g.c };
                ConvScratch {
                    words: 0,
                    image: padded_image(g, hp, wp, cp),
                    weights: cg,
                    rows: if cg.is_multiple_of(GROUP) {
                        0
                    } else {
                        mul(4, padded_k(mul(taps, cg)))
                    },
                }
            }
        }
    }

    /// Floats of scratch, in all.
    fn floats(self) -> usize {
        self.image
            .saturating_add(self.weights)
            .saturating_add(self.rows)
            .div_ceil(4)
            .saturating_add(self.words)
    }
}

/// Rows and columns of a padded image every tap of `g` reads inside.
fn padded_dims(g: &Geometry) -> (usize, usize) {
    let hp = (g.h + g.pt).max((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1);
    let wp = (g.w + g.pl).max((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
    (hp, wp)
}

/// Bytes of the padded copy [`conv`] makes of the image (`cp` channels), none if it reads the
/// image in place.
fn padded_image(g: &Geometry, hp: usize, wp: usize, cp: usize) -> usize {
    if hp == g.h && wp == g.w && cp == g.c {
        0
    } else {
        hp.saturating_mul(wp).saturating_mul(cp)
    }
}

/// Floats of scratch [`conv`] needs for `m` outputs in `groups` groups over `g`.
pub fn conv_scratch_len(g: &Geometry, m: usize, groups: usize) -> usize {
    ConvScratch::of(g, m, groups).floats()
}

/// Words holding i32 values, viewed in place to write them.
fn ints_mut(words: &mut [f32]) -> &mut [i32] {
    // SAFETY: f32 and i32 have one size and alignment and every bit pattern is a value of
    // each; the exclusive borrow of `words` moves to the result.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<i32>(), words.len())
    }
}

/// One sample of an integer convolution, NHWC: `x` u8 `[h][w][c]`, the weights packed as
/// [`ConvForm::of`] says, into `y` u8 `[oh][ow][m]`. Padding taps read `zx`. `scratch` is
/// the working memory, at least [`conv_scratch_len`] floats (whatever they hold): nothing
/// is allocated here.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    path: Path,
    x: &[u8],
    g: &Geometry,
    m: usize,
    groups: usize,
    w: &[u8],
    zx: u8,
    q: &Requants,
    y: &mut [u8],
    scratch: &mut [f32],
) -> Result<(), String> {
    let groups = groups.max(1);
    if !g.c.is_multiple_of(groups) || !m.is_multiple_of(groups) {
        return Err("int8 conv: channels do not divide into the groups".into());
    }
    let form = ConvForm::of(g, m, groups);
    if w.len() < form.weights_len(g, m, groups) || y.len() < m * g.oh * g.ow {
        return Err("int8 conv: weights or output too small".into());
    }
    if x.len() < g.h * g.w * g.c || q.len() < m {
        return Err("int8 conv: input or requantizations too small".into());
    }
    let sizes = ConvScratch::of(g, m, groups);
    if scratch.len() < sizes.floats() {
        return Err("int8 conv: the scratch buffer is too small".into());
    }
    // The scratch carved up: i32 words, then the byte buffers (sizes checked just above).
    let (words, rest) = scratch.split_at_mut(sizes.words);
    let acc = ints_mut(words);
    let (image, rest) = bytes_mut(rest).split_at_mut(sizes.image);
    let (wbuf, rest) = rest.split_at_mut(sizes.weights);
    let rbuf = &mut rest[..sizes.rows];
    if form == ConvForm::Patches {
        return patches(path, x, g, m, w, zx, q, y, image, rbuf);
    }
    // Padding materialized once: a copy of the image inside a border of `zx` (and, for one
    // group, with its channels padded to a multiple of 4 by `zx` too, which meet zero
    // weights), so that every output pixel's taps lie inside it, at a base plus fixed offsets.
    let cp = match form {
        ConvForm::Panels { cg } if groups == 1 => cg,
        _ => g.c,
    };
    let (hp, wp) = padded_dims(g);
    let (x, g) = if hp == g.h && wp == g.w && cp == g.c {
        (x, *g)
    } else {
        let p = &mut image[..hp * wp * cp];
        p.fill(zx);
        for iy in 0..g.h {
            let dst = ((iy + g.pt) * wp + g.pl) * cp;
            let src = iy * g.w * g.c;
            if cp == g.c {
                // A row of pixels is one run on both sides.
                p[dst..dst + g.w * cp].copy_from_slice(&x[src..src + g.w * g.c]);
                continue;
            }
            for (d, s) in p[dst..dst + g.w * cp]
                .chunks_exact_mut(cp)
                .zip(x[src..src + g.w * g.c].chunks_exact(g.c))
            {
                d[..g.c].copy_from_slice(s);
            }
        }
        let g = Geometry {
            c: cp,
            h: hp,
            w: wp,
            pt: 0,
            pl: 0,
            ..*g
        };
        (&*p, g)
    };
    let g = &g;
    match form {
        ConvForm::Patches => Ok(()),
        ConvForm::Depthwise => {
            if !path.runs_here() {
                return Err(format!("int8 conv: this CPU cannot run the {path:?} path"));
            }
            depthwise(path, x, g, w, q, y, acc, wbuf);
            Ok(())
        }
        ConvForm::Panels { cg } => {
            let mg = m / groups;
            let k = g.kh * g.kw * cg;
            let per = panels_len(mg, k);
            let zeros = &mut wbuf[..cg];
            zeros.fill(zx);
            let zeros = &*zeros;
            for gi in 0..groups {
                let rows = Rows::Conv {
                    x,
                    g: *g,
                    c0: gi * cg,
                    cg,
                    zeros,
                };
                gemm_in(
                    path,
                    &rows,
                    0..g.oh * g.ow,
                    k,
                    &w[gi * per..(gi + 1) * per],
                    mg,
                    q,
                    Layout {
                        row_stride: m,
                        col0: gi * mg,
                    },
                    y,
                    rbuf,
                )?;
            }
            Ok(())
        }
    }
}

/// [`ConvForm::Patches`]: every output pixel's taps gathered into a row of `kp` bytes
/// (padding taps `zx`; the tail past `kh·kw·c` meets zero weights, so its bytes do not
/// matter), then one matrix product. Sizes checked by [`conv`]; `img` and `rows` are its
/// scratch ([`ConvScratch`]), whatever they hold.
#[allow(clippy::too_many_arguments)]
fn patches(
    path: Path,
    x: &[u8],
    g: &Geometry,
    m: usize,
    w: &[u8],
    zx: u8,
    q: &Requants,
    y: &mut [u8],
    img: &mut [u8],
    rows: &mut [u8],
) -> Result<(), String> {
    let c = g.c;
    let kp = padded_k(g.kh * g.kw * c);
    // The image inside a border of `zx` wide enough for every tap (4 bytes of slack after
    // it), so each pixel's kernel row is one run of `kw·c` bytes when `dw = 1`.
    let (hp, wp) = padded_dims(g);
    let img = &mut img[..hp * wp * c + GROUP];
    img.fill(zx);
    for iy in 0..g.h {
        let dst = ((iy + g.pt) * wp + g.pl) * c;
        img[dst..dst + g.w * c].copy_from_slice(&x[iy * g.w * c..(iy + 1) * g.w * c]);
    }
    let run = g.kw * c;
    let rows = &mut rows[..g.oh * g.ow * kp + GROUP];
    rows.fill(zx);
    // With `dw = 1` a kernel row is copied in whole 4-byte pieces: `span` bytes.
    let span = run.div_ceil(GROUP) * GROUP;
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let out = (oy * g.ow + ox) * kp;
            for ky in 0..g.kh {
                let src = ((oy * g.sh + ky * g.dh) * wp + ox * g.sw) * c;
                let dst = out + ky * run;
                if g.dw == 1 {
                    // In 4-byte pieces: the last one spills up to 3 bytes into the next
                    // kernel row's place (written next), this pixel's padding columns
                    // (zero weights) or the next pixel's first bytes (written later) or the
                    // slack — never into anything already final. The image's and the
                    // rows' slack of `GROUP` bytes holds every piece.
                    let (from, _) = img[src..src + span].as_chunks::<GROUP>();
                    let (to, _) = rows[dst..dst + span].as_chunks_mut::<GROUP>();
                    if let ([t], [f]) = (&mut *to, from) {
                        // A grey image's 3-tap row: one piece, a move (the loop below
                        // would become a call to `memcpy`).
                        *t = *f;
                    } else {
                        for (t, f) in to.iter_mut().zip(from) {
                            *t = *f;
                        }
                    }
                } else {
                    for kx in 0..g.kw {
                        let at = src + kx * g.dw * c;
                        rows[dst + kx * c..dst + (kx + 1) * c].copy_from_slice(&img[at..at + c]);
                    }
                }
            }
        }
    }
    gemm(
        path,
        &Rows::Matrix {
            bytes: rows,
            stride: kp,
        },
        0..g.oh * g.ow,
        kp,
        w,
        m,
        q,
        Layout {
            row_stride: m,
            col0: 0,
        },
        y,
    )
}

/// A depthwise convolution on a padded channels-last image (`g` without padding), an output
/// row at a time: the i32 sums of the row's `[ow][c]` outputs ([`depthwise_sums`],
/// vectorized where the CPU has AVX2), then requantized ([`requant_row`]). With stride 1 a
/// tap's inputs for the whole row are one contiguous run, so each tap is one long
/// multiply-add against its weights repeated along the row. Sizes checked by [`conv`];
/// `acc` (`ow·c` words) and `wbuf` (`kh·kw·ow·c + kh·c·4` bytes) are its scratch
/// ([`ConvScratch`]), whatever they hold.
#[allow(clippy::too_many_arguments)]
fn depthwise(
    path: Path,
    x: &[u8],
    g: &Geometry,
    w: &[u8],
    q: &Requants,
    y: &mut [u8],
    acc: &mut [i32],
    wbuf: &mut [u8],
) {
    let c = g.c;
    #[cfg(target_arch = "x86_64")]
    if path == Path::Vnni
        && c.is_multiple_of(LANES)
        && (1..=GROUP).contains(&g.kw)
        && q.len() >= c
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi")
    {
        let wv = &mut wbuf[..g.kh * c * GROUP];
        // SAFETY: `runs_here` checked AVX-512F and VNNI, the line above BW and VBMI; `c` is
        // whole vectors of 16 channels, `kw ≤ 4`, `q` holds `c` outputs, `wv` is `kh·c·4`
        // bytes (sliced just above), and `conv` checked the sizes of `x` (padded: every tap
        // inside), `w` (`kh·kw·c`) and `y`.
        #[allow(unsafe_code)]
        unsafe {
            depthwise_vnni(x, g, w, q, y, wv)
        };
        return;
    }
    let n = g.ow * c;
    let acc = &mut acc[..n];
    // Stride 1: each tap's `c` weights repeated `ow` times (every byte written here).
    let along: &mut [u8] = if g.sw == 1 {
        &mut wbuf[..g.kh * g.kw * n]
    } else {
        &mut []
    };
    if g.sw == 1 {
        for (t, row) in along.chunks_exact_mut(n.max(1)).enumerate() {
            for px in row.chunks_exact_mut(c.max(1)) {
                px.copy_from_slice(&w[t * c..(t + 1) * c]);
            }
        }
    }
    for oy in 0..g.oh {
        depthwise_sums(x, g, w, along, oy, acc);
        requant_row(path, acc, c, q, &mut y[oy * n..(oy + 1) * n]);
    }
}

/// A depthwise convolution on the VNNI path, 16 channels of one output pixel a vector: for
/// each kernel row, the (up to 4) taps of that row for those channels are loaded as four
/// 16-byte lanes, `vpermb` interleaves them into one dword per channel (tap `kx` in byte
/// `kx`), and one `vpdpbusd` adds the row's products against the weights interleaved the
/// same way (zero past `kw`, so the fourth byte, whatever it holds, adds nothing); then
/// [`requant16`]. The same i32 sums as [`depthwise_sums`], so the same codes.
///
/// # Safety
/// The CPU has AVX-512F, BW, VNNI and VBMI; `g.c` is a multiple of 16, `1 ≤ g.kw ≤ 4`;
/// `x` is the padded image (every tap inside, `g.h·g.w·g.c` bytes), `w` holds `kh·kw·c`
/// tap-major weights, `q` holds `c` outputs, `y` holds `oh·ow·c` codes, `wv` is scratch of
/// at least `kh·c·4` bytes (whatever they hold).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
unsafe fn depthwise_vnni(
    x: &[u8],
    g: &Geometry,
    w: &[u8],
    q: &Requants,
    y: &mut [u8],
    wv: &mut [u8],
) {
    use std::arch::x86_64::*;
    let c = g.c;
    // Weights per kernel row and channel: 4 bytes, tap kx in byte kx (zero past `kw`).
    let wv = &mut wv[..g.kh * c * GROUP];
    wv.fill(0);
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            for ch in 0..c {
                wv[(ky * c + ch) * GROUP + kx] = w[(ky * g.kw + kx) * c + ch];
            }
        }
    }
    // Byte 4j + kx of the product's input comes from lane kx (tap kx), byte j (channel j).
    let idx: [u8; 64] = std::array::from_fn(|b| ((b % GROUP) * LANES + b / GROUP) as u8);
    // SAFETY: every load below reads 16 bytes of a tap inside the padded image, 64 bytes of
    // `wv` or 16 words of `q` at a channel block below `c`; every store writes 16 codes of
    // one output pixel's channel block (the caller's contract gives the sizes).
    unsafe {
        let idx = _mm512_loadu_si512(idx.as_ptr().cast());
        let xp = x.as_ptr();
        for cb in (0..c).step_by(LANES) {
            let bias = _mm512_loadu_si512(q.bias.as_ptr().add(cb).cast());
            let mult = _mm512_loadu_si512(q.mult.as_ptr().add(cb).cast());
            let shift = _mm512_loadu_si512(q.shift.as_ptr().add(cb).cast());
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = _mm512_setzero_si512();
                    for ky in 0..g.kh {
                        let row = xp.add(((oy * g.sh + ky * g.dh) * g.w + ox * g.sw) * c + cb);
                        let tap = |kx: usize| _mm_loadu_si128(row.add(kx * g.dw * c).cast());
                        let mut v = _mm512_zextsi128_si512(tap(0));
                        if g.kw > 1 {
                            v = _mm512_inserti32x4::<1>(v, tap(1));
                        }
                        if g.kw > 2 {
                            v = _mm512_inserti32x4::<2>(v, tap(2));
                        }
                        if g.kw > 3 {
                            v = _mm512_inserti32x4::<3>(v, tap(3));
                        }
                        let v = _mm512_permutexvar_epi8(idx, v);
                        let wk = _mm512_loadu_si512(wv.as_ptr().add((ky * c + cb) * GROUP).cast());
                        acc = _mm512_dpbusd_epi32(acc, v, wk);
                    }
                    let codes = requant16(acc, bias, mult, shift, q.zp, q.lo, q.hi);
                    _mm_storeu_si128(y.as_mut_ptr().add((oy * g.ow + ox) * c + cb).cast(), codes);
                }
            }
        }
    }
}

avx2_dispatch! {
    /// The i32 sums of output row `oy` of a depthwise convolution, `[ow][c]`, into `acc`
    /// (`along`: for stride 1, each tap's weights repeated along the row; else empty).
    fn depthwise_sums(x: &[u8], g: &Geometry, w: &[u8], along: &[u8], oy: usize, acc: &mut [i32]) => depthwise_sums_generic
}

#[inline(always)]
fn depthwise_sums_generic(
    x: &[u8],
    g: &Geometry,
    w: &[u8],
    along: &[u8],
    oy: usize,
    acc: &mut [i32],
) {
    let c = g.c;
    acc.fill(0);
    // A u8 code times an i8 weight fits in i16 (255 · −128 = −32640), so the products are
    // formed 16 to a register and widened only to be added.
    let mac = |a: &mut [i32], src: &[u8], wt: &[u8]| {
        for ((s, &xv), &wv) in a.iter_mut().zip(src).zip(wt) {
            *s = s.wrapping_add(i32::from(i16::from(xv) * i16::from(wv as i8)));
        }
    };
    if !along.is_empty() {
        let n = g.ow * c;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let at = ((oy * g.sh + ky * g.dh) * g.w + kx * g.dw) * c;
                let t = ky * g.kw + kx;
                mac(acc, &x[at..at + n], &along[t * n..(t + 1) * n]);
            }
        }
        return;
    }
    for ox in 0..g.ow {
        let a = &mut acc[ox * c..(ox + 1) * c];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let at = ((oy * g.sh + ky * g.dh) * g.w + ox * g.sw + kx * g.dw) * c;
                mac(
                    a,
                    &x[at..at + c],
                    &w[(ky * g.kw + kx) * c..(ky * g.kw + kx + 1) * c],
                );
            }
        }
    }
}

/// Requantizes a row of `[pixels][c]` accumulators (output channel = index mod `c`) into
/// codes; 16 channels a vector on the VNNI path when `c` is a multiple of 16.
fn requant_row(path: Path, acc: &[i32], c: usize, q: &Requants, y: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Vnni && c.is_multiple_of(LANES) && q.len() >= c {
        // SAFETY: the Vnni path ran only after `runs_here` (AVX-512F); `q` holds `c`
        // outputs (checked above) and the loop stays inside `acc` and `y`.
        #[allow(unsafe_code)]
        unsafe {
            requant_row_avx512(acc, c, q, y)
        };
        return;
    }
    for (i, (d, &a)) in y.iter_mut().zip(acc).enumerate() {
        *d = q.code(i % c.max(1), a);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn requant_row_avx512(acc: &[i32], c: usize, q: &Requants, y: &mut [u8]) {
    use std::arch::x86_64::*;
    let pixels = acc.len().min(y.len()) / c;
    for p in 0..pixels {
        for o in (0..c).step_by(LANES) {
            let at = p * c + o;
            // SAFETY: `at + 16 ≤ pixels · c` (c a multiple of 16) ≤ the lengths of `acc`
            // and `y`; `o + 16 ≤ c ≤ q.len()` (the caller's contract).
            unsafe {
                let codes = requant16(
                    _mm512_loadu_si512(acc.as_ptr().add(at).cast()),
                    _mm512_loadu_si512(q.bias.as_ptr().add(o).cast()),
                    _mm512_loadu_si512(q.mult.as_ptr().add(o).cast()),
                    _mm512_loadu_si512(q.shift.as_ptr().add(o).cast()),
                    q.zp,
                    q.lo,
                    q.hi,
                );
                _mm_storeu_si128(y.as_mut_ptr().add(at).cast(), codes);
            }
        }
    }
}

/// Bytes of a convolution's packed weights.
pub fn conv_weights_len(g: &Geometry, m: usize, groups: usize) -> usize {
    ConvForm::of(g, m, groups).weights_len(g, m, groups)
}

/// The bytes of a float slice: code buffers live in the f32 arena, four codes a float.
pub fn bytes(x: &[f32]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and every byte of initialised f32 storage is an initialised
    // u8; the 4·len bytes are exactly `x`'s storage, borrowed for as long as `x` is.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x))
    }
}

/// The bytes of a float slice, to write codes into.
pub fn bytes_mut(x: &mut [f32]) -> &mut [u8] {
    // SAFETY: as in `bytes`; the exclusive borrow of `x` moves to the result, and whatever
    // bytes are written leave valid f32s behind (every 32-bit pattern is an f32 value).
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(x))
    }
}

/// A step's requantization words viewed in place: biases, multipliers, shifts.
pub type RequantWords<'a> = (&'a [i32], &'a [i32], &'a [u32]);

/// The requantizations stored as `3m` words at a step's `q` (bias, multiplier, shift per
/// output, as f32 bit patterns), viewed in place; an error for a shift outside `1..=62` or a
/// multiplier outside `[0, 2^31)` (a program is untrusted).
pub fn requants(words: &[f32], m: usize) -> Result<RequantWords<'_>, String> {
    if words.len() < 3 * m {
        return Err("int8: requantization words missing".into());
    }
    // SAFETY: f32, i32 and u32 have one size and alignment, and every bit pattern is a value
    // of each; the view borrows `words` for its own lifetime.
    #[allow(unsafe_code)]
    let ints: &[u32] = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u32>(), 3 * m) };
    let signed = |x: &[u32]| -> &[i32] {
        // SAFETY: as above (u32 → i32, same size and alignment, every pattern valid).
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(x.as_ptr().cast::<i32>(), x.len())
        }
    };
    let (bias, mult, shift) = (
        signed(&ints[..m]),
        signed(&ints[m..2 * m]),
        &ints[2 * m..3 * m],
    );
    if let Some(i) = (0..m).find(|&i| !(1..=62).contains(&shift[i]) || mult[i] < 0) {
        return Err(format!(
            "int8: requantization {}·2^-{} out of range",
            mult[i], shift[i]
        ));
    }
    Ok((bias, mult, shift))
}

/// Words holding i32 bit patterns (a dynamic layer's weight sums), viewed in place.
pub fn ints(words: &[f32]) -> &[i32] {
    // SAFETY: f32 and i32 have one size and alignment and every bit pattern is a value of
    // each; the view borrows `words` for its own lifetime.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(words.as_ptr().cast::<i32>(), words.len())
    }
}

/// The words [`requants`] reads.
pub fn requant_words(bias: &[i32], rq: &[Requant]) -> Vec<f32> {
    let mut out: Vec<f32> = bias.iter().map(|&b| f32::from_bits(b as u32)).collect();
    out.extend(rq.iter().map(|r| f32::from_bits(r.mult as u32)));
    out.extend(rq.iter().map(|r| f32::from_bits(r.shift)));
    out
}

/// `QuantizeLinear` to u8 codes ([`crate::quant::quantize`] element by element) of `x`,
/// `[channels][n / channels]` f32, into `y` channels-last (`[n / channels][channels]`); plain
/// order when `channels` is 0.
pub fn quantize(x: &[f32], scale: f32, zp: i32, y: &mut [u8], channels: usize) {
    if channels == 0 {
        quantize_plain(x, scale, zp, y);
        return;
    }
    let hw = x.len() / channels;
    let mut row = vec![0u8; hw];
    for c in 0..channels {
        quantize_plain(&x[c * hw..(c + 1) * hw], scale, zp, &mut row);
        for (p, &v) in row.iter().enumerate() {
            y[p * channels + c] = v;
        }
    }
}

/// [`quantize`] in plain order: AVX-512 where the CPU has it, else the portable loop
/// (vectorized for AVX2 where the CPU has that: the rounding is one instruction there, a
/// library call in the baseline).
fn quantize_plain(x: &[f32], scale: f32, zp: i32, y: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::cached() == Isa::Avx512 {
        // SAFETY: `Isa::cached()` is Avx512 only where AVX-512F was detected on this CPU.
        #[allow(unsafe_code)]
        unsafe {
            quantize_avx512(x, scale, zp, y)
        };
        return;
    }
    quantize_plain_avx2(x, scale, zp, y);
}

avx2_dispatch! {
    /// The portable [`quantize_plain`], for AVX2 where the CPU has it.
    fn quantize_plain_avx2(x: &[f32], scale: f32, zp: i32, y: &mut [u8]) => quantize_plain_generic
}

/// The tail mask of 16 lanes from `i` in `n` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes_from(i: usize, n: usize) -> u16 {
    if n - i >= 16 {
        0xffff
    } else {
        ((1u32 << (n - i)) - 1) as u16
    }
}

/// [`crate::quant::quantize`] of 16 values at a time (AVX-512F): the same f32 division,
/// rounding to nearest even (`vrndscaleps`), addition of the zero point, and clamp (`max` with
/// the NaN-giving-`lo` operand order, then `min`).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_avx512(x: &[f32], scale: f32, zp: i32, y: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let (s, z) = (_mm512_set1_ps(scale), _mm512_set1_ps(zp as f32));
    let (lo, hi) = (_mm512_set1_ps(0.0), _mm512_set1_ps(255.0));
    let mut i = 0;
    while i < n {
        let m = lanes_from(i, n);
        // SAFETY: the masked lanes `i..min(i + 16, n)` lie inside `x` and `y`; masked-off
        // lanes are neither read nor written.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_div_ps(v, s),
            );
            // `max(r, lo)` returns `lo` for a NaN `r`, as `f32::max` does.
            let r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, z), lo), hi);
            _mm512_mask_cvtepi32_storeu_epi8(
                y.as_mut_ptr().add(i).cast(),
                m,
                _mm512_cvtps_epi32(r),
            );
        }
        i += 16;
    }
}

/// [`crate::quant::row_range`] 16 lanes at a time (AVX-512F): the minimum and maximum of
/// finite values do not depend on the order, and `v · 0` summed per lane is 0 exactly when
/// every value is finite.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn row_range_avx512(x: &[f32]) -> Option<(f32, f32)> {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    let (mut lo, mut hi, mut bad) = (zero, zero, zero);
    let n = x.len();
    let mut i = 0;
    while i < n {
        // SAFETY: the masked lanes lie inside `x`; masked-off lanes read as 0, which moves
        // neither bound (both start at 0) nor the sum.
        let v = unsafe { _mm512_maskz_loadu_ps(lanes_from(i, n), x.as_ptr().add(i)) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
        bad = _mm512_add_ps(bad, _mm512_mul_ps(v, zero));
        i += 16;
    }
    if _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(bad, zero) != 0 {
        return None;
    }
    Some((_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi)))
}

#[inline(always)]
fn quantize_plain_generic(x: &[f32], scale: f32, zp: i32, y: &mut [u8]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = crate::quant::quantize(v, scale, zp, 0, 255) as u8;
    }
}

/// `DequantizeLinear` of u8 codes, channels-last `[n / channels][channels]` (plain when
/// `channels` is 0), into `y` `[channels][n / channels]` f32.
pub fn dequantize(x: &[u8], scale: f32, zp: i32, y: &mut [f32], channels: usize) {
    if channels == 0 {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = crate::quant::dequantize(i32::from(v), scale, zp);
        }
        return;
    }
    let hw = y.len() / channels;
    if x.len() < hw * channels {
        return;
    }
    // A code has 256 values: their dequantizations, once (for a tensor worth it).
    let mut table = [0f32; 256];
    let lookup = x.len() >= 1024;
    if lookup {
        for (v, t) in table.iter_mut().enumerate() {
            *t = crate::quant::dequantize(v as i32, scale, zp);
        }
    }
    let deq = |v: u8| {
        if lookup {
            table[usize::from(v)]
        } else {
            crate::quant::dequantize(i32::from(v), scale, zp)
        }
    };
    // Channel by channel: the writes run along `y`, the reads stride through `x` (a
    // sample's codes stay in cache).
    for (c, out) in y.chunks_exact_mut(hw.max(1)).take(channels).enumerate() {
        for (p, o) in out.iter_mut().enumerate() {
            *o = deq(x[p * channels + c]);
        }
    }
}

/// The parameters of a residual join of codes ([`add`]).
#[derive(Clone, Copy, Debug)]
pub struct Join {
    /// Left scale and zero point.
    pub a: (f32, i32),
    /// Right scale and zero point.
    pub b: (f32, i32),
    /// Output scale and zero point.
    pub y: (f32, i32),
    /// A Relu after the sum.
    pub relu: bool,
}

/// `y = quantize(relu?(dequantize(a) + dequantize(b)))` element by element, each operation
/// in f32 as the graph's DequantizeLinear, Add, Relu and QuantizeLinear compute it: the same
/// operations whatever the vector width, so every path gives the same codes.
pub fn add(a: &[u8], b: &[u8], j: Join, y: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::gemm::Isa::cached() == crate::kernels::gemm::Isa::Avx512 {
        /// [`add_generic`] compiled with AVX-512F: 16 lanes a vector (the division is what
        /// bounds it).
        ///
        /// # Safety
        /// The CPU has AVX-512F.
        #[allow(unsafe_code)]
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(a: &[u8], b: &[u8], j: Join, y: &mut [u8]) {
            add_generic(a, b, j, y)
        }
        // SAFETY: `Isa::cached()` is `Avx512` only where `Isa::detect` found AVX-512F on this
        // CPU, `wide`'s one precondition (`add_generic` itself is safe).
        #[allow(unsafe_code)]
        unsafe {
            wide(a, b, j, y)
        };
        return;
    }
    add_narrow(a, b, j, y)
}

avx2_dispatch! {
    /// [`add`] without AVX-512.
    fn add_narrow(a: &[u8], b: &[u8], j: Join, y: &mut [u8]) => add_generic
}

#[inline(always)]
fn add_generic(a: &[u8], b: &[u8], j: Join, y: &mut [u8]) {
    // `dequantize` and `quantize` of `crate::quant`, written so they vectorize: a code minus
    // its zero point is exact in f32 either way, and a clamp to [0, 255] after the rounding
    // gives the same code for a sum of −0 as for 0 (the Relu's only other difference).
    let (za, zb, zy) = (j.a.1 as f32, j.b.1 as f32, j.y.1 as f32);
    let floor = if j.relu { 0.0 } else { f32::NEG_INFINITY };
    for ((o, &x), &z) in y.iter_mut().zip(a).zip(b) {
        let s = (f32::from(x) - za) * j.a.0 + (f32::from(z) - zb) * j.b.0;
        // As the evaluator's Relu: a NaN sum stays NaN (and quantizes to the lowest code).
        let s = if s < floor { floor } else { s };
        let r = (s / j.y.0).round_ties_even() + zy;
        *o = byte(r);
    }
}

/// `relu?(dequantize(a) + dequantize(b))` element by element in f32, as the graph's
/// DequantizeLinear, Add and Relu compute it (`j.y` unused), into `y` — NCHW when the codes
/// are a channels-last image of `channels` channels, else in order.
pub fn add_float(a: &[u8], b: &[u8], j: Join, y: &mut [f32], channels: usize) {
    if channels == 0 {
        add_float_plain(a, b, j, y);
        return;
    }
    let hw = y.len() / channels;
    if a.len() < hw * channels || b.len() < hw * channels {
        return;
    }
    // In the codes' order (vectorized), then transposed.
    let mut sums = vec![0f32; hw * channels];
    add_float_plain(a, b, j, &mut sums);
    for (c, out) in y.chunks_exact_mut(hw.max(1)).take(channels).enumerate() {
        for (p, o) in out.iter_mut().enumerate() {
            *o = sums[p * channels + c];
        }
    }
}

avx2_dispatch! {
    /// [`add_float`] in order.
    fn add_float_plain(a: &[u8], b: &[u8], j: Join, y: &mut [f32]) => add_float_generic
}

#[inline(always)]
fn add_float_generic(a: &[u8], b: &[u8], j: Join, y: &mut [f32]) {
    let (za, zb) = (j.a.1 as f32, j.b.1 as f32);
    // The graph's Relu exactly, as the evaluator has it (a NaN sum, from scales so large
    // that the terms overflow to ±inf, stays NaN).
    let floor = if j.relu { 0.0 } else { f32::NEG_INFINITY };
    for ((o, &x), &z) in y.iter_mut().zip(a).zip(b) {
        let s = (f32::from(x) - za) * j.a.0 + (f32::from(z) - zb) * j.b.0;
        *o = if s < floor { floor } else { s };
    }
}

/// `r` (integer-valued or NaN) saturated to a u8 code, NaN to 0, as `r as u8` does — written
/// so it vectorizes: adding 2²³ to an integer in [0, 255] leaves it in the low mantissa bits.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps a NaN; this must give 0 for it
fn byte(r: f32) -> u8 {
    // `f32::max` returns the other operand for NaN.
    let r = r.max(0.0).min(255.0);
    (r + 8_388_608.0).to_bits() as u8
}

/// Channels-last codes `[hw][c]` to channels-first `[c][hw]` (before a reshape, which reads
/// the NCHW order).
pub fn to_planar(x: &[u8], c: usize, hw: usize, y: &mut [u8]) -> Result<(), String> {
    if x.len() < c * hw || y.len() < c * hw {
        return Err("int8 reorder: buffers too small".into());
    }
    for p in 0..hw {
        for ch in 0..c {
            y[ch * hw + p] = x[p * c + ch];
        }
    }
    Ok(())
}

/// Max pooling of u8 codes, channels-last (`[h][w][c]` → `[oh][ow][c]`); padding taps are
/// ignored.
pub fn max_pool(x: &[u8], g: &Geometry, y: &mut [u8]) -> Result<(), String> {
    let c = g.c;
    if x.len() < c * g.h * g.w || y.len() < c * g.oh * g.ow {
        return Err("int8 max pool: buffers too small".into());
    }
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let out = &mut y[(oy * g.ow + ox) * c..(oy * g.ow + ox + 1) * c];
            out.fill(0);
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                for kx in 0..g.kw {
                    if let Some(ix) = g.in_col(ox, kx) {
                        let src = &x[(iy * g.w + ix) * c..(iy * g.w + ix + 1) * c];
                        for (o, &v) in out.iter_mut().zip(src) {
                            *o = (*o).max(v);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 24) as u8
        }
    }

    fn paths() -> Vec<Path> {
        [Path::Scalar, Path::Avx2, Path::Vnni]
            .into_iter()
            .filter(|p| p.runs_here())
            .collect()
    }

    fn requants(rng: &mut Rng, outs: usize) -> (Vec<i32>, Vec<i32>, Vec<u32>) {
        let bias = (0..outs)
            .map(|_| (rng.next() % 20000) as i32 - 10000)
            .collect();
        let rq: Vec<Requant> = (0..outs)
            .map(|_| {
                let e = (rng.next() % 9) as i32 - 7;
                Requant::new((1 + rng.next() % 1000) as f64 * 1e-3 * 10f64.powi(e)).unwrap()
            })
            .collect();
        (
            bias,
            rq.iter().map(|r| r.mult).collect(),
            rq.iter().map(|r| r.shift).collect(),
        )
    }

    #[test]
    fn every_path_gives_the_definitions_bits_on_random_products() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..80 {
            let m = 1 + (rng.next() % 23) as usize;
            let n = 1 + (rng.next() % 70) as usize;
            let k = 1 + (rng.next() % 70) as usize;
            let r: Vec<u8> = (0..m * k).map(|_| rng.byte()).collect();
            let cols: Vec<i8> = (0..n * k).map(|_| rng.byte() as i8).collect();
            let v = pack_panels(n, k, rng.byte(), |j, kk| cols[j * k + kk] as u8);
            let (bias, mult, shift) = requants(&mut rng, n);
            let lo = (rng.next() % 100) as i32;
            let q = Requants {
                bias: &bias,
                mult: &mult,
                shift: &shift,
                zp: (rng.next() % 256) as i32,
                lo,
                hi: 255 - lo / 2,
            };
            let mut want = vec![0u8; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0i32;
                    for kk in 0..k {
                        s = s.wrapping_add(i32::from(r[i * k + kk]) * i32::from(cols[j * k + kk]));
                    }
                    want[i * n + j] = q.code(j, s);
                }
            }
            for path in paths() {
                let mut got = vec![0u8; m * n];
                let rows = Rows::Matrix {
                    bytes: &r,
                    stride: k,
                };
                gemm(
                    path,
                    &rows,
                    0..m,
                    k,
                    &v,
                    n,
                    &q,
                    Layout {
                        row_stride: n,
                        col0: 0,
                    },
                    &mut got,
                )
                .unwrap();
                assert_eq!(got, want, "{path:?} m={m} n={n} k={k}");
            }
        }
        assert!(paths().contains(&Path::Scalar));
    }

    /// Dynamic rows: [`quantize_rows`] and the f32 epilogue on every path against the
    /// definition ([`crate::quant::row_range`], `dynamic_row`, `quantize`, the exact
    /// accumulator, `dequantize_acc`, the clamp) — rows of zeros, of NaN and of ±∞ included.
    #[test]
    fn dynamic_rows_give_the_definitions_bits_on_every_path() {
        use crate::quant::{self, FloatClamp, QAct};
        let mut rng = Rng(0x51_7cc1_b727_220a);
        let float = |rng: &mut Rng| (rng.next() % 20001) as f32 / 1000.0 - 10.0;
        for case in 0..80 {
            let m = 1 + (rng.next() % 23) as usize;
            let n = 1 + (rng.next() % 70) as usize;
            let k = 1 + (rng.next() % 70) as usize;
            let mut x: Vec<f32> = (0..m * k).map(|_| float(&mut rng)).collect();
            // Some rows special: zeros, one NaN, one infinity, all positive.
            let special = (rng.next() % m as u64) as usize;
            let row = &mut x[special * k..(special + 1) * k];
            match case % 5 {
                0 => row.fill(0.0),
                1 => row[k / 2] = f32::NAN,
                2 => row[0] = f32::NEG_INFINITY,
                3 => row.iter_mut().for_each(|v| *v = v.abs()),
                _ => {}
            }
            let w: Vec<i8> = (0..n * k).map(|_| rng.byte() as i8).collect();
            let panels = pack_panels(n, k, 0, |j, kk| w[kk * n + j] as u8);
            let colsum: Vec<i32> = (0..n)
                .map(|j| (0..k).map(|kk| i32::from(w[kk * n + j])).sum())
                .collect();
            let scale: Vec<f32> = (0..n)
                .map(|_| (1 + rng.next() % 1000) as f32 * 1e-4)
                .collect();
            let bias: Vec<f32> = (0..n).map(|_| float(&mut rng)).collect();
            let act = [
                QAct::None,
                QAct::Relu,
                QAct::Clip {
                    min: -1.0,
                    max: 6.0,
                },
            ][case % 3];
            let clamp = FloatClamp::of(act);
            let mut want = vec![0f32; m * n];
            let mut want_codes = vec![];
            for i in 0..m {
                let row = &x[i * k..(i + 1) * k];
                let (sc, z) = quant::dynamic_row(quant::row_range(row));
                let codes: Vec<i32> = row
                    .iter()
                    .map(|&v| quant::quantize(v, sc, z, 0, 255))
                    .collect();
                for j in 0..n {
                    let acc: i64 = (0..k)
                        .map(|kk| i64::from(codes[kk] - z) * i64::from(w[kk * n + j]))
                        .sum();
                    let y = quant::dequantize_acc(acc as i32, sc * scale[j], bias[j]);
                    want[i * n + j] = clamp.apply(y);
                }
                want_codes.push((codes, sc, z));
            }
            let stride = dynamic_stride(k);
            let mut rows = vec![0xa5u8; m * stride];
            quantize_rows(&x, k, &mut rows).unwrap();
            for (i, (codes, sc, z)) in want_codes.iter().enumerate() {
                let r = &rows[i * stride..(i + 1) * stride];
                let got: Vec<i32> = r[..k].iter().map(|&c| i32::from(c)).collect();
                assert_eq!(&got, codes, "case {case}: row {i}'s codes");
                assert!(
                    r[k..padded_k(k)].iter().all(|&b| b == 0),
                    "case {case}: padding"
                );
                let s = f32::from_le_bytes([
                    r[stride - 8],
                    r[stride - 7],
                    r[stride - 6],
                    r[stride - 5],
                ]);
                assert!(
                    s.to_bits() == sc.to_bits() || (s.is_nan() && sc.is_nan()),
                    "case {case}"
                );
                assert_eq!(
                    i32::from_le_bytes([
                        r[stride - 4],
                        r[stride - 3],
                        r[stride - 2],
                        r[stride - 1]
                    ]),
                    *z
                );
            }
            let d = Dequants {
                rows: &rows,
                k,
                colsum: &colsum,
                scale: &scale,
                bias: &bias,
                clamp,
            };
            for path in paths() {
                let mut got = vec![0f32; m * n];
                let r = Rows::Matrix {
                    bytes: &rows,
                    stride,
                };
                let layout = Layout {
                    row_stride: n,
                    col0: 0,
                };
                gemm(
                    path,
                    &r,
                    0..m,
                    padded_k(k),
                    &panels,
                    n,
                    &d,
                    layout,
                    &mut got,
                )
                .unwrap();
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{path:?} case {case} m={m} n={n} k={k}: output {i} is {a}, not {b}"
                    );
                    assert_eq!(
                        a.is_nan(),
                        i / n == special && (case % 5 == 1 || case % 5 == 2)
                    );
                }
            }
        }
    }

    /// Every code path of the row range and of quantization gives the definition's result,
    /// whichever this CPU's dispatch picks — values at rounding ties, beyond the codes, NaN
    /// and ±∞ included.
    #[test]
    fn row_ranges_and_codes_are_the_definitions_on_every_path() {
        let mut rng = Rng(0x0dd_ba11);
        for len in [0usize, 1, 5, 15, 16, 17, 31, 100, 784] {
            for special in [
                None,
                Some(f32::NAN),
                Some(f32::INFINITY),
                Some(-0.0),
                Some(2.5),
            ] {
                let mut x: Vec<f32> = (0..len)
                    .map(|_| ((rng.next() % 4001) as f32 - 2000.0) / 8.0)
                    .collect();
                if let (Some(v), true) = (special, len > 0) {
                    x[len / 2] = v;
                }
                let want = crate::quant::row_range(&x);
                let mut got = vec![
                    ("avx2 or baseline", row_range(&x)),
                    ("generic", row_range_generic(&x)),
                ];
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was just detected.
                    #[allow(unsafe_code)]
                    got.push(("avx512", unsafe { row_range_avx512(&x) }));
                }
                for (what, g) in got {
                    assert_eq!(g, want, "{what}: len {len}, {special:?}");
                }
                let (sc, z) = (0.25f32, 7);
                let want: Vec<u8> = x
                    .iter()
                    .map(|&v| crate::quant::quantize(v, sc, z, 0, 255) as u8)
                    .collect();
                let mut a = vec![0u8; len];
                quantize_plain_generic(&x, sc, z, &mut a);
                assert_eq!(a, want, "generic quantize, len {len}");
                let mut b = vec![0u8; len];
                quantize_plain_avx2(&x, sc, z, &mut b);
                assert_eq!(b, want, "avx2 quantize, len {len}");
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx512f") {
                    let mut c = vec![0u8; len];
                    // SAFETY: AVX-512F was just detected.
                    #[allow(unsafe_code)]
                    unsafe {
                        quantize_avx512(&x, sc, z, &mut c)
                    };
                    assert_eq!(c, want, "avx512 quantize, len {len}");
                }
            }
        }
    }

    #[test]
    fn convolutions_give_the_definitions_bits_on_random_geometries() {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        for case in 0..240 {
            let mut groups = 1 + (rng.next() % 3) as usize;
            // Every other case: channels per group a multiple of 4 (read in place); every
            // fifth, depthwise.
            let mut cg = if case % 2 == 0 {
                4 * (1 + (rng.next() % 3) as usize)
            } else {
                1 + (rng.next() % 5) as usize
            };
            let mut m = groups * (1 + (rng.next() % 50) as usize);
            if case % 5 == 0 {
                // Half of them a multiple of 16 channels (whole vectors of requantization).
                groups = if case % 10 == 0 {
                    16 * (1 + (rng.next() % 3) as usize)
                } else {
                    1 + (rng.next() % 40) as usize
                };
                cg = 1;
                m = groups;
            }
            let c = groups * cg;
            // Up to 4 taps a kernel row (the VNNI depthwise path interleaves up to 4).
            let (kh, kw) = (1 + (rng.next() % 3) as usize, 1 + (rng.next() % 4) as usize);
            // Stride 1 along the row in half of the cases (depthwise runs those as rows).
            let sh = 1 + (rng.next() % 2) as usize;
            let sw = if case % 4 < 2 {
                1
            } else {
                2 + (rng.next() % 2) as usize
            };
            let (dh, dw) = (1 + (rng.next() % 2) as usize, 1 + (rng.next() % 2) as usize);
            let (pt, pl) = ((rng.next() % 3) as usize, (rng.next() % 3) as usize);
            let (h, w) = (3 + (rng.next() % 9) as usize, 3 + (rng.next() % 9) as usize);
            let span = |k: usize, d: usize| (k - 1) * d + 1;
            if h + 2 * pt < span(kh, dh) || w + 2 * pl < span(kw, dw) {
                continue;
            }
            let oh = (h + 2 * pt - span(kh, dh)) / sh + 1;
            let ow = (w + 2 * pl - span(kw, dw)) / sw + 1;
            let g = Geometry {
                c,
                h,
                w,
                oh,
                ow,
                kh,
                kw,
                sh,
                sw,
                dh,
                dw,
                pt,
                pl,
            };
            // x NHWC; weights W[o][ci][ky][kx] (ONNX order).
            let x: Vec<u8> = (0..c * h * w).map(|_| rng.byte()).collect();
            let wt: Vec<i8> = (0..m * cg * kh * kw).map(|_| rng.byte() as i8).collect();
            let widx =
                |o: usize, ci: usize, ky: usize, kx: usize| ((o * cg + ci) * kh + ky) * kw + kx;
            let packed = pack_conv(&g, m, groups, &wt).unwrap();
            assert_eq!(packed.len(), conv_weights_len(&g, m, groups));
            let zx = rng.byte();
            let (bias, mult, shift) = requants(&mut rng, m);
            let q = Requants {
                bias: &bias,
                mult: &mult,
                shift: &shift,
                zp: 7,
                lo: 7,
                hi: 255,
            };
            // The definition: Σ (x − zx)·w over the window, padding reading zx; the kernels
            // take Σ x·w with −zx·Σw folded into the bias.
            let mut want = vec![0u8; m * oh * ow];
            let mut folded = bias.clone();
            for o in 0..m {
                let gi = o / (m / groups);
                let sum: i32 = (0..cg)
                    .flat_map(|ci| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ci, ky, kx))))
                    .map(|(ci, ky, kx)| i32::from(wt[widx(o, ci, ky, kx)]))
                    .sum();
                folded[o] = bias[o].wrapping_sub(i32::from(zx) * sum);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0i32;
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let xv = match (g.in_row(oy, ky), g.in_col(ox, kx)) {
                                        (Some(iy), Some(ix)) => x[(iy * w + ix) * c + gi * cg + ci],
                                        _ => zx,
                                    };
                                    s += (i32::from(xv) - i32::from(zx))
                                        * i32::from(wt[widx(o, ci, ky, kx)]);
                                }
                            }
                        }
                        want[(oy * ow + ox) * m + o] = q.code(o, s);
                    }
                }
            }
            let qf = Requants { bias: &folded, ..q };
            for path in paths() {
                let mut y = vec![0u8; m * oh * ow];
                // Scratch of garbage: the kernel must not read what it did not write.
                let mut scratch =
                    vec![f32::from_bits(0x5a5a_5a5a); conv_scratch_len(&g, m, groups)];
                conv(
                    path,
                    &x,
                    &g,
                    m,
                    groups,
                    &packed,
                    zx,
                    &qf,
                    &mut y,
                    &mut scratch,
                )
                .unwrap();
                assert!(
                    conv(
                        path,
                        &x,
                        &g,
                        m,
                        groups,
                        &packed,
                        zx,
                        &qf,
                        &mut y,
                        &mut scratch[1..]
                    )
                    .is_err()
                        || conv_scratch_len(&g, m, groups) == 0,
                    "a short scratch buffer is an error"
                );
                assert_eq!(y, want, "{path:?} {g:?} m={m} groups={groups}");
            }
        }
    }

    /// The row starts computed a line at a time are every row's own start, and None exactly
    /// when some row reads padding, for random geometries (padded or not) and row ranges.
    #[test]
    fn row_starts_are_each_rows_interior_start() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..2000 {
            let r = |rng: &mut Rng, n: usize| (rng.next() % n as u64) as usize;
            let (kh, kw) = (1 + r(&mut rng, 3), 1 + r(&mut rng, 3));
            let (sh, sw, dh, dw) = (
                1 + r(&mut rng, 2),
                1 + r(&mut rng, 3),
                1 + r(&mut rng, 2),
                1 + r(&mut rng, 2),
            );
            let (pt, pl) = (r(&mut rng, 3), r(&mut rng, 3));
            let (h, w, c) = (3 + r(&mut rng, 9), 3 + r(&mut rng, 9), 1 + r(&mut rng, 5));
            let span = |k: usize, d: usize| (k - 1) * d + 1;
            if h + 2 * pt < span(kh, dh) || w + 2 * pl < span(kw, dw) {
                continue;
            }
            let g = Geometry {
                c,
                h,
                w,
                oh: (h + 2 * pt - span(kh, dh)) / sh + 1,
                ow: (w + 2 * pl - span(kw, dw)) / sw + 1,
                kh,
                kw,
                sh,
                sw,
                dh,
                dw,
                pt,
                pl,
            };
            let x = vec![0u8; c * h * w];
            let zeros = vec![0u8; c];
            let c0 = r(&mut rng, c);
            let rows = Rows::Conv {
                x: &x,
                g,
                c0,
                cg: c - c0,
                zeros: &zeros,
            };
            let q = g.oh * g.ow;
            let a = r(&mut rng, q + 1);
            let b = a + r(&mut rng, q + 1 - a);
            let want: Option<Vec<usize>> = (a..b).map(|i| rows.interior(i)).collect();
            assert_eq!(rows.starts(a..b), want, "{g:?} rows {a}..{b}");
        }
    }

    #[test]
    fn short_operands_are_errors_not_reads() {
        let half = Requant::new(0.5).unwrap();
        let q = Requants {
            bias: &[0],
            mult: &[half.mult],
            shift: &[half.shift],
            zp: 0,
            lo: 0,
            hi: 255,
        };
        let v = pack_panels(1, 8, 0, |_, _| 1);
        let mut out = [0u8; 1];
        let l = Layout {
            row_stride: 1,
            col0: 0,
        };
        let rows = |b: &'static [u8]| Rows::Matrix {
            bytes: b,
            stride: 8,
        };
        assert!(
            gemm(
                Path::Scalar,
                &rows(&[1; 7]),
                0..1,
                8,
                &v,
                1,
                &q,
                l,
                &mut out
            )
            .is_err()
        );
        assert!(
            gemm(
                Path::Scalar,
                &rows(&[1; 8]),
                0..1,
                8,
                &v[..4],
                1,
                &q,
                l,
                &mut out
            )
            .is_err()
        );
        assert!(
            gemm(
                Path::Scalar,
                &rows(&[1; 8]),
                0..2,
                8,
                &v,
                1,
                &q,
                l,
                &mut out
            )
            .is_err()
        );
        assert!(
            gemm(
                Path::Scalar,
                &rows(&[1; 8]),
                0..1,
                8,
                &v,
                1,
                &q,
                l,
                &mut out
            )
            .is_ok()
        );
        assert_eq!(out[0], 4);
    }

    #[test]
    fn joins_compute_what_the_graph_computes() {
        use crate::quant::{dequantize, quantize};
        let mut rng = Rng(77);
        let a: Vec<u8> = (0..4096).map(|_| rng.byte()).collect();
        let b: Vec<u8> = (0..4096).map(|_| rng.byte()).collect();
        for relu in [false, true] {
            let j = Join {
                a: (0.037, 131),
                b: (0.011, 7),
                y: (0.02, 64),
                relu,
            };
            let mut got = vec![0u8; 4096];
            add(&a, &b, j, &mut got);
            for i in 0..4096 {
                let s =
                    dequantize(i32::from(a[i]), 0.037, 131) + dequantize(i32::from(b[i]), 0.011, 7);
                let s = if relu && s < 0.0 { 0.0 } else { s };
                assert_eq!(
                    i32::from(got[i]),
                    quantize(s, 0.02, 64, 0, 255),
                    "{i} {relu}"
                );
            }
            // The same sums left in f32: in order, and from a channels-last image of 16
            // channels to NCHW.
            for channels in [0, 16] {
                let mut got = vec![f32::NAN; 4096];
                add_float(&a, &b, j, &mut got, channels);
                for i in 0..4096 {
                    let s = dequantize(i32::from(a[i]), 0.037, 131)
                        + dequantize(i32::from(b[i]), 0.011, 7);
                    let s = if relu { s.max(0.0) } else { s };
                    let at = if channels == 0 {
                        i
                    } else {
                        (i % channels) * (4096 / channels) + i / channels
                    };
                    assert_eq!(got[at].to_bits(), s.to_bits(), "{i} {relu} {channels}");
                }
            }
        }
    }

    #[test]
    fn channels_last_boundaries_transpose() {
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let mut q = [0u8; 6];
        quantize(&x, 1.0, 0, &mut q, 2);
        assert_eq!(q, [0, 3, 1, 4, 2, 5]);
        let mut back = [0f32; 6];
        dequantize(&q, 1.0, 0, &mut back, 2);
        assert_eq!(back.to_vec(), x);
        let mut planar = [0u8; 6];
        to_planar(&q, 2, 3, &mut planar).unwrap();
        assert_eq!(planar, [0, 1, 2, 3, 4, 5]);
        // Large enough for the lookup table: every code, every channel, the definition's
        // value at the transposed place.
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let (channels, hw) = (24, 100);
        let codes: Vec<u8> = (0..channels * hw).map(|_| rng.byte()).collect();
        let mut out = vec![f32::NAN; channels * hw];
        dequantize(&codes, 0.037, 131, &mut out, channels);
        for p in 0..hw {
            for c in 0..channels {
                let want = crate::quant::dequantize(i32::from(codes[p * channels + c]), 0.037, 131);
                assert_eq!(
                    out[c * hw + p].to_bits(),
                    want.to_bits(),
                    "pixel {p} channel {c}"
                );
            }
        }
    }
}
