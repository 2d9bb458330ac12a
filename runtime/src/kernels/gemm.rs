//! Dense f32 GEMM with one operand packed ahead of time: C[M×N] = A[M×K]·B[K×N] (+ epilogue).
//!
//! The compiler packs the constant operand (the weights) once, when it compiles the model:
//! - [`PackedA`]: A in panels of [`MR`] rows, `[panel][k][MR]` (convolutions, where the
//!   weights are A and the im2col'd input is B);
//! - [`PackedB`]: B in panels of [`NR`] columns, `[panel][k][NR]` (fully connected layers,
//!   where the activations are A).
//!
//! Both run the same register tiles, chosen once at run time by what the CPU has: AVX-512
//! 6×64 (24 zmm accumulators; its k loop in assembly, `tile64.rs`) with 6×16/6×32 for the
//! edges, AVX2+FMA 6×16 (12 ymm), or a portable scalar tile. The epilogue (bias per row or
//! per column, then an activation) is applied on the tile before it is stored, on the last
//! K block only. K is blocked by [`KC`]: deep blocks, because each block costs a round trip
//! of C (measured best from 768 up on a 48 KiB-L1, 2 MiB-L2 Xeon; B blocks stream from L2).

use crate::kernels::epilogue::{Bias, Epilogue};

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of a B panel (and of the AVX2 tile; AVX-512 tiles span up to four panels).
pub const NR: usize = 16;
/// K block.
pub const KC: usize = 768;

/// A packed in MR-row panels: `data[(panel·K + k)·MR + r]` = A[panel·MR + r, k] (0 past M).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedA<'a> {
    /// Rows.
    pub m: usize,
    /// Depth.
    pub k: usize,
    /// The panels ([`pack_a_len`] floats).
    pub data: &'a [f32],
}

/// B packed in NR-column panels: `data[(panel·K + k)·NR + c]` = B[k, panel·NR + c] (0 past N).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedB<'a> {
    /// Depth.
    pub k: usize,
    /// Columns.
    pub n: usize,
    /// The panels ([`pack_b_len`] floats).
    pub data: &'a [f32],
}

/// Packs row-major `a` (`m × k`) into MR-row panels.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut data = vec![0.0; panels * k * MR];
    for p in 0..panels {
        for kk in 0..k {
            for r in 0..MR {
                let row = p * MR + r;
                if row < m {
                    data[(p * k + kk) * MR + r] = a[row * k + kk];
                }
            }
        }
    }
    data
}

/// Floats in a packed `m × k` A.
pub fn pack_a_len(m: usize, k: usize) -> usize {
    // Saturating, as `pack_b_len`.
    m.div_ceil(MR).saturating_mul(k).saturating_mul(MR)
}

/// Packs `b` (`k × n`), given as B[k, j] = `b[k·row_stride + j·col_stride]` (so a transposed
/// weight matrix packs without a copy), into NR-column panels.
pub fn pack_b(b: &[f32], k: usize, n: usize, row_stride: usize, col_stride: usize) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut data = vec![0.0; panels * k * NR];
    for p in 0..panels {
        for kk in 0..k {
            for c in 0..NR {
                let col = p * NR + c;
                if col < n {
                    data[(p * k + kk) * NR + c] = b[kk * row_stride + col * col_stride];
                }
            }
        }
    }
    data
}

/// Floats in a packed `k × n` B.
pub fn pack_b_len(k: usize, n: usize) -> usize {
    // Saturating: hostile sizes give a length no weights hold, which validation rejects.
    n.div_ceil(NR).saturating_mul(k).saturating_mul(NR)
}

/// Columns of C dropped on store: a result computed `pw` columns per image row, of which the
/// first `ow` are kept, is stored with the others squeezed out (`pw == 0`: nothing dropped).
/// A stride-1 convolution over zero-padded rows computes such a result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crop {
    /// Computed columns per row.
    pub pw: usize,
    /// Kept columns per row (the first ones).
    pub ow: usize,
}

impl Crop {
    /// Nothing dropped.
    pub const NONE: Crop = Crop { pw: 0, ow: 0 };

    /// Where computed column `j` (or, if it is dropped, the next kept one) is stored.
    #[inline(always)]
    fn col(self, j: usize) -> usize {
        match (j.checked_div(self.pw), j.checked_rem(self.pw)) {
            (Some(row), Some(at)) => row * self.ow + at.min(self.ow),
            _ => j,
        }
    }

    /// Whether computed column `j` is kept.
    #[inline(always)]
    fn keeps(self, j: usize) -> bool {
        self.pw == 0 || j % self.pw < self.ow
    }

    /// The columns a result `n` computed columns wide keeps.
    pub fn kept(self, n: usize) -> usize {
        self.col(n)
    }
}

/// One register tile's operands. A is read as `a[r·a_rs + k·a_ks]`, B as `b[k·b_ks + c]` for
/// c < NR (always NR readable floats per k). C's computed column `col0 + j` of row r is
/// stored at `c[r·ldc + crop.col(col0 + j) − crop.col(col0)]`, if the crop keeps it.
///
/// The kernels' `unsafe` code rests on this invariant, which the four drivers
/// ([`gemm_packed_a`], [`gemm_packed_b`], [`gemm_packed_a_panels`], [`gemm_packed_a_indirect`])
/// establish from the lengths they check before building any tile: for r < `rows` ≤ [`MR`]
/// and kk < `k`, A's element `a + r·a_rs + kk·a_ks` is readable; B's row kk (at
/// `b + kk·b_ks`, or `b + b_tab[kk]` when the table is not null, which then has `k` entries)
/// has 16 readable floats at `h·b_hs` for every group h < `cols.div_ceil(16)` (at least one),
/// and NR at 0; every stored column of C lies in C's buffer, a row of C being
/// `c + r·ldc`; `res`, if not null, is laid out like C over a buffer as long.
#[derive(Clone, Copy)]
struct Tile {
    k: usize,
    a: *const f32,
    a_rs: usize,
    a_ks: usize,
    b: *const f32,
    /// Where B's columns 16..32 start, relative to `b` (wide tiles only).
    b_hs: usize,
    /// If not null: B's row kk starts at `b + b_tab[kk]` (an indirect B, `b_ks` unused).
    b_tab: *const usize,
    b_ks: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    /// Add to what C holds (a later K block).
    accumulate: bool,
    /// Apply the epilogue (the last K block). `row0`/`col0` locate the tile in C for biases.
    last: bool,
    row0: usize,
    col0: usize,
    crop: Crop,
    /// If not null: the residual tensor's element for `c` (it is laid out like C: the same
    /// offsets from here), added on the last K block before the epilogue.
    res: *const f32,
}

#[allow(unsafe_code)]
mod kernels {
    use super::{MR, NR, Tile};
    use crate::kernels::epilogue::Epilogue;

    /// Applies the epilogue to `acc` (a full MR×NR tile in registers, spilled to an array)
    /// and stores the valid part: rows below `t.rows`, columns below `t.cols` (≤ NR here).
    /// An activation with erf goes over the tile's values at once, in its vector form (the
    /// same bits as value by value, many erfs in flight instead of one).
    ///
    /// # Safety
    /// `t` holds [`Tile`]'s invariant for C and `res`, and `t.cols` ≤ NR.
    #[inline(always)]
    unsafe fn store(t: &Tile, acc: &mut [[f32; NR]; MR], ep: &Epilogue) {
        let base = t.crop.col(t.col0);
        let by_tile = t.last && ep.act.has_erf();
        // Where column col0 + j is stored in a row, if it is kept.
        let place = |j: usize| {
            t.crop
                .keeps(t.col0 + j)
                .then(|| t.crop.col(t.col0 + j) - base)
        };
        for (r, row) in acc.iter_mut().enumerate().take(t.rows) {
            // SAFETY: r < rows, so `c + r·ldc` is the start of a row of C, inside its buffer
            // (the tile's invariant).
            let dst = unsafe { t.c.add(r * t.ldc) };
            for (j, v) in row.iter_mut().enumerate().take(t.cols) {
                let Some(at) = place(j) else { continue };
                // SAFETY: column col0 + j (j < cols) is kept, so its place in row r,
                // `at` floats on, is a float of C (the tile's invariant), which this tile
                // alone writes while it runs.
                let (dst, old) = unsafe {
                    let dst = dst.add(at);
                    (dst, *dst)
                };
                let mut x = *v + if t.accumulate { old } else { 0.0 };
                if t.last {
                    if !t.res.is_null() {
                        // SAFETY: a non-null residual is laid out like C, so the same offset
                        // is one of its floats.
                        x += unsafe { *t.res.add(r * t.ldc + at) };
                    }
                    if by_tile {
                        // Activated with the rest of the tile, below.
                        *v = ep.biased(x, t.row0 + r, t.col0 + j);
                        continue;
                    }
                    x = ep.apply(x, t.row0 + r, t.col0 + j);
                }
                // SAFETY: `dst` is the float of C read above.
                unsafe { *dst = x };
            }
        }
        if by_tile {
            // Whole rows (the values past `cols` are never stored).
            ep.act
                .apply_in_place(&mut acc.as_flattened_mut()[..t.rows.min(MR) * NR]);
            for (r, row) in acc.iter().enumerate().take(t.rows) {
                for (j, v) in row.iter().enumerate().take(t.cols) {
                    if let Some(at) = place(j) {
                        // SAFETY: as above: row r < rows, column col0 + j kept, so `at`
                        // floats into row r is that column's float of C.
                        unsafe { *t.c.add(r * t.ldc + at) = *v };
                    }
                }
            }
        }
    }

    /// The portable tile (NR columns).
    ///
    /// # Safety
    /// `t` holds [`Tile`]'s invariant, and `t.cols` ≤ NR.
    pub(super) unsafe fn scalar(t: &Tile, ep: &Epilogue) {
        let mut acc = [[0f32; NR]; MR];
        for kk in 0..t.k {
            let row = if t.b_tab.is_null() {
                kk * t.b_ks
            } else {
                // SAFETY: a non-null table has k entries and kk < k.
                unsafe { *t.b_tab.add(kk) }
            };
            // SAFETY: B's row kk starts `row` floats from `b` and has NR readable floats
            // (the tile's invariant); nothing writes B while a tile runs.
            let b = unsafe { std::slice::from_raw_parts(t.b.add(row), NR) };
            for (r, row) in acc.iter_mut().enumerate().take(t.rows) {
                // SAFETY: r < rows and kk < k: a readable element of A (the invariant).
                let a = unsafe { *t.a.add(r * t.a_rs + kk * t.a_ks) };
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += a * bv;
                }
            }
        }
        // SAFETY: `store`'s contract is this function's.
        unsafe { store(t, &mut acc, ep) };
    }

    /// The AVX-512 tile: `R` ≤ 6 rows × `G` groups of 16 columns (G ≤ 4 zmm per row; B's
    /// group h at `b + h·b_hs`). The full 6×64 tile keeps 24 accumulators: 24 FMAs per 4 B
    /// loads and 6 broadcasts.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA; `t` holds [`Tile`]'s invariant with
    /// `t.rows == R` and `G == t.cols.div_ceil(16)` (so B has 16 readable floats at every
    /// row's `h·b_hs` for h < G).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512<
        const R: usize,
        const G: usize,
        const TAB: bool,
        const PACKED_A: bool,
    >(
        t: &Tile,
        ep: &Epilogue,
    ) {
        use std::arch::x86_64::*;
        if R == MR && G == 4 {
            // The full tile: the k loop in assembly (all 24 accumulators in registers).
            // SAFETY: AVX-512F is this function's precondition. With R = 6 rows and G = 4
            // groups, the tile's invariant is what `tile64` requires for `t.k` steps: A's six
            // rows (1 float apart when packed, which a table-driven B always pairs with;
            // `a_rs` apart otherwise) advancing `a_ks`, and B's four groups of 16 floats,
            // `b_hs` apart (NR = 16 for a table-driven B, whose groups are adjacent).
            let full = unsafe {
                if TAB {
                    crate::kernels::tile64::packed_a_tab(t.k, t.a, t.a_ks, t.b, t.b_tab)
                } else {
                    // (A packed A is rows 1 float apart.)
                    crate::kernels::tile64::rows_a(t.k, t.a, t.a_rs, t.a_ks, t.b, t.b_ks, t.b_hs)
                }
            };
            let mut acc = [[_mm512_setzero_ps(); G]; R];
            for (dst, src) in acc.iter_mut().zip(&full) {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = *s;
                }
            }
            // SAFETY: `store512`'s contract is this function's.
            unsafe { store512::<R, G>(t, &acc, ep) };
            return;
        }
        let mut acc = [[_mm512_setzero_ps(); G]; R];
        // Packed A keeps a tile's rows adjacent: constant offsets. Otherwise the row offsets
        // are computed once, so no chain of address additions runs through the k loop.
        let offs: [usize; R] = std::array::from_fn(|r| if PACKED_A { r } else { r * t.a_rs });
        let mut a = t.a;
        let mut b = t.b;
        let mut tab = t.b_tab;
        for _ in 0..t.k {
            if TAB {
                // SAFETY: TAB means a non-null table of k entries; this is entry kk < k (one
                // per iteration), and `tab` ends one past the last. Row kk then starts at
                // `b + tab[kk]`, inside B (the tile's invariant).
                unsafe {
                    b = t.b.add(*tab);
                    tab = tab.add(1);
                }
            }
            // SAFETY: AVX-512F (the precondition); B's row kk has 16 readable floats at
            // `h·b_hs` for h < G (the invariant).
            let bv: [__m512; G] =
                std::array::from_fn(|h| unsafe { _mm512_loadu_ps(b.add(h * t.b_hs)) });
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: `a` is A at step kk and `offs[r]` row r < R = rows (`r·a_rs`, or
                // `r` for a packed A whose `a_rs` is 1): a readable element (the invariant).
                let x = unsafe { _mm512_set1_ps(*a.add(offs[r])) };
                for (o, &v) in row.iter_mut().zip(&bv) {
                    *o = _mm512_fmadd_ps(x, v, *o);
                }
            }
            // SAFETY: after the last step `a` is `k·a_ks` on, which is still inside A's
            // slice or one past it: the next packed panel, or row 0's end, whose later
            // rows are A's too.
            a = unsafe { a.add(t.a_ks) };
            if !TAB {
                // Past the last row this can leave B's buffer (a row-major B's last row is
                // shorter than its stride), and is never read: no `add`.
                b = b.wrapping_add(t.b_ks);
            }
        }
        // SAFETY: `store512`'s contract is this function's.
        unsafe { store512::<R, G>(t, &acc, ep) };
    }

    /// Stores an AVX-512 tile's accumulators: adds what C holds for a later K block, applies
    /// the epilogue on the last, squeezes out cropped columns.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA; `t` holds [`Tile`]'s invariant for C and `res`, with
    /// `t.rows == R` and `G == t.cols.div_ceil(16)`; a per-column bias covers every
    /// column of C (`Epilogue::check`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn store512<const R: usize, const G: usize>(
        t: &Tile,
        acc: &[[std::arch::x86_64::__m512; G]; R],
        ep: &Epilogue,
    ) {
        use std::arch::x86_64::*;
        let halves = G;
        if t.crop.pw != 0 && (!t.last || ep.is_vectorizable()) {
            // Dropped columns squeezed out: compress-store the kept lanes (and
            // expand-load what C holds at the same places).
            let base = t.crop.col(t.col0);
            for h in 0..halves {
                let cols = t.cols.saturating_sub(16 * h).min(16);
                let j = t.col0 + 16 * h;
                let mut mask: __mmask16 = 0;
                for l in 0..cols {
                    if t.crop.keeps(j + l) {
                        mask |= 1 << l;
                    }
                }
                if mask == 0 {
                    continue;
                }
                let at = t.crop.col(j) - base;
                for (r, row) in acc.iter().enumerate() {
                    // SAFETY: AVX-512F (the precondition). `mask` has a lane for each kept
                    // column of this group, and `at` is where the first of them is stored
                    // in row r < rows; the kept columns are stored one after another, so
                    // the expand-loads and the compress-store touch exactly those floats of
                    // C (and of the residual, laid out like C), which are C's (the
                    // invariant). With all 16 kept, they are the 16 floats from `at`.
                    // `apply_avx512` gets the group's `cols` columns from `j`: with a crop
                    // the bias is never per column (`gemm_packed_a_indirect` refuses it).
                    unsafe {
                        let dst = t.c.add(r * t.ldc + at);
                        let mut v = row[h];
                        // All 16 lanes kept (most of a wide image's): plain loads and stores.
                        let full = mask == 0xffff;
                        if t.accumulate {
                            let old = if full {
                                _mm512_loadu_ps(dst)
                            } else {
                                _mm512_maskz_expandloadu_ps(mask, dst)
                            };
                            v = _mm512_add_ps(v, old);
                        }
                        if t.last {
                            if !t.res.is_null() {
                                let res = t.res.add(r * t.ldc + at);
                                v = _mm512_add_ps(
                                    v,
                                    if full {
                                        _mm512_loadu_ps(res)
                                    } else {
                                        _mm512_maskz_expandloadu_ps(mask, res)
                                    },
                                );
                            }
                            v = ep.apply_avx512(v, t.row0 + r, j, cols);
                        }
                        if full {
                            _mm512_storeu_ps(dst, v);
                        } else {
                            _mm512_mask_compressstoreu_ps(dst, mask, v);
                        }
                    }
                }
            }
            return;
        }
        if !t.last || ep.is_vectorizable() {
            for (r, row) in acc.iter().enumerate() {
                for (h, &v) in row.iter().enumerate().take(halves) {
                    let cols = t.cols.saturating_sub(16 * h).min(16);
                    if cols == 0 {
                        continue;
                    }
                    let mask: __mmask16 = if cols >= 16 {
                        0xffff
                    } else {
                        (1u16 << cols) - 1
                    };
                    // SAFETY: AVX-512F (the precondition). Columns 16·h .. 16·h + cols of row
                    // r < rows are C's (the invariant, with no crop: computed column j is
                    // stored at j), as are the residual's; `mask` has one lane for each of
                    // those columns, so the masked loads and the store touch nothing else,
                    // and a per-column bias holds those columns (checked against n).
                    unsafe {
                        let dst = t.c.add(r * t.ldc + 16 * h);
                        let mut v = v;
                        if t.accumulate {
                            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
                        }
                        if t.last {
                            if !t.res.is_null() {
                                let res = t.res.add(r * t.ldc + 16 * h);
                                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res));
                            }
                            v = ep.apply_avx512(v, t.row0 + r, t.col0 + 16 * h, cols);
                        }
                        _mm512_mask_storeu_ps(dst, mask, v);
                    }
                }
            }
            return;
        }
        // An epilogue with a transcendental: through the scalar store, 16 columns at a time.
        for h in 0..halves {
            let cols = t.cols.saturating_sub(16 * h).min(16);
            if cols == 0 {
                continue;
            }
            let mut spill = [[0f32; NR]; MR];
            for (r, row) in acc.iter().enumerate() {
                // SAFETY: AVX-512F (the precondition); `spill[r]` is an array of NR = 16
                // floats, what one store writes. (r < R ≤ MR rows of it.)
                unsafe { _mm512_storeu_ps(spill[r].as_mut_ptr(), row[h]) };
            }
            let shift = t.crop.col(t.col0 + 16 * h) - t.crop.col(t.col0);
            let part = Tile {
                // SAFETY: `shift` is where column col0 + 16·h (a column of this tile, as
                // cols > 16·h) or the next kept one is stored in row 0: at most one past
                // the row's last stored float, inside C's buffer. `part` is this tile's
                // columns 16·h .. 16·h + cols, so it holds the invariant too.
                c: unsafe { t.c.add(shift) },
                res: if t.res.is_null() {
                    t.res
                } else {
                    t.res.wrapping_add(shift)
                },
                cols,
                col0: t.col0 + 16 * h,
                ..*t
            };
            // SAFETY: `part` holds the invariant for C and `res` (above) and has at most
            // 16 = NR columns.
            unsafe { store(&part, &mut spill, ep) };
        }
    }

    /// The AVX2+FMA tile: 6 rows × 2 ymm, `R` valid rows.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `t` holds [`Tile`]'s invariant with `t.rows == R`
    /// and `t.cols` ≤ NR.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<const R: usize, const PACKED_A: bool>(t: &Tile, ep: &Epilogue) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut a = t.a;
        let mut b = t.b;
        // Packed A keeps a tile's rows adjacent: constant offsets, no pointer arithmetic.
        let a_rs = if PACKED_A { 1 } else { t.a_rs };
        let mut tab = t.b_tab;
        for _ in 0..t.k {
            if !tab.is_null() {
                // SAFETY: a non-null table has k entries; this is entry kk < k (one per
                // iteration), and `tab` ends one past the last. Row kk then starts at
                // `b + tab[kk]`, inside B (the tile's invariant).
                unsafe {
                    b = t.b.add(*tab);
                    tab = tab.add(1);
                }
            }
            // SAFETY: AVX2 (the precondition); B's row kk has NR = 16 readable floats.
            let (b0, b1) = unsafe { (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))) };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: `a` is A at step kk, `r·a_rs` its row r < R = rows (`a_rs` is 1
                // for a packed A): a readable element (the invariant).
                let x = unsafe { _mm256_broadcast_ss(&*a.add(r * a_rs)) };
                row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                row[1] = _mm256_fmadd_ps(x, b1, row[1]);
            }
            // SAFETY: after the last step `a` is `k·a_ks` on, still inside A's slice or one
            // past it (the next packed panel, or row 0's end, whose later rows are A's).
            a = unsafe { a.add(t.a_ks) };
            if t.b_tab.is_null() {
                // Past the last row this can leave B's buffer (a row-major B's last row is
                // shorter than its stride), and is never read: no `add`.
                b = b.wrapping_add(t.b_ks);
            }
        }
        let fast = t.cols == NR && t.crop.pw == 0 && (!t.last || ep.is_vectorizable());
        if fast {
            for (r, row) in acc.iter().enumerate() {
                let (mut v0, mut v1) = (row[0], row[1]);
                if t.accumulate {
                    // SAFETY: AVX2 (the precondition); `fast` means 16 columns and no crop,
                    // so row r < rows holds 16 floats of C from `c + r·ldc`.
                    unsafe {
                        let dst = t.c.add(r * t.ldc);
                        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(dst));
                        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8)));
                    }
                }
                if t.last {
                    // SAFETY: AVX2 (the precondition); a non-null residual is laid out like
                    // C, so it too has 16 floats from `r·ldc`; a per-column bias holds the
                    // tile's 16 columns from `col0` (checked against n).
                    unsafe {
                        if !t.res.is_null() {
                            let res = t.res.add(r * t.ldc);
                            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(res));
                            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(res.add(8)));
                        }
                        v0 = ep.apply_avx2(v0, t.row0 + r, t.col0);
                        v1 = ep.apply_avx2(v1, t.row0 + r, t.col0 + 8);
                    }
                }
                // SAFETY: as for the loads above: 16 floats of C in row r.
                unsafe {
                    let dst = t.c.add(r * t.ldc);
                    _mm256_storeu_ps(dst, v0);
                    _mm256_storeu_ps(dst.add(8), v1);
                }
            }
            return;
        }
        let mut spill = [[0f32; NR]; MR];
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: AVX2 (the precondition); `spill[r]` (r < R ≤ MR) is an array of 16
            // floats, what the two 8-float stores write.
            unsafe {
                _mm256_storeu_ps(spill[r].as_mut_ptr(), row[0]);
                _mm256_storeu_ps(spill[r].as_mut_ptr().add(8), row[1]);
            }
        }
        // SAFETY: `store`'s contract is this function's (`t.cols` ≤ NR).
        unsafe { store(t, &mut spill, ep) };
    }
}

/// Which tile implementation this CPU runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2 + FMA: 6×16 tiles in 12 ymm accumulators.
    Avx2,
    /// AVX-512F: 6×64 tiles in 24 zmm accumulators (twice AVX2's FLOPs per cycle on CPUs
    /// with two 512-bit FMA units; the same on those that split them, like Zen 4).
    Avx512,
}

impl Isa {
    /// The best this CPU supports (honours `MCC_ISA=scalar` to force the fallback).
    pub fn detect() -> Isa {
        if std::env::var("MCC_ISA").is_ok_and(|v| v == "scalar") {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let no512 = std::env::var("MCC_ISA").is_ok_and(|v| v == "avx2");
            if !no512 && is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            return Isa::Avx2;
        }
        Isa::Scalar
    }

    /// Whether this CPU has the instructions `self` names (whatever `MCC_ISA` says). An
    /// `Isa` can be named freely, so every kernel that takes one from its caller checks
    /// this before it runs code compiled for it.
    pub fn runs_here(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Whether the CPU has AVX2 and FMA (for the vectorized memory-bound kernels).
    pub fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512)
    }

    /// Columns of C per register tile.
    pub fn tile_cols(self) -> usize {
        if self == Isa::Avx512 { 4 * NR } else { NR }
    }

    /// [`Isa::detect`], once per process.
    pub fn cached() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(Isa::detect)
    }

    /// Its name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }
}

/// An [`Isa`] this CPU runs ([`Isa::runs_here`]): the only kind [`run_tile`] takes, so its
/// dispatch to code compiled for the ISA is sound by construction.
#[derive(Clone, Copy, Debug)]
struct Runnable(Isa);

impl Runnable {
    /// `isa`, if this CPU runs it.
    fn new(isa: Isa) -> Result<Runnable, String> {
        if isa.runs_here() {
            Ok(Runnable(isa))
        } else {
            Err(format!("this CPU cannot run {}", isa.name()))
        }
    }
}

/// The AVX-512 tile for `t.rows` rows (1 to MR), `G` column groups.
///
/// # Safety
/// As [`kernels::avx512`]'s for `R = t.rows`: AVX-512F, AVX2 and FMA, and a tile that holds
/// [`Tile`]'s invariant with `G == t.cols.div_ceil(16)`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn avx512_rows<const G: usize, const TAB: bool, const PACKED_A: bool>(
    t: &Tile,
    ep: &Epilogue,
) {
    // SAFETY: this function's contract, with R = t.rows (rows are 1 to MR = 6, so the last
    // arm has R = 6 = t.rows too).
    unsafe {
        match t.rows {
            1 => kernels::avx512::<1, G, TAB, PACKED_A>(t, ep),
            2 => kernels::avx512::<2, G, TAB, PACKED_A>(t, ep),
            3 => kernels::avx512::<3, G, TAB, PACKED_A>(t, ep),
            4 => kernels::avx512::<4, G, TAB, PACKED_A>(t, ep),
            5 => kernels::avx512::<5, G, TAB, PACKED_A>(t, ep),
            _ => kernels::avx512::<6, G, TAB, PACKED_A>(t, ep),
        }
    }
}

/// Runs tile `t` (which holds [`Tile`]'s invariant, as every driver's tiles do, with
/// 1 to MR rows and at most `isa.tile_cols()` columns) with `isa`'s kernel.
#[allow(unsafe_code)]
fn run_tile(isa: Runnable, t: &Tile, ep: &Epilogue) {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Runnable` Avx2 means this CPU has AVX2 and FMA. The tile holds the
        // invariant with at most NR (the AVX2 tile width) columns; its rows (1 to MR) pick
        // the kernel with R = rows, and `a_rs == 1` the packed-A one, whose rows are 1
        // float apart (with a single row the stride is never used).
        Isa::Avx2 => unsafe {
            match (t.rows, t.a_rs == 1) {
                (1, _) => kernels::avx2::<1, true>(t, ep),
                (2, true) => kernels::avx2::<2, true>(t, ep),
                (3, true) => kernels::avx2::<3, true>(t, ep),
                (4, true) => kernels::avx2::<4, true>(t, ep),
                (5, true) => kernels::avx2::<5, true>(t, ep),
                (_, true) => kernels::avx2::<6, true>(t, ep),
                (2, false) => kernels::avx2::<2, false>(t, ep),
                (3, false) => kernels::avx2::<3, false>(t, ep),
                (4, false) => kernels::avx2::<4, false>(t, ep),
                (5, false) => kernels::avx2::<5, false>(t, ep),
                (_, false) => kernels::avx2::<6, false>(t, ep),
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `Runnable` Avx512 means this CPU has AVX-512F, AVX2 and FMA. The tile
        // holds the invariant with 1 to 64 columns, so G = cols.div_ceil(16) is 1 to 4, the
        // arm taken (`clamp` changes nothing); TAB and PACKED_A say what the tile has (a
        // table; rows 1 float apart).
        Isa::Avx512 => unsafe {
            match (
                t.cols.div_ceil(16).clamp(1, 4),
                !t.b_tab.is_null(),
                t.a_rs == 1,
            ) {
                (1, false, false) => avx512_rows::<1, false, false>(t, ep),
                (2, false, false) => avx512_rows::<2, false, false>(t, ep),
                (3, false, false) => avx512_rows::<3, false, false>(t, ep),
                (_, false, false) => avx512_rows::<4, false, false>(t, ep),
                (1, true, false) => avx512_rows::<1, true, false>(t, ep),
                (2, true, false) => avx512_rows::<2, true, false>(t, ep),
                (3, true, false) => avx512_rows::<3, true, false>(t, ep),
                (_, true, false) => avx512_rows::<4, true, false>(t, ep),
                (1, false, true) => avx512_rows::<1, false, true>(t, ep),
                (2, false, true) => avx512_rows::<2, false, true>(t, ep),
                (3, false, true) => avx512_rows::<3, false, true>(t, ep),
                (_, false, true) => avx512_rows::<4, false, true>(t, ep),
                (1, true, true) => avx512_rows::<1, true, true>(t, ep),
                (2, true, true) => avx512_rows::<2, true, true>(t, ep),
                (3, true, true) => avx512_rows::<3, true, true>(t, ep),
                (_, true, true) => avx512_rows::<4, true, true>(t, ep),
            }
        },
        // SAFETY: the scalar kernel needs no CPU feature; on the Scalar ISA a tile has at
        // most NR columns (its `tile_cols`) and holds the invariant.
        _ => unsafe { kernels::scalar(t, ep) },
    }
}

/// C[M×N] = A·B + epilogue, A packed (`m × k`), B row-major with row stride `ldb` (`k × n`),
/// C row-major with row stride `ldc`. Columns `[col_begin, col_end)` only (for threads).
pub fn gemm_packed_a(
    isa: Isa,
    a: PackedA<'_>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
) -> Result<(), String> {
    let (m, k) = (a.m, a.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = Runnable::new(isa)?;
    if (k > 0 && b.len() < (k - 1) * ldb + n)
        || c.len() < (m - 1) * ldc + n
        || ldc < n
        || a.data.len() < pack_a_len(m, k)
    {
        return Err(format!("gemm: operands too small for {m}×{k}×{n}"));
    }
    ep.check(m, n, c.len().min((m - 1) * ldc + n))?;
    let tw = isa.0.tile_cols();
    with_buffer(&EDGE, k.clamp(1, KC + KC / 2) * tw, |edge| {
        drive_packed_a(
            isa,
            a,
            n,
            c,
            ldc,
            ep,
            cols,
            Crop::NONE,
            true,
            |j, w, k0, kc| {
                // B block: rows k0..k0+kc, columns j..j+w. A partial block is copied so the tile
                // can always read a full tile width (a full one is B's own rows: j + tw ≤ n,
                // and B holds (k − 1)·ldb + n floats).
                if w == tw {
                    return (b[k0 * ldb + j..].as_ptr(), ldb, std::ptr::null());
                }
                for kk in 0..kc {
                    let row = &b[(k0 + kk) * ldb + j..(k0 + kk) * ldb + j + w];
                    edge[kk * tw..kk * tw + w].copy_from_slice(row);
                    edge[kk * tw + w..(kk + 1) * tw].fill(0.0);
                }
                (edge.as_ptr(), tw, std::ptr::null())
            },
        );
    });
    Ok(())
}

/// C[M×N] = A·B + epilogue, A row-major with row stride `lda` (`m × k`), B packed
/// (`k × n`), C row-major with row stride `ldc`. Only `rows`, and only the NR-column panels
/// that start in `cols` (for threads: split columns at multiples of NR).
#[allow(unsafe_code)]
pub fn gemm_packed_b(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: PackedB<'_>,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> Result<(), String> {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = Runnable::new(isa)?;
    if a.len() < (m - 1) * lda + k
        || c.len() < (m - 1) * ldc + n
        || ldc < n
        || lda < k
        || b.data.len() < pack_b_len(k, n)
    {
        return Err(format!("gemm: operands too small for {m}×{k}×{n}"));
    }
    ep.check(m, n, c.len().min((m - 1) * ldc + n))?;
    let panels = n.div_ceil(NR);
    let (r0, r1) = (rows.start, rows.end.min(m));
    let mut k0 = 0;
    loop {
        let kc = KC.min(k - k0);
        // Tiles of `step` panels (four with AVX-512: 64 columns, each panel K·NR on).
        let step = isa.0.tile_cols() / NR;
        let first = cols.start.div_ceil(NR);
        for p in (first..panels)
            .step_by(step)
            .take_while(|p| p * NR < cols.end)
        {
            let w = (step * NR)
                .min(n - p * NR)
                .min(cols.end.max(p * NR) - p * NR);
            let mut i = r0;
            while i < r1 {
                let h = MR.min(r1 - i);
                let t = Tile {
                    k: kc,
                    a: a[i * lda + k0..].as_ptr(),
                    a_rs: lda,
                    a_ks: 1,
                    b: b.data[(p * k + k0) * NR..].as_ptr(),
                    b_ks: NR,
                    b_hs: k * NR,
                    b_tab: std::ptr::null(),
                    // SAFETY: i < m and p·NR < n, so `i·ldc + p·NR` ≤ (m − 1)·ldc + n − 1 is
                    // inside C (checked above). The tile's w columns end at n or before, its
                    // h rows at m; A's rows i.. hold k floats each (checked), and B's panels
                    // p .. p + w.div_ceil(16) exist, K·NR apart: the tile's invariant.
                    c: unsafe { c.as_mut_ptr().add(i * ldc + p * NR) },
                    ldc,
                    rows: h,
                    cols: w,
                    accumulate: k0 > 0,
                    last: k0 + kc >= k,
                    row0: i,
                    col0: p * NR,
                    crop: Crop::NONE,
                    res: ep.residual.map_or(std::ptr::null(), |r| {
                        r.as_ptr().wrapping_add(i * ldc + p * NR)
                    }),
                };
                run_tile(isa, &t, ep);
                i += MR;
            }
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
    Ok(())
}

/// Floats of B laid out as panels for [`gemm_packed_a_panels`] (`k × n`, panels `width` wide).
pub fn panels_len(k: usize, n: usize, width: usize) -> usize {
    n.div_ceil(width) * k * width
}

/// Like [`gemm_packed_a`], with B already in panels `[n / width][k][width]` (zero past n),
/// `width = isa.tile_cols()`: every tile reads B contiguously. `cols` must start at a
/// multiple of `width`.
pub fn gemm_packed_a_panels(
    isa: Isa,
    a: PackedA<'_>,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
) -> Result<(), String> {
    let (m, k) = (a.m, a.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = Runnable::new(isa)?;
    let tw = isa.0.tile_cols();
    if b.len() < panels_len(k, n, tw)
        || c.len() < (m - 1) * ldc + n
        || ldc < n
        || a.data.len() < pack_a_len(m, k)
        || !cols.start.is_multiple_of(tw)
    {
        return Err(format!("gemm: operands do not fit {m}×{k}×{n}"));
    }
    ep.check(m, n, c.len().min((m - 1) * ldc + n))?;
    drive_packed_a(
        isa,
        a,
        n,
        c,
        ldc,
        ep,
        cols,
        Crop::NONE,
        false,
        |j, _, k0, _| {
            (
                b[(j / tw) * k * tw + k0 * tw..].as_ptr(),
                tw,
                std::ptr::null(),
            )
        },
    );
    Ok(())
}

/// Like [`gemm_packed_a`] with an indirect B: row kk of B is `base[tab[kk]..]` (`n`
/// columns, plus one tile width of readable slack). A stride-1 convolution reads its
/// zero-padded input this way, with no im2col copy, and squeezes the padding columns out of
/// its result with `crop` (C's rows are then `crop.kept(n)` long).
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_a_indirect(
    isa: Isa,
    a: PackedA<'_>,
    base: &[f32],
    tab: &[usize],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    crop: Crop,
) -> Result<(), String> {
    let (m, k) = (a.m, a.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let isa = Runnable::new(isa)?;
    let tw = isa.0.tile_cols();
    let reach = tab.iter().max().copied().unwrap_or(0) + n.div_ceil(tw) * tw;
    let kept = crop.kept(n);
    if tab.len() != k
        || base.len() < reach
        || c.len() < (m - 1) * ldc + kept
        || ldc < kept
        || (crop.pw != 0 && (crop.ow > crop.pw || matches!(ep.bias, Bias::PerCol(_))))
        || a.data.len() < pack_a_len(m, k)
    {
        return Err(format!("gemm: operands do not fit {m}×{k}×{n}"));
    }
    ep.check(m, n, c.len().min((m - 1) * ldc + n))?;
    drive_packed_a(isa, a, n, c, ldc, ep, 0..n, crop, false, |j, _, k0, _| {
        (base[j..].as_ptr(), 0, tab[k0..].as_ptr())
    });
    Ok(())
}

/// Copies one B row of a tile width (16 or 64 floats) with fixed-size moves, not a call.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    match (
        <&mut [f32; 64]>::try_from(&mut *dst),
        <&[f32; 64]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
    }
}

/// The K block at `k0` of a depth-`k` product: all of it when it is short (one pass, no
/// accumulation), else [`KC`].
fn k_block(k: usize, k0: usize) -> usize {
    if k <= KC + KC / 2 {
        k - k0
    } else {
        KC.min(k - k0)
    }
}

/// The loop nest of every packed-A GEMM: column blocks of a tile width, K blocks, then the
/// A panels. `b_at(j, w, k0, kc)` says where the tile reads B for columns `j..j + w` and
/// rows `k0..k0 + kc`: a pointer, the row stride, and an optional row-offset table (of `kc`
/// entries), with a tile width of readable floats at every row. The caller has checked A
/// (`pack_a_len(m, k)` floats), C (`m` rows of `ldc`, the last `crop.kept(n)` long) and the
/// epilogue.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
fn drive_packed_a(
    isa: Runnable,
    a: PackedA<'_>,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
    crop: Crop,
    repack: bool,
    mut b_at: impl FnMut(usize, usize, usize, usize) -> (*const f32, usize, *const usize),
) {
    let (m, k) = (a.m, a.k);
    let tw = isa.0.tile_cols();
    let panels = m.div_ceil(MR);
    // With several A panels, the B block is read once per panel: copied into one contiguous
    // block first, its rows cannot evict each other from L1 (rows of an unpacked B lie a
    // large, often power-of-two-ish stride apart and fall into a few cache sets). Measured:
    // worth it for a plain B with 4+ panels; not for a convolution's indirect B.
    let repack = repack && panels >= 4;
    let len = if repack { k.min(KC + KC / 2) * tw } else { 0 };
    with_buffer(&BLOCK, len, |block| {
        // Columns in chunks whose C block stays in L2 across the K blocks, K blocks within a
        // chunk, so each A block (all panels × KC, in L2 too) serves the whole chunk: a large A
        // (the weights of a deep layer) is streamed from memory once per chunk, not once per
        // tile column.
        let end = cols.end.min(n);
        let chunk = (C_CHUNK / (m.max(1) * 4)).max(tw) / tw * tw;
        let mut jc = cols.start;
        while jc < end {
            let jc_end = (jc + chunk).min(end);
            let mut k0 = 0;
            while k0 < k.max(1) {
                let kc = k_block(k, k0);
                let mut j = jc;
                while j < jc_end {
                    let w = tw.min(jc_end - j);
                    let (mut b, mut b_ks, mut b_tab) = b_at(j, w, k0, kc);
                    if repack {
                        for (kk, dst) in block.chunks_exact_mut(tw).take(kc).enumerate() {
                            // SAFETY: kk < kc, so the table (if any) has entry kk, and `b_at`
                            // promises `tw` readable floats at row kk, which nothing writes
                            // while this slice lives (`block` is this thread's own buffer).
                            let row = unsafe {
                                let off = if b_tab.is_null() {
                                    kk * b_ks
                                } else {
                                    *b_tab.add(kk)
                                };
                                std::slice::from_raw_parts(b.add(off), tw)
                            };
                            copy_row(dst, row);
                        }
                        (b, b_ks, b_tab) = (block.as_ptr(), tw, std::ptr::null());
                    }
                    for p in 0..panels {
                        let t = Tile {
                            k: kc,
                            a: a.data[(p * k + k0) * MR..].as_ptr(),
                            a_rs: 1,
                            a_ks: MR,
                            b,
                            b_ks,
                            b_hs: NR,
                            b_tab,
                            // SAFETY: p·MR < m and j < n, so row p·MR's stored column
                            // `crop.col(j)` ≤ crop.kept(n) is inside C or one past its end
                            // (checked by the caller). The tile (rows to m, columns j..j + w
                            // ≤ n, A's panel p from block k0, B as `b_at` promises, the
                            // residual checked like C) holds the invariant.
                            c: unsafe { c.as_mut_ptr().add(p * MR * ldc + crop.col(j)) },
                            ldc,
                            rows: MR.min(m - p * MR),
                            cols: w,
                            accumulate: k0 > 0,
                            last: k0 + kc >= k,
                            row0: p * MR,
                            col0: j,
                            crop,
                            res: ep.residual.map_or(std::ptr::null(), |r| {
                                r.as_ptr().wrapping_add(p * MR * ldc + crop.col(j))
                            }),
                        };
                        run_tile(isa, &t, ep);
                    }
                    j += tw;
                }
                if k == 0 {
                    break;
                }
                k0 += kc;
            }
            jc = jc_end;
        }
    });
}

thread_local! {
    /// Partial B tiles copied to a full tile width ([`gemm_packed_a`]).
    static EDGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Repacked B blocks ([`drive_packed_a`]).
    static BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer `slot`, at least `len` floats (grown, never shrunk:
/// no allocation per call once a model has run).
fn with_buffer<R>(
    slot: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered (never, as the kernels do not nest): a private buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Bytes of C a packed-A GEMM keeps in L2 while it runs the K blocks over them.
const C_CHUNK: usize = 512 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::epilogue::{Act, Bias, GeluChain};
    use crate::testing::uniform;

    /// An activation with erf in the epilogue (computed a tile at a time in its vector form)
    /// gives the bits of the product without it followed by the activation value by value, on
    /// every ISA this CPU runs, for edge tiles (rows and columns not multiples of the tile)
    /// and a NaN in A.
    #[test]
    fn an_erf_epilogue_is_the_activation_after_the_product() {
        let (m, k, n) = (13, 7, 37);
        let mut a = uniform(21, m * k);
        a[5] = f32::NAN;
        let b = uniform(22, k * n);
        let bias: Vec<f32> = uniform(23, n).iter().map(|v| v * 3.0).collect();
        let packed = pack_b(&b, k, n, n, 1);
        let pb = PackedB {
            k,
            n,
            data: &packed,
        };
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if !isa.runs_here() {
                continue;
            }
            for act in [Act::Erf, Act::Gelu, Act::GeluChain(GeluChain::ALL[0])] {
                let run = |act| {
                    let mut c = vec![f32::NAN; m * n];
                    let ep = Epilogue {
                        bias: Bias::PerCol(&bias),
                        residual: None,
                        act,
                    };
                    gemm_packed_b(isa, &a, k, m, pb, &mut c, n, &ep, 0..m, 0..n).unwrap();
                    c
                };
                let plain = run(Act::None);
                let fused = run(act);
                for (i, (&p, &f)) in plain.iter().zip(&fused).enumerate() {
                    let want = act.apply(p);
                    assert!(
                        want.to_bits() == f.to_bits() || (want.is_nan() && f.is_nan()),
                        "{isa:?} {act:?} at {i}: {f} vs {want}"
                    );
                }
                assert!(fused[0].is_nan(), "the NaN in A's first row reaches C");
            }
        }
    }
}
