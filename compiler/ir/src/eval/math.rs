//! Elementwise math, broadcasting and reductions for the reference evaluator.

use ndarray::{ArrayD, Axis, IxDyn};

use super::scalar::Scalar;
use super::{OpError, invalid, opt, req, unsupported};
use crate::tensor::Element;
use crate::{Tensor, with_numeric};

/// Numpy/ONNX multidirectional broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return invalid(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    super::check_numel(&out)?;
    Ok(out)
}

/// Broadcasts two arrays together and maps each pair of elements.
pub(crate) fn zip2<A: Copy, B: Copy, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> Result<C, OpError>,
) -> Result<ArrayD<C>, OpError> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let av = a
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| OpError::Invalid("broadcast failed".into()))?;
    let bv = b
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| OpError::Invalid("broadcast failed".into()))?;
    let mut out = Vec::with_capacity(av.len());
    for (x, y) in av.iter().zip(bv.iter()) {
        out.push(f(*x, *y)?);
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError::Invalid(e.to_string()))
}

fn same_dtype(a: &Tensor, b: &Tensor) -> Result<(), OpError> {
    if a.dtype() != b.dtype() {
        return invalid(format!(
            "operand types differ: {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    Ok(())
}

/// A float-only unary function (computed in f64, rounded to the operand's type).
pub(crate) fn unary_f(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, OpError> {
    match x {
        Tensor::F32(a) => Ok(Tensor::F32(a.mapv(|v| f(f64::from(v)) as f32))),
        Tensor::F64(a) => Ok(Tensor::F64(a.mapv(&f))),
        other => unsupported(format!("element type {} (floats only)", other.dtype())),
    }
}

/// A unary function on floats, and on integers when `int` is given.
pub(crate) fn unary_float(
    x: &Tensor,
    f: impl Fn(f64) -> f64,
    int: Option<impl Fn(i128) -> i128>,
) -> Result<Tensor, OpError> {
    if x.dtype().is_float() {
        return unary_f(x, f);
    }
    let Some(g) = int else {
        return unsupported(format!("element type {} (floats only)", x.dtype()));
    };
    fn go<T: Scalar>(a: &ArrayD<T>, g: &dyn Fn(i128) -> i128) -> Tensor {
        T::wrap(a.mapv(|v| T::from_i128(g(v.to_i128()))))
    }
    with_numeric!(x, a => Ok(go(a, &g)), unsupported("element type bool"))
}

/// Binary elementwise operations.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

fn apply<T: Scalar>(op: Bin, x: T, y: T) -> Result<T, OpError> {
    Ok(match op {
        Bin::Add => x.add(y),
        Bin::Sub => x.sub(y),
        Bin::Mul => x.mul(y),
        Bin::Div => {
            return x
                .div(y)
                .ok_or_else(|| OpError::Invalid("integer division by zero".into()));
        }
        Bin::Max => {
            if T::FLOAT && (x.to_f64().is_nan() || y.to_f64().is_nan()) {
                T::from_f64(f64::NAN)
            } else if y > x {
                y
            } else {
                x
            }
        }
        Bin::Min => {
            if T::FLOAT && (x.to_f64().is_nan() || y.to_f64().is_nan()) {
                T::from_f64(f64::NAN)
            } else if y < x {
                y
            } else {
                x
            }
        }
    })
}

/// Broadcast binary arithmetic on two operands of the same type.
pub(crate) fn binary(a: &Tensor, b: &Tensor, op: Bin) -> Result<Tensor, OpError> {
    same_dtype(a, b)?;
    fn go<T: Scalar>(a: &ArrayD<T>, b: &Tensor, op: Bin) -> Result<Tensor, OpError> {
        let b = T::view(b).ok_or_else(|| OpError::Invalid("operand types differ".into()))?;
        Ok(T::wrap(zip2(a, b, |x, y| apply(op, x, y))?))
    }
    with_numeric!(a, x => go(x, b, op), unsupported("element type bool"))
}

/// Sum / Max / Min / Mean over any number of operands.
pub(crate) fn variadic(inputs: &[Option<&Tensor>], op: Bin, mean: bool) -> Result<Tensor, OpError> {
    let first = req(inputs, 0)?;
    let mut acc = first.clone();
    for i in 1..inputs.len() {
        acc = binary(&acc, req(inputs, i)?, op)?;
    }
    if mean {
        let n = inputs.len() as f64;
        acc = match acc {
            Tensor::F32(a) => Tensor::F32(a.mapv(|x| (f64::from(x) / n) as f32)),
            Tensor::F64(a) => Tensor::F64(a.mapv(|x| x / n)),
            other => return unsupported(format!("Mean of {}", other.dtype())),
        };
    }
    Ok(acc)
}

/// `a ^ b`; the result has `a`'s type, `b` may be any numeric type.
pub(crate) fn pow(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    fn go<T: Scalar>(a: &ArrayD<T>, b: &Tensor) -> Result<Tensor, OpError> {
        fn inner<T: Scalar, E: Scalar>(a: &ArrayD<T>, e: &ArrayD<E>) -> Result<Tensor, OpError> {
            let out = zip2(a, e, |x, y| {
                Ok(if T::FLOAT || E::FLOAT {
                    T::from_f64(x.to_f64().powf(y.to_f64()))
                } else {
                    x.pow(T::from_i128(y.to_i128()))
                })
            })?;
            Ok(T::wrap(out))
        }
        with_numeric!(b, e => inner(a, e), unsupported("bool exponent"))
    }
    with_numeric!(a, x => go(x, b), unsupported("bool base"))
}

/// `x < 0 ? slope·x : x` with a broadcast slope.
pub(crate) fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor, OpError> {
    same_dtype(x, slope)?;
    fn go<T: Scalar>(a: &ArrayD<T>, s: &Tensor) -> Result<Tensor, OpError> {
        let s = T::view(s).ok_or_else(|| OpError::Invalid("operand types differ".into()))?;
        Ok(T::wrap(zip2(a, s, |x, k| {
            Ok(if x < T::zero() { x.mul(k) } else { x })
        })?))
    }
    with_numeric!(x, a => go(a, slope), unsupported("element type bool"))
}

/// Clip with optional scalar bounds.
pub(crate) fn clip(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = req(inputs, 0)?;
    fn go<T: Scalar>(
        a: &ArrayD<T>,
        lo: Option<&Tensor>,
        hi: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let bound = |t: Option<&Tensor>| -> Result<Option<T>, OpError> {
            match t {
                None => Ok(None),
                Some(t) => {
                    let v = T::view(t).ok_or_else(|| {
                        OpError::Invalid("Clip bounds must have the operand's type".into())
                    })?;
                    if v.len() != 1 {
                        return invalid("Clip bounds must be scalars");
                    }
                    Ok(v.iter().next().copied())
                }
            }
        };
        let (lo, hi) = (bound(lo)?, bound(hi)?);
        Ok(T::wrap(a.mapv(|mut v| {
            if let Some(l) = lo
                && v < l
            {
                v = l;
            }
            if let Some(h) = hi
                && v > h
            {
                v = h;
            }
            v
        })))
    }
    with_numeric!(x, a => go(a, opt(inputs, 1), opt(inputs, 2)), unsupported("element type bool"))
}

/// `a == b` with broadcast, giving bools.
pub(crate) fn equal(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    same_dtype(a, b)?;
    fn go<T: Element>(a: &ArrayD<T>, b: &Tensor) -> Result<Tensor, OpError> {
        let b = T::view(b).ok_or_else(|| OpError::Invalid("operand types differ".into()))?;
        Ok(Tensor::Bool(zip2(a, b, |x, y| Ok(x == y))?))
    }
    crate::with_tensor!(a, x => go(x, b))
}

/// `cond ? x : y` with three-way broadcast.
pub(crate) fn where_(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor, OpError> {
    let Tensor::Bool(c) = cond else {
        return invalid("Where's condition must be bool");
    };
    same_dtype(x, y)?;
    fn go<T: Element>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &Tensor) -> Result<Tensor, OpError> {
        let y = T::view(y).ok_or_else(|| OpError::Invalid("operand types differ".into()))?;
        let shape = broadcast_shape(&broadcast_shape(c.shape(), x.shape())?, y.shape())?;
        let sh = IxDyn(&shape);
        let bad = || OpError::Invalid("broadcast failed".into());
        let (cv, xv, yv) = (
            c.broadcast(sh.clone()).ok_or_else(bad)?,
            x.broadcast(sh.clone()).ok_or_else(bad)?,
            y.broadcast(sh.clone()).ok_or_else(bad)?,
        );
        let out: Vec<T> = cv
            .iter()
            .zip(xv.iter())
            .zip(yv.iter())
            .map(|((&c, &x), &y)| if c { x } else { y })
            .collect();
        Ok(T::wrap(
            ArrayD::from_shape_vec(sh, out).map_err(|e| OpError::Invalid(e.to_string()))?,
        ))
    }
    crate::with_tensor!(x, a => go(c, a, y))
}

/// Reductions.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) enum Reduce {
    Max,
    Min,
    Sum,
    Mean,
}

/// Normalizes possibly negative axes against a rank, rejecting duplicates.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let r = rank as i64;
        if a < -r || a >= r {
            return invalid(format!("axis {a} is out of range for rank {rank}"));
        }
        let a = if a < 0 { (a + r) as usize } else { a as usize };
        if out.contains(&a) {
            return invalid(format!("axis {a} is repeated"));
        }
        out.push(a);
    }
    Ok(out)
}

/// ReduceMax/Min/Sum/Mean with the axes operand.
pub(crate) fn reduce(
    inputs: &[Option<&Tensor>],
    keepdims: bool,
    noop_empty: bool,
    kind: Reduce,
) -> Result<Tensor, OpError> {
    let x = req(inputs, 0)?;
    let axes: Vec<i64> = opt(inputs, 1).map(Tensor::to_i64_vec).unwrap_or_default();
    if axes.is_empty() && noop_empty {
        return Ok(x.clone());
    }
    let rank = x.shape().len();
    let mut axes = if axes.is_empty() {
        (0..rank).collect()
    } else {
        norm_axes(&axes, rank)?
    };
    axes.sort_unstable();
    fn go<T: Scalar>(a: &ArrayD<T>, axes: &[usize], keepdims: bool, kind: Reduce) -> Tensor {
        let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
        let mut cur = a.clone();
        for &ax in axes.iter().rev() {
            cur = cur.map_axis(Axis(ax), |lane| {
                let mut it = lane.iter().copied();
                match kind {
                    Reduce::Sum | Reduce::Mean => it.fold(T::zero(), |s, v| s.add(v)),
                    Reduce::Max => match it.next() {
                        None => T::from_f64(f64::NEG_INFINITY),
                        Some(f) => it.fold(f, |m, v| {
                            if v > m || (T::FLOAT && v.to_f64().is_nan()) {
                                v
                            } else {
                                m
                            }
                        }),
                    },
                    Reduce::Min => match it.next() {
                        None => T::from_f64(f64::INFINITY),
                        Some(f) => it.fold(f, |m, v| {
                            if v < m || (T::FLOAT && v.to_f64().is_nan()) {
                                v
                            } else {
                                m
                            }
                        }),
                    },
                }
            });
            if keepdims {
                cur.insert_axis_inplace(Axis(ax));
            }
        }
        if kind == Reduce::Mean {
            let n = count as f64;
            cur.mapv_inplace(|v| T::from_f64(v.to_f64() / n));
        }
        T::wrap(cur)
    }
    with_numeric!(x, a => Ok(go(a, &axes, keepdims, kind)), unsupported("reducing bool"))
}

/// The Gauss error function, to about 1e-7 absolute accuracy.
pub(crate) fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 2.0 {
        // Maclaurin series: 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)).
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        loop {
            n += 1.0;
            term *= -x * x / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 * sum.abs().max(1e-300) {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // Abramowitz & Stegun 7.1.26 for the tail, where erf is within 0.005 of ±1.
        let t = 1.0 / (1.0 + 0.327_591_1 * ax);
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let v = 1.0 - poly * (-ax * ax).exp();
        v.copysign(x)
    }
}

/// GELU, exact (`none`) or with the tanh approximation.
pub(crate) fn gelu(x: &Tensor, approximate: &str) -> Result<Tensor, OpError> {
    match approximate {
        "none" => unary_f(x, |v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))),
        "tanh" => unary_f(x, |v| {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (k * (v + 0.044_715 * v * v * v)).tanh())
        }),
        other => invalid(format!(
            "Gelu approximate must be `none` or `tanh`, found `{other}`"
        )),
    }
}
