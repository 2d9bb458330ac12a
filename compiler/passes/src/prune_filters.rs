//! `prune filters`: remove whole output channels, so the graph really shrinks and runs on the
//! dense kernels at its new shapes. For each selected layer, its channel dependency group
//! (`crate::channels`: the layers whose filters must go together, through norms, activations,
//! pools, residual joins and Concats, and the layers reading them) keeps `keep` of its
//! channels, ranked by `by` — rounded by `align` (default: in groups of 32 channels or more)
//! to the nearest multiple of 16, the kernels' tile width: 22 channels cost what 32 do, so
//! they would save nothing, and tensors of whole tiles keep the channel-blocked layout:
//!
//! - `l1` / `l2` (Li et al., "Pruning filters for efficient ConvNets"): the norm of each
//!   channel's filter, summed over the group's producers;
//! - `bn_gamma` (network slimming, Liu et al.): |γ| of the group's BatchNormalizations,
//!   summed (read before any `merge batchnorm` folds them away);
//! - `apoz` (network trimming, Hu et al.): the average percentage of zeros of each channel
//!   where the group's first reader reads it (after its activation), on the calibration
//!   data — the channels most often zero go first;
//! - `thinet` (Luo et al.): greedy selection by the next layers' reconstruction — the
//!   channels whose removal together changes the readers' outputs least on the calibration
//!   data go first. With each reader's XᵀX (`H`) and weights (`W`, rows × k, channel `c`'s
//!   inputs the block `B_c`), removing the set `T` moves the readers' outputs by
//!   `Σ_{a,b∈T} C_ab`, `C_ab = Σ_readers Σ_o W_{o,B_a} H_{B_a,B_b} W_{o,B_b}ᵀ`; channels are
//!   added to `T` one at a time, each the one that adds least.
//!
//! With `refit: on`, every layer reading the group has its kept input weights refit by least
//! squares to reproduce its original outputs on the calibration data (He et al.'s channel
//! pruning reconstruction), from its XᵀX collected before the channels go.
//!
//! Keeps: every shape consistent — producers lose output channels (weights and bias), norms
//! their per-channel parameters, depthwise convolutions their filters (and `group`), readers
//! the matching input channels (a Gemm after a Flatten the matching blocks of features),
//! each at the group's offset when a Concat put the channels into a wider tensor; the graph's
//! inputs and outputs are unchanged. At least one channel stays. Groups are pruned one at a
//! time in step order, the graph re-typed after each (so the next group's offsets are those
//! of the shrunk Concat).
//!
//! Leaves alone (reported): layers whose group reaches a graph input or output, a tensor a
//! Concat produces within the group (its operands' channels would have to be split), a
//! residual join after a Concat, a grouped (not depthwise) convolution, a Reshape or another
//! operator mcc cannot shrink yet, and depthwise convolutions themselves (their channels are
//! their input's: prune the layer before them).

use std::collections::BTreeSet;

use mcc_ir::{Graph, NodeId, Op, Origin, StepId, Tensor, ValueId};
use mcc_plan::plan::{ParamValue, Severity, Step};
use mcc_plan::registry::{
    Applies, CRITERIA, Default, ParamIssue, ParamSchema, ParamType, Params, RATIO, Status, Sweep,
    VariantSchema, num, p,
};
use mcc_plan::{
    Infeasible, LeftAlone, Outcome, Reason, StatRequest, Stats, Technique, TechniqueError,
};

use crate::channels::{self, Group, Reader, Slice};
use crate::layers;
use crate::prune;
use crate::reconstruct::{self, View};

/// `prune filters`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "filters",
    summary: "remove whole output channels (and what reads them), ranked by a criterion",
    params: &[
        p("keep", RATIO, Default::Required, "fraction of filters kept"),
        p("by", CRITERIA, Default::Word("l1"), "ranking criterion"),
        prune::REFIT,
        ALIGN,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneFilters { inputs: false }),
    check_params,
    sweep: Some(KEEP_SWEEP),
};

/// How kept channel counts are rounded to the kernels' 16-channel tiles ([`Align`]).
pub const ALIGN: ParamSchema = p(
    "align",
    ParamType::Choice(&["wide", "tiles", "exact"]),
    Default::Word("wide"),
    "round kept counts to 16-channel tiles in groups of 32+ (wide), of 16+ (tiles), or not",
);

/// How a group's kept channel count is rounded (the `align` parameter).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Align {
    /// Groups of two tiles or more keep a whole number of tiles; smaller ones what was asked.
    Wide,
    /// Every group of a tile or more keeps a whole number of tiles: a 16-channel group stays
    /// whole, and the channel counts stay whole tiles, so the tensors keep the channel-blocked
    /// layout (a Concat joins blocked operands only when each is whole tiles).
    Tiles,
    /// Exactly the asked fraction.
    Exact,
}

impl Align {
    fn of(step: &Step) -> Align {
        match step.param("align") {
            Some(ParamValue::Word(w)) if w == "tiles" => Align::Tiles,
            Some(ParamValue::Word(w)) if w == "exact" => Align::Exact,
            _ => Align::Wide,
        }
    }
}

/// What `mcc sensitivity` and `keep: auto` try, weakest first: the fraction of filters (or
/// channels) kept.
pub const KEEP_SWEEP: Sweep = Sweep {
    param: "keep",
    values: &[0.9, 0.75, 0.6, 0.5, 0.4, 0.3],
};

/// Keeping everything is a no-op, keeping nothing removes the layer; two criteria are not
/// built yet.
pub fn check_params(params: &Params) -> Vec<ParamIssue> {
    let mut out = vec![];
    match num(params, "keep") {
        Some(1.0) => out.push(ParamIssue {
            severity: Severity::Warning,
            param: "keep",
            message: "keeping 100% changes nothing".into(),
            label: "no effect".into(),
            help: None,
        }),
        Some(0.0) => out.push(ParamIssue {
            severity: Severity::Error,
            param: "keep",
            message: "keeping no filter would remove the layers".into(),
            label: "keep must be above 0%".into(),
            help: None,
        }),
        _ => {}
    }
    out
}

/// `prune channels`: the registry entry.
pub const CHANNELS: VariantSchema = VariantSchema {
    name: "channels",
    summary: "remove whole input channels (and the filters that make them), ranked by a criterion",
    params: &[
        p(
            "keep",
            RATIO,
            Default::Required,
            "fraction of channels kept",
        ),
        p("by", CRITERIA, Default::Word("l1"), "ranking criterion"),
        prune::REFIT,
        ALIGN,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneFilters { inputs: true }),
    check_params,
    sweep: Some(KEEP_SWEEP),
};

/// Filter pruning as a technique: `prune filters` selects the layers that make the channels,
/// `prune channels` (`inputs`) the layers that read them. Either way the channels' whole
/// dependency group shrinks — its producers' filters and every reader's inputs.
pub struct PruneFilters {
    /// The selected layers read the channels (`prune channels`): each stands for the group
    /// of its input, and `l1`/`l2` rank by the readers' weights on each channel.
    pub inputs: bool,
}

impl PruneFilters {
    /// The producer whose group the selected layer `n` names.
    fn target(&self, graph: &Graph, n: NodeId) -> Result<NodeId, channels::Obstacle> {
        if self.inputs {
            channels::producer_before(graph, n)
        } else {
            Ok(n)
        }
    }

    /// The group the selected layer `n` names.
    fn group(&self, graph: &Graph, n: NodeId) -> Result<Group, channels::Obstacle> {
        channels::group_of(graph, self.target(graph, n)?)
    }
}

fn refit(step: &Step) -> bool {
    matches!(step.param("refit"), Some(ParamValue::Word(w)) if w == "on")
}

fn apoz(step: &Step) -> bool {
    matches!(step.param("by"), Some(ParamValue::Word(w)) if w == "apoz")
}

fn thinet(step: &Step) -> bool {
    matches!(step.param("by"), Some(ParamValue::Word(w)) if w == "thinet")
}

/// ThiNet's greedy order over the group's channels, as scores (the first to go scores
/// lowest), from every reader's XᵀX on the model as it stands.
fn thinet_scores(graph: &Graph, g: &Group, stats: &mut dyn Stats) -> Result<Vec<f64>, String> {
    let c = g.channels;
    let mut cost = vec![0f64; c * c];
    for &(r, how, at) in &g.readers {
        let node = graph.node(r).ok_or("a reader vanished")?;
        let name = node.name.clone();
        let t = operand(graph, r, 1).ok_or("a reader's weights are not constant")?;
        let view = reconstruct::view(&node.op, t.shape())?;
        let w = reconstruct::to_rows(t, view).ok_or("a reader's weights are not f32")?;
        let h = layers::hessian(graph, stats, &name, w.k)?;
        let per = per_channel(how, at, w.k)
            .ok_or_else(|| format!("`{name}` reads {} inputs for {} channels", w.k, at.total))?;
        // Q_a = W_{·,B_a} H_{B_a,·} (rows × k), then C_ab += Σ_o Q_a[o, B_b] · W[o, B_b].
        let mut q = vec![0f64; w.k];
        for a in 0..c {
            for o in 0..w.rows {
                let row = &w.data[o * w.k..(o + 1) * w.k];
                q.iter_mut().for_each(|x| *x = 0.0);
                for i in at.features(a, per) {
                    let wi = row[i];
                    if wi == 0.0 {
                        continue;
                    }
                    for (x, hv) in q.iter_mut().zip(&h[i * w.k..(i + 1) * w.k]) {
                        *x += wi * hv;
                    }
                }
                for b in 0..c {
                    cost[a * c + b] += at.features(b, per).map(|j| q[j] * row[j]).sum::<f64>();
                }
            }
        }
    }
    if let Some(v) = cost.iter().find(|v| !v.is_finite()) {
        return Err(format!("the reconstruction costs hold {v}"));
    }
    // Greedy: `added[x]` is Σ_{a∈T} (C_ax + C_xa); the next channel adds C_xx + added[x].
    let mut gone = vec![false; c];
    let mut added = vec![0f64; c];
    let mut score = vec![0f64; c];
    for step in 0..c {
        let next = (0..c)
            .filter(|&x| !gone[x])
            .min_by(|&x, &y| {
                (cost[x * c + x] + added[x])
                    .total_cmp(&(cost[y * c + y] + added[y]))
                    .then(x.cmp(&y))
            })
            .ok_or("no channel left")?;
        gone[next] = true;
        score[next] = step as f64;
        for x in 0..c {
            added[x] += cost[next * c + x] + cost[x * c + next];
        }
    }
    Ok(score)
}

/// The value a group's first reader reads, how, and where the channels sit in it.
fn first_read(graph: &Graph, g: &Group) -> Option<(ValueId, Reader, Slice)> {
    let &(r, how, at) = g.readers.first()?;
    Some((graph.node(r)?.inputs.first().copied().flatten()?, how, at))
}

/// The inputs per channel of a reader with `k` inputs: a Conv's kh·kw, a Gemm's flattened
/// spatial size; `None` when `k` is not a whole number of channels.
fn per_channel(how: Reader, at: Slice, k: usize) -> Option<usize> {
    let per = match how {
        Reader::Conv => k / at.total.max(1),
        Reader::Features { per } => per,
    };
    (per > 0 && per * at.total == k).then_some(per)
}

/// Each channel's fraction of zeros where the group's first reader reads it (a Gemm after a
/// Flatten: averaged over the channel's features), on the model as it stands.
fn zero_fractions(graph: &Graph, g: &Group, stats: &mut dyn Stats) -> Result<Vec<f64>, String> {
    let (v, how, at) = first_read(graph, g).ok_or("the group has no reader")?;
    let stat = stats
        .get(
            graph,
            &StatRequest::ZeroFraction {
                value: graph.value(v).name.clone(),
            },
        )
        .map_err(|e| e.message)?;
    let mcc_plan::Stat::ZeroFraction(z) = &*stat else {
        return Err("the calibration context returned no zero fractions".into());
    };
    let per = match how {
        Reader::Conv => 1,
        Reader::Features { per } => per.max(1),
    };
    if z.len() != at.total * per {
        return Err(format!(
            "{} zero fractions for {} channels of {per}",
            z.len(),
            at.total
        ));
    }
    Ok((0..g.channels)
        .map(|c| z[at.features(c, per)].iter().sum::<f64>() / per as f64)
        .collect())
}

impl Technique for PruneFilters {
    fn needs(&self, graph: &Graph, step: &Step) -> Vec<StatRequest> {
        if apoz(step) && !refit(step) {
            // The first group's first read; the rest as the loop reaches them.
            return step
                .nodes
                .iter()
                .filter_map(|n| graph.find_node(n))
                .find_map(|n| self.group(graph, n).ok())
                .and_then(|g| first_read(graph, &g))
                .map(|(v, _, _)| StatRequest::ZeroFraction {
                    value: graph.value(v).name.clone(),
                })
                .into_iter()
                .collect();
        }
        if !refit(step) && !thinet(step) {
            return Vec::new();
        }
        // The first group's first reader; the rest are asked for as the loop reaches them.
        step.nodes
            .iter()
            .filter_map(|n| graph.find_node(n))
            .find_map(|n| self.group(graph, n).ok())
            .and_then(|g| g.readers.first().copied())
            .and_then(|(r, _, _)| graph.node(r).map(|x| x.name.clone()))
            .map(|layer| StatRequest::Gram { layer })
            .into_iter()
            .collect()
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        Ok(step
            .nodes
            .iter()
            .filter_map(|name| {
                let (reason, detail) = match graph.find_node(name) {
                    None => (
                        Reason::MergedAway,
                        "an earlier step merged it into another layer".to_string(),
                    ),
                    Some(n) => self.group(graph, n).err()?,
                };
                Some(LeftAlone {
                    node: name.clone(),
                    reason,
                    detail,
                })
            })
            .collect())
    }

    fn infeasible(&self, graph: &Graph, step: &Step) -> Vec<Infeasible> {
        step.nodes
            .iter()
            .filter_map(|name| {
                let (_, detail) = self.group(graph, graph.find_node(name)?).err()?;
                detail.starts_with(channels::REACHES_OUTPUT).then(|| Infeasible {
                    node: name.clone(),
                    message: format!("{detail}, whose shape is the model's interface"),
                    help: Some(format!(
                        "exclude it from the selector (`… - \"{name}\"`): a classifier's outputs are its classes"
                    )),
                })
            })
            .collect()
    }

    fn notes(&self, graph: &Graph, step: &Step) -> Vec<(String, String)> {
        let name = |n: &NodeId| graph.node(*n).map_or(String::new(), |x| x.name.clone());
        let list = |ids: &[NodeId]| ids.iter().map(name).collect::<Vec<_>>().join(", ");
        step.nodes
            .iter()
            .filter_map(|layer| {
                let g = self.group(graph, graph.find_node(layer)?).ok()?;
                let mut note = format!("group of {} channels: {}", g.channels, list(&g.producers));
                let carried: Vec<NodeId> = g
                    .norms
                    .iter()
                    .chain(&g.depthwise)
                    .map(|&(n, _)| n)
                    .collect();
                if !carried.is_empty() {
                    note.push_str(&format!("; with {}", list(&carried)));
                }
                if !g.concats.is_empty() {
                    note.push_str(&format!("; through {}", list(&g.concats)));
                }
                let readers: Vec<NodeId> = g.readers.iter().map(|&(r, _, _)| r).collect();
                note.push_str(&format!("; read by {}", list(&readers)));
                Some((layer.clone(), note))
            })
            .collect()
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let keep = num(&step.params, "keep").unwrap_or(1.0);
        let by = match step.param("by") {
            Some(ParamValue::Word(w)) => w.clone(),
            _ => "l1".into(),
        };
        let mut out = Outcome::default();
        let mut done: BTreeSet<String> = BTreeSet::new();
        for name in &step.nodes {
            if done.contains(name) {
                continue;
            }
            let leave = |reason: Reason, detail: String| LeftAlone {
                node: name.clone(),
                reason,
                detail,
            };
            let Some(n) = graph.find_node(name) else {
                out.left_alone.push(leave(
                    Reason::MergedAway,
                    "an earlier step merged it into another layer".into(),
                ));
                continue;
            };
            let group = match self.group(graph, n) {
                Ok(g) => g,
                Err((reason, detail)) => {
                    out.left_alone.push(leave(reason, detail));
                    continue;
                }
            };
            // Another selected layer of this group (a second reader) pruned it already.
            if group
                .producers
                .iter()
                .any(|&p| graph.node(p).is_some_and(|x| done.contains(&x.name)))
            {
                continue;
            }
            let names = |graph: &Graph, ids: &[NodeId]| -> Vec<String> {
                ids.iter()
                    .filter_map(|&i| graph.node(i).map(|x| x.name.clone()))
                    .collect()
            };
            let producers = names(graph, &group.producers);
            let carried: Vec<NodeId> = (group.norms.iter().chain(&group.depthwise))
                .map(|&(n, _)| n)
                .collect();
            let norms = names(graph, &carried);
            done.extend(producers.iter().cloned());
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            let measured = match by.as_str() {
                "apoz" => Some(
                    zero_fractions(graph, &group, stats)
                        .map_err(fail)?
                        .iter()
                        .map(|f| 1.0 - f)
                        .collect(),
                ),
                "thinet" => Some(thinet_scores(graph, &group, stats).map_err(fail)?),
                _ => None,
            };
            let scores = match scores(graph, &group, &by, measured, self.inputs) {
                Ok(s) => s,
                Err((reason, detail)) => {
                    out.left_alone.push(leave(reason, detail));
                    continue;
                }
            };
            let c = group.channels;
            let kept_n = tile_aligned(
                ((keep * c as f64).round() as usize).clamp(1, c),
                c,
                Align::of(step),
            );
            if kept_n == c {
                continue;
            }
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut kept: Vec<usize> = order[..kept_n].to_vec();
            kept.sort_unstable();
            let readers: Vec<(NodeId, Reader, Slice, String)> = group
                .readers
                .iter()
                .filter_map(|&(r, how, at)| graph.node(r).map(|x| (r, how, at, x.name.clone())))
                .collect();
            // Refit the readers before their inputs shrink (their XᵀX sees every channel).
            let mut refitted: Vec<(NodeId, Tensor)> = vec![];
            if refit(step) {
                for (r, how, at, rname) in &readers {
                    let t = refit_reader(graph, *r, (*how, *at), rname, &kept, c, stats)
                        .map_err(fail)?;
                    refitted.push((*r, t));
                }
            }
            for (r, t) in refitted {
                set_operand(graph, r, 1, t).map_err(fail)?;
            }
            shrink(graph, &group, &kept).map_err(fail)?;
            let touched = group
                .producers
                .iter()
                .copied()
                .chain(carried.iter().copied())
                .chain(group.readers.iter().map(|&(r, _, _)| r))
                .chain(group.reshapes.iter().map(|&(n, _, _)| n));
            for node in touched {
                if let Some(m) = graph.node_mut(node) {
                    m.origin = Origin::Step(id);
                }
            }
            mcc_ir::infer_all(graph).map_err(|(node, op, e)| {
                fail(format!(
                    "after removing channels, `{node}` ({op}) does not type: {e}"
                ))
            })?;
            out.changed.extend(producers);
            out.changed.extend(norms);
            out.changed
                .extend(readers.into_iter().map(|(_, _, _, n)| n));
            stats.invalidate();
        }
        out.changed.sort();
        out.changed.dedup();
        Ok(out)
    }
}

/// The kernels' tile width in output channels (16 f32 lanes): a layer of 22 channels costs
/// what one of 32 does.
const TILE: usize = 16;

/// `n` of `c` channels rounded to the nearest multiple of [`TILE`] or to `c` (at least one
/// tile) when the group has at least two tiles (`Wide`) or one (`Tiles`); smaller groups, and
/// every group under `Exact`, keep `n`.
fn tile_aligned(n: usize, c: usize, align: Align) -> usize {
    let smallest = match align {
        Align::Wide => 2 * TILE,
        Align::Tiles => TILE,
        Align::Exact => return n,
    };
    if c < smallest {
        return n;
    }
    // The nearest of: the tile boundary at or below `n` (at least one tile), and the next one
    // (or every channel, when that comes first). Ties go up: keeping more is the safer error.
    let below = (n / TILE * TILE).max(TILE);
    let above = (below + TILE).min(c);
    if n.abs_diff(below) < n.abs_diff(above) {
        below
    } else {
        above
    }
}

/// Each channel's score under `by` (higher: kept first).
fn scores(
    graph: &Graph,
    g: &Group,
    by: &str,
    measured: Option<Vec<f64>>,
    from_readers: bool,
) -> Result<Vec<f64>, channels::Obstacle> {
    if let Some(z) = measured {
        // Scores measured on the calibration data (APoZ, ThiNet).
        return Ok(z);
    }
    if from_readers && by != "bn_gamma" {
        // The norm of each channel's input weights, over every reader.
        let mut s = vec![0.0; g.channels];
        for &(r, how, at) in &g.readers {
            let node = graph.node(r).ok_or((Reason::MergedAway, String::new()))?;
            let t = operand(graph, r, 1).ok_or((
                Reason::NotConstant,
                "a reader's weights are not constant".to_string(),
            ))?;
            let view = reconstruct::view(&node.op, t.shape())
                .map_err(|why| (Reason::UnsupportedAttribute, why))?;
            let w = reconstruct::to_rows(t, view)
                .ok_or((Reason::NotConstant, "weights are not f32".to_string()))?;
            let per = per_channel(how, at, w.k).ok_or((
                Reason::ShapeMismatch,
                format!(
                    "`{}` reads {} inputs for {} channels",
                    node.name, w.k, at.total
                ),
            ))?;
            for (c, x) in s.iter_mut().enumerate() {
                let cols = at.features(c, per);
                let block = (0..w.rows).flat_map(|o| w.data[o * w.k..][cols.clone()].iter());
                *x += if by == "l2" {
                    block.map(|v| v * v).sum::<f64>().sqrt()
                } else {
                    block.map(|v| v.abs()).sum::<f64>()
                };
            }
        }
        return Ok(s);
    }
    let mut s = vec![0.0; g.channels];
    if by == "bn_gamma" {
        if g.norms.is_empty() {
            return Err((
                Reason::MissingOperand,
                "no BatchNormalization in its group to read γ from".into(),
            ));
        }
        for &(n, at) in &g.norms {
            let gamma = operand(graph, n, 1).ok_or((
                Reason::NotConstant,
                "a BatchNormalization's scale is not constant".to_string(),
            ))?;
            let gamma = gamma.to_f64_vec();
            for (c, x) in s.iter_mut().enumerate() {
                *x += gamma
                    .get(at.offset + c)
                    .ok_or((
                        Reason::ShapeMismatch,
                        "a BatchNormalization has fewer scales than channels".to_string(),
                    ))?
                    .abs();
            }
        }
        return Ok(s);
    }
    for &p in &g.producers {
        let (t, view) = weights(graph, p)?;
        let w = reconstruct::to_rows(t, view)
            .ok_or((Reason::NotConstant, "weights are not f32".to_string()))?;
        for (c, x) in s.iter_mut().enumerate() {
            let row = &w.data[c * w.k..(c + 1) * w.k];
            *x += if by == "l2" {
                row.iter().map(|v| v * v).sum::<f64>().sqrt()
            } else {
                row.iter().map(|v| v.abs()).sum::<f64>()
            };
        }
    }
    Ok(s)
}

fn operand(graph: &Graph, n: NodeId, slot: usize) -> Option<&Tensor> {
    graph
        .node(n)?
        .inputs
        .get(slot)
        .copied()
        .flatten()
        .and_then(|v| graph.const_data(v))
}

/// A producer's weights and how their rows are its output channels.
fn weights(graph: &Graph, p: NodeId) -> Result<(&Tensor, View), channels::Obstacle> {
    let node = graph.node(p).ok_or((Reason::MergedAway, String::new()))?;
    let view = match &node.op {
        Op::Gemm(g) if g.transB == 0 => View::Transposed,
        _ => View::Direct,
    };
    let t = operand(graph, p, 1).ok_or((
        Reason::NotConstant,
        format!("`{}`'s weights are not constant", node.name),
    ))?;
    Ok((t, view))
}

/// `t` restricted to `idx` along `axis`.
fn take(t: &Tensor, axis: usize, idx: &[usize]) -> Result<Tensor, String> {
    let a = t.as_f32().ok_or("weights are not f32")?;
    if axis >= a.ndim() || idx.iter().any(|&i| i >= a.shape()[axis]) {
        return Err(format!(
            "cannot take {idx:?} of axis {axis} of {:?}",
            a.shape()
        ));
    }
    Ok(Tensor::F32(a.select(ndarray::Axis(axis), idx)))
}

/// Gives node `n` a new constant `t` as operand `slot` (a fresh value: the old one may be
/// shared).
fn set_operand(graph: &mut Graph, n: NodeId, slot: usize, t: Tensor) -> Result<(), String> {
    let base = graph
        .node(n)
        .and_then(|x| x.inputs.get(slot).copied().flatten())
        .map_or_else(|| "w".to_string(), |v: ValueId| graph.value(v).name.clone());
    let v = graph.add_const(graph.fresh_value_name(&base), t);
    graph.set_input(n, slot, Some(v)).map_err(|e| e.to_string())
}

/// Removes every channel outside `kept` from the group's producers, norms and readers.
fn shrink(graph: &mut Graph, g: &Group, kept: &[usize]) -> Result<(), String> {
    for &p in &g.producers {
        let transposed =
            matches!(graph.node(p).map(|x| &x.op), Some(Op::Gemm(gm)) if gm.transB == 0);
        let w = operand(graph, p, 1).ok_or("weights vanished")?;
        let w = take(w, usize::from(transposed), kept)?;
        set_operand(graph, p, 1, w)?;
        if let Some(b) = operand(graph, p, 2)
            && b.shape() == [g.channels]
        {
            let b = take(b, 0, kept)?;
            set_operand(graph, p, 2, b)?;
        } else if operand(graph, p, 2).is_some_and(|b| b.len() != 1) {
            return Err("a bias that is not per channel".into());
        }
    }
    let c = g.channels;
    for &(d, at) in &g.depthwise {
        let idx = at.kept(kept, c, 1);
        let w = operand(graph, d, 1).ok_or("depthwise weights are not constant")?;
        let w = take(w, 0, &idx)?;
        set_operand(graph, d, 1, w)?;
        if let Some(b) = operand(graph, d, 2) {
            let b = take(b, 0, &idx)?;
            set_operand(graph, d, 2, b)?;
        }
        if let Some(Op::Conv(conv)) = graph.node_mut(d).map(|x| &mut x.op) {
            conv.group = idx.len() as i64;
        }
    }
    for &(n, per, at) in &g.reshapes {
        // A literal feature count (`[N, 25088]`, not `[0, -1]`) follows the channels.
        let t = operand(graph, n, 1).ok_or("a Reshape's target shape is not constant")?;
        let (old, new) = (
            (at.total * per) as i64,
            (at.shrunk(c, kept.len()) * per) as i64,
        );
        let target: Vec<i64> = t
            .to_i64_vec()
            .into_iter()
            .map(|d| if d == old { new } else { d })
            .collect();
        let t = Tensor::from_vec(&[target.len()], target).map_err(|e| e.to_string())?;
        set_operand(graph, n, 1, t)?;
    }
    for &(n, at) in &g.norms {
        let idx = at.kept(kept, c, 1);
        for slot in 1..=4 {
            let t = operand(graph, n, slot).ok_or("a norm parameter is not constant")?;
            let t = take(t, 0, &idx)?;
            set_operand(graph, n, slot, t)?;
        }
    }
    for &(r, how, at) in &g.readers {
        let w = operand(graph, r, 1).ok_or("weights vanished")?;
        let w = match (how, graph.node(r).map(|x| &x.op)) {
            (Reader::Conv, _) => take(w, 1, &at.kept(kept, c, 1))?,
            (Reader::Features { per }, Some(Op::Gemm(gm))) => {
                let axis = if gm.transB != 0 { 1 } else { 0 };
                take(w, axis, &at.kept(kept, c, per))?
            }
            _ => return Err("a reader is not a Conv or Gemm".into()),
        };
        set_operand(graph, r, 1, w)?;
    }
    Ok(())
}

/// The reader's weights with its kept inputs refit (full width still: `shrink` cuts them).
fn refit_reader(
    graph: &Graph,
    r: NodeId,
    (how, at): (Reader, Slice),
    name: &str,
    kept: &[usize],
    channels: usize,
    stats: &mut dyn Stats,
) -> Result<Tensor, String> {
    let node = graph.node(r).ok_or("the reader vanished")?;
    let t = operand(graph, r, 1).ok_or("the reader's weights are not constant")?;
    let view = reconstruct::view(&node.op, t.shape())?;
    let w0 = reconstruct::to_rows(t, view).ok_or("the reader's weights are not f32")?;
    let h = layers::hessian(graph, stats, name, w0.k)?;
    let per = per_channel(how, at, w0.k)
        .ok_or_else(|| format!("`{name}` reads {} inputs for {} channels", w0.k, at.total))?;
    let keep: BTreeSet<usize> = at.kept(kept, channels, per).into_iter().collect();
    let mask: Vec<bool> = (0..w0.rows * w0.k)
        .map(|i| !keep.contains(&(i % w0.k)))
        .collect();
    let mut w = w0.clone();
    reconstruct::refit(&mut w, &w0, &h, &mask)?;
    reconstruct::from_rows(&w, view, t.shape())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_counts_fill_whole_tiles_in_wide_groups() {
        let wide = |n, c| tile_aligned(n, c, Align::Wide);
        // Small groups keep what was asked.
        assert_eq!(wide(12, 16), 12);
        assert_eq!(wide(19, 24), 19);
        // Wide ones round to the nearest tile, at least one, at most all.
        assert_eq!(wide(22, 32), 16);
        assert_eq!(wide(24, 32), 32);
        assert_eq!(wide(45, 64), 48);
        assert_eq!(wide(90, 128), 96);
        assert_eq!(wide(3, 64), 16);
        assert_eq!(wide(70, 72), 72);
        // `tiles`: from one tile up; a single tile stays whole.
        let tiles = |n, c| tile_aligned(n, c, Align::Tiles);
        assert_eq!(tiles(12, 16), 16);
        assert_eq!(tiles(17, 24), 16);
        assert_eq!(tiles(20, 24), 24);
        assert_eq!(tiles(8, 12), 8);
        assert_eq!(tiles(22, 32), 16);
        // `exact`: what was asked.
        assert_eq!(tile_aligned(22, 32, Align::Exact), 22);
    }
}
