//! Lowering of a MatMul whose right operand is not a 2-D constant (attention's Q·Kᵀ and
//! weights·V, or a constant of higher rank on either side) as a [`Step::BatchMatMul`]: per
//! sample, ONNX's broadcasting over the leading axes, each operand reached through strides
//! (0 where it broadcasts). A MatMul by a 2-D constant stays a packed-weight dense layer.
//!
//! **Invariant:** every sample's product reads only that sample (and constants): a computed
//! operand must carry the batch axis first at the result's rank, so its own axes line up
//! with the result's; a constant must not vary along the batch axis. Anything else (a
//! computed operand of lower rank, whose batch axis would be a matrix axis) is an error.

use mcc_ir::{NodeId, ValueId};
use mcc_runtime::program::{Src, Step};

use super::{Lowering, R, act_of};

/// One operand, as the product sees it.
struct Operand {
    src: Src,
    /// Its dims at the result's rank (leading 1s added; the batch axis as 1).
    dims: Vec<usize>,
}

impl Lowering<'_> {
    /// A MatMul of two tensors, or of a tensor and a constant the dense path does not take.
    pub(super) fn batch_matmul(&mut self, n: NodeId, a: ValueId, y: ValueId) -> R<()> {
        let b = self
            .operand(n, 1)
            .ok_or_else(|| self.unsupported(n, "no right operand"))?;
        let yd = self.dims(y)?;
        let a_rank = self.rank_of(n, a)?;
        let b_rank = self.rank_of(n, b)?;
        // ONNX: a 1-D left operand is a row, a 1-D right one a column; the result lacks the
        // axis they add. Compute at the full rank (those axes as 1) either way.
        let mut full = yd.clone();
        if a_rank == 1 {
            full.insert(full.len() - usize::from(b_rank != 1), 1);
        }
        if b_rank == 1 {
            full.push(1);
        }
        let rank = full.len();
        if rank < 3 {
            return Err(self.unsupported(n, "a product with no per-sample matrix"));
        }
        let (m, nn) = (full[rank - 2], full[rank - 1]);
        let ao = self.matmul_operand(n, a, rank, a_rank == 1, false)?;
        let bo = self.matmul_operand(n, b, rank, b_rank == 1, true)?;
        let k = ao.dims[rank - 1];
        if bo.dims[rank - 2] != k || ao.dims[rank - 2] != m || bo.dims[rank - 1] != nn {
            return Err(
                self.unsupported(n, "its operands' matrices do not line up with the result")
            );
        }
        // Strides over the per-sample batch axes (1 .. rank − 2), in matrices of each operand.
        let batch = &full[1..rank - 2];
        let strides = |o: &Operand, matrix: usize| -> Option<Vec<usize>> {
            let own = &o.dims[1..rank - 2];
            let mut s = vec![0usize; own.len()];
            let mut step = matrix;
            for i in (0..own.len()).rev() {
                if own[i] != 1 && own[i] != batch[i] {
                    return None;
                }
                s[i] = if own[i] == 1 { 0 } else { step };
                step *= own[i];
            }
            Some(s)
        };
        let (Some(a_strides), Some(b_strides)) = (strides(&ao, m * k), strides(&bo, k * nn)) else {
            return Err(self.unsupported(n, "its operands' leading axes do not broadcast"));
        };
        let node_op = self
            .g
            .node(n)
            .map(|x| x.op.clone())
            .ok_or_else(|| self.unsupported(n, "vanished"))?;
        let act = act_of(&node_op, "")?;
        let yb = self.write(y)?;
        self.steps.push(Step::BatchMatMul {
            a: ao.src,
            a_strides,
            b: bo.src,
            b_strides,
            dims: batch.to_vec(),
            m,
            k,
            n: nn,
            act,
            y: yb,
        });
        Ok(())
    }

    /// The rank of operand `v` (a constant's, or a tensor's with its batch axis).
    fn rank_of(&self, n: NodeId, v: ValueId) -> R<usize> {
        match self.constant(Some(v)) {
            Some((shape, _)) => Ok(shape.len()),
            None => {
                self.f32_tensor(n, v)?;
                Ok(self.dims(v)?.len())
            }
        }
    }

    /// Operand `v` at the result's `rank`: a constant in the weights (right-aligned, not
    /// varying along the batch axis) or a tensor of that rank. A 1-D operand becomes a row
    /// (`column` false) or a column.
    fn matmul_operand(
        &mut self,
        n: NodeId,
        v: ValueId,
        rank: usize,
        vector: bool,
        column: bool,
    ) -> R<Operand> {
        if let Some((mut shape, data)) = self.constant(Some(v)) {
            if vector {
                if column {
                    shape.push(1);
                } else {
                    shape.insert(0, 1);
                }
            }
            if shape.len() < 2 {
                return Err(self.unsupported(n, "a scalar operand"));
            }
            if shape.len() > rank || (shape.len() == rank && shape[0] != 1) {
                return Err(self.unsupported(n, "a constant operand varies along the batch axis"));
            }
            let mut dims = vec![1; rank - shape.len()];
            dims.extend(&shape);
            let off = self.push_weights(&data);
            let len = data.len();
            return Ok(Operand {
                src: Src::Weight { off, len },
                dims,
            });
        }
        let dims = self.dims(v)?;
        if dims.len() != rank || dims.len() < 3 {
            return Err(self.unsupported(
                n,
                "a computed operand of lower rank than the result (its batch axis would be a matrix axis)",
            ));
        }
        Ok(Operand {
            src: Src::Arena(self.read(v)?),
            dims,
        })
    }
}
