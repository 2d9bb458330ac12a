//! The closed set of operators mcc understands, each with typed attributes.
//!
//! Semantics are those of the newest ONNX opset for each operator: shape-like arguments
//! (Reshape's shape, Unsqueeze's axes, Clip's bounds, Slice's starts…) are *operands*,
//! never attributes. The ONNX importer rewrites older opset forms into these. An
//! exhaustive `match` over [`Op`] is how every stage (inference, evaluation, export,
//! codegen) is forced to decide what each operator means.
//!
//! Attribute field names are ONNX's own, so `name=value` in the text form and in a
//! `.onnx` file mean the same thing. An attribute equal to its default is not printed.

#![allow(non_snake_case)]

use std::fmt;

use crate::attr::{
    AttrError, AttrType, AttrValue, AutoPad, BlockOrder, CoordinateTransform, KeepAspectRatio,
    NearestMode, ResizeMode,
};
use crate::{DType, Tensor};

macro_rules! define_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident = $onnx:literal { $( $(#[$fdoc:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)? }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Debug, PartialEq)]
            pub struct $name { $( $(#[$fdoc])* pub $field: $ty, )* }

            impl Default for $name {
                fn default() -> Self { $name { $( $field: $default, )* } }
            }

            impl $name {
                #[allow(unused_mut, unused_variables)]
                fn from_attr_list(attrs: Vec<(String, AttrValue)>) -> Result<Self, AttrError> {
                    let mut op = $name::default();
                    for (key, value) in attrs {
                        match key.as_str() {
                            $( stringify!($field) => {
                                op.$field = <$ty as AttrType>::from_attr(&value).ok_or_else(|| match &value {
                                    AttrValue::Str(s) => AttrError::BadValue {
                                        op: $onnx, attr: stringify!($field),
                                        expected: <$ty as AttrType>::EXPECTED, value: s.clone(),
                                    },
                                    _ => AttrError::WrongKind {
                                        op: $onnx, attr: stringify!($field),
                                        expected: <$ty as AttrType>::EXPECTED, found: value.kind(),
                                    },
                                })?;
                            } )*
                            _ => return Err(AttrError::UnknownAttr { op: $onnx, attr: key }),
                        }
                    }
                    Ok(op)
                }

                #[allow(unused_mut, unused_variables, clippy::ptr_arg)]
                fn push_attrs(&self, out: &mut Vec<(&'static str, AttrValue)>) {
                    let default = $name::default();
                    $( if self.$field != default.$field {
                        if let Some(v) = self.$field.to_attr() { out.push((stringify!($field), v)); }
                    } )*
                }
            }
        )*

        /// One operator application's kind and typed attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op { $( $(#[$doc])* $name($name), )* }

        impl Op {
            /// Every operator name mcc knows, as ONNX spells it (mcc's own included: see
            /// [`Op::MCC_ONLY`]).
            pub const NAMES: &'static [&'static str] = &[$($onnx),*];

            /// The ONNX operator name.
            pub fn name(&self) -> &'static str {
                match self { $( Op::$name(_) => $onnx, )* }
            }

            /// Builds an op from its ONNX name and attribute list (newest-opset semantics).
            pub fn from_attrs(op_type: &str, attrs: Vec<(String, AttrValue)>) -> Result<Op, AttrError> {
                match op_type {
                    $( $onnx => Ok(Op::$name($name::from_attr_list(attrs)?)), )*
                    other => Err(AttrError::UnknownOp(other.to_string())),
                }
            }

            /// The attributes that differ from their defaults, in declaration order.
            pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
                let mut out = Vec::new();
                match self { $( Op::$name(o) => o.push_attrs(&mut out), )* }
                out
            }
        }
    };
}

define_ops! {
    // ---- neural-network layers ----
    /// N-d convolution with groups (ONNX `Conv`). Operands: `X, W, B?`.
    Conv = "Conv" {
        /// How padding is derived when `pads` is absent.
        auto_pad: AutoPad = AutoPad::NotSet,
        /// Dilation per spatial axis (empty = all 1).
        dilations: Vec<i64> = vec![],
        /// Number of groups; input and output channels divide by it.
        group: i64 = 1,
        /// Kernel size per spatial axis (empty = from W).
        kernel_shape: Vec<i64> = vec![],
        /// Begin pads then end pads (empty = all 0).
        pads: Vec<i64> = vec![],
        /// Stride per spatial axis (empty = all 1).
        strides: Vec<i64> = vec![],
        /// mcc extension, not ONNX: an activation applied to the result as an epilogue
        /// (set by `merge activations`; the ONNX exporter writes it back as its own node).
        /// One of [`EPILOGUES`]; empty for none.
        activation: String = String::new(),
        /// The epilogue's parameters: LeakyRelu `[alpha]`, Clip `[min, max]`,
        /// HardSigmoid `[alpha, beta]`; empty for the others.
        activation_params: Vec<f32> = vec![],
    }
    /// Transposed convolution (ONNX `ConvTranspose`): each input position scatters its value
    /// times the kernel into the output, `stride` apart. Operands: `X, W, B?`, with `W` of
    /// shape `(C, M / group, k…)` and `M` output channels. The output size per spatial axis is
    /// `stride·(in − 1) + output_padding + (k − 1)·dilation + 1 − pad_begin − pad_end`, or
    /// `output_shape` when given (then, and with `SAME_*` auto padding, the pads are derived:
    /// [`crate::geometry::transposed_window`]).
    ConvTranspose = "ConvTranspose" {
        /// How padding is derived when `pads` is absent (`SAME_*`: the output is `in · stride`).
        auto_pad: AutoPad = AutoPad::NotSet,
        /// Dilation per spatial axis (empty = all 1).
        dilations: Vec<i64> = vec![],
        /// Number of groups; input and output channels divide by it.
        group: i64 = 1,
        /// Kernel size per spatial axis (empty = from W).
        kernel_shape: Vec<i64> = vec![],
        /// Extra output cells at the end of each spatial axis (each below the stride or the
        /// dilation; empty = all 0).
        output_padding: Vec<i64> = vec![],
        /// The output's spatial sizes (empty = computed); the pads are then derived.
        output_shape: Vec<i64> = vec![],
        /// Begin pads then end pads, cut from the full output (empty = all 0).
        pads: Vec<i64> = vec![],
        /// Stride per spatial axis (empty = all 1).
        strides: Vec<i64> = vec![],
    }
    /// `alpha·op(A)·op(B) + beta·C` (ONNX `Gemm`). Operands: `A, B, C?`.
    Gemm = "Gemm" {
        /// Scale of the product.
        alpha: f32 = 1.0,
        /// Scale of `C`.
        beta: f32 = 1.0,
        /// Transpose `A` first.
        transA: i64 = 0,
        /// Transpose `B` first.
        transB: i64 = 0,
        /// mcc extension, not ONNX: an activation applied to the result as an epilogue
        /// (set by `merge activations`; the ONNX exporter writes it back as its own node).
        /// One of [`EPILOGUES`]; empty for none.
        activation: String = String::new(),
        /// The epilogue's parameters: LeakyRelu `[alpha]`, Clip `[min, max]`,
        /// HardSigmoid `[alpha, beta]`; empty for the others.
        activation_params: Vec<f32> = vec![],
    }
    /// Numpy-style batched matrix product (ONNX `MatMul`). Operands: `A, B`.
    MatMul = "MatMul" {
        /// mcc extension, not ONNX: an activation applied to the result as an epilogue
        /// (set by `merge activations`; the ONNX exporter writes it back as its own node).
        /// One of [`EPILOGUES`]; empty for none.
        activation: String = String::new(),
        /// The epilogue's parameters: LeakyRelu `[alpha]`, Clip `[min, max]`,
        /// HardSigmoid `[alpha, beta]`; empty for the others.
        activation_params: Vec<f32> = vec![],
    }
    /// Inference-mode batch normalization (ONNX `BatchNormalization`).
    /// Operands: `X, scale, B, mean, var`.
    BatchNormalization = "BatchNormalization" {
        /// Added to the variance.
        epsilon: f32 = 1e-5,
        /// Only used in training; kept so files round-trip.
        momentum: f32 = 0.9,
    }
    /// Max pooling (ONNX `MaxPool`). Operands: `X`; outputs `Y, Indices?`.
    MaxPool = "MaxPool" {
        /// How padding is derived when `pads` is absent.
        auto_pad: AutoPad = AutoPad::NotSet,
        /// Use ceil instead of floor for the output size.
        ceil_mode: i64 = 0,
        /// Dilation per spatial axis.
        dilations: Vec<i64> = vec![],
        /// Window size per spatial axis.
        kernel_shape: Vec<i64> = vec![],
        /// Begin pads then end pads.
        pads: Vec<i64> = vec![],
        /// Layout of the `Indices` output (0 = row major).
        storage_order: i64 = 0,
        /// Stride per spatial axis.
        strides: Vec<i64> = vec![],
    }
    /// Average pooling (ONNX `AveragePool`). Operands: `X`.
    AveragePool = "AveragePool" {
        /// How padding is derived when `pads` is absent.
        auto_pad: AutoPad = AutoPad::NotSet,
        /// Use ceil instead of floor for the output size.
        ceil_mode: i64 = 0,
        /// Count padded cells in the divisor.
        count_include_pad: i64 = 0,
        /// Dilation per spatial axis.
        dilations: Vec<i64> = vec![],
        /// Window size per spatial axis.
        kernel_shape: Vec<i64> = vec![],
        /// Begin pads then end pads.
        pads: Vec<i64> = vec![],
        /// Stride per spatial axis.
        strides: Vec<i64> = vec![],
    }
    /// Mean over all spatial positions (ONNX `GlobalAveragePool`).
    GlobalAveragePool = "GlobalAveragePool" {}
    /// Max over all spatial positions (ONNX `GlobalMaxPool`).
    GlobalMaxPool = "GlobalMaxPool" {}
    /// Local response normalization across channels (ONNX `LRN`).
    Lrn = "LRN" {
        /// Scale.
        alpha: f32 = 1e-4,
        /// Exponent.
        beta: f32 = 0.75,
        /// Offset.
        bias: f32 = 1.0,
        /// Number of channels summed over.
        size: i64 = 1,
    }
    /// Softmax along one axis (ONNX `Softmax`, opset 13 semantics unless `legacy_2d`).
    Softmax = "Softmax" {
        /// The axis normalized over.
        axis: i64 = -1,
        /// Opset < 13 semantics: flatten to 2-D at `axis` and normalize each row. Not an
        /// ONNX attribute: the importer sets it and canonicalization removes it when the
        /// two meanings agree.
        legacy_2d: i64 = 0,
    }
    /// Log of softmax along one axis (ONNX `LogSoftmax`).
    LogSoftmax = "LogSoftmax" {
        /// The axis normalized over.
        axis: i64 = -1,
        /// Opset < 13 semantics, as for `Softmax`.
        legacy_2d: i64 = 0,
    }
    /// Normalization over the trailing axes from `axis` on, then a scale and a bias (ONNX
    /// `LayerNormalization`). Operands: `X, Scale, B?`; outputs `Y, Mean?, InvStdDev?`.
    LayerNormalization = "LayerNormalization" {
        /// The first normalized axis (negative counts from the end).
        axis: i64 = -1,
        /// Added to the variance.
        epsilon: f32 = 1e-5,
        /// The precision of the computation (ONNX: 1 = float). mcc computes in f64 and rounds
        /// once, whatever it says.
        stash_type: i64 = 1,
    }
    /// Normalization of each (sample, channel) plane over its spatial axes, then a per-channel
    /// scale and bias (ONNX `InstanceNormalization`). Operands: `input, scale, B`.
    InstanceNormalization = "InstanceNormalization" {
        /// Added to the variance.
        epsilon: f32 = 1e-5,
    }
    /// Dropout; identity in inference (ONNX `Dropout`). Operands: `X, ratio?, training_mode?`;
    /// outputs `Y, mask?`.
    Dropout = "Dropout" {
        /// Random seed (training only).
        seed: i64 = 0,
    }

    // ---- activations ----
    /// `max(x, 0)` (ONNX `Relu`).
    Relu = "Relu" {}
    /// `x < 0 ? alpha·x : x` (ONNX `LeakyRelu`).
    LeakyRelu = "LeakyRelu" {
        /// Slope for negative inputs.
        alpha: f32 = 0.01,
    }
    /// `x < 0 ? slope·x : x` with a broadcast slope operand (ONNX `PRelu`).
    PRelu = "PRelu" {}
    /// `1 / (1 + e^-x)` (ONNX `Sigmoid`).
    Sigmoid = "Sigmoid" {}
    /// `max(0, min(1, alpha·x + beta))` (ONNX `HardSigmoid`).
    HardSigmoid = "HardSigmoid" {
        /// Slope.
        alpha: f32 = 0.2,
        /// Offset.
        beta: f32 = 0.5,
    }
    /// `x · max(0, min(1, x/6 + 1/2))` (ONNX `HardSwish`).
    HardSwish = "HardSwish" {}
    /// Hyperbolic tangent (ONNX `Tanh`).
    Tanh = "Tanh" {}
    /// `x < 0 ? alpha·(e^x − 1) : x` (ONNX `Elu`).
    Elu = "Elu" {
        /// Scale of the negative part.
        alpha: f32 = 1.0,
    }
    /// Scaled ELU (ONNX `Selu`).
    Selu = "Selu" {
        /// Scale of the negative part.
        alpha: f32 = 1.673_263_2,
        /// Overall scale.
        gamma: f32 = 1.050_701,
    }
    /// `ln(1 + e^x)` (ONNX `Softplus`).
    Softplus = "Softplus" {}
    /// Gaussian error linear unit (ONNX `Gelu`).
    Gelu = "Gelu" {
        /// `none` (exact, with erf) or `tanh` (the approximation).
        approximate: String = "none".to_string(),
    }
    /// `min(max(x, lo), hi)` (ONNX `Clip`). Operands: `X, min?, max?`.
    Clip = "Clip" {}

    // ---- elementwise math ----
    /// `|x|` (ONNX `Abs`).
    Abs = "Abs" {}
    /// `-x` (ONNX `Neg`).
    Neg = "Neg" {}
    /// To the nearest integer, halves to even (ONNX `Round`).
    Round = "Round" {}
    /// `e^x` (ONNX `Exp`).
    Exp = "Exp" {}
    /// Natural log (ONNX `Log`).
    Log = "Log" {}
    /// Square root (ONNX `Sqrt`).
    Sqrt = "Sqrt" {}
    /// Gauss error function (ONNX `Erf`).
    Erf = "Erf" {}
    /// Broadcast `a + b` (ONNX `Add`).
    Add = "Add" {}
    /// Broadcast `a − b` (ONNX `Sub`).
    Sub = "Sub" {}
    /// Broadcast `a · b` (ONNX `Mul`).
    Mul = "Mul" {}
    /// Broadcast `a / b`, truncating for integers (ONNX `Div`).
    Div = "Div" {}
    /// Broadcast `a ^ b` (ONNX `Pow`).
    Pow = "Pow" {}
    /// Broadcast sum of any number of operands (ONNX `Sum`).
    Sum = "Sum" {}
    /// Broadcast maximum of any number of operands (ONNX `Max`).
    Max = "Max" {}
    /// Broadcast minimum of any number of operands (ONNX `Min`).
    Min = "Min" {}
    /// Broadcast mean of any number of operands (ONNX `Mean`).
    Mean = "Mean" {}
    /// Broadcast `a == b` (ONNX `Equal`).
    Equal = "Equal" {}
    /// Broadcast `cond ? a : b` (ONNX `Where`).
    Where = "Where" {}

    // ---- reductions (axes are an operand) ----
    /// Maximum over `axes` (ONNX `ReduceMax`). Operands: `X, axes?`.
    ReduceMax = "ReduceMax" {
        /// Keep reduced axes as size 1.
        keepdims: i64 = 1,
        /// With no axes: 1 = identity, 0 = reduce all.
        noop_with_empty_axes: i64 = 0,
    }
    /// Minimum over `axes` (ONNX `ReduceMin`). Operands: `X, axes?`.
    ReduceMin = "ReduceMin" {
        /// Keep reduced axes as size 1.
        keepdims: i64 = 1,
        /// With no axes: 1 = identity, 0 = reduce all.
        noop_with_empty_axes: i64 = 0,
    }
    /// Sum over `axes` (ONNX `ReduceSum`). Operands: `X, axes?`.
    ReduceSum = "ReduceSum" {
        /// Keep reduced axes as size 1.
        keepdims: i64 = 1,
        /// With no axes: 1 = identity, 0 = reduce all.
        noop_with_empty_axes: i64 = 0,
    }
    /// Mean over `axes` (ONNX `ReduceMean`). Operands: `X, axes?`.
    ReduceMean = "ReduceMean" {
        /// Keep reduced axes as size 1.
        keepdims: i64 = 1,
        /// With no axes: 1 = identity, 0 = reduce all.
        noop_with_empty_axes: i64 = 0,
    }

    // ---- shape and data movement ----
    /// The operand itself (ONNX `Identity`).
    Identity = "Identity" {}
    /// New shape, `0` copies a dim unless `allowzero`, `-1` is inferred (ONNX `Reshape`).
    /// Operands: `data, shape`.
    Reshape = "Reshape" {
        /// A `0` in the shape means size zero rather than "copy".
        allowzero: i64 = 0,
    }
    /// Collapse to 2-D at `axis` (ONNX `Flatten`).
    Flatten = "Flatten" {
        /// Dims before it form the rows.
        axis: i64 = 1,
    }
    /// Permute axes (ONNX `Transpose`); empty `perm` reverses them.
    Transpose = "Transpose" {
        /// The permutation.
        perm: Vec<i64> = vec![],
    }
    /// Insert size-1 axes (ONNX `Unsqueeze`). Operands: `data, axes`.
    Unsqueeze = "Unsqueeze" {}
    /// Remove size-1 axes (ONNX `Squeeze`). Operands: `data, axes?`.
    Squeeze = "Squeeze" {}
    /// Cut along an axis into consecutive parts (ONNX `Split`). Operands: `input, split?`
    /// (the parts' sizes); without `split`, equal parts, one per output (the last smaller when
    /// the axis does not divide).
    Split = "Split" {
        /// The axis cut along.
        axis: i64 = 0,
        /// Opset 18: the number of outputs (0: as many as the node has).
        num_outputs: i64 = 0,
    }
    /// Join along an axis (ONNX `Concat`).
    Concat = "Concat" {
        /// The axis joined along.
        axis: i64 = 0,
    }
    /// The operand's shape as an `i64` vector (ONNX `Shape`).
    Shape = "Shape" {
        /// First dim taken.
        start: i64 = 0,
        /// One past the last dim taken (absent = rank).
        end: Option<i64> = None,
    }
    /// Take entries along an axis (ONNX `Gather`). Operands: `data, indices`.
    Gather = "Gather" {
        /// The axis indexed.
        axis: i64 = 0,
    }
    /// Strided sub-tensor (ONNX `Slice`). Operands: `data, starts, ends, axes?, steps?`.
    Slice = "Slice" {}
    /// A tensor of the given shape filled with `value` (ONNX `ConstantOfShape`).
    /// Operands: `shape`.
    ConstantOfShape = "ConstantOfShape" {
        /// One-element tensor giving the fill value and dtype.
        value: Option<Tensor> = None,
    }
    /// Element type conversion (ONNX `Cast`).
    Cast = "Cast" {
        /// Target type.
        to: DType = DType::F32,
        /// Float-8 saturation; ignored for the types mcc supports.
        saturate: i64 = 1,
    }
    /// Broadcast to a shape (ONNX `Expand`). Operands: `data, shape`.
    Expand = "Expand" {}
    /// Repeat along each axis (ONNX `Tile`). Operands: `data, repeats`.
    Tile = "Tile" {}
    /// Pad (ONNX `Pad`). Operands: `data, pads, constant_value?, axes?`.
    Pad = "Pad" {
        /// `constant`, `reflect`, `edge` or `wrap`.
        mode: String = "constant".to_string(),
    }
    /// Channels into `blocksize × blocksize` spatial blocks (ONNX `DepthToSpace`):
    /// `(N, C·b², H, W)` → `(N, C, H·b, W·b)`, channels split as `mode` says.
    DepthToSpace = "DepthToSpace" {
        /// The block's side `b` (required; positive).
        blocksize: i64 = 0,
        /// How a channel index splits into block position and channel.
        mode: BlockOrder = BlockOrder::Dcr,
    }
    /// Spatial `blocksize × blocksize` blocks into channels (ONNX `SpaceToDepth`), the
    /// inverse of `DepthToSpace` with the same `mode`: `(N, C, H·b, W·b)` → `(N, C·b², H, W)`.
    SpaceToDepth = "SpaceToDepth" {
        /// The block's side `b` (required; positive).
        blocksize: i64 = 0,
        /// How a channel index is made of block position and channel (opset 28; before it,
        /// always `DCR`).
        mode: BlockOrder = BlockOrder::Dcr,
    }
    /// `start, start+delta, …` below `limit` (ONNX `Range`). Operands: `start, limit, delta`.
    Range = "Range" {}
    /// Resampling by interpolation (ONNX `Resize`, opset 19). Operands: `X, roi?, scales?,
    /// sizes?`, exactly one of `scales` (f32, one per resized axis; a tensor without elements
    /// counts as absent) and `sizes` (i64). With scales an axis of `n` becomes
    /// `floor(n · scale)`; with sizes it becomes the size (or the rounded `n · scale` of the
    /// one scale `keep_aspect_ratio_policy` picks). Each resized axis is interpolated on its
    /// own (the result is separable); `roi` (`[starts…, ends…]`, normalized) is read only by
    /// `tf_crop_and_resize`. Older forms import as this one: `Resize` opset 10 and `Upsample`
    /// with `asymmetric` coordinates and `floor` rounding.
    Resize = "Resize" {
        /// 1: linear and cubic interpolation widen their kernel by `1 / scale` when
        /// downsampling (an antialiasing filter); no effect on `nearest`.
        antialias: i64 = 0,
        /// The axes `roi`, `scales` and `sizes` refer to (empty = all, in order).
        axes: Vec<i64> = vec![],
        /// Where an output coordinate lies in the input.
        coordinate_transformation_mode: CoordinateTransform = CoordinateTransform::HalfPixel,
        /// The `a` of the cubic convolution kernel.
        cubic_coeff_a: f32 = -0.75,
        /// 1: taps outside the input get weight 0 and the rest are renormalized (linear and
        /// cubic).
        exclude_outside: i64 = 0,
        /// The value of samples outside the input under `tf_crop_and_resize`.
        extrapolation_value: f32 = 0.0,
        /// How `sizes` is read (`scales` is always read as given).
        keep_aspect_ratio_policy: KeepAspectRatio = KeepAspectRatio::Stretch,
        /// Nearest, linear or cubic interpolation.
        mode: ResizeMode = ResizeMode::Nearest,
        /// How `nearest` rounds a coordinate to an index.
        nearest_mode: NearestMode = NearestMode::RoundPreferFloor,
    }

    // ---- quantization (integer semantics: `mcc_runtime::quant`, the one definition) ----
    /// `clamp(round_half_even(x / scale) + zero_point)` (ONNX `QuantizeLinear`), per tensor
    /// or along `axis`. Operands: `X, y_scale, y_zero_point?`; the zero point's type (u8 or
    /// i8; u8 without one) is the result's. NaN gives the lowest code.
    QuantizeLinear = "QuantizeLinear" {
        /// The axis of a 1-D scale.
        axis: i64 = 1,
        /// Blocked quantization (not supported: 0).
        block_size: i64 = 0,
        /// The result type as an ONNX type code (0: the zero point's).
        output_dtype: i64 = 0,
        /// Float-8 saturation (no meaning for integers).
        saturate: i64 = 1,
    }
    /// `(x − zero_point) · scale` in f32 (ONNX `DequantizeLinear`), per tensor or along
    /// `axis`. Operands: `X` (u8, i8 or i32), `x_scale, x_zero_point?`.
    DequantizeLinear = "DequantizeLinear" {
        /// The axis of a 1-D scale.
        axis: i64 = 1,
        /// Blocked quantization (not supported: 0).
        block_size: i64 = 0,
    }
    /// Integer convolution (ONNX `QLinearConv`). Operands: `x, x_scale, x_zero_point, w,
    /// w_scale, w_zero_point, y_scale, y_zero_point, B?` (B i32, in units of
    /// `x_scale · w_scale`). The i32 accumulator `Σ (x − zx)(w − zw) + B` is requantized by
    /// `mcc_runtime::quant::Requant` (ONNX leaves the rounding open; mcc fixes it).
    QLinearConv = "QLinearConv" {
        /// How padding is derived when `pads` is absent.
        auto_pad: AutoPad = AutoPad::NotSet,
        /// Dilation per spatial axis (empty = all 1).
        dilations: Vec<i64> = vec![],
        /// Number of groups.
        group: i64 = 1,
        /// Kernel size per spatial axis (empty = from w).
        kernel_shape: Vec<i64> = vec![],
        /// Begin pads then end pads (empty = all 0).
        pads: Vec<i64> = vec![],
        /// Stride per spatial axis (empty = all 1).
        strides: Vec<i64> = vec![],
        /// mcc extension, not ONNX: `Relu` or `Clip`, applied as a clamp of the output codes
        /// (`mcc_runtime::quant::QAct`); empty for none.
        activation: String = String::new(),
        /// Clip's `[min, max]`; empty otherwise.
        activation_params: Vec<f32> = vec![],
    }
    /// Integer matrix product (ONNX `QLinearMatMul`). Operands: `a, a_scale, a_zero_point, b,
    /// b_scale, b_zero_point, y_scale, y_zero_point`, and — mcc extension, not ONNX — an
    /// optional i32 bias `B` over the last axis, added to the accumulator before it is
    /// requantized as in `QLinearConv`.
    QLinearMatMul = "QLinearMatMul" {
        /// mcc extension, not ONNX: `Relu` or `Clip` as a clamp of the output codes; empty
        /// for none.
        activation: String = String::new(),
        /// Clip's `[min, max]`; empty otherwise.
        activation_params: Vec<f32> = vec![],
    }
    /// mcc operator, not ONNX: a matrix product on rows quantized at run time (dynamic
    /// quantization). Operands: `a` (f32, `(…, K)`), `b` (i8 codes, `(K, N)`, zero point 0),
    /// `b_scale` (f32, one or `N`), `bias?` (f32, `N`). Each row of `a` (its last axis) gets
    /// its own u8 scale and zero point from its range (`mcc_runtime::quant::dynamic_row`);
    /// the exact i32 accumulator `Σ (a_q − zp)·b` becomes f32 by
    /// `mcc_runtime::quant::dequantize_acc` with scale `s_row · b_scale[n]` and the bias, then
    /// the clamp. A row holding NaN or ±∞ gives NaN outputs.
    DynamicQuantMatMul = "DynamicQuantMatMul" {
        /// `Relu` or `Clip`, applied to the f32 output (NaN kept); empty for none.
        activation: String = String::new(),
        /// Clip's `[min, max]`; empty otherwise.
        activation_params: Vec<f32> = vec![],
    }
}

/// An activation a Conv, Gemm or MatMul can carry as an epilogue: a closed set. The op
/// stores it as the `activation` / `activation_params` attributes (its text and ONNX-attribute
/// form); [`Op::epilogue`] and [`Op::set_epilogue`] are the typed access.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `alpha·x`.
    LeakyRelu {
        /// Slope below zero.
        alpha: f32,
    },
    /// `min(max(x, min), max)`.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x · HardSigmoid(x)` with alpha 1/6, beta ½.
    HardSwish,
    /// `tanh(x)`.
    Tanh,
}

/// The activations' names, as the `activation` attribute writes them.
pub const EPILOGUES: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
];

impl Activation {
    /// Its ONNX operator name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Clip { .. } => "Clip",
            Activation::Sigmoid => "Sigmoid",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
            Activation::Tanh => "Tanh",
        }
    }

    /// Its parameters, as the `activation_params` attribute writes them.
    pub fn params(self) -> Vec<f32> {
        match self {
            Activation::LeakyRelu { alpha } => vec![alpha],
            Activation::Clip { min, max } => vec![min, max],
            Activation::HardSigmoid { alpha, beta } => vec![alpha, beta],
            Activation::Relu | Activation::Sigmoid | Activation::HardSwish | Activation::Tanh => {
                vec![]
            }
        }
    }

    /// From the attribute form; `None` for an unknown name or a wrong parameter count.
    pub fn from_parts(name: &str, params: &[f32]) -> Option<Activation> {
        Some(match (name, params) {
            ("Relu", []) => Activation::Relu,
            ("Sigmoid", []) => Activation::Sigmoid,
            ("Tanh", []) => Activation::Tanh,
            ("HardSwish", []) => Activation::HardSwish,
            ("LeakyRelu", [alpha]) => Activation::LeakyRelu { alpha: *alpha },
            ("HardSigmoid", [alpha, beta]) => Activation::HardSigmoid {
                alpha: *alpha,
                beta: *beta,
            },
            ("Clip", [min, max]) => Activation::Clip {
                min: *min,
                max: *max,
            },
            _ => return None,
        })
    }

    /// The standalone op it stands for, with its constant operands (Clip's bounds).
    pub fn op(self) -> (Op, Vec<Tensor>) {
        match self {
            Activation::Relu => (Op::Relu(Relu {}), vec![]),
            Activation::Sigmoid => (Op::Sigmoid(Sigmoid {}), vec![]),
            Activation::Tanh => (Op::Tanh(Tanh {}), vec![]),
            Activation::HardSwish => (Op::HardSwish(HardSwish {}), vec![]),
            Activation::LeakyRelu { alpha } => (Op::LeakyRelu(LeakyRelu { alpha }), vec![]),
            Activation::HardSigmoid { alpha, beta } => {
                (Op::HardSigmoid(HardSigmoid { alpha, beta }), vec![])
            }
            Activation::Clip { min, max } => (
                Op::Clip(Clip {}),
                vec![Tensor::scalar(min), Tensor::scalar(max)],
            ),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Op {
    /// The activation epilogue of a Conv, Gemm or MatMul: `Ok(None)` without one, an error
    /// (the attributes as written) when its attributes name no activation — which
    /// [`crate::verify`] rejects, so a verified graph never gives one.
    pub fn epilogue(&self) -> Result<Option<Activation>, String> {
        let (a, p) = match self {
            Op::Conv(o) => (&o.activation, &o.activation_params),
            Op::Gemm(o) => (&o.activation, &o.activation_params),
            Op::MatMul(o) => (&o.activation, &o.activation_params),
            _ => return Ok(None),
        };
        if a.is_empty() {
            return Ok(None);
        }
        Activation::from_parts(a, p).map(Some).ok_or_else(|| {
            format!(
                "unknown activation epilogue `{a}` with {} parameter(s)",
                p.len()
            )
        })
    }

    /// Whether the op carries an epilogue attribute (valid or not).
    pub fn has_epilogue(&self) -> bool {
        match self {
            Op::Conv(o) => !o.activation.is_empty(),
            Op::Gemm(o) => !o.activation.is_empty(),
            Op::MatMul(o) => !o.activation.is_empty(),
            _ => false,
        }
    }

    /// Sets (or, with `None`, clears) the epilogue; `false` if this op cannot carry one.
    pub fn set_epilogue(&mut self, act: Option<Activation>) -> bool {
        let (a, p) = match self {
            Op::Conv(o) => (&mut o.activation, &mut o.activation_params),
            Op::Gemm(o) => (&mut o.activation, &mut o.activation_params),
            Op::MatMul(o) => (&mut o.activation, &mut o.activation_params),
            _ => return false,
        };
        *a = act.map_or(String::new(), |x| x.name().to_string());
        *p = act.map_or(vec![], Activation::params);
        true
    }

    /// The output clamp of a QLinearConv, QLinearMatMul or DynamicQuantMatMul: `Ok(QAct::None)` for other ops
    /// and for none, an error for an activation that is not a clamp (which [`crate::verify`]
    /// rejects).
    pub fn q_activation(&self) -> Result<mcc_runtime::quant::QAct, String> {
        use mcc_runtime::quant::QAct;
        let (a, p) = match self {
            Op::QLinearConv(o) => (&o.activation, &o.activation_params),
            Op::QLinearMatMul(o) => (&o.activation, &o.activation_params),
            Op::DynamicQuantMatMul(o) => (&o.activation, &o.activation_params),
            _ => return Ok(QAct::None),
        };
        match (a.as_str(), p.as_slice()) {
            ("", []) => Ok(QAct::None),
            ("Relu", []) => Ok(QAct::Relu),
            ("Clip", [min, max]) if min <= max => Ok(QAct::Clip {
                min: *min,
                max: *max,
            }),
            _ => Err(format!(
                "a quantized layer's activation must be Relu or Clip(min ≤ max), found `{a}` with {} parameter(s)",
                p.len()
            )),
        }
    }

    /// Sets a QLinearConv's, QLinearMatMul's or DynamicQuantMatMul's output clamp; `false`
    /// for other ops.
    pub fn set_q_activation(&mut self, act: mcc_runtime::quant::QAct) -> bool {
        use mcc_runtime::quant::QAct;
        let (a, p) = match self {
            Op::QLinearConv(o) => (&mut o.activation, &mut o.activation_params),
            Op::QLinearMatMul(o) => (&mut o.activation, &mut o.activation_params),
            Op::DynamicQuantMatMul(o) => (&mut o.activation, &mut o.activation_params),
            _ => return false,
        };
        (*a, *p) = match act {
            QAct::None => (String::new(), vec![]),
            QAct::Relu => ("Relu".into(), vec![]),
            QAct::Clip { min, max } => ("Clip".into(), vec![min, max]),
        };
        true
    }

    /// mcc's own operators, not ONNX's: the text form has them; an ONNX file does not (the
    /// export writes each as standard operators, the import refuses them).
    pub const MCC_ONLY: &'static [&'static str] = &["DynamicQuantMatMul"];

    /// The ONNX operators mcc knows ([`Op::NAMES`] without [`Op::MCC_ONLY`]).
    pub fn onnx_names() -> impl Iterator<Item = &'static str> {
        Op::NAMES
            .iter()
            .copied()
            .filter(|n| !Op::MCC_ONLY.contains(n))
    }

    /// Whether the op's result depends only on its operands (so it may be constant-folded).
    pub fn is_pure(&self) -> bool {
        // Dropout is pure in inference (identity); every op mcc knows is deterministic.
        true
    }

    /// The operand slots whose values only say the result's shape — sizes, axes, repeats,
    /// pads, slice bounds — and are never read as data: inference reads them (constant or
    /// known, [`crate::infer::known_value`]), and compiled code, which knows every shape
    /// at compile time, does not compute them.
    pub fn shape_operands(&self) -> &'static [usize] {
        match self {
            Op::Reshape(_)
            | Op::Expand(_)
            | Op::Tile(_)
            | Op::Unsqueeze(_)
            | Op::Squeeze(_)
            | Op::Split(_)
            | Op::ReduceMax(_)
            | Op::ReduceMin(_)
            | Op::ReduceSum(_)
            | Op::ReduceMean(_) => &[1],
            Op::ConstantOfShape(_) => &[0],
            Op::Slice(_) => &[1, 2, 3, 4],
            Op::Pad(_) => &[1, 3],
            // Resize's `scales` and `roi` move sample positions, so they are data; `sizes`
            // only says the output shape (the scale follows from it).
            Op::Resize(_) => &[3],
            _ => &[],
        }
    }
}
