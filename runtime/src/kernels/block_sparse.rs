//! Block-sparse fully connected layers: C[m×n] = A[m×k]·B[k×n] (+ epilogue) with B stored
//! as whole blocks of `r` consecutive outputs (columns of B) × `c` consecutive inputs (rows
//! of B), only the blocks that hold a nonzero ([`BlockB`]: BSR of Bᵀ).
//!
//! Layout, in f32 words: per *block column* (outputs `jb·r .. jb·r + r`) an offset into the
//! block list (`⌈n/r⌉ + 1` offsets, as u32 bits); then each block's input-block index `ib`
//! (inputs `ib·c .. ib·c + c`, as u32 bits); then each block's `r·c` values, input-major —
//! input `ib·c + q`'s weights for the block's `r` outputs side by side. The last block column
//! of an `n` that `r` does not divide is padded with zeros that are never stored to C.
//!
//! Why it is fast where the unstructured kernel ([`crate::kernels::sparse`]) is not: one
//! index stands for `r·c` weights, and the `r` outputs of an input are a vector. With one row
//! (one sample) each block is a broadcast of an input times a vector of the block's `r`
//! weights (4×1: an xmm FMA per block, 8×1: a ymm one), against a gather and a scalar FMA per
//! weight. With a batch, the rows are vectorized as in the unstructured kernel (a tile of up
//! to [`TILE`] rows of A transposed into scratch), and each loaded vector of an input's rows
//! is reused for the block's `r` outputs: `r` FMAs per load instead of one, so the loop runs
//! near the FMA units' peak on the blocks it keeps (CODEGEN.md §3.3 measured a 4×1 loop at
//! 5.5–5.9× a dense GEMV at 90% sparsity).
//!
//! A block that is not stored contributes nothing, even against an infinite or NaN input.
//! Indices are checked once ([`BlockB::new`]), so the loops read A and the scratch
//! unchecked. Whether the kernel pays for a layer is [`pays`], a rule on the layer's shape,
//! block shape and block count measured by `examples/block_crossover.rs`
//! (`bench/results-block-crossover.md`), never a timing at build time.

use crate::kernels::epilogue::Epilogue;
use crate::kernels::gemm::Isa;
use crate::kernels::sparse::{TILE, by_tiles, epilogue};

/// The largest block side (outputs or inputs) the kernel takes.
pub const MAX_SIDE: usize = 16;

/// Rows from which the kernel transposes a tile of A and vectorizes along the batch, for
/// blocks of `r` outputs; fewer rows go one at a time, vectorized along a block's outputs.
/// Measured (`bench/results-block-crossover.md`): a transposed tile costs about as much for
/// 1 row as for 16; four rows together (blocks of 4 or 8 outputs) cost about 2.8× one row
/// (4×1) or 2.4× (8×1), and a single row of 16×1 blocks a seventh of a tile.
pub fn batched_from(r: usize) -> usize {
    match r {
        8 => 10,
        16.. => 8,
        _ => 5,
    }
}

/// Floats of the stored form of an `n`-column matrix with `blocks` blocks of `r × c`:
/// `⌈n/r⌉ + 1` offsets, `blocks` indices, `blocks · r · c` values.
pub fn block_len(n: usize, r: usize, c: usize, blocks: usize) -> usize {
    // Saturating: hostile sizes give a length no weights hold, which callers reject.
    n.div_ceil(r.max(1))
        .saturating_add(1)
        .saturating_add(blocks)
        .saturating_add(blocks.saturating_mul(r).saturating_mul(c))
}

/// Floats of scratch the kernel needs for depth `k` (one transposed tile).
pub fn scratch_len(k: usize) -> usize {
    crate::kernels::sparse::scratch_len(k)
}

/// Whether the block kernel is at least as fast as the dense GEMM for a `k × n` weight with
/// `blocks` nonzero blocks of `r × c` (outputs × inputs), at every batch.
///
/// Small batches decide it: one to four rows, where the dense kernel streams its panels in
/// about the same time for one row as for two, and the block kernel's rows cost each their
/// own pass. Measured on one thread of an AMD EPYC Zen 4 (AVX-512) 2-vCPU VM by the
/// `block_crossover` example (`bench/results-block-crossover.md`, rows 1 to 256, five layer
/// shapes), the kernel stops winning at every batch at about 6% of the weights kept at
/// k = 192, 12% at k = 300 and 20% at k = 800 (4×1); 16%, 17–20% and 30% (8×1); 18%, 25%
/// and 30% (16×1), and the per-row cost of each block column makes short columns pay less.
/// The rule keeps below those, as [`max_density`] `= top − per_k / k` per block shape
/// (4×1: 16% at k = 784, 10% at k = 300); block shapes it was not measured on (fewer than
/// 4 outputs, more than 1 input) never pay, though the kernel runs them.
pub fn pays(k: usize, n: usize, r: usize, c: usize, blocks: usize) -> bool {
    let total = k.saturating_mul(n) as f64;
    let kept = blocks.saturating_mul(r).saturating_mul(c) as f64;
    let max = max_density(k, r, c);
    max > 0.0 && total > 0.0 && kept <= max * total
}

/// The density of kept weights (`blocks · r · c / (k · n)`) up to which [`pays`] holds for
/// blocks of `r × c` at depth `k` (zero when no density pays).
pub fn max_density(k: usize, r: usize, c: usize) -> f64 {
    let (top, per_k) = match (r, c) {
        (16, 1) => (0.30, 25.0),
        (8..=15, 1) => (0.30, 35.0),
        (4..=7, 1) => (0.20, 30.0),
        _ => return 0.0,
    };
    (top - per_k / k.max(1) as f64).max(0.0)
}

/// B's nonzero blocks by block column: block column `jb`'s are entries `ptr[jb]..ptr[jb + 1]`
/// of `idx` (their input blocks, `(idx + 1) · c ≤ k`) and of the values (`r · c` each).
/// Built only by [`BlockB::new`], which checks exactly that, so the kernels read the inputs
/// unchecked.
#[derive(Clone, Copy, Debug)]
pub struct BlockB<'a> {
    k: usize,
    n: usize,
    r: usize,
    c: usize,
    /// `⌈n/r⌉ + 1` offsets, as f32 bits.
    ptr: &'a [f32],
    /// Input-block indices, as f32 bits.
    idx: &'a [f32],
    /// `r · c` values per block.
    val: &'a [f32],
}

impl<'a> BlockB<'a> {
    /// Reads the stored form ([`block_len`] floats at the start of `words`), checking the
    /// block shape (sides `1..=MAX_SIDE`), that the offsets start at 0, never decrease and
    /// end at the block count, and that every block's inputs are below `k`.
    pub fn new(
        k: usize,
        n: usize,
        r: usize,
        c: usize,
        words: &'a [f32],
    ) -> Result<BlockB<'a>, String> {
        let bad = |what: &str| Err(format!("block-sparse weights ({k}×{n}, {r}×{c}): {what}"));
        if !(1..=MAX_SIDE).contains(&r) || !(1..=MAX_SIDE).contains(&c) {
            return bad("the block sides are not 1 to 16");
        }
        let nb = n.div_ceil(r);
        let Some(ptr) = nb.checked_add(1).and_then(|len| words.get(..len)) else {
            return bad("the block-column offsets are cut short");
        };
        if ptr[0].to_bits() != 0 {
            return bad("the first offset is not 0");
        }
        if ptr.windows(2).any(|p| p[1].to_bits() < p[0].to_bits()) {
            return bad("the offsets decrease");
        }
        let blocks = ptr[nb].to_bits() as usize;
        let Some(rest) = words.get(nb + 1..block_len(n, r, c, blocks)) else {
            return bad("the blocks are cut short");
        };
        let (idx, val) = rest.split_at(blocks);
        let top = idx.iter().fold(0u32, |m, i| m.max(i.to_bits())) as usize;
        if !idx.is_empty() && top.checked_add(1).and_then(|t| t.checked_mul(c)) > Some(k) {
            return bad("an input block is out of range");
        }
        Ok(BlockB {
            k,
            n,
            r,
            c,
            ptr,
            idx,
            val,
        })
    }

    /// The stored form at the start of `words`, unchecked: for words that [`BlockB::new`]
    /// has accepted before.
    ///
    /// # Safety
    /// `BlockB::new(k, n, r, c, words)` returned `Ok` for these same arguments and words,
    /// unchanged since. (Then the kernels' unchecked reads of A and the scratch stay in
    /// bounds.)
    #[allow(unsafe_code)]
    pub unsafe fn trusted(k: usize, n: usize, r: usize, c: usize, words: &'a [f32]) -> BlockB<'a> {
        let nb = n.div_ceil(r);
        let blocks = words[nb].to_bits() as usize;
        let (idx, val) = words[nb + 1..block_len(n, r, c, blocks)].split_at(blocks);
        BlockB {
            k,
            n,
            r,
            c,
            ptr: &words[..nb + 1],
            idx,
            val,
        }
    }

    /// Stored blocks.
    pub fn blocks(&self) -> usize {
        self.idx.len()
    }

    /// Block column `jb`'s entries.
    #[inline(always)]
    fn col(&self, jb: usize) -> std::ops::Range<usize> {
        self.ptr[jb].to_bits() as usize..self.ptr[jb + 1].to_bits() as usize
    }
}

/// Whether any element of the `r × c` block (`jb`, `ib`) of `b` (`k × n`, B[kk, j] =
/// `b[kk·row_stride + j·col_stride]`) has a bit set.
#[allow(clippy::too_many_arguments)]
fn block_is_kept(
    b: &[f32],
    n: usize,
    row_stride: usize,
    col_stride: usize,
    r: usize,
    c: usize,
    jb: usize,
    ib: usize,
) -> bool {
    (ib * c..ib * c + c).any(|kk| {
        (jb * r..(jb * r + r).min(n)).any(|j| b[kk * row_stride + j * col_stride].to_bits() != 0)
    })
}

/// The blocks of `r × c` (outputs × inputs) that hold a nonzero bit in `b` (laid out as for
/// [`pack_blocks`]); `None` when the blocks do not tile the inputs (`c` does not divide `k`)
/// or a side is outside `1..=MAX_SIDE`. The outputs need not be a multiple of `r`.
pub fn count_blocks(
    b: &[f32],
    k: usize,
    n: usize,
    row_stride: usize,
    col_stride: usize,
    r: usize,
    c: usize,
) -> Option<usize> {
    if !(1..=MAX_SIDE).contains(&r) || !(1..=MAX_SIDE).contains(&c) || !k.is_multiple_of(c) {
        return None;
    }
    let mut count = 0;
    for jb in 0..n.div_ceil(r) {
        for ib in 0..k / c {
            count += usize::from(block_is_kept(b, n, row_stride, col_stride, r, c, jb, ib));
        }
    }
    Some(count)
}

/// Packs `b` (`k × n`, B[kk, j] = `b[kk·row_stride + j·col_stride]`, so a transposed weight
/// matrix packs without a copy) into the stored form, keeping the `r × c` blocks with a
/// nonzero bit. `None` as for [`count_blocks`], or when the blocks do not fit the u32
/// offsets.
pub fn pack_blocks(
    b: &[f32],
    k: usize,
    n: usize,
    row_stride: usize,
    col_stride: usize,
    r: usize,
    c: usize,
) -> Option<Vec<f32>> {
    if !(1..=MAX_SIDE).contains(&r) || !(1..=MAX_SIDE).contains(&c) || !k.is_multiple_of(c) {
        return None;
    }
    let mut ptr = vec![0u32];
    let (mut idx, mut val) = (vec![], vec![]);
    for jb in 0..n.div_ceil(r) {
        for ib in 0..k / c {
            if !block_is_kept(b, n, row_stride, col_stride, r, c, jb, ib) {
                continue;
            }
            idx.push(u32::try_from(ib).ok()?);
            for kk in ib * c..ib * c + c {
                for j in jb * r..jb * r + r {
                    val.push(if j < n {
                        b[kk * row_stride + j * col_stride]
                    } else {
                        0.0
                    });
                }
            }
        }
        ptr.push(u32::try_from(idx.len()).ok()?);
    }
    let mut out: Vec<f32> = ptr.into_iter().map(f32::from_bits).collect();
    out.extend(idx.into_iter().map(f32::from_bits));
    out.extend(val);
    Some(out)
}

/// C = A·B (+ `ep`) for A's rows `0..m` (`lda` apart) and B's columns `cols`: C[i, j] lands at
/// `c[i·ldc + j − cols.start]`, so a task computing some columns views only its part of C.
/// `cols` starts on a block column (a multiple of `r`) and ends on one or at `n`. `scratch`
/// holds at least [`scratch_len`]`(k)` floats when `m ≥ batched_from(r)`.
#[allow(clippy::too_many_arguments)]
pub fn block_dense(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &BlockB,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
    scratch: &mut [f32],
) -> Result<(), String> {
    let (k, n, r) = (b.k, b.n, b.r);
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
        return Err(format!("block dense: operands too small for {m}×{k}×{n}"));
    }
    if !cols.start.is_multiple_of(r) || !(cols.end.is_multiple_of(r) || cols.end == n) {
        return Err(format!(
            "block dense: columns {cols:?} do not start and end on blocks of {r}"
        ));
    }
    ep.check(m, n, 0)?;
    if ep.residual.is_some() {
        return Err("block dense: no residual input".into());
    }
    let isa = if isa.runs_here() { isa } else { Isa::Scalar };
    if m < batched_from(r) {
        let mut i = 0;
        while i < m {
            // Up to four rows share each block's index and weights where a path does.
            // (Two rows are two accumulator chains, slower than one row at a time with four.)
            let rows = if isa.has_avx2() && (r == 4 || r == 8) && m - i >= 3 {
                4.min(m - i)
            } else {
                1
            };
            #[cfg(target_arch = "x86_64")]
            if rows > 1 {
                // SAFETY: the CPU has AVX2 and FMA (`has_avx2` of an ISA that `runs_here`);
                // rows i..i + rows ≤ m of A hold k floats each, `lda` apart (`(m − 1)·lda +
                // k ≤ a.len()`, checked above); r is 4 or 8; C's rows likewise.
                #[allow(unsafe_code)]
                unsafe {
                    by_rows(
                        a[i * lda..].as_ptr(),
                        lda,
                        rows,
                        b,
                        c,
                        ldc,
                        i,
                        ep,
                        cols.clone(),
                    )
                };
                i += rows;
                continue;
            }
            let out = &mut c[i * ldc..][..width];
            by_row(isa, &a[i * lda..][..k], b, out, ep, i, cols.clone());
            i += 1;
        }
        return Ok(());
    }
    let xt = scratch
        .get_mut(..scratch_len(k))
        .ok_or("block dense: the scratch buffer is too small")?;
    // Whole 16-lane chunks for both vector paths (AVX2 takes two 8-lane vectors a chunk).
    let lanes = |rows: usize| match isa {
        Isa::Scalar => rows,
        Isa::Avx2 | Isa::Avx512 => rows.next_multiple_of(16),
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

/// One row `x` (k floats): block column by block column, the sum over its blocks in a
/// vector of the block's outputs, then the epilogue into `out` (columns `cols`).
#[allow(unsafe_code)]
fn by_row(
    isa: Isa,
    x: &[f32],
    b: &BlockB,
    out: &mut [f32],
    ep: &Epilogue,
    i: usize,
    cols: std::ops::Range<usize>,
) {
    let r = b.r;
    for jb in cols.start / r..cols.end.div_ceil(r) {
        let mut acc = [0f32; MAX_SIDE];
        match (isa, r) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (`has_avx2` of an ISA that `runs_here`, checked
            // by `block_dense`); `x` holds k floats and every block's inputs are below k
            // (`BlockB::new`); r = 4 ≤ `acc.len()`.
            (Isa::Avx2 | Isa::Avx512, 4) => unsafe {
                match b.c {
                    1 => row4_avx2::<1>(x, b, jb, &mut acc),
                    2 => row4_avx2::<2>(x, b, jb, &mut acc),
                    4 => row4_avx2::<4>(x, b, jb, &mut acc),
                    _ => row4_avx2::<0>(x, b, jb, &mut acc),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for r = 4, with W·8 = r ≤ `acc.len()` 8-lane vectors.
            (Isa::Avx2 | Isa::Avx512, 8) => unsafe {
                match b.c {
                    1 => row8_avx2::<1, 1>(x, b, jb, &mut acc),
                    2 => row8_avx2::<1, 2>(x, b, jb, &mut acc),
                    _ => row8_avx2::<1, 0>(x, b, jb, &mut acc),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            (Isa::Avx2 | Isa::Avx512, 16) => unsafe {
                match b.c {
                    1 => row8_avx2::<2, 1>(x, b, jb, &mut acc),
                    _ => row8_avx2::<2, 0>(x, b, jb, &mut acc),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for r = 4; one output, its c inputs (a multiple of 4) in xmm chunks.
            (Isa::Avx2 | Isa::Avx512, 1) if b.c.is_multiple_of(4) => unsafe {
                match b.c {
                    4 => row1_avx2::<4>(x, b, jb, &mut acc),
                    8 => row1_avx2::<8>(x, b, jb, &mut acc),
                    _ => row1_avx2::<0>(x, b, jb, &mut acc),
                }
            },
            _ => row_scalar(x, b, jb, &mut acc[..r]),
        }
        let j0 = jb * r;
        for (q, v) in acc.iter().enumerate().take(r.min(cols.end - j0)) {
            out[j0 + q - cols.start] = ep.apply(*v, i, j0 + q);
        }
    }
}

/// Rows `i0 .. i0 + rows` (2 to 4, `x` the first, `lda` apart) for blocks of 4 or 8
/// outputs: block column by block column, each block's index and weights loaded once for
/// every row, a vector accumulator per row; then the epilogue into C (columns `cols`, row
/// `i0 + i` at `c[(i0 + i)·ldc ..]`).
///
/// # Safety
/// The CPU has AVX2 and FMA; `x + i·lda .. + b.k` is readable for i < rows; `b.r` is 4 or
/// 8; `c` holds rows `i0 .. i0 + rows` of `cols.len()` floats, `ldc` apart.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn by_rows(
    x: *const f32,
    lda: usize,
    rows: usize,
    b: &BlockB,
    c: &mut [f32],
    ldc: usize,
    i0: usize,
    ep: &Epilogue,
    cols: std::ops::Range<usize>,
) {
    let r = b.r;
    let mut acc = [[0f32; MAX_SIDE]; 4];
    for jb in cols.start / r..cols.end.div_ceil(r) {
        // SAFETY: the contract; `acc` holds 4 rows of r ≤ MAX_SIDE floats.
        unsafe {
            match (r, rows, b.c) {
                (4, 2, 1) => rows4_avx2::<2, 1>(x, lda, b, jb, &mut acc),
                (4, 3, 1) => rows4_avx2::<3, 1>(x, lda, b, jb, &mut acc),
                (4, 4, 1) => rows4_avx2::<4, 1>(x, lda, b, jb, &mut acc),
                (4, 2, _) => rows4_avx2::<2, 0>(x, lda, b, jb, &mut acc),
                (4, 3, _) => rows4_avx2::<3, 0>(x, lda, b, jb, &mut acc),
                (4, _, _) => rows4_avx2::<4, 0>(x, lda, b, jb, &mut acc),
                (_, 2, 1) => rows8_avx2::<2, 1>(x, lda, b, jb, &mut acc),
                (_, 3, 1) => rows8_avx2::<3, 1>(x, lda, b, jb, &mut acc),
                (_, 4, 1) => rows8_avx2::<4, 1>(x, lda, b, jb, &mut acc),
                (_, 2, _) => rows8_avx2::<2, 0>(x, lda, b, jb, &mut acc),
                (_, 3, _) => rows8_avx2::<3, 0>(x, lda, b, jb, &mut acc),
                (_, _, _) => rows8_avx2::<4, 0>(x, lda, b, jb, &mut acc),
            }
        }
        let j0 = jb * r;
        for (i, a) in acc.iter().enumerate().take(rows) {
            let out = &mut c[(i0 + i) * ldc..][..cols.len()];
            for (q, v) in a.iter().enumerate().take(r.min(cols.end - j0)) {
                out[j0 + q - cols.start] = ep.apply(*v, i0 + i, j0 + q);
            }
        }
    }
}

/// Block column `jb`'s four sums for each of `M` rows (`x` the first, `lda` apart): per
/// block one index and one xmm of weights, an FMA per row. `C` as for [`row4_avx2`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `x + i·lda .. + b.k` is readable for i < M; `b.r` = 4; `C` is
/// 0 or `b.c`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows4_avx2<const M: usize, const C: usize>(
    x: *const f32,
    lda: usize,
    b: &BlockB,
    jb: usize,
    acc: &mut [[f32; MAX_SIDE]; 4],
) {
    use std::arch::x86_64::*;
    let c = if C == 0 { b.c } else { C };
    let wp = b.val.as_ptr();
    let mut s = [_mm_setzero_ps(); M];
    // SAFETY (every read below): as in `row4_avx2`, for each of the M rows.
    unsafe {
        for p in b.col(jb) {
            let xi = x.add(b.idx.get_unchecked(p).to_bits() as usize * c);
            let wi = wp.add(p * 4 * c);
            for q in 0..c {
                let w = _mm_loadu_ps(wi.add(4 * q));
                for (i, s) in s.iter_mut().enumerate() {
                    *s = _mm_fmadd_ps(_mm_set1_ps(*xi.add(i * lda + q)), w, *s);
                }
            }
        }
        for (s, a) in s.iter().zip(acc.iter_mut()) {
            _mm_storeu_ps(a.as_mut_ptr(), *s);
        }
    }
}

/// Block column `jb`'s eight sums for each of `M` rows, as [`rows4_avx2`] with a ymm of
/// weights per input of a block.
///
/// # Safety
/// As for [`rows4_avx2`], with `b.r` = 8.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows8_avx2<const M: usize, const C: usize>(
    x: *const f32,
    lda: usize,
    b: &BlockB,
    jb: usize,
    acc: &mut [[f32; MAX_SIDE]; 4],
) {
    use std::arch::x86_64::*;
    let c = if C == 0 { b.c } else { C };
    let wp = b.val.as_ptr();
    let mut s = [_mm256_setzero_ps(); M];
    // SAFETY (every read below): as in `row8_avx2`, for each of the M rows.
    unsafe {
        for p in b.col(jb) {
            let xi = x.add(b.idx.get_unchecked(p).to_bits() as usize * c);
            let wi = wp.add(p * 8 * c);
            for q in 0..c {
                let w = _mm256_loadu_ps(wi.add(8 * q));
                for (i, s) in s.iter_mut().enumerate() {
                    *s = _mm256_fmadd_ps(_mm256_set1_ps(*xi.add(i * lda + q)), w, *s);
                }
            }
        }
        for (s, a) in s.iter().zip(acc.iter_mut()) {
            _mm256_storeu_ps(a.as_mut_ptr(), *s);
        }
    }
}

/// Portable: block column `jb`'s sums for one row, into `acc` (r floats).
fn row_scalar(x: &[f32], b: &BlockB, jb: usize, acc: &mut [f32]) {
    let (r, c) = (b.r, b.c);
    for p in b.col(jb) {
        let ib = b.idx[p].to_bits() as usize;
        let w = &b.val[p * r * c..][..r * c];
        for (q, wq) in w.chunks_exact(r).enumerate() {
            let xv = x[ib * c + q];
            for (s, wv) in acc.iter_mut().zip(wq) {
                *s += wv * xv;
            }
        }
    }
}

/// Block column `jb`'s four sums for one row (blocks of 4 outputs): an xmm FMA per input of
/// a block, four blocks in flight in four accumulators. `C` is the block's inputs when the
/// caller knows it at compile time (the loop over them then unrolls), 0 to read `b.c`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds `b.k` floats; `b.r` = 4; `C` is 0 or `b.c`; `acc`
/// holds 4 floats.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn row4_avx2<const C: usize>(x: &[f32], b: &BlockB, jb: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    let c = if C == 0 { b.c } else { C };
    let e = b.col(jb);
    let (xp, wp) = (x.as_ptr(), b.val.as_ptr());
    let mut s = [_mm_setzero_ps(); 4];
    let mut p = e.start;
    // SAFETY (every read below): p < e.end ≤ blocks, so `idx[p]` is in `idx` and the block's
    // values `p·4c .. p·4c + 4c` are in `val` (`BlockB::new` checked `val` holds 4c per
    // block); `(idx[p] + 1)·c ≤ k` (`BlockB::new`), so inputs `idx[p]·c + q` for q < c are
    // in `x` (the contract).
    unsafe {
        while p + 4 <= e.end {
            for (u, s) in s.iter_mut().enumerate() {
                let pu = p + u;
                let xi = xp.add(b.idx.get_unchecked(pu).to_bits() as usize * c);
                let wi = wp.add(pu * 4 * c);
                for q in 0..c {
                    *s = _mm_fmadd_ps(_mm_set1_ps(*xi.add(q)), _mm_loadu_ps(wi.add(4 * q)), *s);
                }
            }
            p += 4;
        }
        while p < e.end {
            let xi = xp.add(b.idx.get_unchecked(p).to_bits() as usize * c);
            let wi = wp.add(p * 4 * c);
            for q in 0..c {
                s[0] = _mm_fmadd_ps(_mm_set1_ps(*xi.add(q)), _mm_loadu_ps(wi.add(4 * q)), s[0]);
            }
            p += 1;
        }
        let t = _mm_add_ps(_mm_add_ps(s[0], s[1]), _mm_add_ps(s[2], s[3]));
        _mm_storeu_ps(acc.as_mut_ptr(), t);
    }
}

/// Block column `jb`'s `8·W` sums for one row (blocks of 8 or 16 outputs): `W` ymm FMAs per
/// input of a block, two blocks in flight. `C` as for [`row4_avx2`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds `b.k` floats; `b.r` = 8·W; `C` is 0 or `b.c`; `acc`
/// holds 8·W floats.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn row8_avx2<const W: usize, const C: usize>(
    x: &[f32],
    b: &BlockB,
    jb: usize,
    acc: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (c, r) = (if C == 0 { b.c } else { C }, 8 * W);
    let e = b.col(jb);
    let (xp, wp) = (x.as_ptr(), b.val.as_ptr());
    let mut s = [[_mm256_setzero_ps(); W]; 2];
    let mut p = e.start;
    // SAFETY (every read below): as in `row4_avx2`, with r = 8·W values per input of a block.
    unsafe {
        while p < e.end {
            let u = usize::from(p + 1 < e.end) + 1;
            for (d, s) in s.iter_mut().enumerate().take(u) {
                let xi = xp.add(b.idx.get_unchecked(p + d).to_bits() as usize * c);
                let wi = wp.add((p + d) * r * c);
                for q in 0..c {
                    let xv = _mm256_set1_ps(*xi.add(q));
                    for (h, s) in s.iter_mut().enumerate() {
                        *s = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wi.add(r * q + 8 * h)), *s);
                    }
                }
            }
            p += u;
        }
        for (h, (a, b)) in s[0].iter().zip(&s[1]).enumerate() {
            _mm256_storeu_ps(acc.as_mut_ptr().add(8 * h), _mm256_add_ps(*a, *b));
        }
    }
}

/// Block column `jb`'s one sum for one row (blocks of 1 output × c inputs, c a multiple of
/// 4): the block's inputs and weights in xmm chunks, four blocks in flight. `C` as for
/// [`row4_avx2`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds `b.k` floats; `b.r` = 1; `C` is 0 or `b.c`, a
/// multiple of 4; `acc` holds a float.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn row1_avx2<const C: usize>(x: &[f32], b: &BlockB, jb: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    let c = if C == 0 { b.c } else { C };
    let e = b.col(jb);
    let (xp, wp) = (x.as_ptr(), b.val.as_ptr());
    let mut s = [_mm_setzero_ps(); 4];
    let mut p = e.start;
    // SAFETY (every read below): as in `row4_avx2`; a block's c inputs `idx[p]·c ..
    // idx[p]·c + c` are in `x` and its c values in `val`, read 4 at a time (4 divides c).
    unsafe {
        while p < e.end {
            let u = (e.end - p).min(4);
            for (d, s) in s.iter_mut().enumerate().take(u) {
                let xi = xp.add(b.idx.get_unchecked(p + d).to_bits() as usize * c);
                let wi = wp.add((p + d) * c);
                for q in (0..c).step_by(4) {
                    *s = _mm_fmadd_ps(_mm_loadu_ps(xi.add(q)), _mm_loadu_ps(wi.add(q)), *s);
                }
            }
            p += u;
        }
        let t = _mm_add_ps(_mm_add_ps(s[0], s[1]), _mm_add_ps(s[2], s[3]));
        let t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        let t = _mm_add_ss(t, _mm_shuffle_ps::<1>(t, t));
        acc[0] = _mm_cvtss_f32(t);
    }
}

/// The tile of rows `r0..r0 + rows` (transposed into `xt`, zero up to `lanes`): a pass
/// computes as many whole block columns as fill [`MAX_SIDE`] columns into `ot` (one row of
/// lanes per column), runs the epilogue on them, and transposes them back into C.
#[allow(clippy::too_many_arguments, unsafe_code)]
fn tile(
    isa: Isa,
    xt: &[f32],
    b: &BlockB,
    cols: std::ops::Range<usize>,
    rows: usize,
    lanes: usize,
    c: &mut [f32],
    ldc: usize,
    ep: &Epilogue,
    r0: usize,
) {
    let r = b.r;
    let c0 = cols.start;
    let mut ot = [[0f32; TILE]; MAX_SIDE];
    let (mut jb, end) = (cols.start / r, cols.end.div_ceil(r));
    while jb < end {
        let per = (MAX_SIDE / r).min(end - jb);
        let j0 = jb * r;
        let w = (per * r).min(cols.end - j0);
        for q in 0..per {
            block_column(isa, xt, b, jb + q, lanes, &mut ot[q * r..q * r + r]);
        }
        for (jj, o) in ot.iter_mut().enumerate().take(w) {
            epilogue(ep, &mut o[..rows], r0, j0 + jj);
        }
        // Back to C's rows, 8×8 blocks through AVX registers where whole.
        let mut g = 0;
        while g < w {
            let gw = 8.min(w - g);
            let mut i = 0;
            while i < rows {
                #[cfg(target_arch = "x86_64")]
                if gw == 8 && rows - i >= 8 && isa.has_avx2() {
                    // SAFETY: the CPU has AVX (an ISA that `runs_here`, checked by
                    // `block_dense`). `ot[g + q][i..i + 8]` for q < 8 are in `ot` (g + 8 ≤ w ≤
                    // MAX_SIDE, i + 8 ≤ rows ≤ TILE); C's rows i..i + 8 (< rows ≤ m) hold
                    // columns j0 + g − c0 .. + 8 ≤ width ≤ ldc, inside `c` (`(m − 1)·ldc +
                    // width ≤ c.len()`, checked by `block_dense`).
                    unsafe {
                        crate::kernels::sparse::transpose8(
                            ot[g..].as_flattened().as_ptr().add(i),
                            TILE,
                            c.as_mut_ptr().add(i * ldc + j0 + g - c0),
                            ldc,
                        )
                    };
                    i += 8;
                    continue;
                }
                for (q, o) in ot[g..g + gw].iter().enumerate() {
                    c[i * ldc + j0 + g + q - c0] = o[i];
                }
                i += 1;
            }
            g += gw;
        }
        jb += per;
    }
}

/// Block column `jb`'s `r` columns over `lanes` lanes of the transposed tile, into `out`
/// (`r` rows of lanes), four outputs at a time on the vector paths.
#[allow(unsafe_code)]
fn block_column(
    isa: Isa,
    xt: &[f32],
    b: &BlockB,
    jb: usize,
    lanes: usize,
    out: &mut [[f32; TILE]],
) {
    let r = b.r;
    let mut g0 = 0;
    while g0 < r {
        let g = 4.min(r - g0);
        let o = &mut out[g0..g0 + g];
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `block_dense` checked `runs_here` for this ISA (AVX-512F). `xt` holds
            // k·TILE floats and every block's inputs are below k (`BlockB::new`); lanes is a
            // multiple of 16 and ≤ TILE, so V = lanes/16 vectors stay inside each transposed
            // row and inside each row of `o`, which holds G = g rows; g0 + G ≤ r.
            Isa::Avx512 => unsafe {
                match (g, b.c) {
                    (4, 1) => bcol_avx512_v::<4, 1>(xt, b, jb, g0, lanes, o),
                    (1, 4) => bcol_avx512_v::<1, 4>(xt, b, jb, g0, lanes, o),
                    (1, _) => bcol_avx512_v::<1, 0>(xt, b, jb, g0, lanes, o),
                    (2, _) => bcol_avx512_v::<2, 0>(xt, b, jb, g0, lanes, o),
                    (3, _) => bcol_avx512_v::<3, 0>(xt, b, jb, g0, lanes, o),
                    _ => bcol_avx512_v::<4, 0>(xt, b, jb, g0, lanes, o),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for AVX-512, with AVX2 and FMA, and 16 lanes (two 8-lane vectors) at
            // `l0`, a multiple of 16 below lanes ≤ TILE.
            Isa::Avx2 => unsafe {
                for l0 in (0..lanes).step_by(16) {
                    match (g, b.c) {
                        (4, 1) => bcol_avx2::<4, 1>(xt, b, jb, g0, l0, o),
                        (1, 4) => bcol_avx2::<1, 4>(xt, b, jb, g0, l0, o),
                        (1, _) => bcol_avx2::<1, 0>(xt, b, jb, g0, l0, o),
                        (2, _) => bcol_avx2::<2, 0>(xt, b, jb, g0, l0, o),
                        (3, _) => bcol_avx2::<3, 0>(xt, b, jb, g0, l0, o),
                        _ => bcol_avx2::<4, 0>(xt, b, jb, g0, l0, o),
                    }
                }
            },
            _ => bcol_scalar(xt, b, jb, g0, &mut o[..], lanes),
        }
        g0 += g;
    }
}

/// Portable: outputs `g0 .. g0 + out.len()` of block column `jb` over `lanes` lanes.
fn bcol_scalar(
    xt: &[f32],
    b: &BlockB,
    jb: usize,
    g0: usize,
    out: &mut [[f32; TILE]],
    lanes: usize,
) {
    let (r, c) = (b.r, b.c);
    for o in out.iter_mut() {
        o[..lanes].fill(0.0);
    }
    for p in b.col(jb) {
        let ib = b.idx[p].to_bits() as usize;
        for q in 0..c {
            let x = &xt[(ib * c + q) * TILE..][..lanes];
            for (g, o) in out.iter_mut().enumerate() {
                let w = b.val[p * r * c + q * r + g0 + g];
                for (s, xv) in o[..lanes].iter_mut().zip(x) {
                    *s += w * xv;
                }
            }
        }
    }
}

/// [`bcol_avx512`] with `V` = `lanes / 16` (1 to 4).
///
/// # Safety
/// As for [`bcol_avx512`], with `lanes` a multiple of 16 from 16 to TILE.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn bcol_avx512_v<const G: usize, const C: usize>(
    xt: &[f32],
    b: &BlockB,
    jb: usize,
    g0: usize,
    lanes: usize,
    out: &mut [[f32; TILE]],
) {
    // SAFETY: the contract, with 16·V ≤ lanes ≤ TILE.
    unsafe {
        match lanes / 16 {
            1 => bcol_avx512::<G, 1, C>(xt, b, jb, g0, out),
            2 => bcol_avx512::<G, 2, C>(xt, b, jb, g0, out),
            3 => bcol_avx512::<G, 3, C>(xt, b, jb, g0, out),
            _ => bcol_avx512::<G, 4, C>(xt, b, jb, g0, out),
        }
    }
}

/// Outputs `g0 .. g0 + G` of block column `jb` over `V` 16-lane vectors: per input of a
/// block, V loads shared by G·V FMAs. `C` as for [`row4_avx2`].
///
/// # Safety
/// The CPU has AVX-512F; `xt` holds `b.k · TILE` floats; `16·V ≤ TILE`; `g0 + G ≤ b.r`;
/// `C` is 0 or `b.c`; `out` holds G rows.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn bcol_avx512<const G: usize, const V: usize, const C: usize>(
    xt: &[f32],
    b: &BlockB,
    jb: usize,
    g0: usize,
    out: &mut [[f32; TILE]],
) {
    use std::arch::x86_64::*;
    let (r, c) = (b.r, if C == 0 { b.c } else { C });
    let (xp, wp) = (xt.as_ptr(), b.val.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); V]; G];
    // SAFETY (every read below): p < blocks, so `idx[p]` is in `idx` and the block's values
    // `p·rc .. p·rc + rc` are in `val`, where `q·r + g0 + g < c·r` (q < c, g0 + g < r);
    // `(idx[p] + 1)·c ≤ k` (`BlockB::new`), so row `idx[p]·c + q` of the tile starts at most
    // at `(k − 1)·TILE`, and `16·V ≤ TILE` keeps the loads in `xt` (the contract).
    unsafe {
        for p in b.col(jb) {
            let xi = xp.add(b.idx.get_unchecked(p).to_bits() as usize * c * TILE);
            let wi = wp.add(p * r * c + g0);
            for q in 0..c {
                let row = xi.add(q * TILE);
                let x: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(row.add(16 * v)));
                for (g, a) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*wi.add(q * r + g));
                    for (s, xv) in a.iter_mut().zip(&x) {
                        *s = _mm512_fmadd_ps(w, *xv, *s);
                    }
                }
            }
        }
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            for (v, s) in a.iter().enumerate() {
                // 16·v + 16 ≤ 16·V ≤ TILE: inside the row.
                _mm512_storeu_ps(o.as_mut_ptr().add(16 * v), *s);
            }
        }
    }
}

/// Outputs `g0 .. g0 + G` of block column `jb` over the 16 lanes at `l0` (two 8-lane
/// vectors). `C` as for [`row4_avx2`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `xt` holds `b.k · TILE` floats; `l0 + 16 ≤ TILE`; `g0 + G ≤
/// b.r`; `C` is 0 or `b.c`; `out` holds G rows.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn bcol_avx2<const G: usize, const C: usize>(
    xt: &[f32],
    b: &BlockB,
    jb: usize,
    g0: usize,
    l0: usize,
    out: &mut [[f32; TILE]],
) {
    use std::arch::x86_64::*;
    let (r, c) = (b.r, if C == 0 { b.c } else { C });
    let (xp, wp) = (xt.as_ptr(), b.val.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    // SAFETY (every read below): as in `bcol_avx512`, with the 16 lanes at l0 (l0 + 16 ≤
    // TILE) of each transposed row.
    unsafe {
        for p in b.col(jb) {
            let xi = xp.add(b.idx.get_unchecked(p).to_bits() as usize * c * TILE + l0);
            let wi = wp.add(p * r * c + g0);
            for q in 0..c {
                let row = xi.add(q * TILE);
                let x = [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))];
                for (g, a) in acc.iter_mut().enumerate() {
                    let w = _mm256_set1_ps(*wi.add(q * r + g));
                    a[0] = _mm256_fmadd_ps(w, x[0], a[0]);
                    a[1] = _mm256_fmadd_ps(w, x[1], a[1]);
                }
            }
        }
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            // l0 + 16 ≤ TILE: inside the row.
            _mm256_storeu_ps(o.as_mut_ptr().add(l0), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(l0 + 8), a[1]);
        }
    }
}
