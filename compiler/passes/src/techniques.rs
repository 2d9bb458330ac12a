//! The standard technique registry: every technique of the recipe language. A built variant's
//! entry is the `VARIANT` constant of its own file (schema and implementation together); a
//! planned variant's schema waits here, with a "not supported yet" status, until it is built.
//!
//! Adding a technique: write its file (the `Technique` implementation, its `VARIANT` entry
//! and its doc comment), put `file::VARIANT` in this table, and document it in
//! `docs/recipes.md` (ARCHITECTURE.md shows an example).

use mcc_plan::Registry;
use mcc_plan::registry::{
    Applies, Default, ParamType, Status, TechniqueSchema, VariantSchema, no_param_check, p,
};

use crate::{
    encode_huffman, factorize_separable, factorize_svd, factorize_tucker, merge_activations,
    merge_batchnorm, merge_branches, merge_cleanup, merge_linear, merge_pad, merge_pool,
    merge_scale, prune_block, prune_filters, prune_nm, prune_unstructured, quantize_binary,
    quantize_int, quantize_int8, quantize_kmeans, quantize_ternary,
};

/// The standard registry: [`TECHNIQUES`].
pub fn registry() -> Registry {
    Registry::new(TECHNIQUES.to_vec())
}

/// Every technique of the language: the built variants from their files, the planned ones
/// (schema only) until they are built.
pub const TECHNIQUES: &[TechniqueSchema] = &[
    TechniqueSchema {
        name: "prune",
        summary: "remove weights (parameter pruning)",
        default_variant: Some("unstructured"),
        exclusive: true,
        variants: &[
            prune_unstructured::VARIANT,
            prune_nm::VARIANT,
            prune_block::VARIANT,
            prune_filters::VARIANT,
            prune_filters::CHANNELS,
        ],
    },
    TechniqueSchema {
        name: "factorize",
        summary: "replace a layer by a low-rank pair of layers",
        default_variant: Some("svd"),
        exclusive: true,
        variants: &[
            factorize_svd::VARIANT,
            factorize_tucker::VARIANT,
            factorize_separable::VARIANT,
        ],
    },
    TechniqueSchema {
        name: "quantize",
        summary: "store weights (and activations) in fewer bits",
        default_variant: Some("int8"),
        exclusive: true,
        variants: &[
            quantize_int8::VARIANT,
            quantize_int::VARIANT,
            quantize_binary::VARIANT,
            quantize_ternary::VARIANT,
            quantize_kmeans::VARIANT,
        ],
    },
    TechniqueSchema {
        name: "share",
        summary: "make weights share storage",
        default_variant: Some("hashing"),
        exclusive: true,
        variants: &[VariantSchema {
            name: "hashing",
            summary: "HashedNets: weights drawn from a small hashed bucket array",
            params: &[p(
                "buckets",
                ParamType::Int {
                    min: 1,
                    max: 1 << 24,
                },
                Default::Required,
                "bucket count per layer",
            )],
            applies: Applies::Weighted,
            status: Status::Planned(
                "quantization, weight sharing and Huffman coding with int8 kernels",
            ),
            check_params: no_param_check,
            sweep: None,
        }],
    },
    TechniqueSchema {
        name: "encode",
        summary: "entropy-code stored weights",
        default_variant: Some("huffman"),
        exclusive: true,
        variants: &[encode_huffman::VARIANT],
    },
    TechniqueSchema {
        name: "merge",
        summary: "exact layer merging (DeepRebirth)",
        default_variant: None,
        exclusive: false,
        variants: &[
            merge_batchnorm::VARIANT,
            merge_scale::VARIANT,
            merge_pool::VARIANT,
            merge_activations::VARIANT,
            merge_linear::VARIANT,
            merge_pad::VARIANT,
            merge_branches::VARIANT,
            merge_cleanup::VARIANT,
        ],
    },
    TechniqueSchema {
        name: "distill",
        summary: "knowledge distillation from a teacher",
        default_variant: Some("logits"),
        exclusive: true,
        variants: &[VariantSchema {
            name: "logits",
            summary: "train the compressed model on the teacher's softened outputs",
            params: &[
                p(
                    "teacher",
                    ParamType::Path,
                    Default::Required,
                    "the teacher model",
                ),
                p(
                    "temperature",
                    ParamType::Number,
                    Default::Num(4.0),
                    "softmax temperature",
                ),
            ],
            applies: Applies::Any,
            status: Status::Planned("distillation and automatic search under budgets"),
            check_params: no_param_check,
            sweep: None,
        }],
    },
    TechniqueSchema {
        name: "search",
        summary: "search per-layer settings under the budget",
        default_variant: Some("greedy"),
        exclusive: true,
        variants: &[VariantSchema {
            name: "greedy",
            summary: "per-layer ratios chosen greedily by measured sensitivity",
            params: &[p(
                "trials",
                ParamType::Int {
                    min: 1,
                    max: 10_000,
                },
                Default::Num(20.0),
                "candidates evaluated",
            )],
            applies: Applies::Any,
            status: Status::Planned("distillation and automatic search under budgets"),
            check_params: no_param_check,
            sweep: None,
        }],
    },
];
