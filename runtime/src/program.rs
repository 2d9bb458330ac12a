//! A compiled model as the runtime sees it: a static schedule of kernel steps over one arena,
//! with every offset planned at compile time, and the weights (pre-packed) in one blob.
//!
//! Offsets and sizes are **per sample**, in floats: with batch B, a tensor planned at offset
//! `o` with `n` floats per sample occupies arena floats `[o·B, (o + n)·B)`, sample s at
//! `o·B + s·n`. Since every intermediate tensor scales with the batch, planning one sample
//! plans them all, and the batch stays a run-time parameter.
//!
//! The program has a compact binary form ([`Program::encode_schedule`] /
//! [`Program::decode_schedule`]: a magic word that names the version, then little-endian u64
//! words) that ahead-of-time builds embed.
//!
//! Every kind of [`Step`] is one entry of the `define_steps!` table below: its tag in the
//! encoding, its fields in the order they are encoded, which fields are arena buffers it reads
//! or writes and which are ranges of the weights, and its FLOPs. The enum, the encoding, the
//! buffer and weight visitors (and with them `exec::validate`'s bounds checks and codegen's
//! offset planning), the step's name and its FLOP count all come from that entry. What a
//! step means (the sizes its buffers need, the kernel it calls) is the executor's (`exec.rs`).

use crate::kernels::block_sparse::block_len;
use crate::kernels::blocked::LANES;
use crate::kernels::conv::Geometry;
use crate::kernels::conv_transpose;
use crate::kernels::eltwise::BinOp;
use crate::kernels::epilogue::{Act, GeluChain};
use crate::kernels::gemm::{pack_a_len, pack_b_len};
use crate::kernels::int8::panels_len;
use crate::kernels::reduce::ReduceOp;
use crate::kernels::sparse::sparse_len;
use crate::kernels::winograd;

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
    /// Output channel-blocked (NCHW16c, see [`crate::kernels::blocked`]), one group, weights
    /// packed by `blocked::pack_conv`; the input is blocked too when `x_blocked`, else NCHW.
    Blocked {
        /// Whether the input is blocked.
        x_blocked: bool,
    },
    /// Channel-blocked in and out, as Winograd F(2×2, 3×3) ([`crate::kernels::winograd`]):
    /// a 3×3 stride-1 window, one group, whole blocks of input channels; weights
    /// transformed and packed by `winograd::pack_weights`.
    Winograd,
}

impl ConvLayout {
    /// Output channels as the kernel computes them: a blocked convolution computes whole
    /// blocks (the last one's padding lanes from zero weights and bias).
    pub fn channels(self, m: usize) -> usize {
        match self {
            ConvLayout::Gemm => m,
            ConvLayout::Blocked { .. } | ConvLayout::Winograd => {
                m.div_ceil(LANES).saturating_mul(LANES)
            }
        }
    }

    /// Floats of the packed weights of a convolution of `m` output channels in `groups`
    /// groups over `g`.
    pub fn weights(self, g: &Geometry, m: usize, groups: usize) -> usize {
        let groups = groups.max(1);
        // Saturating: hostile sizes give a length no weights hold, which validation rejects.
        let k = (g.c / groups).saturating_mul(g.kh).saturating_mul(g.kw);
        match self {
            ConvLayout::Gemm => groups.saturating_mul(pack_a_len(m / groups, k)),
            ConvLayout::Blocked { .. } => self.channels(m).saturating_mul(k),
            ConvLayout::Winograd => winograd::weights_len(m, g.c),
        }
    }
}

/// How a step uses an arena buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// It reads it.
    Read,
    /// It writes it.
    Write,
}

/// Defines [`Step`] and everything mechanical about it from one table, an entry per kind of
/// step:
///
/// ```text
/// /// What the step computes.
/// Name = tag {
///     /// What the field is.
///     field: Type => role,
///     field: Type,
/// } flops = expression;
/// ```
///
/// - `tag` is the step's first word in the encoding; its fields follow in the order written,
///   each as its type's [`Encoded`] form.
/// - A field's `role`, if it has one: `read` for arena buffers the step reads (`Buf`,
///   `Option<Buf>`, `Src`, whose constant form is a range of the weights, or
///   `Vec<(Buf, usize)>`); `write` for the one `Buf` it writes; `weights(n)` for an offset
///   (`usize`, or `Option<usize>` when optional) of `n` floats in the weights.
/// - `flops` is its arithmetic on one sample (a multiply-add counts two), left out for the
///   memory-bound steps (0).
///
/// `n` and `flops` are expressions over the entry's fields, bound by reference. Tags are
/// unique and each entry has exactly one `write` field, or the table does not compile.
///
/// From it come: the enum; [`Step::name`]; [`Step::flops`]; the visitors
/// [`Step::try_visit_bufs`], [`Step::visit_bufs_mut`], [`Step::try_visit_weights`] (and
/// [`Step::reads`], [`Step::writes`]); the encoding and decoding.
macro_rules! define_steps {
    ($(
        $(#[$doc:meta])*
        $name:ident = $tag:literal {
            $( $(#[$fdoc:meta])* $field:ident : $ty:ty $(=> $role:ident $(($n:expr))?)? ),* $(,)?
        } $(flops = $flops:expr)?;
    )*) => {
        /// One step of the schedule (defined by the `define_steps!` table in `program.rs`).
        #[derive(Clone, Debug, PartialEq)]
        pub enum Step {
            $( $(#[$doc])* $name { $( $(#[$fdoc])* $field: $ty, )* }, )*
        }

        impl Step {
            /// Its kind, as the table names it.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Step::$name { .. } => stringify!($name), )*
                }
            }

            /// Its arithmetic on one sample, in FLOPs (a multiply-add counts two); 0 for the
            /// memory-bound steps.
            #[allow(unused_variables)]
            pub fn flops(&self) -> usize {
                match self {
                    $( Step::$name { $($field),* } => step_field!(flops $($flops)?), )*
                }
            }

            /// Calls `f` with every arena buffer of the step, the field that holds it and
            /// whether the step reads or writes it, in the table's order; stops at the first
            /// error.
            #[allow(unused_variables)]
            pub fn try_visit_bufs<E>(
                &self,
                mut f: impl FnMut(&'static str, Access, Buf) -> Result<(), E>,
            ) -> Result<(), E> {
                match self {
                    $( Step::$name { $($field),* } => {
                        $( $( step_field!(visit $role, $field, f); )? )*
                    } )*
                }
                Ok(())
            }

            /// Calls `f` with every arena buffer of the step, to change it (codegen's
            /// offset planning).
            #[allow(unused_variables)]
            pub fn visit_bufs_mut(&mut self, mut f: impl FnMut(&mut Buf)) {
                match self {
                    $( Step::$name { $($field),* } => {
                        $( $( step_field!(visit_mut $role, $field, f); )? )*
                    } )*
                }
            }

            /// Calls `f` with every range of the weights the step reads (the field, the
            /// offset, the floats); stops at the first error.
            #[allow(unused_variables)]
            pub fn try_visit_weights<E>(
                &self,
                mut f: impl FnMut(&'static str, usize, usize) -> Result<(), E>,
            ) -> Result<(), E> {
                match self {
                    $( Step::$name { $($field),* } => {
                        $( $( step_field!(weights $role $(($n))?, $field, f); )? )*
                    } )*
                }
                Ok(())
            }

            /// The arena buffer the step writes (an entry without exactly one `write` field
            /// does not compile: none leaves this arm without a value, two make one
            /// unreachable).
            #[allow(unused_variables)]
            #[deny(unreachable_code)]
            pub fn writes(&self) -> Buf {
                match self {
                    $( Step::$name { $($field),* } => {
                        $( $( step_field!(writes $role, $field); )? )*
                    } )*
                }
            }

            fn encode(&self, w: &mut W) {
                match self {
                    $( Step::$name { $($field),* } => {
                        w.word($tag);
                        $( Encoded::put($field, w); )*
                    } )*
                }
            }

            /// Two entries with one tag do not compile: the second's arm is unreachable.
            #[deny(unreachable_patterns)]
            fn decode(r: &mut R) -> Option<Step> {
                Some(match r.word()? {
                    $( $tag => Step::$name { $( $field: Encoded::get(r)?, )* }, )*
                    _ => return None,
                })
            }
        }
    };
}

/// One field's part of a method [`define_steps!`] generates, by the field's role.
macro_rules! step_field {
    (flops) => {
        0
    };
    (flops $flops:expr) => {
        $flops
    };
    (visit read, $field:ident, $f:ident) => {
        Operand::visit($field, &mut |b| $f(stringify!($field), Access::Read, b))?
    };
    (visit write, $field:ident, $f:ident) => {
        $f(stringify!($field), Access::Write, *$field)?
    };
    (visit weights, $field:ident, $f:ident) => {};
    (visit_mut read, $field:ident, $f:ident) => {
        Operand::visit_mut($field, &mut $f)
    };
    (visit_mut write, $field:ident, $f:ident) => {
        $f($field)
    };
    (visit_mut weights, $field:ident, $f:ident) => {};
    (weights read, $field:ident, $f:ident) => {
        Operand::visit_weights($field, &mut |off, n| $f(stringify!($field), off, n))?
    };
    (weights write, $field:ident, $f:ident) => {};
    (weights weights($n:expr), $field:ident, $f:ident) => {
        if let Some(off) = WeightOffset::offset($field) {
            $f(stringify!($field), off, $n)?;
        }
    };
    (writes write, $field:ident) => {
        return *$field
    };
    (writes $role:ident, $field:ident) => {};
}

define_steps! {
    /// A convolution: as GEMMs with packed weights (one panel set per group), or on
    /// channel blocks (`layout`).
    Conv = 0 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Window geometry.
        g: Geometry,
        /// Output channels.
        m: usize,
        /// Groups.
        groups: usize,
        /// Offset of the packed weights (groups × `pack_a_len(m/groups, c/groups·kh·kw)`, or
        /// `blocked::pack_conv`'s whole blocks).
        w: usize => weights(layout.weights(g, *m, *groups)),
        /// Offset of the bias (m floats, or whole blocks of them when blocked).
        bias: Option<usize> => weights(layout.channels(*m)),
        /// A tensor shaped like the output, added before the activation (a residual
        /// connection fused into the convolution).
        residual: Option<Buf> => read,
        /// Activation.
        act: Act,
        /// Layout and kernel.
        layout: ConvLayout,
    } flops = 2 * m * g.c / (*groups).max(1) * g.kh * g.kw * g.oh * g.ow;

    /// A depthwise convolution (each output channel reads one input channel).
    /// Channel-blocked when `blocked` (one output channel per input channel, weights packed
    /// by `blocked::pack_depthwise`).
    Depthwise = 1 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Window geometry.
        g: Geometry,
        /// Output channels.
        m: usize,
        /// Offset of the weights (`m·kh·kw`).
        w: usize => weights(m.saturating_mul(g.kh).saturating_mul(g.kw)),
        /// Offset of the bias.
        bias: Option<usize> => weights(*m),
        /// Activation.
        act: Act,
        /// Channel-blocked input and output.
        blocked: bool,
    } flops = 2 * m * g.kh * g.kw * g.oh * g.ow;

    /// A fully connected layer: each sample's `rows × k` times packed `k × n`.
    Dense = 2 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Offset of the packed weights (`pack_b_len(k, n)`).
        w: usize => weights(pack_b_len(*k, *n)),
        /// Offset of the bias (n floats).
        bias: Option<usize> => weights(*n),
        /// Activation.
        act: Act,
    } flops = rows.saturating_mul(*k).saturating_mul(*n).saturating_mul(2);

    /// Max pooling.
    MaxPool = 3 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Window geometry.
        g: Geometry,
        /// Channel-blocked input and output.
        blocked: bool,
    };

    /// Average pooling.
    AvgPool = 4 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
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
    };

    /// Global average pooling of `c` channels of `hw` values.
    GlobalAvgPool = 5 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Channels.
        c: usize,
        /// Values per channel.
        hw: usize,
        /// Channel-blocked input (the output, one value per channel, is the same either way).
        blocked: bool,
    };

    /// `y = act(x)`.
    Unary = 6 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Activation.
        act: Act,
    };

    /// `y = act(a op b)` with broadcasting (strides per axis; 0 broadcasts).
    Binary = 7 {
        /// Left operand.
        a: Src => read,
        /// Its strides.
        a_strides: Vec<usize>,
        /// Right operand.
        b: Src => read,
        /// Its strides.
        b_strides: Vec<usize>,
        /// Output dims (per sample).
        dims: Vec<usize>,
        /// Operation.
        op: BinOp,
        /// Activation after it.
        act: Act,
        /// Output.
        y: Buf => write,
    };

    /// `y[c, i] = act(scale[c]·x[c, i] + shift[c])`.
    Affine = 8 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Channels.
        c: usize,
        /// Values per channel.
        inner: usize,
        /// Offset of the scales.
        scale: usize => weights(*c),
        /// Offset of the shifts.
        shift: usize => weights(*c),
        /// Activation.
        act: Act,
        /// Channel-blocked input and output (`[c/16][inner][16]`; `c` whole blocks).
        blocked: bool,
    };

    /// Concatenation: for each of `outer` blocks, each part's chunk in turn.
    Concat = 9 {
        /// Output.
        y: Buf => write,
        /// Blocks per sample.
        outer: usize,
        /// Floats of one block of 16 channels when the parts are channel blocks
        /// (`[blocks][pixels][16]`, `outer` 1): one sample's copy then splits its pixels over
        /// the threads, as the convolutions that wrote the parts did. 0 otherwise.
        plane: usize,
        /// Inputs and their chunk sizes.
        parts: Vec<(Buf, usize)> => read,
    };

    /// Softmax (or log-softmax) of `rows` rows of `cols`.
    Softmax = 10 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Row length.
        cols: usize,
        /// Log-softmax.
        log: bool,
    };

    /// Local response normalization.
    Lrn = 11 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
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
    };

    /// Axis permutation of a sample.
    Transpose = 12 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Input dims (per sample).
        dims: Vec<usize>,
        /// Permutation.
        perm: Vec<usize>,
    };

    /// A copy.
    Copy = 13 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
    };

    /// Between layouts: NCHW → NCHW16c (`to_blocked`) or back, `c` a multiple of 16.
    Reorder = 14 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Channels.
        c: usize,
        /// Pixels per channel.
        hw: usize,
        /// The direction.
        to_blocked: bool,
    };

    /// A fully connected layer on its nonzero weights only ([`crate::kernels::sparse`]):
    /// each sample's `rows × k` times a `k × n` matrix stored column by column.
    SparseDense = 15 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Nonzero weights.
        nnz: usize,
        /// Offset of the stored matrix (`sparse_len(n, nnz)`).
        w: usize => weights(sparse_len(*n, *nnz)),
        /// Offset of the bias (n floats).
        bias: Option<usize> => weights(*n),
        /// Activation.
        act: Act,
    } flops = rows.saturating_mul(*nnz).saturating_mul(2);

    /// f32 → u8 codes (`QuantizeLinear`, [`crate::quant::quantize`]) of `n` values; an image
    /// (`channels` > 0) goes from NCHW to channels-last, the layout of every 4-D code tensor.
    /// Code buffers hold 4 bytes a float (a sample's `n` codes in `⌈n/4⌉` floats).
    Quantize = 16 {
        /// Input (f32).
        x: Buf => read,
        /// Output (u8 codes).
        y: Buf => write,
        /// Values per sample.
        n: usize,
        /// Scale.
        scale: f32,
        /// Zero point (0..=255).
        zp: usize,
        /// Channels of an image (0: plain order).
        channels: usize,
    };

    /// u8 codes → f32 (`DequantizeLinear`) of `n` values; an image (`channels` > 0) from
    /// channels-last back to NCHW.
    Dequantize = 17 {
        /// Input (u8 codes).
        x: Buf => read,
        /// Output (f32).
        y: Buf => write,
        /// Values per sample.
        n: usize,
        /// Scale.
        scale: f32,
        /// Zero point (0..=255).
        zp: usize,
        /// Channels of an image (0: plain order).
        channels: usize,
    };

    /// An integer convolution ([`crate::kernels::int8::conv`]): u8 codes in and out,
    /// channels-last; i8 weights packed as panels per group; per output channel an i32 bias
    /// (input zero point folded in), multiplier and shift (`3m` words at `q`).
    QConv = 18 {
        /// Input (u8 codes).
        x: Buf => read,
        /// Output (u8 codes).
        y: Buf => write,
        /// Window geometry.
        g: Geometry,
        /// Output channels.
        m: usize,
        /// Groups.
        groups: usize,
        /// Input zero point.
        zx: usize,
        /// Offset of the weights.
        w: usize => weights(qconv_weights(g, *m, *groups)),
        /// Offset of the requantization words.
        q: usize => weights(m.saturating_mul(3)),
        /// Output zero point.
        zy: usize,
        /// Lowest output code.
        lo: usize,
        /// Highest output code.
        hi: usize,
    } flops = 2 * m * g.c / (*groups).max(1) * g.kh * g.kw * g.oh * g.ow;

    /// An integer fully connected layer ([`crate::kernels::int8::gemm`]): each sample's
    /// `rows × k` u8 codes times `k × n` i8 weights packed as panels, requantized as
    /// [`Step::QConv`].
    QDense = 19 {
        /// Input (u8 codes).
        x: Buf => read,
        /// Output (u8 codes).
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Input zero point.
        zx: usize,
        /// Offset of the packed weights.
        w: usize => weights(panels_len(*n, *k).div_ceil(4)),
        /// Offset of the requantization words.
        q: usize => weights(n.saturating_mul(3)),
        /// Output zero point.
        zy: usize,
        /// Lowest output code.
        lo: usize,
        /// Highest output code.
        hi: usize,
    } flops = rows.saturating_mul(*k).saturating_mul(*n).saturating_mul(2);

    /// Max pooling of u8 codes, channels-last.
    QMaxPool = 20 {
        /// Input (u8 codes).
        x: Buf => read,
        /// Output (u8 codes).
        y: Buf => write,
        /// Window geometry.
        g: Geometry,
    };

    /// A residual join of two integer regions, elementwise on codes of one layout:
    /// `quantize(relu?(dequantize(a) + dequantize(b)))`, the f32 operations of the graph it
    /// stands for, in their order ([`crate::kernels::int8::add`]); with `float`, the sum
    /// itself, written f32 for float layers after it (NCHW when the codes are a
    /// channels-last image: `channels` > 0; [`crate::kernels::int8::add_float`]).
    QAdd = 22 {
        /// Left codes.
        a: Buf => read,
        /// Right codes.
        b: Buf => read,
        /// Output codes, or with `float` f32.
        y: Buf => write,
        /// Values per sample.
        n: usize,
        /// Left scale.
        sa: f32,
        /// Left zero point.
        za: usize,
        /// Right scale.
        sb: f32,
        /// Right zero point.
        zb: usize,
        /// Output scale (codes only).
        sy: f32,
        /// Output zero point (codes only).
        zy: usize,
        /// A Relu after the sum.
        relu: bool,
        /// The sum is written f32, not requantized.
        float: bool,
        /// With `float`: channels of a channels-last image of codes, or 0 (plain).
        channels: usize,
    };

    /// Dynamic quantization of rows ([`crate::kernels::int8::quantize_rows`]): each of a
    /// sample's `rows` rows of `k` f32 values becomes u8 codes with its own scale and zero
    /// point, written after them (`dynamic_stride(k)` bytes a row).
    QRows = 23 {
        /// Input (f32).
        x: Buf => read,
        /// Output (codes and each row's parameters).
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Values per row.
        k: usize,
    };

    /// A fully connected layer on dynamically quantized rows (a [`Step::QRows`] output):
    /// `rows × k` codes times `k × n` i8 weights packed as panels, each result made f32 by
    /// [`crate::kernels::int8::Dequants`] — per output the weights' sum (i32), scale and bias
    /// (`3n` words at `q`), and the clamp `[lo, hi]`.
    QDynDense = 24 {
        /// Input (a [`Step::QRows`] output).
        x: Buf => read,
        /// Output (f32).
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Offset of the packed weights.
        w: usize => weights(panels_len(*n, *k).div_ceil(4)),
        /// Offset of the dequantization words.
        q: usize => weights(n.saturating_mul(3)),
        /// Lowest output value (−∞ for none).
        lo: f32,
        /// Highest output value (+∞ for none).
        hi: f32,
    } flops = rows.saturating_mul(*k).saturating_mul(*n).saturating_mul(2);

    /// Layer normalization of `rows` rows of `cols` ([`crate::kernels::reduce::layer_norm`]):
    /// each row's mean and variance, then per column a scale and a bias.
    LayerNorm = 25 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Row length.
        cols: usize,
        /// Added to the variance.
        eps: f32,
        /// Offset of the scales (one per column).
        scale: usize => weights(*cols),
        /// Offset of the biases (one per column).
        bias: Option<usize> => weights(*cols),
    };

    /// A copy through per-axis offset tables ([`crate::kernels::gather`]): Gather, Slice,
    /// Split and Expand.
    Gather = 26 {
        /// The source: a tensor, or a constant (an Expand of weights).
        x: Src => read,
        /// Output (dense).
        y: Buf => write,
        /// Output dims (per sample).
        dims: Vec<usize>,
        /// Per output axis, for each index along it, the offset it adds in `x`.
        offsets: Vec<Vec<usize>>,
    };

    /// A batch of products of two tensors ([`crate::kernels::matmul::batch_matmul`]): per
    /// index of `dims`, `m × k` from `a` times `k × n` from `b`, reached through per-axis
    /// strides (0 where an operand broadcasts).
    BatchMatMul = 27 {
        /// Left operand.
        a: Src => read,
        /// Its strides over `dims`.
        a_strides: Vec<usize>,
        /// Right operand.
        b: Src => read,
        /// Its strides over `dims`.
        b_strides: Vec<usize>,
        /// The batch dims of the product (per sample).
        dims: Vec<usize>,
        /// Rows.
        m: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Activation.
        act: Act,
        /// Output.
        y: Buf => write,
    } flops = dims
        .iter()
        .fold(2usize, |p, &d| p.saturating_mul(d))
        .saturating_mul(*m)
        .saturating_mul(*k)
        .saturating_mul(*n);

    /// A reduction of the middle axis of a sample viewed as `[outer][len][inner]`
    /// ([`crate::kernels::reduce::reduce`]).
    Reduce = 28 {
        /// Input.
        x: Buf => read,
        /// Output (`outer × inner`).
        y: Buf => write,
        /// Blocks before the reduced axis.
        outer: usize,
        /// Length of the reduced axis.
        len: usize,
        /// Values after it.
        inner: usize,
        /// The reduction.
        op: ReduceOp,
    };

    /// A resampling through per-axis taps ([`crate::kernels::resample`]): Resize (linear,
    /// cubic, antialiased, and nearest with values outside the input).
    Resample = 29 {
        /// Input.
        x: Buf => read,
        /// Output (dense).
        y: Buf => write,
        /// Output dims (per sample).
        dims: Vec<usize>,
        /// Per output axis, for each index along it, its taps: the offset it adds in `x` and
        /// its weight; none for an index outside the input.
        taps: Vec<Vec<Vec<(usize, f64)>>>,
        /// The axes as the sum nests them, outermost first.
        order: Vec<usize>,
        /// The value of an element outside the input.
        fill: f32,
    };

    /// Instance normalization of `c` planes of `hw` ([`crate::kernels::reduce::instance_norm`]):
    /// each plane's mean and variance, then per plane (channel) a scale and a bias.
    InstanceNorm = 30 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Planes (channels) per sample.
        c: usize,
        /// Values per plane.
        hw: usize,
        /// Added to the variance.
        eps: f32,
        /// Offset of the scales (one per channel).
        scale: usize => weights(*c),
        /// Offset of the biases (one per channel).
        bias: usize => weights(*c),
    };

    /// A transposed convolution ([`crate::kernels::conv_transpose`]): per group a GEMM of the
    /// packed transposed weights by the input into scratch columns, scattered onto the
    /// output, which starts as the bias.
    ConvTranspose = 31 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// The window read the transposed way: input `c, h, w`, output `oh, ow`, the
        /// padding cut from the output's start `pt, pl`.
        g: Geometry,
        /// Output rows before the full output's first (an `output_shape` larger than it).
        lead_h: usize,
        /// Output columns before the full output's first.
        lead_w: usize,
        /// Output channels.
        m: usize,
        /// Groups.
        groups: usize,
        /// Offset of the packed weights (`conv_transpose::weights_len`).
        w: usize => weights(conv_transpose::weights_len(g, *m, *groups)),
        /// Offset of the bias (m floats).
        bias: Option<usize> => weights(*m),
    } flops = (g.c / (*groups).max(1))
        .saturating_mul(*m)
        .saturating_mul(g.kh * g.kw)
        .saturating_mul(g.h * g.w)
        .saturating_mul(2);

    /// A fully connected layer on whole blocks of its weights only
    /// ([`crate::kernels::block_sparse`]): each sample's `rows × k` times a `k × n` matrix
    /// stored as the blocks of `r` outputs × `c` inputs that hold a nonzero.
    BlockDense = 32 {
        /// Input.
        x: Buf => read,
        /// Output.
        y: Buf => write,
        /// Rows per sample.
        rows: usize,
        /// Depth.
        k: usize,
        /// Columns.
        n: usize,
        /// Outputs per block.
        r: usize,
        /// Inputs per block.
        c: usize,
        /// Stored blocks.
        blocks: usize,
        /// Offset of the stored matrix (`block_len(n, r, c, blocks)`).
        w: usize => weights(block_len(*n, *r, *c, *blocks)),
        /// Offset of the bias (n floats).
        bias: Option<usize> => weights(*n),
        /// Activation.
        act: Act,
    } flops = rows
        .saturating_mul(*blocks)
        .saturating_mul(r.saturating_mul(*c))
        .saturating_mul(2);

    /// Channels-last codes to channels-first (before a reshape, which reads NCHW order).
    QPlanar = 21 {
        /// Input (u8 codes, `[hw][c]`).
        x: Buf => read,
        /// Output (u8 codes, `[c][hw]`).
        y: Buf => write,
        /// Channels.
        c: usize,
        /// Pixels.
        hw: usize,
    };
}

/// Floats of an integer convolution's weights.
pub fn qconv_weights(g: &Geometry, m: usize, groups: usize) -> usize {
    crate::kernels::int8::conv_weights_len(g, m, groups).div_ceil(4)
}

impl Step {
    /// The arena buffers the step reads, in the table's order.
    pub fn reads(&self) -> Vec<Buf> {
        let mut out = vec![];
        let Ok(()) = self.try_visit_bufs(|_, access, b| {
            if access == Access::Read {
                out.push(b);
            }
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }
}

/// A step field that holds arena buffers (a `read` or `write` field of the table).
trait Operand {
    /// Calls `f` with each buffer.
    fn visit<E>(&self, f: &mut impl FnMut(Buf) -> Result<(), E>) -> Result<(), E>;
    /// Calls `f` with each buffer, to change it.
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Buf));
    /// Calls `f` with each range of the weights held in place of a buffer (offset, floats).
    fn visit_weights<E>(
        &self,
        _f: &mut impl FnMut(usize, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        Ok(())
    }
}

impl Operand for Buf {
    fn visit<E>(&self, f: &mut impl FnMut(Buf) -> Result<(), E>) -> Result<(), E> {
        f(*self)
    }
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Buf)) {
        f(self)
    }
}

impl Operand for Option<Buf> {
    fn visit<E>(&self, f: &mut impl FnMut(Buf) -> Result<(), E>) -> Result<(), E> {
        self.map_or(Ok(()), f)
    }
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Buf)) {
        if let Some(b) = self {
            f(b);
        }
    }
}

impl Operand for Src {
    fn visit<E>(&self, f: &mut impl FnMut(Buf) -> Result<(), E>) -> Result<(), E> {
        match self {
            Src::Arena(b) => f(*b),
            Src::Weight { .. } => Ok(()),
        }
    }
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Buf)) {
        if let Src::Arena(b) = self {
            f(b);
        }
    }
    fn visit_weights<E>(&self, f: &mut impl FnMut(usize, usize) -> Result<(), E>) -> Result<(), E> {
        match self {
            Src::Arena(_) => Ok(()),
            Src::Weight { off, len } => f(*off, *len),
        }
    }
}

impl Operand for Vec<(Buf, usize)> {
    fn visit<E>(&self, f: &mut impl FnMut(Buf) -> Result<(), E>) -> Result<(), E> {
        self.iter().try_for_each(|(b, _)| f(*b))
    }
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut Buf)) {
        for (b, _) in self {
            f(b);
        }
    }
}

/// A step field that is an offset into the weights (a `weights(n)` field of the table).
trait WeightOffset {
    /// The offset, if there is one.
    fn offset(&self) -> Option<usize>;
}

impl WeightOffset for usize {
    fn offset(&self) -> Option<usize> {
        Some(*self)
    }
}

impl WeightOffset for Option<usize> {
    fn offset(&self) -> Option<usize> {
        *self
    }
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
    /// What the stored form of the weights holds in place of packed floats that are computed
    /// from others (`crate::stored::storage`); not part of the schedule, so a decoded program
    /// has none.
    pub sources: Vec<Source>,
}

/// Floats of a program's weights that the stored form holds in place of the packed ones
/// computed from them: a Winograd convolution's 3×3 kernels (`m × c × 9`, as the model gives
/// them), where its transformed weights ([`winograd::pack_weights`]) are dense, 16/9 as many,
/// and made of new values. `crate::stored::derive` computes the packed floats back, bit for
/// bit, when a model loads.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// Offset of the packed region in the weights (the Winograd step's `w`).
    pub at: usize,
    /// The floats the packed region is computed from.
    pub floats: Vec<f32>,
}

const MAGIC: u64 = u64::from_le_bytes(*b"MCCPROGC");

/// Writes words.
struct W(Vec<u64>);

impl W {
    fn word(&mut self, v: u64) {
        self.0.push(v);
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
}

/// A value's form in the schedule's words.
trait Encoded: Sized {
    /// Appends it.
    fn put(&self, w: &mut W);
    /// Reads it back (`None`: the words do not hold one).
    fn get(r: &mut R) -> Option<Self>;
}

/// One word.
impl Encoded for usize {
    fn put(&self, w: &mut W) {
        w.word(*self as u64);
    }
    fn get(r: &mut R) -> Option<Self> {
        usize::try_from(r.word()?).ok()
    }
}

/// One word: its bits.
impl Encoded for f32 {
    fn put(&self, w: &mut W) {
        w.word(u64::from(self.to_bits()));
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(f32::from_bits(u32::try_from(r.word()?).ok()?))
    }
}

/// One word: its bits.
impl Encoded for f64 {
    fn put(&self, w: &mut W) {
        w.word(self.to_bits());
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(f64::from_bits(r.word()?))
    }
}

/// One word, 0 or 1 (read back: any other than 0 is true).
impl Encoded for bool {
    fn put(&self, w: &mut W) {
        w.word(u64::from(*self));
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(r.word()? != 0)
    }
}

/// One word, `u64::MAX` for none.
impl Encoded for Option<usize> {
    fn put(&self, w: &mut W) {
        match self {
            None => w.word(u64::MAX),
            Some(v) => v.put(w),
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        let w = r.word()?;
        Some(if w == u64::MAX {
            None
        } else {
            Some(usize::try_from(w).ok()?)
        })
    }
}

/// Offset, length.
impl Encoded for Buf {
    fn put(&self, w: &mut W) {
        self.off.put(w);
        self.len.put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(Buf {
            off: Encoded::get(r)?,
            len: Encoded::get(r)?,
        })
    }
}

/// 0, or 1 and the buffer.
impl Encoded for Option<Buf> {
    fn put(&self, w: &mut W) {
        usize::from(self.is_some()).put(w);
        if let Some(b) = self {
            b.put(w);
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        match usize::get(r)? {
            0 => Some(None),
            1 => Some(Some(Buf::get(r)?)),
            _ => None,
        }
    }
}

/// The length, then the elements (at most as many as there are words in all).
impl<T: Encoded> Encoded for Vec<T> {
    fn put(&self, w: &mut W) {
        self.len().put(w);
        for x in self {
            x.put(w);
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        let n = usize::get(r)?;
        if n > r.0.len() {
            return None;
        }
        (0..n).map(|_| T::get(r)).collect()
    }
}

/// One, then the other.
impl<A: Encoded, B: Encoded> Encoded for (A, B) {
    fn put(&self, w: &mut W) {
        self.0.put(w);
        self.1.put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        Some((A::get(r)?, B::get(r)?))
    }
}

/// The byte length, then the bytes, 8 to a word (the last zero-padded).
impl Encoded for String {
    fn put(&self, w: &mut W) {
        self.len().put(w);
        for chunk in self.as_bytes().chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.word(u64::from_le_bytes(b));
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        let n = usize::get(r)?;
        if n > 8 * r.0.len() {
            return None;
        }
        let mut bytes = Vec::with_capacity(n);
        for _ in 0..n.div_ceil(8) {
            bytes.extend(r.word()?.to_le_bytes());
        }
        bytes.truncate(n);
        String::from_utf8(bytes).ok()
    }
}

/// Its 13 fields in declaration order.
impl Encoded for Geometry {
    fn put(&self, w: &mut W) {
        let g = self;
        for v in [
            g.c, g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl,
        ] {
            v.put(w);
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        let mut u = || usize::get(r);
        Some(Geometry {
            c: u()?,
            h: u()?,
            w: u()?,
            oh: u()?,
            ow: u()?,
            kh: u()?,
            kw: u()?,
            sh: u()?,
            sw: u()?,
            dh: u()?,
            dw: u()?,
            pt: u()?,
            pl: u()?,
        })
    }
}

/// A code, then two parameters (0 where unused).
impl Encoded for Act {
    fn put(&self, w: &mut W) {
        let (code, p, q) = match *self {
            Act::None => (0usize, 0.0, 0.0),
            Act::Relu => (1, 0.0, 0.0),
            Act::Clip(lo, hi) => (2, lo, hi),
            Act::LeakyRelu(x) => (3, x, 0.0),
            Act::Sigmoid => (4, 0.0, 0.0),
            Act::HardSigmoid(x, y) => (5, x, y),
            Act::HardSwish => (6, 0.0, 0.0),
            Act::Tanh => (7, 0.0, 0.0),
            Act::Erf => (8, 0.0, 0.0),
            Act::Gelu => (9, 0.0, 0.0),
            Act::GeluTanh => (10, 0.0, 0.0),
            Act::GeluChain(c) => (11, f32::from(c.code()), 0.0),
        };
        code.put(w);
        p.put(w);
        q.put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        let (code, p, q) = (usize::get(r)?, f32::get(r)?, f32::get(r)?);
        Some(match code {
            0 => Act::None,
            1 => Act::Relu,
            2 => Act::Clip(p, q),
            3 => Act::LeakyRelu(p),
            4 => Act::Sigmoid,
            5 => Act::HardSigmoid(p, q),
            6 => Act::HardSwish,
            7 => Act::Tanh,
            8 => Act::Erf,
            9 => Act::Gelu,
            10 => Act::GeluTanh,
            // The form's code, a small integer held exactly in a float.
            11 if p.fract() == 0.0 && (0.0..=255.0).contains(&p) => {
                Act::GeluChain(GeluChain::from_code(p as u8)?)
            }
            _ => return None,
        })
    }
}

/// 0 and the buffer, or 1, offset and length.
impl Encoded for Src {
    fn put(&self, w: &mut W) {
        match *self {
            Src::Arena(b) => {
                0usize.put(w);
                b.put(w);
            }
            Src::Weight { off, len } => {
                1usize.put(w);
                off.put(w);
                len.put(w);
            }
        }
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(match usize::get(r)? {
            0 => Src::Arena(Buf::get(r)?),
            1 => Src::Weight {
                off: usize::get(r)?,
                len: usize::get(r)?,
            },
            _ => return None,
        })
    }
}

/// Its [`BinOp::code`].
impl Encoded for BinOp {
    fn put(&self, w: &mut W) {
        usize::from(self.code()).put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        BinOp::from_code(u8::try_from(usize::get(r)?).ok()?)
    }
}

/// Its [`ReduceOp::code`].
impl Encoded for ReduceOp {
    fn put(&self, w: &mut W) {
        usize::from(self.code()).put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        ReduceOp::from_code(u8::try_from(usize::get(r)?).ok()?)
    }
}

/// 0 for GEMM; blocked: 1 from a plain input, 2 from a blocked one; 3 for Winograd.
impl Encoded for ConvLayout {
    fn put(&self, w: &mut W) {
        let code: usize = match self {
            ConvLayout::Gemm => 0,
            ConvLayout::Blocked { x_blocked: false } => 1,
            ConvLayout::Blocked { x_blocked: true } => 2,
            ConvLayout::Winograd => 3,
        };
        code.put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(match usize::get(r)? {
            0 => ConvLayout::Gemm,
            1 => ConvLayout::Blocked { x_blocked: false },
            2 => ConvLayout::Blocked { x_blocked: true },
            3 => ConvLayout::Winograd,
            _ => return None,
        })
    }
}

/// Name, dims, buffer.
impl Encoded for Io {
    fn put(&self, w: &mut W) {
        self.name.put(w);
        self.dims.put(w);
        self.buf.put(w);
    }
    fn get(r: &mut R) -> Option<Self> {
        Some(Io {
            name: Encoded::get(r)?,
            dims: Encoded::get(r)?,
            buf: Encoded::get(r)?,
        })
    }
}

impl Program {
    /// The batch that inputs of `lens` floats hold: read off the first input with floats per
    /// sample (an input of empty samples says nothing), else the fixed batch; an error when
    /// it cannot be told (every input empty and any batch allowed) or the count does not
    /// divide.
    pub fn batch_of(&self, lens: &[usize]) -> Result<usize, String> {
        let known = self.inputs.iter().zip(lens).find(|(io, _)| io.buf.len > 0);
        match (known, self.fixed_batch) {
            (Some((io, &n)), _) if n % io.buf.len == 0 => Ok(n / io.buf.len),
            (Some((io, &n)), _) => Err(format!(
                "input `{}` has {n} floats, not a whole number of samples of {}",
                io.name, io.buf.len
            )),
            (None, Some(b)) => Ok(b),
            (None, None) => Err("every input is empty: the batch cannot be told".into()),
        }
    }

    /// The schedule as words (the weights are kept apart: they go to their own section).
    pub fn encode_schedule(&self) -> Vec<u64> {
        let mut w = W(vec![MAGIC]);
        self.fixed_batch.put(&mut w);
        self.inputs.put(&mut w);
        self.outputs.put(&mut w);
        self.arena.put(&mut w);
        self.scratch.put(&mut w);
        self.weights.len().put(&mut w);
        self.steps.len().put(&mut w);
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
        let fixed_batch = Encoded::get(&mut r).ok_or_else(bad)?;
        let inputs = Encoded::get(&mut r).ok_or_else(bad)?;
        let outputs = Encoded::get(&mut r).ok_or_else(bad)?;
        let arena = usize::get(&mut r).ok_or_else(bad)?;
        let scratch = usize::get(&mut r).ok_or_else(bad)?;
        let nweights = usize::get(&mut r).ok_or_else(bad)?;
        if nweights != nweights_given {
            return Err(format!(
                "the program expects {nweights} weights, {nweights_given} were given"
            ));
        }
        let n = usize::get(&mut r).ok_or_else(bad)?.min(words.len());
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
            sources: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program with every kind of step, every option both ways, and no two fields alike
    /// (so a field written in the wrong place shows).
    fn every_step() -> Program {
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let mut buf = || Buf {
            off: next(),
            len: next(),
        };
        let g = Geometry {
            c: 101,
            h: 102,
            w: 103,
            oh: 104,
            ow: 105,
            kh: 106,
            kw: 107,
            sh: 108,
            sw: 109,
            dh: 110,
            dw: 111,
            pt: 112,
            pl: 113,
        };
        let steps = vec![
            Step::Conv {
                x: buf(),
                y: buf(),
                g,
                m: 201,
                groups: 202,
                w: 203,
                bias: Some(204),
                residual: Some(buf()),
                act: Act::Clip(-1.5, 6.25),
                layout: ConvLayout::Gemm,
            },
            Step::Conv {
                x: buf(),
                y: buf(),
                g,
                m: 211,
                groups: 1,
                w: 213,
                bias: None,
                residual: None,
                act: Act::Relu,
                layout: ConvLayout::Blocked { x_blocked: false },
            },
            Step::Conv {
                x: buf(),
                y: buf(),
                g,
                m: 221,
                groups: 1,
                w: 223,
                bias: Some(224),
                residual: None,
                act: Act::HardSigmoid(0.25, 0.5),
                layout: ConvLayout::Blocked { x_blocked: true },
            },
            Step::Conv {
                x: buf(),
                y: buf(),
                g,
                m: 231,
                groups: 1,
                w: 233,
                bias: Some(234),
                residual: Some(buf()),
                act: Act::Relu,
                layout: ConvLayout::Winograd,
            },
            Step::Depthwise {
                x: buf(),
                y: buf(),
                g,
                m: 301,
                w: 302,
                bias: Some(303),
                act: Act::LeakyRelu(0.125),
                blocked: true,
            },
            Step::Dense {
                x: buf(),
                y: buf(),
                rows: 401,
                k: 402,
                n: 403,
                w: 404,
                bias: None,
                act: Act::Sigmoid,
            },
            Step::MaxPool {
                x: buf(),
                y: buf(),
                g,
                blocked: false,
            },
            Step::AvgPool {
                x: buf(),
                y: buf(),
                g,
                count_pad: true,
                pb: 501,
                pr: 502,
                blocked: true,
            },
            Step::GlobalAvgPool {
                x: buf(),
                y: buf(),
                c: 601,
                hw: 602,
                blocked: false,
            },
            Step::Reorder {
                x: buf(),
                y: buf(),
                c: 701,
                hw: 702,
                to_blocked: true,
            },
            Step::Unary {
                x: buf(),
                y: buf(),
                act: Act::HardSwish,
            },
            Step::Binary {
                a: Src::Arena(buf()),
                a_strides: vec![801, 802, 803],
                b: Src::Weight { off: 804, len: 805 },
                b_strides: vec![806],
                dims: vec![807, 808],
                op: BinOp::Min,
                act: Act::Tanh,
                y: buf(),
            },
            Step::Affine {
                x: buf(),
                y: buf(),
                c: 901,
                inner: 902,
                scale: 903,
                shift: 904,
                act: Act::None,
                blocked: true,
            },
            Step::Concat {
                y: buf(),
                outer: 1001,
                parts: vec![(buf(), 1002), (buf(), 1003)],
                plane: 1004,
            },
            Step::Softmax {
                x: buf(),
                y: buf(),
                rows: 1101,
                cols: 1102,
                log: true,
            },
            Step::Lrn {
                x: buf(),
                y: buf(),
                c: 1201,
                hw: 1202,
                size: 1203,
                alpha: 1e-4,
                beta: 0.75,
                bias: 2.0,
            },
            Step::Transpose {
                x: buf(),
                y: buf(),
                dims: vec![1301, 1302, 1303],
                perm: vec![2, 0, 1],
            },
            Step::Copy { x: buf(), y: buf() },
            Step::SparseDense {
                x: buf(),
                y: buf(),
                rows: 1501,
                k: 1502,
                n: 1503,
                nnz: 1504,
                w: 1505,
                bias: Some(1506),
                act: Act::LeakyRelu(0.5),
            },
            Step::BlockDense {
                x: buf(),
                y: buf(),
                rows: 3201,
                k: 3202,
                n: 3203,
                r: 4,
                c: 2,
                blocks: 3204,
                w: 3205,
                bias: Some(3206),
                act: Act::Relu,
            },
            Step::Quantize {
                x: buf(),
                y: buf(),
                n: 1601,
                scale: 0.25,
                zp: 17,
                channels: 1602,
            },
            Step::Dequantize {
                x: buf(),
                y: buf(),
                n: 1701,
                scale: 0.125,
                zp: 18,
                channels: 1702,
            },
            Step::QConv {
                x: buf(),
                y: buf(),
                g,
                m: 1801,
                groups: 1802,
                zx: 19,
                w: 1803,
                q: 1804,
                zy: 20,
                lo: 21,
                hi: 22,
            },
            Step::QDense {
                x: buf(),
                y: buf(),
                rows: 1901,
                k: 1902,
                n: 1903,
                zx: 23,
                w: 1904,
                q: 1905,
                zy: 24,
                lo: 25,
                hi: 26,
            },
            Step::QMaxPool {
                x: buf(),
                y: buf(),
                g,
            },
            Step::QAdd {
                a: buf(),
                b: buf(),
                y: buf(),
                n: 2001,
                sa: 0.5,
                za: 27,
                sb: 0.75,
                zb: 28,
                sy: 1.5,
                zy: 29,
                relu: true,
                float: true,
                channels: 2002,
            },
            Step::QPlanar {
                x: buf(),
                y: buf(),
                c: 2101,
                hw: 2102,
            },
            Step::QRows {
                x: buf(),
                y: buf(),
                rows: 2201,
                k: 2202,
            },
            Step::QDynDense {
                x: buf(),
                y: buf(),
                rows: 2301,
                k: 2302,
                n: 2303,
                w: 2304,
                q: 2305,
                lo: -2.5,
                hi: f32::INFINITY,
            },
            Step::LayerNorm {
                x: buf(),
                y: buf(),
                rows: 2401,
                cols: 2402,
                eps: 1e-6,
                scale: 2403,
                bias: Some(2404),
            },
            Step::LayerNorm {
                x: buf(),
                y: buf(),
                rows: 2411,
                cols: 2412,
                eps: 0.5,
                scale: 2413,
                bias: None,
            },
            Step::Gather {
                x: Src::Arena(buf()),
                y: buf(),
                dims: vec![2501, 2502],
                offsets: vec![vec![2503, 2504], vec![2505]],
            },
            Step::Gather {
                x: Src::Weight {
                    off: 2511,
                    len: 2512,
                },
                y: buf(),
                dims: vec![],
                offsets: vec![],
            },
            Step::BatchMatMul {
                a: Src::Arena(buf()),
                a_strides: vec![2601, 2602],
                b: Src::Weight {
                    off: 2603,
                    len: 2604,
                },
                b_strides: vec![2605, 0],
                dims: vec![2606, 2607],
                m: 2608,
                k: 2609,
                n: 2610,
                act: Act::Erf,
                y: buf(),
            },
            Step::Unary {
                x: buf(),
                y: buf(),
                act: Act::Gelu,
            },
            Step::Unary {
                x: buf(),
                y: buf(),
                act: Act::GeluTanh,
            },
            Step::Unary {
                x: buf(),
                y: buf(),
                act: Act::GeluChain(GeluChain::ALL[5]),
            },
            Step::Dense {
                x: buf(),
                y: buf(),
                rows: 2621,
                k: 2622,
                n: 2623,
                w: 2624,
                bias: Some(2625),
                act: Act::GeluChain(GeluChain::ALL[1]),
            },
            Step::Reduce {
                x: buf(),
                y: buf(),
                outer: 2701,
                len: 2702,
                inner: 2703,
                op: ReduceOp::Max,
            },
            Step::Resample {
                x: buf(),
                y: buf(),
                dims: vec![2801, 2802],
                taps: vec![
                    vec![vec![(2803, 0.25), (2804, 0.75)], vec![]],
                    vec![vec![(2805, 1.0)]],
                ],
                order: vec![1, 0],
                fill: -2.5,
            },
            Step::InstanceNorm {
                x: buf(),
                y: buf(),
                c: 2901,
                hw: 2902,
                eps: 0.25,
                scale: 2903,
                bias: 2904,
            },
            Step::ConvTranspose {
                x: buf(),
                y: buf(),
                g: Geometry {
                    c: 3001,
                    h: 3002,
                    w: 3003,
                    oh: 3004,
                    ow: 3005,
                    kh: 3006,
                    kw: 3007,
                    sh: 3008,
                    sw: 3009,
                    dh: 3010,
                    dw: 3011,
                    pt: 3012,
                    pl: 3013,
                },
                lead_h: 3018,
                lead_w: 3019,
                m: 3014,
                groups: 3015,
                w: 3016,
                bias: Some(3017),
            },
            Step::Reduce {
                x: buf(),
                y: buf(),
                outer: 2711,
                len: 2712,
                inner: 2713,
                op: ReduceOp::Mean,
            },
        ];
        Program {
            fixed_batch: Some(3),
            inputs: vec![Io {
                name: "input: ünïcode, longer than a word".into(),
                dims: vec![1, 2, 3],
                buf: Buf { off: 0, len: 6 },
            }],
            outputs: vec![],
            arena: 1400,
            scratch: 1401,
            steps,
            weights: vec![0.5; 7],
            sources: vec![],
        }
    }

    /// FNV-1a over the words: the schedule format pinned in one number.
    fn fingerprint(words: &[u64]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in words.iter().flat_map(|w| w.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    #[test]
    fn every_step_round_trips() {
        let p = every_step();
        let back = Program::decode_schedule(&p.encode_schedule(), p.weights.clone()).unwrap();
        assert_eq!(back, p);
    }

    /// Objects and executables embed the encoded schedule: its words must not change unless
    /// `MAGIC` does.
    #[test]
    fn the_encoding_is_pinned() {
        let words = every_step().encode_schedule();
        assert_eq!(
            (words.len(), fingerprint(&words)),
            (648, 0x2d06_0c25_f34a_a876),
            "the schedule format changed: bump MAGIC's version, then pin the new words"
        );
    }

    #[test]
    fn a_truncated_or_unknown_schedule_is_an_error() {
        let words = every_step().encode_schedule();
        for n in 0..words.len() {
            assert!(Program::decode_schedule_for(&words[..n], 7).is_err(), "{n}");
        }
        let mut bad = words.clone();
        bad[0] ^= 1;
        assert!(Program::decode_schedule_for(&bad, 7).is_err());
    }
}
