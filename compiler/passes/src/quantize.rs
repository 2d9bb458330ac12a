//! What the weight-quantizing techniques (`quantize kmeans`, `binary`, `ternary`, `int4`…)
//! share: finding a layer's weights and the elements earlier steps kept, cutting them into
//! groups (the whole tensor, or each output channel), storing what a variant's fit gives
//! back — a table of values per group and a code per kept weight — as a codebook, and
//! refitting the table on calibration data.
//!
//! **Invariant:** a quantized layer's weights are replaced through [`store`] by a stored
//! constant whose decoded tensor is exactly what its codes and tables say; a weight that was
//! zero stays zero (pruned positions are not kept, so they cost no code), every other weight
//! becomes one of its group's table values. With `refit: on`, the table values minimize the
//! layer's output error on the calibration data for the fixed codes (`Σ_r (w_r − ŵ_r)ᵀ H
//! (w_r − ŵ_r)`, see [`crate::reconstruct`]), a least-squares problem in `2^bits` unknowns
//! per group; the codes do not move.

use mcc_ir::stored::{Coding, Encoding, Granularity, Layout, Parts, Values};
use mcc_ir::{Graph, NodeId, Op, Origin, StepId, Stored, ValueId};
use mcc_plan::plan::{ParamValue, Step};
use mcc_plan::registry::{Default, ParamSchema, ParamType, p};
use mcc_plan::{LeftAlone, Outcome, StatRequest, Stats, Technique, TechniqueError};

use crate::layers;
use crate::linalg::{cholesky, cholesky_solve};
use crate::reconstruct::{self, View};

/// The `per` parameter: one table per tensor or per output channel.
pub const PER: ParamSchema = p(
    "per",
    ParamType::Choice(&["tensor", "channel"]),
    Default::Word("tensor"),
    "one table of values for the whole layer, or one per output channel",
);

/// The `per` parameter of the variants whose tables are one or two magnitudes (binary,
/// ternary): one per output channel by default.
pub const PER_CHANNEL: ParamSchema = p(
    "per",
    ParamType::Choice(&["tensor", "channel"]),
    Default::Word("channel"),
    "one scale for the whole layer, or one per output channel",
);

/// The `refit` parameter: fit the table values to the layer's outputs.
pub const REFIT: ParamSchema = p(
    "refit",
    ParamType::Choice(&["off", "on"]),
    Default::Word("off"),
    "refit each table's values by least squares on calibration data (the codes stay)",
);

/// A step's shared settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// `per: channel`.
    pub per_channel: bool,
    /// `refit: on`.
    pub refit: bool,
}

impl Settings {
    /// The step's settings.
    pub fn of(step: &Step) -> Settings {
        let word =
            |name: &str, on: &str| matches!(step.param(name), Some(ParamValue::Word(w)) if w == on);
        Settings {
            per_channel: word("per", "channel"),
            refit: word("refit", "on"),
        }
    }
}

/// What a variant's fit gives for one group's kept weights: a table of `2^bits` values and,
/// for each weight in the order given, the index of its value, or [`DROP`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// The table (exactly `2^bits` entries; unused entries may hold anything finite).
    pub table: Vec<f64>,
    /// One index per weight, or [`DROP`] for a weight that becomes zero (ternary's middle
    /// value: it is then not stored at all, like a pruned weight).
    pub codes: Vec<u32>,
}

/// The code of a weight the fit sets to zero.
pub const DROP: u32 = u32::MAX;

/// A variant that quantizes to tables: its technique is [`rewrite`] with the code width and
/// the per-group fit its step asks for, so a variant file holds its fit and its registry
/// entry, nothing else.
pub struct Tables {
    /// The code width the step asks for.
    pub bits: fn(&Step) -> u8,
    /// One group's table and codes from its kept weights, as the step asks.
    pub fit: fn(&Step, &[f64]) -> Fit,
}

impl Technique for Tables {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        needs(step, Settings::of(step))
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        Ok(check(graph, step, Settings::of(step)))
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let fit = self.fit;
        rewrite(
            graph,
            step,
            id,
            stats,
            Settings::of(step),
            (self.bits)(step),
            &|v| fit(step, v),
        )
    }
}

/// The statistics a quantizing step asks for before it starts: the first layer's XᵀX when it
/// refits (the others are asked for as the loop reaches them).
pub fn needs(step: &Step, s: Settings) -> Vec<StatRequest> {
    if s.refit {
        layers::first_gram(step)
    } else {
        Vec::new()
    }
}

/// The axis of a layer's weights that indexes its outputs: a Conv's first, a Gemm's first
/// with `transB` and second without, a MatMul's last.
pub fn output_axis(op: &Op, rank: usize) -> usize {
    match op {
        Op::Gemm(g) if g.transB == 0 => 1,
        Op::MatMul(_) => rank.saturating_sub(1),
        _ => 0,
    }
}

/// The layers of `step` a quantizer would leave alone, and why.
pub fn check(graph: &Graph, step: &Step, s: Settings) -> Vec<LeftAlone> {
    step.nodes
        .iter()
        .filter_map(|name| layer(graph, name, s).err())
        .collect()
}

/// A layer a quantizer can change.
pub struct Layer {
    /// The node.
    pub node: NodeId,
    /// Its weight constant.
    pub weights: ValueId,
    /// The weights' shape.
    pub shape: Vec<usize>,
    /// The weights, row-major.
    pub flat: Vec<f32>,
    /// The axis that indexes outputs ([`output_axis`]).
    pub axis: usize,
    /// How the weights map to rows × k, when the step reads calibration statistics.
    pub view: Option<View>,
}

/// The layer `name` with its f32 constant weights; with `s.refit`, also as rows × k (else it
/// is left alone: the statistics are collected for one-group, row-wise layers).
pub fn layer(graph: &Graph, name: &str, s: Settings) -> Result<Layer, LeftAlone> {
    let w = layers::weighted(graph, name)?;
    let shape = w.tensor.shape().to_vec();
    let flat: Vec<f32> = w
        .tensor
        .as_f32()
        .map(|a| a.iter().copied().collect())
        .unwrap_or_default();
    let view = if s.refit {
        Some(reconstruct::view(&w.node.op, &shape).map_err(|why| {
            layers::leave(
                name,
                mcc_plan::Reason::UnsupportedAttribute,
                format!("the calibration statistics need a row-wise input, and this is {why}"),
            )
        })?)
    } else {
        None
    };
    Ok(Layer {
        node: w.id,
        weights: w.weights,
        axis: output_axis(&w.node.op, shape.len()),
        shape,
        flat,
        view,
    })
}

/// Quantizes each layer of `step`: `fit` gives each group's table and codes from its kept
/// weights, in `bits`-bit codes; then the tables are refit when asked and the weights stored
/// as a codebook, one layer at a time in step order.
pub fn rewrite(
    graph: &mut Graph,
    step: &Step,
    id: StepId,
    stats: &mut dyn Stats,
    s: Settings,
    bits: u8,
    fit: &dyn Fn(&[f64]) -> Fit,
) -> Result<Outcome, TechniqueError> {
    let mut out = Outcome::default();
    for name in &step.nodes {
        let l = match layer(graph, name, s) {
            Ok(l) => l,
            Err(left) => {
                out.left_alone.push(left);
                continue;
            }
        };
        let fail = |message: String| TechniqueError {
            node: name.clone(),
            message,
        };
        let n = l.flat.len();
        // −0.0 is a pruned weight too (a masked export's `w * mask`): it stays zero, uncoded.
        let mut keep: Vec<bool> = l.flat.iter().map(|x| *x != 0.0).collect();
        let (groups, group_of) = groups(&l.shape, s.per_channel.then_some(l.axis));
        let size = 1usize << bits;
        // Each group's kept weights, in row-major order.
        let mut members: Vec<Vec<usize>> = vec![vec![]; groups];
        for i in (0..n).filter(|&i| keep[i]) {
            members[group_of(i)].push(i);
        }
        let mut table = vec![0f64; groups * size];
        let mut code = vec![0u32; n];
        for (g, m) in members.iter().enumerate() {
            if m.is_empty() {
                continue;
            }
            let values: Vec<f64> = m.iter().map(|&i| f64::from(l.flat[i])).collect();
            let f = fit(&values);
            if f.table.len() != size || f.codes.len() != m.len() {
                return Err(fail(format!(
                    "the fit gave {} table values and {} codes for {} weights ({size} expected)",
                    f.table.len(),
                    f.codes.len(),
                    m.len()
                )));
            }
            if let Some(c) = f.codes.iter().find(|&&c| c != DROP && c as usize >= size) {
                return Err(fail(format!("the fit gave code {c} for a table of {size}")));
            }
            table[g * size..(g + 1) * size].copy_from_slice(&f.table);
            for (&i, &c) in m.iter().zip(&f.codes) {
                code[i] = c;
                if c == DROP {
                    keep[i] = false;
                }
            }
        }
        let per = if s.per_channel {
            Granularity::Channel(l.axis as u8)
        } else {
            Granularity::Tensor
        };
        let encode = |table: &[f64]| {
            let parts = Parts {
                keep: keep.clone(),
                codes: (0..n)
                    .filter(|&i| keep[i])
                    .map(|i| code[i] as i32)
                    .collect(),
                centroids: table.iter().map(|&v| v as f32).collect(),
                ..Parts::default()
            };
            smallest(
                Values::Codebook { bits, per },
                Coding::None,
                &l.shape,
                &parts,
            )
            .map_err(|e| fail(e.to_string()))
        };
        // The size does not depend on the table's values: decide before any refit.
        let mut stored = encode(&table)?;
        if let Some(left) = not_smaller(graph, name, l.weights, &stored) {
            out.left_alone.push(left);
            continue;
        }
        if let Some(view) = l.view {
            let w0 = reconstruct::to_rows(
                &mcc_ir::Tensor::from_vec(&l.shape, l.flat.clone())
                    .map_err(|e| fail(e.to_string()))?,
                view,
            )
            .ok_or_else(|| fail("its weights are not an f32 constant".into()))?;
            let h = layers::hessian(graph, stats, name, w0.k).map_err(fail)?;
            refit_tables(&mut table, &code, &keep, &w0, &h, view, size, &group_of).map_err(fail)?;
            stored = encode(&table)?;
        }
        store(graph, l.node, l.weights, stored, &step.nodes, id)
            .map_err(|e| fail(e.to_string()))?;
        out.changed.push(name.clone());
        if s.refit {
            stats.invalidate();
        }
    }
    Ok(out)
}

/// Groups of a tensor of `shape`: one, or one per index along `axis`; with the group of each
/// row-major element.
pub fn groups(shape: &[usize], axis: Option<usize>) -> (usize, Box<dyn Fn(usize) -> usize>) {
    match axis {
        None => (1, Box::new(|_| 0)),
        Some(a) => {
            let dim = shape.get(a).copied().unwrap_or(1).max(1);
            let inner: usize = shape.iter().skip(a + 1).product::<usize>().max(1);
            (dim, Box::new(move |i| (i / inner) % dim))
        }
    }
}

/// Refits the table values for fixed codes. Row `r` of `W` (the layer's `r`-th output)
/// contributes `Σ_{i,j kept} H_ij` to the entry of the pair of table values its weights `i`
/// and `j` use, and `(H w0_r)_i` to the right side of `i`'s value; each group's system
/// (all groups share one when `per: tensor`) is solved with a tiny ridge towards the fitted
/// values, so a value no weight uses stays where it was.
#[allow(clippy::too_many_arguments)]
fn refit_tables(
    table: &mut [f64],
    code: &[u32],
    keep: &[bool],
    w0: &reconstruct::Rows,
    h: &[f64],
    view: View,
    size: usize,
    group_of: &dyn Fn(usize) -> usize,
) -> Result<(), String> {
    let (rows, k) = (w0.rows, w0.k);
    // The row-major tensor index of W[r, c].
    let index = |r: usize, c: usize| match view {
        View::Direct => r * k + c,
        View::Transposed => c * rows + r,
    };
    let groups = table.len() / size;
    if groups != 1 && groups != rows {
        return Err(format!(
            "{groups} tables for {rows} outputs: refit takes one table, or one per output"
        ));
    }
    // One system at a time (all rows for one table, or each row for its own), so memory is
    // one `size × size` matrix whatever the number of channels.
    let mut a = vec![0f64; size * size];
    let mut b = vec![0f64; size];
    let mut solve = |g: usize, a: &mut [f64], b: &mut [f64]| -> Result<(), String> {
        let trace: f64 = (0..size).map(|i| a[i * size + i]).sum();
        if trace > 0.0 {
            let ridge = 1e-9 * trace / size as f64;
            for i in 0..size {
                a[i * size + i] += ridge;
                b[i] += ridge * table[g * size + i];
            }
            cholesky(a, size).map_err(|e| {
                format!(
                    "the table's least-squares system is not positive definite (at {})",
                    e.row
                )
            })?;
            cholesky_solve(a, size, b);
            if let Some(v) = b
                .iter()
                .find(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX))
            {
                return Err(format!("the refit gave a table value of {v}"));
            }
            table[g * size..(g + 1) * size].copy_from_slice(b);
        }
        a.iter_mut().for_each(|x| *x = 0.0);
        b.iter_mut().for_each(|x| *x = 0.0);
        Ok(())
    };
    for r in 0..rows {
        let row0 = &w0.data[r * k..(r + 1) * k];
        let kept: Vec<(usize, usize)> = (0..k)
            .filter(|&c| keep[index(r, c)])
            .map(|c| (c, code[index(r, c)] as usize))
            .collect();
        if let Some(&(first, _)) = kept.first() {
            debug_assert!(groups == 1 || group_of(index(r, first)) == r);
            for &(i, ci) in &kept {
                let hi = &h[i * k..(i + 1) * k];
                b[ci] += hi.iter().zip(row0).map(|(x, y)| x * y).sum::<f64>();
                let arow = &mut a[ci * size..(ci + 1) * size];
                for &(j, cj) in &kept {
                    arow[cj] += hi[j];
                }
            }
        }
        if groups == rows {
            solve(r, &mut a, &mut b)?;
        }
    }
    if groups == 1 {
        solve(0, &mut a, &mut b)?;
    }
    Ok(())
}

/// The smallest stored form of `parts` with these values and coding: dense when every
/// element is kept, else the sparse layout whose layout part is smallest
/// (`mcc_ir::stored::smallest_layout`, decided before anything is written).
pub fn smallest(
    values: Values,
    coding: Coding,
    shape: &[usize],
    parts: &Parts,
) -> Result<Stored, mcc_ir::stored::StoredError> {
    let mut parts = parts.clone();
    let layout = match mcc_ir::stored::smallest_layout(shape, &parts.keep) {
        Some((layout, _)) => layout,
        None => {
            parts.keep.clear();
            Layout::Dense
        }
    };
    Stored::new(
        Encoding {
            values,
            layout,
            coding,
        },
        shape,
        &parts,
    )
}

/// The layer left alone when `s` would take no fewer bytes than its weights take now (tables
/// larger than the weights they replace: 256 centroids per channel of 16 weights).
pub fn not_smaller(graph: &Graph, name: &str, w: ValueId, s: &Stored) -> Option<LeftAlone> {
    let now = graph.stored_bytes(w);
    (s.bytes() >= now).then(|| {
        layers::leave(
            name,
            mcc_plan::Reason::NotSmaller,
            format!(
                "as `{}` its weights would take {} bytes, {now} as they are",
                s.encoding(),
                s.bytes()
            ),
        )
    })
}

/// Gives layer `n` the stored weights `s` in place of its constant `w` (a copy when a layer
/// outside `step_nodes` also reads `w`), and records `id` as its origin.
pub fn store(
    graph: &mut Graph,
    n: NodeId,
    w: ValueId,
    s: Stored,
    step_nodes: &[String],
    id: StepId,
) -> Result<(), mcc_ir::GraphError> {
    let shared = graph
        .users(w)
        .iter()
        .any(|&(u, _)| graph.node(u).is_some_and(|x| !step_nodes.contains(&x.name)));
    if shared {
        let base = format!("{}.quantized", graph.value(w).name);
        let fresh = graph.fresh_value_name(&base);
        let nw = graph.add_const(fresh, s.decoded().clone());
        graph.store_const(nw, s);
        graph.set_input(n, 1, Some(nw))?;
    } else {
        graph.store_const(w, s);
    }
    if let Some(node) = graph.node_mut(n) {
        node.origin = Origin::Step(id);
    }
    Ok(())
}
