//! Measurement on compiled code: a model merged and lowered exactly as the executable is, run
//! by the runtime's kernels over a data set in batches, with **observers** — tensors a
//! measurement needs (a layer's output, a layer's input) made outputs of the measured program,
//! so lowering keeps them in memory. Where lowering fails (an operator without a kernel), the
//! reference evaluator runs instead and [`Compiled::engine`] says so.
//!
//! **Invariant:** what a batch callback sees does not depend on the thread count: the kernels
//! give the same bits on any number of threads, and callbacks run in data order.

use mcc_ir::{Graph, Tensor};
use mcc_runtime::program::Program;

use crate::Error;
use crate::report::Engine;

/// A model ready to be measured: compiled when it can be, with the observed tensors as extra
/// outputs.
pub struct Compiled {
    program: Option<Program>,
    /// The graph (with the observed outputs) the evaluator runs when there is no program.
    evaluator: Option<Graph>,
    /// The model's own outputs.
    model_outputs: usize,
    /// For each observed tensor, its index among the measured outputs.
    observed: Vec<usize>,
    /// What runs it.
    pub engine: Engine,
    /// Why the evaluator runs it, when it does.
    pub note: Option<String>,
}

/// One batch's results.
pub struct Batch<'a> {
    /// Samples in the batch.
    pub samples: usize,
    /// Index of the batch's first sample in the data.
    pub first: usize,
    /// The model's outputs, then the observed tensors, each `samples ×` per-sample floats
    /// (lent by the runner's arena, or by the feed for the evaluator).
    outputs: Vec<&'a [f32]>,
    model_outputs: usize,
    observed: &'a [usize],
}

impl Batch<'_> {
    /// The model's `i`-th output.
    pub fn output(&self, i: usize) -> &[f32] {
        self.outputs.get(i).copied().unwrap_or(&[])
    }

    /// The `i`-th observed tensor (in the order given to [`Compiled::new`]).
    pub fn observed(&self, i: usize) -> &[f32] {
        self.observed
            .get(i)
            .and_then(|&k| self.outputs.get(k))
            .copied()
            .unwrap_or(&[])
    }

    /// The model's output count.
    pub fn model_outputs(&self) -> usize {
        self.model_outputs
    }
}

/// A model being run over a data set, batch by batch in data order.
pub struct Feed<'a> {
    model: &'a Compiled,
    runner: Option<mcc_runtime::exec::Runner<'a>>,
    x: &'a Tensor,
    /// The inputs as f32, borrowed from `x` when it holds them contiguously.
    flat: std::borrow::Cow<'a, [f32]>,
    per: usize,
    total: usize,
    chunk: usize,
    first: usize,
    /// The evaluator's outputs for the current batch.
    owned: Vec<Vec<f32>>,
}

impl Feed<'_> {
    /// The next batch, or `None` after the last.
    pub fn next_batch(&mut self) -> Result<Option<Batch<'_>>, Error> {
        if self.first >= self.total {
            return Ok(None);
        }
        let (first, n) = (self.first, self.chunk.min(self.total - self.first));
        let fixed = self.model.program.as_ref().and_then(|p| p.fixed_batch);
        if self.runner.is_some() && fixed.is_some_and(|b| b != n) {
            return Err(Error::Usage(format!(
                "the model's batch is fixed at {}; {} samples are not a multiple of it",
                self.chunk, self.total
            )));
        }
        self.first += n;
        let outputs = match &mut self.runner {
            Some(r) => r
                .run_borrowed(&[&self.flat[first * self.per..(first + n) * self.per]])
                .map_err(Error::Native)?,
            None => {
                let graph = self.model.evaluator.as_ref().ok_or_else(|| {
                    Error::Usage("a model with neither a program nor a graph (a bug in mcc)".into())
                })?;
                let part = crate::tensor_io::slice_batch(self.x, first, n);
                self.owned = mcc_ir::run(graph, &[part])?
                    .iter()
                    .map(|t| t.to_f64_vec().into_iter().map(|v| v as f32).collect())
                    .collect();
                self.owned.iter().map(Vec::as_slice).collect()
            }
        };
        Ok(Some(Batch {
            samples: n,
            first,
            outputs,
            model_outputs: self.model.model_outputs,
            observed: &self.model.observed,
        }))
    }
}

/// The value to observe for `v`: `v` itself, or — for the u8 codes a quantized layer writes —
/// their dequantization (a `DequantizeLinear` with the layer's output scale and zero point,
/// added to the measured copy), so every observed tensor is f32 in the model's units.
fn dequantized(g: &mut Graph, v: mcc_ir::ValueId) -> mcc_ir::ValueId {
    use mcc_ir::{DType, Op, TensorType};
    if g.value(v).ty.dtype != DType::U8 {
        return v;
    }
    let Some(node) = g.producer(v).and_then(|p| g.node(p)).cloned() else {
        return v;
    };
    let (s, z) = match node.op {
        Op::QLinearConv(_) | Op::QLinearMatMul(_) => (6, 7),
        Op::QuantizeLinear(_) => (1, 2),
        _ => return v,
    };
    let operand = |i: usize| node.inputs.get(i).copied().flatten();
    let ty = TensorType {
        dtype: DType::F32,
        shape: g.value(v).ty.shape.clone(),
    };
    let name = g.fresh_value_name(&format!("{}.observed", g.value(v).name));
    let n = g.add_node(
        name.clone(),
        Op::DequantizeLinear(Default::default()),
        vec![Some(v), operand(s), operand(z)],
        vec![(name, ty)],
    );
    g.node(n)
        .and_then(|m| m.outputs.first().copied())
        .unwrap_or(v)
}

/// The data a model whose sizes are free is compiled for: the evaluation data, else the
/// calibration data (`shape`: an array's shape, batch first); neither when their sizes (the
/// batch aside) differ.
pub fn sized_like<'a, T>(
    evaluation: Option<&'a T>,
    calibration: Option<&'a T>,
    shape: impl Fn(&T) -> &[usize],
) -> Option<&'a T> {
    match (evaluation, calibration) {
        (Some(e), Some(c)) if shape(e).get(1..) != shape(c).get(1..) => None,
        (e, c) => e.or(c),
    }
}

/// True when some input of `graph` has a size other than the batch (axis 0) that is not
/// fixed: compiled code needs those sizes.
pub fn free_sizes(graph: &Graph) -> bool {
    graph.inputs().iter().any(|&v| {
        graph.value(v).ty.shape.as_ref().is_none_or(|s| {
            s.iter()
                .skip(1)
                .any(|d| !matches!(d, mcc_ir::Dim::Fixed(_)))
        })
    })
}

impl Compiled {
    /// Prepares `graph` with the tensors named `observe` (value names) as extra outputs.
    pub fn new(graph: &Graph, observe: &[String]) -> Result<Compiled, Error> {
        Compiled::for_data(graph, observe, None)
    }

    /// [`Compiled::new`] for running on arrays shaped like `x` (batch first): a model whose
    /// sizes are free is compiled for `x`'s (specialized, [`mcc_passes::specialize`]) rather
    /// than left to the evaluator. One-input models only; others as [`Compiled::new`].
    pub fn for_data(
        graph: &Graph,
        observe: &[String],
        x: Option<&Tensor>,
    ) -> Result<Compiled, Error> {
        let mut g = graph.clone();
        if let Some(x) = x
            && g.inputs().len() == 1
            && free_sizes(&g)
        {
            // A graph that cannot take the data's sizes (an input of unknown rank, say) is
            // measured as it is: by the evaluator when lowering needs the sizes.
            let mut sized = g.clone();
            if mcc_passes::specialize(&mut sized, &[x.shape().to_vec()]).is_ok() {
                g = sized;
            }
        }
        let mut outs = g.outputs().to_vec();
        let model_outputs = outs.len();
        let mut observed = vec![];
        for name in observe {
            let v = g.find_value(name).ok_or_else(|| {
                Error::Usage(format!(
                    "cannot observe `{name}`: no such tensor (a bug in mcc)"
                ))
            })?;
            let v = dequantized(&mut g, v);
            let k = match outs.iter().position(|&o| o == v) {
                Some(k) => k,
                None => {
                    outs.push(v);
                    outs.len() - 1
                }
            };
            observed.push(k);
        }
        g.set_outputs(outs);
        let (program, engine, note) = match crate::native::program(&g) {
            Ok(p) if p.outputs.len() == g.outputs().len() => (Some(p), Engine::Compiled, None),
            Ok(_) => (
                None,
                Engine::Evaluator,
                Some("the compiled program's outputs do not match the model's".to_string()),
            ),
            Err(e) => (None, Engine::Evaluator, Some(e.to_string())),
        };
        Ok(Compiled {
            evaluator: program.is_none().then_some(g),
            program,
            model_outputs,
            observed,
            engine,
            note,
        })
    }

    /// The compiled schedule, when there is one.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_ref()
    }

    /// Starts running the model over `x` (batch first) in batches of up to `chunk` samples
    /// (the model's own batch, when it fixes one) on `pool`'s threads.
    pub fn feed<'a>(&'a self, x: &'a Tensor, chunk: usize, pool: &Pool) -> Result<Feed<'a>, Error> {
        let total = x.shape().first().copied().unwrap_or(0);
        let (runner, flat, chunk) = match &self.program {
            Some(p) => (
                Some(
                    mcc_runtime::exec::Runner::with_pool(p, &p.weights, Pool::clone(pool))
                        .map_err(Error::Native)?,
                ),
                match x.as_f32().and_then(|a| a.as_slice()) {
                    Some(f) => std::borrow::Cow::Borrowed(f),
                    None => x.to_f64_vec().into_iter().map(|v| v as f32).collect(),
                },
                p.fixed_batch.unwrap_or(chunk),
            ),
            None => (None, std::borrow::Cow::Borrowed(&[][..]), chunk),
        };
        let per = flat.len() / total.max(1);
        Ok(Feed {
            model: self,
            runner,
            x,
            flat,
            per,
            total,
            chunk: chunk.max(1),
            first: 0,
            owned: vec![],
        })
    }

    /// Runs the model over `x`, calling `each` with every batch in data order.
    pub fn for_each(
        &self,
        x: &Tensor,
        chunk: usize,
        threads: usize,
        mut each: impl FnMut(&Batch<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut feed = self.feed(x, chunk, &pool(threads)?)?;
        while let Some(b) = feed.next_batch()? {
            each(&b)?;
        }
        Ok(())
    }
}

/// Sums for comparing a tensor with its reference, in f64, in a fixed order
/// (`mcc_runtime::kernels::eltwise::CompareSums`: in lanes, since one sum per quantity made
/// the comparison of vgg_bn's observed layers, 21 M elements, wait on the adder's latency;
/// and the same bits however the data is cut into batches).
#[derive(Default, Clone, Copy, Debug)]
pub struct Agreement {
    sums: mcc_runtime::kernels::eltwise::CompareSums,
    /// A batch's values and references differed in length.
    mismatched: bool,
}

impl Agreement {
    /// Adds a batch of values and their references.
    pub fn add(&mut self, got: &[f32], want: &[f32]) {
        mcc_runtime::kernels::eltwise::compare_into(got, want, &mut self.sums);
        self.mismatched |= got.len() != want.len();
    }

    /// ‖y − y₀‖ / ‖y₀‖ (or ‖y − y₀‖ when y₀ = 0) and the cosine (1 when both are 0, 0 when
    /// one is). NaN in the compared values makes both NaN, which no budget accepts.
    pub fn result(&self) -> crate::report::OutputError {
        let [dot, ref_sq, out_sq, diff_sq] = self.sums.totals();
        // A shape change is total disagreement, not a silent truncation.
        let diff_sq = if self.mismatched {
            f64::INFINITY
        } else {
            diff_sq
        };
        let relative_l2 = if ref_sq > 0.0 {
            (diff_sq / ref_sq).sqrt()
        } else {
            diff_sq.sqrt()
        };
        let cosine = if ref_sq > 0.0 && out_sq > 0.0 {
            dot / (ref_sq.sqrt() * out_sq.sqrt())
        } else if dot.is_nan() || ref_sq.is_nan() || out_sq.is_nan() {
            f64::NAN
        } else if ref_sq == 0.0 && out_sq == 0.0 {
            // Both all zero: the same tensor.
            1.0
        } else {
            // One all zero, the other not: no agreement in direction.
            0.0
        };
        crate::report::OutputError {
            relative_l2,
            cosine,
        }
    }
}

/// Threads that run models being measured, shared by the models measured side by side
/// (batch for batch, one model's idle worker would otherwise spin beside the other's).
pub type Pool = std::sync::Arc<mcc_runtime::threads::Pool>;

/// A [`Pool`] of `threads` threads, the caller included.
pub fn pool(threads: usize) -> Result<Pool, Error> {
    Ok(Pool::new(
        mcc_runtime::threads::Pool::new(threads.max(1)).map_err(Error::Native)?,
    ))
}

/// Threads to measure on: `n`, or every core for 0 (at most the runtime's limit).
pub fn threads(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get().min(mcc_runtime::threads::MAX_THREADS))
    } else {
        n
    }
}

/// How many of a batch's samples the first output classifies as `labels` says (by index in
/// the data; a row holding NaN is wrong).
pub fn top1_hits(b: &Batch<'_>, labels: &[i64]) -> usize {
    let y = b.output(0);
    let c = y.len() / b.samples.max(1);
    (0..b.samples)
        .filter(|&r| {
            let got = y.get(r * c..(r + 1) * c).and_then(argmax);
            matches!((got, labels.get(b.first + r)), (Some(k), Some(&l)) if k as i64 == l)
        })
        .count()
}

/// The index of the largest value of a row (the first on ties); `None` for an empty row or
/// one holding NaN, which then counts as a wrong prediction.
pub fn argmax(row: &[f32]) -> Option<usize> {
    if row.is_empty() || row.iter().any(|x| x.is_nan()) {
        return None;
    }
    Some(
        row.iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > row[b] { i } else { b }),
    )
}

/// The CPU's name, where the system says (`/proc/cpuinfo`), else the architecture.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Milliseconds a run of `batch` samples takes through `prog`'s compiled code (the JIT: the
/// executable's code) on `threads` threads: the median of `runs` timed runs after 5 warm-up
/// runs, on `x`'s first `batch` samples (else inputs of 0.5).
pub fn latency_ms(
    prog: &Program,
    x: Option<&Tensor>,
    threads: usize,
    runs: usize,
    batch: usize,
) -> Result<f64, Error> {
    let inputs = run_inputs(prog, batch, x, |_| std::iter::repeat(0.5))?;
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut jit = mcc_codegen::jit::Jit::new(prog.clone(), threads).map_err(Error::Native)?;
    let times = timed_runs(runs, || jit.run(&refs).map(drop).map_err(Error::Native))?;
    Ok(times[times.len() / 2])
}

/// Inputs for runs of `batch` samples through `prog`: the first input from `x`'s first
/// samples when it holds that many (no copy of the whole set), every other value from
/// `fill(input index)`. An allocation that fails is an error, not an abort.
pub fn run_inputs<I: Iterator<Item = f32>>(
    prog: &Program,
    batch: usize,
    x: Option<&Tensor>,
    fill: impl Fn(usize) -> I,
) -> Result<Vec<Vec<f32>>, Error> {
    prog.inputs
        .iter()
        .enumerate()
        .map(|(i, io)| {
            let n = io.buf.len.saturating_mul(batch);
            let first = x
                .filter(|_| i == 0)
                .and_then(|t| t.as_f32()?.as_slice()?.get(..n));
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| {
                Error::Native(mcc_runtime::aligned::out_of_memory(
                    n.saturating_mul(4),
                    "the inputs",
                ))
            })?;
            match first {
                Some(s) => v.extend_from_slice(s),
                None => v.extend(fill(i).take(n)),
            }
            Ok(v)
        })
        .collect()
}

/// Runs `run` 5 times, then `runs` (at least 1) timed times; the times in milliseconds,
/// sorted.
pub fn timed_runs(
    runs: usize,
    mut run: impl FnMut() -> Result<(), Error>,
) -> Result<Vec<f64>, Error> {
    for _ in 0..5 {
        run()?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}
