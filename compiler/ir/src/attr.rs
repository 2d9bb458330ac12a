//! Attribute values: the untyped form that ONNX and the text IR carry, and the
//! conversions into each op's typed fields.
//!
//! Ops keep typed attributes (`Conv::group: i64`, `Conv::auto_pad: AutoPad`); this module
//! is the one bridge between those and the `name=value` lists of the two file formats,
//! so both formats accept and reject exactly the same things.

use std::fmt;

use crate::{DType, Tensor};

/// An attribute value as the file formats carry it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A string.
    Str(String),
    /// A tensor (e.g. `ConstantOfShape`'s `value`).
    Tensor(Tensor),
}

impl AttrValue {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "an integer",
            AttrValue::Float(_) => "a float",
            AttrValue::Ints(_) => "a list of integers",
            AttrValue::Floats(_) => "a list of floats",
            AttrValue::Str(_) => "a string",
            AttrValue::Tensor(_) => "a tensor",
        }
    }
}

/// A Rust type an op attribute can have.
pub trait AttrType: Sized {
    /// What the attribute must be, for error messages.
    const EXPECTED: &'static str;
    /// Converts from the carried form; `None` if the kind does not fit.
    fn from_attr(v: &AttrValue) -> Option<Self>;
    /// Converts to the carried form; `None` means "omit" (absent optional).
    fn to_attr(&self) -> Option<AttrValue>;
}

impl AttrType for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Int(*self))
    }
}

impl AttrType for f32 {
    const EXPECTED: &'static str = "a float";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Float(f) => Some(*f),
            AttrValue::Int(i) => Some(*i as f32),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Float(*self))
    }
}

impl AttrType for Vec<i64> {
    const EXPECTED: &'static str = "a list of integers";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Ints(i) => Some(i.clone()),
            AttrValue::Floats(f) if f.is_empty() => Some(vec![]),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Ints(self.clone()))
    }
}

impl AttrType for Vec<f32> {
    const EXPECTED: &'static str = "a list of floats";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Floats(f) => Some(f.clone()),
            AttrValue::Ints(i) => Some(i.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Floats(self.clone()))
    }
}

impl AttrType for String {
    const EXPECTED: &'static str = "a string";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Str(self.clone()))
    }
}

impl AttrType for Tensor {
    const EXPECTED: &'static str = "a tensor";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Tensor(t) => Some(t.clone()),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Tensor(self.clone()))
    }
}

impl AttrType for DType {
    const EXPECTED: &'static str = "an element type (f32, i64, ...)";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Str(s) => DType::from_name(s),
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Str(self.name().to_string()))
    }
}

impl<T: AttrType> AttrType for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_attr(v: &AttrValue) -> Option<Self> {
        T::from_attr(v).map(Some)
    }
    fn to_attr(&self) -> Option<AttrValue> {
        self.as_ref().and_then(T::to_attr)
    }
}

/// ONNX `auto_pad`: how padding is derived when `pads` is not given.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// Pad so that `out = ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Pad so that `out = ceil(in / stride)`, extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

impl AttrType for AutoPad {
    const EXPECTED: &'static str = "one of NOTSET, SAME_UPPER, SAME_LOWER, VALID";
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Str(s) => match s.as_str() {
                "NOTSET" | "" => Some(AutoPad::NotSet),
                "SAME_UPPER" => Some(AutoPad::SameUpper),
                "SAME_LOWER" => Some(AutoPad::SameLower),
                "VALID" => Some(AutoPad::Valid),
                _ => None,
            },
            _ => None,
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        let s = match self {
            AutoPad::NotSet => "NOTSET",
            AutoPad::SameUpper => "SAME_UPPER",
            AutoPad::SameLower => "SAME_LOWER",
            AutoPad::Valid => "VALID",
        };
        Some(AttrValue::Str(s.to_string()))
    }
}

/// Defines a closed set of string-valued attribute choices: the enum, its ONNX spelling
/// ([`name`](ResizeMode::name)) and its [`AttrType`] conversion.
macro_rules! string_choice {
    ($(
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)? }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Copy, Clone, Debug, PartialEq, Eq)]
            pub enum $name { $( $(#[$vdoc])* $variant, )+ }

            impl $name {
                /// The ONNX spelling.
                pub fn name(self) -> &'static str {
                    match self { $( $name::$variant => $text, )+ }
                }
            }

            impl AttrType for $name {
                const EXPECTED: &'static str = concat!("one of" $(, " `", $text, "`")+);
                fn from_attr(v: &AttrValue) -> Option<Self> {
                    match v {
                        AttrValue::Str(s) => match s.as_str() {
                            $( $text => Some($name::$variant), )+
                            _ => None,
                        },
                        _ => None,
                    }
                }
                fn to_attr(&self) -> Option<AttrValue> {
                    Some(AttrValue::Str(self.name().to_string()))
                }
            }

            impl fmt::Display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(self.name())
                }
            }
        )*
    };
}

string_choice! {
    /// ONNX `Resize`'s `mode`: how output values are interpolated.
    ResizeMode {
        /// The nearest input value (see [`NearestMode`]).
        Nearest = "nearest",
        /// Linear in each resized axis (bilinear, trilinear…).
        Linear = "linear",
        /// Cubic convolution in each resized axis (`cubic_coeff_a`).
        Cubic = "cubic",
    }
    /// ONNX `Resize`'s `coordinate_transformation_mode`: where an output coordinate lies in
    /// the input.
    CoordinateTransform {
        /// `(x + 0.5) / scale − 0.5`.
        HalfPixel = "half_pixel",
        /// `half_pixel`, shifted so the sampled region stays centred when the output size was
        /// rounded down.
        HalfPixelSymmetric = "half_pixel_symmetric",
        /// `half_pixel`, except that an output of length 1 samples coordinate 0.
        PytorchHalfPixel = "pytorch_half_pixel",
        /// The first and last samples of input and output coincide.
        AlignCorners = "align_corners",
        /// `x / scale`.
        Asymmetric = "asymmetric",
        /// The region of interest `roi` is resized with aligned corners; samples outside the
        /// input take `extrapolation_value`.
        TfCropAndResize = "tf_crop_and_resize",
    }
    /// ONNX `Resize`'s `nearest_mode`: how a coordinate rounds to an input index.
    NearestMode {
        /// Round, halves down.
        RoundPreferFloor = "round_prefer_floor",
        /// Round, halves up.
        RoundPreferCeil = "round_prefer_ceil",
        /// Round down.
        Floor = "floor",
        /// Round up.
        Ceil = "ceil",
    }
    /// ONNX `DepthToSpace`'s and `SpaceToDepth`'s `mode`: how a channel index splits into
    /// (block row, block column, channel).
    BlockOrder {
        /// Depth, column, row: channel `(by·b + bx)·C + c` (the default).
        Dcr = "DCR",
        /// Column, row, depth: channel `c·b² + by·b + bx` (PyTorch's pixel shuffle).
        Crd = "CRD",
    }
    /// ONNX `Resize`'s `keep_aspect_ratio_policy`: how `sizes` is read.
    KeepAspectRatio {
        /// Each resized axis gets its size.
        Stretch = "stretch",
        /// One scale for every resized axis, the largest that fits in the sizes.
        NotLarger = "not_larger",
        /// One scale for every resized axis, the smallest that covers the sizes.
        NotSmaller = "not_smaller",
    }
}

/// An attribute list could not become an op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttrError {
    /// The op type is not one mcc knows.
    #[error("unsupported operator `{0}`")]
    UnknownOp(String),
    /// The op does not have this attribute (in the semantics mcc implements).
    #[error("operator `{op}` has no attribute `{attr}` that mcc supports")]
    UnknownAttr {
        /// Op type.
        op: &'static str,
        /// Attribute name.
        attr: String,
    },
    /// A string attribute names no choice the op knows.
    #[error("attribute `{attr}` of `{op}` must be {expected}, found `{value}`")]
    BadValue {
        /// Op type.
        op: &'static str,
        /// Attribute name.
        attr: &'static str,
        /// What was expected.
        expected: &'static str,
        /// The value found.
        value: String,
    },
    /// The attribute has the wrong kind of value.
    #[error("attribute `{attr}` of `{op}` must be {expected}, found {found}")]
    WrongKind {
        /// Op type.
        op: &'static str,
        /// Attribute name.
        attr: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::text::print::write_attr_value(f, self)
    }
}
