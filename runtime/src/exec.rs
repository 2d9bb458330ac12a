//! Runs a [`Program`]: checks once that every step stays inside the arena and the weights,
//! then executes the steps in order on caller-owned memory.

use crate::aligned::{AlignedVec, out_of_memory};
use crate::kernels::block_sparse::{self, BlockB};
use crate::kernels::blocked::{self, LANES};
use crate::kernels::conv::{self, Geometry};
use crate::kernels::conv_transpose;
use crate::kernels::eltwise;
use crate::kernels::epilogue::{Act, Bias, Epilogue};
use crate::kernels::gather;
use crate::kernels::gemm::{self, Isa, PackedA, PackedB};
use crate::kernels::int8;
use crate::kernels::matmul;
use crate::kernels::pool;
use crate::kernels::reduce;
use crate::kernels::resample;
use crate::kernels::sparse::{self, SparseB};
use crate::kernels::window;
use crate::kernels::winograd;
use crate::program::{Access, Buf, ConvLayout, Program, Src, Step};
use crate::threads::{Pool, split};

/// Checks a program: every buffer inside the arena (per sample), every weight reference
/// inside the weights, no step writing memory it reads, every step's sizes consistent with
/// its buffers. After this, running it cannot index out of bounds, and the tasks of a step
/// cannot write what another of them reads (see `Arena`).
pub fn validate(p: &Program, weights: usize) -> Result<(), String> {
    let arena = |b: &Buf, what: &str| -> Result<(), String> {
        if b.off.checked_add(b.len).is_none_or(|end| end > p.arena) {
            return Err(format!(
                "{what} [{}, +{}) is outside the arena of {}",
                b.off, b.len, p.arena
            ));
        }
        Ok(())
    };
    for io in p.inputs.iter().chain(&p.outputs) {
        arena(&io.buf, &io.name)?;
        if io.dims.iter().product::<usize>() != io.buf.len {
            return Err(format!("`{}`: dims do not match its buffer", io.name));
        }
    }
    for (i, s) in p.steps.iter().enumerate() {
        let at = |e: String| format!("step {i} ({}): {e}", s.name());
        check(s, p.scratch).map_err(at)?;
        // Bounds, from the step table's buffer and weight fields; a buffer read must not share
        // memory with the one written (offsets are per sample, so disjoint here means
        // disjoint at every batch).
        let out = s.writes();
        s.try_visit_bufs(|field, access, b| {
            arena(&b, &format!("`{field}`"))?;
            if access == Access::Read && b.len > 0 && out.len > 0 && overlap(&b, &out) {
                return Err(format!(
                    "`{field}` shares memory with the buffer the step writes"
                ));
            }
            Ok(())
        })
        .map_err(at)?;
        s.try_visit_weights(|field, off, len| {
            if off.checked_add(len).is_none_or(|end| end > weights) {
                return Err(format!("`{field}` is outside the weights"));
            }
            Ok(())
        })
        .map_err(at)?;
    }
    Ok(())
}

/// Checks what step `s` needs beyond its bounds: that its buffers hold the floats its sizes
/// say, that its geometry and channel counts are ones its kernels take, and that `scratch`
/// floats of scratch suffice.
fn check(s: &Step, scratch: usize) -> Result<(), String> {
    let need = |b: &Buf, n: usize, what: &str| -> Result<(), String> {
        if b.len < n {
            return Err(format!("{what} holds {} floats, the step needs {n}", b.len));
        }
        Ok(())
    };
    // Sizes from a program are untrusted: a product that overflows is an error, not a wrap.
    let times = |a: usize, b: usize| -> Result<usize, String> {
        a.checked_mul(b)
            .ok_or_else(|| format!("sizes {a} × {b} overflow"))
    };
    let geo = |g: &Geometry| -> Result<(), String> {
        let ok = g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0;
        if !ok {
            return Err("a window with a zero size, stride or dilation".into());
        }
        // Every size a kernel derives from the window, computed without wrapping: the input,
        // the output, the span the windows cover, the image padded to that span (which a
        // kernel may materialize: at most 64 times as many pixels as the input or the output
        // has, plus 2^20 — so a stride far past the kernel cannot ask for a huge copy of a
        // tiny image) and the farthest tap from a window's corner.
        let big = || format!("a window whose sizes overflow or pad too far: {g:?}");
        let span = |o: usize, s: usize, k: usize, d: usize| -> Option<usize> {
            o.checked_sub(1)?
                .checked_mul(s)?
                .checked_add((k - 1).checked_mul(d)?)?
                .checked_add(1)
        };
        let sizes = (|| {
            g.h.checked_mul(g.w)?.checked_mul(g.c)?;
            let pixels = (g.h.checked_mul(g.w)?).max(g.oh.checked_mul(g.ow)?);
            let hp =
                g.h.checked_add(g.pt)?
                    .max(span(g.oh.max(1), g.sh, g.kh, g.dh)?);
            let wp =
                g.w.checked_add(g.pl)?
                    .max(span(g.ow.max(1), g.sw, g.kw, g.dw)?);
            let padded = hp.checked_mul(wp)?;
            padded.checked_mul(g.c.max(4))?;
            let tap = (g.kh - 1)
                .checked_mul(g.dh)?
                .checked_mul(wp)?
                .checked_add((g.kw - 1).checked_mul(g.dw)?)?
                .checked_mul(g.c.max(4))?;
            tap.checked_add(padded.checked_mul(g.c.max(4))?)?;
            Some((pixels, padded))
        })();
        match sizes {
            Some((pixels, padded))
                if padded <= pixels.saturating_mul(64).saturating_add(1 << 20) =>
            {
                Ok(())
            }
            _ => Err(big()),
        }
    };
    // An operand that is a tensor or a constant holds at least `n` floats.
    let src_holds = |src: &Src, n: usize| -> Result<(), String> {
        match src {
            Src::Arena(buf) => need(buf, n, "operand"),
            Src::Weight { len, .. } if *len < n => Err(format!(
                "a constant operand holds {len} floats, the step needs {n}"
            )),
            Src::Weight { .. } => Ok(()),
        }
    };
    match s {
        Step::Conv {
            x,
            y,
            g,
            m,
            groups,
            residual,
            layout,
            ..
        } => {
            geo(g)?;
            let groups = (*groups).max(1);
            let mc = layout.channels(*m);
            if let ConvLayout::Blocked { x_blocked } = layout {
                if groups != 1 || *m == 0 {
                    return Err("a blocked convolution needs one group".into());
                }
                if mc != *m && residual.is_some() {
                    return Err("a blocked convolution adds a residual on whole blocks only".into());
                }
                if *x_blocked && !g.c.is_multiple_of(LANES) {
                    return Err("a blocked input needs whole blocks".into());
                }
                if blocked::needs_padding(g) && blocked::padded_len(g) > scratch {
                    return Err("the scratch buffer is too small".into());
                }
            }
            if *layout == ConvLayout::Winograd {
                if groups != 1 || *m == 0 || mc != *m {
                    return Err("a Winograd convolution needs one group and whole blocks".into());
                }
                if !winograd::applies(g) {
                    return Err("a Winograd convolution needs a 3×3 stride-1 window".into());
                }
                if winograd::scratch_len(g) > scratch {
                    return Err("the scratch buffer is too small".into());
                }
            }
            if let Some(r) = residual {
                need(r, m * g.oh * g.ow, "residual")?;
            }
            if g.c % groups != 0 || m % groups != 0 {
                return Err("channels do not divide into the groups".into());
            }
            need(x, g.c * g.h * g.w, "input")?;
            need(y, mc * g.oh * g.ow, "output")?;
            if *layout == ConvLayout::Gemm
                && !g.is_pointwise()
                && conv::scratch_len(g, groups) > scratch
            {
                return Err("the scratch buffer is too small".into());
            }
        }
        Step::Depthwise {
            x,
            y,
            g,
            m,
            blocked,
            ..
        } => {
            geo(g)?;
            if g.c == 0 || m % g.c != 0 {
                return Err("output channels are not a multiple of the input's".into());
            }
            if *blocked && (*m != g.c || !m.is_multiple_of(LANES)) {
                return Err("a blocked depthwise convolution needs whole blocks".into());
            }
            need(x, g.c * g.h * g.w, "input")?;
            need(y, m * g.oh * g.ow, "output")?;
        }
        Step::Dense {
            x, y, rows, k, n, ..
        } => {
            need(x, times(*rows, *k)?, "input")?;
            need(y, times(*rows, *n)?, "output")?;
        }
        Step::SparseDense {
            x, y, rows, k, n, ..
        }
        | Step::BlockDense {
            x, y, rows, k, n, ..
        } => {
            need(x, times(*rows, *k)?, "input")?;
            need(y, times(*rows, *n)?, "output")?;
            if times(*k, sparse::TILE)? > scratch {
                return Err("the scratch buffer is too small".into());
            }
        }
        Step::MaxPool { x, y, g, blocked }
        | Step::AvgPool {
            x, y, g, blocked, ..
        } => {
            geo(g)?;
            if *blocked && !g.c.is_multiple_of(LANES) {
                return Err("a blocked pooling needs whole blocks".into());
            }
            need(x, g.c * g.h * g.w, "input")?;
            need(y, g.c * g.oh * g.ow, "output")?;
        }
        Step::GlobalAvgPool {
            x,
            y,
            c,
            hw,
            blocked,
        } => {
            if *blocked && !c.is_multiple_of(LANES) {
                return Err("a blocked pooling needs whole blocks".into());
            }
            need(x, c * hw, "input")?;
            need(y, *c, "output")?;
        }
        Step::Reorder {
            x,
            y,
            c,
            hw,
            to_blocked,
        } => {
            // Out of blocks, the last may be partial (a convolution's padding lanes).
            if *to_blocked && !c.is_multiple_of(LANES) {
                return Err("a reorder into blocks needs whole blocks".into());
            }
            need(x, c.next_multiple_of(LANES) * hw, "input")?;
            need(y, c * hw, "output")?;
        }
        Step::Unary { x, y, .. } | Step::Copy { x, y } => {
            need(y, x.len, "output")?;
        }
        Step::Binary {
            a,
            a_strides,
            b,
            b_strides,
            dims,
            y,
            ..
        } => {
            let n = dims.iter().try_fold(1, |p, &d| times(p, d))?;
            need(y, n, "output")?;
            for (src, strides) in [(a, a_strides), (b, b_strides)] {
                if strides.len() != dims.len() {
                    return Err("strides do not match the dims".into());
                }
                if n == 0 {
                    continue; // An empty result reads nothing.
                }
                let reach = dims
                    .iter()
                    .zip(strides)
                    .try_fold(1usize, |acc, (d, &s)| {
                        acc.checked_add(d.saturating_sub(1).checked_mul(s)?)
                    })
                    .ok_or("strides that overflow")?;
                src_holds(src, reach)?;
            }
        }
        Step::Affine {
            x,
            y,
            c,
            inner,
            blocked,
            ..
        } => {
            if *blocked && !c.is_multiple_of(LANES) {
                return Err("a blocked affine step needs whole channel blocks".into());
            }
            need(x, c * inner, "input")?;
            need(y, c * inner, "output")?;
        }
        Step::Concat {
            y,
            outer,
            parts,
            plane,
        } => {
            let total: usize = parts.iter().map(|(_, c)| c).sum();
            need(y, outer * total, "output")?;
            for (b, chunk) in parts {
                need(b, outer * chunk, "part")?;
                if *plane > 0 && !chunk.is_multiple_of(*plane) {
                    return Err("a blocked concatenation's part is not whole blocks".into());
                }
            }
            if *plane > 0 && (*outer != 1 || !plane.is_multiple_of(LANES)) {
                return Err("a blocked concatenation's blocks are malformed".into());
            }
        }
        Step::Softmax {
            x, y, rows, cols, ..
        } => {
            need(x, rows * cols, "input")?;
            need(y, rows * cols, "output")?;
        }
        Step::Lrn {
            x, y, c, hw, size, ..
        } => {
            if *size == 0 {
                return Err("LRN size 0".into());
            }
            need(x, c * hw, "input")?;
            need(y, c * hw, "output")?;
        }
        Step::Quantize {
            x,
            y,
            n,
            zp,
            channels,
            ..
        } => {
            if *zp > 255 || (*channels > 0 && !n.is_multiple_of(*channels)) {
                return Err("a zero point beyond u8, or channels that do not divide".into());
            }
            need(x, *n, "input")?;
            need(y, n.div_ceil(4), "output")?;
        }
        Step::Dequantize {
            x,
            y,
            n,
            zp,
            channels,
            ..
        } => {
            if *zp > 255 || (*channels > 0 && !n.is_multiple_of(*channels)) {
                return Err("a zero point beyond u8, or channels that do not divide".into());
            }
            need(x, n.div_ceil(4), "input")?;
            need(y, *n, "output")?;
        }
        Step::QConv {
            x,
            y,
            g,
            m,
            groups,
            zx,
            zy,
            lo,
            hi,
            ..
        } => {
            geo(g)?;
            let groups = (*groups).max(1);
            if g.c % groups != 0 || m % groups != 0 {
                return Err("channels do not divide into the groups".into());
            }
            if g.c == 0 || *m == 0 || g.oh == 0 || g.ow == 0 {
                return Err("an integer convolution with no channels or no output".into());
            }
            if *zx > 255 || *zy > 255 || lo > hi || *hi > 255 {
                return Err("codes beyond u8".into());
            }
            need(x, times(g.c, g.h * g.w)?.div_ceil(4), "input")?;
            need(y, times(*m, g.oh * g.ow)?.div_ceil(4), "output")?;
        }
        Step::QDense {
            x,
            y,
            rows,
            k,
            n,
            zx,
            zy,
            lo,
            hi,
            ..
        } => {
            if *zx > 255 || *zy > 255 || lo > hi || *hi > 255 {
                return Err("codes beyond u8".into());
            }
            need(x, times(*rows, *k)?.div_ceil(4), "input")?;
            need(y, times(*rows, *n)?.div_ceil(4), "output")?;
        }
        Step::QRows { x, y, rows, k } => {
            let stride = int8::dynamic_stride(*k);
            need(x, times(*rows, *k)?, "input")?;
            need(y, times(*rows, stride)?.div_ceil(4), "output")?;
        }
        Step::QDynDense {
            x,
            y,
            rows,
            k,
            n,
            lo,
            hi,
            ..
        } => {
            if *k == 0 || *n == 0 {
                return Err("a dynamic integer layer with no depth or no outputs".into());
            }
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return Err("a clamp whose bounds are NaN or out of order".into());
            }
            need(
                x,
                times(*rows, int8::dynamic_stride(*k))?.div_ceil(4),
                "input",
            )?;
            need(y, times(*rows, *n)?, "output")?;
        }
        Step::QAdd {
            a,
            b,
            y,
            n,
            za,
            zb,
            zy,
            float,
            channels,
            ..
        } => {
            if *za > 255 || *zb > 255 || *zy > 255 {
                return Err("a zero point beyond u8".into());
            }
            if *channels > 0 && !n.is_multiple_of(*channels) {
                return Err("channels that do not divide".into());
            }
            need(a, n.div_ceil(4), "left")?;
            need(b, n.div_ceil(4), "right")?;
            need(y, if *float { *n } else { n.div_ceil(4) }, "output")?;
        }
        Step::QPlanar { x, y, c, hw } => {
            need(x, times(*c, *hw)?.div_ceil(4), "input")?;
            need(y, times(*c, *hw)?.div_ceil(4), "output")?;
        }
        Step::QMaxPool { x, y, g } => {
            geo(g)?;
            need(x, times(g.c, g.h * g.w)?.div_ceil(4), "input")?;
            need(y, times(g.c, g.oh * g.ow)?.div_ceil(4), "output")?;
        }
        Step::LayerNorm {
            x, y, rows, cols, ..
        } => {
            need(x, times(*rows, *cols)?, "input")?;
            need(y, times(*rows, *cols)?, "output")?;
        }
        Step::Gather {
            x,
            y,
            dims,
            offsets,
        } => {
            let n = dims.iter().try_fold(1, |p, &d| times(p, d))?;
            need(y, n, "output")?;
            let reach = gather::reach(dims, offsets)
                .ok_or("offset tables that do not match the dims, or overflow")?;
            src_holds(x, reach)?;
        }
        Step::ConvTranspose {
            x, y, g, m, groups, ..
        } => {
            if *groups == 0 || !g.c.is_multiple_of(*groups) || !m.is_multiple_of(*groups) {
                return Err("groups that do not divide the channels".into());
            }
            need(x, times(g.c, times(g.h, g.w)?)?, "input")?;
            need(y, times(*m, times(g.oh, g.ow)?)?, "output")?;
            let cols = times(times(m / groups, times(g.kh, g.kw)?)?, times(g.h, g.w)?)?;
            if cols > scratch {
                return Err("the scratch buffer is too small".into());
            }
        }
        Step::InstanceNorm { x, y, c, hw, .. } => {
            need(x, times(*c, *hw)?, "input")?;
            need(y, times(*c, *hw)?, "output")?;
        }
        Step::Resample {
            x,
            y,
            dims,
            taps,
            order,
            ..
        } => {
            let n = dims.iter().try_fold(1, |p, &d| times(p, d))?;
            need(y, n, "output")?;
            let reach = resample::reach(dims, taps, order)
                .ok_or("tap tables that do not match the dims or the order, or overflow")?;
            need(x, reach, "input")?;
        }
        Step::BatchMatMul {
            a,
            a_strides,
            b,
            b_strides,
            dims,
            m,
            k,
            n,
            y,
            ..
        } => {
            let count = dims.iter().try_fold(1, |p, &d| times(p, d))?;
            need(y, times(count, times(*m, *n)?)?, "output")?;
            for (src, strides, matrix) in [
                (a, a_strides, times(*m, *k)?),
                (b, b_strides, times(*k, *n)?),
            ] {
                let reach = matmul::reach(dims, strides, matrix)
                    .ok_or("strides that do not match the dims, or overflow")?;
                src_holds(src, reach)?;
            }
        }
        Step::Reduce {
            x,
            y,
            outer,
            len,
            inner,
            ..
        } => {
            need(x, times(times(*outer, *len)?, *inner)?, "input")?;
            need(y, times(*outer, *inner)?, "output")?;
        }
        Step::Transpose { x, y, dims, perm } => {
            let n: usize = dims.iter().product();
            let mut seen = vec![false; dims.len()];
            for &p in perm {
                match seen.get_mut(p) {
                    Some(s) if !*s => *s = true,
                    _ => return Err("not a permutation".into()),
                }
            }
            if perm.len() != dims.len() {
                return Err("not a permutation".into());
            }
            need(x, n, "input")?;
            need(y, n, "output")?;
        }
    }
    Ok(())
}

/// The arena shared by the threads of one step. Each task takes an exclusive view of exactly
/// the range it writes (its samples, its output channels' rows, its rows or, for a one-row
/// dense layer, its columns), so the exclusive views of concurrent tasks never overlap.
///
/// Made only over memory that the code making it borrows mutably (a runner's arena, its
/// staged results, a thread's private arena) and touches through nothing else while the
/// `Arena` is in use.
struct Arena {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks of one `Pool::run` job share an `Arena` and take views of it at once. The
// memory outlives the job (its owner is borrowed mutably by the code that made the `Arena`,
// around the whole job), and the views never give a written float another live reference:
// - within one `views` call, the written range overlaps no read one (checked there);
// - across tasks, each writes only its own part of the step's output (its samples, or its
//   rows, channels, blocks or pixels of one sample, from `split`, which partitions), and
//   every range any task reads lies in a buffer the step reads, which `validate` makes
//   disjoint from the buffer it writes, at every batch;
// - a run of steps taken a sample at a time writes each task's own samples' results, and
//   results that share memory with the run's inputs go to `staged` (their own `Arena`),
//   not over inputs another task may still be reading; each task's private arena is its
//   own.
// Within a task, a view's `&mut` is dropped before the next view of the same range.
#[allow(unsafe_code)]
unsafe impl Sync for Arena {}

impl Arena {
    /// Shared views of `reads` and an exclusive view of `write`, after checking that all lie
    /// inside the arena and that `write` overlaps none of the reads. (`&self` hands out a
    /// `&mut` on purpose: tasks of one step share the arena and write disjoint ranges.)
    #[allow(unsafe_code, clippy::mut_from_ref)]
    fn views<const N: usize>(
        &self,
        reads: [std::ops::Range<usize>; N],
        write: std::ops::Range<usize>,
    ) -> Result<([&[f32]; N], &mut [f32]), String> {
        for r in reads.iter().chain(std::iter::once(&write)) {
            if r.start > r.end || r.end > self.len {
                return Err("a buffer lies outside the arena".into());
            }
        }
        for r in &reads {
            if r.start < write.end && write.start < r.end && !r.is_empty() && !write.is_empty() {
                return Err("a step reads the buffer it writes".into());
            }
        }
        // SAFETY: start ≤ end ≤ len (checked above), so each range is initialised floats of
        // the arena's memory; none is written while these shared views live (the written
        // range overlaps none of them, and no other task writes them: see `Arena`).
        let r =
            reads.map(|r| unsafe { std::slice::from_raw_parts(self.ptr.add(r.start), r.len()) });
        // SAFETY: inside the arena (checked above); nothing else reads or writes this range
        // while the view lives: not this call's reads (checked), not another task (its part
        // is disjoint, see `Arena`).
        let w = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(write.start), write.len()) };
        Ok((r, w))
    }

    /// Like [`Self::views`] with several written ranges, pairwise disjoint (a task's pixels
    /// of every output block).
    fn views_many<const N: usize>(
        &self,
        reads: [std::ops::Range<usize>; N],
        writes: &[std::ops::Range<usize>],
    ) -> Result<ManyViews<'_, N>, String> {
        let mut sorted: Vec<&std::ops::Range<usize>> = writes.iter().collect();
        sorted.sort_by_key(|r| r.start);
        if sorted.windows(2).any(|p| p[0].end > p[1].start) {
            return Err("a step's written ranges overlap".into());
        }
        let mut out = Vec::with_capacity(writes.len());
        let mut shared = None;
        for w in writes {
            let (r, m) = self.views(reads.clone(), w.clone())?;
            shared = Some(r);
            out.push(m);
        }
        match shared {
            Some(r) => Ok((r, out)),
            None => Ok((self.views(reads, 0..0)?.0, out)),
        }
    }
}

/// Shared read views and several exclusive written ones.
type ManyViews<'a, const N: usize> = ([&'a [f32]; N], Vec<&'a mut [f32]>);

/// Max pooling of one image: the blocked kernel on blocked tensors; else the AVX-512 window
/// kernel, or the portable loop.
fn max_pool(isa: Isa, blocked: bool, x: &[f32], g: &Geometry, y: &mut [f32]) -> Result<(), String> {
    if blocked {
        return blocked::window(isa, x, g, &blocked::Window::Max, y);
    }
    if !window::max_pool(isa, x, g, y) {
        pool::max_pool(x, g, y);
    }
    Ok(())
}

/// Average pooling of one image: the blocked kernel on blocked tensors; else the AVX-512
/// window kernel summing each window (a depthwise convolution with unit weights), each sum
/// then scaled by its divisor; or the portable loop.
#[allow(clippy::too_many_arguments)]
fn avg_pool(
    isa: Isa,
    blocked: bool,
    x: &[f32],
    g: &Geometry,
    count_pad: bool,
    pb: usize,
    pr: usize,
    y: &mut [f32],
) -> Result<(), String> {
    if blocked {
        let op = blocked::Window::Avg { count_pad, pb, pr };
        return blocked::window(isa, x, g, &op, y);
    }
    let ones = vec![1.0; g.c * g.kh * g.kw];
    if window::depthwise(isa, x, g, g.c, &ones, None, Act::None, y) {
        let scale = pool::avg_scales(g, count_pad, pb, pr);
        for plane in y.chunks_exact_mut(scale.len().max(1)).take(g.c) {
            for (v, s) in plane.iter_mut().zip(&scale) {
                *v *= s;
            }
        }
    } else {
        pool::avg_pool(x, g, count_pad, pb, pr, y);
    }
    Ok(())
}

/// A depthwise convolution of one image: the blocked kernel on blocked tensors (`w` packed
/// by `blocked::pack_depthwise`); else the AVX-512 window kernel, or the portable loop.
#[allow(clippy::too_many_arguments)]
fn depthwise(
    isa: Isa,
    blocked: bool,
    x: &[f32],
    g: &Geometry,
    m: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<(), String> {
    if blocked {
        return blocked::window(isa, x, g, &blocked::Window::Depthwise { w, bias, act }, y);
    }
    if !window::depthwise(isa, x, g, m, w, bias, act, y) {
        conv::depthwise(x, g, m, w, bias, act, y);
    }
    Ok(())
}

/// The arena floats of channels `rows` (`p` floats each) of sample `s` of `b`.
fn rows_of(
    b: &Buf,
    batch: usize,
    s: usize,
    rows: &std::ops::Range<usize>,
    p: usize,
) -> std::ops::Range<usize> {
    let start = range(b, batch, s).start;
    start + rows.start * p..start + rows.end * p
}

/// The arena floats of sample `s` of operand `v` (none for a constant).
fn src_range(v: &Src, batch: usize, s: usize) -> std::ops::Range<usize> {
    match v {
        Src::Arena(buf) => range(buf, batch, s),
        Src::Weight { .. } => 0..0,
    }
}

/// Operand `v`'s floats: its arena view `r`, or its range of the weights `wts`.
fn pick<'a>(v: &Src, r: &'a [f32], wts: &'a [f32]) -> &'a [f32] {
    match v {
        Src::Arena(_) => r,
        Src::Weight { off, len } => &wts[*off..off + len],
    }
}

/// The arena floats of sample `s` of `b`.
fn range(b: &Buf, batch: usize, s: usize) -> std::ops::Range<usize> {
    let start = b.off * batch + s * b.len;
    start..start + b.len
}

/// The weights a runner reads: the caller's, or a cache-line-aligned copy of them when
/// theirs are not aligned (the kernels' vector loads would straddle lines).
enum Weights<'p> {
    Borrowed(&'p [f32]),
    Owned(AlignedVec),
}

impl std::ops::Deref for Weights<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Weights::Borrowed(w) => w,
            Weights::Owned(w) => w,
        }
    }
}

/// Floats of scratch each thread gets: what the program asks for, and at least what its
/// integer convolutions take ([`int8::conv_scratch_len`]; a program lowered before they took
/// their working memory from the scratch asks for less).
fn scratch_len(prog: &Program) -> usize {
    prog.steps
        .iter()
        .map(|s| match s {
            Step::QConv { g, m, groups, .. } => int8::conv_scratch_len(g, *m, *groups),
            _ => 0,
        })
        .fold(prog.scratch, usize::max)
}

/// A program with its memory, ready to run.
pub struct Runner<'p> {
    prog: &'p Program,
    weights: Weights<'p>,
    isa: Isa,
    pool: std::sync::Arc<Pool>,
    batch: usize,
    /// Every buffer starts on a cache line (tensors' offsets are planned on lines).
    arena: AlignedVec,
    /// One im2col buffer per thread (also the integer convolutions' working memory).
    scratch: Vec<AlignedVec>,
    /// A stride-1 convolution's padded input, shared by the threads that split its rows.
    padded: AlignedVec,
    /// One single-sample arena per thread, for runs of steps taken a sample at a time
    /// (allocated on first use).
    private: Vec<AlignedVec>,
    /// Such a run's results that must wait until every sample has read its inputs (they
    /// share memory with them in the whole-batch arena).
    staged: Vec<f32>,
    /// Each such run's [`edges`], by its steps (they depend on the program only).
    edges: std::collections::HashMap<(usize, usize), std::sync::Arc<Edges>>,
    /// Whether each run starts from an arena of NaN ([`Runner::set_poison`]).
    poison: bool,
    /// Which steps split over the threads at the arena's batch ([`crate::split::plan`]).
    plan: crate::split::Plan,
}

impl<'p> Runner<'p> {
    /// Prepares `prog` with its own weights, for `threads` threads.
    pub fn new(prog: &'p Program, threads: usize) -> Result<Runner<'p>, String> {
        Runner::with_weights(prog, &prog.weights, threads)
    }

    /// Prepares `prog` with `weights` kept elsewhere (an ahead-of-time build's `.rodata`).
    pub fn with_weights(
        prog: &'p Program,
        weights: &'p [f32],
        threads: usize,
    ) -> Result<Runner<'p>, String> {
        Runner::with_pool(
            prog,
            weights,
            std::sync::Arc::new(Pool::new(threads.max(1))?),
        )
    }

    /// Prepares `prog` with `weights`, on `pool`'s threads (a pool shared with runners used
    /// one after another: [`Pool`] runs one job at a time).
    pub fn with_pool(
        prog: &'p Program,
        weights: &'p [f32],
        pool: std::sync::Arc<Pool>,
    ) -> Result<Runner<'p>, String> {
        validate(prog, weights.len())?;
        let threads = pool.threads();
        let weights = if (weights.as_ptr() as usize).is_multiple_of(64) {
            Weights::Borrowed(weights)
        } else {
            Weights::Owned(AlignedVec::from_slice(weights))
        };
        // The stored sparse matrices, once: `weights` never changes while the runner lives,
        // so the kernels may then read them unchecked (`SparseB::trusted`).
        for (i, step) in prog.steps.iter().enumerate() {
            if let Step::SparseDense { k, n, nnz, w, .. } = step {
                let words = &weights[*w..w + sparse::sparse_len(*n, *nnz)];
                let b = SparseB::new(*k, *n, words).map_err(|e| format!("step {i}: {e}"))?;
                if b.nnz() != *nnz {
                    return Err(format!(
                        "step {i}: the sparse matrix holds {} nonzeros, not {nnz}",
                        b.nnz()
                    ));
                }
            }
            if let Step::BlockDense {
                k,
                n,
                r,
                c,
                blocks,
                w,
                ..
            } = step
            {
                let words = &weights[*w..w + block_sparse::block_len(*n, *r, *c, *blocks)];
                let b = BlockB::new(*k, *n, *r, *c, words).map_err(|e| format!("step {i}: {e}"))?;
                if b.blocks() != *blocks {
                    return Err(format!(
                        "step {i}: the block-sparse matrix holds {} blocks, not {blocks}",
                        b.blocks()
                    ));
                }
            }
        }
        Ok(Runner {
            prog,
            weights,
            isa: Isa::detect(),
            pool,
            batch: 0,
            arena: AlignedVec::default(),
            scratch: (0..threads)
                .map(|_| AlignedVec::try_zeroed(scratch_len(prog), "a thread's scratch buffer"))
                .collect::<Result<_, _>>()?,
            padded: if threads > 1 {
                AlignedVec::try_zeroed(prog.scratch, "the padded-input buffer")?
            } else {
                AlignedVec::default()
            },
            private: vec![],
            staged: vec![],
            edges: Default::default(),
            poison: std::env::var("MCC_POISON").is_ok_and(|v| v == "1"),
            plan: crate::split::Plan::default(),
        })
    }

    /// Threads in use.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The program it runs.
    pub fn program(&self) -> &Program {
        self.prog
    }

    /// The kernel ISA in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Uses `isa`'s GEMM tiles (one the CPU supports: see [`Isa::detect`]); for tests that
    /// check every implementation on one machine.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), String> {
        let ok = match isa {
            Isa::Scalar => true,
            Isa::Avx2 => Isa::detect().has_avx2(),
            Isa::Avx512 => Isa::detect() == Isa::Avx512,
        };
        if !ok {
            return Err(format!("this CPU cannot run {}", isa.name()));
        }
        self.isa = isa;
        Ok(())
    }

    /// Makes every later run start from an arena filled with NaN (for tests: an element that
    /// a step should write but does not then reaches the outputs as NaN, where a zeroed or
    /// reused arena would hide it behind a plausible number). On from the start when the
    /// environment has `MCC_POISON=1` (as `scripts/test` sets), so compiled code and built
    /// executables run poisoned in the tests too.
    pub fn set_poison(&mut self, poison: bool) {
        self.poison = poison;
    }

    /// Sizes the arena for `batch` samples and returns it (for compiled code that works on
    /// it directly).
    pub fn arena_for(&mut self, batch: usize) -> Result<&mut [f32], String> {
        if let Some(b) = self.prog.fixed_batch
            && b != batch
        {
            return Err(format!("this model runs batch {b} only, not {batch}"));
        }
        if batch == 0 {
            return Err("batch 0".into());
        }
        let floats =
            self.prog.arena.checked_mul(batch).ok_or_else(|| {
                out_of_memory(usize::MAX, &format!("the arena for batch {batch}"))
            })?;
        if self.arena.len() != floats {
            // The old arena goes first: it may be most of the memory there is. Until the new
            // one exists, the runner holds no batch.
            self.arena = AlignedVec::default();
            self.batch = 0;
            self.arena = AlignedVec::try_zeroed(floats, &format!("the arena for batch {batch}"))?;
        }
        if self.poison {
            self.arena.fill(f32::NAN);
        }
        if self.batch != batch || self.plan.split.len() != self.prog.steps.len() {
            self.plan = crate::split::plan(self.prog, batch, self.pool.threads());
        }
        self.batch = batch;
        Ok(&mut self.arena)
    }

    /// Peak arena bytes at `batch`.
    pub fn arena_bytes(&self, batch: usize) -> usize {
        self.prog.arena * batch * 4
    }

    /// Runs the model on `inputs` (one slice per model input, batch × dims floats each);
    /// the batch is read off the first input.
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, String> {
        self.run_borrowed(inputs)?
            .into_iter()
            .map(|o| {
                let mut v = Vec::new();
                v.try_reserve_exact(o.len())
                    .map_err(|_| out_of_memory(o.len().saturating_mul(4), "an output"))?;
                v.extend_from_slice(o);
                Ok(v)
            })
            .collect()
    }

    /// Like [`Self::run`], but lends the outputs where they lie in the arena instead of
    /// copying them out (measurement over many batches runs without allocating per batch).
    pub fn run_borrowed(&mut self, inputs: &[&[f32]]) -> Result<Vec<&[f32]>, String> {
        let p = self.prog;
        let batch = self.set_inputs(inputs)?;
        self.steps(0..p.steps.len())?;
        let arena = &self.arena;
        p.outputs
            .iter()
            .map(|io| {
                let at = io.buf.off * batch;
                arena
                    .get(at..at + io.buf.len * batch)
                    .ok_or_else(|| format!("output `{}` lies outside the arena", io.name))
            })
            .collect()
    }

    /// Sizes the arena for the inputs' batch and copies them in; returns the batch.
    pub fn set_inputs(&mut self, inputs: &[&[f32]]) -> Result<usize, String> {
        let p = self.prog;
        if inputs.len() != p.inputs.len() {
            return Err(format!(
                "the model takes {} inputs, {} were given",
                p.inputs.len(),
                inputs.len()
            ));
        }
        let lens: Vec<usize> = inputs.iter().map(|x| x.len()).collect();
        let batch = p.batch_of(&lens)?;
        self.arena_for(batch)?;
        for (io, x) in p.inputs.iter().zip(inputs) {
            let n = io.buf.len * batch;
            if x.len() != n {
                return Err(format!(
                    "input `{}` needs {n} floats for batch {batch}, got {}",
                    io.name,
                    x.len()
                ));
            }
            let at = io.buf.off * batch;
            self.arena[at..at + n].copy_from_slice(x);
        }
        Ok(batch)
    }

    /// Runs steps `which`: with a batch of at least one sample per thread, a sample at a
    /// time through all of them (each thread in its own single-sample arena, its
    /// activations staying in the core's cache; the values the run reads are copied in and
    /// those read after it copied out), else step after step over the whole batch.
    pub fn steps(&mut self, which: std::ops::Range<usize>) -> Result<(), String> {
        let steps = self.prog.steps.get(which.clone()).ok_or("no such steps")?;
        let (batch, threads) = (self.batch, self.pool.threads());
        if batch < 2 || batch < threads {
            return which.into_iter().try_for_each(|i| self.step(i));
        }
        // Dense steps take the whole batch (one GEMM); the runs between them go sample by
        // sample.
        let mut i = which.start;
        while i < which.end {
            let whole = |s: &Step| {
                matches!(
                    s,
                    Step::Dense { .. }
                        | Step::SparseDense { .. }
                        | Step::BlockDense { .. }
                        | Step::QDense { .. }
                        | Step::QDynDense { .. }
                )
            };
            let n = steps[i - which.start..]
                .iter()
                .take_while(|s| !whole(s))
                .count();
            if n > 1 {
                self.per_sample(i..i + n)?;
            } else {
                self.step(i)?;
            }
            i += n.max(1);
        }
        Ok(())
    }

    /// Steps `which` (no dense ones), a sample at a time (see [`Self::steps`]).
    fn per_sample(&mut self, which: std::ops::Range<usize>) -> Result<(), String> {
        let p = self.prog;
        let steps = p.steps.get(which.clone()).ok_or("no such steps")?;
        let (batch, threads) = (self.batch, self.pool.threads());
        if batch == 0 || self.arena.len() != p.arena * batch {
            return Err("the arena is not sized for a batch".into());
        }
        let known = self
            .edges
            .entry((which.start, which.end))
            .or_insert_with(|| std::sync::Arc::new(edges(p, which)))
            .clone();
        let (ins, outs) = &*known;
        // Results that share memory with an input wait in `staged` ([buffer][sample]).
        let mut at = 0;
        let outs: Vec<(Buf, Option<usize>)> = outs
            .iter()
            .copied()
            .map(|b| {
                if ins.iter().any(|i| overlap(i, &b)) {
                    at += b.len * batch;
                    (b, Some(at - b.len * batch))
                } else {
                    (b, None)
                }
            })
            .collect();
        if self.staged.len() < at {
            self.staged
                .try_reserve_exact(at - self.staged.len())
                .map_err(|_| out_of_memory(at.saturating_mul(4), "the staged results"))?;
            self.staged.resize(at, 0.0);
        }
        if self.poison {
            self.staged.fill(f32::NAN);
        }
        let poison = self.poison;
        let staged = Arena {
            ptr: self.staged.as_mut_ptr(),
            len: self.staged.len(),
        };
        if self.private.len() != threads {
            self.private = (0..threads)
                .map(|_| AlignedVec::try_zeroed(p.arena, "a thread's single-sample arena"))
                .collect::<Result<_, _>>()?;
        }
        let arena = Arena {
            ptr: self.arena.as_mut_ptr(),
            len: self.arena.len(),
        };
        let parts = threads.min(batch);
        let own: Vec<std::sync::Mutex<(&mut AlignedVec, &mut AlignedVec)>> = self
            .private
            .iter_mut()
            .zip(self.scratch.iter_mut())
            .map(std::sync::Mutex::new)
            .collect();
        let (w, isa) = (&self.weights[..], self.isa);
        let errors = std::sync::Mutex::new(None::<String>);
        self.pool.run(parts, &|t| {
            let Some(Ok(mut mine)) = own.get(t).map(|m| m.lock()) else {
                if let Ok(mut slot) = errors.lock() {
                    slot.get_or_insert("no arena for a task".into());
                }
                return;
            };
            let (private, buf) = &mut *mine;
            let one = Arena {
                ptr: private.as_mut_ptr(),
                len: private.len(),
            };
            let ctx = Ctx {
                w,
                isa,
                batch: 1,
                arena: &one,
            };
            let run = |s: usize, buf: &mut [f32]| -> Result<(), String> {
                if poison {
                    // Each sample starts from NaN: nothing left by the previous one shows
                    // through an element a step does not write.
                    one.views([], 0..one.len)?.1.fill(f32::NAN);
                }
                for b in ins {
                    let ([src], _) = arena.views([range(b, batch, s)], 0..0)?;
                    let (_, dst) = one.views([], b.off..b.off + b.len)?;
                    dst.copy_from_slice(src);
                }
                for step in steps {
                    ctx.sample(step, 0, buf, 0..usize::MAX)?;
                }
                for (b, stage) in &outs {
                    let mine = b.off..b.off + b.len;
                    let ([src], _) = one.views([mine], 0..0)?;
                    let (_, dst) = match stage {
                        Some(at) => staged.views([], at + s * b.len..at + (s + 1) * b.len)?,
                        None => arena.views([], range(b, batch, s))?,
                    };
                    dst.copy_from_slice(src);
                }
                Ok(())
            };
            for s in split(batch, parts, 1, t) {
                if let Err(e) = run(s, buf) {
                    if let Ok(mut slot) = errors.lock() {
                        slot.get_or_insert(e);
                    }
                    return;
                }
            }
        });
        match errors.into_inner() {
            Ok(Some(e)) => return Err(e),
            Ok(None) => {}
            Err(_) => return Err("a task failed while reporting its error".into()),
        }
        for (b, stage) in &outs {
            if let Some(at) = stage {
                let n = b.len * batch;
                let whole = b.off * batch..b.off * batch + n;
                let (src, dst) = (self.staged.get(*at..at + n), self.arena.get_mut(whole));
                let (Some(src), Some(dst)) = (src, dst) else {
                    return Err("a staged result lies outside the arena".into());
                };
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// Runs step `i` over the current batch (after [`Self::arena_for`]).
    pub fn step(&mut self, i: usize) -> Result<(), String> {
        let step = self.prog.steps.get(i).ok_or("no such step")?;
        let batch = self.batch;
        if batch == 0 || self.arena.len() != self.prog.arena * batch {
            return Err("the arena is not sized for a batch".into());
        }
        let threads = self.pool.threads();
        let arena = Arena {
            ptr: self.arena.as_mut_ptr(),
            len: self.arena.len(),
        };
        let scratch: Vec<std::sync::Mutex<&mut AlignedVec>> =
            self.scratch.iter_mut().map(std::sync::Mutex::new).collect();
        let ctx = Ctx {
            w: &self.weights,
            isa: self.isa,
            batch,
            arena: &arena,
        };
        let errors = std::sync::Mutex::new(None::<String>);
        let fail = |e: String| {
            if let Ok(mut slot) = errors.lock() {
                slot.get_or_insert(e);
            }
        };
        let big = step.flops() > 2_000_000;
        // Whether this step splits over the threads: the static plan for this batch
        // (`split.rs`), which also says whether the workers sleep after it. The plan marks
        // only steps that `split::splittable` admits (one sample per thread or fewer, the
        // sizes and channel counts each split path needs), so the arms below test `splits`
        // and nothing of that again.
        let splits = self.plan.split.get(i).copied().unwrap_or(false);
        let park = self.plan.park_after.get(i).copied().unwrap_or(false);
        match step {
            Step::Dense { .. } => {
                // One GEMM over the whole batch, split by rows (or by columns for one row),
                // when the batch's work is large (one sample of LeNet-5's 800×500 layer:
                // 26 → 9 µs on 2 threads, each core reading half the weights).
                let parts = if splits { threads } else { 1 };
                self.pool.run(parts, &|t| {
                    if let Err(e) = ctx.dense(step, t, parts) {
                        fail(e);
                    }
                });
            }
            Step::QDense { .. } => {
                // One integer GEMM over the whole batch, its rows split over the threads.
                let parts = if splits { threads } else { 1 };
                self.pool.run(parts, &|t| {
                    if let Err(e) = ctx.qdense(step, t, parts) {
                        fail(e);
                    }
                });
            }
            Step::QDynDense { .. } => {
                // Likewise, on dynamically quantized rows.
                let parts = if splits { threads } else { 1 };
                self.pool.run(parts, &|t| {
                    if let Err(e) = ctx.qdyn_dense(step, t, parts) {
                        fail(e);
                    }
                });
            }
            Step::SparseDense { .. } | Step::BlockDense { .. } => {
                // Like a dense step: the whole batch, split by rows or, for one row, columns.
                let parts = if splits { threads } else { 1 };
                self.pool.run(parts, &|t| {
                    let Some(Ok(mut buf)) = scratch.get(t).map(|m| m.lock()) else {
                        return fail("no scratch for a task".into());
                    };
                    let done = match step {
                        Step::BlockDense { .. } => ctx.block_dense(step, t, parts, &mut buf[..]),
                        _ => ctx.sparse_dense(step, t, parts, &mut buf[..]),
                    };
                    if let Err(e) = done {
                        fail(e);
                    }
                });
            }
            Step::Conv {
                x,
                g,
                m,
                layout: ConvLayout::Blocked { x_blocked },
                ..
            } if splits => {
                // One sample: split the output by pixels, or by blocks when the weights
                // outweigh the input (each task then reads its blocks' weights only). Each
                // task pads the input rows it reads into its own scratch: with the same split
                // as the layer before, they are the rows that layer's task wrote on this
                // thread, still in this core's cache.
                let k = g.c * g.kh * g.kw;
                let nb = m.div_ceil(LANES);
                let by_blocks = m * k > g.c * g.h * g.w && nb >= threads;
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        let q = g.oh * g.ow;
                        let (blocks, pixels) = if by_blocks {
                            (split(nb, threads, 1, t), 0..q)
                        } else {
                            (0..nb, split(q, threads, 8, t))
                        };
                        let Some(Ok(mut buf)) = scratch.get(t).map(|m| m.lock()) else {
                            return fail("no scratch for a task".into());
                        };
                        if let Err(e) = ctx.conv_blocked(step, s, &mut buf, blocks, pixels) {
                            fail(e);
                        }
                    });
                }
            }
            Step::Conv {
                g,
                layout: ConvLayout::Winograd,
                ..
            } if splits => {
                // One sample: split the tile rows (each task transforms the input its tiles
                // read into its own scratch; an output's bits do not depend on the split).
                let (rows, _) = winograd::tiles(g);
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        let Some(Ok(mut buf)) = scratch.get(t).map(|m| m.lock()) else {
                            return fail("no scratch for a task".into());
                        };
                        let mine = split(rows, threads, 1, t);
                        if let Err(e) = ctx.conv_winograd(step, s, &mut buf, mine) {
                            fail(e);
                        }
                    });
                }
            }
            Step::Conv {
                x,
                y,
                g,
                m,
                groups: 1,
                w,
                bias,
                residual,
                act,
                layout: ConvLayout::Gemm,
            } if splits && !g.is_pointwise() => {
                // One large sample: pad (and split by stride phase) the input once, then
                // split the output channels (whole weight panels) over the threads.
                let k = g.c * g.kh * g.kw;
                let wa = PackedA {
                    m: *m,
                    k,
                    data: &self.weights[*w..w + gemm::pack_a_len(*m, k)],
                };
                let bias = bias.map_or(Bias::None, |b| Bias::PerRow(&self.weights[b..b + m]));
                for s in 0..batch {
                    let ([xs], _) = arena.views([range(x, batch, s)], 0..0)?;
                    conv::pad_input(xs, g, 0, g.c, &mut self.padded)?;
                    let padded: &[f32] = &self.padded;
                    self.pool.run(threads, &|t| {
                        let rows = split(*m, threads, gemm::MR, t);
                        // This task's output channels only (and the residual's same channels).
                        let p = g.oh * g.ow;
                        let mine = rows_of(y, batch, s, &rows, p);
                        let theirs = residual.map_or(0..0, |r| rows_of(&r, batch, s, &rows, p));
                        let res = arena.views([theirs], mine).and_then(|([rs], ys)| {
                            let ep = Epilogue {
                                bias,
                                residual: residual.is_some().then_some(rs),
                                act: *act,
                            };
                            conv::conv_indirect_rows(ctx.isa, wa, rows, &ep, padded, g, g.c, ys)
                        });
                        if let Err(e) = res {
                            fail(e);
                        }
                    });
                }
            }
            Step::Conv {
                g,
                groups: 1,
                layout: ConvLayout::Gemm,
                ..
            } if splits && g.is_pointwise() => {
                // One large sample: the output channels in parallel.
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        if let Err(e) = ctx.conv_rows(step, s, t, threads) {
                            fail(e);
                        }
                    });
                }
            }
            Step::Conv {
                groups,
                layout: ConvLayout::Gemm,
                ..
            } if splits => {
                // One sample of a grouped convolution: its groups in parallel.
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        let Some(Ok(mut buf)) = scratch.get(t).map(|m| m.lock()) else {
                            return fail("no scratch for a task".into());
                        };
                        let mine = split(*groups, threads, 1, t);
                        if let Err(e) = ctx.conv_groups(step, s, mine, &mut buf) {
                            fail(e);
                        }
                    });
                }
            }
            Step::Concat {
                y, parts, plane, ..
            } if splits => {
                // One sample of channel blocks: each task copies its pixels of every block.
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        let px = split(plane / LANES, threads, 8, t);
                        let span = px.start * LANES..px.end * LANES;
                        let mut at = range(y, batch, s).start;
                        for (p, chunk) in parts {
                            let x0 = range(p, batch, s).start;
                            for j in (0..*chunk).step_by(*plane) {
                                let (from, to) = (x0 + j, at + j);
                                let src = from + span.start..from + span.end;
                                let dst = to + span.start..to + span.end;
                                match arena.views([src], dst) {
                                    Ok(([xs], ys)) => ys.copy_from_slice(xs),
                                    Err(e) => return fail(e),
                                }
                            }
                            at += chunk;
                        }
                    });
                }
            }
            Step::Reorder {
                x,
                y,
                c,
                hw,
                to_blocked,
            } if splits => {
                // One large sample: its channel blocks in parallel (each block's channels
                // are one run of the plain layout, its pixels one run of the blocked).
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        let blocks = split(c.div_ceil(LANES), threads, 1, t);
                        let (c0, c1) = (blocks.start * LANES, (blocks.end * LANES).min(*c));
                        if c0 >= c1 {
                            return;
                        }
                        let (x0, y0) = (
                            range(x, batch, s).start + c0 * hw,
                            range(y, batch, s).start + c0 * hw,
                        );
                        let (xn, yn) = if *to_blocked {
                            (c1 - c0, c1 - c0)
                        } else {
                            ((c1 - c0).next_multiple_of(LANES), c1 - c0)
                        };
                        let src = x0..x0 + xn * hw;
                        let r = match arena.views([src], y0..y0 + yn * hw) {
                            Ok(([xs], ys)) if *to_blocked => {
                                blocked::to_blocked(ctx.isa, xs, c1 - c0, *hw, ys)
                            }
                            Ok(([xs], ys)) => blocked::from_blocked(ctx.isa, xs, c1 - c0, *hw, ys),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = r {
                            fail(e);
                        }
                    });
                }
            }
            Step::MaxPool { g, .. } | Step::AvgPool { g, .. } | Step::Depthwise { g, .. }
                if splits =>
            {
                // One large sample: its channels in parallel.
                for s in 0..batch {
                    self.pool.run(threads, &|t| {
                        if let Err(e) = ctx.window_channels(step, s, t, threads) {
                            fail(e);
                        }
                    });
                }
            }
            _ => {
                // Samples in parallel, contiguous ranges, one scratch per task.
                let parts = if big || batch >= 4 * threads {
                    threads.min(batch)
                } else {
                    1
                };
                self.pool.run(parts, &|t| {
                    let Some(Ok(mut buf)) = scratch.get(t).map(|m| m.lock()) else {
                        return fail("no scratch for a task".into());
                    };
                    for s in split(batch, parts, 1, t) {
                        if let Err(e) = ctx.sample(step, s, &mut buf, 0..usize::MAX) {
                            fail(e);
                            return;
                        }
                    }
                });
            }
        }
        if park {
            self.pool.park();
        }
        match errors.into_inner() {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err("a task failed while reporting its error".into()),
        }
    }
}

/// A run's inputs (copied in) and live results (copied out): see [`edges`].
type Edges = (Vec<Buf>, Vec<Buf>);

/// Whether two buffers share floats of a sample (memory, in the plan).
fn overlap(a: &Buf, b: &Buf) -> bool {
    a.off < b.off + b.len && b.off < a.off + a.len
}

/// The edges of a run of steps taken a sample at a time: the buffers it reads before
/// writing them (copied in), and those it writes that a later step or an output reads
/// before anything overwrites them (copied out). Offsets are per sample, so overlap here is
/// sharing memory in the plan.
fn edges(p: &Program, run: std::ops::Range<usize>) -> (Vec<Buf>, Vec<Buf>) {
    let (mut ins, mut written) = (Vec::<Buf>::new(), Vec::<Buf>::new());
    for s in p.steps.get(run.clone()).unwrap_or_default() {
        for r in s.reads() {
            if !written.iter().any(|w| overlap(w, &r)) && !ins.contains(&r) {
                ins.push(r);
            }
        }
        written.push(s.writes());
    }
    let later = p.steps.get(run.end..).unwrap_or_default();
    let mut outs = vec![];
    for (j, w) in written.iter().enumerate() {
        if written[j + 1..].iter().any(|v| overlap(v, w)) || outs.contains(w) {
            continue; // overwritten within the run
        }
        let mut live = None;
        for s in later {
            if s.reads().iter().any(|r| overlap(r, w)) {
                live = Some(true);
            } else if overlap(&s.writes(), w) {
                live = Some(false);
            }
            if live.is_some() {
                break;
            }
        }
        if live.unwrap_or_else(|| p.outputs.iter().any(|io| overlap(&io.buf, w))) {
            outs.push(*w);
        }
    }
    (ins, outs)
}

/// What every task of a step reads.
struct Ctx<'a> {
    w: &'a [f32],
    isa: Isa,
    batch: usize,
    arena: &'a Arena,
}

impl Ctx<'_> {
    fn packed_a<'w>(
        &self,
        w: &'w [f32],
        off: usize,
        m: usize,
        groups: usize,
        k: usize,
    ) -> Vec<PackedA<'w>> {
        let (mg, groups) = (m / groups.max(1), groups.max(1));
        let len = gemm::pack_a_len(mg, k);
        (0..groups)
            .map(|gi| PackedA {
                m: mg,
                k,
                data: &w[off + gi * len..off + (gi + 1) * len],
            })
            .collect()
    }

    /// Channels `part` of `parts` of a pooling or depthwise convolution of sample `s`
    /// (whole input channels: a depthwise convolution's output channels in groups of its
    /// multiplier). The task views (and writes) only its channels.
    fn window_channels(
        &self,
        step: &Step,
        s: usize,
        part: usize,
        parts: usize,
    ) -> Result<(), String> {
        let (x, y, g) = match step {
            Step::MaxPool { x, y, g, .. }
            | Step::AvgPool { x, y, g, .. }
            | Step::Depthwise { x, y, g, .. } => (x, y, g),
            _ => return Err("not a window step".into()),
        };
        let blocked = matches!(
            step,
            Step::MaxPool { blocked: true, .. }
                | Step::AvgPool { blocked: true, .. }
                | Step::Depthwise { blocked: true, .. }
        );
        let chans = split(g.c, parts, if blocked { LANES } else { 1 }, part);
        if chans.is_empty() {
            return Ok(());
        }
        let m = match step {
            Step::Depthwise { m, .. } => *m,
            _ => g.c,
        };
        let mult = (m / g.c.max(1)).max(1);
        let (hw, p) = (g.h * g.w, g.oh * g.ow);
        let (xs0, ys0) = (range(x, self.batch, s).start, range(y, self.batch, s).start);
        let mine = xs0 + chans.start * hw..xs0 + chans.end * hw;
        let ([xs], ys) = self.arena.views(
            [mine],
            ys0 + chans.start * mult * p..ys0 + chans.end * mult * p,
        )?;
        let sub = Geometry {
            c: chans.len(),
            ..*g
        };
        match step {
            Step::Depthwise { w, bias, act, .. } => {
                let kk = g.kh * g.kw;
                let (o0, o1) = (chans.start * mult, chans.end * mult);
                let ws = &self.w[w + o0 * kk..w + o1 * kk];
                let bias = bias.map(|b| &self.w[b + o0..b + o1]);
                depthwise(self.isa, blocked, xs, &sub, o1 - o0, ws, bias, *act, ys)
            }
            Step::AvgPool {
                count_pad, pb, pr, ..
            } => avg_pool(self.isa, blocked, xs, &sub, *count_pad, *pb, *pr, ys),
            _ => max_pool(self.isa, blocked, xs, &sub, ys),
        }
    }

    /// Groups `mine` of a grouped NCHW convolution of sample `s` (their input channels in,
    /// their output channels out; `buf` as scratch).
    fn conv_groups(
        &self,
        step: &Step,
        s: usize,
        mine: std::ops::Range<usize>,
        buf: &mut [f32],
    ) -> Result<(), String> {
        let Step::Conv {
            x,
            y,
            g,
            m,
            groups,
            w,
            bias,
            residual,
            act,
            layout: ConvLayout::Gemm,
        } = step
        else {
            return Err("not a grouped convolution".into());
        };
        if mine.is_empty() {
            return Ok(());
        }
        let groups = (*groups).max(1);
        let (cg, mg) = (g.c / groups, m / groups);
        let (hw, p) = (g.h * g.w, g.oh * g.ow);
        let packed = self.packed_a(self.w, *w, *m, groups, cg * g.kh * g.kw);
        let x0 = range(x, self.batch, s).start;
        let rows = mine.start * mg..mine.end * mg;
        let theirs = residual.map_or(0..0, |r| rows_of(&r, self.batch, s, &rows, p));
        let ([xs, rs], ys) = self.arena.views(
            [x0 + mine.start * cg * hw..x0 + mine.end * cg * hw, theirs],
            rows_of(y, self.batch, s, &rows, p),
        )?;
        let sub = Geometry {
            c: mine.len() * cg,
            ..*g
        };
        conv::conv2d(
            self.isa,
            xs,
            &sub,
            packed.get(mine.clone()).ok_or("groups out of range")?,
            bias.map(|o| &self.w[o + rows.start..o + rows.end]),
            residual.is_some().then_some(rs),
            *act,
            ys,
            buf,
            0..p,
        )
    }

    /// Output blocks `blocks`, pixels `pixels` of a blocked convolution of sample `s`,
    /// padding the input rows they read into `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn conv_blocked(
        &self,
        step: &Step,
        s: usize,
        scratch: &mut [f32],
        blocks: std::ops::Range<usize>,
        pixels: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let Step::Conv {
            x,
            y,
            g,
            m,
            w,
            bias,
            residual,
            act,
            layout: ConvLayout::Blocked { x_blocked },
            ..
        } = step
        else {
            return Err("not a blocked convolution".into());
        };
        if blocks.is_empty() {
            return Ok(());
        }
        let p = g.oh * g.ow * LANES;
        let theirs = residual.map_or(0..0, |r| rows_of(&r, self.batch, s, &blocks, p));
        // Each block's run of this task's pixels.
        let y0 = range(y, self.batch, s).start;
        let mine: Vec<std::ops::Range<usize>> = blocks
            .clone()
            .map(|b| y0 + b * p + pixels.start * LANES..y0 + b * p + pixels.end * LANES)
            .collect();
        let ([xs, rs], mut ys) = self
            .arena
            .views_many([range(x, self.batch, s), theirs], &mine)?;
        let (xp, (hp, wp)): (&[f32], _) = if !blocked::needs_padding(g) {
            (xs, (g.h, g.w))
        } else {
            let need = blocked::padded_len(g);
            let buf = scratch
                .get_mut(..need)
                .ok_or("the scratch buffer is too small")?;
            blocked::pad_rows(xs, g, *x_blocked, blocked::rows_read(g, &pixels), buf)?;
            (buf, blocked::padded_dims(g))
        };
        // Whole blocks of weights and bias (zero beyond the `m` channels).
        let (k, mc) = (g.c * g.kh * g.kw, m.next_multiple_of(LANES));
        let args = blocked::ConvArgs {
            x: xp,
            x_blocked: *x_blocked,
            hp,
            wp,
            g,
            w: &self.w[*w..w + mc * k],
            blocks: blocks.clone(),
            pixels,
            bias: bias.map(|b| &self.w[b..b + mc]),
            residual: residual.is_some().then_some(rs),
            act: *act,
        };
        blocked::conv(self.isa, &args, &mut ys)
    }

    /// Tile rows `rows` of every output block of a Winograd convolution of sample `s`, with
    /// `scratch` for the transformed input.
    fn conv_winograd(
        &self,
        step: &Step,
        s: usize,
        scratch: &mut [f32],
        rows: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let Step::Conv {
            x,
            y,
            g,
            m,
            w,
            bias,
            residual,
            act,
            layout: ConvLayout::Winograd,
            ..
        } = step
        else {
            return Err("not a Winograd convolution".into());
        };
        if rows.is_empty() {
            return Ok(());
        }
        let (nb, p) = (m.div_ceil(LANES), g.oh * g.ow * LANES);
        // Each block's output rows of this task's tile rows.
        let (r0, r1) = (
            (rows.start * winograd::TILE).min(g.oh),
            (rows.end * winograd::TILE).min(g.oh),
        );
        let y0 = range(y, self.batch, s).start;
        let mine: Vec<std::ops::Range<usize>> = (0..nb)
            .map(|b| y0 + b * p + r0 * g.ow * LANES..y0 + b * p + r1 * g.ow * LANES)
            .collect();
        let rr = residual.map_or(0..0, |r| range(&r, self.batch, s));
        let ([xs, rs], mut ys) = self
            .arena
            .views_many([range(x, self.batch, s), rr], &mine)?;
        let args = winograd::Args {
            x: xs,
            g,
            w: &self.w[*w..w + winograd::weights_len(*m, g.c)],
            blocks: nb,
            rows,
            bias: bias.map(|b| &self.w[b..b + nb * LANES]),
            residual: residual.is_some().then_some(rs),
            act: *act,
        };
        winograd::conv(self.isa, &args, &mut ys, scratch)
    }

    /// Output channels `part` of `parts` of a one-group pointwise convolution of sample `s`
    /// (the GEMM reads the input directly). The task views (and writes) only its channels'
    /// rows of the output.
    fn conv_rows(&self, step: &Step, s: usize, part: usize, parts: usize) -> Result<(), String> {
        let Step::Conv {
            x,
            y,
            g,
            m,
            w,
            bias,
            residual,
            act,
            ..
        } = step
        else {
            return Err("not a convolution".into());
        };
        if !g.is_pointwise() {
            return Err("conv_rows: not a pointwise convolution".into());
        }
        let rows = split(*m, parts, gemm::MR, part);
        let (k, p) = (g.c * g.kh * g.kw, g.oh * g.ow);
        let theirs = residual.map_or(0..0, |r| rows_of(&r, self.batch, s, &rows, p));
        let ([xs, rs], ys) = self.arena.views(
            [range(x, self.batch, s), theirs],
            rows_of(y, self.batch, s, &rows, p),
        )?;
        let first = *w + rows.start / gemm::MR * k * gemm::MR;
        let sub = PackedA {
            m: rows.len(),
            k,
            data: &self.w[first..*w + gemm::pack_a_len(*m, k)],
        };
        let ep = Epilogue {
            bias: bias.map_or(Bias::None, |b| {
                Bias::PerRow(&self.w[b + rows.start..b + rows.end])
            }),
            residual: residual.is_some().then_some(rs),
            act: *act,
        };
        gemm::gemm_packed_a(self.isa, sub, xs, p, p, ys, p, &ep, 0..p)
    }

    /// A fully connected step, part `t` of `parts`: a share of the rows, or of the columns
    /// when there is a single row. The task views (and writes) only its part of the output.
    fn dense(&self, step: &Step, t: usize, parts: usize) -> Result<(), String> {
        let Step::Dense {
            x,
            y,
            rows,
            k,
            n,
            w,
            bias,
            act,
        } = step
        else {
            return Err("not a dense step".into());
        };
        if x.len != rows * k || y.len != rows * n {
            return Err("dense: buffers do not match the layer".into());
        }
        let (k, n, m) = (*k, *n, rows * self.batch);
        let (x0, y0) = (x.off * self.batch, y.off * self.batch);
        let data = &self.w[*w..w + gemm::pack_b_len(k, n)];
        if m == 1 && parts > 1 {
            // One row: panels of columns; the packed panels from `c.start` on are themselves a
            // packed matrix of `c.len()` columns.
            let c = split(n, parts, gemm::NR, t);
            let input = x0..x0 + k;
            let ([xs], ys) = self.arena.views([input], y0 + c.start..y0 + c.end)?;
            let ep = Epilogue {
                bias: bias.map_or(Bias::None, |b| {
                    Bias::PerCol(&self.w[b + c.start..b + c.end])
                }),
                residual: None,
                act: *act,
            };
            let pb = PackedB {
                k,
                n: c.len(),
                data: &data[c.start / gemm::NR * k * gemm::NR..],
            };
            return gemm::gemm_packed_b(self.isa, xs, k, 1, pb, ys, c.len(), &ep, 0..1, 0..c.len());
        }
        let r = split(m, parts, gemm::MR, t);
        let input = x0 + r.start * k..x0 + r.end * k;
        let ([xs], ys) = self
            .arena
            .views([input], y0 + r.start * n..y0 + r.end * n)?;
        let ep = Epilogue {
            bias: bias.map_or(Bias::None, |b| Bias::PerCol(&self.w[b..b + n])),
            residual: None,
            act: *act,
        };
        let pb = PackedB { k, n, data };
        gemm::gemm_packed_b(self.isa, xs, k, r.len(), pb, ys, n, &ep, 0..r.len(), 0..n)
    }

    /// An integer fully connected step, part `t` of `parts`: a share of the batch's rows.
    /// The rows of consecutive samples are one matrix when a sample's codes fill its buffer
    /// exactly (`rows·k` and `rows·n` multiples of 4), else each sample is its own product.
    fn qdense(&self, step: &Step, t: usize, parts: usize) -> Result<(), String> {
        let Step::QDense {
            x,
            y,
            rows,
            k,
            n,
            w,
            q,
            zy,
            lo,
            hi,
            ..
        } = step
        else {
            return Err("not an integer dense step".into());
        };
        let (k, n, rows) = (*k, *n, *rows);
        let (bias, mult, shift) = int8::requants(&self.w[*q..q + 3 * n], n)?;
        let rq = int8::Requants {
            bias,
            mult,
            shift,
            zp: *zy as i32,
            lo: *lo as i32,
            hi: *hi as i32,
        };
        let panels = int8::bytes(&self.w[*w..w + int8::panels_len(n, k).div_ceil(4)]);
        let path = int8::Path::of(self.isa);
        let layout = int8::Layout {
            row_stride: n,
            col0: 0,
        };
        let packed = x.len * 4 == rows * k && y.len * 4 == rows * n;
        let (units, per) = if packed {
            (rows * self.batch, 1)
        } else {
            (self.batch, rows)
        };
        let r = split(units, parts, if packed { 4 } else { 1 }, t);
        if r.is_empty() {
            return Ok(());
        }
        if packed {
            // Rows r of the batch's one matrix.
            let (x0, y0) = (x.off * self.batch, y.off * self.batch);
            let xr = x0 + (r.start * k) / 4..x0 + (r.end * k).div_ceil(4);
            let yr = y0 + (r.start * n) / 4..y0 + (r.end * n).div_ceil(4);
            let ([xs], ys) = self.arena.views([xr], yr)?;
            // Whole floats: r.start·k and r.start·n are multiples of 4 (r.start is).
            let xb = int8::bytes(xs);
            let yb = int8::bytes_mut(ys);
            let rows = int8::Rows::Matrix {
                bytes: xb,
                stride: k,
            };
            return int8::gemm(path, &rows, 0..r.len(), k, panels, n, &rq, layout, yb)
                .map_err(|e| format!("{e} (rows {r:?})"));
        }
        for s in r {
            let ([xs], ys) = self
                .arena
                .views([range(x, self.batch, s)], range(y, self.batch, s))?;
            let rows = int8::Rows::Matrix {
                bytes: int8::bytes(xs),
                stride: k,
            };
            int8::gemm(
                path,
                &rows,
                0..per,
                k,
                panels,
                n,
                &rq,
                layout,
                int8::bytes_mut(ys),
            )?;
        }
        Ok(())
    }

    /// A fully connected step on dynamically quantized rows, part `t` of `parts`: a share of
    /// the batch's rows (one matrix when the buffers hold exactly a sample's rows, else
    /// sample by sample).
    fn qdyn_dense(&self, step: &Step, t: usize, parts: usize) -> Result<(), String> {
        let Step::QDynDense {
            x,
            y,
            rows,
            k,
            n,
            w,
            q,
            lo,
            hi,
        } = step
        else {
            return Err("not a dynamic integer dense step".into());
        };
        let (k, n, rows) = (*k, *n, *rows);
        // Validation kept `q + 3n` inside the weights; checked again rather than trusted.
        let words = q
            .checked_add(n.saturating_mul(3))
            .and_then(|end| self.w.get(*q..end))
            .ok_or("dequantization words missing")?;
        let colsum = int8::ints(words.get(..n).ok_or("dequantization words missing")?);
        let path = int8::Path::of(self.isa);
        let panels = int8::bytes(&self.w[*w..w + int8::panels_len(n, k).div_ceil(4)]);
        let stride = int8::dynamic_stride(k);
        let layout = int8::Layout {
            row_stride: n,
            col0: 0,
        };
        let packed = x.len * 4 == rows * stride && y.len == rows * n;
        let (units, per) = if packed {
            (rows * self.batch, 1)
        } else {
            (self.batch, rows)
        };
        let r = split(units, parts, 1, t);
        let samples = if packed {
            vec![(r.start * stride / 4, r.start * n, r.len())]
        } else {
            r.map(|s| (s * x.len, s * y.len, per)).collect()
        };
        for (xo, yo, count) in samples {
            if count == 0 {
                continue;
            }
            let (x0, y0) = (x.off * self.batch + xo, y.off * self.batch + yo);
            let xr = x0..x0 + count * stride / 4;
            let ([xs], ys) = self.arena.views([xr], y0..y0 + count * n)?;
            let xb = int8::bytes(xs);
            let d = int8::Dequants {
                rows: xb,
                k,
                colsum,
                scale: &words[n..2 * n],
                bias: &words[2 * n..3 * n],
                clamp: crate::quant::FloatClamp { lo: *lo, hi: *hi },
            };
            let m = int8::Rows::Matrix { bytes: xb, stride };
            int8::gemm(
                path,
                &m,
                0..count,
                int8::padded_k(k),
                panels,
                n,
                &d,
                layout,
                ys,
            )
            .map_err(|e| format!("{e} (rows {count} at {xo})"))?;
        }
        Ok(())
    }

    /// A sparse fully connected step, part `t` of `parts`: a share of the rows (in steps of
    /// 16, a vector of rows), or of the columns when there is a single row; `buf` is the
    /// task's scratch.
    fn sparse_dense(
        &self,
        step: &Step,
        t: usize,
        parts: usize,
        buf: &mut [f32],
    ) -> Result<(), String> {
        let Step::SparseDense {
            x,
            y,
            rows,
            k,
            n,
            nnz,
            w,
            bias,
            act,
        } = step
        else {
            return Err("not a sparse dense step".into());
        };
        if Some(x.len) != rows.checked_mul(*k) || Some(y.len) != rows.checked_mul(*n) {
            return Err("sparse dense: buffers do not match the layer".into());
        }
        let m = rows
            .checked_mul(self.batch)
            .ok_or("sparse dense: rows × batch overflow")?;
        let (k, n) = (*k, *n);
        let (x0, y0) = (x.off * self.batch, y.off * self.batch);
        // SAFETY: `Runner::with_weights` checked these words with `SparseB::new` for this
        // step's k and n, and a runner's weights never change.
        #[allow(unsafe_code)]
        let b = unsafe { SparseB::trusted(k, n, &self.w[*w..w + sparse::sparse_len(n, *nnz)]) };
        let ep = Epilogue {
            bias: bias.map_or(Bias::None, |o| Bias::PerCol(&self.w[o..o + n])),
            residual: None,
            act: *act,
        };
        if m == 1 {
            let c = split(n, parts, 16, t);
            let input = x0..x0 + k;
            let ([xs], ys) = self.arena.views([input], y0 + c.start..y0 + c.end)?;
            return sparse::sparse_dense(self.isa, xs, k, 1, &b, ys, c.len(), &ep, c, buf);
        }
        let r = split(m, parts, 16, t);
        let input = x0 + r.start * k..x0 + r.end * k;
        let ([xs], ys) = self
            .arena
            .views([input], y0 + r.start * n..y0 + r.end * n)?;
        sparse::sparse_dense(self.isa, xs, k, r.len(), &b, ys, n, &ep, 0..n, buf)
    }

    /// A block-sparse fully connected step, part `t` of `parts`: a share of the rows (in
    /// steps of 16, a vector of rows), or of the block columns when there is a single row;
    /// `buf` is the task's scratch.
    fn block_dense(
        &self,
        step: &Step,
        t: usize,
        parts: usize,
        buf: &mut [f32],
    ) -> Result<(), String> {
        let Step::BlockDense {
            x,
            y,
            rows,
            k,
            n,
            r,
            c: bc,
            blocks,
            w,
            bias,
            act,
        } = step
        else {
            return Err("not a block dense step".into());
        };
        if Some(x.len) != rows.checked_mul(*k) || Some(y.len) != rows.checked_mul(*n) {
            return Err("block dense: buffers do not match the layer".into());
        }
        let m = rows
            .checked_mul(self.batch)
            .ok_or("block dense: rows × batch overflow")?;
        let (k, n, r) = (*k, *n, *r);
        let (x0, y0) = (x.off * self.batch, y.off * self.batch);
        let words = &self.w[*w..w + block_sparse::block_len(n, r, *bc, *blocks)];
        // SAFETY: `Runner::with_weights` checked these words with `BlockB::new` for this
        // step's k, n, r and c, and a runner's weights never change.
        #[allow(unsafe_code)]
        let b = unsafe { BlockB::trusted(k, n, r, *bc, words) };
        let ep = Epilogue {
            bias: bias.map_or(Bias::None, |o| Bias::PerCol(&self.w[o..o + n])),
            residual: None,
            act: *act,
        };
        if m == 1 {
            // Whole block columns per task, about 16 columns each at least.
            let c = split(n, parts, r * 16usize.div_ceil(r), t);
            let input = x0..x0 + k;
            let ([xs], ys) = self.arena.views([input], y0 + c.start..y0 + c.end)?;
            return block_sparse::block_dense(self.isa, xs, k, 1, &b, ys, c.len(), &ep, c, buf);
        }
        let rr = split(m, parts, 16, t);
        let input = x0 + rr.start * k..x0 + rr.end * k;
        let ([xs], ys) = self
            .arena
            .views([input], y0 + rr.start * n..y0 + rr.end * n)?;
        block_sparse::block_dense(self.isa, xs, k, rr.len(), &b, ys, n, &ep, 0..n, buf)
    }

    /// Step `step` on sample `s` (all of it), with `buf` as im2col scratch.
    fn sample(
        &self,
        step: &Step,
        s: usize,
        buf: &mut [f32],
        _cols: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let (b, arena, wts) = (self.batch, self.arena, self.w);
        match step {
            Step::Conv {
                m,
                layout: ConvLayout::Blocked { .. },
                g,
                ..
            } => self.conv_blocked(step, s, buf, 0..m.div_ceil(LANES), 0..g.oh * g.ow),
            Step::Conv {
                layout: ConvLayout::Winograd,
                g,
                ..
            } => self.conv_winograd(step, s, buf, 0..winograd::tiles(g).0),
            Step::Conv {
                x,
                y,
                g,
                m,
                groups,
                w,
                bias,
                residual,
                act,
                layout: ConvLayout::Gemm,
            } => {
                let k = g.c / (*groups).max(1) * g.kh * g.kw;
                let packed = self.packed_a(wts, *w, *m, *groups, k);
                let rr = residual.map_or(0..0, |r| range(&r, b, s));
                let ([xs, rs], ys) = arena.views([range(x, b, s), rr], range(y, b, s))?;
                let bias = bias.map(|o| &wts[o..o + m]);
                conv::conv2d(
                    self.isa,
                    xs,
                    g,
                    &packed,
                    bias,
                    residual.is_some().then_some(rs),
                    *act,
                    ys,
                    buf,
                    0..g.oh * g.ow,
                )
            }
            Step::Depthwise {
                x,
                y,
                g,
                m,
                w,
                bias,
                act,
                blocked,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let bias = bias.map(|o| &wts[o..o + m]);
                let ws = &wts[*w..w + m * g.kh * g.kw];
                depthwise(self.isa, *blocked, xs, g, *m, ws, bias, *act, ys)
            }
            Step::Dense { .. }
            | Step::SparseDense { .. }
            | Step::BlockDense { .. }
            | Step::QDense { .. }
            | Step::QDynDense { .. } => Err("dense steps run over the whole batch".into()),
            Step::QRows { x, y, rows, k } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let len = rows * k;
                let out = &mut int8::bytes_mut(ys)[..rows * int8::dynamic_stride(*k)];
                int8::quantize_rows(&xs[..len], *k, out)
            }
            Step::Quantize {
                x,
                y,
                n,
                scale,
                zp,
                channels,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let codes = &mut int8::bytes_mut(ys)[..*n];
                int8::quantize(&xs[..*n], *scale, *zp as i32, codes, *channels);
                Ok(())
            }
            Step::Dequantize {
                x,
                y,
                n,
                scale,
                zp,
                channels,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let codes = &int8::bytes(xs)[..*n];
                int8::dequantize(codes, *scale, *zp as i32, &mut ys[..*n], *channels);
                Ok(())
            }
            Step::QAdd {
                a,
                b: bb,
                y,
                n,
                sa,
                za,
                sb,
                zb,
                sy,
                zy,
                relu,
                float,
                channels,
            } => {
                let ([xa, xb], ys) =
                    arena.views([range(a, b, s), range(bb, b, s)], range(y, b, s))?;
                let j = int8::Join {
                    a: (*sa, *za as i32),
                    b: (*sb, *zb as i32),
                    y: (*sy, *zy as i32),
                    relu: *relu,
                };
                let (xa, xb) = (&int8::bytes(xa)[..*n], &int8::bytes(xb)[..*n]);
                if *float {
                    int8::add_float(xa, xb, j, &mut ys[..*n], *channels);
                } else {
                    int8::add(xa, xb, j, &mut int8::bytes_mut(ys)[..*n]);
                }
                Ok(())
            }
            Step::QPlanar { x, y, c, hw } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                int8::to_planar(int8::bytes(xs), *c, *hw, int8::bytes_mut(ys))
            }
            Step::QConv {
                x,
                y,
                g,
                m,
                groups,
                zx,
                w,
                q,
                zy,
                lo,
                hi,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let wl = crate::program::qconv_weights(g, *m, *groups);
                let (bias, mult, shift) = int8::requants(&wts[*q..q + 3 * m], *m)?;
                let rq = int8::Requants {
                    bias,
                    mult,
                    shift,
                    zp: *zy as i32,
                    lo: *lo as i32,
                    hi: *hi as i32,
                };
                int8::conv(
                    int8::Path::of(self.isa),
                    int8::bytes(xs),
                    g,
                    *m,
                    *groups,
                    int8::bytes(&wts[*w..w + wl]),
                    *zx as u8,
                    &rq,
                    int8::bytes_mut(ys),
                    buf,
                )
            }
            Step::QMaxPool { x, y, g } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                int8::max_pool(int8::bytes(xs), g, int8::bytes_mut(ys))
            }
            Step::MaxPool { x, y, g, blocked } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                max_pool(self.isa, *blocked, xs, g, ys)
            }
            Step::AvgPool {
                x,
                y,
                g,
                count_pad,
                pb,
                pr,
                blocked,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                avg_pool(self.isa, *blocked, xs, g, *count_pad, *pb, *pr, ys)
            }
            Step::GlobalAvgPool {
                x,
                y,
                c,
                hw,
                blocked,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                if *blocked {
                    return blocked::global_avg(xs, *c, *hw, ys);
                }
                pool::global_avg_pool(xs, *c, *hw, ys);
                Ok(())
            }
            Step::Reorder {
                x,
                y,
                c,
                hw,
                to_blocked,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                if *to_blocked {
                    blocked::to_blocked(self.isa, xs, *c, *hw, ys)
                } else {
                    blocked::from_blocked(self.isa, xs, *c, *hw, ys)
                }
            }
            Step::Unary { x, y, act } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                eltwise::unary(xs, *act, ys);
                Ok(())
            }
            Step::Copy { x, y } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                ys[..xs.len()].copy_from_slice(xs);
                Ok(())
            }
            Step::Binary {
                a,
                a_strides,
                b: bb,
                b_strides,
                dims,
                op,
                act,
                y,
            } => {
                let ([ra, rb], ys) =
                    arena.views([src_range(a, b, s), src_range(bb, b, s)], range(y, b, s))?;
                eltwise::binary(
                    pick(a, ra, wts),
                    a_strides,
                    pick(bb, rb, wts),
                    b_strides,
                    dims,
                    *op,
                    *act,
                    ys,
                );
                Ok(())
            }
            Step::Affine {
                x,
                y,
                c,
                inner,
                scale,
                shift,
                act,
                blocked,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let (scale, shift) = (&wts[*scale..scale + c], &wts[*shift..shift + c]);
                if *blocked {
                    eltwise::affine_blocked(xs, scale, shift, *inner, *act, ys);
                } else {
                    eltwise::affine(xs, scale, shift, *inner, *act, ys);
                }
                Ok(())
            }
            Step::Concat {
                y, outer, parts, ..
            } => {
                let total: usize = parts.iter().map(|(_, c)| c).sum();
                let yr = range(y, b, s);
                let mut at = 0;
                for (p, chunk) in parts {
                    let ([xs], ys) = arena.views([range(p, b, s)], yr.clone())?;
                    for o in 0..*outer {
                        ys[o * total + at..o * total + at + chunk]
                            .copy_from_slice(&xs[o * chunk..(o + 1) * chunk]);
                    }
                    at += chunk;
                }
                Ok(())
            }
            Step::Softmax {
                x,
                y,
                rows,
                cols,
                log,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                eltwise::softmax(xs, *rows, *cols, *log, ys);
                Ok(())
            }
            Step::Lrn {
                x,
                y,
                c,
                hw,
                size,
                alpha,
                beta,
                bias,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                eltwise::lrn(xs, *c, *hw, *size, *alpha, *beta, *bias, ys);
                Ok(())
            }
            Step::Transpose { x, y, dims, perm } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                eltwise::transpose(xs, dims, perm, ys);
                Ok(())
            }
            Step::LayerNorm {
                x,
                y,
                rows,
                cols,
                eps,
                scale,
                bias,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let bias = bias.map(|o| &wts[o..o + cols]);
                reduce::layer_norm(xs, *rows, *cols, *eps, &wts[*scale..scale + cols], bias, ys)
            }
            Step::Gather {
                x,
                y,
                dims,
                offsets,
            } => {
                let ([xs], ys) = arena.views([src_range(x, b, s)], range(y, b, s))?;
                gather::gather(pick(x, xs, wts), dims, offsets, ys)
            }
            Step::ConvTranspose {
                x,
                y,
                g,
                lead_h,
                lead_w,
                m,
                groups,
                w,
                bias,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let ws = &wts[*w..w + conv_transpose::weights_len(g, *m, *groups)];
                let bias = bias.map(|o| &wts[o..o + m]);
                let lead = (*lead_h, *lead_w);
                conv_transpose::conv_transpose(
                    self.isa, xs, g, lead, *m, *groups, ws, bias, ys, buf,
                )
            }
            Step::InstanceNorm {
                x,
                y,
                c,
                hw,
                eps,
                scale,
                bias,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                let (scale, bias) = (&wts[*scale..scale + c], &wts[*bias..bias + c]);
                reduce::instance_norm(xs, *c, *hw, *eps, scale, bias, ys)
            }
            Step::Resample {
                x,
                y,
                dims,
                taps,
                order,
                fill,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                resample::resample(xs, dims, taps, order, *fill, ys)
            }
            Step::BatchMatMul {
                a,
                a_strides,
                b: bb,
                b_strides,
                dims,
                m,
                k,
                n,
                act,
                y,
            } => {
                let ([ra, rb], ys) =
                    arena.views([src_range(a, b, s), src_range(bb, b, s)], range(y, b, s))?;
                matmul::batch_matmul(
                    pick(a, ra, wts),
                    a_strides,
                    pick(bb, rb, wts),
                    b_strides,
                    dims,
                    (*m, *k, *n),
                    *act,
                    ys,
                )
            }
            Step::Reduce {
                x,
                y,
                outer,
                len,
                inner,
                op,
            } => {
                let ([xs], ys) = arena.views([range(x, b, s)], range(y, b, s))?;
                reduce::reduce(xs, *outer, *len, *inner, *op, ys)
            }
        }
    }
}
