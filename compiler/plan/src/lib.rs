//! `mcc-plan`: recipe semantics. Checks a parsed recipe against a model and a technique
//! [`registry::Registry`] and resolves it into a [`plan::Plan`] of steps on named layers,
//! collecting every diagnostic; defines the [`technique::Technique`] interface every
//! compression technique implements, and the closed set of [`Reason`]s it gives for a layer
//! it leaves alone.
//!
//! **Invariant:** no I/O (the driver checks data files), no rewriting: the planner can be run
//! and fuzzed on any text.

pub mod code;
pub mod lines;
pub mod modules;
pub mod plan;
pub mod reason;
pub mod registry;
pub mod select;
pub mod technique;

pub use reason::Reason;
pub use registry::Registry;
pub use technique::{
    Infeasible, LeftAlone, Merged, Outcome, Stat, StatRequest, Stats, Technique, TechniqueError,
};
