//! Channel dependency groups: which layers' filters must be removed together, and which
//! layers read those channels, so that removing channels keeps every shape consistent (the
//! problem Torch-Pruning's DepGraph solves).
//!
//! Tensors whose axis 1 must keep the same channels are joined: a layer's input and output
//! through channel-wise operators (BatchNormalization, elementwise activations, pools,
//! Dropout, Identity, and depthwise convolutions — one filter per channel), and the operands
//! and result of an elementwise Add, Sub, Mul, Max, Min, Sum or Mean of two computed tensors
//! (a residual join). A group is one such class. Its **producers** are the Conv (one group)
//! and Gemm layers that compute a tensor of the class; its **readers** are the one-group
//! Convs and the Gemms that take it as input (a Gemm directly or through a Flatten, or a
//! Reshape to [N, C·H·W]).
//!
//! A **Concat** along the channels places the group at an offset of the joined tensor (a
//! [`Slice`]): what follows it — channel-wise operators, norms, depthwise convolutions, further
//! Concats, flattens and readers — is walked forwards only, each member recording where the
//! group's channels sit in its input, so the Concat's other operands keep theirs. Operands of
//! an inception block's Concat are thus separate groups, each read by the next block's layers
//! at its own offset.
//!
//! **Invariant:** a group is returned only when every tensor of the class comes from a
//! producer or a channel-wise operator, every reader is one mcc can shrink, and every member
//! sees the group's channels at one place; otherwise the first obstacle is named (a graph
//! input or output, a joined tensor produced by a Concat, a residual join after a Concat, a
//! grouped convolution, a Reshape…), and nothing is pruned.

use std::collections::{BTreeMap, BTreeSet};

use mcc_ir::{Graph, NodeId, Op, ValueId};
use mcc_plan::Reason;

/// How a reader takes the group's channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reader {
    /// A one-group Conv's input channels (axis 1 of its weights).
    Conv,
    /// A Gemm's input features, directly (`per` 1) or through a Flatten: channel `c` is
    /// features `c·per .. (c+1)·per`.
    Features {
        /// Features per channel (the flattened spatial size; 1 without a Flatten).
        per: usize,
    },
}

/// A channel dependency group.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Channels.
    pub channels: usize,
    /// Layers whose output channels these are, in node order.
    pub producers: Vec<NodeId>,
    /// BatchNormalizations on the way (their parameters are per channel), and where the
    /// group's channels sit in their input.
    pub norms: Vec<At>,
    /// Depthwise convolutions on the way (one filter per channel; `group` is the channels).
    pub depthwise: Vec<At>,
    /// Reshapes that flatten the channels, with the features per channel: a literal feature
    /// count in their target shape changes with the channels.
    pub reshapes: Vec<(NodeId, usize, Slice)>,
    /// Layers reading the channels, how, and where the channels sit in their input.
    pub readers: Vec<(NodeId, Reader, Slice)>,
    /// Concats the channels pass (each takes them at an offset of the joined tensor; they
    /// change nothing but their output's shape).
    pub concats: Vec<NodeId>,
}

/// How an obstacle that is a graph output begins (the planner turns it into an error).
pub const REACHES_OUTPUT: &str = "its channels reach the graph output";

/// Why a layer's filters cannot be removed.
pub type Obstacle = (Reason, String);

fn carries(op: &Op) -> bool {
    matches!(
        op,
        Op::BatchNormalization(_)
            | Op::Relu(_)
            | Op::LeakyRelu(_)
            | Op::Sigmoid(_)
            | Op::HardSigmoid(_)
            | Op::HardSwish(_)
            | Op::Tanh(_)
            | Op::Elu(_)
            | Op::Selu(_)
            | Op::Softplus(_)
            | Op::Gelu(_)
            | Op::Abs(_)
            | Op::Neg(_)
            | Op::Clip(_)
            | Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool(_)
            | Op::GlobalMaxPool(_)
            | Op::Dropout(_)
            | Op::Identity(_)
    )
}

fn joins(op: &Op) -> bool {
    matches!(
        op,
        Op::Add(_) | Op::Sub(_) | Op::Mul(_) | Op::Max(_) | Op::Min(_) | Op::Sum(_) | Op::Mean(_)
    )
}

/// A convolution with one filter per channel, each reading only its own channel.
fn depthwise(graph: &Graph, n: NodeId, channels: usize) -> bool {
    graph.node(n).is_some_and(|node| match &node.op {
        Op::Conv(c) => {
            c.group as usize == channels
                && channels > 1
                && node
                    .inputs
                    .get(1)
                    .copied()
                    .flatten()
                    .and_then(|w| graph.const_data(w))
                    .is_some_and(|w| {
                        w.shape().first() == Some(&channels) && w.shape().get(1) == Some(&1)
                    })
        }
        _ => false,
    })
}

/// Whether `op`, reading `x` [N, C, …], makes `out` [N, C·…] (Flatten at axis 1, or a
/// Reshape to that shape: the ONNX exporters' `x.view(N, -1)`).
fn flattens(graph: &Graph, op: &Op, x: ValueId, out: Option<ValueId>) -> bool {
    match op {
        Op::Flatten(f) => f.axis == 1,
        Op::Reshape(_) => {
            let dims = |v: ValueId| -> Option<Vec<Option<usize>>> {
                Some(
                    graph
                        .value(v)
                        .ty
                        .shape
                        .as_ref()?
                        .iter()
                        .map(|d| d.fixed())
                        .collect(),
                )
            };
            match (dims(x), out.and_then(dims)) {
                (Some(xs), Some(os)) if xs.len() >= 2 && os.len() == 2 => {
                    let per: Option<usize> = xs[1..].iter().copied().product();
                    per.is_some() && os[1] == per
                }
                _ => false,
            }
        }
        _ => false,
    }
}

fn producer_of(graph: &Graph, n: NodeId) -> bool {
    graph.node(n).is_some_and(|node| match &node.op {
        Op::Conv(c) => c.group == 1,
        Op::Gemm(g) => g.transA == 0,
        _ => false,
    }) && graph
        .node(n)
        .and_then(|node| node.inputs.get(1).copied().flatten())
        .is_some_and(|w| graph.const_data(w).is_some())
}

/// A layer whose output channels are the ones `reader` reads (operand 0): the producer found
/// walking back through channel-wise operators, residual joins (their first computed
/// operand) and a Flatten; its group is then the group of `reader`'s input channels.
pub fn producer_before(graph: &Graph, reader: NodeId) -> Result<NodeId, Obstacle> {
    let obstacle = |detail: String| Err((Reason::UnsupportedOp, detail));
    let mut v = graph
        .node(reader)
        .and_then(|n| n.inputs.first().copied().flatten())
        .ok_or((Reason::MissingOperand, "it has no input".to_string()))?;
    // Each step moves to an earlier node, so the walk ends; the bound is a guard.
    for _ in 0..graph.node_ids().len() + 1 {
        let Some(n) = graph.producer(v) else {
            return Err((
                Reason::GraphInterface,
                "its input channels are the graph input's".to_string(),
            ));
        };
        if producer_of(graph, n) {
            return Ok(n);
        }
        let node = graph.node(n).ok_or((Reason::MergedAway, String::new()))?;
        let next = if carries(&node.op)
            || joins(&node.op)
            || matches!(node.op, Op::Flatten(_))
            || depthwise(graph, n, channel_count(graph, v))
        {
            node.inputs
                .iter()
                .flatten()
                .copied()
                .find(|&x| graph.const_data(x).is_none())
        } else {
            None
        };
        match next {
            Some(x) => v = x,
            None => {
                return obstacle(format!(
                    "its input channels come from `{}` ({}), not from a layer's filters",
                    node.name,
                    node.op.name()
                ));
            }
        }
    }
    obstacle("its input channels come from a cycle".into())
}

/// Axis 1 of a value, when known (0 otherwise).
fn channel_count(graph: &Graph, v: ValueId) -> usize {
    graph
        .value(v)
        .ty
        .shape
        .as_ref()
        .and_then(|s| s.get(1))
        .and_then(|d| d.fixed())
        .unwrap_or(0)
}

/// Where a group's channels sit in a tensor: channels `offset .. offset + channels` of its
/// `total` on axis 1. In the group's own tensors that is all of them; after a Concat, one
/// operand's place in the joined tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slice {
    /// The group's first channel in the tensor.
    pub offset: usize,
    /// The tensor's channels on axis 1.
    pub total: usize,
}

impl Slice {
    /// A tensor that is the group's channels and nothing else.
    pub fn whole(channels: usize) -> Slice {
        Slice {
            offset: 0,
            total: channels,
        }
    }

    /// The features (`per` to a channel, in channel order) of the group's channel `c`.
    pub fn features(&self, c: usize, per: usize) -> std::ops::Range<usize> {
        (self.offset + c) * per..(self.offset + c + 1) * per
    }

    /// The tensor's features that remain when a group of `channels` keeps `kept` (sorted):
    /// every feature outside the group's channels, and the kept channels' ones.
    pub fn kept(&self, kept: &[usize], channels: usize, per: usize) -> Vec<usize> {
        let after = (self.offset + channels) * per..self.total * per;
        (0..self.offset * per)
            .chain(kept.iter().flat_map(|&c| self.features(c, per)))
            .chain(after)
            .collect()
    }

    /// The tensor's channel count once a group of `channels` keeps `kept` of them.
    pub fn shrunk(&self, channels: usize, kept: usize) -> usize {
        self.total - channels + kept
    }
}

/// A group member that holds per-channel parameters, with where the channels sit in its input.
pub type At = (NodeId, Slice);

/// Records what member `n` is (with where the channels sit in its input); a node met again
/// as something else — at another slice — reads the channels twice.
fn place<T: Copy + PartialEq>(
    map: &mut BTreeMap<NodeId, T>,
    graph: &Graph,
    n: NodeId,
    what: T,
) -> Result<(), Obstacle> {
    match map.insert(n, what) {
        Some(old) if old != what => Err((
            Reason::UnsupportedOp,
            format!(
                "`{}` reads the group's channels at two places (through a Concat)",
                graph.node(n).map_or("", |x| x.name.as_str())
            ),
        )),
        _ => Ok(()),
    }
}

/// The channels on axis 1 before operand `slot` of a Concat along axis 1, and in all, when
/// every operand's are known.
fn concat_place(graph: &Graph, n: NodeId, slot: usize) -> Result<(usize, usize), Obstacle> {
    let node = graph.node(n).ok_or((Reason::MergedAway, String::new()))?;
    let rank = node
        .outputs
        .first()
        .and_then(|&o| graph.value(o).ty.shape.as_ref())
        .map_or(0, |s| s.len() as i64);
    let Op::Concat(c) = &node.op else {
        return Err((Reason::UnsupportedOp, "not a Concat".into()));
    };
    if c.axis != 1 && c.axis != 1 - rank {
        return Err((
            Reason::UnsupportedAttribute,
            format!(
                "the Concat `{}` joins along axis {}, not the channels",
                node.name, c.axis
            ),
        ));
    }
    let mut before = 0;
    let mut total = 0;
    for (i, x) in node.inputs.iter().enumerate() {
        let c = x.map(|x| channel_count(graph, x)).unwrap_or(0);
        if c == 0 {
            return Err((
                Reason::UnknownShape,
                format!(
                    "an operand of the Concat `{}` has no known channels",
                    node.name
                ),
            ));
        }
        if i < slot {
            before += c;
        }
        total += c;
    }
    Ok((before, total))
}

/// The group of `layer`'s output channels.
pub fn group_of(graph: &Graph, layer: NodeId) -> Result<Group, Obstacle> {
    let node = graph
        .node(layer)
        .ok_or((Reason::MergedAway, "the layer is gone".to_string()))?;
    let channels_out = node
        .outputs
        .first()
        .and_then(|&o| graph.value(o).ty.shape.as_ref()?.get(1)?.fixed());
    if channels_out.is_some_and(|c| depthwise(graph, layer, c)) {
        return Err((
            Reason::UnsupportedOp,
            "a depthwise convolution: its channels are its input's (prune the layer before it)"
                .into(),
        ));
    }
    if !producer_of(graph, layer) {
        return Err((
            Reason::UnsupportedOp,
            format!(
                "a {} (filters are removed from one-group Convs and Gemms with constant weights)",
                node.op.name()
            ),
        ));
    }
    let start = *node.outputs.first().ok_or((
        Reason::MissingOperand,
        "the layer has no output".to_string(),
    ))?;
    let channels = graph
        .value(start)
        .ty
        .shape
        .as_ref()
        .and_then(|s| s.get(1))
        .and_then(|d| d.fixed())
        .ok_or((
            Reason::UnknownShape,
            "its output's channel count is not known".to_string(),
        ))?;
    let name = |n: NodeId| graph.node(n).map_or(String::new(), |x| x.name.clone());
    let op = |n: NodeId| graph.node(n).map_or("", |x| x.op.name());
    // Walk the class of `start`, both ways (work items without a slice), and what follows a
    // Concat forwards only (with the group's slice of the joined tensor).
    let whole = Slice::whole(channels);
    let mut seen: BTreeSet<(ValueId, Option<Slice>)> = BTreeSet::new();
    let mut todo: Vec<(ValueId, Option<Slice>)> = vec![(start, None)];
    let mut producers = BTreeSet::new();
    let mut norms: BTreeMap<NodeId, Slice> = BTreeMap::new();
    let mut dws: BTreeMap<NodeId, Slice> = BTreeMap::new();
    let mut readers: BTreeMap<NodeId, (Reader, Slice)> = BTreeMap::new();
    let mut reshapes: BTreeMap<NodeId, (usize, Slice)> = BTreeMap::new();
    let mut concats = BTreeSet::new();
    while let Some((v, after)) = todo.pop() {
        if !seen.insert((v, after)) {
            continue;
        }
        let here = after.unwrap_or(whole);
        if graph.outputs().contains(&v) {
            return Err((
                Reason::GraphInterface,
                format!("{REACHES_OUTPUT} `{}`", graph.value(v).name),
            ));
        }
        if graph
            .value(v)
            .ty
            .shape
            .as_ref()
            .and_then(|s| s.get(1))
            .and_then(|d| d.fixed())
            != Some(here.total)
        {
            return Err((
                Reason::ShapeMismatch,
                format!(
                    "`{}` does not have {} channels on axis 1",
                    graph.value(v).name,
                    here.total
                ),
            ));
        }
        // Where the tensor comes from (a joined tensor's other operands are not the group's).
        match (after, graph.producer(v)) {
            (Some(_), _) => {}
            (None, None) => {
                return Err((
                    Reason::GraphInterface,
                    format!(
                        "its channels are joined with the graph input `{}`",
                        graph.value(v).name
                    ),
                ));
            }
            (None, Some(p)) if producer_of(graph, p) => {
                producers.insert(p);
            }
            (None, Some(p)) if depthwise(graph, p, channels) => {
                place(&mut dws, graph, p, whole)?;
                todo.extend(
                    graph
                        .node(p)
                        .and_then(|x| x.inputs.first().copied().flatten())
                        .map(|x| (x, None)),
                );
            }
            (None, Some(p)) => {
                let pn = graph.node(p).ok_or((Reason::MergedAway, String::new()))?;
                if carries(&pn.op) {
                    if matches!(pn.op, Op::BatchNormalization(_)) {
                        place(&mut norms, graph, p, whole)?;
                    }
                    todo.extend(pn.inputs.first().copied().flatten().map(|x| (x, None)));
                } else if joins(&pn.op) {
                    for &i in pn.inputs.iter().flatten() {
                        if graph.const_data(i).is_some() {
                            return Err((
                                Reason::UnsupportedOp,
                                format!(
                                    "`{}` ({}) combines its channels with a constant",
                                    name(p),
                                    op(p)
                                ),
                            ));
                        }
                        todo.push((i, None));
                    }
                } else {
                    return Err((
                        Reason::UnsupportedOp,
                        format!(
                            "its channels also come from `{}` ({}), which mcc cannot shrink",
                            name(p),
                            op(p)
                        ),
                    ));
                }
            }
        }
        // Who reads it.
        for (u, slot) in graph.users(v) {
            let un = graph.node(u).ok_or((Reason::MergedAway, String::new()))?;
            let next = un.outputs.first().copied();
            match &un.op {
                Op::Conv(c) if slot == 0 && c.group == 1 => {
                    place(&mut readers, graph, u, (Reader::Conv, here))?;
                }
                Op::Conv(_) if slot == 0 && depthwise(graph, u, here.total) => {
                    place(&mut dws, graph, u, here)?;
                    todo.extend(next.map(|x| (x, after)));
                }
                Op::Conv(_) if slot == 0 => {
                    return Err((
                        Reason::UnsupportedAttribute,
                        format!(
                            "its channels feed the grouped convolution `{}` (not handled yet)",
                            un.name
                        ),
                    ));
                }
                Op::Gemm(gm) if slot == 0 && gm.transA == 0 => {
                    place(&mut readers, graph, u, (Reader::Features { per: 1 }, here))?;
                }
                Op::BatchNormalization(_) if slot == 0 => {
                    place(&mut norms, graph, u, here)?;
                    todo.extend(next.map(|x| (x, after)));
                }
                o if carries(o) && slot == 0 => todo.extend(next.map(|x| (x, after))),
                Op::Concat(_) => {
                    let (before, total) = concat_place(graph, u, slot)?;
                    concats.insert(u);
                    let joined = Slice {
                        offset: here.offset + before,
                        total,
                    };
                    todo.extend(next.map(|x| (x, Some(joined))));
                }
                o if joins(o) && after.is_some() => {
                    return Err((
                        Reason::UnsupportedOp,
                        format!(
                            "`{}` ({}) combines channels joined by a Concat with others",
                            un.name,
                            un.op.name()
                        ),
                    ));
                }
                o if joins(o) => {
                    for &i in un.inputs.iter().flatten() {
                        if graph.const_data(i).is_some() {
                            return Err((
                                Reason::UnsupportedOp,
                                format!(
                                    "`{}` ({}) combines its channels with a constant",
                                    un.name,
                                    un.op.name()
                                ),
                            ));
                        }
                        todo.push((i, None));
                    }
                    todo.extend(next.map(|x| (x, None)));
                }
                o if slot == 0 && flattens(graph, o, v, next) => {
                    let flat = next.ok_or((Reason::MissingOperand, String::new()))?;
                    let per = graph
                        .value(v)
                        .ty
                        .shape
                        .as_ref()
                        .and_then(|s| {
                            s.iter()
                                .skip(2)
                                .map(|d| d.fixed())
                                .product::<Option<usize>>()
                        })
                        .ok_or((
                            Reason::UnknownShape,
                            "a flattened size is not known".to_string(),
                        ))?;
                    if matches!(o, Op::Reshape(_)) {
                        place(&mut reshapes, graph, u, (per, here))?;
                    }
                    for (g, gslot) in graph.users(flat) {
                        let gn = graph.node(g).ok_or((Reason::MergedAway, String::new()))?;
                        match &gn.op {
                            Op::Gemm(gm) if gslot == 0 && gm.transA == 0 => {
                                place(&mut readers, graph, g, (Reader::Features { per }, here))?;
                            }
                            _ => {
                                return Err((
                                    Reason::UnsupportedOp,
                                    format!(
                                        "the flattened channels feed `{}` ({}), not a Gemm",
                                        gn.name,
                                        gn.op.name()
                                    ),
                                ));
                            }
                        }
                    }
                    if graph.outputs().contains(&flat) {
                        return Err((
                            Reason::GraphInterface,
                            "the flattened channels are a graph output".into(),
                        ));
                    }
                }
                _ => {
                    return Err((
                        Reason::UnsupportedOp,
                        format!(
                            "its channels are read by `{}` ({}), which mcc cannot shrink",
                            un.name,
                            un.op.name()
                        ),
                    ));
                }
            }
        }
    }
    Ok(Group {
        channels,
        producers: producers.into_iter().collect(),
        norms: norms.into_iter().collect(),
        depthwise: dws.into_iter().collect(),
        reshapes: reshapes
            .into_iter()
            .map(|(n, (per, s))| (n, per, s))
            .collect(),
        readers: readers
            .into_iter()
            .map(|(n, (how, s))| (n, how, s))
            .collect(),
        concats: concats.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(body: &str) -> Graph {
        let src = format!("graph \"g\" {{\n{body}\n}}");
        let mut g = mcc_ir::text::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        mcc_ir::infer_all(&mut g).unwrap();
        g
    }

    fn group(g: &Graph, layer: &str) -> Result<Group, Obstacle> {
        group_of(g, g.find_node(layer).unwrap())
    }

    fn names(g: &Graph, ids: &[NodeId]) -> Vec<String> {
        ids.iter()
            .map(|&i| g.node(i).unwrap().name.clone())
            .collect()
    }

    const HEAD: &str = "  input %x: f32[N,2,6,6]
  const %w1: f32[4,2,3,3] = seeded(1)
  const %w2: f32[4,4,3,3] = seeded(2)
  const %w3: f32[4,2,1,1] = seeded(3)
  const %s: f32[4] = positive(4)
  const %b: f32[4] = seeded(5)
  const %fc: f32[3,64] = seeded(6)";

    #[test]
    fn a_chain_through_norm_activation_and_flatten_is_one_group() {
        let g = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node bn = BatchNormalization(%a, %s, %b, %b, %s) -> %n: f32[N,4,6,6]
  node r = Relu(%n) -> %r: f32[N,4,6,6]
  node c2 = Conv(%r, %w2) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]}} -> %c: f32[N,4,3,3]
  node p = MaxPool(%c) {{kernel_shape=[1, 1]}} -> %p: f32[N,4,3,3]
  node f = Flatten(%p) -> %f: f32[N,36]
  const %fc2: f32[3,36] = seeded(7)
  node fc = Gemm(%f, %fc2) {{transB=1}} -> %y: f32[N,3]
  output %y"
        ));
        let a = group(&g, "c1").unwrap();
        assert_eq!(
            (a.channels, names(&g, &a.producers)),
            (4, vec!["c1".to_string()])
        );
        assert_eq!(
            names(&g, &a.norms.iter().map(|n| n.0).collect::<Vec<_>>()),
            ["bn"]
        );
        assert_eq!(a.readers.len(), 1);
        assert_eq!(a.readers[0].1, Reader::Conv);
        let b = group(&g, "c2").unwrap();
        assert_eq!(b.readers[0].1, Reader::Features { per: 9 });
        // The classifier's outputs are the graph's.
        assert_eq!(group(&g, "fc").unwrap_err().0, Reason::GraphInterface);
    }

    #[test]
    fn a_residual_join_couples_its_producers() {
        let g = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node sc = Conv(%x, %w3) {{kernel_shape=[1, 1]}} -> %s1: f32[N,4,6,6]
  node add = Add(%a, %s1) -> %j: f32[N,4,6,6]
  node r = Relu(%j) -> %r: f32[N,4,6,6]
  node c2 = Conv(%r, %w2) {{kernel_shape=[3, 3]}} -> %c: f32[N,4,4,4]
  node gp = GlobalAveragePool(%c) -> %gp: f32[N,4,1,1]
  node f = Flatten(%gp) -> %f: f32[N,4]
  const %fc4: f32[3,4] = seeded(8)
  node fc = Gemm(%f, %fc4) {{transB=1}} -> %y: f32[N,3]
  output %y"
        ));
        for layer in ["c1", "sc"] {
            let gr = group(&g, layer).unwrap();
            assert_eq!(names(&g, &gr.producers), ["c1", "sc"], "{layer}");
            assert_eq!(gr.readers.len(), 1);
        }
    }

    #[test]
    fn a_depthwise_convolution_carries_its_channels() {
        let g = graph(&format!(
            "{HEAD}
  const %dw: f32[4,1,3,3] = seeded(9)
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node d = Conv(%a, %dw) {{kernel_shape=[3, 3], group=4, pads=[1, 1, 1, 1]}} -> %dd: f32[N,4,6,6]
  node r = Relu(%dd) -> %r: f32[N,4,6,6]
  node c2 = Conv(%r, %w2) {{kernel_shape=[3, 3]}} -> %y: f32[N,4,4,4]
  output %y"
        ));
        let gr = group(&g, "c1").unwrap();
        assert_eq!(
            names(&g, &gr.depthwise.iter().map(|n| n.0).collect::<Vec<_>>()),
            ["d"]
        );
        assert_eq!(
            names(&g, &gr.readers.iter().map(|r| r.0).collect::<Vec<_>>()),
            ["c2"]
        );
        assert_eq!(group(&g, "d").unwrap_err().0, Reason::UnsupportedOp);
    }

    /// An inception block: each Concat operand is its own group, read by the next layers at
    /// its offset of the joined tensor, through a pool, a norm and a flatten.
    #[test]
    fn concat_operands_are_groups_read_at_their_offsets() {
        let g = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node c2 = Conv(%x, %w3) {{kernel_shape=[1, 1]}} -> %o2: f32[N,4,6,6]
  node r2 = Relu(%o2) -> %rb: f32[N,4,6,6]
  node cat = Concat(%x, %a, %rb) {{axis=1}} -> %k: f32[N,10,6,6]
  const %s10: f32[10] = positive(10)
  const %b10: f32[10] = seeded(11)
  node bn = BatchNormalization(%k, %s10, %b10, %b10, %s10) -> %n: f32[N,10,6,6]
  node p = MaxPool(%n) {{kernel_shape=[2, 2], strides=[2, 2]}} -> %p: f32[N,10,3,3]
  const %w4: f32[4,10,1,1] = seeded(12)
  node c3 = Conv(%p, %w4) {{kernel_shape=[1, 1]}} -> %c: f32[N,4,3,3]
  node f = Flatten(%p) -> %f: f32[N,90]
  const %fc9: f32[3,90] = seeded(13)
  node fc = Gemm(%f, %fc9) {{transB=1}} -> %y: f32[N,3]
  output %c
  output %y"
        ));
        for (layer, offset) in [("c1", 2), ("c2", 6)] {
            let gr = group(&g, layer).unwrap();
            let at = Slice { offset, total: 10 };
            assert_eq!(names(&g, &gr.producers), [layer]);
            assert_eq!(names(&g, &gr.concats), ["cat"]);
            assert_eq!(gr.norms, vec![(g.find_node("bn").unwrap(), at)]);
            let readers: Vec<(String, Reader, Slice)> = gr
                .readers
                .iter()
                .map(|&(r, how, s)| (g.node(r).unwrap().name.clone(), how, s))
                .collect();
            assert_eq!(
                readers,
                [
                    ("c3".to_string(), Reader::Conv, at),
                    ("fc".to_string(), Reader::Features { per: 9 }, at)
                ]
            );
        }
        // The features that stay when c2's group keeps channels 1 and 3 of 4, 9 to a channel.
        let at = Slice {
            offset: 6,
            total: 10,
        };
        let kept = at.kept(&[1, 3], 4, 9);
        let want: Vec<usize> = (0..54).chain(63..72).chain(81..90).collect();
        assert_eq!(kept, want);
        assert_eq!(at.shrunk(4, 2), 8);
    }

    #[test]
    fn obstacles_are_named() {
        let concat = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node cat = Concat(%a, %x) {{axis=1}} -> %k: f32[N,6,6,6]
  output %k"
        ));
        let e = group(&concat, "c1").unwrap_err();
        assert_eq!(e.0, Reason::GraphInterface);
        assert!(e.1.contains("%k") || e.1.contains("`k`"), "{e:?}");
        // A residual join after a Concat would couple the other operands' channels.
        let joined = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node cat = Concat(%a, %x) {{axis=1}} -> %k: f32[N,6,6,6]
  node cat2 = Concat(%x, %a) {{axis=1}} -> %k2: f32[N,6,6,6]
  node add = Add(%k, %k2) -> %y: f32[N,6,6,6]
  output %y"
        ));
        let e = group(&joined, "c1").unwrap_err();
        assert_eq!(e.0, Reason::UnsupportedOp);
        assert!(e.1.contains("add"), "{e:?}");
        // One tensor joined twice puts the channels at two places of the same readers.
        let twice = graph(&format!(
            "{HEAD}
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node cat = Concat(%a, %a) {{axis=1}} -> %k: f32[N,8,6,6]
  const %w8: f32[4,8,1,1] = seeded(14)
  node c2 = Conv(%k, %w8) {{kernel_shape=[1, 1]}} -> %y: f32[N,4,6,6]
  output %y"
        ));
        let e = group(&twice, "c1").unwrap_err();
        assert!(e.1.contains("two places"), "{e:?}");
        let grouped = graph(&format!(
            "{HEAD}
  const %gw: f32[4,2,3,3] = seeded(9)
  node c1 = Conv(%x, %w1) {{kernel_shape=[3, 3], pads=[1, 1, 1, 1]}} -> %a: f32[N,4,6,6]
  node d = Conv(%a, %gw) {{kernel_shape=[3, 3], group=2}} -> %y: f32[N,4,4,4]
  output %y"
        ));
        assert_eq!(
            group(&grouped, "c1").unwrap_err().0,
            Reason::UnsupportedAttribute
        );
    }
}
