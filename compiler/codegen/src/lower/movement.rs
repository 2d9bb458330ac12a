//! Lowering of the operators that move data without arithmetic — Gather, Slice, Split,
//! Expand, DepthToSpace and SpaceToDepth (and nearest Resize, in `resize.rs`) — each as a
//! [`Step::Gather`]: per output axis, a table of the offsets its indices take in the source
//! (`mcc_runtime::kernels::gather`).
//!
//! **Invariant:** every table covers per-sample axes only (the batch axis stays where it
//! is, each sample read from itself), and every index, start or size is a constant checked
//! here against the source's dims: out of range is an error naming the node, never a read
//! outside the tensor. An operator that picks along the batch axis (other than all of it) is
//! refused: it would mix samples.

use mcc_ir::{NodeId, ValueId, op};
use mcc_runtime::program::{Src, Step};

use super::{Key, Lowering, R};

/// The longest contiguous run a table is merged into: longer runs copy no faster, and every
/// entry is a word of the schedule.
const MAX_RUN: usize = 4096;

/// Row-major strides of `dims`.
pub(super) fn strides_of(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * dims[d + 1];
    }
    s
}

/// The indices ONNX Slice keeps along an axis of size `dim` (negative positions count from
/// the end, ends clamp, a negative step walks backwards; `None` for step 0).
fn slice_picks(dim: usize, start: i64, end: i64, step: i64) -> Option<Vec<usize>> {
    let dim = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (s, e) = (norm(start), norm(end));
    let mut out = vec![];
    if step > 0 {
        let (mut k, e) = (s.clamp(0, dim), e.clamp(0, dim));
        while k < e {
            out.push(k as usize);
            k = k.saturating_add(step);
        }
    } else if step < 0 {
        let (mut k, e) = (s.clamp(-1, dim - 1), e.clamp(-1, dim - 1));
        while k > e {
            out.push(k as usize);
            k = k.saturating_add(step);
        }
    } else {
        return None;
    }
    Some(out)
}

/// Drops axes of size 1 (their one offset moves into another axis's table) and merges the
/// innermost axes while the run they make stays contiguous in the source.
fn simplify(dims: Vec<usize>, offsets: Vec<Vec<usize>>) -> (Vec<usize>, Vec<Vec<usize>>) {
    if dims.contains(&0) {
        return (dims, offsets);
    }
    let mut base = 0;
    let (mut d2, mut o2): (Vec<usize>, Vec<Vec<usize>>) = (vec![], vec![]);
    for (d, t) in dims.into_iter().zip(offsets) {
        if d == 1 {
            base += t[0];
        } else {
            d2.push(d);
            o2.push(t);
        }
    }
    if d2.is_empty() {
        return (vec![1], vec![vec![base]]);
    }
    for v in &mut o2[0] {
        *v += base;
    }
    // Merge the innermost two axes while the inner one counts up by one and the outer one
    // steps by its length.
    while d2.len() >= 2 {
        let r = d2.len();
        let (outer, inner) = (&o2[r - 2], &o2[r - 1]);
        let run = inner.len();
        let counts_up = inner.iter().enumerate().all(|(i, &v)| v == inner[0] + i);
        let steps_by_run = outer
            .iter()
            .enumerate()
            .all(|(i, &v)| v == outer[0] + i * run);
        if !counts_up || !steps_by_run || run * outer.len() > MAX_RUN {
            break;
        }
        let first = outer[0] + inner[0];
        let merged: Vec<usize> = (0..run * outer.len()).map(|i| first + i).collect();
        let len = merged.len();
        o2.truncate(r - 2);
        d2.truncate(r - 2);
        o2.push(merged);
        d2.push(len);
    }
    (d2, o2)
}

/// What a `Gather` step computes, before [`simplify`]: its step, source, and the dims and
/// offset tables of its output's per-sample axes.
pub(super) struct View {
    at: usize,
    src: Src,
    dims: Vec<usize>,
    offsets: Vec<Vec<usize>>,
}

impl Lowering<'_> {
    /// A transpose of a value a `Gather` step wrote, read by the transpose alone: that step
    /// writes the transposed result instead (its tables permuted), one copy instead of two.
    /// `perm` keeps the batch axis first. Returns whether it composed.
    pub(super) fn transpose_view(&mut self, x: ValueId, y: ValueId, perm: &[usize]) -> R<bool> {
        let sole = self.g.users(x).len() == 1 && !self.g.outputs().contains(&x);
        let Some(view) = self.views.get(&Key::V(x)).filter(|_| sole) else {
            return Ok(false);
        };
        let Some(&xb) = self.buffer_of.get(&Key::V(x)) else {
            return Ok(false);
        };
        if self.steps.get(view.at).map(|s| s.writes().off) != Some(xb) {
            return Ok(false);
        }
        if view.dims.len() + 1 != perm.len() {
            return Ok(false);
        }
        // Per-sample axes (the caller checked the batch axis stays first; a malformed
        // permutation composes nothing).
        let Some(axes) = perm[1..]
            .iter()
            .map(|&p| p.checked_sub(1).filter(|&a| a < view.dims.len()))
            .collect::<Option<Vec<usize>>>()
        else {
            return Ok(false);
        };
        let dims: Vec<usize> = axes.iter().map(|&a| view.dims[a]).collect();
        let offsets: Vec<Vec<usize>> = axes.iter().map(|&a| view.offsets[a].clone()).collect();
        let (at, src) = (view.at, view.src);
        if dims.iter().product::<usize>() != self.per_sample(y)? {
            return Ok(false);
        }
        // The step moves to the transposed result's buffer, live from that step on; the
        // intermediate is never written (and takes no memory).
        let yb = self.write(y)?;
        self.live[yb.off] = (at, at);
        self.buffers[xb] = 0;
        let (sd, so) = simplify(dims.clone(), offsets.clone());
        self.steps[at] = Step::Gather {
            x: src,
            y: yb,
            dims: sd,
            offsets: so,
        };
        self.views.insert(
            Key::V(y),
            View {
                at,
                src,
                dims,
                offsets,
            },
        );
        Ok(true)
    }

    /// A per-sample axis of `rank` (negative counts from the end), refused when it is the
    /// batch axis or out of range.
    pub(super) fn sample_axis(&self, n: NodeId, axis: i64, rank: usize) -> R<usize> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a == 0 {
            return Err(self.unsupported(n, "it works along the batch axis (it would mix samples)"));
        }
        if a < 0 || a >= r {
            return Err(self.unsupported(n, format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    /// An i64 constant operand (`None` when absent), refused when it is computed.
    fn const_ints(&self, n: NodeId, slot: usize, what: &str) -> R<Option<(Vec<usize>, Vec<i64>)>> {
        let Some(v) = self.operand(n, slot) else {
            return Ok(None);
        };
        let t = self
            .g
            .const_data(v)
            .ok_or_else(|| self.unsupported(n, format!("its {what} are computed at run time")))?;
        Ok(Some((t.shape().to_vec(), t.to_i64_vec())))
    }

    /// The source operand of a data-movement step: `x`'s buffer (an f32 tensor).
    pub(super) fn moved(&mut self, n: NodeId, x: ValueId) -> R<(Src, Vec<usize>)> {
        if self.constant(Some(x)).is_some() {
            return Err(self.unsupported(n, "its data is a constant (fold it first)"));
        }
        self.f32_tensor(n, x)?;
        let d = self.dims(x)?;
        Ok((Src::Arena(self.read(x)?), d))
    }

    /// Emits `y = src` through the offset tables, after checking they give `y`'s size. With
    /// `aligned`, there is a table per per-sample axis of `y` (so a transpose of `y` can
    /// compose with them).
    pub(super) fn tables(
        &mut self,
        n: NodeId,
        x: Src,
        y: Key,
        dims: Vec<usize>,
        offsets: Vec<Vec<usize>>,
        aligned: bool,
    ) -> R<()> {
        let count: usize = dims.iter().product();
        if count != self.per_sample(y)? {
            return Err(self.unsupported(n, "its result's size does not match its type"));
        }
        let (sd, so) = simplify(dims.clone(), offsets.clone());
        let yb = self.write(y)?;
        if aligned {
            self.views.insert(
                y,
                View {
                    at: self.steps.len(),
                    src: x,
                    dims,
                    offsets,
                },
            );
        }
        self.steps.push(Step::Gather {
            x,
            y: yb,
            dims: sd,
            offsets: so,
        });
        Ok(())
    }

    /// ONNX Gather with constant indices on a per-sample axis.
    pub(super) fn gather(&mut self, n: NodeId, g: &op::Gather, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        let ax = self.sample_axis(n, g.axis, xd.len())?;
        let (ishape, idx) = self
            .const_ints(n, 1, "indices")?
            .ok_or_else(|| self.unsupported(n, "no indices"))?;
        let dim = xd[ax];
        let st = strides_of(&xd);
        let mut picked = Vec::with_capacity(idx.len());
        for &i in &idx {
            let j = if i < 0 { i + dim as i64 } else { i };
            if j < 0 || j >= dim as i64 {
                return Err(self.unsupported(
                    n,
                    format!("index {i} is out of range for axis {ax} of size {dim}"),
                ));
            }
            picked.push(j as usize * st[ax]);
        }
        // A scalar index drops its axis (its offset moves into another axis's table); the
        // axes of an index of rank 2 or more flatten into one (the output is row-major
        // either way, but its tables then no longer match its axes).
        let (src, _) = self.moved(n, x)?;
        let mut dims = vec![];
        let mut offsets = vec![];
        let mut base = 0;
        for a in 1..xd.len() {
            if a != ax {
                dims.push(xd[a]);
                offsets.push((0..xd[a]).map(|i| i * st[a]).collect::<Vec<_>>());
            } else if ishape.is_empty() {
                base = picked[0];
            } else {
                dims.push(picked.len());
                offsets.push(std::mem::take(&mut picked));
            }
        }
        let aligned = ishape.len() <= 1 && !dims.is_empty();
        match offsets.first_mut() {
            Some(t) => t.iter_mut().for_each(|o| *o += base),
            None => {
                dims.push(1);
                offsets.push(vec![base]);
            }
        }
        self.tables(n, src, Key::V(y), dims, offsets, aligned)
    }

    /// ONNX Slice with constant starts, ends, axes and steps on per-sample axes (the batch
    /// axis only taken whole).
    pub(super) fn slice(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let xd = self.dims(x)?;
        let rank = xd.len();
        let need = |v: Option<(Vec<usize>, Vec<i64>)>, what: &str| {
            v.map(|(_, d)| d)
                .ok_or_else(|| self.unsupported(n, format!("no {what}")))
        };
        let starts = need(self.const_ints(n, 1, "starts")?, "starts")?;
        let ends = need(self.const_ints(n, 2, "ends")?, "ends")?;
        let axes = match self.const_ints(n, 3, "axes")? {
            Some((_, a)) => a,
            None => (0..starts.len() as i64).collect(),
        };
        let steps = match self.const_ints(n, 4, "steps")? {
            Some((_, s)) => s,
            None => vec![1; starts.len()],
        };
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(self.unsupported(n, "its starts, ends, axes and steps differ in length"));
        }
        let st = strides_of(&xd);
        let mut picks: Vec<Vec<usize>> = xd.iter().map(|&d| (0..d).collect()).collect();
        let mut seen = vec![false; rank];
        for i in 0..starts.len() {
            let r = rank as i64;
            let a = if axes[i] < 0 { axes[i] + r } else { axes[i] };
            if a < 0 || a >= r || seen[a as usize] {
                return Err(
                    self.unsupported(n, format!("axis {} is out of range or repeated", axes[i]))
                );
            }
            seen[a as usize] = true;
            if a == 0 {
                // The whole batch, in order, is the only slice of it that keeps samples apart.
                let whole = starts[i] == 0 && steps[i] == 1 && ends[i] >= i64::from(i32::MAX);
                if !whole {
                    return Err(
                        self.unsupported(n, "it slices the batch axis (it would mix samples)")
                    );
                }
                continue;
            }
            let a = a as usize;
            picks[a] = slice_picks(xd[a], starts[i], ends[i], steps[i])
                .ok_or_else(|| self.unsupported(n, "a step of 0"))?;
        }
        let (src, _) = self.moved(n, x)?;
        let dims: Vec<usize> = picks[1..].iter().map(Vec::len).collect();
        let offsets = picks[1..]
            .iter()
            .zip(&st[1..])
            .map(|(p, &s)| p.iter().map(|&i| i * s).collect())
            .collect();
        self.tables(n, src, Key::V(y), dims, offsets, true)
    }

    /// ONNX Split on a per-sample axis: one step per output that is read.
    pub(super) fn split(&mut self, n: NodeId, sp: &op::Split, x: ValueId) -> R<()> {
        let outs = self
            .g
            .node(n)
            .map(|node| node.outputs.clone())
            .unwrap_or_default();
        let xd = self.dims(x)?;
        let ax = self.sample_axis(n, sp.axis, xd.len())?;
        let len = xd[ax];
        let parts = if sp.num_outputs > 0 {
            sp.num_outputs as usize
        } else {
            outs.len()
        };
        if parts == 0 || parts != outs.len() {
            return Err(self.unsupported(n, format!("{parts} parts for {} outputs", outs.len())));
        }
        let sizes: Vec<usize> = match self.const_ints(n, 1, "split sizes")? {
            Some((_, v)) => {
                let ok = v.len() == parts
                    && v.iter().all(|&d| d >= 0)
                    && v.iter().try_fold(0usize, |a, &d| a.checked_add(d as usize)) == Some(len);
                if !ok {
                    return Err(self.unsupported(
                        n,
                        format!("split sizes {v:?} do not cut {len} into {parts}"),
                    ));
                }
                v.iter().map(|&d| d as usize).collect()
            }
            None => {
                let each = len.div_ceil(parts);
                (0..parts)
                    .map(|i| each.min(len.saturating_sub(i * each)))
                    .collect()
            }
        };
        let st = strides_of(&xd);
        let mut at = 0;
        for (&y, &size) in outs.iter().zip(&sizes) {
            if self.g.is_used(y) {
                let (src, _) = self.moved(n, x)?;
                let mut dims = vec![];
                let mut offsets = vec![];
                for a in 1..xd.len() {
                    let range = if a == ax { at..at + size } else { 0..xd[a] };
                    dims.push(range.len());
                    offsets.push(range.map(|i| i * st[a]).collect());
                }
                self.tables(n, src, Key::V(y), dims, offsets, true)?;
            }
            at += size;
        }
        Ok(())
    }

    /// ONNX DepthToSpace (`to_space`) and SpaceToDepth, as the evaluator defines them: on
    /// the spread-out side, position `(c, row, col)` is channel `(by·b + bx)·C + c` (`DCR`)
    /// or `c·b² + by·b + bx` (`CRD`) at `(row / b, col / b)` on the deep side, with
    /// `by, bx = row % b, col % b` — a sum of one term per axis, so one table per axis.
    pub(super) fn depth_space(
        &mut self,
        n: NodeId,
        x: ValueId,
        y: ValueId,
        blocksize: i64,
        mode: mcc_ir::BlockOrder,
        to_space: bool,
    ) -> R<()> {
        let (src, xd) = self.moved(n, x)?;
        let yd = self.dims(y)?;
        let (&[_, xc, xh, xw], &[_, yc, yh, yw]) = (xd.as_slice(), yd.as_slice()) else {
            return Err(self.unsupported(n, "only 4-D (N, C, H, W) tensors are compiled"));
        };
        let b = usize::try_from(blocksize)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| self.unsupported(n, format!("blocksize {blocksize}")))?;
        let area = b * b;
        let (deep, wide) = if to_space {
            ((xc, xh, xw), (yc, yh, yw))
        } else {
            ((yc, yh, yw), (xc, xh, xw))
        };
        // The channels of the spread-out side.
        let c = wide.0;
        if deep.0 != c * area || wide.1 != deep.1 * b || wide.2 != deep.2 * b {
            return Err(self.unsupported(n, "its result's shape does not match its blocks"));
        }
        // Strides of the source, (channel, row, column).
        let (sc, sh) = (xh * xw, xw);
        let by_channel = |by: usize, bx: usize, ci: usize| match mode {
            mcc_ir::BlockOrder::Dcr => (by * b + bx) * c + ci,
            mcc_ir::BlockOrder::Crd => ci * area + by * b + bx,
        };
        let offsets: Vec<Vec<usize>> = if to_space {
            // Source: deep; output axes: the spread-out (c, row, col).
            vec![
                (0..yc).map(|ci| by_channel(0, 0, ci) * sc).collect(),
                (0..yh)
                    .map(|row| by_channel(row % b, 0, 0) * sc + row / b * sh)
                    .collect(),
                (0..yw)
                    .map(|col| by_channel(0, col % b, 0) * sc + col / b)
                    .collect(),
            ]
        } else {
            // Source: spread out; output axes: the deep (channel, row, col).
            let channel = |ch: usize| {
                let (ci, by, bx) = match mode {
                    mcc_ir::BlockOrder::Dcr => (ch % c, ch / c / b, ch / c % b),
                    mcc_ir::BlockOrder::Crd => (ch / area, ch % area / b, ch % b),
                };
                ci * sc + by * sh + bx
            };
            vec![
                (0..yc).map(channel).collect(),
                (0..yh).map(|r| r * b * sh).collect(),
                (0..yw).map(|col| col * b).collect(),
            ]
        };
        self.tables(n, src, Key::V(y), yd[1..].to_vec(), offsets, true)
    }

    /// ONNX Expand of a constant or a computed tensor to the result's type (its shape
    /// operand is not read: the type says the size, fixed but for the batch).
    pub(super) fn expand(&mut self, n: NodeId, x: ValueId, y: ValueId) -> R<()> {
        let yd = self.dims(y)?;
        let rank = yd.len();
        let (src, shape) = match self.constant(Some(x)) {
            Some((shape, data)) => {
                if shape.len() > rank {
                    return Err(self.unsupported(n, "its data has more axes than the result"));
                }
                if shape.len() == rank && shape[0] != 1 {
                    return Err(self.unsupported(n, "its data varies along the batch axis"));
                }
                let off = self.push_weights(&data);
                let len = data.len();
                (Src::Weight { off, len }, shape)
            }
            None => {
                let (src, d) = self.moved(n, x)?;
                if d.len() != rank {
                    return Err(self.unsupported(
                        n,
                        "its data has fewer axes than the result (its batch axis would move)",
                    ));
                }
                (src, d)
            }
        };
        // Right-aligned; a constant's leading axes (absent or 1) broadcast over the batch.
        let pad = rank - shape.len();
        let st = strides_of(&shape);
        let mut dims = vec![];
        let mut offsets = vec![];
        for a in 1..rank {
            let (d, s) = if a >= pad {
                (shape[a - pad], st[a - pad])
            } else {
                (1, 0)
            };
            if d != 1 && d != yd[a] {
                return Err(self.unsupported(n, "its data does not broadcast to the result"));
            }
            let s = if d == 1 { 0 } else { s };
            dims.push(yd[a]);
            offsets.push((0..yd[a]).map(|i| i * s).collect());
        }
        self.tables(n, src, Key::V(y), dims, offsets, true)
    }
}

#[cfg(test)]
mod tests {
    use super::{simplify, slice_picks};

    #[test]
    fn slice_picks_follow_onnx() {
        assert_eq!(slice_picks(5, 1, 4, 1), Some(vec![1, 2, 3]));
        assert_eq!(slice_picks(5, -1, -6, -2), Some(vec![4, 2, 0]));
        assert_eq!(slice_picks(5, 0, i64::MAX, 2), Some(vec![0, 2, 4]));
        assert_eq!(
            slice_picks(5, i64::MAX, i64::MIN, -1),
            Some(vec![4, 3, 2, 1, 0])
        );
        assert_eq!(slice_picks(5, 3, 1, 1), Some(vec![]));
        assert_eq!(slice_picks(5, 0, 3, 0), None);
    }

    #[test]
    fn simplify_merges_contiguous_runs_and_drops_unit_axes() {
        // [2][1][3][4] contiguous with a unit axis at offset 12 → one run after the unit
        // offset moves into the outer table.
        let (d, o) = simplify(
            vec![2, 1, 3, 4],
            vec![vec![0, 24], vec![12], vec![0, 4, 8], vec![0, 1, 2, 3]],
        );
        assert_eq!(d, [2, 12]);
        assert_eq!(o[0], [12, 36]);
        assert_eq!(o[1], (0..12).collect::<Vec<_>>());
        // A gathered axis stays.
        let (d, _) = simplify(vec![2, 3], vec![vec![3, 0], vec![0, 1, 2]]);
        assert_eq!(d, [2, 3]);
        let (d, o) = simplify(vec![1], vec![vec![7]]);
        assert_eq!((d, o), (vec![1], vec![vec![7]]));
    }
}
