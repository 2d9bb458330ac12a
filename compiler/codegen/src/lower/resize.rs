//! Lowering of ONNX Resize, its sizes and taps from the evaluator's own plan
//! ([`mcc_ir::eval::resize_plan`]), so native code resizes as the reference does: nearest
//! (any `nearest_mode` and coordinate transformation) is a [`Step::Gather`] of one offset per
//! output index; linear, cubic, antialiased, and nearest with values outside the input
//! (`tf_crop_and_resize`), a [`Step::Resample`] whose per-axis taps nest in the evaluator's
//! order (the axis it interpolates first innermost), so the f64 sums are its sums.
//!
//! **Invariant:** `roi`, `scales` and `sizes` are constants, the batch axis is not resized,
//! and the plan's output shape is the result's type; anything else is refused, naming the
//! node.

use mcc_ir::{NodeId, ValueId, op};
use mcc_runtime::program::Step;

use super::movement::strides_of;
use super::{Batch, Key, Lowering, R};

impl Lowering<'_> {
    /// ONNX Resize of an f32 tensor by constant `roi`, `scales` or `sizes`.
    pub(super) fn resize(&mut self, n: NodeId, r: &op::Resize, x: ValueId, y: ValueId) -> R<()> {
        let mut xd = self.dims(x)?;
        let yd = self.dims(y)?;
        // The plan sees the real batch where the model fixes it (`sizes` may name it).
        if let Batch::Fixed(b) = self.batch {
            xd[0] = b;
        }
        let operand =
            |slot: usize, what: &str| match self.operand(n, slot) {
                None => Ok(None),
                Some(v) => self.g.const_data(v).map(Some).ok_or_else(|| {
                    self.unsupported(n, format!("its {what} are computed at run time"))
                }),
            };
        let roi = operand(1, "roi")?;
        let scales = operand(2, "scales")?;
        let sizes = operand(3, "sizes")?;
        let plan = mcc_ir::eval::resize_plan(r, &xd, roi, scales, sizes)
            .map_err(|e| self.unsupported(n, e.to_string()))?;
        if plan.maps.iter().any(|m| m.axis == 0) {
            return Err(self.unsupported(n, "it resizes the batch axis (it would mix samples)"));
        }
        if plan.out_shape.get(1..) != yd.get(1..) {
            return Err(self.unsupported(n, "its result's shape does not match its type"));
        }
        let (src, xd) = self.moved(n, x)?;
        let st = strides_of(&xd);
        let rank = xd.len();
        // Per per-sample axis, its map (an axis left as it is has none).
        let mut map_of = vec![None; rank];
        for m in &plan.maps {
            if let Some(slot) = map_of.get_mut(m.axis) {
                *slot = Some(m);
            }
        }
        let nearest = r.mode == mcc_ir::ResizeMode::Nearest;
        let outside = plan.maps.iter().any(|m| m.outside.iter().any(|&o| o));
        if nearest && !outside {
            let mut offsets = vec![];
            for a in 1..rank {
                offsets.push(match map_of[a] {
                    None => (0..xd[a]).map(|i| i * st[a]).collect(),
                    Some(m) => m
                        .taps
                        .iter()
                        .map(|t| t.first().map_or(0, |&(i, _)| i * st[a]))
                        .collect(),
                });
            }
            return self.tables(n, src, Key::V(y), yd[1..].to_vec(), offsets, true);
        }
        let mcc_runtime::program::Src::Arena(xb) = src else {
            return Err(self.unsupported(n, "its data is a constant (fold it first)"));
        };
        let mut taps: Vec<Vec<Vec<(usize, f64)>>> = vec![];
        for a in 1..rank {
            taps.push(match map_of[a] {
                None => (0..xd[a]).map(|i| vec![(i * st[a], 1.0)]).collect(),
                Some(m) => {
                    let mut axis = Vec::with_capacity(m.taps.len());
                    for (t, &off) in m.taps.iter().zip(&m.outside) {
                        if t.is_empty() && !off {
                            return Err(self.unsupported(n, "an output has no taps of weight"));
                        }
                        axis.push(t.iter().map(|&(i, w)| (i * st[a], w)).collect());
                    }
                    axis
                }
            });
        }
        // The evaluator interpolates `plan.maps` in order, the first innermost; the axes left
        // as they are pass their values through, outermost.
        let mut order: Vec<usize> = (1..rank).filter(|&a| map_of[a].is_none()).collect();
        order.extend(plan.maps.iter().rev().map(|m| m.axis));
        let order: Vec<usize> = order.into_iter().map(|a| a - 1).collect();
        let yb = self.write(y)?;
        self.steps.push(Step::Resample {
            x: xb,
            y: yb,
            dims: yd[1..].to_vec(),
            taps,
            order,
            fill: r.extrapolation_value,
        });
        Ok(())
    }
}
