//! Element types and dense tensors (ndarray), the data every constant and every
//! evaluated value holds.
//!
//! `Tensor` is a closed enum over the element types mcc computes with: `f32` for the
//! float path, `f64` for reference checks, the integer types that shapes, indices and
//! quantized ops need, and `bool`. Generic code reaches the array inside through the
//! `for_each_dtype!` style macros in this file, so a new dtype is one line per macro.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

/// Element type of a tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer (shapes, indices).
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean.
    Bool,
}

impl DType {
    /// Every dtype, in text-form order.
    pub const ALL: [DType; 11] = [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
    ];

    /// The name used in the text form (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
        }
    }

    /// Parses a text-form name.
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I16 | DType::U16 => 2,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense tensor of one of the supported element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// `f32` data.
    F32(ArrayD<f32>),
    /// `f64` data.
    F64(ArrayD<f64>),
    /// `i8` data.
    I8(ArrayD<i8>),
    /// `i16` data.
    I16(ArrayD<i16>),
    /// `i32` data.
    I32(ArrayD<i32>),
    /// `i64` data.
    I64(ArrayD<i64>),
    /// `u8` data.
    U8(ArrayD<u8>),
    /// `u16` data.
    U16(ArrayD<u16>),
    /// `u32` data.
    U32(ArrayD<u32>),
    /// `u64` data.
    U64(ArrayD<u64>),
    /// `bool` data.
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the array inside any `Tensor`, binding it as `$a`.
#[macro_export]
macro_rules! with_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::U32($a) => $body,
            $crate::Tensor::U64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

/// Applies `$body` to the array inside any `Tensor` and wraps the result back in the
/// same variant (for shape-only operations that keep the element type).
#[macro_export]
macro_rules! map_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F64($a) => $crate::Tensor::F64($body),
            $crate::Tensor::I8($a) => $crate::Tensor::I8($body),
            $crate::Tensor::I16($a) => $crate::Tensor::I16($body),
            $crate::Tensor::I32($a) => $crate::Tensor::I32($body),
            $crate::Tensor::I64($a) => $crate::Tensor::I64($body),
            $crate::Tensor::U8($a) => $crate::Tensor::U8($body),
            $crate::Tensor::U16($a) => $crate::Tensor::U16($body),
            $crate::Tensor::U32($a) => $crate::Tensor::U32($body),
            $crate::Tensor::U64($a) => $crate::Tensor::U64($body),
            $crate::Tensor::Bool($a) => $crate::Tensor::Bool($body),
        }
    };
}

/// An element type a `Tensor` can hold.
pub trait Element: Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// The dtype tag.
    const DTYPE: DType;
    /// Wraps an array.
    fn wrap(a: ArrayD<Self>) -> Tensor;
    /// Borrows the array if the tensor holds this type.
    fn view(t: &Tensor) -> Option<&ArrayD<Self>>;
    /// Little-endian bytes of one element.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one element from little-endian bytes (`b.len() == DTYPE.size()`).
    fn read_le(b: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $v:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
            fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(b: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                buf.copy_from_slice(b);
                <$t>::from_le_bytes(buf)
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(i8, I8);
element!(i16, I16);
element!(i32, I32);
element!(i64, I64);
element!(u8, U8);
element!(u16, U16);
element!(u32, U32);
element!(u64, U64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::Bool(a)
    }
    fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
        match t {
            Tensor::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn read_le(b: &[u8]) -> Self {
        b[0] != 0
    }
}

/// A tensor's shape did not match the number of elements given.
#[derive(Debug, thiserror::Error)]
#[error("{len} elements cannot fill a tensor of shape {shape:?}")]
pub struct ShapeMismatch {
    /// Elements given.
    pub len: usize,
    /// Shape asked for.
    pub shape: Vec<usize>,
}

impl Tensor {
    /// A tensor from a shape and row-major elements.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor, ShapeMismatch> {
        let len = data.len();
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(T::wrap)
            .map_err(|_| ShapeMismatch {
                len,
                shape: shape.to_vec(),
            })
    }

    /// A 0-d tensor.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// A tensor of `shape` with every element `v`.
    pub fn full<T: Element>(shape: &[usize], v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(shape), v))
    }

    /// A tensor of zeros of the given type.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        match dtype {
            DType::F32 => Tensor::full(shape, 0f32),
            DType::F64 => Tensor::full(shape, 0f64),
            DType::I8 => Tensor::full(shape, 0i8),
            DType::I16 => Tensor::full(shape, 0i16),
            DType::I32 => Tensor::full(shape, 0i32),
            DType::I64 => Tensor::full(shape, 0i64),
            DType::U8 => Tensor::full(shape, 0u8),
            DType::U16 => Tensor::full(shape, 0u16),
            DType::U32 => Tensor::full(shape, 0u32),
            DType::U64 => Tensor::full(shape, 0u64),
            DType::Bool => Tensor::full(shape, false),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I8(_) => DType::I8,
            Tensor::I16(_) => DType::I16,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::U8(_) => DType::U8,
            Tensor::U16(_) => DType::U16,
            Tensor::U32(_) => DType::U32,
            Tensor::U64(_) => DType::U64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        with_tensor!(self, a => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_tensor!(self, a => a.len())
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's type (all dims fixed).
    pub fn ty(&self) -> crate::TensorType {
        crate::TensorType::fixed(self.dtype(), self.shape())
    }

    /// Borrows the `f32` array, if that is what this holds.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        f32::view(self)
    }

    /// Row-major little-endian bytes of the elements.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size());
        with_tensor!(self, a => for &x in a.iter() { x.write_le(&mut out) });
        out
    }

    /// A tensor from row-major little-endian bytes.
    pub fn from_le_bytes(
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Tensor, ShapeMismatch> {
        fn read<T: Element>(shape: &[usize], bytes: &[u8]) -> Result<Tensor, ShapeMismatch> {
            let n = T::DTYPE.size();
            if !bytes.len().is_multiple_of(n) {
                return Err(ShapeMismatch {
                    len: bytes.len() / n,
                    shape: shape.to_vec(),
                });
            }
            Tensor::from_vec(shape, bytes.chunks_exact(n).map(T::read_le).collect())
        }
        match dtype {
            DType::F32 => read::<f32>(shape, bytes),
            DType::F64 => read::<f64>(shape, bytes),
            DType::I8 => read::<i8>(shape, bytes),
            DType::I16 => read::<i16>(shape, bytes),
            DType::I32 => read::<i32>(shape, bytes),
            DType::I64 => read::<i64>(shape, bytes),
            DType::U8 => read::<u8>(shape, bytes),
            DType::U16 => read::<u16>(shape, bytes),
            DType::U32 => read::<u32>(shape, bytes),
            DType::U64 => read::<u64>(shape, bytes),
            DType::Bool => read::<bool>(shape, bytes),
        }
    }

    /// Elements as `i64` (any integer or bool type; floats are truncated). Shapes and
    /// axes arrive as such tensors.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self {
            Tensor::F32(a) => a.iter().map(|&x| x as i64).collect(),
            Tensor::F64(a) => a.iter().map(|&x| x as i64).collect(),
            Tensor::I8(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::I16(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::I32(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::U8(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::U16(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::U32(a) => a.iter().map(|&x| i64::from(x)).collect(),
            Tensor::U64(a) => a.iter().map(|&x| x as i64).collect(),
            Tensor::Bool(a) => a.iter().map(|&x| i64::from(x)).collect(),
        }
    }

    /// Elements as `f64` (for comparisons and reports).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Tensor::F32(a) => a.iter().map(|&x| f64::from(x)).collect(),
            Tensor::F64(a) => a.iter().copied().collect(),
            Tensor::Bool(a) => a.iter().map(|&x| f64::from(u8::from(x))).collect(),
            Tensor::U64(a) => a.iter().map(|&x| x as f64).collect(),
            Tensor::I64(a) => a.iter().map(|&x| x as f64).collect(),
            other => other.to_i64_vec().into_iter().map(|x| x as f64).collect(),
        }
    }

    /// Number of elements that are not zero (not `false`).
    pub fn count_nonzero(&self) -> usize {
        with_tensor!(self, a => a.iter().filter(|x| **x != Default::default()).count())
    }

    /// Whether every element equals the first (a "splat"): the light models' weights are.
    pub fn is_splat(&self) -> bool {
        with_tensor!(self, a => {
            let mut it = a.iter();
            match it.next() {
                None => false,
                Some(first) => it.all(|x| x == first),
            }
        })
    }

    /// A 64-bit FNV-1a fingerprint of dtype, shape and bytes: how the text form names
    /// weights it does not print.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for b in self.dtype().name().bytes() {
            feed(b);
        }
        for &d in self.shape() {
            for b in (d as u64).to_le_bytes() {
                feed(b);
            }
        }
        with_tensor!(self, a => {
            let mut buf = Vec::with_capacity(8);
            for &x in a.iter() {
                buf.clear();
                x.write_le(&mut buf);
                for &b in &buf {
                    feed(b);
                }
            }
        });
        h
    }
}

/// The most elements one tensor may have (2^28: 1 GiB of f32). Far above any corpus
/// model's largest tensor (VGG-19's 102.8M-element fc6 weight), it stops a hostile or
/// broken model from asking the evaluator or shape inference for terabytes.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// The number of elements of `dims`, if it neither overflows nor exceeds [`MAX_ELEMENTS`].
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}
