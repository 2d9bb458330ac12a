//! `mcc-codegen`: from the IR to native code. [`lower`] turns a graph into a
//! [`mcc_runtime::program::Program`] (a static schedule of runtime kernels over one planned
//! arena, weights packed); the JIT and AOT back ends compile that schedule with Cranelift.

pub mod aot;
pub mod clif;
pub mod jit;
mod lower;
pub mod memory;

pub use lower::LowerError;

use mcc_ir::{Dim, Graph};
use mcc_runtime::program::{Buf, Io, Program};

/// Compiles `graph` into a program. Run the exact merges first: activations fused into a
/// Conv/Gemm become its kernel's epilogue.
pub fn lower(graph: &Graph) -> Result<Program, LowerError> {
    let order = graph.topo_order().map_err(|e| LowerError::Shape {
        value: graph.name.clone(),
        why: e.to_string(),
    })?;
    let batch = batch_of(graph)?;
    let mut l = lower::Lowering::new(graph, batch);
    for &v in graph.inputs() {
        l.input(v)?;
    }
    let run = run_time(graph);
    for n in order {
        if run.contains(&n) {
            l.node(n)?;
        }
    }
    l.finish()
}

/// The nodes compiled code runs: those the graph's outputs need through data operands.
/// Values read only as shape operands ([`mcc_ir::Op::shape_operands`]: the batch-dependent
/// size arithmetic of a dynamic export) are not computed: the types, checked fully known
/// where a step needs them, say what they would.
fn run_time(graph: &Graph) -> std::collections::HashSet<mcc_ir::NodeId> {
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<mcc_ir::ValueId> = graph.outputs().to_vec();
    while let Some(v) = todo.pop() {
        let Some(n) = graph.producer(v) else { continue };
        if !seen.insert(n) {
            continue;
        }
        if let Some(node) = graph.node(n) {
            let shape = node.op.shape_operands();
            for (slot, v) in node.inputs.iter().enumerate() {
                if let Some(v) = v
                    && !shape.contains(&slot)
                {
                    todo.push(*v);
                }
            }
        }
    }
    seen
}

/// How the native code runs a fully connected layer (Gemm or MatMul on a constant matrix).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FcKernel {
    /// The dense GEMM on packed weights.
    Dense,
    /// Only the nonzero weights, on the sparse kernel (`mcc_runtime::kernels::sparse`).
    Sparse {
        /// Nonzero weights.
        nnz: usize,
        /// Nonzeros / weights.
        density: f64,
        /// The density up to which the sparse kernel measured faster at this depth.
        max: f64,
    },
    /// Only the blocks of `r` outputs × `c` inputs that hold a nonzero, on the block-sparse
    /// kernel (`mcc_runtime::kernels::block_sparse`).
    Block {
        /// Outputs per block.
        r: usize,
        /// Inputs per block.
        c: usize,
        /// Stored blocks.
        blocks: usize,
        /// Weights in the stored blocks / weights.
        density: f64,
        /// The density up to which the block kernel measured faster at this depth.
        max: f64,
    },
    /// The dense GEMM although at least a tenth of the weights are zero: at this density the
    /// sparse kernel would not be faster ("size only": the zeros shrink the stored weights,
    /// not the time).
    SizeOnly {
        /// Nonzeros / weights.
        density: f64,
        /// The density up to which the sparse kernel measured faster at this depth.
        max: f64,
    },
}

/// Block shapes (outputs × inputs) the lowering looks for in a layer's zeros, largest first.
/// Blocks of one output (1×4…) run on the kernel too, but measured slower than the
/// unstructured kernel at a batch (`bench/results-block-crossover.md`).
pub const BLOCK_SHAPES: [(usize, usize); 3] = [(16, 1), (8, 1), (4, 1)];

/// The kernel for a `k × n` fully connected layer with weights `w` (`k × n` row-major, or
/// `n × k` when `trans_b`): block-sparse when the zeros form whole blocks of one of
/// [`BLOCK_SHAPES`] and [`mcc_runtime::kernels::block_sparse::pays`] says so (the largest
/// block unless a smaller one keeps a tenth fewer weights), provided its stored blocks hold at
/// most a quarter more weights than the nonzeros (so it is faster than the unstructured
/// kernel too); else sparse when [`mcc_runtime::kernels::sparse::pays`] says so. The
/// lowering and the report both decide here.
pub fn fc_kernel(k: usize, n: usize, w: &[f32], trans_b: bool) -> FcKernel {
    use mcc_runtime::kernels::{block_sparse, sparse};
    let nnz = w.iter().filter(|v| v.to_bits() != 0).count();
    let total = w.len().max(1);
    let (row_stride, col_stride) = if trans_b { (1, k) } else { (n, 1) };
    let mut best: Option<FcKernel> = None;
    // Counting needs the whole matrix; a tenth of zeros at least, or no block pays.
    let shapes = if w.len() == k.saturating_mul(n) && nnz * 10 <= total * 9 {
        &BLOCK_SHAPES[..]
    } else {
        &[]
    };
    for &(r, c) in shapes {
        let Some(blocks) = block_sparse::count_blocks(w, k, n, row_stride, col_stride, r, c) else {
            continue;
        };
        let kept = blocks * r * c;
        let fits = u32::try_from(blocks).is_ok() && u32::try_from(k).is_ok();
        if !fits || !block_sparse::pays(k, n, r, c, blocks) || kept * 4 > nnz * 5 {
            continue;
        }
        // A smaller block must keep a tenth fewer weights to win: a larger one runs faster
        // per kept weight, and keeps a few more on an `n` it does not divide (padding).
        let fewer = match best {
            Some(FcKernel::Block {
                r: br, blocks: bb, ..
            }) => kept * 10 < bb * br * 9,
            _ => true,
        };
        if fewer {
            best = Some(FcKernel::Block {
                r,
                c,
                blocks,
                density: kept as f64 / total as f64,
                max: block_sparse::max_density(k, r, c),
            });
        }
    }
    if let Some(b) = best {
        return b;
    }
    let (density, max) = (nnz as f64 / total as f64, sparse::max_density(k));
    // The stored form's offsets and row indices are u32s.
    if sparse::pays(k, n, nnz) && nnz < u32::MAX as usize && k <= u32::MAX as usize {
        FcKernel::Sparse { nnz, density, max }
    } else if nnz * 10 <= total * 9 {
        FcKernel::SizeOnly { density, max }
    } else {
        FcKernel::Dense
    }
}

fn batch_of(graph: &Graph) -> Result<lower::Batch, LowerError> {
    let mut batch = None;
    for &v in graph.inputs() {
        let val = graph.value(v);
        let first = val.ty.shape.as_ref().and_then(|s| s.first()).cloned();
        let b = match first {
            Some(Dim::Sym(s)) => lower::Batch::Any(s),
            Some(Dim::Fixed(n)) => lower::Batch::Fixed(n),
            _ => {
                return Err(LowerError::Shape {
                    value: val.name.clone(),
                    why: "its first axis (the batch) is not known".into(),
                });
            }
        };
        if batch.as_ref().is_some_and(|x| *x != b) {
            return Err(LowerError::Shape {
                value: val.name.clone(),
                why: "the model's inputs disagree on the batch axis".into(),
            });
        }
        batch = Some(b);
    }
    batch.ok_or_else(|| LowerError::Shape {
        value: graph.name.clone(),
        why: "the model has no inputs".into(),
    })
}

impl lower::Lowering<'_> {
    fn finish(mut self) -> Result<Program, LowerError> {
        // Outputs leave in NCHW.
        for &v in self.g.outputs() {
            self.ensure(v, false)?;
        }
        let end = self.steps.len();
        let mut outputs = vec![];
        for &v in self.g.outputs() {
            let buf = self.read(v)?;
            let b = buf.off;
            self.live[b].1 = end;
            outputs.push((v, buf));
        }
        let (offsets, arena) = memory::plan(&self.buffers, &self.live);
        let io = |l: &Self, v: mcc_ir::ValueId, buf: Buf| -> Result<Io, LowerError> {
            Ok(Io {
                name: l.g.value(v).name.clone(),
                dims: l.dims(v)?[1..].to_vec(),
                buf: Buf {
                    off: offsets[buf.off],
                    len: buf.len,
                },
            })
        };
        let inputs = self
            .inputs
            .iter()
            .map(|&(v, b)| io(&self, v, b))
            .collect::<Result<_, _>>()?;
        let outputs = outputs
            .into_iter()
            .map(|(v, b)| io(&self, v, b))
            .collect::<Result<_, _>>()?;
        // Every buffer of a step holds its buffer's index until now: map it to the planned
        // offset.
        let mut steps = std::mem::take(&mut self.steps);
        let mut unplanned = None;
        for s in &mut steps {
            s.visit_bufs_mut(|b| match offsets.get(b.off) {
                Some(&off) => b.off = off,
                None => unplanned = Some(b.off),
            });
        }
        if let Some(b) = unplanned {
            return Err(LowerError::Shape {
                value: self.g.name.clone(),
                why: format!("a step reads or writes buffer {b}, which has no planned offset"),
            });
        }
        Ok(Program {
            fixed_batch: match self.batch {
                lower::Batch::Fixed(b) => Some(b),
                lower::Batch::Any(_) => None,
            },
            inputs,
            outputs,
            arena,
            scratch: self.scratch,
            steps,
            weights: self.weights,
            sources: self.sources,
        })
    }
}
