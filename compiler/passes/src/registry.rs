//! The technique registry: every technique the recipe language knows, its variants, and
//! each variant's parameter schema. The planner checks recipes against this one table, so
//! a technique that is planned but not built yet is a clear "not supported yet" error,
//! never silently skipped.

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
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// It runs.
    Ready,
    /// Planned; the string says where it is tracked.
    Planned(&'static str),
}

/// One variant of a technique.
#[derive(Copy, Clone, Debug, PartialEq)]
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
}

/// A technique family.
#[derive(Copy, Clone, Debug, PartialEq)]
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

const fn p(name: &'static str, ty: ParamType, default: Default, doc: &'static str) -> ParamSchema {
    ParamSchema {
        name,
        ty,
        default,
        doc,
    }
}

const RATIO: ParamType = ParamType::Ratio;
const CRITERIA: ParamType = ParamType::Choice(&["l1", "l2", "bn_gamma", "apoz", "thinet"]);
const GRANULARITY: ParamType = ParamType::Choice(&["tensor", "channel"]);

/// Every technique of the language.
pub const TECHNIQUES: &[TechniqueSchema] = &[
    TechniqueSchema {
        name: "prune",
        summary: "remove weights (parameter pruning)",
        default_variant: Some("unstructured"),
        exclusive: true,
        variants: &[
            VariantSchema {
                name: "unstructured",
                summary: "zero the smallest-magnitude weights of each layer",
                params: &[p(
                    "amount",
                    RATIO,
                    Default::Required,
                    "fraction of each layer's weights set to zero",
                )],
                applies: Applies::Weighted,
                status: Status::Ready,
            },
            VariantSchema {
                name: "nm",
                summary: "N:M structured sparsity: keep n of every m consecutive weights",
                params: &[
                    p(
                        "n",
                        ParamType::Int { min: 1, max: 16 },
                        Default::Required,
                        "weights kept per group",
                    ),
                    p(
                        "m",
                        ParamType::Int { min: 2, max: 16 },
                        Default::Required,
                        "group size",
                    ),
                ],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
            VariantSchema {
                name: "filters",
                summary: "remove whole output filters, ranked by a criterion",
                params: &[
                    p("keep", RATIO, Default::Required, "fraction of filters kept"),
                    p("by", CRITERIA, Default::Word("l1"), "ranking criterion"),
                ],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
            VariantSchema {
                name: "channels",
                summary: "remove whole input channels, ranked by a criterion",
                params: &[
                    p(
                        "keep",
                        RATIO,
                        Default::Required,
                        "fraction of channels kept",
                    ),
                    p("by", CRITERIA, Default::Word("l1"), "ranking criterion"),
                ],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
        ],
    },
    TechniqueSchema {
        name: "factorize",
        summary: "replace a layer by a low-rank pair of layers",
        default_variant: Some("svd"),
        exclusive: true,
        variants: &[
            VariantSchema {
                name: "svd",
                summary: "truncated SVD of the weight matrix",
                params: &[
                    p(
                        "rank",
                        ParamType::Int {
                            min: 1,
                            max: 1 << 20,
                        },
                        Default::Num(0.0),
                        "rank kept (0: use energy)",
                    ),
                    p(
                        "energy",
                        RATIO,
                        Default::Num(0.95),
                        "fraction of squared singular values kept when no rank is given",
                    ),
                ],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
            VariantSchema {
                name: "tucker",
                summary: "Tucker-2 decomposition of a convolution kernel",
                params: &[
                    p(
                        "rank",
                        ParamType::Int {
                            min: 1,
                            max: 1 << 20,
                        },
                        Default::Num(0.0),
                        "rank of both modes (0: use energy)",
                    ),
                    p(
                        "energy",
                        RATIO,
                        Default::Num(0.95),
                        "fraction of energy kept when no rank is given",
                    ),
                ],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
            VariantSchema {
                name: "separable",
                summary: "a k×k convolution as k×1 then 1×k",
                params: &[p(
                    "rank",
                    ParamType::Int {
                        min: 1,
                        max: 1 << 20,
                    },
                    Default::Num(1.0),
                    "separable rank",
                )],
                applies: Applies::Weighted,
                status: Status::Planned("pruning and factorization with sparse kernels"),
            },
        ],
    },
    TechniqueSchema {
        name: "quantize",
        summary: "store weights (and activations) in fewer bits",
        default_variant: Some("int8"),
        exclusive: true,
        variants: &[
            VariantSchema {
                name: "int8",
                summary: "8-bit integer weights and activations",
                params: &[
                    p(
                        "mode",
                        ParamType::Choice(&["static", "dynamic"]),
                        Default::Word("static"),
                        "activation scales from calibration (static) or at run time (dynamic)",
                    ),
                    p(
                        "per",
                        GRANULARITY,
                        Default::Word("channel"),
                        "one scale per tensor or per output channel",
                    ),
                    p(
                        "calibration",
                        ParamType::Choice(&["minmax", "percentile", "entropy"]),
                        Default::Word("minmax"),
                        "how activation ranges are chosen",
                    ),
                ],
                applies: Applies::Weighted,
                status: Status::Planned(
                    "quantization, weight sharing and Huffman coding with int8 kernels",
                ),
            },
            VariantSchema {
                name: "int4",
                summary: "4-bit integer weights",
                params: &[p(
                    "per",
                    GRANULARITY,
                    Default::Word("channel"),
                    "one scale per tensor or per output channel",
                )],
                applies: Applies::Weighted,
                status: Status::Planned(
                    "quantization, weight sharing and Huffman coding with int8 kernels",
                ),
            },
            VariantSchema {
                name: "binary",
                summary: "weights in {−α, +α}",
                params: &[p(
                    "per",
                    GRANULARITY,
                    Default::Word("channel"),
                    "one α per tensor or per output channel",
                )],
                applies: Applies::Weighted,
                status: Status::Planned(
                    "quantization, weight sharing and Huffman coding with int8 kernels",
                ),
            },
            VariantSchema {
                name: "ternary",
                summary: "weights in {−α, 0, +α} (TWN)",
                params: &[p(
                    "threshold",
                    RATIO,
                    Default::Num(0.7),
                    "threshold as a fraction of the mean |w|",
                )],
                applies: Applies::Weighted,
                status: Status::Planned(
                    "quantization, weight sharing and Huffman coding with int8 kernels",
                ),
            },
            VariantSchema {
                name: "kmeans",
                summary: "k-means weight clustering: a codebook of 2^bits centroids per layer",
                params: &[p(
                    "bits",
                    ParamType::Bits(&[1, 2, 3, 4, 5, 6, 7, 8]),
                    Default::Num(5.0),
                    "index width",
                )],
                applies: Applies::Weighted,
                status: Status::Planned(
                    "quantization, weight sharing and Huffman coding with int8 kernels",
                ),
            },
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
        }],
    },
    TechniqueSchema {
        name: "encode",
        summary: "entropy-code stored weights",
        default_variant: Some("huffman"),
        exclusive: true,
        variants: &[VariantSchema {
            name: "huffman",
            summary: "Huffman-code weight indices (Deep Compression's last step)",
            params: &[],
            applies: Applies::Weighted,
            status: Status::Planned(
                "quantization, weight sharing and Huffman coding with int8 kernels",
            ),
        }],
    },
    TechniqueSchema {
        name: "merge",
        summary: "exact layer merging (DeepRebirth)",
        default_variant: None,
        exclusive: false,
        variants: &[
            VariantSchema {
                name: "batchnorm",
                summary: "fold BatchNormalization into the adjacent Conv/Gemm",
                params: &[],
                applies: Applies::Ops(&["BatchNormalization"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "scale",
                summary: "fold a Mul or Add by a per-channel constant into the Conv/Gemm/MatMul before it",
                params: &[],
                applies: Applies::Ops(&["Mul", "Add"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "pool",
                summary: "fold an AveragePool into the Conv before it: one strided Conv",
                params: &[],
                applies: Applies::Ops(&["AveragePool"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "activations",
                summary: "fuse activations into the producing layer",
                params: &[],
                applies: Applies::Ops(&[
                    "Relu",
                    "LeakyRelu",
                    "Clip",
                    "Sigmoid",
                    "HardSigmoid",
                    "HardSwish",
                    "Tanh",
                ]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "linear",
                summary: "collapse a Conv/Gemm/MatMul into the linear layer before it (1×1 Conv after Conv, Gemm/MatMul chains)",
                params: &[],
                applies: Applies::Ops(&["Conv", "Gemm", "MatMul"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "pad",
                summary: "fold a Pad into the Convs and pools that read it",
                params: &[],
                applies: Applies::Ops(&["Pad"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "branches",
                summary: "merge parallel Convs of one tensor that meet in a Concat, Add or Sum into one Conv",
                params: &[p(
                    "kernels",
                    ParamType::Choice(&["same", "pad"]),
                    Default::Word("same"),
                    "Concat branches: `same` merges kernels of one size only; `pad` zero-pads smaller kernels to the largest (exact, but computes the zeros)",
                )],
                applies: Applies::Ops(&["Concat", "Add", "Sum"]),
                status: Status::Ready,
            },
            VariantSchema {
                name: "cleanup",
                summary: "remove identities and no-op reshapes, collapse reshape chains, write flattens as Flatten; fold constants, drop dead nodes",
                params: &[],
                applies: Applies::Ops(&["Identity", "Dropout", "Reshape", "Flatten"]),
                status: Status::Ready,
            },
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
        }],
    },
];

/// Looks up a technique.
pub fn technique(name: &str) -> Option<&'static TechniqueSchema> {
    TECHNIQUES.iter().find(|t| t.name == name)
}
