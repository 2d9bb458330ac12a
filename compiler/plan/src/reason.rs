//! Why a technique left a selected layer alone: a closed set of kinds, each with a stable
//! snake_case code (report.json's `left_alone[].reason`: tools match on them) and a one-line
//! description. The sentence that says what exactly stood in the way travels beside it
//! ([`crate::LeftAlone::detail`]).
//!
//! Each kind is defined once, in the `define_reasons!` table below: its variant, its code
//! and its description (which is also its doc comment, the JSON Schema's description and
//! the row `docs/report.md` must carry, tested).

macro_rules! define_reasons {
    ($($variant:ident = $code:literal, $description:literal;)*) => {
        /// Why a technique left a selected layer alone (a kind, not a sentence).
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $(#[doc = $description] $variant,)*
        }

        impl Reason {
            /// Every reason, in table order.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            /// Its stable code (`shared_output`).
            pub fn code(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            /// One line saying what the kind means.
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$variant => $description,)*
                }
            }
        }
    };
}

define_reasons! {
    SharedOutput = "shared_output",
        "An output the merge would absorb or remove is also read elsewhere (by another layer, or as a graph output).";
    GraphInterface = "graph_interface",
        "Merging would remove or rename one of the model's inputs or outputs.";
    NotConstant = "not_constant",
        "Weights or parameters the fold reads are not f32 constants (they are computed at run time, or of another type).";
    UnsupportedOp = "unsupported_op",
        "The layer it would merge with is not an operator the merge works on, or there is none (a graph input, no reader, another tensor's branch).";
    UnsupportedAttribute = "unsupported_attribute",
        "An attribute, mode, value type or operand role the technique does not handle (dilation, groups, auto_pad, transA, a pad mode, training mode, a kernel size…).";
    UnknownShape = "unknown_shape",
        "A shape, rank or channel count the fold needs is not known.";
    ShapeMismatch = "shape_mismatch",
        "Shapes, ranks or channel counts do not line up as the technique needs (for N:M, a reduction length that is not a multiple of m).";
    HasActivation = "has_activation",
        "A layer already ends in an activation epilogue, which the merge cannot carry through.";
    NotExact = "not_exact",
        "The fold would change the outputs (padding that would not be normalized or averaged alike, another padding value, partial windows).";
    MoreWork = "more_work",
        "The merged layer would do more multiply-accumulates than the layers it replaces.";
    NotSmaller = "not_smaller",
        "The compressed form would store as many weights as the layer or more (a factorization rank too high for the layer's shape).";
    TooLarge = "too_large",
        "The layer is beyond what the technique's solver takes here (an eigenproblem or XᵀX wider than its bound).";
    MissingOperand = "missing_operand",
        "An operand the technique reads is absent.";
    MergedAway = "merged_away",
        "An earlier step merged the layer into another.";
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn codes_are_distinct_snake_case_and_described() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let code = r.code();
            assert!(seen.insert(code), "`{code}` twice");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "`{code}` is not snake_case"
            );
            assert!(r.description().ends_with('.'), "`{code}`: a sentence");
        }
    }
}
