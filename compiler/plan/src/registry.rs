//! The technique registry's types: a technique's variants, each variant's parameter schema,
//! and — for variants that are built — the [`Technique`] that runs it. The planner checks
//! recipes against a [`Registry`], so a technique that is planned but not built yet is a clear
//! "not supported yet" error, never silently skipped; the driver runs a step through its
//! variant's entry. The standard table is `mcc_passes::registry()`; tests add their own.

use crate::plan::{ParamValue, Severity};
use crate::technique::Technique;

/// The type of a technique parameter.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum ParamType {
    /// A fraction in [0, 1], written `50%` or `0.5`.
    Ratio,
    /// A whole number in `[min, max]`.
    Int {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A bit width from the list (written `4` or `4 bits`).
    Bits(&'static [i64]),
    /// One word out of the list.
    Choice(&'static [&'static str]),
    /// A file path (a string).
    Path,
    /// A non-negative number.
    Number,
}

impl ParamType {
    /// How the type reads in messages.
    pub fn describe(&self) -> String {
        match self {
            ParamType::Ratio => "a ratio (like 50% or 0.5)".into(),
            ParamType::Int { min, max } => format!("a whole number from {min} to {max}"),
            ParamType::Bits(b) => format!(
                "a bit width ({})",
                b.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            ParamType::Choice(c) => format!("one of {}", c.join(", ")),
            ParamType::Path => "a quoted file path".into(),
            ParamType::Number => "a number".into(),
        }
    }
}

/// A parameter's default.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Default {
    /// Must be given.
    Required,
    /// A number (ratios as fractions).
    Num(f64),
    /// A word.
    Word(&'static str),
}

/// One parameter.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ParamSchema {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Its default.
    pub default: Default,
    /// What it means.
    pub doc: &'static str,
}

/// Which nodes a technique can change.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Conv, Gemm and MatMul nodes with constant weights.
    Weighted,
    /// Any node.
    Any,
    /// Nodes of these operator types.
    Ops(&'static [&'static str]),
}

/// Whether a variant is built.
#[derive(Copy, Clone)]
pub enum Status {
    /// It runs: this is its implementation.
    Ready(&'static dyn Technique),
    /// Planned; the string says where it is tracked.
    Planned(&'static str),
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Ready(_) => write!(f, "Ready"),
            Status::Planned(track) => write!(f, "Planned({track:?})"),
        }
    }
}

impl Status {
    /// Whether the variant runs.
    pub fn is_ready(&self) -> bool {
        matches!(self, Status::Ready(_))
    }
}

/// One variant of a technique.
#[derive(Copy, Clone, Debug)]
pub struct VariantSchema {
    /// Its name (`unstructured`, `int8`…).
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Its parameters.
    pub params: &'static [ParamSchema],
    /// What it can change.
    pub applies: Applies,
    /// Built or planned.
    pub status: Status,
    /// Checks that concern several parameters, or values that are in range but make no sense
    /// (pruning 100%, `n ≥ m`): run by the planner once every parameter has its type.
    pub check_params: ParamCheck,
    /// The parameter `mcc sensitivity` sweeps, and its values, for a variant whose strength
    /// is one number (`None` for exact rewrites like the merges).
    pub sweep: Option<Sweep>,
}

/// A parameter and the values a sensitivity analysis tries.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Sweep {
    /// The parameter.
    pub param: &'static str,
    /// Its values, weakest first.
    pub values: &'static [f64],
}

/// A variant's parameters, defaults filled in, in schema order.
pub type Params = [(&'static str, ParamValue)];

/// A variant's cross-parameter check.
pub type ParamCheck = fn(&Params) -> Vec<ParamIssue>;

/// The check of a variant whose parameters need no more than their types.
pub fn no_param_check(_: &Params) -> Vec<ParamIssue> {
    Vec::new()
}

/// A problem with a rule's parameters found by a [`ParamCheck`].
#[derive(Clone, Debug, PartialEq)]
pub struct ParamIssue {
    /// Error (the rule cannot run) or warning.
    pub severity: Severity,
    /// The parameter the diagnostic points at.
    pub param: &'static str,
    /// The message.
    pub message: String,
    /// The label under the parameter.
    pub label: String,
    /// A hint.
    pub help: Option<String>,
}

/// A number parameter's value, if it is one.
pub fn num(params: &Params, name: &str) -> Option<f64> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| match v {
            ParamValue::Num(x) => Some(*x),
            _ => None,
        })
}

/// A technique family.
#[derive(Copy, Clone, Debug)]
pub struct TechniqueSchema {
    /// The keyword (`prune`, `quantize`…).
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// The variant used when none is written.
    pub default_variant: Option<&'static str>,
    /// Its variants.
    pub variants: &'static [VariantSchema],
    /// Whether a layer gets at most one of the variants (int8 *or* int4), so that a later
    /// rule overrides an earlier one for the layers both select; `false` when the variants
    /// are different rewrites that compose (the `merge` passes).
    pub exclusive: bool,
}

/// A parameter schema (short, for registry tables).
pub const fn p(
    name: &'static str,
    ty: ParamType,
    default: Default,
    doc: &'static str,
) -> ParamSchema {
    ParamSchema {
        name,
        ty,
        default,
        doc,
    }
}

/// A ratio parameter.
pub const RATIO: ParamType = ParamType::Ratio;
/// Filter and channel ranking criteria.
pub const CRITERIA: ParamType = ParamType::Choice(&["l1", "l2", "bn_gamma", "apoz", "thinet"]);
/// Scale granularity.
pub const GRANULARITY: ParamType = ParamType::Choice(&["tensor", "channel"]);

/// The techniques a planner checks against and a driver runs.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    techniques: Vec<TechniqueSchema>,
}

impl Registry {
    /// A registry of these techniques.
    pub fn new(techniques: Vec<TechniqueSchema>) -> Registry {
        Registry { techniques }
    }

    /// The registry with `technique` added (replacing one of the same name).
    pub fn with(mut self, technique: TechniqueSchema) -> Registry {
        self.techniques.retain(|t| t.name != technique.name);
        self.techniques.push(technique);
        self
    }

    /// Every technique, in table order.
    pub fn techniques(&self) -> &[TechniqueSchema] {
        &self.techniques
    }

    /// Looks up a technique.
    pub fn technique(&self, name: &str) -> Option<&TechniqueSchema> {
        self.techniques.iter().find(|t| t.name == name)
    }

    /// Looks up a variant.
    pub fn variant(&self, technique: &str, variant: &str) -> Option<&VariantSchema> {
        self.technique(technique)?
            .variants
            .iter()
            .find(|v| v.name == variant)
    }

    /// The implementation of a variant, if it is built.
    pub fn implementation(&self, technique: &str, variant: &str) -> Option<&'static dyn Technique> {
        match self.variant(technique, variant)?.status {
            Status::Ready(t) => Some(t),
            Status::Planned(_) => None,
        }
    }
}
