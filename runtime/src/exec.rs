//! Runs a [`Program`]: checks once that every step stays inside the arena and the weights,
//! then executes the steps in order on caller-owned memory.

use crate::conv::{self, Geometry};
use crate::eltwise;
use crate::epilogue::{Bias, Epilogue};
use crate::gemm::{self, Isa, PackedA, PackedB};
use crate::pool;
use crate::program::{Buf, Program, Src, Step};

/// Checks a program: every buffer inside the arena (per sample), every weight reference
/// inside the weights, every step's sizes consistent with its buffers. After this, running
/// it cannot index out of bounds.
pub fn validate(p: &Program) -> Result<(), String> {
    let arena = |b: &Buf, what: &str| -> Result<(), String> {
        if b.off.checked_add(b.len).is_none_or(|end| end > p.arena) {
            return Err(format!("{what} [{}, +{}) is outside the arena of {}", b.off, b.len, p.arena));
        }
        Ok(())
    };
    let weight = |off: usize, len: usize, what: &str| -> Result<(), String> {
        if off.checked_add(len).is_none_or(|end| end > p.weights.len()) {
            return Err(format!("{what} is outside the weights"));
        }
        Ok(())
    };
    let need = |b: &Buf, n: usize, what: &str| -> Result<(), String> {
        if b.len < n {
            return Err(format!("{what} holds {} floats, the step needs {n}", b.len));
        }
        Ok(())
    };
    let geo = |g: &Geometry| -> Result<(), String> {
        let ok = g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0;
        if !ok {
            return Err("a window with a zero size, stride or dilation".into());
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
        let at = |e: String| format!("step {i}: {e}");
        match s {
            Step::Conv {
                x,
                y,
                g,
                m,
                groups,
                w,
                bias,
                ..
            } => {
                geo(g).map_err(at)?;
                let groups = (*groups).max(1);
                if g.c % groups != 0 || m % groups != 0 {
                    return Err(at("channels do not divide into the groups".into()));
                }
                need(x, g.c * g.h * g.w, "input").map_err(at)?;
                need(y, m * g.oh * g.ow, "output").map_err(at)?;
                let k = g.c / groups * g.kh * g.kw;
                if !g.is_pointwise() && k * g.oh * g.ow > p.scratch {
                    return Err(at("the scratch buffer is too small".into()));
                }
                weight(*w, groups * gemm::pack_a_len(m / groups, k), "weights").map_err(at)?;
                if let Some(b) = bias {
                    weight(*b, *m, "bias").map_err(at)?;
                }
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Depthwise {
                x,
                y,
                g,
                m,
                w,
                bias,
                ..
            } => {
                geo(g).map_err(at)?;
                if g.c == 0 || m % g.c != 0 {
                    return Err(at("output channels are not a multiple of the input's".into()));
                }
                need(x, g.c * g.h * g.w, "input").map_err(at)?;
                need(y, m * g.oh * g.ow, "output").map_err(at)?;
                weight(*w, m * g.kh * g.kw, "weights").map_err(at)?;
                if let Some(b) = bias {
                    weight(*b, *m, "bias").map_err(at)?;
                }
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Dense {
                x,
                y,
                rows,
                k,
                n,
                w,
                bias,
                ..
            } => {
                need(x, rows * k, "input").map_err(at)?;
                need(y, rows * n, "output").map_err(at)?;
                weight(*w, gemm::pack_b_len(*k, *n), "weights").map_err(at)?;
                if let Some(b) = bias {
                    weight(*b, *n, "bias").map_err(at)?;
                }
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::MaxPool { x, y, g } | Step::AvgPool { x, y, g, .. } => {
                geo(g).map_err(at)?;
                need(x, g.c * g.h * g.w, "input").map_err(at)?;
                need(y, g.c * g.oh * g.ow, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::GlobalAvgPool { x, y, c, hw } => {
                need(x, c * hw, "input").map_err(at)?;
                need(y, *c, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Unary { x, y, .. } | Step::Copy { x, y } => {
                need(y, x.len, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
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
                let n: usize = dims.iter().product();
                need(y, n, "output").map_err(at)?;
                arena(y, "output").map_err(at)?;
                for (src, strides) in [(a, a_strides), (b, b_strides)] {
                    if strides.len() != dims.len() {
                        return Err(at("strides do not match the dims".into()));
                    }
                    let reach = dims
                        .iter()
                        .zip(strides)
                        .map(|(d, s)| d.saturating_sub(1) * s)
                        .sum::<usize>()
                        + 1;
                    match src {
                        Src::Arena(buf) => {
                            need(buf, reach, "operand").map_err(at)?;
                            arena(buf, "operand").map_err(at)?;
                        }
                        Src::Weight { off, len } => {
                            if *len < reach {
                                return Err(at("a constant operand is too short".into()));
                            }
                            weight(*off, *len, "operand").map_err(at)?;
                        }
                    }
                }
            }
            Step::Affine {
                x,
                y,
                c,
                inner,
                scale,
                shift,
                ..
            } => {
                need(x, c * inner, "input").map_err(at)?;
                need(y, c * inner, "output").map_err(at)?;
                weight(*scale, *c, "scale").map_err(at)?;
                weight(*shift, *c, "shift").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Concat { y, outer, parts } => {
                let total: usize = parts.iter().map(|(_, c)| c).sum();
                need(y, outer * total, "output").map_err(at)?;
                arena(y, "output").map_err(at)?;
                for (b, chunk) in parts {
                    need(b, outer * chunk, "part").map_err(at)?;
                    arena(b, "part").map_err(at)?;
                }
            }
            Step::Softmax { x, y, rows, cols, .. } => {
                need(x, rows * cols, "input").map_err(at)?;
                need(y, rows * cols, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Lrn { x, y, c, hw, size, .. } => {
                if *size == 0 {
                    return Err(at("LRN size 0".into()));
                }
                need(x, c * hw, "input").map_err(at)?;
                need(y, c * hw, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
            Step::Transpose { x, y, dims, perm } => {
                let n: usize = dims.iter().product();
                let mut seen = vec![false; dims.len()];
                for &p in perm {
                    match seen.get_mut(p) {
                        Some(s) if !*s => *s = true,
                        _ => return Err(at("not a permutation".into())),
                    }
                }
                if perm.len() != dims.len() {
                    return Err(at("not a permutation".into()));
                }
                need(x, n, "input").map_err(at)?;
                need(y, n, "output").map_err(at)?;
                arena(x, "input").map_err(at)?;
                arena(y, "output").map_err(at)?;
            }
        }
    }
    Ok(())
}

/// A program ready to run at one batch size, with its arena.
pub struct Runner<'p> {
    prog: &'p Program,
    isa: Isa,
    batch: usize,
    arena: Vec<f32>,
    scratch: Vec<f32>,
}

/// The arena floats `[b.off·batch + s·b.len, … + b.len)` of sample `s`.
fn range(b: &Buf, batch: usize, s: usize) -> std::ops::Range<usize> {
    let start = b.off * batch + s * b.len;
    start..start + b.len
}

/// Disjoint views of the arena: shared ones to read, one to write.
#[allow(unsafe_code)]
fn views<const N: usize>(
    arena: &mut [f32],
    reads: [std::ops::Range<usize>; N],
    write: std::ops::Range<usize>,
) -> Result<([&[f32]; N], &mut [f32]), String> {
    let len = arena.len();
    for r in reads.iter().chain(std::iter::once(&write)) {
        if r.start > r.end || r.end > len {
            return Err("a buffer lies outside the arena".into());
        }
    }
    for r in &reads {
        if r.start < write.end && write.start < r.end && !r.is_empty() && !write.is_empty() {
            return Err("a step reads the buffer it writes".into());
        }
    }
    let base = arena.as_mut_ptr();
    // SAFETY: every range is inside the arena, and the written range overlaps none of the
    // read ones, so the shared and the exclusive views never alias.
    let r = reads.map(|r| unsafe { std::slice::from_raw_parts(base.add(r.start), r.len()) });
    // SAFETY: as above.
    let w = unsafe { std::slice::from_raw_parts_mut(base.add(write.start), write.len()) };
    Ok((r, w))
}

impl<'p> Runner<'p> {
    /// Prepares `prog` (validated) for `batch` samples.
    pub fn new(prog: &'p Program, batch: usize) -> Result<Runner<'p>, String> {
        validate(prog)?;
        if let Some(b) = prog.fixed_batch
            && b != batch
        {
            return Err(format!("this model runs batch {b} only, not {batch}"));
        }
        let floats = prog
            .arena
            .checked_mul(batch)
            .ok_or("the arena size overflows")?;
        Ok(Runner {
            prog,
            isa: Isa::detect(),
            batch,
            arena: vec![0.0; floats],
            scratch: vec![0.0; prog.scratch],
        })
    }

    /// The arena in bytes.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 4
    }

    /// Runs the model on `inputs` (one slice per model input, batch × dims floats each) and
    /// returns the outputs.
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, String> {
        let p = self.prog;
        if inputs.len() != p.inputs.len() {
            return Err(format!(
                "the model takes {} inputs, {} were given",
                p.inputs.len(),
                inputs.len()
            ));
        }
        for (io, x) in p.inputs.iter().zip(inputs) {
            let n = io.buf.len * self.batch;
            if x.len() != n {
                return Err(format!(
                    "input `{}` needs {n} floats for batch {}, got {}",
                    io.name,
                    self.batch,
                    x.len()
                ));
            }
            let at = io.buf.off * self.batch;
            self.arena[at..at + n].copy_from_slice(x);
        }
        let profile = std::env::var_os("MCC_PROFILE").is_some();
        for i in 0..p.steps.len() {
            let t = std::time::Instant::now();
            self.step(i)?;
            if profile {
                let name = format!("{:?}", p.steps[i]);
                let name = name.split([' ', '{', '(']).next().unwrap_or("");
                eprintln!("step {i:3} {name:14} {:9.3} ms", t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(p
            .outputs
            .iter()
            .map(|io| {
                let at = io.buf.off * self.batch;
                self.arena[at..at + io.buf.len * self.batch].to_vec()
            })
            .collect())
    }

    /// Runs step `i` for every sample.
    pub fn step(&mut self, i: usize) -> Result<(), String> {
        let p = self.prog;
        let wts = &p.weights[..];
        let step = p.steps.get(i).ok_or("no such step")?;
        let isa = self.isa;
        for s in 0..self.batch {
            let arena = &mut self.arena[..];
            match step {
                Step::Conv {
                    x,
                    y,
                    g,
                    m,
                    groups,
                    w,
                    bias,
                    act,
                } => {
                    let groups = (*groups).max(1);
                    let (mg, k) = (m / groups, g.c / groups * g.kh * g.kw);
                    let len = gemm::pack_a_len(mg, k);
                    let packed: Vec<PackedA> = (0..groups)
                        .map(|gi| PackedA {
                            m: mg,
                            k,
                            data: &wts[w + gi * len..w + (gi + 1) * len],
                        })
                        .collect();
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    let b = bias.map(|b| &wts[b..b + m]);
                    conv::conv2d(
                        isa,
                        xs,
                        g,
                        &packed,
                        b,
                        *act,
                        ys,
                        &mut self.scratch,
                        0..g.oh * g.ow,
                    )?;
                }
                Step::Depthwise {
                    x,
                    y,
                    g,
                    m,
                    w,
                    bias,
                    act,
                } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    let b = bias.map(|b| &wts[b..b + m]);
                    conv::depthwise(xs, g, *m, &wts[*w..w + m * g.kh * g.kw], b, *act, ys);
                }
                Step::Dense {
                    x,
                    y,
                    rows,
                    k,
                    n,
                    w,
                    bias,
                    act,
                } => {
                    // All samples at once: rows are contiguous across the batch.
                    if s > 0 {
                        break;
                    }
                    let all = |b: &Buf| b.off * self.batch..(b.off + b.len) * self.batch;
                    let ([xs], ys) = views(arena, [all(x)], all(y))?;
                    let ep = Epilogue {
                        bias: bias.map_or(Bias::None, |b| Bias::PerCol(&wts[b..b + n])),
                        act: *act,
                    };
                    let pb = PackedB {
                        k: *k,
                        n: *n,
                        data: &wts[*w..w + gemm::pack_b_len(*k, *n)],
                    };
                    let m = rows * self.batch;
                    // Per-sample buffers may be padded: rows of a sample are contiguous,
                    // and samples follow at stride len, so use lda = k, ldc = n when tight.
                    if x.len == rows * k && y.len == rows * n {
                        gemm::gemm_packed_b(isa, xs, *k, m, pb, ys, *n, &ep, 0..m)?;
                    } else {
                        return Err("dense: padded buffers are not supported".into());
                    }
                }
                Step::MaxPool { x, y, g } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    pool::max_pool(xs, g, ys);
                }
                Step::AvgPool {
                    x,
                    y,
                    g,
                    count_pad,
                    pb,
                    pr,
                } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    pool::avg_pool(xs, g, *count_pad, *pb, *pr, ys);
                }
                Step::GlobalAvgPool { x, y, c, hw } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    pool::global_avg_pool(xs, *c, *hw, ys);
                }
                Step::Unary { x, y, act } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    eltwise::unary(xs, *act, ys);
                }
                Step::Copy { x, y } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    ys[..xs.len()].copy_from_slice(xs);
                }
                Step::Binary {
                    a,
                    a_strides,
                    b,
                    b_strides,
                    dims,
                    op,
                    act,
                    y,
                } => {
                    let src = |v: &Src| match v {
                        Src::Arena(buf) => range(buf, self.batch, s),
                        Src::Weight { .. } => 0..0,
                    };
                    let ([ra, rb], ys) = views(arena, [src(a), src(b)], range(y, self.batch, s))?;
                    fn pick<'a>(v: &Src, r: &'a [f32], wts: &'a [f32]) -> &'a [f32] {
                        match v {
                            Src::Arena(_) => r,
                            Src::Weight { off, len } => &wts[*off..off + len],
                        }
                    }
                    let (xa, xb) = (pick(a, ra, wts), pick(b, rb, wts));
                    eltwise::binary(xa, a_strides, xb, b_strides, dims, *op, *act, ys);
                }
                Step::Affine {
                    x,
                    y,
                    c,
                    inner,
                    scale,
                    shift,
                    act,
                } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    eltwise::affine(
                        xs,
                        &wts[*scale..scale + c],
                        &wts[*shift..shift + c],
                        *inner,
                        *act,
                        ys,
                    );
                }
                Step::Concat { y, outer, parts } => {
                    let total: usize = parts.iter().map(|(_, c)| c).sum();
                    let yr = range(y, self.batch, s);
                    let mut at = 0;
                    for (b, chunk) in parts {
                        let ([xs], ys) = views(arena, [range(b, self.batch, s)], yr.clone())?;
                        for o in 0..*outer {
                            ys[o * total + at..o * total + at + chunk]
                                .copy_from_slice(&xs[o * chunk..(o + 1) * chunk]);
                        }
                        at += chunk;
                    }
                }
                Step::Softmax {
                    x,
                    y,
                    rows,
                    cols,
                    log,
                } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    eltwise::softmax(xs, *rows, *cols, *log, ys);
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
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    eltwise::lrn(xs, *c, *hw, *size, *alpha, *beta, *bias, ys);
                }
                Step::Transpose { x, y, dims, perm } => {
                    let ([xs], ys) = views(arena, [range(x, self.batch, s)], range(y, self.batch, s))?;
                    eltwise::transpose(xs, dims, perm, ys);
                }
            }
        }
        Ok(())
    }
}
