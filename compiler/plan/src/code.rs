//! The planner's diagnostic codes: a closed set, each rendered as `mcc::plan::<name>` (the
//! names are stable: tools match on them).

macro_rules! define_codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A planner diagnostic's code.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// Its name (`bad_parameter`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }
        }
    };
}

define_codes! {
    /// an accuracy budget without labelled evaluation data.
    AccuracyWithoutLabels = "accuracy_without_labels",
    /// a selector attribute the operator does not have.
    AttributeNotApplicable = "attribute_not_applicable",
    /// a `use` argument of the wrong kind.
    BadArgument = "bad_argument",
    /// a budget constraint that cannot hold (direction, kind, sign).
    BadBudget = "bad_budget",
    /// a recipe parameter's default that does not fit its declared type.
    BadDefault = "bad_default",
    /// a parameter value the variant refuses.
    BadParameter = "bad_parameter",
    /// a selector predicate that cannot be evaluated.
    BadPredicate = "bad_predicate",
    /// a selector pattern that is no regular expression.
    BadRegex = "bad_regex",
    /// a value in the wrong unit.
    BadUnit = "bad_unit",
    /// a bug in mcc: the standard library does not parse, or an invariant broke.
    Bug = "bug",
    /// a data set given twice.
    DuplicateData = "duplicate_data",
    /// a parameter given twice.
    DuplicateParameter = "duplicate_parameter",
    /// two recipes of one name.
    DuplicateRecipe = "duplicate_recipe",
    /// two stages of one name.
    DuplicateStage = "duplicate_stage",
    /// a recipe with no rule.
    EmptyRecipe = "empty_recipe",
    /// a selector that selects nothing.
    EmptySelector = "empty_selector",
    /// a required parameter not given.
    MissingParameter = "missing_parameter",
    /// a rule that cannot apply as written to a layer it selects (a rank above the layer's,
    /// pruning a graph output's channels).
    Infeasible = "infeasible",
    /// a step whose parameters make it read calibration statistics, without calibration data.
    NeedsCalibration = "needs_calibration",
    /// an `auto` parameter in a recipe without a budget to choose it under.
    AutoWithoutBudget = "auto_without_budget",
    /// a technique without a default variant, written without one.
    MissingVariant = "missing_variant",
    /// a rule that changes nothing.
    NoEffect = "no_effect",
    /// a rule whose layers the variant does not work on.
    NotApplicable = "not_applicable",
    /// a planned technique or metric.
    NotSupportedYet = "not_supported_yet",
    /// a `use` that would splice in more than a recipe may expand to.
    ExpansionTooLarge = "expansion_too_large",
    /// an output-error budget without data.
    OutputErrorWithoutData = "output_error_without_data",
    /// recipes that use each other in a cycle (or one that uses itself).
    RecursiveUse = "recursive_use",
    /// a rule every layer of which a later rule takes.
    ShadowedRule = "shadowed_rule",
    /// a rule that rewrites weights an earlier stage stored quantized or coded, which then
    /// go back to f32 storage.
    UndoesStorage = "undoes_storage",
    /// a selector attribute mcc does not know.
    UnknownAttribute = "unknown_attribute",
    /// a layer name the model does not have.
    UnknownLayer = "unknown_layer",
    /// a budget metric mcc does not know.
    UnknownMetric = "unknown_metric",
    /// a recipe parameter type mcc does not know.
    UnknownType = "unknown_type",
    /// an operator name mcc does not know.
    UnknownOp = "unknown_op",
    /// a parameter the variant does not take.
    UnknownParameter = "unknown_parameter",
    /// a `use` of a recipe that does not exist.
    UnknownRecipe = "unknown_recipe",
    /// a technique keyword mcc does not know.
    UnknownTechnique = "unknown_technique",
    /// a variant the technique does not have.
    UnknownVariant = "unknown_variant",
    /// a `use` whose chain of recipes nests too deep.
    UseTooDeep = "use_too_deep",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mcc::plan::{}", self.name())
    }
}
