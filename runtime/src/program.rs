//! A compiled model as the runtime sees it: a static schedule of kernel steps over one arena,
//! with every offset planned at compile time, and the weights (pre-packed) in one blob.
//!
//! Offsets and sizes are **per sample**, in floats: with batch B, a tensor planned at offset
//! `o` with `n` floats per sample occupies arena floats `[o·B, (o + n)·B)`, sample s at
//! `o·B + s·n`. Since every intermediate tensor scales with the batch, planning one sample
//! plans them all, and the batch stays a run-time parameter.
//!
//! The program has a compact binary form ([`Program::encode`] / [`Program::decode`]: a magic
//! word, a version, then little-endian u64 words) that ahead-of-time builds embed.

use crate::conv::Geometry;
use crate::eltwise::BinOp;
use crate::epilogue::Act;

/// A tensor in the arena: per-sample offset and length, in floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Offset per sample.
    pub off: usize,
    /// Floats per sample.
    pub len: usize,
}

/// An operand of an elementwise step: an arena tensor (one per sample) or a constant in the
/// weights blob (shared by every sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A tensor in the arena.
    Arena(Buf),
    /// `len` floats at `off` in the weights.
    Weight {
        /// Offset in the weights.
        off: usize,
        /// Length.
        len: usize,
    },
}

/// A model input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Io {
    /// Its name in the model.
    pub name: String,
    /// Its dims without the batch axis.
    pub dims: Vec<usize>,
    /// Where it lives.
    pub buf: Buf,
}

/// How a convolution computes and lays out its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvLayout {
    /// NCHW in and out, as GEMMs on weights packed by `gemm::pack_a` per group.
    Gemm,
    /// Output channel-blocked (NCHW16c, see [`crate::blocked`]), one group, weights packed by
    /// `blocked::pack_conv`; the input is blocked too when `x_blocked`, else NCHW.
    Blocked {
        /// Whether the input is blocked.
        x_blocked: bool,
    },
}

/// One step of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A convolution as GEMMs with packed weights (one panel set per group).
    Conv {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Window geometry.
        g: Geometry,
        /// Output channels.
        m: usize,
        /// Groups.
        groups: usize,
        /// Offset of the packed weights (groups × `pack_a_len(m/groups, c/groups·kh·kw)`).
        w: usize,
        /// Offset of the bias (m floats).
        bias: Option<usize>,
        /// A tensor shaped like the output, added before the activation (a residual
        /// connection fused into the convolution).
        residual: Option<Buf>,
        /// Activation.
        act: Act,
        /// Layout and kernel.
        layout: ConvLayout,
    },
    /// A depthwise convolution (each output channel reads one input channel).
    /// Channel-blocked when `blocked` (one output channel per input channel, weights packed
    /// by `blocked::pack_depthwise`).
    Depthwise {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Window geometry.
        g: Geometry,
        /// Output channels.
        m: usize,
        /// Offset of the weights (`m·kh·kw`).
        w: usize,
        /// Offset of the bias.
        bias: Option<usize>,
        /// Activation.
        act: Act,
        /// Channel-blocked input and output.
        blocked: bool,
    },
    /// A fully connected layer: each sample's `rows × k` times packed `k × n`.
    Dense {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Offset of the packed weights (`pack_b_len(k, n)`).
        w: usize,
        /// Offset of the bias (n floats).
        bias: Option<usize>,
        /// Activation.
        act: Act,
    },
    /// Max pooling.
    MaxPool {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Window geometry.
        g: Geometry,
        /// Channel-blocked input and output.
        blocked: bool,
    },
    /// Average pooling.
    AvgPool {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Window geometry.
        g: Geometry,
        /// Whether padding counts in the divisor.
        count_pad: bool,
        /// Bottom padding.
        pb: usize,
        /// Right padding.
        pr: usize,
        /// Channel-blocked input and output.
        blocked: bool,
    },
    /// Global average pooling of `c` channels of `hw` values.
    GlobalAvgPool {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Channels.
        c: usize,
        /// Values per channel.
        hw: usize,
        /// Channel-blocked input (the output, one value per channel, is the same either way).
        blocked: bool,
    },
    /// Between layouts: NCHW → NCHW16c (`to_blocked`) or back, `c` a multiple of 16.
    Reorder {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Channels.
        c: usize,
        /// Pixels per channel.
        hw: usize,
        /// The direction.
        to_blocked: bool,
    },
    /// `y = act(x)`.
    Unary {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Activation.
        act: Act,
    },
    /// `y = act(a op b)` with broadcasting (strides per axis; 0 broadcasts).
    Binary {
        /// Left operand.
        a: Src,
        /// Its strides.
        a_strides: Vec<usize>,
        /// Right operand.
        b: Src,
        /// Its strides.
        b_strides: Vec<usize>,
        /// Output dims (per sample).
        dims: Vec<usize>,
        /// Operation.
        op: BinOp,
        /// Activation after it.
        act: Act,
        /// Output.
        y: Buf,
    },
    /// `y[c, i] = act(scale[c]·x[c, i] + shift[c])`.
    Affine {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Channels.
        c: usize,
        /// Values per channel.
        inner: usize,
        /// Offset of the scales.
        scale: usize,
        /// Offset of the shifts.
        shift: usize,
        /// Activation.
        act: Act,
    },
    /// Concatenation: for each of `outer` blocks, each part's chunk in turn.
    Concat {
        /// Output.
        y: Buf,
        /// Blocks per sample.
        outer: usize,
        /// Inputs and their chunk sizes.
        parts: Vec<(Buf, usize)>,
        /// Floats of one block of 16 channels when the parts are channel blocks
        /// (`[blocks][pixels][16]`, `outer` 1): one sample's copy then splits its pixels over
        /// the threads, as the convolutions that wrote the parts did. 0 otherwise.
        plane: usize,
    },
    /// Softmax (or log-softmax) of `rows` rows of `cols`.
    Softmax {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Rows per sample.
        rows: usize,
        /// Row length.
        cols: usize,
        /// Log-softmax.
        log: bool,
    },
    /// Local response normalization.
    Lrn {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Channels.
        c: usize,
        /// Values per channel.
        hw: usize,
        /// Window.
        size: usize,
        /// α.
        alpha: f32,
        /// β.
        beta: f32,
        /// Bias.
        bias: f32,
    },
    /// Axis permutation of a sample.
    Transpose {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
        /// Input dims (per sample).
        dims: Vec<usize>,
        /// Permutation.
        perm: Vec<usize>,
    },
    /// A copy.
    Copy {
        /// Input.
        x: Buf,
        /// Output.
        y: Buf,
    },
}

/// A compiled model.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The batch size, if the model fixes it (else any batch runs).
    pub fixed_batch: Option<usize>,
    /// Inputs.
    pub inputs: Vec<Io>,
    /// Outputs.
    pub outputs: Vec<Io>,
    /// Arena floats per sample.
    pub arena: usize,
    /// Scratch floats (im2col), independent of the batch.
    pub scratch: usize,
    /// The schedule.
    pub steps: Vec<Step>,
    /// Weights, packed.
    pub weights: Vec<f32>,
}

const MAGIC: u64 = u64::from_le_bytes(*b"MCCPROG3");

/// Writes words.
struct W(Vec<u64>);

impl W {
    fn u(&mut self, v: usize) {
        self.0.push(v as u64);
    }
    fn f(&mut self, v: f32) {
        self.0.push(u64::from(v.to_bits()));
    }
    fn b(&mut self, v: bool) {
        self.0.push(u64::from(v));
    }
    fn buf(&mut self, b: Buf) {
        self.u(b.off);
        self.u(b.len);
    }
    fn opt(&mut self, v: Option<usize>) {
        match v {
            None => self.0.push(u64::MAX),
            Some(v) => self.u(v),
        }
    }
    fn list(&mut self, v: &[usize]) {
        self.u(v.len());
        for &x in v {
            self.u(x);
        }
    }
    fn str(&mut self, s: &str) {
        self.u(s.len());
        for chunk in s.as_bytes().chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0.push(u64::from_le_bytes(b));
        }
    }
    fn geo(&mut self, g: &Geometry) {
        for v in [
            g.c, g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl,
        ] {
            self.u(v);
        }
    }
    fn act(&mut self, a: Act) {
        let (code, p, q) = match a {
            Act::None => (0, 0.0, 0.0),
            Act::Relu => (1, 0.0, 0.0),
            Act::Clip(lo, hi) => (2, lo, hi),
            Act::LeakyRelu(x) => (3, x, 0.0),
            Act::Sigmoid => (4, 0.0, 0.0),
            Act::HardSigmoid(x, y) => (5, x, y),
            Act::HardSwish => (6, 0.0, 0.0),
            Act::Tanh => (7, 0.0, 0.0),
        };
        self.u(code);
        self.f(p);
        self.f(q);
    }
    fn src(&mut self, s: Src) {
        match s {
            Src::Arena(b) => {
                self.u(0);
                self.buf(b);
            }
            Src::Weight { off, len } => {
                self.u(1);
                self.u(off);
                self.u(len);
            }
        }
    }
    fn io(&mut self, io: &Io) {
        self.str(&io.name);
        self.list(&io.dims);
        self.buf(io.buf);
    }
}

/// Reads words.
struct R<'a>(&'a [u64], usize);

impl R<'_> {
    fn word(&mut self) -> Option<u64> {
        let v = *self.0.get(self.1)?;
        self.1 += 1;
        Some(v)
    }
    fn u(&mut self) -> Option<usize> {
        usize::try_from(self.word()?).ok()
    }
    fn f(&mut self) -> Option<f32> {
        Some(f32::from_bits(u32::try_from(self.word()?).ok()?))
    }
    fn b(&mut self) -> Option<bool> {
        Some(self.word()? != 0)
    }
    fn buf(&mut self) -> Option<Buf> {
        Some(Buf {
            off: self.u()?,
            len: self.u()?,
        })
    }
    fn opt(&mut self) -> Option<Option<usize>> {
        let w = self.word()?;
        Some(if w == u64::MAX {
            None
        } else {
            Some(usize::try_from(w).ok()?)
        })
    }
    fn list(&mut self) -> Option<Vec<usize>> {
        let n = self.u()?;
        if n > self.0.len() {
            return None;
        }
        (0..n).map(|_| self.u()).collect()
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u()?;
        if n > 8 * self.0.len() {
            return None;
        }
        let mut bytes = Vec::with_capacity(n);
        for _ in 0..n.div_ceil(8) {
            bytes.extend(self.word()?.to_le_bytes());
        }
        bytes.truncate(n);
        String::from_utf8(bytes).ok()
    }
    fn geo(&mut self) -> Option<Geometry> {
        Some(Geometry {
            c: self.u()?,
            h: self.u()?,
            w: self.u()?,
            oh: self.u()?,
            ow: self.u()?,
            kh: self.u()?,
            kw: self.u()?,
            sh: self.u()?,
            sw: self.u()?,
            dh: self.u()?,
            dw: self.u()?,
            pt: self.u()?,
            pl: self.u()?,
        })
    }
    fn act(&mut self) -> Option<Act> {
        let (code, p, q) = (self.u()?, self.f()?, self.f()?);
        Some(match code {
            0 => Act::None,
            1 => Act::Relu,
            2 => Act::Clip(p, q),
            3 => Act::LeakyRelu(p),
            4 => Act::Sigmoid,
            5 => Act::HardSigmoid(p, q),
            6 => Act::HardSwish,
            7 => Act::Tanh,
            _ => return None,
        })
    }
    fn src(&mut self) -> Option<Src> {
        Some(match self.u()? {
            0 => Src::Arena(self.buf()?),
            1 => Src::Weight {
                off: self.u()?,
                len: self.u()?,
            },
            _ => return None,
        })
    }
    fn io(&mut self) -> Option<Io> {
        Some(Io {
            name: self.str()?,
            dims: self.list()?,
            buf: self.buf()?,
        })
    }
}

impl Step {
    /// The arena buffers the step reads.
    pub fn reads(&self) -> Vec<Buf> {
        let arena = |s: &Src| match s {
            Src::Arena(b) => Some(*b),
            Src::Weight { .. } => None,
        };
        match self {
            Step::Conv { x, residual, .. } => std::iter::once(*x).chain(*residual).collect(),
            Step::Depthwise { x, .. }
            | Step::Dense { x, .. }
            | Step::MaxPool { x, .. }
            | Step::AvgPool { x, .. }
            | Step::GlobalAvgPool { x, .. }
            | Step::Unary { x, .. }
            | Step::Affine { x, .. }
            | Step::Softmax { x, .. }
            | Step::Lrn { x, .. }
            | Step::Transpose { x, .. }
            | Step::Reorder { x, .. }
            | Step::Copy { x, .. } => vec![*x],
            Step::Binary { a, b, .. } => arena(a).into_iter().chain(arena(b)).collect(),
            Step::Concat { parts, .. } => parts.iter().map(|(p, _)| *p).collect(),
        }
    }

    /// The arena buffer the step writes.
    pub fn writes(&self) -> Buf {
        match self {
            Step::Conv { y, .. }
            | Step::Depthwise { y, .. }
            | Step::Dense { y, .. }
            | Step::MaxPool { y, .. }
            | Step::AvgPool { y, .. }
            | Step::GlobalAvgPool { y, .. }
            | Step::Unary { y, .. }
            | Step::Affine { y, .. }
            | Step::Softmax { y, .. }
            | Step::Lrn { y, .. }
            | Step::Transpose { y, .. }
            | Step::Reorder { y, .. }
            | Step::Copy { y, .. }
            | Step::Binary { y, .. }
            | Step::Concat { y, .. } => *y,
        }
    }

    fn encode(&self, w: &mut W) {
        match self {
            Step::Conv {
                x,
                y,
                g,
                m,
                groups,
                w: wo,
                bias,
                residual,
                act,
                layout,
            } => {
                w.u(0);
                w.buf(*x);
                w.buf(*y);
                w.geo(g);
                w.u(*m);
                w.u(*groups);
                w.u(*wo);
                w.opt(*bias);
                w.u(usize::from(residual.is_some()));
                if let Some(b) = residual {
                    w.buf(*b);
                }
                w.act(*act);
                w.u(match layout {
                    ConvLayout::Gemm => 0,
                    ConvLayout::Blocked { x_blocked: false } => 1,
                    ConvLayout::Blocked { x_blocked: true } => 2,
                });
            }
            Step::Depthwise {
                x,
                y,
                g,
                m,
                w: wo,
                bias,
                act,
                blocked,
            } => {
                w.u(1);
                w.buf(*x);
                w.buf(*y);
                w.geo(g);
                w.u(*m);
                w.u(*wo);
                w.opt(*bias);
                w.act(*act);
                w.b(*blocked);
            }
            Step::Dense {
                x,
                y,
                rows,
                k,
                n,
                w: wo,
                bias,
                act,
            } => {
                w.u(2);
                w.buf(*x);
                w.buf(*y);
                w.u(*rows);
                w.u(*k);
                w.u(*n);
                w.u(*wo);
                w.opt(*bias);
                w.act(*act);
            }
            Step::MaxPool { x, y, g, blocked } => {
                w.u(3);
                w.buf(*x);
                w.buf(*y);
                w.geo(g);
                w.b(*blocked);
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
                w.u(4);
                w.buf(*x);
                w.buf(*y);
                w.geo(g);
                w.b(*count_pad);
                w.u(*pb);
                w.u(*pr);
                w.b(*blocked);
            }
            Step::GlobalAvgPool {
                x,
                y,
                c,
                hw,
                blocked,
            } => {
                w.u(5);
                w.buf(*x);
                w.buf(*y);
                w.u(*c);
                w.u(*hw);
                w.b(*blocked);
            }
            Step::Reorder {
                x,
                y,
                c,
                hw,
                to_blocked,
            } => {
                w.u(14);
                w.buf(*x);
                w.buf(*y);
                w.u(*c);
                w.u(*hw);
                w.b(*to_blocked);
            }
            Step::Unary { x, y, act } => {
                w.u(6);
                w.buf(*x);
                w.buf(*y);
                w.act(*act);
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
                w.u(7);
                w.src(*a);
                w.list(a_strides);
                w.src(*b);
                w.list(b_strides);
                w.list(dims);
                w.u(usize::from(op.code()));
                w.act(*act);
                w.buf(*y);
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
                w.u(8);
                w.buf(*x);
                w.buf(*y);
                w.u(*c);
                w.u(*inner);
                w.u(*scale);
                w.u(*shift);
                w.act(*act);
            }
            Step::Concat {
                y,
                outer,
                parts,
                plane,
            } => {
                w.u(9);
                w.buf(*y);
                w.u(*outer);
                w.u(*plane);
                w.u(parts.len());
                for (b, chunk) in parts {
                    w.buf(*b);
                    w.u(*chunk);
                }
            }
            Step::Softmax {
                x,
                y,
                rows,
                cols,
                log,
            } => {
                w.u(10);
                w.buf(*x);
                w.buf(*y);
                w.u(*rows);
                w.u(*cols);
                w.b(*log);
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
                w.u(11);
                w.buf(*x);
                w.buf(*y);
                w.u(*c);
                w.u(*hw);
                w.u(*size);
                w.f(*alpha);
                w.f(*beta);
                w.f(*bias);
            }
            Step::Transpose { x, y, dims, perm } => {
                w.u(12);
                w.buf(*x);
                w.buf(*y);
                w.list(dims);
                w.list(perm);
            }
            Step::Copy { x, y } => {
                w.u(13);
                w.buf(*x);
                w.buf(*y);
            }
        }
    }

    fn decode(r: &mut R) -> Option<Step> {
        Some(match r.u()? {
            0 => Step::Conv {
                x: r.buf()?,
                y: r.buf()?,
                g: r.geo()?,
                m: r.u()?,
                groups: r.u()?,
                w: r.u()?,
                bias: r.opt()?,
                residual: match r.u()? {
                    0 => None,
                    1 => Some(r.buf()?),
                    _ => return None,
                },
                act: r.act()?,
                layout: match r.u()? {
                    0 => ConvLayout::Gemm,
                    1 => ConvLayout::Blocked { x_blocked: false },
                    2 => ConvLayout::Blocked { x_blocked: true },
                    _ => return None,
                },
            },
            1 => Step::Depthwise {
                x: r.buf()?,
                y: r.buf()?,
                g: r.geo()?,
                m: r.u()?,
                w: r.u()?,
                bias: r.opt()?,
                act: r.act()?,
                blocked: r.b()?,
            },
            2 => Step::Dense {
                x: r.buf()?,
                y: r.buf()?,
                rows: r.u()?,
                k: r.u()?,
                n: r.u()?,
                w: r.u()?,
                bias: r.opt()?,
                act: r.act()?,
            },
            3 => Step::MaxPool {
                x: r.buf()?,
                y: r.buf()?,
                g: r.geo()?,
                blocked: r.b()?,
            },
            4 => Step::AvgPool {
                x: r.buf()?,
                y: r.buf()?,
                g: r.geo()?,
                count_pad: r.b()?,
                pb: r.u()?,
                pr: r.u()?,
                blocked: r.b()?,
            },
            5 => Step::GlobalAvgPool {
                x: r.buf()?,
                y: r.buf()?,
                c: r.u()?,
                hw: r.u()?,
                blocked: r.b()?,
            },
            6 => Step::Unary {
                x: r.buf()?,
                y: r.buf()?,
                act: r.act()?,
            },
            7 => Step::Binary {
                a: r.src()?,
                a_strides: r.list()?,
                b: r.src()?,
                b_strides: r.list()?,
                dims: r.list()?,
                op: BinOp::from_code(u8::try_from(r.u()?).ok()?)?,
                act: r.act()?,
                y: r.buf()?,
            },
            8 => Step::Affine {
                x: r.buf()?,
                y: r.buf()?,
                c: r.u()?,
                inner: r.u()?,
                scale: r.u()?,
                shift: r.u()?,
                act: r.act()?,
            },
            9 => {
                let y = r.buf()?;
                let outer = r.u()?;
                let plane = r.u()?;
                let n = r.u()?;
                if n > r.0.len() {
                    return None;
                }
                let parts = (0..n)
                    .map(|_| Some((r.buf()?, r.u()?)))
                    .collect::<Option<_>>()?;
                Step::Concat {
                    y,
                    outer,
                    parts,
                    plane,
                }
            }
            10 => Step::Softmax {
                x: r.buf()?,
                y: r.buf()?,
                rows: r.u()?,
                cols: r.u()?,
                log: r.b()?,
            },
            11 => Step::Lrn {
                x: r.buf()?,
                y: r.buf()?,
                c: r.u()?,
                hw: r.u()?,
                size: r.u()?,
                alpha: r.f()?,
                beta: r.f()?,
                bias: r.f()?,
            },
            12 => Step::Transpose {
                x: r.buf()?,
                y: r.buf()?,
                dims: r.list()?,
                perm: r.list()?,
            },
            13 => Step::Copy {
                x: r.buf()?,
                y: r.buf()?,
            },
            14 => Step::Reorder {
                x: r.buf()?,
                y: r.buf()?,
                c: r.u()?,
                hw: r.u()?,
                to_blocked: r.b()?,
            },
            _ => return None,
        })
    }
}

impl Program {
    /// The schedule as words (the weights are kept apart: they go to their own section).
    pub fn encode_schedule(&self) -> Vec<u64> {
        let mut w = W(vec![MAGIC]);
        w.opt(self.fixed_batch);
        w.u(self.inputs.len());
        for io in &self.inputs {
            w.io(io);
        }
        w.u(self.outputs.len());
        for io in &self.outputs {
            w.io(io);
        }
        w.u(self.arena);
        w.u(self.scratch);
        w.u(self.weights.len());
        w.u(self.steps.len());
        for s in &self.steps {
            s.encode(&mut w);
        }
        w.0
    }

    /// Reads a schedule written by [`Self::encode_schedule`] and attaches `weights`.
    pub fn decode_schedule(words: &[u64], weights: Vec<f32>) -> Result<Program, String> {
        let n = weights.len();
        let mut p = Program::decode_schedule_for(words, n)?;
        p.weights = weights;
        Ok(p)
    }

    /// Reads a schedule whose `nweights` weights are kept elsewhere (an executable's
    /// `.rodata`); the program's own weights stay empty.
    pub fn decode_schedule_for(words: &[u64], nweights_given: usize) -> Result<Program, String> {
        let bad = || "not an mcc program (or from another mcc version)".to_string();
        let mut r = R(words, 0);
        if r.word() != Some(MAGIC) {
            return Err(bad());
        }
        let fixed_batch = r.opt().ok_or_else(bad)?;
        let n = r.u().ok_or_else(bad)?.min(words.len());
        let inputs = (0..n)
            .map(|_| r.io())
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let n = r.u().ok_or_else(bad)?.min(words.len());
        let outputs = (0..n)
            .map(|_| r.io())
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let arena = r.u().ok_or_else(bad)?;
        let scratch = r.u().ok_or_else(bad)?;
        let nweights = r.u().ok_or_else(bad)?;
        if nweights != nweights_given {
            return Err(format!(
                "the program expects {nweights} weights, {nweights_given} were given"
            ));
        }
        let n = r.u().ok_or_else(bad)?.min(words.len());
        let steps = (0..n)
            .map(|_| Step::decode(&mut r))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        Ok(Program {
            fixed_batch,
            inputs,
            outputs,
            arena,
            scratch,
            steps,
            weights: vec![],
        })
    }
}
