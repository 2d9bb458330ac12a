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

/// Per-output requantization: the bias (input zero point folded in), the multipliers, and
/// the output's zero point and clamp.
#[derive(Clone, Copy, Debug)]
pub struct Requants<'a> {
    /// i32 bias per output.
    pub bias: &'a [i32],
    /// Multiplier per output.
    pub requant: &'a [Requant],
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
        self.requant[i].apply(acc.wrapping_add(self.bias[i]), self.zp, self.lo, self.hi) as u8
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
    if q.bias.len() < rows.end || q.requant.len() < rows.end {
        return Err("int8 gemm: fewer requantizations than rows".into());
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
    let mut i = rows.start;
    while i < rows.end {
        let tile_rows = (rows.end - i).min(4);
        // The tile's rows as whole groups (a copy: 4 × groups × 4 bytes).
        let mut rg: Vec<[u8; 4]> = Vec::with_capacity(4 * groups);
        for t in 0..4 {
            let row = i + t.min(tile_rows - 1);
            for g in 0..groups {
                rg.push(group(row, g));
            }
        }
        for p in 0..panels {
            let vp = &v[p * groups * LANES * GROUP..(p + 1) * groups * LANES * GROUP];
            tile(path, rows_u8, &rg, groups, vp, &mut acc);
            let cols = (n - p * LANES).min(LANES);
            for t in 0..tile_rows {
                let row = i + t;
                for (c, &a) in acc[t].iter().enumerate().take(cols) {
                    let j = p * LANES + c;
                    out[row * layout.row_stride + j * layout.col_stride] = q.code(row, a);
                }
            }
        }
        i += 4;
    }
    Ok(())
}

/// One tile: 4 rows (groups `rg[t·groups..]`) × one panel, into `acc`.
fn tile(path: Path, rows_u8: bool, rg: &[[u8; 4]], groups: usize, vp: &[u8], acc: &mut [[i32; LANES]; 4]) {
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

fn tile_scalar(rows_u8: bool, rg: &[[u8; 4]], groups: usize, vp: &[u8], acc: &mut [[i32; LANES]; 4]) {
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
            let b = _mm256_setr_epi32(pair(0), pair(2), pair(0), pair(2), pair(0), pair(2), pair(0), pair(2));
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

/// Packs one sample's group `gi` of u8 codes `x` (`c` channels of `h × w`) as the panels of
/// a convolution's im2col: column = output pixel, depth = (channel, ky, kx) of the group;
/// taps in the padding read `zx`.
pub fn im2col(x: &[u8], g: &Geometry, c0: usize, cg: usize, zx: u8, out: &mut [u8]) -> Result<(), String> {
    let k = cg * g.kh * g.kw;
    let n = g.oh * g.ow;
    let groups = padded_k(k) / GROUP;
    if out.len() < panels_len(n, k) {
        return Err("int8 im2col: scratch too small".into());
    }
    if x.len() < (c0 + cg) * g.h * g.w {
        return Err("int8 im2col: input too small".into());
    }
    out[..panels_len(n, k)].fill(0);
    for ci in 0..cg {
        let plane = &x[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let kk = (ci * g.kh + ky) * g.kw + kx;
                let (gg, b) = (kk / GROUP, kk % GROUP);
                for oy in 0..g.oh {
                    let row = g.in_row(oy, ky);
                    for ox in 0..g.ow {
                        let v = match (row, g.in_col(ox, kx)) {
                            (Some(iy), Some(ix)) => plane[iy * g.w + ix],
                            _ => zx,
                        };
                        let j = oy * g.ow + ox;
                        out[(((j / LANES) * groups + gg) * LANES + j % LANES) * GROUP + b] = v;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Bytes of scratch a convolution's im2col needs.
pub fn conv_scratch_len(g: &Geometry, groups: usize) -> usize {
    panels_len(g.oh * g.ow, g.c / groups.max(1) * g.kh * g.kw)
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
    if g.c % groups != 0 || m % groups != 0 {
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
        im2col(x, g, gi * cg, cg, zx, scratch)?;
        let rows = gi * mg..(gi + 1) * mg;
        gemm(
            path,
            false,
            w,
            kp,
            rows,
            kp,
            scratch,
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
    fn reference(rows_u8: bool, r: &[u8], rs: usize, m: usize, k: usize, vcol: &dyn Fn(usize, usize) -> u8, n: usize, q: &Requants) -> Vec<u8> {
        let mut out = vec![0u8; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0i32;
                for kk in 0..k {
                    s = s.wrapping_add(mul(rows_u8, r[i * rs + kk], vcol(j, kk)));
                }
                out[i * n + j] = q.code(i, s);
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
            let bias: Vec<i32> = (0..m).map(|_| (rng.next() % 20000) as i32 - 10000).collect();
            let requant: Vec<Requant> = (0..m)
                .map(|_| Requant::new(1e-4 + (rng.next() % 1000) as f64 * 1e-5).unwrap())
                .collect();
            let q = Requants { bias: &bias, requant: &requant, zp: (rng.next() % 256) as i32, lo: 0, hi: 255 };
            let want = reference(rows_u8, &r, k, m, k, &|j, kk| cols[j * k + kk], n, &q);
            for &path in &paths {
                let mut got = vec![0u8; m * n];
                gemm(path, rows_u8, &r, k, 0..m, k, &v, n, &q, Layout { row_stride: n, col_stride: 1 }, &mut got).unwrap();
                assert_eq!(got, want, "{path:?} m={m} n={n} k={k} rows_u8={rows_u8}");
            }
        }
        assert!(paths.contains(&Path::Scalar));
    }

    #[test]
    fn short_operands_are_errors_not_reads() {
        let q = Requants { bias: &[0], requant: &[Requant::new(0.5).unwrap()], zp: 0, lo: 0, hi: 255 };
        let v = pack_panels(1, 8, 0, |_, _| 1);
        let mut out = [0u8; 1];
        let l = Layout { row_stride: 1, col_stride: 1 };
        assert!(gemm(Path::Scalar, true, &[1; 7], 8, 0..1, 8, &v, 1, &q, l, &mut out).is_err());
        assert!(gemm(Path::Scalar, true, &[1; 8], 8, 0..1, 8, &v[..4], 1, &q, l, &mut out).is_err());
        assert!(gemm(Path::Scalar, true, &[1; 8], 8, 0..2, 8, &v, 1, &q, l, &mut out).is_err());
        assert!(gemm(Path::Scalar, true, &[1; 8], 8, 0..1, 8, &v, 1, &q, l, &mut out).is_ok());
        assert_eq!(out[0], 4);
    }
}
