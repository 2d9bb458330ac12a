//! Lowering of the quantized operators: `QuantizeLinear`/`DequantizeLinear` (u8 codes) become
//! boundary steps, `QLinearConv` and `QLinearMatMul` integer layers with their weights packed
//! and their requantization fixed here — the input zero point folded into the i32 bias and
//! each output's multiplier made by [`Requant::of_scales`], exactly as the reference
//! evaluator makes it — and MaxPool of codes a code pooling step; a `DynamicQuantMatMul`
//! quantizes its rows at run time and ends in f32.
//!
//! **Invariant:** a compiled integer layer computes the evaluator's codes bit for bit; what
//! the kernels do not cover (i8 activations, weights with a nonzero zero point, grouped
//! matrix products) is an error naming the node.

use std::collections::{HashMap, HashSet};

use mcc_ir::{DType, Graph, NodeId, Op, ValueId};
use mcc_runtime::kernels::int8;
use mcc_runtime::program::Step;
use mcc_runtime::quant::{FloatClamp, Requant};

use super::{Lowering, R};

/// A layer's requantization: folded biases, multipliers, and the output's zero point, lowest
/// and highest code.
type Requantization = (Vec<i32>, Vec<Requant>, usize, usize, usize);

/// A residual join of two integer regions: `QuantizeLinear(Relu?(Add(DequantizeLinear(a),
/// DequantizeLinear(b))))`, each intermediate read once — one step on the codes
/// ([`Step::QAdd`]) that computes the same f32 operations in the same order, so the same
/// codes as the evaluator; or, where float layers read the sum (a network's last block
/// before its pooling), `Relu?(Add(DequantizeLinear(a), DequantizeLinear(b)))` as one step
/// from the codes to f32 (the same step, `float`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Join {
    /// The two dequantizations.
    dq: [NodeId; 2],
    /// Whether a Relu follows the Add.
    relu: bool,
    /// The sum stays f32 (the join ends at the Add or its Relu, not a QuantizeLinear).
    float: bool,
}

/// Every join of a graph.
#[derive(Debug, Default)]
pub(super) struct Joins {
    /// The node that ends each join: its `QuantizeLinear`, or for a float join its Relu or
    /// Add.
    pub(super) ends: HashMap<NodeId, Join>,
    /// The nodes the joins absorb (their Add, Relu and dequantizations).
    pub(super) absorbed: HashSet<NodeId>,
}

impl Joins {
    pub(super) fn find(g: &Graph) -> Joins {
        let mut out = Joins::default();
        // The node computing `v` when `v` is read by exactly one node and is no output.
        let only = |v: ValueId| -> Option<NodeId> {
            (g.users(v).len() == 1 && !g.outputs().contains(&v)).then_some(())?;
            g.producer(v)
        };
        for q in g.node_ids() {
            let Some(node) = g.node(q) else { continue };
            if !matches!(node.op, Op::QuantizeLinear(_)) {
                continue;
            }
            let Some(mut at) = node.inputs[0].and_then(only) else {
                continue;
            };
            let mut absorbed = vec![];
            let mut relu = false;
            if matches!(g.node(at).map(|x| &x.op), Some(Op::Relu(_))) {
                relu = true;
                absorbed.push(at);
                let Some(next) = g.node(at).and_then(|x| x.inputs[0]).and_then(only) else {
                    continue;
                };
                at = next;
            }
            let Some(add) = g.node(at).filter(|x| matches!(x.op, Op::Add(_))) else {
                continue;
            };
            absorbed.push(at);
            let dq = Self::dequantized(g, add, &only);
            if dq.len() != 2 || dq[0] == dq[1] {
                continue;
            }
            absorbed.extend(&dq);
            out.absorbed.extend(absorbed);
            out.ends.insert(
                q,
                Join {
                    dq: [dq[0], dq[1]],
                    relu,
                    float: false,
                },
            );
        }
        // Sums that stay f32: an Add of two dequantizations not absorbed above, ending at
        // the Relu that alone reads it, if any.
        for add in g.node_ids() {
            if out.absorbed.contains(&add) {
                continue;
            }
            let Some(node) = g.node(add).filter(|x| matches!(x.op, Op::Add(_))) else {
                continue;
            };
            let Some(sum) = node.outputs.first().copied() else {
                continue;
            };
            let dq = Self::dequantized(g, node, &only);
            if dq.len() != 2 || dq[0] == dq[1] {
                continue;
            }
            let readers = g.users(sum);
            let relu = match readers[..] {
                [(r, _)] if !g.outputs().contains(&sum) => {
                    Some(r).filter(|&r| g.node(r).is_some_and(|x| matches!(x.op, Op::Relu(_))))
                }
                _ => None,
            };
            let end = relu.unwrap_or(add);
            out.absorbed.extend(&dq);
            if relu.is_some() {
                out.absorbed.insert(add);
            }
            out.ends.insert(
                end,
                Join {
                    dq: [dq[0], dq[1]],
                    relu: relu.is_some(),
                    float: true,
                },
            );
        }
        out
    }

    /// The two dequantizations an Add of two same-shaped operands reads (each read once),
    /// or fewer.
    fn dequantized(
        g: &Graph,
        add: &mcc_ir::Node,
        only: &impl Fn(ValueId) -> Option<NodeId>,
    ) -> Vec<NodeId> {
        let same_shape = add.inputs.len() == 2
            && add.inputs.iter().all(|v| {
                v.is_some_and(|v| g.value(v).ty.shape == g.value(add.outputs[0]).ty.shape)
            });
        if !same_shape {
            return vec![];
        }
        add.inputs
            .iter()
            .filter_map(|v| v.and_then(only))
            .filter(|&d| {
                g.node(d)
                    .is_some_and(|x| matches!(x.op, Op::DequantizeLinear(_)))
            })
            .collect()
    }
}

impl Lowering<'_> {
    /// A residual join ([`Join`]) ending at node `q` (its `QuantizeLinear`, or for a float
    /// join its Relu or Add).
    pub(super) fn join(&mut self, q: NodeId, j: Join) -> R<()> {
        let node = self
            .g
            .node(q)
            .ok_or_else(|| self.unsupported(q, "vanished"))?;
        let y = node.outputs[0];
        let mut ins = vec![];
        for d in j.dq {
            let codes = self
                .operand(d, 0)
                .ok_or_else(|| self.unsupported(d, "no input"))?;
            if self.g.value(codes).ty.dtype != DType::U8 {
                return Err(self.unsupported(d, "compiled code dequantizes u8 codes"));
            }
            ins.push((codes, self.scale(d, 1)?, self.u8_zero_point(d, 2)?));
        }
        let count: usize = self.dims(y)?[1..].iter().product();
        let (a, b) = (self.read(ins[0].0)?, self.read(ins[1].0)?);
        // Images of codes are channels-last.
        let cd = self.dims(ins[0].0)?;
        let channels = if j.float && cd.len() == 4 { cd[1] } else { 0 };
        let (sy, zy) = match j.float {
            true => (1.0, 0),
            false => (self.scale(q, 1)?, self.u8_zero_point(q, 2)?),
        };
        let yb = self.write(y)?;
        self.steps.push(Step::QAdd {
            a,
            b,
            y: yb,
            n: count,
            sa: ins[0].1,
            za: usize::from(ins[0].2),
            sb: ins[1].1,
            zb: usize::from(ins[1].2),
            sy,
            zy: usize::from(zy),
            relu: j.relu,
            float: j.float,
            channels,
        });
        Ok(())
    }

    /// A constant operand's values as i64 (any integer or float type).
    fn ints(&self, n: NodeId, slot: usize) -> Option<Vec<i64>> {
        Some(self.g.const_data(self.operand(n, slot)?)?.to_i64_vec())
    }

    fn floats(&self, n: NodeId, slot: usize) -> Option<Vec<f32>> {
        self.constant(self.operand(n, slot)).map(|(_, v)| v)
    }

    /// A u8 zero point operand (a single value): `None` when absent, an error for any other
    /// type.
    fn u8_zero_point(&self, n: NodeId, slot: usize) -> R<u8> {
        let Some(v) = self.operand(n, slot) else {
            return Ok(0);
        };
        let t = self
            .g
            .const_data(v)
            .ok_or_else(|| self.unsupported(n, "its zero point is computed at run time"))?;
        if t.dtype() != DType::U8 || t.len() != 1 {
            return Err(self.unsupported(
                n,
                format!(
                    "compiled code takes one u8 zero point, found {} {:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.to_i64_vec()[0] as u8)
    }

    /// A single positive f32 scale operand.
    fn scale(&self, n: NodeId, slot: usize) -> R<f32> {
        match self.floats(n, slot).as_deref() {
            Some([s]) if s.is_finite() && *s > 0.0 => Ok(*s),
            _ => Err(self.unsupported(n, "compiled code takes one constant positive scale")),
        }
    }

    /// `QuantizeLinear` / `DequantizeLinear` to or from u8 codes.
    pub(super) fn quantize_step(&mut self, n: NodeId, op: &Op, x: ValueId, y: ValueId) -> R<()> {
        let scale = self.scale(n, 1)?;
        let zp = self.u8_zero_point(n, 2)?;
        let count: usize = self.dims(x)?[1..].iter().product();
        // Images of codes are channels-last.
        let codes = if matches!(op, Op::QuantizeLinear(_)) {
            y
        } else {
            x
        };
        let cd = self.dims(codes)?;
        let channels = if cd.len() == 4 { cd[1] } else { 0 };
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        let zp = usize::from(zp);
        self.steps.push(match op {
            Op::QuantizeLinear(_) => Step::Quantize {
                x: xb,
                y: yb,
                n: count,
                scale,
                zp,
                channels,
            },
            _ => Step::Dequantize {
                x: xb,
                y: yb,
                n: count,
                scale,
                zp,
                channels,
            },
        });
        Ok(())
    }

    /// The requantization of a layer with `outputs` outputs: (bias with `zx·Σw` taken out,
    /// multipliers), and the output's zero point and clamp.
    fn requantization(
        &self,
        n: NodeId,
        outputs: usize,
        wsums: &[i64],
        zx: u8,
    ) -> R<Requantization> {
        let op = &self
            .g
            .node(n)
            .ok_or_else(|| self.unsupported(n, "vanished"))?
            .op;
        let sx = self.scale(n, 1)?;
        let sy = self.scale(n, 6)?;
        let zy = self.u8_zero_point(n, 7)?;
        let sw = self
            .floats(n, 4)
            .filter(|v| v.len() == 1 || v.len() == outputs)
            .ok_or_else(|| {
                self.unsupported(n, "its weight scales are not one or one per output")
            })?;
        let bias = match self.operand(n, 8) {
            None => vec![0i64; outputs],
            Some(_) => self
                .ints(n, 8)
                .filter(|b| b.len() == outputs)
                .ok_or_else(|| self.unsupported(n, "its bias is not an i32 constant per output"))?,
        };
        let act = op.q_activation().map_err(|why| self.unsupported(n, why))?;
        let (lo, hi) = act.bounds(sy, i32::from(zy), false);
        let rq = (0..outputs)
            .map(|i| {
                Requant::of_scales(sx, sw[if sw.len() == 1 { 0 } else { i }], sy)
                    .ok_or_else(|| self.unsupported(n, "a requantization multiplier out of range"))
            })
            .collect::<R<Vec<_>>>()?;
        // Wrapping, as the accumulators wrap: Σ(x − zx)·w + B ≡ Σx·w + (B − zx·Σw) mod 2^32.
        let folded = (0..outputs)
            .map(|i| (bias[i] as i32).wrapping_sub(i32::from(zx).wrapping_mul(wsums[i] as i32)))
            .collect();
        Ok((folded, rq, usize::from(zy), lo as usize, hi as usize))
    }

    /// An integer layer's packed weights and requantization words, appended to the weights:
    /// (weights offset, words offset, output zero point, lowest and highest code). `sums`
    /// holds each output's weight sum.
    fn layer_weights(
        &mut self,
        n: NodeId,
        panels: &[u8],
        sums: &[i64],
        zx: u8,
    ) -> R<(usize, usize, usize, usize, usize)> {
        let (bias, rq, zy, lo, hi) = self.requantization(n, sums.len(), sums, zx)?;
        let wo = self.push_bytes(panels);
        let qo = self.push_weights(&int8::requant_words(&bias, &rq));
        Ok((wo, qo, zy, lo, hi))
    }

    /// The i8 weights (operand 3) with a zero point of 0: shape and values.
    fn i8_weights(&self, n: NodeId) -> R<(Vec<usize>, Vec<i8>)> {
        let w = self
            .operand(n, 3)
            .and_then(|v| self.g.const_data(v))
            .filter(|t| t.dtype() == DType::I8)
            .ok_or_else(|| self.unsupported(n, "its weights are not an i8 constant"))?;
        if self.ints(n, 5).is_some_and(|z| z.iter().any(|&v| v != 0)) {
            return Err(self.unsupported(n, "weights with a nonzero zero point"));
        }
        let v = w.to_i64_vec().into_iter().map(|x| x as i8).collect();
        Ok((w.shape().to_vec(), v))
    }

    /// `QLinearConv` (2-D).
    pub(super) fn qconv(
        &mut self,
        n: NodeId,
        c: &mcc_ir::op::QLinearConv,
        x: ValueId,
        y: ValueId,
    ) -> R<()> {
        let xd = self.dims(x)?;
        if xd.len() != 4 {
            return Err(self.unsupported(n, "only 2-D convolutions are compiled"));
        }
        let zx = self.u8_zero_point(n, 2)?;
        let (ws, w) = self.i8_weights(n)?;
        if ws.len() != 4 {
            return Err(self.unsupported(n, "its weights are not 4-D"));
        }
        let (g, _) = self.window(
            n,
            &xd,
            &ws[2..],
            &c.strides,
            &c.dilations,
            &c.pads,
            c.auto_pad,
            false,
        )?;
        let (m, groups) = (ws[0], c.group.max(1) as usize);
        let (cg, kh, kw) = (ws[1], ws[2], ws[3]);
        if groups == 0 || m % groups != 0 || cg * groups != xd[1] {
            return Err(self.unsupported(n, "its channels do not divide into its groups"));
        }
        let k = cg * kh * kw;
        let panels = int8::pack_conv(&g, m, groups, &w).map_err(|e| self.unsupported(n, &e))?;
        if panels.len() != int8::conv_weights_len(&g, m, groups) {
            return Err(self.unsupported(n, "its packed weights do not have the kernel's size"));
        }
        let sums: Vec<i64> = (0..m)
            .map(|i| w[i * k..(i + 1) * k].iter().map(|&v| i64::from(v)).sum())
            .collect();
        let (wo, qo, zy, lo, hi) = self.layer_weights(n, &panels, &sums, zx)?;
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        // The kernel's working memory (padded image, gathered rows) is the thread's scratch.
        self.scratch = self.scratch.max(int8::conv_scratch_len(&g, m, groups));
        self.steps.push(Step::QConv {
            x: xb,
            y: yb,
            g,
            m,
            groups,
            zx: usize::from(zx),
            w: wo,
            q: qo,
            zy,
            lo,
            hi,
        });
        Ok(())
    }

    /// `QLinearMatMul` with 2-D weights: rows of the input times `k × n` weights.
    pub(super) fn qdense(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        let zx = self.u8_zero_point(n, 2)?;
        let (ws, w) = self.i8_weights(n)?;
        if ws.len() != 2 || xd.last() != Some(&ws[0]) {
            return Err(self.unsupported(n, "its weights are not k × n for the input's last axis"));
        }
        let (k, cols) = (ws[0], ws[1]);
        let rows: usize = xd[1..xd.len() - 1].iter().product();
        let panels = int8::pack_panels(cols, k, 0, |j, kk| w[kk * cols + j] as u8);
        let sums: Vec<i64> = (0..cols)
            .map(|j| (0..k).map(|kk| i64::from(w[kk * cols + j])).sum())
            .collect();
        let (wo, qo, zy, lo, hi) = self.layer_weights(n, &panels, &sums, zx)?;
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::QDense {
            x: xb,
            y: yb,
            rows,
            k,
            n: cols,
            zx: usize::from(zx),
            w: wo,
            q: qo,
            zy,
            lo,
            hi,
        });
        Ok(())
    }

    /// `DynamicQuantMatMul`: the input's rows quantized at run time into a temporary
    /// ([`Step::QRows`]), then the integer product with its f32 epilogue
    /// ([`Step::QDynDense`]: per output the weights' sum, scale and bias, and the clamp).
    pub(super) fn dyn_dense(&mut self, n: NodeId, op: &Op, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        let wt = self
            .operand(n, 1)
            .and_then(|v| self.g.const_data(v))
            .filter(|t| t.dtype() == DType::I8 && t.shape().len() == 2)
            .ok_or_else(|| self.unsupported(n, "its weights are not a 2-D i8 constant"))?;
        let (k, cols) = (wt.shape()[0], wt.shape()[1]);
        if xd.last() != Some(&k) || k == 0 || cols == 0 {
            return Err(self.unsupported(n, "its weights are not k × n for the input's last axis"));
        }
        let w: Vec<i8> = wt.to_i64_vec().into_iter().map(|v| v as i8).collect();
        let scales = match self.floats(n, 2) {
            Some(s) if s.len() == 1 => vec![s[0]; cols],
            Some(s) if s.len() == cols => s,
            _ => return Err(self.unsupported(n, "its weight scales are not 1 or n constants")),
        };
        if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(self.unsupported(n, "a weight scale is not a positive finite number"));
        }
        let bias = match self.operand(n, 3) {
            None => vec![0.0; cols],
            Some(_) => match self.floats(n, 3) {
                Some(b) if b.len() == cols => b,
                _ => return Err(self.unsupported(n, "its bias is not n f32 constants")),
            },
        };
        let clamp = FloatClamp::of(op.q_activation().map_err(|why| self.unsupported(n, why))?);
        let rows: usize = xd[1..xd.len() - 1].iter().product();
        let panels = int8::pack_panels(cols, k, 0, |j, kk| w[kk * cols + j] as u8);
        // Σ of at most 2^24 weights of magnitude ≤ 128 fits i32.
        let sums = (0..cols).map(|j| (0..k).map(|kk| i32::from(w[kk * cols + j])).sum::<i32>());
        let mut words: Vec<f32> = sums.map(|v| f32::from_bits(v as u32)).collect();
        words.extend(&scales);
        words.extend(&bias);
        let wo = self.push_bytes(&panels);
        let qo = self.push_weights(&words);
        let codes = self.temporary(vec![1, (rows * int8::dynamic_stride(k)).div_ceil(4)]);
        let xb = self.read(x)?;
        let tb = self.write(codes)?;
        self.steps.push(Step::QRows {
            x: xb,
            y: tb,
            rows,
            k,
        });
        let tb = self.read(codes)?;
        let yb = self.write(y)?;
        self.steps.push(Step::QDynDense {
            x: tb,
            y: yb,
            rows,
            k,
            n: cols,
            w: wo,
            q: qo,
            lo: clamp.lo,
            hi: clamp.hi,
        });
        Ok(())
    }

    /// MaxPool of u8 codes.
    pub(super) fn qmax_pool(
        &mut self,
        n: NodeId,
        p: &mcc_ir::op::MaxPool,
        x: ValueId,
        y: ValueId,
    ) -> R<()> {
        let xd = self.dims(x)?;
        if xd.len() != 4 {
            return Err(self.unsupported(n, "only 2-D pools are compiled"));
        }
        let k: Vec<usize> = p.kernel_shape.iter().map(|&k| k.max(0) as usize).collect();
        let (g, _) = self.window(
            n,
            &xd,
            &k,
            &p.strides,
            &p.dilations,
            &p.pads,
            p.auto_pad,
            p.ceil_mode != 0,
        )?;
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::QMaxPool { x: xb, y: yb, g });
        Ok(())
    }

    /// A reshape of channels-last codes: reordered to channels-first into the output's own
    /// buffer (a reshape reads NCHW order); reshaping into another image is not compiled.
    pub(super) fn planar(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        if self.dims(y)?.len() == 4 {
            return Err(self.unsupported(n, "a reshape of an image of codes into another image"));
        }
        let xb = self.read(x)?;
        let yb = self.write(y)?;
        self.steps.push(Step::QPlanar {
            x: xb,
            y: yb,
            c: xd[1],
            hw: xd[2..].iter().product(),
        });
        Ok(())
    }

    /// Appends bytes to the weights (4 a float, zero-padded), 64-byte aligned.
    fn push_bytes(&mut self, bytes: &[u8]) -> usize {
        let words: Vec<f32> = bytes
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                f32::from_bits(u32::from_le_bytes(b))
            })
            .collect();
        self.push_weights(&words)
    }
}
