//! Lowering of ONNX ConvTranspose (1-D as 2-D of one row, and 2-D) to a
//! [`Step::ConvTranspose`]: its window from
//! [`mcc_ir::geometry::transposed_window`] (the function inference and the evaluator use),
//! its weights packed per group for the GEMM (`mcc_runtime::kernels::conv_transpose`), its
//! bias added where the output starts.
//!
//! **Invariant:** the weights and bias are constants and the window's output is the
//! result's type; anything else is refused, naming the node.

use mcc_ir::{NodeId, ValueId, op};
use mcc_runtime::kernels::conv::Geometry;
use mcc_runtime::kernels::conv_transpose;
use mcc_runtime::program::Step;

use super::{Lowering, R};

impl Lowering<'_> {
    /// ONNX ConvTranspose of an image by constant weights.
    pub(super) fn conv_transpose(
        &mut self,
        n: NodeId,
        ct: &op::ConvTranspose,
        x: ValueId,
        y: ValueId,
    ) -> R<()> {
        self.f32_tensor(n, x)?;
        let xd = self.dims(x)?;
        let yd = self.dims(y)?;
        if !matches!(xd.len(), 3 | 4) || yd.len() != xd.len() {
            return Err(
                self.unsupported(n, "only 1-D and 2-D transposed convolutions are compiled")
            );
        }
        let (wshape, w) = self
            .constant(self.operand(n, 1))
            .ok_or_else(|| self.unsupported(n, "its weights are not an f32 constant"))?;
        let groups = usize::try_from(ct.group)
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| self.unsupported(n, format!("group {}", ct.group)))?;
        let c = xd[1];
        if wshape.len() != xd.len() || wshape[0] != c || !c.is_multiple_of(groups) {
            return Err(self.unsupported(n, "its weights do not match its input's channels"));
        }
        let m = wshape[1] * groups;
        if yd[1] != m {
            return Err(self.unsupported(n, "its result's channels do not match its weights"));
        }
        let win = mcc_ir::geometry::transposed_window(
            &xd[2..],
            &wshape[2..],
            &ct.strides,
            &ct.dilations,
            &ct.pads,
            &ct.output_padding,
            &ct.output_shape,
            ct.auto_pad,
        )
        .map_err(|e| self.unsupported(n, e.to_string()))?;
        if win.out[..] != yd[2..] {
            return Err(self.unsupported(n, "its result's size does not match its window"));
        }
        // A 1-D window is a 2-D one of one row. A negative cut is an output_shape larger
        // than the full output: its first cells come before any input reaches (they hold the
        // bias).
        let pads: Vec<usize> = win
            .pad_begin
            .iter()
            .map(|&p| p.max(0).unsigned_abs() as usize)
            .collect();
        let leads: Vec<usize> = win
            .pad_begin
            .iter()
            .map(|&p| p.min(0).unsigned_abs() as usize)
            .collect();
        let (hw, out) = (two(&xd[2..], 1), two(&win.out, 1));
        let (kernel, strides) = (two(&win.kernel, 1), two(&win.strides, 1));
        let (dilations, pad, lead) = (two(&win.dilations, 1), two(&pads, 0), two(&leads, 0));
        let g = Geometry {
            c,
            h: hw[0],
            w: hw[1],
            oh: out[0],
            ow: out[1],
            kh: kernel[0],
            kw: kernel[1],
            sh: strides[0],
            sw: strides[1],
            dh: dilations[0],
            dw: dilations[1],
            pt: pad[0],
            pl: pad[1],
        };
        let (lead_h, lead_w) = (lead[0], lead[1]);
        let bias = match self.operand(n, 2) {
            None => None,
            Some(b) => Some(
                self.constant(Some(b))
                    .map(|(_, v)| v)
                    .filter(|v| v.len() == m)
                    .ok_or_else(|| {
                        self.unsupported(n, "its bias is not an f32 constant per channel")
                    })?,
            ),
        };
        let packed = conv_transpose::pack_weights(&w, &g, m, groups)
            .ok_or_else(|| self.unsupported(n, "its weights do not match its kernel"))?;
        let wo = self.push_weights(&packed);
        let bo = bias.map(|b| self.push_weights(&b));
        self.scratch = self.scratch.max(conv_transpose::scratch_len(&g, m, groups));
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::ConvTranspose {
            x: xb,
            y: yb,
            g,
            lead_h,
            lead_w,
            m,
            groups,
            w: wo,
            bias: bo,
        });
        Ok(())
    }
}

/// A 2-D window's per-axis values from a 1-D or 2-D one's (`row`, the one row's, first).
fn two(v: &[usize], row: usize) -> [usize; 2] {
    match *v {
        [a, b] => [a, b],
        [b] => [row, b],
        _ => [row, row],
    }
}
