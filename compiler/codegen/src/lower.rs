//! Lowering: an IR graph (after the exact merges) becomes a [`Program`], a static schedule of
//! runtime kernel steps over one planned arena, with the weights packed in the kernels'
//! layouts.
//!
//! **Invariant:** the program computes the graph's outputs (to f32 rounding) for every batch
//! size the graph admits. Shapes must be fixed apart from the batch axis; reshapes that
//! keep the data in place (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference
//! Dropout) cost nothing: their output shares the input's buffer.
//!
//! What it does not lower is an error naming the node and the reason, never a wrong program.

use std::collections::{HashMap, HashSet};

use mcc_ir::op::Activation;
use mcc_ir::{DType, Dim, Graph, NodeId, Op, ValueId};
use mcc_runtime::kernels::blocked::{self, LANES};
use mcc_runtime::kernels::conv::Geometry;
use mcc_runtime::kernels::eltwise::BinOp;
use mcc_runtime::kernels::epilogue::{Act, GeluChain};
use mcc_runtime::kernels::gemm;
use mcc_runtime::kernels::{block_sparse, sparse, winograd};
use mcc_runtime::program::{Buf, ConvLayout, Source, Src, Step};

/// Why a graph cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum LowerError {
    /// A node mcc cannot compile (yet, or ever).
    #[error("cannot compile node `{node}` ({op}): {why}")]
    #[diagnostic(
        code(mcc::codegen::unsupported),
        help(
            "`mcc build --no-native` still builds, measures (with the reference evaluator) and writes everything but the native code; `mcc run` evaluates the model"
        )
    )]
    Unsupported {
        /// The node.
        node: String,
        /// Its operator.
        op: &'static str,
        /// Why.
        why: String,
    },
    /// The graph's shapes do not allow a static schedule.
    #[error("cannot compile `{value}`: {why}")]
    #[diagnostic(code(mcc::codegen::shape))]
    Shape {
        /// The value.
        value: String,
        /// Why.
        why: String,
    },
}

mod conv_transpose;
mod gelu;
mod int8;
mod matmul;
mod movement;
mod reduce;
mod resize;

type R<T> = Result<T, LowerError>;

/// The batch axis of the graph: a symbol (any batch at run time) or a fixed size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Batch {
    Any(String),
    Fixed(usize),
}

/// A tensor the schedule computes: a graph value, or a temporary of the lowering (a Sum of
/// many operands goes through temporaries) with its dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    V(ValueId),
    T(usize),
}

impl From<ValueId> for Key {
    fn from(v: ValueId) -> Key {
        Key::V(v)
    }
}

pub(crate) struct Lowering<'g> {
    pub(crate) g: &'g Graph,
    pub(crate) batch: Batch,
    pub(crate) weights: Vec<f32>,
    /// What the stored form holds in place of packed weights computed from others.
    pub(crate) sources: Vec<Source>,
    pub(crate) steps: Vec<Step>,
    /// The graph inputs and their buffers.
    pub(crate) inputs: Vec<(ValueId, Buf)>,
    /// Arena buffer of each value (aliases share one).
    buffer_of: HashMap<Key, usize>,
    /// Dims of the temporaries.
    temps: Vec<Vec<usize>>,
    /// Buffers: floats per sample.
    pub(crate) buffers: Vec<usize>,
    /// Per buffer: (first step that writes it, last step that reads it).
    pub(crate) live: Vec<(usize, usize)>,
    pub(crate) scratch: usize,
    /// Values whose buffer holds them channel-blocked (NCHW16c).
    blocked: HashSet<Key>,
    /// A value's buffer in its other layout, once a reorder made it.
    other: HashMap<Key, usize>,
    /// Integer residual joins: the `QuantizeLinear` that ends each, and the nodes it absorbs.
    joins: int8::Joins,
    /// Values a `Gather` step wrote, with its tables (so a transpose of them composes).
    views: HashMap<Key, movement::View>,
    /// GELU written as elementwise operators: the chains lowered as one step.
    gelus: gelu::Gelus,
}

fn act_of(op: &Op, node: &str) -> R<Act> {
    let epilogue = op.epilogue().map_err(|why| LowerError::Unsupported {
        node: node.to_string(),
        op: op.name(),
        why,
    })?;
    Ok(match epilogue {
        None => Act::None,
        Some(Activation::Relu) => Act::Relu,
        Some(Activation::Clip { min, max }) => Act::Clip(min, max),
        Some(Activation::LeakyRelu { alpha }) => Act::LeakyRelu(alpha),
        Some(Activation::Sigmoid) => Act::Sigmoid,
        Some(Activation::HardSigmoid { alpha, beta }) => Act::HardSigmoid(alpha, beta),
        Some(Activation::HardSwish) => Act::HardSwish,
        Some(Activation::Tanh) => Act::Tanh,
    })
}

impl<'g> Lowering<'g> {
    pub(crate) fn new(g: &'g Graph, batch: Batch) -> Lowering<'g> {
        Lowering {
            g,
            batch,
            weights: vec![],
            sources: vec![],
            steps: vec![],
            inputs: vec![],
            buffer_of: HashMap::new(),
            temps: vec![],
            buffers: vec![],
            live: vec![],
            scratch: 0,
            blocked: HashSet::new(),
            other: HashMap::new(),
            joins: int8::Joins::find(g),
            views: HashMap::new(),
            gelus: gelu::Gelus::find(g),
        }
    }

    /// A graph input: a buffer live from the start.
    pub(crate) fn input(&mut self, v: ValueId) -> R<()> {
        let b = self.write(v)?;
        self.inputs.push((v, b));
        Ok(())
    }

    /// Lowers one node.
    pub(crate) fn node(&mut self, n: NodeId) -> R<()> {
        if self.joins.absorbed.contains(&n) || self.gelus.absorbed.contains(&n) {
            return Ok(());
        }
        if let Some(j) = self.joins.ends.get(&n).copied() {
            return self.join(n, j);
        }
        if let Some(&(x, chain)) = self.gelus.ends.get(&n) {
            return self.gelu_chain(n, x, chain);
        }
        self.lower_node(n)?;
        // A graph output in channel blocks that other nodes read (an observed layer) leaves
        // in NCHW now, while it is in cache, and its readers keep the blocks.
        let outs = self
            .g
            .node(n)
            .map(|node| node.outputs.clone())
            .unwrap_or_default();
        for y in outs {
            if self.g.outputs().contains(&y) && self.is_blocked(y) && !self.g.users(y).is_empty() {
                self.ensure(y, false)?;
                self.ensure(y, true)?;
            }
        }
        Ok(())
    }

    fn unsupported(&self, n: NodeId, why: impl Into<String>) -> LowerError {
        let node = self.g.node(n);
        LowerError::Unsupported {
            node: node.map(|x| x.name.clone()).unwrap_or_default(),
            op: node.map_or("", |x| x.op.name()),
            why: why.into(),
        }
    }

    fn name(&self, k: Key) -> String {
        match k {
            Key::V(v) => self.g.value(v).name.clone(),
            Key::T(i) => format!("(temporary {i})"),
        }
    }

    /// The full dims of `v` (batch axis as 1), with the batch axis checked and fixed dims
    /// elsewhere.
    pub(crate) fn dims(&self, k: impl Into<Key>) -> R<Vec<usize>> {
        let v = match k.into() {
            Key::T(i) => return Ok(self.temps[i].clone()),
            Key::V(v) => v,
        };
        let val = self.g.value(v);
        let bad = |why: &str| LowerError::Shape {
            value: val.name.clone(),
            why: why.to_string(),
        };
        if val.ty.dtype != DType::F32 && val.ty.dtype != DType::U8 {
            return Err(bad(&format!(
                "it is {}; compiled models compute in f32 and u8 codes",
                val.ty.dtype.name()
            )));
        }
        let shape = val
            .ty
            .shape
            .as_ref()
            .ok_or_else(|| bad("its rank is unknown"))?;
        let first = shape
            .first()
            .ok_or_else(|| bad("it is a scalar, not a batch"))?;
        let ok_batch = match (&self.batch, first) {
            (Batch::Any(s), Dim::Sym(t)) => s == t,
            (Batch::Fixed(b), Dim::Fixed(n)) => b == n,
            _ => false,
        };
        if !ok_batch {
            return Err(bad(
                "its first axis is not the batch axis of the model's input",
            ));
        }
        let mut out = vec![1];
        for d in &shape[1..] {
            out.push(
                d.fixed()
                    .ok_or_else(|| bad("a size other than the batch is not known: compiled code is made for given sizes (`mcc build`/`mcc bench --input-shape 1x3x48x192`; `mcc build` takes its calibration data's, `mcc run --jit` its arrays' sizes)"))?,
            );
        }
        Ok(out)
    }

    /// A global average of `x`'s `c` channels of `hw` pixels into `y`, in `x`'s layout.
    fn global_avg(&mut self, x: ValueId, y: ValueId, c: usize, hw: usize) -> R<()> {
        let blocked = self.is_blocked(x);
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::GlobalAvgPool {
            x: xb,
            y: yb,
            c,
            hw,
            blocked,
        });
        Ok(())
    }

    /// Refuses `v` unless it is an f32 tensor (the data-movement and reduction kernels move
    /// floats).
    fn f32_tensor(&self, n: NodeId, v: ValueId) -> R<()> {
        if self.g.value(v).ty.dtype != DType::F32 {
            return Err(self.unsupported(n, "an operand is not f32"));
        }
        Ok(())
    }

    /// Whether `v`'s buffer holds it channel-blocked.
    fn is_blocked(&self, v: impl Into<Key>) -> bool {
        self.blocked.contains(&v.into())
    }

    /// Whether `v` may be kept channel-blocked: an image of whole channel blocks.
    fn blockable(&self, v: impl Into<Key>) -> bool {
        self.dims(v)
            .is_ok_and(|d| d.len() == 4 && d[1].is_multiple_of(LANES) && d[1] > 0)
    }

    /// Makes `v`'s buffer hold it blocked (or not): a reorder step into a new buffer unless
    /// that layout is at hand already. Constants and unknown values are left alone.
    pub(crate) fn ensure(&mut self, v: impl Into<Key>, want: bool) -> R<()> {
        let v = v.into();
        if self.is_blocked(v) == want {
            return Ok(());
        }
        let Some(&cur) = self.buffer_of.get(&v) else {
            return Ok(());
        };
        if let Some(alt) = self.other.insert(v, cur) {
            self.buffer_of.insert(v, alt);
        } else {
            let d = self.dims(v)?;
            let mut xb = self.read(v)?;
            // Out of blocks, only the tensor's own channels: a convolution computed on whole
            // blocks leaves padding lanes behind, in a buffer longer than the tensor.
            let len = if want {
                xb.len
            } else {
                xb.len = self.buffers[xb.off].max(xb.len);
                self.per_sample(v)?
            };
            let b = self.buffers.len();
            self.buffers.push(len);
            let at = self.steps.len();
            self.live.push((at, at));
            self.buffer_of.insert(v, b);
            self.steps.push(Step::Reorder {
                x: xb,
                y: Buf { off: b, len },
                c: d[1],
                hw: d[2..].iter().product(),
                to_blocked: want,
            });
        }
        if want {
            self.blocked.insert(v);
        } else {
            self.blocked.remove(&v);
        }
        Ok(())
    }

    /// Marks `y` laid out like `x`.
    fn same_layout(&mut self, x: impl Into<Key>, y: impl Into<Key>) {
        let y = y.into();
        if self.is_blocked(x) {
            self.blocked.insert(y);
        } else {
            self.blocked.remove(&y);
        }
    }

    /// Floats per sample of `v` (u8 codes: four a float).
    fn per_sample(&self, v: impl Into<Key>) -> R<usize> {
        let v = v.into();
        let n: usize = self.dims(v)?[1..].iter().product();
        Ok(match v {
            Key::V(id) if self.g.value(id).ty.dtype == DType::U8 => n.div_ceil(4),
            _ => n,
        })
    }

    /// The buffer of `v`, read by the next step.
    pub(crate) fn read(&mut self, v: impl Into<Key>) -> R<Buf> {
        let v = v.into();
        let b = *self.buffer_of.get(&v).ok_or_else(|| LowerError::Shape {
            value: self.name(v),
            why: "it is read before it is computed (or it is a constant where a tensor is needed)"
                .into(),
        })?;
        let at = self.steps.len();
        self.live[b].1 = self.live[b].1.max(at);
        Ok(Buf {
            off: b,
            len: self.per_sample(v)?,
        })
    }

    /// A fresh buffer for `v`, written by the next step.
    fn write(&mut self, v: impl Into<Key>) -> R<Buf> {
        let v = v.into();
        let len = self.per_sample(v)?;
        Ok(self.write_len(v, len))
    }

    /// Like [`Self::write`], into a buffer of `len` floats per sample.
    fn write_len(&mut self, v: Key, len: usize) -> Buf {
        let b = self.buffers.len();
        self.buffers.push(len);
        let at = self.steps.len();
        self.live.push((at, at));
        self.buffer_of.insert(v, b);
        Buf { off: b, len }
    }

    /// A fresh temporary of `dims` (the first the batch), planned like any other tensor.
    fn temporary(&mut self, dims: Vec<usize>) -> Key {
        self.temps.push(dims);
        Key::T(self.temps.len() - 1)
    }

    /// Appends floats to the weights, 64-byte aligned; returns the offset.
    fn push_weights(&mut self, data: &[f32]) -> usize {
        while !self.weights.len().is_multiple_of(16) {
            self.weights.push(0.0);
        }
        let off = self.weights.len();
        self.weights.extend_from_slice(data);
        off
    }

    fn constant(&self, v: Option<ValueId>) -> Option<(Vec<usize>, Vec<f32>)> {
        let t = self.g.const_data(v?)?;
        let a = t.as_f32()?;
        Some((t.shape().to_vec(), a.iter().copied().collect()))
    }

    fn operand(&self, n: NodeId, slot: usize) -> Option<ValueId> {
        self.g.node(n)?.inputs.get(slot).copied().flatten()
    }

    fn lower_node(&mut self, n: NodeId) -> R<()> {
        let node = self
            .g
            .node(n)
            .ok_or_else(|| self.unsupported(n, "vanished"))?;
        let (op, name) = (&node.op, node.name.clone());
        let x0 = self.operand(n, 0);
        let y = *node
            .outputs
            .first()
            .ok_or_else(|| self.unsupported(n, "no output"))?;
        // Split writes each output it has that is read; other operators' extra outputs (a
        // norm's statistics, a dropout's mask) are not computed.
        if !matches!(op, Op::Split(_)) && node.outputs.iter().skip(1).any(|&o| self.g.is_used(o)) {
            return Err(self.unsupported(n, "a second output is read"));
        }
        let x = x0.ok_or_else(|| self.unsupported(n, "no input"))?;
        // Operators that handle (or pass through) channel-blocked inputs; all others read NCHW.
        let aware = matches!(
            op,
            Op::Identity(_)
                | Op::Dropout(_)
                | Op::Conv(_)
                | Op::MaxPool(_)
                | Op::AveragePool(_)
                | Op::GlobalAveragePool(_)
                | Op::Relu(_)
                | Op::Sigmoid(_)
                | Op::Tanh(_)
                | Op::HardSwish(_)
                | Op::LeakyRelu(_)
                | Op::HardSigmoid(_)
                | Op::Clip(_)
                | Op::Add(_)
                | Op::Sub(_)
                | Op::Mul(_)
                | Op::Div(_)
                | Op::Max(_)
                | Op::Min(_)
                | Op::Sum(_)
                | Op::Concat(_)
                | Op::ReduceMean(_)
                | Op::BatchNormalization(_)
        );
        if !aware {
            for v in node.inputs.iter().flatten() {
                self.ensure(*v, false)?;
            }
        }
        let image_of_codes =
            self.g.value(x).ty.dtype == DType::U8 && self.dims(x).is_ok_and(|d| d.len() == 4);
        match op {
            Op::Identity(_) | Op::Dropout(_) | Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_)
                if image_of_codes && self.dims(y).is_ok_and(|d| d.len() != 4) =>
            {
                self.planar(n, x, y)
            }
            Op::Identity(_)
            | Op::Dropout(_)
            | Op::Reshape(_)
            | Op::Flatten(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_) => self.alias(n, x, y),
            Op::Conv(c) => self.conv(n, c, x, y, &name),
            Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => self.quantize_step(n, op, x, y),
            Op::QLinearConv(c) => self.qconv(n, c, x, y),
            Op::QLinearMatMul(_) => self.qdense(n, x, y),
            Op::DynamicQuantMatMul(_) => self.dyn_dense(n, op, x, y),
            Op::MaxPool(p) if self.g.value(x).ty.dtype == DType::U8 => self.qmax_pool(n, p, x, y),
            Op::Gemm(gm) => self.dense(n, x, y, gm.transA != 0, gm.transB != 0, gm.alpha, gm.beta),
            // A tensor by a 2-D constant is a dense layer; any other product is batched.
            Op::MatMul(_)
                if self.constant(Some(x)).is_none()
                    && self
                        .constant(self.operand(n, 1))
                        .is_some_and(|(shape, _)| shape.len() == 2) =>
            {
                self.dense(n, x, y, false, false, 1.0, 1.0)
            }
            Op::MatMul(_) => self.batch_matmul(n, x, y),
            Op::MaxPool(_) | Op::AveragePool(_) => self.pool(n, op, x, y),
            Op::GlobalAveragePool(_) => self.global_pool(n, x, y),
            Op::Relu(_) | Op::Sigmoid(_) | Op::Tanh(_) | Op::HardSwish(_) => {
                let act = match op {
                    Op::Relu(_) => Act::Relu,
                    Op::Sigmoid(_) => Act::Sigmoid,
                    Op::Tanh(_) => Act::Tanh,
                    _ => Act::HardSwish,
                };
                self.unary(x, y, act)
            }
            Op::Erf(_) => self.unary(x, y, Act::Erf),
            Op::Gelu(g) => match g.approximate.as_str() {
                "none" => self.unary(x, y, Act::Gelu),
                "tanh" => self.unary(x, y, Act::GeluTanh),
                other => Err(self.unsupported(n, format!("approximate = `{other}`"))),
            },
            Op::LeakyRelu(l) => self.unary(x, y, Act::LeakyRelu(l.alpha)),
            Op::HardSigmoid(h) => self.unary(x, y, Act::HardSigmoid(h.alpha, h.beta)),
            Op::Clip(_) => self.clip(n, x, y),
            Op::Add(_)
            | Op::Sub(_)
            | Op::Mul(_)
            | Op::Div(_)
            | Op::Max(_)
            | Op::Min(_)
            | Op::Sum(_) => {
                let bop = match op {
                    Op::Add(_) | Op::Sum(_) => BinOp::Add,
                    Op::Sub(_) => BinOp::Sub,
                    Op::Mul(_) => BinOp::Mul,
                    Op::Div(_) => BinOp::Div,
                    Op::Max(_) => BinOp::Max,
                    _ => BinOp::Min,
                };
                let operands: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
                self.nary(n, &operands, y, bop)
            }
            Op::BatchNormalization(b) => self.batch_norm(n, b, x, y),
            Op::Concat(c) => self.concat(n, c, y),
            Op::Softmax(_) | Op::LogSoftmax(_) => self.softmax(n, op, x, y),
            Op::Lrn(l) => self.lrn(n, l, x, y),
            Op::Transpose(t) => self.transpose(n, t, x, y),
            Op::LayerNormalization(ln) => self.layer_norm(n, ln, x, y),
            Op::ReduceSum(_) | Op::ReduceMean(_) | Op::ReduceMax(_) | Op::ReduceMin(_) => {
                self.reduce(n, op, x, y)
            }
            Op::Gather(g) => self.gather(n, g, x, y),
            Op::Slice(_) => self.slice(n, x, y),
            Op::Split(sp) => self.split(n, sp, x),
            Op::Expand(_) => self.expand(n, x, y),
            Op::DepthToSpace(d) => self.depth_space(n, x, y, d.blocksize, d.mode, true),
            Op::SpaceToDepth(d) => self.depth_space(n, x, y, d.blocksize, d.mode, false),
            Op::Resize(r) => self.resize(n, r, x, y),
            Op::InstanceNormalization(i) => self.instance_norm(n, i.epsilon, x, y),
            Op::ConvTranspose(ct) => self.conv_transpose(n, ct, x, y),
            other => Err(self.unsupported(n, format!("no kernel for {} yet", other.name()))),
        }
    }

    /// Same data, new shape: the output shares the input's buffer.
    fn alias(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        // Same data, new shape: share the buffer (its lifetime covers both).
        self.dims(y)?;
        if self.dims(x)? != self.dims(y)? {
            self.ensure(x, false)?;
        }
        let b = *self
            .buffer_of
            .get(&Key::V(x))
            .ok_or_else(|| self.unsupported(n, "reshapes a constant"))?;
        if self.per_sample(x)? != self.per_sample(y)? {
            return Err(self.unsupported(n, "it moves data across samples"));
        }
        self.buffer_of.insert(Key::V(y), b);
        self.same_layout(x, y);
        Ok(())
    }

    /// Global average pooling over the spatial axes.
    fn global_pool(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let d = self.dims(x)?;
        if d.len() < 3 {
            return Err(self.unsupported(n, "no spatial axes"));
        }
        self.global_avg(x, y, d[1], d[2..].iter().product())
    }

    /// Clip with constant bounds, as an elementwise activation.
    fn clip(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let bound = |slot: usize, default: f32| -> R<f32> {
            match self.operand(n, slot) {
                None => Ok(default),
                Some(v) => self
                    .constant(Some(v))
                    .and_then(|(_, d)| d.first().copied())
                    .ok_or_else(|| self.unsupported(n, "its bounds are computed at run time")),
            }
        };
        let (lo, hi) = (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?);
        self.unary(x, y, Act::Clip(lo, hi))
    }

    /// An unfolded BatchNormalization as a per-channel affine step.
    fn batch_norm(
        &mut self,
        n: NodeId,
        b: &mcc_ir::op::BatchNormalization,
        x: ValueId,
        y: ValueId,
    ) -> R<()> {
        let d = self.dims(x)?;
        let c = *d
            .get(1)
            .ok_or_else(|| self.unsupported(n, "no channel axis"))?;
        let stat = |slot| {
            self.constant(self.operand(n, slot))
                .map(|(_, v)| v)
                .filter(|v| v.len() == c)
        };
        let (Some(s), Some(bb), Some(mean), Some(var)) = (stat(1), stat(2), stat(3), stat(4))
        else {
            return Err(self.unsupported(n, "its statistics are not f32 constants per channel"));
        };
        let eps = f64::from(b.epsilon);
        let scale: Vec<f32> = (0..c)
            .map(|i| (f64::from(s[i]) / (f64::from(var[i]) + eps).sqrt()) as f32)
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|i| {
                (f64::from(bb[i])
                    - f64::from(mean[i]) * f64::from(s[i]) / (f64::from(var[i]) + eps).sqrt())
                    as f32
            })
            .collect();
        let (so, to) = (self.push_weights(&scale), self.push_weights(&shift));
        // Channel blocks stay blocks (a norm the merges could not fold into the convolution
        // before it: one whose input is observed, or has other readers).
        let blocked = self.is_blocked(x) && self.blockable(x);
        self.ensure(x, blocked)?;
        self.same_layout(x, y);
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Affine {
            x: xb,
            y: yb,
            c,
            inner: d[2..].iter().product(),
            scale: so,
            shift: to,
            act: Act::None,
            blocked,
        });
        Ok(())
    }

    /// Concatenation along a non-batch axis (as blocks when every part has whole blocks).
    fn concat(&mut self, n: NodeId, c: &mcc_ir::op::Concat, y: ValueId) -> R<()> {
        let node = self
            .g
            .node(n)
            .ok_or_else(|| self.unsupported(n, "vanished"))?;
        let out = self.dims(y)?;
        let rank = out.len() as i64;
        let axis = if c.axis < 0 { c.axis + rank } else { c.axis };
        if axis <= 0 || axis >= rank {
            return Err(self.unsupported(n, "it joins along the batch axis"));
        }
        let axis = axis as usize;
        let outer: usize = out[1..axis].iter().product();
        let ins: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        // Blocks of whole channel blocks concatenate as blocks.
        let blocked = axis == 1
            && ins.iter().any(|&v| self.is_blocked(v))
            && ins.iter().all(|&v| self.blockable(v));
        for &v in &ins {
            self.ensure(v, blocked)?;
        }
        if blocked {
            self.blocked.insert(Key::V(y));
        }
        let mut parts = vec![];
        for v in node.inputs.iter().flatten() {
            let d = self.dims(*v)?;
            let chunk: usize = d[axis..].iter().product();
            parts.push((self.read(*v)?, chunk));
        }
        let yb = self.write(y)?;
        let plane = if blocked {
            out[2..].iter().product::<usize>() * LANES
        } else {
            0
        };
        self.steps.push(Step::Concat {
            y: yb,
            outer,
            parts,
            plane,
        });
        Ok(())
    }

    /// Softmax or LogSoftmax over the last axis with size.
    fn softmax(&mut self, n: NodeId, op: &Op, x: ValueId, y: ValueId) -> R<()> {
        let (axis, legacy, log) = match op {
            Op::Softmax(s) => (s.axis, s.legacy_2d != 0, false),
            Op::LogSoftmax(s) => (s.axis, s.legacy_2d != 0, true),
            _ => (0, false, false),
        };
        let d = self.dims(x)?;
        let rank = d.len() as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        if ax <= 0 || ax >= rank {
            return Err(self.unsupported(n, "it normalizes over the batch axis"));
        }
        let ax = ax as usize;
        let (rows, cols) = if legacy {
            (d[1..ax].iter().product(), d[ax..].iter().product())
        } else if d[ax + 1..].iter().all(|&s| s == 1) {
            // The last axis with size, trailing unit axes (SqueezeNet's [N, C, 1, 1]).
            (d[1..ax].iter().product(), d[ax])
        } else {
            return Err(self.unsupported(n, "it normalizes over an inner axis"));
        };
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Softmax {
            x: xb,
            y: yb,
            rows,
            cols,
            log,
        });
        Ok(())
    }

    /// Local response normalization across channels.
    fn lrn(&mut self, n: NodeId, l: &mcc_ir::op::Lrn, x: ValueId, y: ValueId) -> R<()> {
        let d = self.dims(x)?;
        if d.len() < 3 || l.size < 1 {
            return Err(self.unsupported(n, "it needs channels and a positive size"));
        }
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Lrn {
            x: xb,
            y: yb,
            c: d[1],
            hw: d[2..].iter().product(),
            size: l.size as usize,
            alpha: l.alpha,
            beta: l.beta,
            bias: l.bias,
        });
        Ok(())
    }

    /// A transpose that keeps the batch axis first.
    fn transpose(&mut self, n: NodeId, t: &mcc_ir::op::Transpose, x: ValueId, y: ValueId) -> R<()> {
        let d = self.dims(x)?;
        let perm: Vec<usize> = if t.perm.is_empty() {
            (0..d.len()).rev().collect()
        } else {
            t.perm.iter().map(|&p| p.max(0) as usize).collect()
        };
        if perm.first() != Some(&0) || perm.len() != d.len() {
            return Err(self.unsupported(n, "it moves the batch axis"));
        }
        if self.transpose_view(x, y, &perm)? {
            return Ok(());
        }
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Transpose {
            x: xb,
            y: yb,
            dims: d[1..].to_vec(),
            perm: perm[1..].iter().map(|p| p.saturating_sub(1)).collect(),
        });
        Ok(())
    }

    /// An exporter's GELU chain ending at node `n`, from `x` ([`gelu`]): one elementwise
    /// step, or the epilogue of the step that wrote `x` when only the chain reads it.
    fn gelu_chain(&mut self, n: NodeId, x: ValueId, chain: GeluChain) -> R<()> {
        let y = *self
            .g
            .node(n)
            .and_then(|node| node.outputs.first())
            .ok_or_else(|| self.unsupported(n, "no output"))?;
        let only_chain = !self.g.outputs().contains(&x)
            && self
                .g
                .users(x)
                .iter()
                .all(|&(u, _)| u == n || self.gelus.absorbed.contains(&u));
        self.unary_of(x, y, Act::GeluChain(chain), only_chain)
    }

    fn unary(&mut self, x: ValueId, y: ValueId, act: Act) -> R<()> {
        let only_reader = self.g.users(x).len() == 1 && !self.g.outputs().contains(&x);
        self.unary_of(x, y, act, only_reader)
    }

    /// Whether buffer `b` holds `x` and nothing anyone still needs: every other value in it
    /// (those `x` is a view of — a Reshape or Flatten shares its input's buffer) is no graph
    /// output and is read only by views writing into `b`. Fusing an activation into the step
    /// that wrote `b` changes every value in it.
    fn holds_only(&self, b: usize, x: ValueId) -> bool {
        let in_b = |k: &Key| self.buffer_of.get(k) == Some(&b) || self.other.get(k) == Some(&b);
        self.buffer_of
            .keys()
            .chain(self.other.keys())
            .filter(|k| **k != Key::V(x) && in_b(k))
            .all(|k| match *k {
                Key::V(v) => {
                    !self.g.outputs().contains(&v)
                        && self.g.users(v).iter().all(|&(u, _)| {
                            self.g.node(u).is_some_and(|n| {
                                !n.outputs.is_empty() && n.outputs.iter().all(|o| in_b(&Key::V(*o)))
                            })
                        })
                }
                Key::T(_) => false,
            })
    }

    /// `y = act(x)`, fused into the step that wrote `x` where it can be when `only_reader`
    /// (nothing but this reads `x`).
    fn unary_of(&mut self, x: ValueId, y: ValueId, act: Act, only_reader: bool) -> R<()> {
        // Elementwise: any layout, kept.
        self.same_layout(x, y);
        // Fuse into the elementwise or product step that just wrote `x` when nothing else
        // reads it (a residual Add then ReLU, a dense layer then GELU): one pass over memory
        // instead of two.
        if only_reader
            && let Some(&b) = self.buffer_of.get(&Key::V(x))
            && self.holds_only(b, x)
            && let Some(
                Step::Binary {
                    y: by,
                    act: a @ Act::None,
                    ..
                }
                | Step::Dense {
                    y: by,
                    act: a @ Act::None,
                    ..
                }
                | Step::BatchMatMul {
                    y: by,
                    act: a @ Act::None,
                    ..
                }
                | Step::Affine {
                    y: by,
                    act: a @ Act::None,
                    ..
                },
            ) = self.steps.last_mut()
            && by.off == b
        {
            *a = act;
            self.buffer_of.insert(Key::V(y), b);
            let last = self.steps.len() - 1;
            self.live[b].1 = self.live[b].1.max(last);
            return Ok(());
        }
        // Likewise into a convolution with a fused residual (it wrote `x`; nothing read it
        // since, as this is its only reader).
        if only_reader
            && let Some(&b) = self.buffer_of.get(&Key::V(x))
            && self.holds_only(b, x)
            && let Some(Step::Conv {
                y: cy,
                residual: Some(_),
                act: a @ Act::None,
                ..
            }) = self
                .steps
                .iter_mut()
                .rev()
                .find(|s| matches!(s, Step::Conv { y, .. } if y.off == b))
            && cy.off == b
        {
            *a = act;
            self.buffer_of.insert(Key::V(y), b);
            return Ok(());
        }
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Unary { x: xb, y: yb, act });
        Ok(())
    }

    fn conv(
        &mut self,
        n: NodeId,
        c: &mcc_ir::op::Conv,
        x: ValueId,
        y: ValueId,
        name: &str,
    ) -> R<()> {
        let xd = self.dims(x)?;
        let yd = self.dims(y)?;
        if xd.len() != 4 {
            return Err(self.unsupported(n, "only 2-D convolutions are compiled"));
        }
        let (wshape, w) = self
            .constant(self.operand(n, 1))
            .ok_or_else(|| self.unsupported(n, "its weights are not an f32 constant"))?;
        let bias = match self.operand(n, 2) {
            None => None,
            Some(b) => Some(
                self.constant(Some(b))
                    .map(|(_, v)| v)
                    .filter(|v| v.len() == yd[1])
                    .ok_or_else(|| {
                        self.unsupported(n, "its bias is not an f32 constant per channel")
                    })?,
            ),
        };
        let act = act_of(&c_op(c), name)?;
        let (geo, _) = self.window(
            n,
            &xd,
            &wshape[2..],
            &c.strides,
            &c.dilations,
            &c.pads,
            c.auto_pad,
            false,
        )?;
        let (m, groups) = (wshape[0], c.group.max(1) as usize);
        let depthwise = groups == xd[1] && wshape[1] == 1 && groups > 1;
        // Channel-blocked: one-group convolutions producing whole blocks (reading blocks when
        // the input has whole blocks), and depthwise ones of whole blocks.
        let to_blocks = m.is_multiple_of(LANES) && m > 0;
        // A one-group convolution reading blocks already whose channels are not whole blocks
        // (SqueezeNet's 1000 classes) computes whole blocks anyway, the padding lanes from
        // zero weights, and reorders out of them: cheaper than reordering its input to run
        // plain (SqueezeNet's last layer 1.36 → 1.1 ms).
        let padded = !to_blocks
            && m > 0
            && groups == 1
            && !depthwise
            && self.is_blocked(x)
            && self.blockable(x);
        let (x_blocked, y_blocked) = if depthwise {
            // Only where the input is blocked already (between grouped convolutions that run
            // NCHW, two reorders would cost more than the blocked kernel saves).
            let b = to_blocks && m == xd[1];
            (b, b)
        } else if groups == 1 && (to_blocks || padded) {
            (self.blockable(x), true)
        } else {
            (false, false)
        };
        self.ensure(x, x_blocked)?;
        if y_blocked {
            self.blocked.insert(Key::V(y));
        }
        let xb = self.read(x)?;
        let bias_off = bias.map(|mut b| {
            if y_blocked {
                b.resize(m.next_multiple_of(LANES), 0.0);
            }
            self.push_weights(&b)
        });
        if depthwise {
            let wo = if y_blocked {
                self.push_weights(&blocked::pack_depthwise(&w, m, geo.kh * geo.kw))
            } else {
                self.push_weights(&w)
            };
            let yb = self.write(y)?;
            self.steps.push(Step::Depthwise {
                x: xb,
                y: yb,
                g: geo,
                m,
                w: wo,
                bias: bias_off,
                act,
                blocked: y_blocked,
            });
            return Ok(());
        }
        // Weights in the kernel's layout, and the scratch it needs. Winograd's transformed
        // weights are dense and 16/9 as many: the object stores the 3×3 kernels instead (as
        // sparse, or as few distinct values, as the layer's), and the model transforms them
        // when it loads (`Source`).
        let winograd = y_blocked && x_blocked && winograd_pays(&geo, m);
        let (packed, scratch, layout) = if winograd {
            let packed = winograd::pack_weights(&w, m, xd[1]);
            (
                packed,
                Some(winograd::scratch_len(&geo)),
                ConvLayout::Winograd,
            )
        } else if y_blocked {
            let packed = blocked::pack_conv(&w, m, xd[1], geo.kh, geo.kw, x_blocked);
            let pad = blocked::needs_padding(&geo).then(|| blocked::padded_len(&geo));
            (packed, pad, ConvLayout::Blocked { x_blocked })
        } else {
            if xd[1] % groups != 0 || m % groups != 0 || wshape[1] * groups != xd[1] {
                return Err(self.unsupported(n, "its groups do not divide the channels"));
            }
            let (mg, k) = (m / groups, wshape[1] * geo.kh * geo.kw);
            let mut packed = Vec::with_capacity(groups * gemm::pack_a_len(mg, k));
            for gi in 0..groups {
                packed.extend(gemm::pack_a(&w[gi * mg * k..(gi + 1) * mg * k], mg, k));
            }
            let cols = (!geo.is_pointwise())
                .then(|| mcc_runtime::kernels::conv::scratch_len(&geo, groups));
            (packed, cols, ConvLayout::Gemm)
        };
        let wo = self.push_weights(&packed);
        if winograd {
            self.sources.push(Source { at: wo, floats: w });
        }
        self.scratch = self.scratch.max(scratch.unwrap_or(0));
        let yb = if padded {
            let q: usize = self.dims(y)?[2..].iter().product();
            self.write_len(Key::V(y), m.next_multiple_of(LANES) * q)
        } else {
            self.write(y)?
        };
        self.steps.push(Step::Conv {
            x: xb,
            y: yb,
            g: geo,
            m,
            groups,
            w: wo,
            bias: bias_off,
            residual: None,
            act,
            layout,
        });
        if padded {
            // Nothing reads the padded blocks but this reorder: no other step may take them
            // as `y` blocked.
            self.ensure(y, false)?;
            self.other.remove(&Key::V(y));
        }
        Ok(())
    }

    /// A bias Add fused into the fully connected step that computes one of its operands: when
    /// the other is a constant of one value per column (`[n]`, or `[1, …, 1, n]`), that step
    /// has no bias or activation yet, and the Add is the operand's only reader, the step adds
    /// the constant in its epilogue (the same f32 sum as the Add) and the Add's result is the
    /// step's own buffer. Returns whether it fused.
    fn fuse_bias(&mut self, a: ValueId, b: ValueId, y: ValueId) -> bool {
        for (mine, other) in [(a, b), (b, a)] {
            let Some((shape, data)) = self.constant(Some(other)) else {
                continue;
            };
            let Ok(out) = self.dims(y) else {
                return false;
            };
            let n = out.last().copied().unwrap_or(0);
            let per_column = data.len() == n
                && shape.last() == Some(&n)
                && shape.len() <= out.len()
                && self.dims(mine).ok().as_ref() == Some(&out);
            // `mine` is the product itself (not an alias of a product another node reads).
            let by_product = self
                .g
                .producer(mine)
                .and_then(|p| self.g.node(p))
                .is_some_and(|p| matches!(p.op, Op::MatMul(_) | Op::Gemm(_)));
            let sole = self.g.users(mine).len() == 1 && !self.g.outputs().contains(&mine);
            let Some(&mb) = self.buffer_of.get(&Key::V(mine)) else {
                continue;
            };
            if !per_column || !by_product || !sole || self.is_blocked(mine) {
                continue;
            }
            let Some(at) = self.steps.iter().rposition(|s| s.writes().off == mb) else {
                continue;
            };
            if !matches!(
                self.steps[at],
                Step::Dense {
                    bias: None,
                    act: Act::None,
                    ..
                } | Step::SparseDense {
                    bias: None,
                    act: Act::None,
                    ..
                } | Step::BlockDense {
                    bias: None,
                    act: Act::None,
                    ..
                }
            ) {
                continue;
            }
            let off = self.push_weights(&data);
            if let Step::Dense { bias, .. }
            | Step::SparseDense { bias, .. }
            | Step::BlockDense { bias, .. } = &mut self.steps[at]
            {
                *bias = Some(off);
            }
            self.buffer_of.insert(Key::V(y), mb);
            return true;
        }
        false
    }

    /// A residual Add fused into the convolution that computes one of its operands: when that
    /// convolution (no activation yet, no residual yet) is the operand's only reader's
    /// producer and the other operand already exists when it runs, the convolution adds the
    /// other operand on its register tiles and the Add's result is the convolution's own
    /// buffer. Returns whether it fused.
    fn fuse_residual(&mut self, a: ValueId, b: ValueId, y: ValueId) -> bool {
        if self.dims(a).ok() != self.dims(b).ok() || self.dims(a).ok() != self.dims(y).ok() {
            return false;
        }
        for (mine, other) in [(a, b), (b, a)] {
            // `mine` is computed by a Conv itself (not an alias of another value's buffer) and
            // read by the Add only.
            let by_conv = self
                .g
                .producer(mine)
                .and_then(|p| self.g.node(p))
                .is_some_and(|p| matches!(p.op, Op::Conv(_)));
            let sole =
                by_conv && self.g.users(mine).len() == 1 && !self.g.outputs().contains(&mine);
            let (Some(&mb), Some(&ob)) = (
                self.buffer_of.get(&Key::V(mine)),
                self.buffer_of.get(&Key::V(other)),
            ) else {
                continue;
            };
            if !sole || mb == ob || self.is_blocked(mine) != self.is_blocked(other) {
                continue;
            }
            let Some(at) = self
                .steps
                .iter()
                .rposition(|s| matches!(s, Step::Conv { y, .. } if y.off == mb))
            else {
                continue;
            };
            // The other operand must exist before the convolution runs (a graph input does).
            let input = self.inputs.iter().any(|&(_, b)| b.off == ob);
            if !input && self.live[ob].0 >= at {
                continue;
            }
            let Ok(len) = self.per_sample(other) else {
                continue;
            };
            if let Step::Conv {
                residual: r @ None,
                act: Act::None,
                ..
            } = &mut self.steps[at]
            {
                *r = Some(Buf { off: ob, len });
                // The other operand stays alive up to the convolution (at least: it was
                // read by no later step yet, or by later ones already counted).
                self.live[ob].1 = self.live[ob].1.max(at);
                self.buffer_of.insert(Key::V(y), mb);
                self.same_layout(mine, y);
                return true;
            }
        }
        false
    }

    /// The window geometry and the end padding (bottom, right) of a 2-D window op.
    #[allow(clippy::too_many_arguments)]
    fn window(
        &self,
        n: NodeId,
        xd: &[usize],
        kernel: &[usize],
        strides: &[i64],
        dilations: &[i64],
        pads: &[i64],
        auto_pad: mcc_ir::AutoPad,
        ceil: bool,
    ) -> R<(Geometry, [usize; 2])> {
        let win =
            mcc_ir::geometry::window(&xd[2..], kernel, strides, dilations, pads, auto_pad, ceil)
                .map_err(|e| self.unsupported(n, e.to_string()))?;
        if win.kernel.len() != 2 {
            return Err(self.unsupported(n, "only 2-D windows are compiled"));
        }
        let g = Geometry {
            c: xd[1],
            h: xd[2],
            w: xd[3],
            oh: win.out[0],
            ow: win.out[1],
            kh: win.kernel[0],
            kw: win.kernel[1],
            sh: win.strides[0],
            sw: win.strides[1],
            dh: win.dilations[0],
            dw: win.dilations[1],
            pt: win.pad_begin[0],
            pl: win.pad_begin[1],
        };
        Ok((g, [win.pad_end[0], win.pad_end[1]]))
    }

    fn pool(&mut self, n: NodeId, op: &Op, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        if xd.len() != 4 {
            return Err(self.unsupported(n, "only 2-D pools are compiled"));
        }
        // (window, strides, dilations, pads, auto_pad, ceil_mode, average's count_include_pad)
        let (ks, st, dl, pads, ap, ceil, avg) = match op {
            Op::MaxPool(p) => (
                &p.kernel_shape,
                &p.strides,
                &p.dilations,
                &p.pads,
                p.auto_pad,
                p.ceil_mode,
                None,
            ),
            Op::AveragePool(p) => (
                &p.kernel_shape,
                &p.strides,
                &p.dilations,
                &p.pads,
                p.auto_pad,
                p.ceil_mode,
                Some(p.count_include_pad != 0),
            ),
            _ => return Err(self.unsupported(n, "not a pool")),
        };
        let k: Vec<usize> = ks.iter().map(|&k| k.max(0) as usize).collect();
        let (g, pad_end) = self.window(n, &xd, &k, st, dl, pads, ap, ceil != 0)?;
        let whole = g.oh == 1
            && g.ow == 1
            && (g.kh, g.kw) == (g.h, g.w)
            && (g.dh, g.dw) == (1, 1)
            && (g.pt, g.pl) == (0, 0)
            && pad_end == [0, 0];
        if avg.is_some() && whole {
            // A window over the whole image: a global average.
            return self.global_avg(x, y, g.c, g.h * g.w);
        }
        // Blocked in, blocked out; an NCHW input stays NCHW.
        let blocked = self.is_blocked(x) && self.blockable(x);
        self.ensure(x, blocked)?;
        if blocked {
            self.blocked.insert(Key::V(y));
        }
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(match avg {
            None => Step::MaxPool {
                x: xb,
                y: yb,
                g,
                blocked,
            },
            Some(count_pad) => Step::AvgPool {
                x: xb,
                y: yb,
                g,
                count_pad,
                pb: pad_end[0],
                pr: pad_end[1],
                blocked,
            },
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dense(
        &mut self,
        n: NodeId,
        x: ValueId,
        y: ValueId,
        trans_a: bool,
        trans_b: bool,
        alpha: f32,
        beta: f32,
    ) -> R<()> {
        if trans_a {
            return Err(self.unsupported(n, "it transposes its input (transA)"));
        }
        let xd = self.dims(x)?;
        let yd = self.dims(y)?;
        let (wshape, w) = self
            .constant(self.operand(n, 1))
            .ok_or_else(|| self.unsupported(n, "its matrix is not an f32 constant"))?;
        let &[r, c] = wshape.as_slice() else {
            return Err(self.unsupported(n, "its matrix is not 2-D"));
        };
        let (k, cols) = if trans_b { (c, r) } else { (r, c) };
        if xd.last() != Some(&k) || yd.last() != Some(&cols) {
            return Err(self.unsupported(n, "its shapes do not line up"));
        }
        let rows: usize = xd[1..xd.len() - 1].iter().product();
        let scaled: Vec<f32>;
        let wv: &[f32] = if alpha == 1.0 {
            &w
        } else {
            scaled = w.iter().map(|v| v * alpha).collect();
            &scaled
        };
        let (row_stride, col_stride) = if trans_b { (1, k) } else { (cols, 1) };
        // Decided on the weights as stored (the report decides on the same), packed scaled.
        let kernel = crate::fc_kernel(k, cols, &w, trans_b);
        let stored = match kernel {
            crate::FcKernel::Sparse { .. } => {
                sparse::pack_sparse(wv, k, cols, row_stride, col_stride)
            }
            crate::FcKernel::Block { r, c, .. } => {
                block_sparse::pack_blocks(wv, k, cols, row_stride, col_stride, r, c)
            }
            _ => None,
        };
        let bias = match self.operand(n, 2) {
            None => None,
            Some(b) => {
                let (_, v) = self
                    .constant(Some(b))
                    .ok_or_else(|| self.unsupported(n, "its C is not an f32 constant"))?;
                let v: Vec<f32> = match v.len() {
                    1 => vec![beta * v[0]; cols],
                    l if l == cols => v.iter().map(|x| beta * x).collect(),
                    _ => return Err(self.unsupported(n, "its C varies by row")),
                };
                Some(v)
            }
        };
        let act = act_of(
            &self
                .g
                .node(n)
                .map(|x| x.op.clone())
                .unwrap_or(Op::MatMul(Default::default())),
            "",
        )?;
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        if let (crate::FcKernel::Block { r, c, .. }, Some(words)) = (kernel, &stored) {
            // The count the packed form holds (scaling may zero a block).
            let blocks = words
                .get(cols.div_ceil(r))
                .map_or(0, |v| v.to_bits() as usize);
            let wo = self.push_weights(words);
            let bo = bias.map(|b| self.push_weights(&b));
            self.scratch = self.scratch.max(block_sparse::scratch_len(k));
            self.steps.push(Step::BlockDense {
                x: xb,
                y: yb,
                rows,
                k,
                n: cols,
                r,
                c,
                blocks,
                w: wo,
                bias: bo,
                act,
            });
            return Ok(());
        }
        if let (crate::FcKernel::Sparse { .. }, Some(words)) = (kernel, stored) {
            // The count the packed form holds (scaling may zero a weight).
            let nnz = words.get(cols).map_or(0, |v| v.to_bits() as usize);
            let wo = self.push_weights(&words);
            let bo = bias.map(|b| self.push_weights(&b));
            self.scratch = self.scratch.max(sparse::scratch_len(k));
            self.steps.push(Step::SparseDense {
                x: xb,
                y: yb,
                rows,
                k,
                n: cols,
                nnz,
                w: wo,
                bias: bo,
                act,
            });
            return Ok(());
        }
        let wo = self.push_weights(&gemm::pack_b(wv, k, cols, row_stride, col_stride));
        let bo = bias.map(|b| self.push_weights(&b));
        self.steps.push(Step::Dense {
            x: xb,
            y: yb,
            rows,
            k,
            n: cols,
            w: wo,
            bias: bo,
            act,
        });
        Ok(())
    }

    /// Elementwise with broadcasting; a Sum of several operands becomes a chain.
    fn nary(&mut self, n: NodeId, operands: &[ValueId], y: ValueId, op: BinOp) -> R<()> {
        let out = self.dims(y)?;
        // Same-shape tensors combine in any layout (one of them blocked: all blocked).
        let blocked = operands.iter().any(|&v| self.is_blocked(v))
            && self.blockable(y)
            && operands.iter().all(|&v| {
                self.constant(Some(v)).is_none() && self.dims(v).ok() == Some(out.clone())
            });
        for &v in operands {
            self.ensure(v, blocked)?;
        }
        match operands {
            [] => Err(self.unsupported(n, "no operands")),
            [a] => {
                let (ab, yb) = (self.read(*a)?, self.write(y)?);
                self.same_layout(*a, y);
                self.steps.push(Step::Copy { x: ab, y: yb });
                Ok(())
            }
            [a, b] => {
                if op == BinOp::Add && (self.fuse_bias(*a, *b, y) || self.fuse_residual(*a, *b, y))
                {
                    return Ok(());
                }
                self.binary(n, Key::V(*a), Key::V(*b), Key::V(y), &out, op)
            }
            [a, b, rest @ ..] => {
                // Chain through temporaries (planned like any other tensor).
                self.temps.push(out.clone());
                let mut acc = Key::T(self.temps.len() - 1);
                self.binary(n, Key::V(*a), Key::V(*b), acc, &out, op)?;
                for (i, v) in rest.iter().enumerate() {
                    let dst = if i + 1 == rest.len() {
                        Key::V(y)
                    } else {
                        self.temps.push(out.clone());
                        Key::T(self.temps.len() - 1)
                    };
                    self.binary(n, acc, Key::V(*v), dst, &out, op)?;
                    acc = dst;
                }
                Ok(())
            }
        }
    }

    fn binary(&mut self, n: NodeId, a: Key, b: Key, y: Key, out: &[usize], op: BinOp) -> R<()> {
        let rank = out.len();
        let mut srcs = vec![];
        for v in [a, b] {
            let konst = match v {
                Key::V(v) => self.constant(Some(v)),
                Key::T(_) => None,
            };
            let (src, shape) = if let Some((shape, data)) = konst {
                if shape.len() > rank {
                    return Err(self.unsupported(n, "a constant has more axes than the result"));
                }
                if shape.len() == rank && shape[0] != 1 {
                    return Err(self.unsupported(n, "a constant varies along the batch axis"));
                }
                let off = self.push_weights(&data);
                (
                    Src::Weight {
                        off,
                        len: data.len(),
                    },
                    shape,
                )
            } else {
                let d = self.dims(v)?;
                (Src::Arena(self.read(v)?), d)
            };
            // Right-align to the result; strides over the per-sample axes, 0 where broadcast.
            let pad = rank - shape.len();
            let mut strides = vec![0usize; rank];
            let mut s = 1;
            for i in (0..shape.len()).rev() {
                let d = shape[i];
                if d != 1 && d != out[pad + i] {
                    return Err(self.unsupported(n, "its operands do not broadcast"));
                }
                strides[pad + i] = if d == 1 { 0 } else { s };
                s *= d;
            }
            srcs.push((src, strides[1..].to_vec()));
        }
        let yb = self.write(y)?;
        self.same_layout(a, y);
        let (b_src, b_strides) = srcs
            .pop()
            .ok_or_else(|| self.unsupported(n, "no operand"))?;
        let (a_src, a_strides) = srcs
            .pop()
            .ok_or_else(|| self.unsupported(n, "no operand"))?;
        self.steps.push(Step::Binary {
            a: a_src,
            a_strides,
            b: b_src,
            b_strides,
            dims: out[1..].to_vec(),
            op,
            act: Act::None,
            y: yb,
        });
        Ok(())
    }
}

/// Whether a one-group convolution of `m` output channels from a blocked input runs as
/// Winograd F(2×2, 3×3) ([`winograd`]) rather than the direct blocked kernel: where the
/// kernel applies (3×3, stride 1, dilation 1, whole blocks in and out) on the shapes where it
/// measured faster. Measured on this project's Zen 4 (one thread, `mcc bench --profile`,
/// direct → Winograd): MNIST 16 channels on 28×28 2.3 → 1.9 ms per 64 samples, 32 on 14×14
/// 2.2 → 1.3, 64 on 7×7 2.1 → 1.4, 64 on 14×14 8.4 → 4.7 (vgg_bn); ResNet-50 at 224×224,
/// batch 1: 64 on 56×56 2.1 → 1.2 ms, 128 on 28×28 and 256 on 14×14 2.1 → 1.1, 512 on 7×7
/// 2.3 → 1.9 (16 MiB of transformed weights). So from 7×7 outputs and 16 channels up to
/// 512 × 512 channels; smaller images (whose partial tiles waste more) and larger layers
/// were not measured and keep the direct kernel. The rule reads the shape only, never a
/// timing. `MCC_WINOGRAD=0` in the environment turns it off (for comparisons).
fn winograd_pays(g: &Geometry, m: usize) -> bool {
    winograd::applies(g)
        && m.is_multiple_of(LANES)
        && m >= LANES
        && g.c.saturating_mul(m) <= 512 * 512
        && g.oh >= 7
        && g.ow >= 7
        && std::env::var("MCC_WINOGRAD").map_or(true, |v| v != "0")
}

fn c_op(c: &mcc_ir::op::Conv) -> Op {
    Op::Conv(c.clone())
}
