//! Newtype ids for the IR's entities: nodes, values and pass steps.
//!
//! Public signatures never take a raw `usize` or a petgraph index: a `NodeId` cannot be
//! passed where a `ValueId` is wanted. Ids are stable while the graph is rewritten
//! (nodes live in a `StableDiGraph`, values in an append-only arena), and they never
//! appear in the text form, which names everything.

use std::fmt;

/// A node (one operator application) of a [`crate::Graph`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

/// A value (a tensor-typed wire): a graph input, a constant, or a node output.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub(crate) u32);

/// One step of a compilation pipeline (a recipe line run as a pass). Provenance points here.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId(pub u32);

impl NodeId {
    pub(crate) fn index(self) -> petgraph::stable_graph::NodeIndex<u32> {
        petgraph::stable_graph::NodeIndex::new(self.0 as usize)
    }
    pub(crate) fn from_index(ix: petgraph::stable_graph::NodeIndex<u32>) -> Self {
        NodeId(ix.index() as u32)
    }
}

impl ValueId {
    pub(crate) fn idx(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step{}", self.0)
    }
}
