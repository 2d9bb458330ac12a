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
use crate::quant::Requant;

/// Columns per panel.
pub const LANES: usize = 16;
/// Bytes per depth group.
pub const GROUP: usize = 4;

/// Depth rounded up to whole groups.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(GROUP) * GROUP
}

/// Bytes of `n` columns of depth `k` packed as panels.
pub fn panels_len(n: usize, k: usize) -> usize {
    n.div_ceil(LANES) * padded_k(k) * LANES
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

/// Where `C[i][j]` goes: `out[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Stride between outputs `i`.
    pub row_stride: usize,
    /// Stride between columns `j`.
    pub col_stride: usize,
}

/// `C = R·Vᵀ` for rows `rows` of `r` (row `i` at `r[i·r_stride..]`, depth `k`), all `n`
/// columns of the panels `v`, requantized into `out`. `rows_u8`: the rows are the u8
/// operand (fully connected) rather than the i8 one (convolution).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    path: Path,
    rows_u8: bool,
    r: &[u8],
    r_stride: usize,
    rows: std::ops::Range<usize>,
    k: usize,
    v: &[u8],
    n: usize,
    q: &Requants,
    layout: Layout,
    out: &mut [u8],
) -> Result<(), String> {
    let groups = padded_k(k) / GROUP;
    if rows.is_empty() || n == 0 {
        return Ok(());
    }
    // Every read and write below stays inside these bounds.
    let last_row = (rows.end - 1) * r_stride + k;
    if r.len() < last_row || v.len() < panels_len(n, k) {
        return Err("int8 gemm: operands shorter than their sizes".into());
    }
    // One requantization per output: per row for a convolution, per column for a fully
    // connected layer.
    let outputs = if rows_u8 { n } else { rows.end };
    if q.len() < outputs {
        return Err("int8 gemm: fewer requantizations than outputs".into());
    }
    let last_out = (rows.end - 1) * layout.row_stride + (n - 1) * layout.col_stride;
    if out.len() <= last_out {
        return Err("int8 gemm: output shorter than its size".into());
    }
    if !path.runs_here() {
        return Err(format!("int8 gemm: this CPU cannot run the {path:?} path"));
    }
    // A depth group of a row: four bytes, zero past `k` (its panel bytes past `k` may be
    // anything finite; a zero row byte cancels them).
    let group = |i: usize, g: usize| -> [u8; 4] {
        let at = i * r_stride + g * GROUP;
        if g * GROUP + GROUP <= k {
            return [r[at], r[at + 1], r[at + 2], r[at + 3]];
        }
        let mut b = [0u8; 4];
        for (t, slot) in b.iter_mut().enumerate() {
            if g * GROUP + t < k {
                *slot = r[at + t];
            }
        }
        b
    };
    let panels = n.div_ceil(LANES);
    let mut acc = [[0i32; LANES]; 4];
    let mut rg: Vec<[u8; 4]> = vec![[0; 4]; 4 * groups];
    let block = groups * LANES * GROUP;
    let mut i = rows.start;
    while i < rows.end {
        let tile_rows = (rows.end - i).min(4);
        // The tile's rows as whole groups (rows past the end repeat the last one).
        for t in 0..4 {
            let row = i + t.min(tile_rows - 1);
            for g in 0..groups {
                rg[t * groups + g] = group(row, g);
            }
        }
        let mut p = 0;
        while p < panels {
            #[cfg(target_arch = "x86_64")]
            if path == Path::Vnni {
                let two = p + 1 < panels;
                let tile = VnniTile {
                    rows_u8,
                    rg: &rg,
                    groups,
                    v: &v[p * block..(p + if two { 2 } else { 1 }) * block],
                    first_row: i,
                    tile_rows,
                    first_col: p * LANES,
                    n,
                };
                // SAFETY: `runs_here` checked AVX-512F and VNNI above; the tile reads `rg`
                // (4·groups groups) and its 1 or 2 panels of `block` bytes, exactly the
                // slices given, and writes `out` only through checked indexing.
                #[allow(unsafe_code)]
                unsafe {
                    tile.run(q, layout, out, two)
                };
                p += if two { 2 } else { 1 };
                continue;
            }
            let vp = &v[p * block..(p + 1) * block];
            tile(path, rows_u8, &rg, groups, vp, &mut acc);
            let cols = (n - p * LANES).min(LANES);
            for (t, at) in acc.iter().enumerate().take(tile_rows) {
                let row = i + t;
                for (c, &a) in at.iter().enumerate().take(cols) {
                    let j = p * LANES + c;
                    let o = if rows_u8 { j } else { row };
                    out[row * layout.row_stride + j * layout.col_stride] = q.code(o, a);
                }
            }
            p += 1;
        }
        i += 4;
    }
    Ok(())
}

/// A VNNI register tile: 4 rows × 1 or 2 panels, accumulated and requantized in registers.
#[cfg(target_arch = "x86_64")]
struct VnniTile<'a> {
    rows_u8: bool,
    rg: &'a [[u8; 4]],
    groups: usize,
    /// One or two panels.
    v: &'a [u8],
    first_row: usize,
    tile_rows: usize,
    first_col: usize,
    n: usize,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl VnniTile<'_> {
    /// Computes the tile and stores its codes.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX-512 VNNI; `rg` holds `4·groups` groups and `v` one panel
    /// (`groups·64` bytes), or two when `two`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn run(&self, q: &Requants, layout: Layout, out: &mut [u8], two: bool) {
        use std::arch::x86_64::*;
        let g = self.groups;
        let mut a = [_mm512_setzero_si512(); 8];
        let v = self.v.as_ptr();
        let second = if two { g * 64 } else { 0 };
        for k in 0..g {
            // SAFETY: group k of each panel lies inside `v` (the caller's contract).
            let (v0, v1) = unsafe {
                (
                    _mm512_loadu_si512(v.add(k * 64).cast()),
                    _mm512_loadu_si512(v.add(second + k * 64).cast()),
                )
            };
            for t in 0..4 {
                let b = _mm512_set1_epi32(i32::from_le_bytes(self.rg[t * g + k]));
                if self.rows_u8 {
                    a[2 * t] = _mm512_dpbusd_epi32(a[2 * t], b, v0);
                    a[2 * t + 1] = _mm512_dpbusd_epi32(a[2 * t + 1], b, v1);
                } else {
                    a[2 * t] = _mm512_dpbusd_epi32(a[2 * t], v0, b);
                    a[2 * t + 1] = _mm512_dpbusd_epi32(a[2 * t + 1], v1, b);
                }
            }
        }
        for t in 0..self.tile_rows {
            let row = self.first_row + t;
            for half in 0..if two { 2 } else { 1 } {
                let j0 = self.first_col + half * LANES;
                let cols = (self.n - j0).min(LANES);
                // The 16 lanes' bias, multiplier and shift: the row's (a convolution), or the
                // columns' (a fully connected layer; past `n`, the last column's).
                let lane = |x: &[i32]| -> __m512i {
                    if self.rows_u8 {
                        let mut l = [0i32; LANES];
                        for (c, s) in l.iter_mut().enumerate() {
                            *s = x[j0 + c.min(cols - 1)];
                        }
                        // SAFETY: `l` is 16 i32s.
                        unsafe { _mm512_loadu_si512(l.as_ptr().cast()) }
                    } else {
                        _mm512_set1_epi32(x[row])
                    }
                };
                let sh = if self.rows_u8 {
                    let mut l = [0i32; LANES];
                    for (c, s) in l.iter_mut().enumerate() {
                        *s = q.shift[j0 + c.min(cols - 1)] as i32;
                    }
                    // SAFETY: `l` is 16 i32s.
                    unsafe { _mm512_loadu_si512(l.as_ptr().cast()) }
                } else {
                    _mm512_set1_epi32(q.shift[row] as i32)
                };
                let codes = requant16(
                    a[2 * t + half],
                    lane(q.bias),
                    lane(q.mult),
                    sh,
                    q.zp,
                    q.lo,
                    q.hi,
                );
                let mut bytes = [0u8; LANES];
                // SAFETY: `bytes` is 16 bytes, one 128-bit store.
                unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), codes) };
                let base = row * layout.row_stride + j0 * layout.col_stride;
                if layout.col_stride == 1 {
                    out[base..base + cols].copy_from_slice(&bytes[..cols]);
                } else {
                    for (c, &b) in bytes.iter().enumerate().take(cols) {
                        out[base + c * layout.col_stride] = b;
                    }
                }
            }
        }
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

/// One tile: 4 rows (groups `rg[t·groups..]`) × one panel, into `acc`.
fn tile(
    path: Path,
    rows_u8: bool,
    rg: &[[u8; 4]],
    groups: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 4],
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Vnni => {
            // SAFETY: `runs_here` checked AVX-512F and VNNI (in `gemm`); `rg` holds 4·groups
            // groups and `vp` groups·64 bytes (`gemm` sliced it so), the reads the tile makes.
            #[allow(unsafe_code)]
            unsafe {
                if rows_u8 {
                    tile_vnni::<true>(rg, groups, vp, acc)
                } else {
                    tile_vnni::<false>(rg, groups, vp, acc)
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            // SAFETY: as above, with AVX2 checked.
            #[allow(unsafe_code)]
            unsafe {
                if rows_u8 {
                    tile_avx2::<true>(rg, groups, vp, acc)
                } else {
                    tile_avx2::<false>(rg, groups, vp, acc)
                }
            }
        }
        _ => tile_scalar(rows_u8, rg, groups, vp, acc),
    }
}

/// The product of a row byte and a panel byte, each read with its signedness.
#[inline(always)]
fn mul(rows_u8: bool, r: u8, v: u8) -> i32 {
    if rows_u8 {
        i32::from(r) * i32::from(v as i8)
    } else {
        i32::from(r as i8) * i32::from(v)
    }
}

fn tile_scalar(
    rows_u8: bool,
    rg: &[[u8; 4]],
    groups: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 4],
) {
    for (t, a) in acc.iter_mut().enumerate() {
        *a = [0; LANES];
        for g in 0..groups {
            let rb = rg[t * groups + g];
            for (lane, s) in a.iter_mut().enumerate() {
                let at = (g * LANES + lane) * GROUP;
                for b in 0..GROUP {
                    *s = s.wrapping_add(mul(rows_u8, rb[b], vp[at + b]));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile_vnni<const ROWS_U8: bool>(
    rg: &[[u8; 4]],
    groups: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 4],
) {
    use std::arch::x86_64::*;
    let mut a = [_mm512_setzero_si512(); 4];
    for g in 0..groups {
        // SAFETY (of the load): `vp` holds `groups` groups of 64 bytes (the caller's
        // contract), so bytes g·64..g·64+64 are inside it.
        let v = unsafe { _mm512_loadu_si512(vp.as_ptr().add(g * 64).cast()) };
        for (t, at) in a.iter_mut().enumerate() {
            let b = _mm512_set1_epi32(i32::from_le_bytes(rg[t * groups + g]));
            *at = if ROWS_U8 {
                _mm512_dpbusd_epi32(*at, b, v)
            } else {
                _mm512_dpbusd_epi32(*at, v, b)
            };
        }
    }
    for (t, at) in a.iter().enumerate() {
        // SAFETY: `acc[t]` is 16 i32s, one 64-byte store.
        unsafe { _mm512_storeu_si512(acc[t].as_mut_ptr().cast(), *at) };
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const ROWS_U8: bool>(
    rg: &[[u8; 4]],
    groups: usize,
    vp: &[u8],
    acc: &mut [[i32; LANES]; 4],
) {
    use std::arch::x86_64::*;
    // Per row, 4 accumulators of 8 i32: each 16-byte quarter of the panel (4 lanes × 4
    // bytes) widened to 16 i16, times the row's group widened and repeated, by `vpmaddwd`:
    // [lane0 k0+k1, lane0 k2+k3, lane1 …] — pairs summed at the end.
    let mut a = [[_mm256_setzero_si256(); 4]; 4];
    for g in 0..groups {
        let mut wide = [_mm256_setzero_si256(); 4];
        for (qq, w) in wide.iter_mut().enumerate() {
            // SAFETY: bytes g·64 + 16·qq .. +16 lie inside `vp` (the caller's contract).
            let raw = unsafe { _mm_loadu_si128(vp.as_ptr().add(g * 64 + qq * 16).cast()) };
            *w = if ROWS_U8 {
                _mm256_cvtepi8_epi16(raw)
            } else {
                _mm256_cvtepu8_epi16(raw)
            };
        }
        for (t, at) in a.iter_mut().enumerate() {
            let rb = rg[t * groups + g];
            let r16: [i16; 4] = if ROWS_U8 {
                rb.map(i16::from)
            } else {
                rb.map(|x| i16::from(x as i8))
            };
            let pair = |i: usize| (r16[i] as u16 as i32) | ((r16[i + 1] as u16 as i32) << 16);
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
    for (t, at) in a.iter().enumerate() {
        for (qq, v) in at.iter().enumerate() {
            let mut s = [0i32; 8];
            // SAFETY: `s` is 8 i32s, one 32-byte store.
            unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), *v) };
            for l in 0..4 {
                acc[t][qq * 4 + l] = s[2 * l].wrapping_add(s[2 * l + 1]);
            }
        }
    }
}

/// Packs one sample's channels `c0..c0 + cg` of u8 codes `x` (`c` channels of `h × w`) as
/// the panels of a convolution's im2col — column = output pixel, depth = (channel, ky, kx);
/// taps in the padding read `zx` — into the end of `scratch` (see [`conv_scratch_len`]),
/// returning them. Two passes: each depth's row of pixels (runs of the input row), then
/// every four rows interleaved into panels.
pub fn im2col<'s>(
    x: &[u8],
    g: &Geometry,
    c0: usize,
    cg: usize,
    zx: u8,
    scratch: &'s mut [u8],
) -> Result<&'s [u8], String> {
    let k = cg * g.kh * g.kw;
    let n = g.oh * g.ow;
    let kp = padded_k(k);
    let groups = kp / GROUP;
    if scratch.len() < kp * n + panels_len(n, k) {
        return Err("int8 im2col: scratch too small".into());
    }
    if x.len() < (c0 + cg) * g.h * g.w {
        return Err("int8 im2col: input too small".into());
    }
    let (rows, panels) = scratch.split_at_mut(kp * n);
    for ci in 0..cg {
        let plane = &x[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let kk = (ci * g.kh + ky) * g.kw + kx;
                let row = &mut rows[kk * n..(kk + 1) * n];
                // Output columns whose tap lies inside the image: ox in [first, end).
                let off = kx * g.dw;
                let first = g.pl.saturating_sub(off).div_ceil(g.sw).min(g.ow);
                let end = if g.w + g.pl > off {
                    (g.w + g.pl - off).div_ceil(g.sw).min(g.ow)
                } else {
                    0
                }
                .max(first);
                for oy in 0..g.oh {
                    let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                    match g.in_row(oy, ky) {
                        None => dst.fill(zx),
                        Some(iy) => {
                            let src = &plane[iy * g.w..(iy + 1) * g.w];
                            dst[..first].fill(zx);
                            dst[end..].fill(zx);
                            if g.sw == 1 {
                                let s0 = first + off - g.pl;
                                dst[first..end].copy_from_slice(&src[s0..s0 + end - first]);
                            } else {
                                for ox in first..end {
                                    dst[ox] = src[ox * g.sw + off - g.pl];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    rows[k * n..].fill(0);
    let panels = &mut panels[..panels_len(n, k)];
    let stride = groups * LANES * GROUP;
    for gg in 0..groups {
        let r = &rows[gg * GROUP * n..(gg + 1) * GROUP * n];
        let (r0, r1, r2, r3) = (&r[..n], &r[n..2 * n], &r[2 * n..3 * n], &r[3 * n..]);
        // Whole panels: 16 pixels of the four rows interleaved into one 64-byte block.
        let whole = n / LANES;
        for p in 0..whole {
            let j = p * LANES;
            let at = p * stride + gg * LANES * GROUP;
            let block: &mut [u8; 64] = (&mut panels[at..at + 64])
                .try_into()
                .map_err(|_| "int8 im2col: a panel block out of place".to_string())?;
            interleave(
                &r0[j..j + LANES],
                &r1[j..j + LANES],
                &r2[j..j + LANES],
                &r3[j..j + LANES],
                block,
            );
        }
        for j in whole * LANES..n {
            let at = (j / LANES) * stride + gg * LANES * GROUP + (j % LANES) * GROUP;
            panels[at..at + 4].copy_from_slice(&[r0[j], r1[j], r2[j], r3[j]]);
        }
    }
    Ok(panels)
}

/// Interleaves four 16-byte rows into 16 groups of 4 bytes (`out[4j + t] = r_t[j]`).
#[inline(always)]
fn interleave(r0: &[u8], r1: &[u8], r2: &[u8], r3: &[u8], out: &mut [u8; 64]) {
    #[cfg(target_arch = "x86_64")]
    if r0.len() >= 16 && r1.len() >= 16 && r2.len() >= 16 && r3.len() >= 16 {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; each row has at least 16 bytes (checked) and `out`
        // is 64 bytes, so the four unaligned loads and four stores stay inside them.
        #[allow(unsafe_code)]
        unsafe {
            let a = _mm_loadu_si128(r0.as_ptr().cast());
            let b = _mm_loadu_si128(r1.as_ptr().cast());
            let c = _mm_loadu_si128(r2.as_ptr().cast());
            let d = _mm_loadu_si128(r3.as_ptr().cast());
            let ab_lo = _mm_unpacklo_epi8(a, b);
            let ab_hi = _mm_unpackhi_epi8(a, b);
            let cd_lo = _mm_unpacklo_epi8(c, d);
            let cd_hi = _mm_unpackhi_epi8(c, d);
            let o = out.as_mut_ptr();
            _mm_storeu_si128(o.cast(), _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(16).cast(), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(32).cast(), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(48).cast(), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
        return;
    }
    for j in 0..LANES {
        out[4 * j..4 * j + 4].copy_from_slice(&[r0[j], r1[j], r2[j], r3[j]]);
    }
}

/// Bytes of scratch a convolution's im2col needs.
pub fn conv_scratch_len(g: &Geometry, groups: usize) -> usize {
    let k = g.c / groups.max(1) * g.kh * g.kw;
    let n = g.oh * g.ow;
    padded_k(k) * n + panels_len(n, k)
}

/// One sample of an integer convolution: `x` u8 `[c][h][w]`, weights `w` as `m` rows of
/// `padded_k(c/groups·kh·kw)` i8 (group by group), into `y` u8 `[m][oh][ow]`.
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
    scratch: &mut [u8],
) -> Result<(), String> {
    let groups = groups.max(1);
    if !g.c.is_multiple_of(groups) || !m.is_multiple_of(groups) {
        return Err("int8 conv: channels do not divide into the groups".into());
    }
    let (cg, mg) = (g.c / groups, m / groups);
    let k = cg * g.kh * g.kw;
    let kp = padded_k(k);
    let n = g.oh * g.ow;
    if w.len() < m * kp || y.len() < m * n {
        return Err("int8 conv: weights or output too small".into());
    }
    for gi in 0..groups {
        let panels = im2col(x, g, gi * cg, cg, zx, scratch)?;
        let rows = gi * mg..(gi + 1) * mg;
        gemm(
            path,
            false,
            w,
            kp,
            rows,
            kp,
            panels,
            n,
            q,
            Layout {
                row_stride: n,
                col_stride: 1,
            },
            y,
        )?;
    }
    Ok(())
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

/// The words [`requants`] reads.
pub fn requant_words(bias: &[i32], rq: &[Requant]) -> Vec<f32> {
    let mut out: Vec<f32> = bias.iter().map(|&b| f32::from_bits(b as u32)).collect();
    out.extend(rq.iter().map(|r| f32::from_bits(r.mult as u32)));
    out.extend(rq.iter().map(|r| f32::from_bits(r.shift)));
    out
}

/// `QuantizeLinear` to u8 of a slice ([`crate::quant::quantize`] element by element).
pub fn quantize(x: &[f32], scale: f32, zp: i32, y: &mut [u8]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = crate::quant::quantize(v, scale, zp, 0, 255) as u8;
    }
}

/// `DequantizeLinear` of u8 codes.
pub fn dequantize(x: &[u8], scale: f32, zp: i32, y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = crate::quant::dequantize(i32::from(v), scale, zp);
    }
}

/// Max pooling of u8 codes (padding taps ignored), one sample `[c][h][w]`.
pub fn max_pool(x: &[u8], g: &Geometry, y: &mut [u8]) -> Result<(), String> {
    if x.len() < g.c * g.h * g.w || y.len() < g.c * g.oh * g.ow {
        return Err("int8 max pool: buffers too small".into());
    }
    // Windows inside the image (no padding reached): direct indexing.
    let inside = g.pt == 0
        && g.pl == 0
        && (g.oh - 1) * g.sh + (g.kh - 1) * g.dh < g.h
        && (g.ow - 1) * g.sw + (g.kw - 1) * g.dw < g.w;
    if inside && g.oh > 0 && g.ow > 0 {
        for c in 0..g.c {
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            let out = &mut y[c * g.oh * g.ow..(c + 1) * g.oh * g.ow];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut best = 0u8;
                    for ky in 0..g.kh {
                        let row = &plane[(oy * g.sh + ky * g.dh) * g.w..];
                        for kx in 0..g.kw {
                            best = best.max(row[ox * g.sw + kx * g.dw]);
                        }
                    }
                    out[oy * g.ow + ox] = best;
                }
            }
        }
        return Ok(());
    }
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut best: Option<u8> = None;
                for ky in 0..g.kh {
                    let Some(iy) = g.in_row(oy, ky) else { continue };
                    for kx in 0..g.kw {
                        if let Some(ix) = g.in_col(ox, kx) {
                            let v = plane[iy * g.w + ix];
                            best = Some(best.map_or(v, |b| b.max(v)));
                        }
                    }
                }
                y[(c * g.oh + oy) * g.ow + ox] = best.unwrap_or(0);
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

    /// `C[i][j] = Σ R·V` straight from the definition, then the same epilogue.
    fn reference(
        rows_u8: bool,
        r: &[u8],
        rs: usize,
        m: usize,
        k: usize,
        vcol: &dyn Fn(usize, usize) -> u8,
        n: usize,
        q: &Requants,
    ) -> Vec<u8> {
        let mut out = vec![0u8; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0i32;
                for kk in 0..k {
                    s = s.wrapping_add(mul(rows_u8, r[i * rs + kk], vcol(j, kk)));
                }
                out[i * n + j] = q.code(if rows_u8 { j } else { i }, s);
            }
        }
        out
    }

    #[test]
    fn every_path_gives_the_reference_bits_on_random_shapes() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let paths: Vec<Path> = [Path::Scalar, Path::Avx2, Path::Vnni]
            .into_iter()
            .filter(|p| p.runs_here())
            .collect();
        for case in 0..60 {
            let m = 1 + (rng.next() % 23) as usize;
            let n = 1 + (rng.next() % 53) as usize;
            let k = 1 + (rng.next() % 70) as usize;
            let rows_u8 = case % 2 == 0;
            let r: Vec<u8> = (0..m * k).map(|_| rng.byte()).collect();
            let cols: Vec<u8> = (0..n * k).map(|_| rng.byte()).collect();
            let v = pack_panels(n, k, rng.byte(), |j, kk| cols[j * k + kk]);
            let outs = m.max(n);
            let bias: Vec<i32> = (0..outs)
                .map(|_| (rng.next() % 20000) as i32 - 10000)
                .collect();
            let requant: Vec<Requant> = (0..outs)
                .map(|_| Requant::new(1e-4 + (rng.next() % 1000) as f64 * 1e-5).unwrap())
                .collect();
            let mult: Vec<i32> = requant.iter().map(|r| r.mult).collect();
            let shift: Vec<u32> = requant.iter().map(|r| r.shift).collect();
            let lo = (rng.next() % 100) as i32;
            let q = Requants {
                bias: &bias,
                mult: &mult,
                shift: &shift,
                zp: (rng.next() % 256) as i32,
                lo,
                hi: 255 - lo / 2,
            };
            let want = reference(rows_u8, &r, k, m, k, &|j, kk| cols[j * k + kk], n, &q);
            for &path in &paths {
                let mut got = vec![0u8; m * n];
                gemm(
                    path,
                    rows_u8,
                    &r,
                    k,
                    0..m,
                    k,
                    &v,
                    n,
                    &q,
                    Layout {
                        row_stride: n,
                        col_stride: 1,
                    },
                    &mut got,
                )
                .unwrap();
                assert_eq!(got, want, "{path:?} m={m} n={n} k={k} rows_u8={rows_u8}");
            }
        }
        assert!(paths.contains(&Path::Scalar));
    }

    #[test]
    fn convolutions_give_the_definition_bits_on_random_geometries() {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        let paths: Vec<Path> = [Path::Scalar, Path::Avx2, Path::Vnni]
            .into_iter()
            .filter(|p| p.runs_here())
            .collect();
        for _ in 0..40 {
            let groups = 1 + (rng.next() % 3) as usize;
            let c = groups * (1 + (rng.next() % 5) as usize);
            let m = groups * (1 + (rng.next() % 7) as usize);
            let (kh, kw) = (1 + (rng.next() % 3) as usize, 1 + (rng.next() % 3) as usize);
            let (sh, sw) = (1 + (rng.next() % 2) as usize, 1 + (rng.next() % 3) as usize);
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
            let x: Vec<u8> = (0..c * h * w).map(|_| rng.byte()).collect();
            let cg = c / groups;
            let k = cg * kh * kw;
            let kp = padded_k(k);
            let wt: Vec<i8> = (0..m * k).map(|_| rng.byte() as i8).collect();
            let mut rows = vec![0u8; m * kp];
            for i in 0..m {
                for kk in 0..k {
                    rows[i * kp + kk] = wt[i * k + kk] as u8;
                }
            }
            let zx = rng.byte();
            let bias: Vec<i32> = (0..m).map(|_| (rng.next() % 2000) as i32 - 1000).collect();
            let rq = Requant::new(0.003).unwrap();
            let (mult, shift) = (vec![rq.mult; m], vec![rq.shift; m]);
            let q = Requants {
                bias: &bias,
                mult: &mult,
                shift: &shift,
                zp: 7,
                lo: 7,
                hi: 255,
            };
            // The definition: Σ (x − zx)·w over the window, padding reading zx.
            let mut want = vec![0u8; m * oh * ow];
            for o in 0..m {
                let gi = o / (m / groups);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0i32;
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let xv = match (g.in_row(oy, ky), g.in_col(ox, kx)) {
                                        (Some(iy), Some(ix)) => {
                                            x[((gi * cg + ci) * h + iy) * w + ix]
                                        }
                                        _ => zx,
                                    };
                                    let wv = wt[o * k + (ci * kh + ky) * kw + kx];
                                    s += (i32::from(xv) - i32::from(zx)) * i32::from(wv);
                                }
                            }
                        }
                        // The kernels take Σ x·w with −zx·Σw folded into the bias.
                        want[(o * oh + oy) * ow + ox] = q.code(o, s);
                    }
                }
            }
            let sums: Vec<i32> = (0..m)
                .map(|o| wt[o * k..(o + 1) * k].iter().map(|&v| i32::from(v)).sum())
                .collect();
            let folded: Vec<i32> = (0..m)
                .map(|o| bias[o].wrapping_sub(i32::from(zx) * sums[o]))
                .collect();
            let qf = Requants { bias: &folded, ..q };
            for &path in &paths {
                let mut y = vec![0u8; m * oh * ow];
                let mut scratch = vec![0u8; conv_scratch_len(&g, groups)];
                conv(
                    path,
                    &x,
                    &g,
                    m,
                    groups,
                    &rows,
                    zx,
                    &qf,
                    &mut y,
                    &mut scratch,
                )
                .unwrap();
                assert_eq!(y, want, "{path:?} {g:?} m={m} groups={groups}");
            }
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
            col_stride: 1,
        };
        assert!(
            gemm(
                Path::Scalar,
                true,
                &[1; 7],
                8,
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
                true,
                &[1; 8],
                8,
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
                true,
                &[1; 8],
                8,
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
                true,
                &[1; 8],
                8,
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
}
