//! Lowering of the operators that reduce along axes: LayerNormalization (a
//! [`Step::LayerNorm`] over the trailing axes, its scale and bias constants broadcast to
//! them here), InstanceNormalization (a [`Step::InstanceNorm`] over each channel's plane)
//! and ReduceSum / ReduceMean / ReduceMax / ReduceMin (a [`Step::Reduce`] over
//! one contiguous run of axes; a mean over all the spatial axes of an image is the global
//! average pooling step, which also reads channel blocks).
//!
//! **Invariant:** nothing reduces along the batch axis: such a node is an error naming it.

use mcc_ir::{NodeId, Op, ValueId, op};
use mcc_runtime::kernels::reduce::ReduceOp;
use mcc_runtime::program::Step;

use super::{Lowering, R};

/// `data` of `shape` broadcast (numpy rules, right-aligned) to `target`, row-major; `None`
/// when it does not broadcast.
pub(super) fn broadcast(shape: &[usize], data: &[f32], target: &[usize]) -> Option<Vec<f32>> {
    if shape.len() > target.len() {
        // Leading axes of size 1 only.
        let extra = shape.len() - target.len();
        if shape[..extra].iter().any(|&d| d != 1) {
            return None;
        }
        return broadcast(&shape[extra..], data, target);
    }
    let pad = target.len() - shape.len();
    let src = super::movement::strides_of(shape);
    let mut strides = vec![0usize; target.len()];
    for (i, &d) in shape.iter().enumerate() {
        if d != 1 && d != target[pad + i] {
            return None;
        }
        strides[pad + i] = if d == 1 { 0 } else { src[i] };
    }
    let count: usize = target.iter().product();
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; target.len()];
    for _ in 0..count {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(*data.get(off)?);
        for d in (0..target.len()).rev() {
            idx[d] += 1;
            if idx[d] < target[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

impl Lowering<'_> {
    /// LayerNormalization over the axes from `axis` on (output 0 only: its mean and
    /// inverse deviation outputs must not be read).
    pub(super) fn layer_norm(
        &mut self,
        n: NodeId,
        ln: &op::LayerNormalization,
        x: ValueId,
        y: ValueId,
    ) -> R<()> {
        self.f32_tensor(n, x)?;
        let xd = self.dims(x)?;
        let ax = self.sample_axis(n, ln.axis, xd.len())?;
        let rows: usize = xd[1..ax].iter().product();
        let inner = &xd[ax..];
        let cols: usize = inner.iter().product();
        let param = |slot: usize, what: &str| -> R<Option<Vec<f32>>> {
            let Some(v) = self.operand(n, slot) else {
                return Ok(None);
            };
            let (shape, data) = self
                .constant(Some(v))
                .ok_or_else(|| self.unsupported(n, format!("its {what} is not an f32 constant")))?;
            broadcast(&shape, &data, inner).map(Some).ok_or_else(|| {
                self.unsupported(
                    n,
                    format!("its {what} does not broadcast to the normalized axes"),
                )
            })
        };
        let scale = param(1, "scale")?.ok_or_else(|| self.unsupported(n, "no scale"))?;
        let bias = param(2, "bias")?;
        let so = self.push_weights(&scale);
        let bo = bias.map(|b| self.push_weights(&b));
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::LayerNorm {
            x: xb,
            y: yb,
            rows,
            cols,
            eps: ln.epsilon,
            scale: so,
            bias: bo,
        });
        Ok(())
    }

    /// InstanceNormalization of an `(N, C, …)` tensor: each channel's plane of the spatial
    /// axes, with constant per-channel scale and bias.
    pub(super) fn instance_norm(&mut self, n: NodeId, eps: f32, x: ValueId, y: ValueId) -> R<()> {
        self.f32_tensor(n, x)?;
        let xd = self.dims(x)?;
        if xd.len() < 3 {
            return Err(self.unsupported(n, "no spatial axes"));
        }
        let (c, hw) = (xd[1], xd[2..].iter().product::<usize>());
        let param = |slot: usize, what: &str| -> R<Vec<f32>> {
            let (shape, data) = self
                .operand(n, slot)
                .and_then(|v| self.constant(Some(v)))
                .ok_or_else(|| self.unsupported(n, format!("its {what} is not an f32 constant")))?;
            if shape != [c] {
                return Err(self.unsupported(n, format!("its {what} is not one per channel")));
            }
            Ok(data)
        };
        let (scale, bias) = (param(1, "scale")?, param(2, "bias")?);
        let so = self.push_weights(&scale);
        let bo = self.push_weights(&bias);
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::InstanceNorm {
            x: xb,
            y: yb,
            c,
            hw,
            eps,
            scale: so,
            bias: bo,
        });
        Ok(())
    }

    /// ReduceSum / ReduceMean / ReduceMax / ReduceMin with constant axes, all per-sample,
    /// forming one contiguous run (axes of size 1 aside).
    pub(super) fn reduce(&mut self, n: NodeId, op: &Op, x: ValueId, y: ValueId) -> R<()> {
        let (rop, keepdims, noop) = match op {
            Op::ReduceSum(r) => (ReduceOp::Sum, r.keepdims, r.noop_with_empty_axes),
            Op::ReduceMean(r) => (ReduceOp::Mean, r.keepdims, r.noop_with_empty_axes),
            Op::ReduceMax(r) => (ReduceOp::Max, r.keepdims, r.noop_with_empty_axes),
            Op::ReduceMin(r) => (ReduceOp::Min, r.keepdims, r.noop_with_empty_axes),
            _ => return Err(self.unsupported(n, "not a reduction")),
        };
        let _ = keepdims; // The result's buffer is the same either way.
        self.f32_tensor(n, x)?;
        let xd = self.dims(x)?;
        let rank = xd.len();
        let axes: Vec<i64> = match self.operand(n, 1) {
            None => vec![],
            Some(v) => self
                .g
                .const_data(v)
                .ok_or_else(|| self.unsupported(n, "its axes are computed at run time"))?
                .to_i64_vec(),
        };
        if axes.is_empty() {
            if noop != 0 {
                return self.alias(n, x, y);
            }
            return Err(self.unsupported(n, "it reduces every axis, the batch axis too"));
        }
        let mut reduced = vec![false; rank];
        for &a in &axes {
            let ax = self.sample_axis(n, a, rank)?;
            if reduced[ax] {
                return Err(self.unsupported(n, format!("axis {a} is repeated")));
            }
            reduced[ax] = true;
        }
        // The axes that matter (size > 1) must be one run; axes of size 1 inside it are
        // reduced or not alike.
        let big: Vec<usize> = (1..rank).filter(|&a| reduced[a] && xd[a] != 1).collect();
        let (Some(&lo), Some(&hi)) = (big.first(), big.last()) else {
            // Only axes of size 1: the data as it is.
            return self.alias(n, x, y);
        };
        if (lo..=hi).any(|a| !reduced[a] && xd[a] != 1) {
            return Err(self.unsupported(
                n,
                "its axes are not contiguous (a kept axis lies between reduced ones)",
            ));
        }
        let (outer, len, inner): (usize, usize, usize) = (
            xd[1..lo].iter().product(),
            xd[lo..=hi].iter().product(),
            xd[hi + 1..].iter().product(),
        );
        // A mean over every spatial axis of an image is global average pooling (which also
        // reads channel blocks).
        if rop == ReduceOp::Mean && rank >= 3 && lo == 2 && inner == 1 {
            return self.global_avg(x, y, xd[1], len);
        }
        self.ensure(x, false)?;
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::Reduce {
            x: xb,
            y: yb,
            outer,
            len,
            inner,
            op: rop,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::broadcast;

    #[test]
    fn constants_broadcast_right_aligned() {
        assert_eq!(
            broadcast(&[2], &[1.0, 2.0], &[2, 2]),
            Some(vec![1.0, 2.0, 1.0, 2.0])
        );
        assert_eq!(
            broadcast(&[2, 1], &[1.0, 2.0], &[2, 2]),
            Some(vec![1.0, 1.0, 2.0, 2.0])
        );
        assert_eq!(
            broadcast(&[1, 1, 2], &[1.0, 2.0], &[2]),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(broadcast(&[], &[3.0], &[3]), Some(vec![3.0; 3]));
        assert_eq!(broadcast(&[3], &[1.0, 2.0, 3.0], &[2]), None);
        assert_eq!(broadcast(&[2, 2], &[0.0; 4], &[2]), None);
    }
}
