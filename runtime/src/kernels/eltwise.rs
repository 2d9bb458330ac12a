//! Memory-bound kernels: activations, broadcast binary arithmetic, per-channel affine
//! (an unfolded BatchNormalization), softmax, LRN, transpose.

use crate::kernels::epilogue::Act;
use crate::kernels::math::{self, LANES};

/// Evaluates `$body` with `$f` bound to a closure computing `$act`, one copy per common
/// activation, so that the loops in `$body` see a known variant and vectorize: a `match`
/// on the activation inside a loop keeps it scalar (the unfolded-norm kernel ran a jump
/// table per value, ~20% of an observed VGG's time, before this).
macro_rules! with_act {
    ($act:expr, $f:ident => $body:expr) => {
        match $act {
            Act::None => {
                let $f = |v: f32| v;
                $body
            }
            Act::Relu => {
                let $f = |v: f32| Act::Relu.apply(v);
                $body
            }
            Act::Clip(lo, hi) => {
                let $f = move |v: f32| Act::Clip(lo, hi).apply(v);
                $body
            }
            act => {
                let $f = move |v: f32| act.apply(v);
                $body
            }
        }
    };
}

/// Evaluates `$body` with `$f` bound to a closure computing `$op`, one copy per operation
/// (the reason of [`with_act`]).
macro_rules! with_op {
    ($op:expr, $f:ident => $body:expr) => {
        with_op!(@each $op, $f => $body; Add Sub Mul Div Max Min)
    };
    (@each $op:expr, $f:ident => $body:expr; $($v:ident)*) => {
        match $op {
            $(BinOp::$v => {
                let $f = |a: f32, b: f32| BinOp::$v.apply(a, b);
                $body
            })*
        }
    };
}

/// A binary elementwise operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a · b.
    Mul,
    /// a / b.
    Div,
    /// max(a, b).
    Max,
    /// min(a, b).
    Min,
}

impl BinOp {
    /// Applies it.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            // ONNX Max/Min propagate NaN (`f32::max`/`min` would drop it).
            BinOp::Max => {
                if a.is_nan() {
                    a
                } else if b.is_nan() || b > a {
                    b
                } else {
                    a
                }
            }
            BinOp::Min => {
                if a.is_nan() {
                    a
                } else if b.is_nan() || b < a {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// Its code in a program.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The operation with code `c`.
    pub fn from_code(c: u8) -> Option<BinOp> {
        [
            BinOp::Add,
            BinOp::Sub,
            BinOp::Mul,
            BinOp::Div,
            BinOp::Max,
            BinOp::Min,
        ]
        .get(usize::from(c))
        .copied()
    }
}

avx2_dispatch! {
    /// `y = act(x)`, elementwise.
    pub fn unary(x: &[f32], act: Act, y: &mut [f32]) => unary_generic
}

#[inline(always)]
fn unary_generic(x: &[f32], act: Act, y: &mut [f32]) {
    match act {
        Act::Relu => {
            for (o, &v) in y.iter_mut().zip(x) {
                // NaN passes through (as `Act::apply`).
                *o = if v < 0.0 { 0.0 } else { v };
            }
        }
        _ if act.has_erf() => {
            let n = x.len().min(y.len());
            y[..n].copy_from_slice(&x[..n]);
            act.apply_in_place(&mut y[..n]);
        }
        _ => with_act!(act, f => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = f(v);
            }
        }),
    }
}

avx2_dispatch! {
    /// `y[i] = act(a[i] op b[i])` over an output of `dims`, reading `a` and `b` through strides
    /// (0 along broadcast axes).
    pub fn binary(a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    dims: &[usize],
    op: BinOp,
    act: Act,
    y: &mut [f32]) => binary_generic
}

#[inline(always)]
fn binary_generic(
    a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    dims: &[usize],
    op: BinOp,
    act: Act,
    y: &mut [f32],
) {
    let n: usize = dims.iter().product();
    if act.has_erf() {
        // The arithmetic, then the transcendental over the result (vectorized).
        binary_generic(a, a_strides, b, b_strides, dims, op, Act::None, y);
        act.apply_in_place(&mut y[..n]);
        return;
    }
    with_op!(op, g => with_act!(act, f => binary_rows(a, a_strides, b, b_strides, dims, |x, z| f(g(x, z)), y)))
}

/// [`binary_generic`]'s loops for one operation and activation, `h(a, b)` per value.
#[inline(always)]
fn binary_rows(
    a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    dims: &[usize],
    h: impl Fn(f32, f32) -> f32,
    y: &mut [f32],
) {
    let n: usize = dims.iter().product();
    let contiguous = |s: &[usize]| {
        let mut expect = 1;
        for (d, &st) in dims.iter().zip(s).rev() {
            if *d != 1 && st != expect {
                return false;
            }
            expect *= d;
        }
        true
    };
    if contiguous(a_strides) && contiguous(b_strides) {
        for ((o, &x), &z) in y[..n].iter_mut().zip(a).zip(b) {
            *o = h(x, z);
        }
        return;
    }
    // Innermost axis as a run; the outer index walks the rest.
    let rank = dims.len();
    if rank == 0 {
        y[0] = h(a[0], b[0]);
        return;
    }
    let inner = dims[rank - 1];
    let (sa, sb) = (a_strides[rank - 1], b_strides[rank - 1]);
    let mut idx = vec![0usize; rank];
    let mut i = 0;
    while i < n {
        let (mut oa, mut ob) = (0, 0);
        for d in 0..rank - 1 {
            oa += idx[d] * a_strides[d];
            ob += idx[d] * b_strides[d];
        }
        // A row of each operand: contiguous, or one value repeated (a broadcast scalar or
        // column); slices of known length, so the common cases vectorize.
        let ys = &mut y[i..i + inner];
        match (sa, sb) {
            (1, 1) => {
                for ((o, &x), &z) in ys
                    .iter_mut()
                    .zip(&a[oa..oa + inner])
                    .zip(&b[ob..ob + inner])
                {
                    *o = h(x, z);
                }
            }
            (1, 0) => {
                let z = b[ob];
                for (o, &x) in ys.iter_mut().zip(&a[oa..oa + inner]) {
                    *o = h(x, z);
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (o, &z) in ys.iter_mut().zip(&b[ob..ob + inner]) {
                    *o = h(x, z);
                }
            }
            _ => {
                for (j, o) in ys.iter_mut().enumerate() {
                    *o = h(a[oa + j * sa], b[ob + j * sb]);
                }
            }
        }
        i += inner;
        // Advance the outer index.
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

avx2_dispatch! {
    /// `y[c, i] = act(scale[c]·x[c, i] + shift[c])` over `c` channels of `inner` values.
    pub fn affine(x: &[f32], scale: &[f32], shift: &[f32], inner: usize, act: Act, y: &mut [f32]) => affine_generic
}

#[inline(always)]
fn affine_generic(x: &[f32], scale: &[f32], shift: &[f32], inner: usize, act: Act, y: &mut [f32]) {
    for (c, (&s, &t)) in scale.iter().zip(shift).enumerate() {
        let (xs, ys) = (
            &x[c * inner..(c + 1) * inner],
            &mut y[c * inner..(c + 1) * inner],
        );
        with_act!(act, f => {
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = f(s * v + t);
            }
        });
    }
}

avx2_dispatch! {
    /// [`affine`] of channel-blocked values, `[c/16][inner][16]` (`c` whole blocks): the
    /// same sums, channel by channel.
    pub fn affine_blocked(x: &[f32], scale: &[f32], shift: &[f32], inner: usize, act: Act, y: &mut [f32]) => affine_blocked_generic
}

#[inline(always)]
fn affine_blocked_generic(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    inner: usize,
    act: Act,
    y: &mut [f32],
) {
    // Channels per block.
    const CH: usize = crate::kernels::blocked::LANES;
    let block = inner * CH;
    for ((s, t), (xs, ys)) in scale
        .chunks_exact(CH)
        .zip(shift.chunks_exact(CH))
        .zip(x.chunks_exact(block).zip(y.chunks_exact_mut(block)))
    {
        with_act!(act, f => {
            for (xv, yv) in xs.chunks_exact(CH).zip(ys.chunks_exact_mut(CH)) {
                for l in 0..CH {
                    yv[l] = f(s[l] * xv[l] + t[l]);
                }
            }
        });
    }
}

/// Partial sums a comparison keeps per quantity.
const SUM_LANES: usize = 8;

/// The running sums of comparing values `x` with references `y` ([`compare_into`]):
/// `Σ x·y, Σ y², Σ x², Σ (x − y)²` in f64, each in [`SUM_LANES`] partial sums — the `i`-th
/// value compared (counting across calls) in partial sum `i % 8` — added in order by
/// [`Self::totals`]. So the totals are the same bits however the values are cut into calls
/// (a build's batches), and on every path; in lanes so that the comparison vectorizes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CompareSums {
    lanes: [[f64; SUM_LANES]; 4],
    /// The lane of the next value.
    next: usize,
}

impl CompareSums {
    /// `[Σ x·y, Σ y², Σ x², Σ (x − y)²]`.
    pub fn totals(&self) -> [f64; 4] {
        self.lanes.map(|lanes| lanes.iter().sum())
    }

    /// Adds one pair to the next lane.
    #[inline(always)]
    fn one(&mut self, x: f32, y: f32) {
        add_pair(&mut self.lanes, self.next, x, y);
        self.next = (self.next + 1) % SUM_LANES;
    }
}

/// Adds the pair `x`, `y` to lane `l` of each quantity of [`CompareSums`].
#[inline(always)]
fn add_pair(lanes: &mut [[f64; SUM_LANES]; 4], l: usize, x: f32, y: f32) {
    let (x, y) = (f64::from(x), f64::from(y));
    lanes[0][l] += x * y;
    lanes[1][l] += y * y;
    lanes[2][l] += x * x;
    lanes[3][l] += (x - y) * (x - y);
}

avx2_dispatch! {
    /// Adds `got` (the values) against `want` (their references), as long as the shorter, to
    /// `sums` ([`CompareSums`]).
    pub fn compare_into(got: &[f32], want: &[f32], sums: &mut CompareSums) => compare_into_generic
}

#[inline(always)]
fn compare_into_generic(got: &[f32], want: &[f32], sums: &mut CompareSums) {
    let n = got.len().min(want.len());
    // One at a time up to lane 0, then whole rows of lanes, then the rest.
    let lead = ((SUM_LANES - sums.next) % SUM_LANES).min(n);
    for (&x, &y) in got[..lead].iter().zip(&want[..lead]) {
        sums.one(x, y);
    }
    let (g, w) = (
        got[lead..n].chunks_exact(SUM_LANES),
        want[lead..n].chunks_exact(SUM_LANES),
    );
    let (g_rest, w_rest) = (g.remainder(), w.remainder());
    let mut lanes = sums.lanes;
    for (gs, ws) in g.zip(w) {
        for l in 0..SUM_LANES {
            add_pair(&mut lanes, l, gs[l], ws[l]);
        }
    }
    sums.lanes = lanes;
    for (&x, &y) in g_rest.iter().zip(w_rest) {
        sums.one(x, y);
    }
}

avx2_dispatch! {
    /// Softmax (or log-softmax) of each of `rows` rows of `cols` values, in f64 like the
    /// reference: the row's largest value `m`, `s = Σ e^(v − m)`, then `e^(v − m) / s` (or
    /// `v − m − ln s`) rounded once; the exponentials [`LANES`] at a time
    /// ([`math::exp64_lanes`]).
    pub fn softmax(x: &[f32], rows: usize, cols: usize, log: bool, y: &mut [f32]) => softmax_generic
}

/// Exponentials a softmax block computes at once (attention's 17 × 17 scores at batch 64,
/// one thread: 0.33 → 0.20 ms a softmax with four sets of lanes instead of one).
const EXP_LANES: usize = 4 * LANES;

/// Values whose exponentials a softmax keeps at once (f64, on the stack): rows this short
/// are taken several at a time, so that every lane of [`math::exp64_lanes`] has work.
const SOFTMAX_BLOCK: usize = 256;

#[inline(always)]
fn softmax_generic(x: &[f32], rows: usize, cols: usize, log: bool, y: &mut [f32]) {
    if cols == 0 {
        return;
    }
    if cols > SOFTMAX_BLOCK {
        return softmax_long_rows(x, rows, cols, log, y);
    }
    let per = SOFTMAX_BLOCK / cols;
    let mut e = [0f64; SOFTMAX_BLOCK];
    let mut m = [0f64; SOFTMAX_BLOCK];
    let mut r0 = 0;
    while r0 < rows {
        let nr = per.min(rows - r0);
        let n = nr * cols;
        let xs = &x[r0 * cols..r0 * cols + n];
        let ys = &mut y[r0 * cols..r0 * cols + n];
        for (r, row) in xs.chunks_exact(cols).enumerate() {
            m[r] = row
                .iter()
                .map(|&v| f64::from(v))
                .fold(f64::NEG_INFINITY, f64::max);
            for (d, &v) in e[r * cols..(r + 1) * cols].iter_mut().zip(row) {
                *d = f64::from(v) - m[r];
            }
        }
        // The exponentials of the whole block, four full sets of lanes at a time (more
        // independent polynomials in flight, so latency bounds them less; each lane's
        // operations, and so its bits, are the same whatever the width).
        for at in (0..n).step_by(EXP_LANES) {
            let k = EXP_LANES.min(n - at);
            let mut z = [f64::NEG_INFINITY; EXP_LANES];
            z[..k].copy_from_slice(&e[at..at + k]);
            let ez = math::exp64_lanes(z);
            e[at..at + k].copy_from_slice(&ez[..k]);
        }
        for (r, (row, out)) in xs
            .chunks_exact(cols)
            .zip(ys.chunks_exact_mut(cols))
            .enumerate()
        {
            let er = &e[r * cols..(r + 1) * cols];
            let s: f64 = er.iter().sum();
            if log {
                let ls = s.ln();
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = (f64::from(v) - m[r] - ls) as f32;
                }
            } else {
                for (o, &v) in out.iter_mut().zip(er) {
                    *o = (v / s) as f32;
                }
            }
        }
        r0 += nr;
    }
}

/// [`softmax_generic`] for rows longer than [`SOFTMAX_BLOCK`]: each row's exponentials twice
/// (for the sum, then for the quotients), [`LANES`] at a time.
#[inline(always)]
fn softmax_long_rows(x: &[f32], rows: usize, cols: usize, log: bool, y: &mut [f32]) {
    for (xs, ys) in x
        .chunks_exact(cols)
        .zip(y.chunks_exact_mut(cols))
        .take(rows)
    {
        let m = xs
            .iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        // Partial sums per lane, added in a fixed order.
        let mut acc = [0f64; LANES];
        for at in (0..cols).step_by(LANES) {
            let e = exps(xs, at, m);
            for i in 0..LANES {
                acc[i] += e[i];
            }
        }
        let s: f64 = acc.iter().sum();
        if log {
            let ls = s.ln();
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = (f64::from(v) - m - ls) as f32;
            }
        } else {
            for at in (0..cols).step_by(LANES) {
                let e = exps(xs, at, m);
                let mut q = [0f32; LANES];
                for i in 0..LANES {
                    q[i] = (e[i] / s) as f32;
                }
                let n = LANES.min(cols - at);
                ys[at..at + n].copy_from_slice(&q[..n]);
            }
        }
    }
}

/// e^(v − m) of the [`LANES`] values of `xs` from `at` (past its end, e^−∞ = 0). A
/// function, not a closure: it must be inlined into its AVX2-compiled caller to vectorize.
#[inline(always)]
fn exps(xs: &[f32], at: usize, m: f64) -> [f64; LANES] {
    let mut z = [f64::NEG_INFINITY; LANES];
    for (d, &v) in z.iter_mut().zip(&xs[at..(at + LANES).min(xs.len())]) {
        *d = f64::from(v) - m;
    }
    math::exp64_lanes(z)
}

avx2_dispatch! {
    /// Local response normalization across `c` channels of `hw` values: in f32, planes at a
    /// time (vectorized; β = 0.75, the usual value, by two square roots), and in f64 for any
    /// value whose f32 sum of squares overflows.
    pub fn lrn(
        x: &[f32],
        c: usize,
        hw: usize,
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
        y: &mut [f32],
    ) => lrn_generic
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lrn_generic(
    x: &[f32],
    c: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
    y: &mut [f32],
) {
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let k = alpha / size as f32;
    let mut sq = vec![0f32; hw];
    for ch in 0..c {
        let (c0, c1) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
        sq.fill(0.0);
        for cc in c0..=c1 {
            for (s, &v) in sq.iter_mut().zip(&x[cc * hw..(cc + 1) * hw]) {
                *s += v * v;
            }
        }
        let xs = &x[ch * hw..(ch + 1) * hw];
        let ys = &mut y[ch * hw..(ch + 1) * hw];
        if beta == 0.75 {
            for ((o, &v), &s) in ys.iter_mut().zip(xs).zip(&sq) {
                let t = bias + k * s;
                let r = t.sqrt();
                *o = v / (r * r.sqrt());
            }
        } else {
            for ((o, &v), &s) in ys.iter_mut().zip(xs).zip(&sq) {
                *o = v / (bias + k * s).powf(beta);
            }
        }
        for (i, s) in sq.iter().enumerate() {
            if !s.is_finite() {
                let exact: f64 = (c0..=c1).map(|cc| f64::from(x[cc * hw + i]).powi(2)).sum();
                let t = f64::from(bias) + f64::from(alpha) / size as f64 * exact;
                ys[i] = (f64::from(xs[i]) / t.powf(f64::from(beta))) as f32;
            }
        }
    }
}

/// `y` = `x` (of `dims`) with its axes permuted by `perm`.
pub fn transpose(x: &[f32], dims: &[usize], perm: &[usize], y: &mut [f32]) {
    let rank = dims.len();
    let mut in_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * dims[d + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n: usize = dims.iter().product();
    // Trailing axes that stay in place move as contiguous blocks (a channel shuffle moves
    // whole planes).
    let keep = (0..rank).rev().take_while(|&d| perm[d] == d).count();
    if keep > 0 && keep < rank {
        let block: usize = dims[rank - keep..].iter().product();
        let outer = &out_dims[..rank - keep];
        let ostr = &strides[..rank - keep];
        let mut idx = vec![0usize; outer.len()];
        for chunk in y[..n].chunks_exact_mut(block.max(1)) {
            let off: usize = idx.iter().zip(ostr).map(|(i, s)| i * s).sum();
            chunk.copy_from_slice(&x[off..off + block]);
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                if idx[d] < outer[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        return;
    }
    let mut idx = vec![0usize; rank];
    for o in y.iter_mut().take(n) {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        *o = x[off];
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < out_dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{diff, uniform};

    /// Softmax by its definition, with libm's exp.
    fn reference(x: &[f32], cols: usize, log: bool) -> Vec<f64> {
        let mut out = vec![];
        for row in x.chunks(cols) {
            let m = row
                .iter()
                .map(|&v| f64::from(v))
                .fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            for &v in row {
                let d = f64::from(v) - m;
                out.push(if log { d - s.ln() } else { d.exp() / s });
            }
        }
        out
    }

    #[test]
    fn softmax_matches_its_definition_nan_and_infinity_included() {
        for cols in [1, 7, 8, 17, 100, 300] {
            let mut x: Vec<f32> = uniform(3, 3 * cols).iter().map(|v| v * 30.0).collect();
            // A row with a NaN, a row with −∞ and +∞ (its other values vanish or are NaN).
            x[cols / 2] = f32::NAN;
            x[cols + cols / 3] = f32::NEG_INFINITY;
            x[2 * cols] = f32::INFINITY;
            for log in [false, true] {
                let mut y = vec![0.0; 3 * cols];
                softmax(&x, 3, cols, log, &mut y);
                let d = diff(&y, &reference(&x, cols, log), 1e-6, 1e-12);
                assert!(d.allclose, "{cols} columns, log {log}: {d:?}\n{y:?}");
            }
        }
    }

    /// The blocked affine step computes, channel by channel, the bits the NCHW one does
    /// (NaN and infinities pass through alike), for one to three blocks of odd sizes, with
    /// and without a fused activation.
    #[test]
    fn blocked_affine_is_the_plain_one_in_blocks() {
        const CH: usize = crate::kernels::blocked::LANES;
        for (blocks, inner) in [(1, 1), (2, 7), (3, 49)] {
            let c = blocks * CH;
            let mut x = uniform(5, c * inner);
            x[inner / 2] = f32::NAN;
            x[c * inner - 1] = f32::INFINITY;
            let (scale, shift) = (uniform(6, c), uniform(7, c));
            for act in [Act::None, Act::Relu] {
                let mut plain = vec![0.0; c * inner];
                affine(&x, &scale, &shift, inner, act, &mut plain);
                // x and the expected result in blocks: [c/16][inner][16].
                let to_blocks = |v: &[f32]| {
                    let mut b = vec![0.0; v.len()];
                    for ch in 0..c {
                        for i in 0..inner {
                            b[(ch / CH * inner + i) * CH + ch % CH] = v[ch * inner + i];
                        }
                    }
                    b
                };
                let mut got = vec![f32::NAN; c * inner];
                affine_blocked(&to_blocks(&x), &scale, &shift, inner, act, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&to_blocks(&plain)),
                    "{blocks} blocks of {inner}, {act:?}"
                );
            }
        }
    }

    /// The comparison sums: the same bits vectorized and portable and however the values
    /// are cut into calls, within 1e-12 of plain f64 sums, NaN carried, for lengths around the
    /// lane count (and unequal lengths cut to the shorter).
    #[test]
    fn compare_sums_are_the_plain_sums_in_lanes_however_cut() {
        let sums = |x: &[f32], y: &[f32], cuts: &[usize], fast: bool| {
            let mut s = CompareSums::default();
            let mut at = 0;
            for &c in cuts.iter().chain([&x.len()]) {
                let c = c.clamp(at, x.len());
                if fast {
                    compare_into(&x[at..c], &y[at..], &mut s);
                } else {
                    compare_into_generic(&x[at..c], &y[at..], &mut s);
                }
                at = c;
            }
            s.totals()
        };
        for n in [0, 1, 7, 8, 9, 100, 1001] {
            let (x, y) = (uniform(11, n), uniform(12, n + 3));
            let got = sums(&x, &y, &[], true);
            for cuts in [&[][..], &[1], &[3, 4, 13], &[7, 7, 8, 50, 51, 999]] {
                for fast in [true, false] {
                    assert_eq!(
                        got.map(f64::to_bits),
                        sums(&x, &y, cuts, fast).map(f64::to_bits),
                        "{n} cut at {cuts:?}, fast {fast}"
                    );
                }
            }
            let mut want = [0.0f64; 4];
            for (&a, &b) in x.iter().zip(&y) {
                let (a, b) = (f64::from(a), f64::from(b));
                want[0] += a * b;
                want[1] += b * b;
                want[2] += a * a;
                want[3] += (a - b) * (a - b);
            }
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "{n}: {got:?} {want:?}"
                );
            }
        }
        let mut x = uniform(13, 20);
        x[17] = f32::NAN;
        let s = sums(&x, &uniform(14, 20), &[5], true);
        assert!(
            s[0].is_nan() && s[1].is_finite() && s[2].is_nan() && s[3].is_nan(),
            "{s:?}"
        );
    }
}
