//! Channel dependency groups: which layers' filters must be removed together, and which
//! layers read those channels, so that removing channels keeps every shape consistent (the
//! problem Torch-Pruning's DepGraph solves).
//!
//! Tensors whose axis 1 must keep the same channels are joined: a layer's input and output
//! through channel-wise operators (BatchNormalization, elementwise activations, pools,
//! Dropout, Identity, and depthwise convolutions — one filter per channel), and the operands and result of an elementwise Add, Sub, Mul, Max, Min,
//! Sum or Mean of two computed tensors (a residual join). A group is one such class. Its
//! **producers** are the Conv (one group) and Gemm layers that compute a tensor of the
//! class; its **readers** are the one-group Convs and the Gemms that take it as input (a
//! Gemm directly or through a Flatten, or a Reshape to [N, C·H·W]).
//!
//! **Invariant:** a group is returned only when every tensor of the class comes from a
//! producer or a channel-wise operator, and every reader is one mcc can shrink; otherwise
//! the first obstacle is named (a graph input or output, a Concat, a depthwise convolution,
//! a Reshape…), and nothing is pruned.

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
    /// BatchNormalizations on the way (their parameters are per channel).
    pub norms: Vec<NodeId>,
    /// Depthwise convolutions on the way (one filter per channel; `group` is the channels).
    pub depthwise: Vec<NodeId>,
    /// Reshapes that flatten the channels, with the features per channel: a literal feature
    /// count in their target shape changes with the channels.
    pub reshapes: Vec<(NodeId, usize)>,
    /// Layers reading the channels, and how.
    pub readers: Vec<(NodeId, Reader)>,
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
    // Walk the class of `start`, both ways.
    let mut seen: BTreeSet<ValueId> = BTreeSet::new();
    let mut todo = vec![start];
    let (mut producers, mut norms, mut readers) =
        (BTreeSet::new(), BTreeSet::new(), BTreeMap::new());
    let mut dws = BTreeSet::new();
    let mut reshapes = BTreeMap::new();
    while let Some(v) = todo.pop() {
        if !seen.insert(v) {
            continue;
        }
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
            != Some(channels)
        {
            return Err((
                Reason::ShapeMismatch,
                format!(
                    "`{}` does not have {channels} channels on axis 1",
                    graph.value(v).name
                ),
            ));
        }
        // Where the tensor comes from.
        match graph.producer(v) {
            None => {
                return Err((
                    Reason::GraphInterface,
                    format!(
                        "its channels are joined with the graph input `{}`",
                        graph.value(v).name
                    ),
                ));
            }
            Some(p) if producer_of(graph, p) => {
                producers.insert(p);
            }
            Some(p) if depthwise(graph, p, channels) => {
                dws.insert(p);
                todo.extend(
                    graph
                        .node(p)
                        .and_then(|x| x.inputs.first().copied().flatten()),
                );
            }
            Some(p) => {
                let pn = graph.node(p).ok_or((Reason::MergedAway, String::new()))?;
                if carries(&pn.op) {
                    if matches!(pn.op, Op::BatchNormalization(_)) {
                        norms.insert(p);
                    }
                    todo.extend(pn.inputs.first().copied().flatten());
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
                        todo.push(i);
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
            match &un.op {
                Op::Conv(c) if slot == 0 && c.group == 1 => {
                    readers.insert(u, Reader::Conv);
                }
                Op::Conv(_) if slot == 0 && depthwise(graph, u, channels) => {
                    dws.insert(u);
                    todo.extend(un.outputs.first().copied());
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
                    readers.insert(u, Reader::Features { per: 1 });
                }
                Op::BatchNormalization(_) if slot == 0 => {
                    norms.insert(u);
                    todo.extend(un.outputs.first().copied());
                }
                o if carries(o) && slot == 0 => todo.extend(un.outputs.first().copied()),
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
                        todo.push(i);
                    }
                    todo.extend(un.outputs.first().copied());
                }
                o if slot == 0 && flattens(graph, o, v, un.outputs.first().copied()) => {
                    let flat = *un
                        .outputs
                        .first()
                        .ok_or((Reason::MissingOperand, String::new()))?;
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
                        reshapes.insert(u, per);
                    }
                    for (g, gslot) in graph.users(flat) {
                        let gn = graph.node(g).ok_or((Reason::MergedAway, String::new()))?;
                        match &gn.op {
                            Op::Gemm(gm) if gslot == 0 && gm.transA == 0 => {
                                readers.insert(g, Reader::Features { per });
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
        reshapes: reshapes.into_iter().collect(),
        readers: readers.into_iter().collect(),
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
        assert_eq!(names(&g, &a.norms), ["bn"]);
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
        assert_eq!(names(&g, &gr.depthwise), ["d"]);
        assert_eq!(
            names(&g, &gr.readers.iter().map(|r| r.0).collect::<Vec<_>>()),
            ["c2"]
        );
        assert_eq!(group(&g, "d").unwrap_err().0, Reason::UnsupportedOp);
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
        assert_eq!(e.0, Reason::UnsupportedOp);
        assert!(e.1.contains("cat"), "{e:?}");
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
