//! Arithmetic on every element type, written once: floats follow IEEE, integers wrap
//! (as ONNX Runtime does) and division by zero is an error rather than a panic.

use crate::tensor::Element;

/// Element types with arithmetic.
pub trait Scalar: Element + PartialOrd {
    /// Whether the type is floating point.
    const FLOAT: bool;
    /// Sum.
    fn add(self, o: Self) -> Self;
    /// Difference.
    fn sub(self, o: Self) -> Self;
    /// Product.
    fn mul(self, o: Self) -> Self;
    /// Quotient; `None` for integer division by zero.
    fn div(self, o: Self) -> Option<Self>;
    /// Power (integers: by squaring, exponent taken as an integer).
    fn pow(self, o: Self) -> Self;
    /// Conversion to f64 (for casts and comparisons).
    fn to_f64(self) -> f64;
    /// Conversion to i128 (exact for every integer type).
    fn to_i128(self) -> i128;
    /// From f64 (`as` semantics: truncation toward zero, saturating).
    fn from_f64(x: f64) -> Self;
    /// From i128 (wrapping for integers).
    fn from_i128(x: i128) -> Self;
    /// Zero.
    fn zero() -> Self;
    /// One.
    fn one() -> Self;
}

macro_rules! float_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const FLOAT: bool = true;
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Option<Self> {
                Some(self / o)
            }
            fn pow(self, o: Self) -> Self {
                self.powf(o)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i128(self) -> i128 {
                self as i128
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn from_i128(x: i128) -> Self {
                x as $t
            }
            fn zero() -> Self {
                0.0
            }
            fn one() -> Self {
                1.0
            }
        }
    };
}
float_scalar!(f32);
float_scalar!(f64);

macro_rules! int_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const FLOAT: bool = false;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Option<Self> {
                if o == 0 {
                    None
                } else {
                    Some(self.wrapping_div(o))
                }
            }
            fn pow(self, o: Self) -> Self {
                let e = o as i128;
                if e < 0 {
                    return if self == 1 { 1 } else { 0 };
                }
                let (mut base, mut e, mut acc) = (self, e as u128, 1 as $t);
                while e > 0 {
                    if e & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    base = base.wrapping_mul(base);
                    e >>= 1;
                }
                acc
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i128(self) -> i128 {
                self as i128
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn from_i128(x: i128) -> Self {
                x as $t
            }
            fn zero() -> Self {
                0
            }
            fn one() -> Self {
                1
            }
        }
    };
}
int_scalar!(i8);
int_scalar!(i16);
int_scalar!(i32);
int_scalar!(i64);
int_scalar!(u8);
int_scalar!(u16);
int_scalar!(u32);
int_scalar!(u64);

/// Applies `$body` with `$a` bound to the array of a numeric tensor (not bool); `$else`
/// otherwise.
#[macro_export]
macro_rules! with_numeric {
    ($t:expr, $a:ident => $body:expr, $else:expr) => {
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
            $crate::Tensor::Bool(_) => $else,
        }
    };
}
