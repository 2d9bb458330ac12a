//! Sparse fully connected layers: C[m×n] = A[m×k]·B[k×n] (+ epilogue) with only B's nonzero
//! weights stored, column by column ([`SparseB`]: the CSR form of Bᵀ).
//!
//! Unstructured sparsity does not vectorize along a weight row, so the kernel vectorizes
//! along the *batch*: a tile of up to [`TILE`] rows of A is transposed into scratch
//! (`xt[k][TILE]`, one input feature's values for every row of the tile side by side), and
//! each output column is then a sum over its nonzeros of `w · xt[i]`, whole vectors of rows
//! at a time (four 16-lane vectors on AVX-512, four 8-lane ones on AVX2). A single row (one
//! sample) has nothing to vectorize over and takes a gather loop with four scalar
//! accumulators.
//!
//! A stored zero is skipped, so a pruned weight contributes nothing even against an
//! infinite or NaN input, where a dense kernel would compute `0·∞ = NaN`.
//!
//! Whether the sparse kernel pays for a layer is [`pays`]: the measured crossover against
//! the dense GEMM (`bench/results-sparse-crossover.md`), decided from the layer's shape and nonzero
//! count alone, so a build never depends on a timing.

use crate::kernels::epilogue::{Act, Bias, Epilogue};
use crate::kernels::gemm::Isa;

/// Rows of A one tile of the batched kernel transposes and computes.
pub const TILE: usize = 64;

/// Floats of the stored form of an `n`-column matrix with `nnz` nonzeros: `n + 1` column
/// offsets, `nnz` row indices (both as the bits of u32s), then the `nnz` values.
pub fn sparse_len(n: usize, nnz: usize) -> usize {
    // Saturating: hostile sizes give a length no weights hold, which callers reject.
    n.saturating_add(1).saturating_add(nnz.saturating_mul(2))
}

/// Floats of scratch the kernel needs for depth `k` (one transposed tile).
pub fn scratch_len(k: usize) -> usize {
    k.saturating_mul(TILE)
}

/// Whether the sparse kernel is at least as fast as the dense GEMM for a `k × n` weight with
/// `nnz` nonzeros, at every batch.
///
/// One sample decides it: there the sparse kernel is a gather loop and the dense one streams
/// the weights, and the sparse kernel's lead is smallest (at a batch of 64 it wins up to about
/// 30% density). Measured on one thread of an AMD EPYC Zen 4 (AVX-512), by the
/// `sparse_crossover` example (`bench/results-sparse-crossover.md`), the single-sample times
/// are close to `0.32 ns` per nonzero plus `2.6 ns` per column for the sparse kernel and
/// `0.039 ns` per weight for the dense one, so the sparse kernel pays up to a density of
/// about `0.123 − 8.2/k`; but about one run in four on that VM is slower throughout, and the
/// gather loop more so (at k = 784 the crossover falls from about 12% to 10%). The rule keeps
/// below the slower runs' crossover: [`max_density`] is 0.092 at k = 784, 0.072 at k = 300.
pub fn pays(k: usize, n: usize, nnz: usize) -> bool {
    let weights = k.saturating_mul(n) as f64;
    weights > 0.0 && (nnz as f64) <= max_density(k) * weights
}

/// The density (nonzeros / weights) up to which [`pays`] holds at depth `k` (negative when
/// the columns are too short for it to pay at all).
pub fn max_density(k: usize) -> f64 {
    MAX_DENSITY - COLUMN_COST / k.max(1) as f64
}

/// The density the sparse kernel pays up to on long columns (see [`pays`]).
pub const MAX_DENSITY: f64 = 0.105;

/// What each column's fixed cost takes off [`MAX_DENSITY`], times the depth (see [`pays`]).
const COLUMN_COST: f64 = 10.0;

/// B's nonzeros by column: column `j`'s are entries `ptr[j]..ptr[j + 1]` of `idx` (their
/// rows, `< k`) and `val`. Built only by [`SparseB::new`], which checks exactly that, so the
/// kernels index `xt` with `idx` unchecked.
#[derive(Clone, Copy, Debug)]
pub struct SparseB<'a> {
    k: usize,
    n: usize,
    /// `n + 1` offsets, as f32 bits.
    ptr: &'a [f32],
    /// Row indices, as f32 bits.
    idx: &'a [f32],
    /// Values.
    val: &'a [f32],
}

impl<'a> SparseB<'a> {
    /// Reads the stored form ([`sparse_len`] floats at the start of `words`), checking that the
    /// offsets start at 0, never decrease and end at the nonzero count, and that every row
    /// index is below `k`.
    pub fn new(k: usize, n: usize, words: &'a [f32]) -> Result<SparseB<'a>, String> {
        let bad = |what: &str| Err(format!("sparse weights ({k}×{n}): {what}"));
        let Some(ptr) = n.checked_add(1).and_then(|len| words.get(..len)) else {
            return bad("the column offsets are cut short");
        };
        if ptr[0].to_bits() != 0 {
            return bad("the first column offset is not 0");
        }
        if ptr.windows(2).any(|p| p[1].to_bits() < p[0].to_bits()) {
            return bad("the column offsets decrease");
        }
        let nnz = ptr[n].to_bits() as usize;
        let Some(rest) = words.get(n + 1..sparse_len(n, nnz)) else {
            return bad("the nonzeros are cut short");
        };
        let (idx, val) = rest.split_at(nnz);
        let top = idx.iter().fold(0u32, |m, i| m.max(i.to_bits()));
        if !idx.is_empty() && top as usize >= k {
            return bad("a row index is out of range");
        }
        Ok(SparseB {
            k,
            n,
            ptr,
            idx,
            val,
        })
    }

    /// The stored form at the start of `words`, unchecked: for words that [`SparseB::new`]
    /// has accepted before (checking costs about a cycle per nonzero, as much as one
    /// sample's product).
    ///
    /// # Safety
    /// `SparseB::new(k, n, words)` returned `Ok` for these same `k`, `n` and words, unchanged
    /// since. (Then the kernels' unchecked reads of the transposed input stay in bounds.)
    #[allow(unsafe_code)]
    pub unsafe fn trusted(k: usize, n: usize, words: &'a [f32]) -> SparseB<'a> {
        let nnz = words[n].to_bits() as usize;
        let (idx, val) = words[n + 1..sparse_len(n, nnz)].split_at(nnz);
        SparseB {
            k,
            n,
            ptr: &words[..n + 1],
            idx,
            val,
        }
    }

    /// Nonzeros.
    pub fn nnz(&self) -> usize {
        self.val.len()
    }

    /// Column `j`'s entries.
    #[inline(always)]
    fn col(&self, j: usize) -> std::ops::Range<usize> {
        self.ptr[j].to_bits() as usize..self.ptr[j + 1].to_bits() as usize
    }
}

/// Packs `b` (`k × n`, B[k, j] = `b[k·row_stride + j·col_stride]`, so a transposed weight
/// matrix packs without a copy) into the stored form, keeping the elements whose bits are not
/// all zero. `None` when the nonzeros do not fit the u32 offsets.
pub fn pack_sparse(
    b: &[f32],
    k: usize,
    n: usize,
    row_stride: usize,
    col_stride: usize,
) -> Option<Vec<f32>> {
    let mut ptr = Vec::with_capacity(n + 1);
    let (mut idx, mut val) = (vec![], vec![]);
    ptr.push(0u32);
    for j in 0..n {
        for kk in 0..k {
            let v = b[kk * row_stride + j * col_stride];
            if v.to_bits() != 0 {
                idx.push(u32::try_from(kk).ok()?);
                val.push(v);
            }
        }
        ptr.push(u32::try_from(val.len()).ok()?);
    }
    let mut out: Vec<f32> = ptr.into_iter().map(f32::from_bits).collect();
    out.extend(idx.into_iter().map(f32::from_bits));
    out.extend(val);
    Some(out)
}

/// C = A·B (+ `ep`) for A's rows `0..m` (`lda` apart) and B's columns `cols`: C[i, j] lands at
/// `c[i·ldc + j − cols.start]`, so a task computing some columns views only its part of C.
/// `scratch` holds at least [`scratch_len`]`(k)` floats when `m > 1`.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub fn sparse_dense(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &SparseB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
    scratch: &mut [f32],
) -> Result<(), String> {
    let (k, n) = (b.k, b.n);
    let width = cols.len();
    if m == 0 || width == 0 {
        return Ok(());
    }
    // Extents computed checked: a product that overflows is too small an operand, never a
    // wrapped bound.
    let extent = |ld: usize, last: usize| (m - 1).checked_mul(ld)?.checked_add(last);
    if cols.end > n
        || lda < k
        || ldc < width
        || extent(lda, k).is_none_or(|e| a.len() < e)
        || extent(ldc, width).is_none_or(|e| c.len() < e)
    {
        return Err(format!("sparse dense: operands too small for {m}×{k}×{n}"));
    }
    ep.check(m, n, 0)?;
    if ep.residual.is_some() {
        return Err("sparse dense: no residual input".into());
    }
    if m == 1 {
        gather_row(a, b, c, ep, cols);
        return Ok(());
    }
    let xt = scratch
        .get_mut(..scratch_len(k))
        .ok_or("sparse dense: the scratch buffer is too small")?;
    let isa = if isa.runs_here() { isa } else { Isa::Scalar };
    let lanes = |rows: usize| match isa {
        Isa::Avx512 => rows.next_multiple_of(16),
        Isa::Avx2 | Isa::Scalar => rows.next_multiple_of(8),
    };
    by_tiles(isa, a, lda, m, k, xt, lanes, |xt, rows, lanes, r0| {
        tile(
            isa,
            xt,
            b,
            cols.clone(),
            rows,
            lanes,
            &mut c[r0 * ldc..],
            ldc,
            ep,
            r0,
        )
    });
    Ok(())
}

/// The batched loop of the sparse kernels (this one and
/// [`crate::kernels::block_sparse`]): every tile of up to [`TILE`] rows of A (`m` rows of `k`
/// floats, `lda` apart) is transposed into `xt` ([`transpose`], its rows padded with zeros to
/// `lanes(rows)`), then `tile(xt, rows, lanes, r0)` computes the tile starting at row `r0`.
/// The callers checked A's extent and `xt`'s length ([`scratch_len`]).
pub(crate) fn by_tiles(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    xt: &mut [f32],
    lanes: impl Fn(usize) -> usize,
    mut tile: impl FnMut(&[f32], usize, usize, usize),
) {
    let mut r0 = 0;
    while r0 < m {
        let rows = TILE.min(m - r0);
        let l = lanes(rows);
        transpose(isa, &a[r0 * lda..], lda, rows, k, l, xt);
        tile(xt, rows, l, r0);
        r0 += rows;
    }
}

/// `xt[kk·TILE + r] = a[r·lda + kk]` for the tile's `rows` rows, zero for the lanes past them
/// up to `lanes` (the vectors the tile kernel reads).
#[allow(unsafe_code)]
pub(crate) fn transpose(
    isa: Isa,
    a: &[f32],
    lda: usize,
    rows: usize,
    k: usize,
    lanes: usize,
    xt: &mut [f32],
) {
    if rows < lanes {
        for kk in 0..k {
            xt[kk * TILE + rows..kk * TILE + lanes].fill(0.0);
        }
    }
    // Blocks of eight rows by eight features; whole blocks through AVX registers.
    let mut kb = 0;
    while kb < k {
        let kw = 8.min(k - kb);
        let mut r = 0;
        while r < rows {
            let h = 8.min(rows - r);
            #[cfg(target_arch = "x86_64")]
            if h == 8 && kw == 8 && isa.has_avx2() && isa.runs_here() {
                // SAFETY: the CPU has AVX (`runs_here`); rows r..r + 8 of A hold features
                // kb..kb + 8 (`(r + 7)·lda + kb + 8 ≤ (rows − 1)·lda + k ≤ a.len()`, checked by
                // the caller), and xt's rows kb..kb + 8 hold lanes r..r + 8 (r + 8 ≤ TILE).
                unsafe {
                    transpose8(
                        a.as_ptr().add(r * lda + kb),
                        lda,
                        xt.as_mut_ptr().add(kb * TILE + r),
                        TILE,
                    )
                };
                r += 8;
                continue;
            }
            for i in 0..h {
                let src = &a[(r + i) * lda + kb..][..kw];
                for (q, v) in src.iter().enumerate() {
                    xt[(kb + q) * TILE + r + i] = *v;
                }
            }
            r += h;
        }
        kb += kw;
    }
}

/// Transposes the 8×8 block at `src` (rows `lda` apart) into `dst` (rows `ldd` apart).
///
/// # Safety
/// The CPU has AVX; `src + i·lda .. + 8` and `dst + i·ldd .. + 8` are valid for i < 8.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx")]
pub(crate) unsafe fn transpose8(src: *const f32, lda: usize, dst: *mut f32, ldd: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the contract.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lda)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (i, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(i * ldd), v);
        }
    }
}

/// One row: column by column, a sum over the column's nonzeros, four accumulators.
fn gather_row(a: &[f32], b: &SparseB, c: &mut [f32], ep: &Epilogue, cols: std::ops::Range<usize>) {
    let x = &a[..b.k];
    for (o, j) in c.iter_mut().zip(cols) {
        let e = b.col(j);
        let (idx, val) = (&b.idx[e.clone()], &b.val[e]);
        let mut s = [0f32; 4];
        let mut ic = idx.chunks_exact(4);
        let mut vc = val.chunks_exact(4);
        for (i, v) in (&mut ic).zip(&mut vc) {
            for l in 0..4 {
                s[l] += v[l] * x[i[l].to_bits() as usize];
            }
        }
        for (i, v) in ic.remainder().iter().zip(vc.remainder()) {
            s[0] += v * x[i.to_bits() as usize];
        }
        *o = ep.apply((s[0] + s[1]) + (s[2] + s[3]), 0, j);
    }
}

/// Columns one pass of the tile kernel computes before writing them back.
const COLS: usize = 8;

/// The tile of rows `r0..r0 + rows` (transposed into `xt`, zero up to `lanes`): for each
/// block of [`COLS`] columns, the ISA's kernel sums each column's nonzeros into `ot` (one row
/// of lanes per column), the epilogue runs on those rows, and they are transposed back into C.
#[allow(clippy::too_many_arguments, unsafe_code)]
fn tile(
    isa: Isa,
    xt: &[f32],
    b: &SparseB,
    cols: std::ops::Range<usize>,
    rows: usize,
    lanes: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    r0: usize,
) {
    let c0 = cols.start;
    let mut ot = [[0f32; TILE]; COLS];
    let mut jb = cols.start;
    while jb < cols.end {
        let w = COLS.min(cols.end - jb);
        for (jj, o) in ot.iter_mut().enumerate().take(w) {
            let j = jb + jj;
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller ran `runs_here` for this ISA (AVX-512F). `xt` holds
                // k·TILE floats and every index of `b` is below k (`SparseB::new`); lanes ≤
                // TILE, so V = lanes/16 vectors of 16 stay inside each transposed row, and
                // inside `o` (TILE floats).
                Isa::Avx512 => unsafe {
                    match lanes / 16 {
                        1 => col_avx512::<1>(xt, b, j, o),
                        2 => col_avx512::<2>(xt, b, j, o),
                        3 => col_avx512::<3>(xt, b, j, o),
                        _ => col_avx512::<4>(xt, b, j, o),
                    }
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as for AVX-512, with AVX2 and FMA and vectors of 8 lanes: V·8 ≥ lanes
                // and V·8 ≤ 64 = TILE, so a read past `lanes` (V = 4 for 24 lanes, V = 8 for
                // 40 to 56) stays inside the transposed row; those lanes are never written back.
                Isa::Avx2 => unsafe {
                    match lanes / 8 {
                        1 => col_avx2::<1>(xt, b, j, o),
                        2 => col_avx2::<2>(xt, b, j, o),
                        3..=4 => col_avx2::<4>(xt, b, j, o),
                        _ => col_avx2::<8>(xt, b, j, o),
                    }
                },
                _ => col_scalar(xt, b, j, &mut o[..lanes]),
            }
            epilogue(ep, &mut o[..rows], r0, j);
        }
        // Back to C's rows, 8×8 blocks through AVX registers where whole.
        let mut r = 0;
        while r < rows {
            #[cfg(target_arch = "x86_64")]
            if w == COLS && rows - r >= 8 && isa.has_avx2() && isa.runs_here() {
                // SAFETY: the CPU has AVX (`runs_here`). `ot[i][r..r + 8]` for i < 8 are in
                // `ot` (r + 8 ≤ rows ≤ TILE); C's rows r..r + 8 (< rows ≤ m) hold columns
                // jb − c0 .. + 8 ≤ width ≤ ldc, inside `c` (`(m − 1)·ldc + width ≤ c.len()`,
                // checked by `sparse_dense`).
                unsafe {
                    transpose8(
                        ot.as_flattened().as_ptr().add(r),
                        TILE,
                        c.as_mut_ptr().add(r * ldc + jb - c0),
                        ldc,
                    )
                };
                r += 8;
                continue;
            }
            for (jj, o) in ot.iter().enumerate().take(w) {
                c[r * ldc + jb + jj - c0] = o[r];
            }
            r += 1;
        }
        jb += w;
    }
}

/// The epilogue on one column's lanes (rows `r0..`): the bias, then the activation, with
/// the match outside the loop so the common cases vectorize.
pub(crate) fn epilogue(ep: &Epilogue, o: &mut [f32], r0: usize, j: usize) {
    match ep.bias {
        Bias::PerRow(b) => {
            for (r, x) in o.iter_mut().enumerate() {
                *x += b[r0 + r];
            }
        }
        Bias::PerCol(b) => {
            let v = b[j];
            o.iter_mut().for_each(|x| *x += v);
        }
        Bias::None => {}
    }
    match ep.act {
        Act::None => {}
        Act::Relu => o.iter_mut().for_each(|x| *x = Act::Relu.apply(*x)),
        act => o.iter_mut().for_each(|x| *x = act.apply(*x)),
    }
}

/// Portable: column `j`'s sums over all of `o`'s lanes.
fn col_scalar(xt: &[f32], b: &SparseB, j: usize, o: &mut [f32]) {
    o.fill(0.0);
    let e = b.col(j);
    for (i, v) in b.idx[e.clone()].iter().zip(&b.val[e]) {
        let row = &xt[i.to_bits() as usize * TILE..][..o.len()];
        for (s, x) in o.iter_mut().zip(row) {
            *s += v * x;
        }
    }
}

/// Column `j`'s sums over `V` 16-lane vectors, two nonzeros at a time into two sets of
/// accumulators.
///
/// # Safety
/// The CPU has AVX-512F; `xt` holds `b.k · TILE` floats; `16·V ≤ TILE`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn col_avx512<const V: usize>(xt: &[f32], b: &SparseB, j: usize, o: &mut [f32; TILE]) {
    use std::arch::x86_64::*;
    let base = xt.as_ptr();
    let e = b.col(j);
    let (idx, val) = (&b.idx[e.clone()], &b.val[e]);
    let mut s0 = [_mm512_setzero_ps(); V];
    let mut s1 = [_mm512_setzero_ps(); V];
    let mut p = 0;
    while p + 2 <= idx.len() {
        let (w0, w1) = (_mm512_set1_ps(val[p]), _mm512_set1_ps(val[p + 1]));
        // SAFETY: indices are below k (`SparseB::new`), and `i·TILE + 16v + 16 ≤ k·TILE` for
        // v < V ≤ TILE/16: inside `xt` (the contract).
        let (x0, x1) = unsafe {
            (
                base.add(idx[p].to_bits() as usize * TILE),
                base.add(idx[p + 1].to_bits() as usize * TILE),
            )
        };
        for v in 0..V {
            // SAFETY: as above.
            unsafe {
                s0[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0.add(16 * v)), s0[v]);
                s1[v] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x1.add(16 * v)), s1[v]);
            }
        }
        p += 2;
    }
    if p < idx.len() {
        let w0 = _mm512_set1_ps(val[p]);
        // SAFETY: as above.
        let x0 = unsafe { base.add(idx[p].to_bits() as usize * TILE) };
        for (v, s) in s0.iter_mut().enumerate() {
            // SAFETY: as above.
            unsafe { *s = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0.add(16 * v)), *s) };
        }
    }
    for (v, (a, b)) in s0.iter().zip(&s1).enumerate() {
        // SAFETY: 16·v + 16 ≤ 16·V ≤ TILE: inside `o`.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr().add(16 * v), _mm512_add_ps(*a, *b)) };
    }
}

/// Column `j`'s sums over `V` 8-lane vectors.
///
/// # Safety
/// The CPU has AVX2 and FMA; `xt` holds `b.k · TILE` floats; `8·V ≤ TILE`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn col_avx2<const V: usize>(xt: &[f32], b: &SparseB, j: usize, o: &mut [f32; TILE]) {
    use std::arch::x86_64::*;
    let base = xt.as_ptr();
    let e = b.col(j);
    let mut s = [_mm256_setzero_ps(); V];
    for (i, w) in b.idx[e.clone()].iter().zip(&b.val[e]) {
        let w = _mm256_set1_ps(*w);
        // SAFETY: indices are below k (`SparseB::new`), and `i·TILE + 8v + 8 ≤ k·TILE` for
        // v < V ≤ TILE/8: inside `xt` (the contract).
        let x = unsafe { base.add(i.to_bits() as usize * TILE) };
        for (v, s) in s.iter_mut().enumerate() {
            // SAFETY: as above.
            unsafe { *s = _mm256_fmadd_ps(w, _mm256_loadu_ps(x.add(8 * v)), *s) };
        }
    }
    for (v, s) in s.iter().enumerate() {
        // SAFETY: 8·v + 8 ≤ 8·V ≤ TILE: inside `o`.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * v), *s) };
    }
}
