//! The graph: nodes in a petgraph `StableDiGraph`, values in an append-only arena.
//!
//! A *value* is a typed wire: a graph input, a constant (with its data), or output
//! `slot` of a node. A *node* applies an [`Op`] to operand values (an absent optional
//! operand is `None`) and defines its output values. Petgraph edges mirror the operands
//! (producer node → consumer node, weighted by the consumer's operand slot); every
//! mutation goes through this API, which keeps the two in sync.
//!
//! Ids stay valid across rewrites: removing a node leaves the other `NodeId`s alone, and
//! a value that loses its definition is marked [`ValueDef::Dead`] rather than reused.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use petgraph::Direction;
use petgraph::stable_graph::StableDiGraph;
use petgraph::visit::EdgeRef;

use crate::stored::{Encoding, Stored};
use crate::{NodeId, Op, StepId, Tensor, TensorType, ValueId};

/// Where a node came from: the model file, or a compilation step.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Origin {
    /// Imported from the model (or parsed from text) as it is.
    #[default]
    Model,
    /// Created or last rewritten by a pipeline step (a recipe line run as a pass).
    Step(StepId),
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The name recipes select by (the ONNX node name, or a synthesized unique one).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Operand values; `None` is an absent optional operand.
    pub inputs: Vec<Option<ValueId>>,
    /// Values it defines, in output-slot order.
    pub outputs: Vec<ValueId>,
    /// Provenance.
    pub origin: Origin,
}

/// A constant's data: present, or elided (the text form printed only a fingerprint).
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    /// The tensor.
    Dense(Tensor),
    /// Weights in a compressed stored form; they mean [`Stored::decoded`].
    Stored(Box<Stored>),
    /// Not available: the IR text named the weights by fingerprint only.
    Elided {
        /// [`Tensor::fingerprint`] of the missing (decoded) data.
        fingerprint: u64,
        /// How they are stored, when they are stored compressed.
        encoding: Option<Encoding>,
    },
}

/// How a value is defined.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input, supplied at run time.
    Input,
    /// A constant (weights, shapes…).
    Const(ConstData),
    /// Output `slot` of `node`.
    Node {
        /// The producer.
        node: NodeId,
        /// Which of its outputs.
        slot: usize,
    },
    /// No longer defined (its producer was removed); must have no users.
    Dead,
}

/// A typed wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Unique name among live values (the ONNX tensor name).
    pub name: String,
    /// Element type and shape.
    pub ty: TensorType,
    /// Definition.
    pub def: ValueDef,
}

/// A model graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    nodes: StableDiGraph<Node, usize, u32>,
    values: Vec<Value>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

/// A graph mutation referred to something that does not exist or would break the graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// A name is taken by another live value.
    #[error("a value named `{0}` already exists")]
    DuplicateValue(String),
    /// A node id that is not in the graph.
    #[error("{0} is not in the graph")]
    NoSuchNode(NodeId),
    /// The graph has a cycle through this node.
    #[error("the graph has a cycle through node `{0}`")]
    Cycle(String),
    /// Removing a node whose outputs are still used.
    #[error("cannot remove node `{node}`: its output `{value}` is still used")]
    StillUsed {
        /// Node name.
        node: String,
        /// Value name.
        value: String,
    },
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    // ---- building ----

    fn push_value(&mut self, name: String, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value { name, ty, def });
        id
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = self.push_value(name.into(), ty, ValueDef::Input);
        self.inputs.push(id);
        id
    }

    /// Adds a constant; its type is the tensor's.
    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let ty = t.ty();
        self.push_value(name.into(), ty, ValueDef::Const(ConstData::Dense(t)))
    }

    /// Adds a constant whose data is elided (known only by type and fingerprint).
    pub fn add_elided_const(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
        fingerprint: u64,
    ) -> ValueId {
        self.push_value(
            name.into(),
            ty,
            ValueDef::Const(ConstData::Elided {
                fingerprint,
                encoding: None,
            }),
        )
    }

    /// Adds a node and its output values (typed as given; inference may refine them).
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<(String, TensorType)>,
    ) -> NodeId {
        let node = Node {
            name: name.into(),
            op,
            inputs,
            outputs: vec![],
            origin: Origin::Model,
        };
        let id = NodeId::from_index(self.nodes.add_node(node));
        let outs: Vec<ValueId> = outputs
            .into_iter()
            .enumerate()
            .map(|(slot, (n, ty))| self.push_value(n, ty, ValueDef::Node { node: id, slot }))
            .collect();
        self.nodes[id.index()].outputs = outs;
        self.relink(id);
        id
    }

    /// Sets the graph outputs.
    pub fn set_outputs(&mut self, outputs: Vec<ValueId>) {
        self.outputs = outputs;
    }

    // ---- reading ----

    /// Graph inputs in order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// Graph outputs in order.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// A value.
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.idx()]
    }

    /// A value, mutably (to refine its type or rename it).
    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.idx()]
    }

    /// The tensor of a constant value with data present.
    pub fn const_data(&self, v: ValueId) -> Option<&Tensor> {
        match &self.values[v.idx()].def {
            ValueDef::Const(ConstData::Dense(t)) => Some(t),
            ValueDef::Const(ConstData::Stored(s)) => Some(s.decoded()),
            _ => None,
        }
    }

    /// Every value id ever allocated (including dead ones).
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len() as u32).map(ValueId)
    }

    /// A node, if it exists.
    pub fn node(&self, n: NodeId) -> Option<&Node> {
        self.nodes.node_weight(n.index())
    }

    /// A node, mutably; change operands with [`Graph::set_input`] so edges stay in sync.
    pub fn node_mut(&mut self, n: NodeId) -> Option<&mut Node> {
        self.nodes.node_weight_mut(n.index())
    }

    /// All node ids, in allocation order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.node_indices().map(NodeId::from_index).collect()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.node_count()
    }

    /// The node defining a value, if a node does.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        match self.values[v.idx()].def {
            ValueDef::Node { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Every `(node, operand slot)` reading `v`, in node order.
    pub fn users(&self, v: ValueId) -> Vec<(NodeId, usize)> {
        if let Some(p) = self.producer(v) {
            let mut out: Vec<(NodeId, usize)> = self
                .nodes
                .edges_directed(p.index(), Direction::Outgoing)
                .filter(|e| self.nodes[e.target()].inputs.get(*e.weight()) == Some(&Some(v)))
                .map(|e| (NodeId::from_index(e.target()), *e.weight()))
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        } else {
            let mut out = vec![];
            for ix in self.nodes.node_indices() {
                for (slot, i) in self.nodes[ix].inputs.iter().enumerate() {
                    if *i == Some(v) {
                        out.push((NodeId::from_index(ix), slot));
                    }
                }
            }
            out
        }
    }

    /// Whether `v` is read by a node or is a graph output.
    pub fn is_used(&self, v: ValueId) -> bool {
        self.outputs.contains(&v) || !self.users(v).is_empty()
    }

    /// Finds a live value by name.
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.value_ids().find(|&v| {
            let val = self.value(v);
            val.name == name && val.def != ValueDef::Dead
        })
    }

    /// Finds a node by name.
    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .node_indices()
            .find(|&ix| self.nodes[ix].name == name)
            .map(NodeId::from_index)
    }

    /// Nodes in a deterministic topological order: among the nodes that are ready, the
    /// one with the smallest name comes first, so the order depends on names only.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let mut indeg: HashMap<NodeId, usize> = HashMap::new();
        for ix in self.nodes.node_indices() {
            let mut preds: Vec<_> = self
                .nodes
                .neighbors_directed(ix, Direction::Incoming)
                .collect();
            preds.sort_unstable();
            preds.dedup();
            indeg.insert(NodeId::from_index(ix), preds.len());
        }
        // Min-heap on (name, id) via Reverse.
        let mut ready: BinaryHeap<std::cmp::Reverse<(&str, NodeId)>> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(&n, _)| std::cmp::Reverse((self.nodes[n.index()].name.as_str(), n)))
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(std::cmp::Reverse((_, n))) = ready.pop() {
            order.push(n);
            let mut succs: Vec<_> = self
                .nodes
                .neighbors_directed(n.index(), Direction::Outgoing)
                .collect();
            succs.sort_unstable();
            succs.dedup();
            for s in succs {
                let s = NodeId::from_index(s);
                if let Some(d) = indeg.get_mut(&s) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(std::cmp::Reverse((self.nodes[s.index()].name.as_str(), s)));
                    }
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .filter(|(n, _)| !order.contains(n))
                .map(|(n, _)| self.nodes[n.index()].name.clone())
                .min()
                .unwrap_or_default();
            return Err(GraphError::Cycle(stuck));
        }
        Ok(order)
    }

    /// Constants in order of first use (by the topological order), then unused ones by name.
    pub fn consts_in_use_order(&self, order: &[NodeId]) -> Vec<ValueId> {
        let mut seen = Vec::new();
        let is_const = |v: ValueId| matches!(self.value(v).def, ValueDef::Const(_));
        for &n in order {
            for v in self.nodes[n.index()].inputs.iter().flatten() {
                if is_const(*v) && !seen.contains(v) {
                    seen.push(*v);
                }
            }
        }
        for &v in &self.outputs {
            if is_const(v) && !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen
    }

    // ---- rewriting ----

    /// Rebuilds the incoming edges of `n` from its operands.
    fn relink(&mut self, n: NodeId) {
        let incoming: Vec<_> = self
            .nodes
            .edges_directed(n.index(), Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in incoming {
            self.nodes.remove_edge(e);
        }
        let inputs = self.nodes[n.index()].inputs.clone();
        for (slot, v) in inputs.iter().enumerate() {
            if let Some(p) = v.and_then(|v| self.producer(v)) {
                self.nodes.add_edge(p.index(), n.index(), slot);
            }
        }
    }

    /// Replaces operand `slot` of `n`.
    pub fn set_input(
        &mut self,
        n: NodeId,
        slot: usize,
        v: Option<ValueId>,
    ) -> Result<(), GraphError> {
        let node = self
            .nodes
            .node_weight_mut(n.index())
            .ok_or(GraphError::NoSuchNode(n))?;
        if slot >= node.inputs.len() {
            node.inputs.resize(slot + 1, None);
        }
        node.inputs[slot] = v;
        self.relink(n);
        Ok(())
    }

    /// Replaces all operands of `n`.
    pub fn set_inputs(
        &mut self,
        n: NodeId,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<(), GraphError> {
        let node = self
            .nodes
            .node_weight_mut(n.index())
            .ok_or(GraphError::NoSuchNode(n))?;
        node.inputs = inputs;
        self.relink(n);
        Ok(())
    }

    /// Makes every reader of `old` (nodes and graph outputs) read `new` instead.
    ///
    /// When `old` is a graph output, the output keeps `old`'s name: `new` takes it over if
    /// `new` is not itself an input or output, so exported interfaces do not change.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        for (n, slot) in self.users(old) {
            self.nodes[n.index()].inputs[slot] = Some(new);
            self.relink(n);
        }
        if self.outputs.contains(&old) {
            let new_is_interface = self.inputs.contains(&new) || self.outputs.contains(&new);
            for o in self.outputs.iter_mut() {
                if *o == old {
                    *o = new;
                }
            }
            if !new_is_interface {
                let name = std::mem::take(&mut self.values[old.idx()].name);
                self.values[old.idx()].name = format!("{name}.replaced");
                self.values[new.idx()].name = name;
            }
        }
    }

    /// Removes a node whose outputs have no users; they become dead values.
    pub fn remove_node(&mut self, n: NodeId) -> Result<Node, GraphError> {
        let node = self
            .nodes
            .node_weight(n.index())
            .ok_or(GraphError::NoSuchNode(n))?;
        for &o in &node.outputs {
            if self.is_used(o) {
                return Err(GraphError::StillUsed {
                    node: node.name.clone(),
                    value: self.value(o).name.clone(),
                });
            }
        }
        let node = self
            .nodes
            .remove_node(n.index())
            .ok_or(GraphError::NoSuchNode(n))?;
        for &o in &node.outputs {
            self.values[o.idx()].def = ValueDef::Dead;
        }
        Ok(node)
    }

    /// Removes node `n` and turns its outputs into the given constants (constant folding).
    /// Readers keep reading the same values, now constants; outputs without a tensor die.
    pub fn replace_node_by_consts(
        &mut self,
        n: NodeId,
        values: Vec<Tensor>,
    ) -> Result<(), GraphError> {
        let node = self
            .nodes
            .remove_node(n.index())
            .ok_or(GraphError::NoSuchNode(n))?;
        let mut values = values.into_iter();
        for &o in &node.outputs {
            match values.next() {
                Some(t) => self.make_const(o, t),
                None => self.values[o.idx()].def = ValueDef::Dead,
            }
        }
        Ok(())
    }

    /// Replaces a value's definition by constant data (constant folding).
    pub fn make_const(&mut self, v: ValueId, t: Tensor) {
        let val = &mut self.values[v.idx()];
        val.ty = t.ty();
        val.def = ValueDef::Const(ConstData::Dense(t));
    }

    /// Replaces a value's definition by stored constant data (its type is the decoded
    /// tensor's).
    pub fn store_const(&mut self, v: ValueId, s: Stored) {
        let val = &mut self.values[v.idx()];
        val.ty = s.decoded().ty();
        val.def = ValueDef::Const(ConstData::Stored(Box::new(s)));
    }

    /// The stored form of a constant, when it has one.
    pub fn stored(&self, v: ValueId) -> Option<&Stored> {
        match &self.values[v.idx()].def {
            ValueDef::Const(ConstData::Stored(s)) => Some(s),
            _ => None,
        }
    }

    /// Bytes a constant takes as stored: its stored form's, else its dense tensor's (0 for a
    /// value that is no constant with data).
    pub fn stored_bytes(&self, v: ValueId) -> usize {
        match &self.values[v.idx()].def {
            ValueDef::Const(ConstData::Stored(s)) => s.bytes(),
            ValueDef::Const(ConstData::Dense(t)) => t.len() * t.dtype().size(),
            _ => 0,
        }
    }

    /// Adds an elided constant stored in `encoding` (the review form of a stored constant).
    pub fn add_elided_stored(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
        fingerprint: u64,
        encoding: Encoding,
    ) -> ValueId {
        self.push_value(
            name.into(),
            ty,
            ValueDef::Const(ConstData::Elided {
                fingerprint,
                encoding: Some(encoding),
            }),
        )
    }

    /// Drops constants no node or output reads (they become dead).
    pub fn remove_unused_consts(&mut self) -> usize {
        let mut used = vec![false; self.values.len()];
        for ix in self.nodes.node_indices() {
            for v in self.nodes[ix].inputs.iter().flatten() {
                used[v.idx()] = true;
            }
        }
        for v in &self.outputs {
            used[v.idx()] = true;
        }
        let mut removed = 0;
        for (i, val) in self.values.iter_mut().enumerate() {
            if matches!(val.def, ValueDef::Const(_)) && !used[i] {
                val.def = ValueDef::Dead;
                removed += 1;
            }
        }
        removed
    }

    /// Removes graph inputs that nothing reads, keeping the others in order.
    pub fn remove_input(&mut self, v: ValueId) {
        self.inputs.retain(|&i| i != v);
        if !self.is_used(v) {
            self.values[v.idx()].def = ValueDef::Dead;
        }
    }

    /// Turns a graph input into a constant (old exporters list initializers as inputs).
    pub fn input_to_const(&mut self, v: ValueId, t: Tensor) {
        self.inputs.retain(|&i| i != v);
        self.make_const(v, t);
    }

    /// A name not used by any live value, built from `base`.
    pub fn fresh_value_name(&self, base: &str) -> String {
        let taken: BTreeMap<&str, ()> = self
            .values
            .iter()
            .filter(|v| v.def != ValueDef::Dead)
            .map(|v| (v.name.as_str(), ()))
            .collect();
        if !taken.contains_key(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}.{i}"))
            .find(|n| !taken.contains_key(n.as_str()))
            .unwrap_or_default()
    }
}
