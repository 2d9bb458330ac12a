//! The technique interface: what every compression technique implements, so the driver can
//! run any plan step without knowing which technique it is.
//!
//! A technique is a [`Technique`] value referenced by its variant's registry entry
//! ([`crate::registry::Status::Ready`]). The driver, for each step of a plan:
//!
//! 1. asks [`Technique::needs`] which calibration statistics the rewrite reads, and has them
//!    collected on the model **as it stands before this step** (after every upstream rewrite);
//! 2. calls [`Technique::rewrite`] with the graph, the step and a [`Stats`] source;
//! 3. re-types and verifies the graph, and invalidates cached statistics if anything changed.
//!
//! A technique that changes layers one at a time, each seeing the ones before it changed
//! (OBS, least-squares refits: what SparseGPT and OBC do), says so with
//! [`Technique::collects_upfront`] `false`: the driver then collects nothing ahead, and the
//! rewrite asks [`Stats::get`] for each layer's statistics when it reaches the layer and calls
//! [`Stats::invalidate`] after changing it.
//!
//! `explain` calls [`Technique::check`] instead, which changes nothing and reports which
//! selected layers the step would leave alone, and why.
//!
//! **Invariant:** a rewrite changes only the layers of its step (plus constants it owns), keeps
//! the graph's inputs and outputs, and reports every layer it changed in [`Outcome::changed`].

use std::sync::Arc;

use mcc_ir::{Graph, StepId, Tensor};

use crate::plan::Step;
use crate::reason::Reason;

/// A compression technique (one variant of a recipe keyword).
pub trait Technique: Sync {
    /// The statistics the rewrite reads for `step` on `graph` (nothing, for data-free
    /// techniques).
    fn needs(&self, _graph: &Graph, _step: &Step) -> Vec<StatRequest> {
        Vec::new()
    }

    /// Whether the driver collects everything [`Technique::needs`] lists in one pass before
    /// the rewrite (the default). `false` for a rewrite that works layer by layer, asking for
    /// each layer's statistics on the model as its earlier layers left it.
    fn collects_upfront(&self) -> bool {
        true
    }

    /// Which of the step's layers the rewrite would leave alone, and why, without changing
    /// the graph. The default runs a data-free rewrite on a copy; a technique that needs
    /// statistics reports nothing here unless it overrides this.
    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        if !self.needs(graph, step).is_empty() {
            return Ok(Vec::new());
        }
        let mut copy = graph.clone();
        Ok(self
            .rewrite(&mut copy, step, StepId(0), &mut NoStats)?
            .left_alone)
    }

    /// Layers the step selects but cannot apply to as written, found on the model before any
    /// step runs (a rank above the layer's, pruning the channels of a graph output): each
    /// is an error at the rule when the recipe is checked. None by default.
    fn infeasible(&self, _graph: &Graph, _step: &Step) -> Vec<Infeasible> {
        Vec::new()
    }

    /// What `explain` should say about each of the step's layers beyond its parameters, as
    /// (layer, note) — e.g. the dependency group filter pruning would prune it with. None by
    /// default.
    fn notes(&self, _graph: &Graph, _step: &Step) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The step as steps of one layer each, each doing to its layer what the whole step
    /// would (decided on `graph` as the step finds it) — for a step whose treatment of a
    /// layer depends on the other layers it selects, like one magnitude threshold over all of
    /// them. Attribution runs a layer alone, or leaves one out, with each layer pinned this
    /// way. `None` (the default): each layer's treatment is its own, so the step with fewer
    /// layers does the same to each of them.
    fn per_layer(&self, _graph: &Graph, _step: &Step) -> Option<Vec<Step>> {
        None
    }

    /// Rewrites the step's layers, recording `id` as the origin of what it changes.
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError>;
}

/// What one rewrite did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Layers whose computation changed (weights, shape or operator), in step order.
    pub changed: Vec<String>,
    /// Layers removed by merging them into another.
    pub merged: Vec<Merged>,
    /// Selected layers the technique did not change, and why.
    pub left_alone: Vec<LeftAlone>,
}

impl Outcome {
    /// Whether the graph changed at all.
    pub fn changed_anything(&self) -> bool {
        !self.changed.is_empty() || !self.merged.is_empty()
    }
}

/// A layer merged into another.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The removed layer (the norm, the activation…).
    pub removed: String,
    /// The layer that absorbed it.
    pub into: String,
    /// The original layer whose output `into`'s output now equals: the removed layer when it
    /// came after (a norm, an activation, the second of a linear pair, a join), `into` itself
    /// when it came before (a Pad).
    pub stands_for: String,
}

/// A layer a step selects but cannot apply to as written: a compile-time error.
#[derive(Clone, Debug, PartialEq)]
pub struct Infeasible {
    /// The layer.
    pub node: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

/// A selected layer a technique did not change, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LeftAlone {
    /// The layer.
    pub node: String,
    /// Why it stays, as a kind. A technique that tried more than one way (a norm folded into
    /// the layer before it, else into the layers after it) gives the first way's.
    pub reason: Reason,
    /// Why it stays, for people: what exactly stood in the way (`` `conv`'s output is also
    /// read elsewhere ``).
    pub detail: String,
}

/// A technique could not run (a bug in it, or a graph it cannot handle).
#[derive(Clone, Debug, PartialEq)]
pub struct TechniqueError {
    /// The layer, or empty when the whole graph is concerned.
    pub node: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for TechniqueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "layer `{}`: {}", self.node, self.message)
        }
    }
}

impl std::error::Error for TechniqueError {}

/// A calibration statistic a technique reads. Layers are named by node, tensors by value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatRequest {
    /// Up to `samples` calibration samples of the layer's first input, in data order.
    Inputs {
        /// The layer.
        layer: String,
        /// How many samples at most.
        samples: usize,
    },
    /// XᵀX of a linear layer's input, with X's rows the layer's input vectors: a Gemm or
    /// MatMul's rows, a Conv's im2col patches (groups = 1).
    Gram {
        /// The layer.
        layer: String,
    },
    /// The mean of the rows of X as [`StatRequest::Gram`] defines them (a Conv of any group
    /// count: its patches over all input channels), so `mean · w` is the layer's mean
    /// pre-activation output through weights `w`.
    Mean {
        /// The layer.
        layer: String,
    },
    /// Per-channel (axis 1) minimum and maximum of a tensor; one range for the whole tensor
    /// when its shape is known only at run time.
    Ranges {
        /// The tensor.
        value: String,
    },
    /// A histogram of a tensor's finite values over a symmetric range `[-bound, bound]`: the
    /// smallest power of two ≥ max|x| (data-dependent, so reported in the [`Stat`]), with
    /// `bins` bins (rounded up to a multiple of 4, at most 65536).
    Histogram {
        /// The tensor.
        value: String,
        /// Bin count.
        bins: usize,
    },
    /// Per-channel fraction of zeros of a tensor (APoZ, after an activation).
    ZeroFraction {
        /// The tensor.
        value: String,
    },
}

impl StatRequest {
    /// The layer or tensor the request names.
    pub fn subject(&self) -> &str {
        match self {
            StatRequest::Inputs { layer, .. }
            | StatRequest::Gram { layer }
            | StatRequest::Mean { layer } => layer,
            StatRequest::Ranges { value }
            | StatRequest::Histogram { value, .. }
            | StatRequest::ZeroFraction { value } => value,
        }
    }
}

/// A collected statistic. Sums are accumulated in f64, sample by sample in data order, so the
/// same data gives the same bits whatever the thread count.
#[derive(Clone, Debug, PartialEq)]
pub enum Stat {
    /// Samples of a tensor, batch first.
    Inputs(Tensor),
    /// A `k × k` Gram matrix, row-major, and the number of rows of X it sums.
    Gram {
        /// Side.
        k: usize,
        /// Rows summed.
        rows: usize,
        /// Entries.
        data: Vec<f64>,
    },
    /// The mean row of X (its width), and the number of rows it averages.
    Mean {
        /// Entries.
        mean: Vec<f64>,
        /// Rows averaged.
        rows: usize,
    },
    /// Per-channel minimum and maximum.
    Ranges {
        /// Minimum per channel.
        min: Vec<f64>,
        /// Maximum per channel.
        max: Vec<f64>,
    },
    /// A histogram.
    Histogram {
        /// The symmetric range's bound.
        bound: f64,
        /// Counts per bin.
        counts: Vec<u64>,
    },
    /// Per-channel fraction of zeros.
    ZeroFraction(Vec<f64>),
}

/// Where a rewrite gets its statistics: the driver's calibration context, collected on the
/// model as it stands.
pub trait Stats {
    /// The statistic for `request` on `graph` (the model as it stands before the step).
    fn get(&mut self, graph: &Graph, request: &StatRequest) -> Result<Arc<Stat>, TechniqueError>;

    /// Forgets what was collected: the rewrite changed the model, and statistics asked for
    /// from now on must see the change.
    fn invalidate(&mut self) {}
}

/// A [`Stats`] with no data: every request is an error. For dry runs and data-free steps.
pub struct NoStats;

impl Stats for NoStats {
    fn get(&mut self, _graph: &Graph, request: &StatRequest) -> Result<Arc<Stat>, TechniqueError> {
        Err(TechniqueError {
            node: request.subject().to_string(),
            message: "this step needs calibration data (`calibrate with \"FILE.npy\"`)".into(),
        })
    }
}
