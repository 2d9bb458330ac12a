//! The calibration context: the statistics techniques ask for ([`StatRequest`]), collected on
//! compiled code over the calibration data, on the model **as it stands when the step runs**,
//! cached until a rewrite changes the model.
//!
//! **Invariant:** statistics are accumulated in f64, sample by sample in data order, from
//! tensors the kernels compute identically on any thread count — so the same inputs give the
//! same bits whatever the thread count.

use std::collections::BTreeMap;
use std::sync::Arc;

use mcc_ir::{Graph, Op, Tensor};
use mcc_plan::{Stat, StatRequest, Stats, TechniqueError};

use crate::measure::Compiled;

/// Calibration data and the statistics collected on it for the current model.
pub struct Calibration {
    x: Option<Tensor>,
    threads: usize,
    cache: BTreeMap<StatRequest, Arc<Stat>>,
}

fn fail(node: &str, message: impl Into<String>) -> TechniqueError {
    TechniqueError {
        node: node.to_string(),
        message: message.into(),
    }
}

/// What one request observes and how it accumulates.
enum Acc {
    Inputs {
        want: usize,
        got: Vec<f32>,
        n: usize,
        dims: Vec<usize>,
    },
    /// The upper triangle of XᵀX, summed [`GRAM_BATCH`] rows at a time (`pending`, row-major)
    /// so the k × k sums are read once per batch, not once per row.
    Gram {
        patch: Patch,
        k: usize,
        rows: usize,
        data: Vec<f64>,
        pending: Vec<f64>,
    },
    /// Row sums, in data order.
    Mean {
        patch: Patch,
        rows: usize,
        sum: Vec<f64>,
    },
    Ranges {
        channels: usize,
        min: Vec<f64>,
        max: Vec<f64>,
    },
    /// Symmetric bins over [−bound, bound]; the bound doubles (and bins merge pairwise into
    /// the middle half) when a value falls outside, so memory stays `bins` whatever the data.
    Histogram {
        bins: usize,
        bound: f64,
        counts: Vec<u64>,
    },
    Zeros {
        channels: usize,
        zeros: Vec<u64>,
        count: Vec<u64>,
    },
}

/// How a layer's input becomes the rows of X.
#[derive(Clone)]
enum Patch {
    /// The last axis is a row (Gemm, MatMul).
    Rows(usize),
    /// Conv im2col: input `[c, h, w]`, kernel, strides, pads (top, left), dilations, output.
    Conv {
        c: usize,
        h: usize,
        w: usize,
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
        out: [usize; 2],
    },
}

impl Patch {
    fn width(&self) -> usize {
        match self {
            Patch::Rows(k) => *k,
            Patch::Conv { c, k, .. } => c * k[0] * k[1],
        }
    }

    /// Calls `row` with each row of X from one sample's input.
    fn rows(&self, x: &[f32], row: &mut dyn FnMut(&[f64])) {
        match self {
            Patch::Rows(k) => {
                let mut buf = vec![0.0; *k];
                for r in x.chunks_exact((*k).max(1)) {
                    for (b, &v) in buf.iter_mut().zip(r) {
                        *b = f64::from(v);
                    }
                    row(&buf);
                }
            }
            Patch::Conv {
                c,
                h,
                w,
                k,
                s,
                p,
                d,
                out,
            } => {
                let mut buf = vec![0.0; c * k[0] * k[1]];
                for oy in 0..out[0] {
                    for ox in 0..out[1] {
                        let mut i = 0;
                        for ci in 0..*c {
                            for ky in 0..k[0] {
                                for kx in 0..k[1] {
                                    let y = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                                    let xx = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                                    buf[i] = if y >= 0
                                        && xx >= 0
                                        && (y as usize) < *h
                                        && (xx as usize) < *w
                                    {
                                        f64::from(x[(ci * h + y as usize) * w + xx as usize])
                                    } else {
                                        0.0
                                    };
                                    i += 1;
                                }
                            }
                        }
                        row(&buf);
                    }
                }
            }
        }
    }
}

impl Calibration {
    /// A context over `x` (None: no calibration data; every request is then an error).
    pub fn new(x: Option<Tensor>, threads: usize) -> Calibration {
        Calibration {
            x,
            threads,
            cache: BTreeMap::new(),
        }
    }

    /// Forgets every statistic: the model changed.
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Collects every request not cached yet in one pass over the data, on `graph` compiled.
    pub fn collect(
        &mut self,
        graph: &Graph,
        requests: &[StatRequest],
    ) -> Result<(), TechniqueError> {
        let todo: Vec<&StatRequest> = requests
            .iter()
            .filter(|r| !self.cache.contains_key(*r))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let Some(x) = &self.x else {
            return Err(fail(
                todo[0].subject(),
                "this step needs calibration data: add `calibrate with \"FILE.npy\"` to the recipe",
            ));
        };
        // What each request observes, and its accumulator.
        let mut observe: Vec<String> = vec![];
        let mut accs: Vec<(usize, Acc)> = vec![];
        for r in &todo {
            let (value, acc) = plan(graph, r)?;
            let slot = match observe.iter().position(|v| *v == value) {
                Some(i) => i,
                None => {
                    observe.push(value);
                    observe.len() - 1
                }
            };
            accs.push((slot, acc));
        }
        let model =
            Compiled::for_data(graph, &observe, Some(x)).map_err(|e| fail("", e.to_string()))?;
        model
            .for_each(x, 32, self.threads, |b| {
                for (slot, acc) in accs.iter_mut() {
                    let t = b.observed(*slot);
                    let per = t.len() / b.samples.max(1);
                    for s in 0..b.samples {
                        add(acc, &t[s * per..(s + 1) * per], self.threads);
                    }
                }
                Ok(())
            })
            .map_err(|e| fail("", e.to_string()))?;
        for (r, (_, acc)) in todo.into_iter().zip(accs) {
            self.cache.insert(r.clone(), Arc::new(finish(acc)?));
        }
        Ok(())
    }
}

impl Stats for Calibration {
    fn get(&mut self, graph: &Graph, request: &StatRequest) -> Result<Arc<Stat>, TechniqueError> {
        self.collect(graph, std::slice::from_ref(request))?;
        self.cache
            .get(request)
            .cloned()
            .ok_or_else(|| fail(request.subject(), "the statistic was not collected"))
    }

    fn invalidate(&mut self) {
        Calibration::invalidate(self);
    }
}

/// The tensor a request observes (by value name) and its empty accumulator.
fn plan(graph: &Graph, r: &StatRequest) -> Result<(String, Acc), TechniqueError> {
    let value = |name: &str| {
        let v = graph
            .find_value(name)
            .ok_or_else(|| fail(name, "no such tensor"))?;
        let dims = dims_of(graph, v).ok_or_else(|| fail(name, "its shape is not known"))?;
        Ok::<_, TechniqueError>(dims)
    };
    Ok(match r {
        StatRequest::Inputs { layer, samples } => {
            let (_, x, dims) = layer_input(graph, layer)?;
            (
                graph.value(x).name.clone(),
                Acc::Inputs {
                    want: *samples,
                    got: vec![],
                    n: 0,
                    dims,
                },
            )
        }
        StatRequest::Gram { layer } => {
            let (x, patch) = patch_of(graph, layer, false)?;
            let k = patch.width();
            if k > 4096 {
                return Err(fail(
                    layer,
                    format!("XᵀX of width {k} is too large to collect (at most 4096)"),
                ));
            }
            (
                graph.value(x).name.clone(),
                Acc::Gram {
                    patch,
                    k,
                    rows: 0,
                    data: vec![0.0; k * k],
                    pending: Vec::with_capacity(GRAM_BATCH * k),
                },
            )
        }
        StatRequest::Mean { layer } => {
            let (x, patch) = patch_of(graph, layer, true)?;
            let k = patch.width();
            (
                graph.value(x).name.clone(),
                Acc::Mean {
                    patch,
                    rows: 0,
                    sum: vec![0.0; k],
                },
            )
        }
        StatRequest::Ranges { value: name } => {
            // A tensor whose shape is known only at run time (a transformer's tokens before
            // shape arithmetic is folded) has one range.
            let v = graph
                .find_value(name)
                .ok_or_else(|| fail(name, "no such tensor"))?;
            let channels = dims_of(graph, v)
                .and_then(|d| d.first().copied())
                .unwrap_or(1);
            (
                name.clone(),
                Acc::Ranges {
                    channels,
                    min: vec![f64::INFINITY; channels],
                    max: vec![f64::NEG_INFINITY; channels],
                },
            )
        }
        StatRequest::Histogram { value: name, bins } => {
            graph
                .find_value(name)
                .ok_or_else(|| fail(name, "no such tensor"))?;
            // A multiple of 4, so doubling the bound merges bins exactly.
            let bins = (*bins).clamp(4, 1 << 16).div_ceil(4) * 4;
            (
                name.clone(),
                Acc::Histogram {
                    bins,
                    bound: 0.0,
                    counts: vec![0; bins],
                },
            )
        }
        StatRequest::ZeroFraction { value: name } => {
            let dims = value(name)?;
            let channels = dims.first().copied().unwrap_or(1);
            (
                name.clone(),
                Acc::Zeros {
                    channels,
                    zeros: vec![0; channels],
                    count: vec![0; channels],
                },
            )
        }
    })
}

/// How a layer's input becomes the rows of X (`groups`: a grouped Conv's patches span all of
/// its input channels), and the input it reads.
fn patch_of(
    graph: &Graph,
    layer: &str,
    groups: bool,
) -> Result<(mcc_ir::ValueId, Patch), TechniqueError> {
    // A Gemm or MatMul reads rows of its input's last axis, as wide as its constant
    // matrix says (a transformer's [N, tokens, features] may have no known shape
    // before shape arithmetic is folded); other layers need their input's shape.
    let rows = graph
        .find_node(layer)
        .and_then(|id| graph.node(id))
        .filter(|n| matches!(n.op, Op::Gemm(_) | Op::MatMul(_)))
        .and_then(|n| {
            let x = n.inputs.first().copied().flatten()?;
            let w = graph.const_data(n.inputs.get(1).copied().flatten()?)?;
            let &[r, c] = w.shape() else { return None };
            let k = match &n.op {
                Op::Gemm(g) if g.transB != 0 => c,
                _ => r,
            };
            Some((x, Patch::Rows(k)))
        });
    let (x, patch) = match rows {
        Some(found) => found,
        None => {
            let (node, x, dims) = layer_input(graph, layer)?;
            let patch = match &node.op {
                Op::Gemm(_) | Op::MatMul(_) => Patch::Rows(dims.last().copied().unwrap_or(1)),
                Op::Conv(c)
                    if (groups || c.group == 1)
                        && dims.len() == 3
                        && c.auto_pad == mcc_ir::AutoPad::NotSet =>
                {
                    let out = node
                        .outputs
                        .first()
                        .and_then(|&o| dims_of(graph, o))
                        .ok_or_else(|| fail(layer, "its output's shape is not known"))?;
                    let w = node
                        .inputs
                        .get(1)
                        .copied()
                        .flatten()
                        .and_then(|w| graph.const_data(w))
                        .ok_or_else(|| fail(layer, "its weights are not constant"))?;
                    let ks = w.shape();
                    let two = |v: &[i64], d: i64| -> [usize; 2] {
                        [
                            v.first().copied().unwrap_or(d) as usize,
                            v.get(1).copied().unwrap_or(d) as usize,
                        ]
                    };
                    Patch::Conv {
                        c: dims[0],
                        h: dims[1],
                        w: dims[2],
                        k: [ks[2], ks[3]],
                        s: two(&c.strides, 1),
                        p: two(&c.pads, 0),
                        d: two(&c.dilations, 1),
                        out: [
                            out.get(1).copied().unwrap_or(0),
                            out.get(2).copied().unwrap_or(0),
                        ],
                    }
                }
                other => {
                    return Err(fail(
                        layer,
                        format!(
                            "rows of X are collected for Gemm, MatMul and 2-D{} Conv layers with explicit pads, not this {}",
                            if groups { "" } else { " one-group" },
                            other.name()
                        ),
                    ));
                }
            };
            (x, patch)
        }
    };
    Ok((x, patch))
}

/// A value's shape without its batch axis, if every size is known.
fn dims_of(graph: &Graph, v: mcc_ir::ValueId) -> Option<Vec<usize>> {
    graph
        .value(v)
        .ty
        .shape
        .as_ref()?
        .iter()
        .skip(1)
        .map(mcc_ir::Dim::fixed)
        .collect()
}

/// A layer, its first input, and that input's shape without the batch axis.
fn layer_input<'g>(
    graph: &'g Graph,
    layer: &str,
) -> Result<(&'g mcc_ir::Node, mcc_ir::ValueId, Vec<usize>), TechniqueError> {
    let n = graph
        .find_node(layer)
        .and_then(|id| graph.node(id))
        .ok_or_else(|| fail(layer, "no such layer"))?;
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| fail(layer, "the layer has no input"))?;
    let dims = dims_of(graph, x).ok_or_else(|| fail(layer, "its input's shape is not known"))?;
    Ok((n, x, dims))
}

/// Adds one sample's tensor.
/// Rows of X summed into XᵀX at a time.
const GRAM_BATCH: usize = 256;

/// Adds the pending rows' products to the upper triangle of `data` (k × k) and empties
/// `pending`. Each entry sums its products row by row in data order (as if added one row at
/// a time), so the result does not depend on `threads`: the rows of `data` are cut into bands
/// that stay in cache over the whole batch, and the bands are shared out among the threads
/// (each band is written by one thread only).
fn gram_flush(data: &mut [f64], pending: &mut Vec<f64>, k: usize, threads: usize) {
    const BAND: usize = 32;
    if k == 0 || pending.is_empty() {
        pending.clear();
        return;
    }
    let rows: &[f64] = pending;
    let work = |i0: usize, band: &mut [f64]| {
        for row in rows.chunks_exact(k) {
            for i in i0..(i0 + BAND).min(k) {
                let ri = row[i];
                if ri == 0.0 {
                    continue;
                }
                let line = &mut band[(i - i0) * k + i..(i - i0 + 1) * k];
                for (d, &rj) in line.iter_mut().zip(&row[i..]) {
                    *d += ri * rj;
                }
            }
        }
    };
    let bands: Vec<(usize, &mut [f64])> = data
        .chunks_mut(BAND * k)
        .enumerate()
        .map(|(b, slice)| (b * BAND, slice))
        .collect();
    let threads = threads.clamp(1, bands.len());
    if threads == 1 {
        for (i0, band) in bands {
            work(i0, band);
        }
    } else {
        // Interleaved, so each thread gets long and short rows of the triangle alike.
        let mut shares: Vec<Vec<(usize, &mut [f64])>> = (0..threads).map(|_| vec![]).collect();
        for (n, b) in bands.into_iter().enumerate() {
            shares[n % threads].push(b);
        }
        let work = &work;
        std::thread::scope(|scope| {
            for share in shares {
                scope.spawn(move || {
                    for (i0, band) in share {
                        work(i0, band);
                    }
                });
            }
        });
    }
    pending.clear();
}

fn add(acc: &mut Acc, t: &[f32], threads: usize) {
    match acc {
        Acc::Inputs { want, got, n, .. } => {
            if *n < *want {
                got.extend_from_slice(t);
                *n += 1;
            }
        }
        Acc::Gram {
            patch,
            k,
            rows,
            data,
            pending,
        } => {
            let k = *k;
            patch.rows(t, &mut |r| {
                *rows += 1;
                pending.extend_from_slice(r);
                if pending.len() == GRAM_BATCH * k {
                    gram_flush(data, pending, k, threads);
                }
            });
        }
        Acc::Mean { patch, rows, sum } => {
            patch.rows(t, &mut |r| {
                *rows += 1;
                for (s, &v) in sum.iter_mut().zip(r) {
                    *s += v;
                }
            });
        }
        Acc::Ranges { channels, min, max } => {
            let per = t.len() / (*channels).max(1);
            for (i, &v) in t.iter().enumerate() {
                let c = (i / per.max(1)).min(*channels - 1);
                let v = f64::from(v);
                // NaN propagates (f64::min/max would skip it and hide a broken layer).
                min[c] = if v.is_nan() || min[c].is_nan() {
                    f64::NAN
                } else {
                    min[c].min(v)
                };
                max[c] = if v.is_nan() || max[c].is_nan() {
                    f64::NAN
                } else {
                    max[c].max(v)
                };
            }
        }
        Acc::Histogram {
            bins,
            bound,
            counts,
        } => {
            for &v in t {
                let v = f64::from(v);
                if !v.is_finite() {
                    continue;
                }
                if v.abs() > *bound {
                    if *bound == 0.0 {
                        // The first nonzero value sets the scale: the next power of two.
                        *bound = 2f64.powi(v.abs().log2().ceil() as i32);
                    }
                    while v.abs() > *bound {
                        let mut merged = vec![0u64; *bins];
                        for (i, &c) in counts.iter().enumerate() {
                            merged[*bins / 4 + i / 2] += c;
                        }
                        *counts = merged;
                        *bound *= 2.0;
                    }
                }
                let u = if *bound > 0.0 {
                    (v + *bound) / (2.0 * *bound)
                } else {
                    0.5
                };
                let b = ((u * *bins as f64) as usize).min(*bins - 1);
                counts[b] += 1;
            }
        }
        Acc::Zeros {
            channels,
            zeros,
            count,
        } => {
            let per = t.len() / (*channels).max(1);
            for (i, &v) in t.iter().enumerate() {
                let c = (i / per.max(1)).min(*channels - 1);
                count[c] += 1;
                if v == 0.0 {
                    zeros[c] += 1;
                }
            }
        }
    }
}

fn finish(acc: Acc) -> Result<Stat, TechniqueError> {
    Ok(match acc {
        Acc::Inputs { got, n, dims, .. } => {
            let mut shape = vec![n];
            shape.extend(dims);
            Stat::Inputs(Tensor::from_vec(&shape, got).map_err(|e| fail("", e.to_string()))?)
        }
        Acc::Gram {
            k,
            rows,
            mut data,
            mut pending,
            ..
        } => {
            gram_flush(&mut data, &mut pending, k, 1);
            for i in 0..k {
                for j in 0..i {
                    data[i * k + j] = data[j * k + i];
                }
            }
            Stat::Gram { k, rows, data }
        }
        Acc::Mean { rows, sum, .. } => Stat::Mean {
            mean: sum.iter().map(|s| s / rows.max(1) as f64).collect(),
            rows,
        },
        Acc::Ranges { min, max, .. } => Stat::Ranges { min, max },
        Acc::Histogram { bound, counts, .. } => Stat::Histogram { bound, counts },
        Acc::Zeros { zeros, count, .. } => Stat::ZeroFraction(
            zeros
                .iter()
                .zip(&count)
                .map(|(&z, &n)| if n > 0 { z as f64 / n as f64 } else { 0.0 })
                .collect(),
        ),
    })
}
