//! The planner: checks a recipe against a model and resolves it into a [`Plan`], before any
//! data is touched. It collects every problem of the recipe in one run.
//!
//! What it checks: techniques, variants and parameters against a [`crate::registry::Registry`] (types,
//! ranges, units, required ones, "not supported yet"), selectors against the model's
//! layers (an atom that matches nothing is an error unless marked `?`), recipe modules
//! (`use`, arguments and their types), budgets (metrics, units, direction) and data
//! statements (the driver then checks the files themselves).
//!
//! **Precedence.** Stages run in recipe order, and within a stage rules run in recipe order.
//! When two rules of the same technique in one stage select the same layer, the later rule
//! wins for that layer (as in CSS); a rule that loses every layer it selects is reported
//! as shadowed. Variants of `merge` are different rewrites that compose, so there only a
//! later rule of the same variant overrides. Rules in different stages never override each other: both run.
//!
//! The planner does no I/O: the standard library is compiled in, and file paths are only
//! resolved, so it can be run (and fuzzed) on any text.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mcc_ir::Graph;
use mcc_recipe::ast::{self, BodyItem, Cmp, Item, Span, Unit, Value, ValueKind};

use crate::code::Code;
pub use crate::lines::LineIndex;
use crate::modules::{self, DefEntry, MAX_EXPANDED, MAX_USE_DEPTH, TYPES, show_chain};
use crate::registry::{
    Applies, Default, ParamSchema, ParamType, Registry, Status, TechniqueSchema, VariantSchema,
};
use crate::select::{self, NodeFacts, did_you_mean, suggest};

/// The standard library, compiled in: (module file name, source).
pub const STDLIB: &[(&str, &str)] = &[
    (
        "std/vision.mcr",
        include_str!("../../../stdlib/std/vision.mcr"),
    ),
    (
        "std/compress.mcr",
        include_str!("../../../stdlib/std/compress.mcr"),
    ),
];

/// A source file diagnostics can point into.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFile {
    /// Its name as shown.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// How serious a diagnostic is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The recipe cannot run.
    Error,
    /// The recipe runs, but probably not as meant.
    Warning,
}

/// One problem in a recipe, pointing at a span of a source file.
#[derive(Clone, Debug, PartialEq)]
pub struct Diag {
    /// Error or warning.
    pub severity: Severity,
    /// `mcc::<stage>::<what>`.
    pub code: String,
    /// The message.
    pub message: String,
    /// The label at the span.
    pub label: String,
    /// Index into [`Checked::files`].
    pub file: usize,
    /// Where.
    pub span: Span,
    /// Help.
    pub help: Option<String>,
}

/// A checked parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A number (ratios as fractions, bits as a count).
    Num(f64),
    /// A word from a choice.
    Word(String),
    /// A path, resolved against the recipe's folder.
    Path(PathBuf),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Num(n) => write!(f, "{n}"),
            ParamValue::Word(w) => write!(f, "{w}"),
            ParamValue::Path(p) => write!(f, "{:?}", p.display().to_string()),
        }
    }
}

/// One resolved rule: a technique variant with its parameters and the layers it changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Technique keyword.
    pub technique: &'static str,
    /// Variant name.
    pub variant: &'static str,
    /// Every parameter, defaults filled in, in schema order.
    pub params: Vec<(&'static str, ParamValue)>,
    /// Layers (node names) it applies to, in IR order.
    pub nodes: Vec<String>,
    /// Where the rule is written.
    pub origin: Origin,
}

/// Where a step comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// File index.
    pub file: usize,
    /// 1-based line.
    pub line: usize,
    /// The rule's text (first line).
    pub text: String,
    /// The span.
    pub span: Span,
    /// For rules from a `use`d recipe: the line of the `use` in the main recipe.
    pub via: Option<usize>,
}

/// The word that asks mcc to choose a swept parameter per layer (`amount: auto`).
pub const AUTO: &str = "auto";

impl Step {
    /// The parameter written `auto`, if any.
    pub fn auto_param(&self) -> Option<&'static str> {
        self.params
            .iter()
            .find(|(_, v)| matches!(v, ParamValue::Word(w) if w == AUTO))
            .map(|(n, _)| *n)
    }

    /// A `merge` step on `nodes` made without a recipe (the code generator's preparation,
    /// tests, fuzzing): `kernels` is `merge branches`' parameter, the origin is empty.
    pub fn merge(variant: &'static str, nodes: Vec<String>, kernels: &str) -> Step {
        Step {
            technique: "merge",
            variant,
            params: vec![("kernels", ParamValue::Word(kernels.into()))],
            nodes,
            origin: Origin {
                file: 0,
                line: 0,
                text: String::new(),
                span: std::default::Default::default(),
                via: None,
            },
        }
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Sets parameter `name` (one the step has) to the number `value`.
    pub fn set_num(&mut self, name: &str, value: f64) {
        self.set(name, ParamValue::Num(value));
    }

    /// Sets parameter `name` (one the step has) to `value`.
    pub fn set(&mut self, name: &str, value: ParamValue) {
        for (k, v) in self.params.iter_mut() {
            if *k == name {
                *v = value.clone();
            }
        }
    }
}

/// A stage: steps run in order.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanStage {
    /// Its name (`main` for rules outside any stage).
    pub name: String,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// A data set named by the recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSet {
    /// Inputs file, resolved against the recipe's folder.
    pub inputs: PathBuf,
    /// Labels file, if any.
    pub labels: Option<PathBuf>,
    /// Where the statement is (file 0).
    pub span: Span,
    /// Span of the inputs path.
    pub inputs_span: Span,
    /// Span of the labels path.
    pub labels_span: Option<Span>,
}

/// A budget metric.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Top-1 accuracy lost on the evaluation set (a fraction).
    AccuracyDrop,
    /// Stored weight bytes.
    Size,
    /// MACs per sample.
    Flops,
    /// Relative L2 error of the model's outputs against the original's, on the evaluation
    /// (else calibration) data: the budget of models that are not classifiers.
    OutputError,
    /// Seconds one sample takes on the build machine (the compressed model's compiled code,
    /// batch 1, median of timed runs): checked, never a reason to build otherwise.
    Latency,
}

impl Metric {
    /// Its keyword.
    pub fn name(self) -> &'static str {
        match self {
            Metric::AccuracyDrop => "accuracy_drop",
            Metric::Size => "size",
            Metric::Flops => "flops",
            Metric::OutputError => "output_error",
            Metric::Latency => "latency",
        }
    }
}

/// One budget constraint.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetItem {
    /// The metric.
    pub metric: Metric,
    /// `<` or `<=`.
    pub cmp: Cmp,
    /// The bound, in base units (fraction, bytes, MACs, seconds).
    pub bound: f64,
    /// As written.
    pub text: String,
    /// 1-based line.
    pub line: usize,
}

/// What the recipe asks for.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Stages in order.
    pub stages: Vec<PlanStage>,
    /// Calibration data.
    pub calibrate: Option<DataSet>,
    /// Evaluation data.
    pub evaluate: Option<DataSet>,
    /// Budget constraints.
    pub budget: Vec<BudgetItem>,
}

/// The result of checking: the plan (meaningful only without errors) and every diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The plan.
    pub plan: Plan,
    /// Diagnostics, errors first then warnings, each in source order.
    pub diags: Vec<Diag>,
    /// Files the diagnostics point into (0 is the recipe).
    pub files: Vec<SourceFile>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }
}

/// 1-based line of a byte offset (a scan of the text: for many offsets, use a
/// [`LineIndex`]).
pub fn line_of(text: &str, offset: u32) -> usize {
    text.as_bytes()[..(offset as usize).min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based (line, column) of a byte offset, columns counted in characters (a scan of the
/// text: for many offsets, use a [`LineIndex`]).
pub fn line_col(text: &str, offset: u32) -> (usize, usize) {
    LineIndex::new(text).line_col(text, offset as usize)
}

struct Checker<'a> {
    registry: &'a Registry,
    files: Vec<SourceFile>,
    /// Each file's line starts.
    lines: Vec<LineIndex>,
    asts: Vec<Option<Rc<ast::Recipe>>>,
    defs: BTreeMap<String, DefEntry>,
    /// The `use` graph of `defs`.
    uses: modules::Graph,
    /// Definitions whose parameter list has an error: they are not expanded.
    bad_signatures: BTreeSet<String>,
    /// How many `use`s are being expanded, one inside the other.
    use_depth: usize,
    /// Statements spliced in by `use`s so far.
    expanded: u64,
    facts: Vec<NodeFacts>,
    model: &'a str,
    base: &'a Path,
    diags: Vec<Diag>,
    plan: Plan,
    stage_names: BTreeMap<String, Span>,
    /// While expanding a `use` written in the recipe: that `use`'s line.
    via: Option<usize>,
}

/// A def parameter bound to a value, with the file the value is written in.
type Env = BTreeMap<String, (usize, Value)>;

impl<'a> Checker<'a> {
    /// Steps whose rewrite reads calibration statistics (as their parameters ask) need
    /// `calibrate with`.
    fn check_data_needs(&mut self, graph: &Graph) {
        if self.plan.calibrate.is_some() {
            return;
        }
        let needy: Vec<(usize, Span, String)> = self
            .plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|step| {
                self.registry
                    .implementation(step.technique, step.variant)
                    .is_some_and(|t| !t.needs(graph, step).is_empty())
            })
            .map(|step| {
                (
                    step.origin.file,
                    step.origin.span,
                    format!("{} {}", step.technique, step.variant),
                )
            })
            .collect();
        for (file, span, what) in needy {
            self.error(
                Code::NeedsCalibration,
                file,
                span,
                format!("`{what}` with these parameters reads calibration statistics"),
                "needs calibration data",
                Some("add `calibrate with \"x.npy\"` (samples of the model's input)".into()),
            );
        }
    }

    /// Steps with an `auto` parameter need something to allocate under: a `size`, `flops`,
    /// `accuracy_drop` or `output_error` budget, and calibration data to measure on (the
    /// evaluation set is never used to choose).
    /// A `prune` or `factorize` rule on layers an earlier step quantized (`quantize`) or
    /// entropy-coded (`encode`) rewrites their weights as f32 and drops that storage: a
    /// warning at the later rule, naming the earlier one.
    fn check_order(&mut self) {
        let steps: Vec<&Step> = self.plan.stages.iter().flat_map(|s| &s.steps).collect();
        let mut found = vec![];
        for (i, later) in steps.iter().enumerate() {
            if !matches!(later.technique, "prune" | "factorize") {
                continue;
            }
            let earlier = steps[..i].iter().find(|e| {
                matches!(e.technique, "quantize" | "encode")
                    && e.nodes.iter().any(|n| later.nodes.contains(n))
            });
            if let Some(e) = earlier {
                found.push((
                    later.origin.file,
                    later.origin.span,
                    format!("{} {}", later.technique, later.variant),
                    format!("{} {}", e.technique, e.variant),
                    e.origin.line,
                ));
            }
        }
        for (file, span, what, before, line) in found {
            self.diag(
                Severity::Warning,
                Code::UndoesStorage,
                file,
                span,
                format!(
                    "`{what}` rewrites weights that `{before}` (line {line}) stored quantized or coded: they go back to f32"
                ),
                "undoes the earlier storage",
                Some(format!("put `{what}` before `{before}`: prune, then quantize, then encode")),
            );
        }
    }

    fn check_auto(&mut self) {
        let budget = self.plan.budget.iter().any(|b| {
            matches!(
                b.metric,
                Metric::Size | Metric::Flops | Metric::AccuracyDrop | Metric::OutputError
            )
        });
        let calibrated = self.plan.calibrate.is_some();
        let auto: Vec<(usize, Span, String)> = self
            .plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|step| step.auto_param().is_some())
            .map(|step| {
                (
                    step.origin.file,
                    step.origin.span,
                    format!("{} {}", step.technique, step.variant),
                )
            })
            .collect();
        for (file, span, what) in auto {
            if !budget {
                self.error(
                    Code::AutoWithoutBudget,
                    file,
                    span,
                    format!("`{what}` chooses its amounts per layer, but the recipe has no budget to choose under"),
                    "`auto` needs a budget",
                    Some("add `budget { size <= 200 KB }` (or `flops`, `accuracy_drop`, `output_error`)".into()),
                );
            } else if !calibrated {
                self.error(
                    Code::NeedsCalibration,
                    file,
                    span,
                    format!("`{what}` measures each layer's sensitivity on calibration data to choose its amounts"),
                    "needs calibration data",
                    Some("add `calibrate with \"x.npy\"` (add `labels \"y.npy\"` to allocate by accuracy)".into()),
                );
            }
        }
    }

    /// Each step's layers it cannot apply to as written (`Technique::infeasible`), on the
    /// model as given.
    fn check_feasible(&mut self, graph: &Graph) {
        let found: Vec<(usize, Span, String, crate::Infeasible)> = self
            .plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter_map(|step| {
                let t = self.registry.implementation(step.technique, step.variant)?;
                Some((step, t.infeasible(graph, step)))
            })
            .flat_map(|(step, list)| {
                list.into_iter().map(move |i| {
                    (
                        step.origin.file,
                        step.origin.span,
                        format!("{} {}", step.technique, step.variant),
                        i,
                    )
                })
            })
            .collect();
        for (file, span, what, i) in found {
            self.error(
                Code::Infeasible,
                file,
                span,
                format!("`{what}` cannot apply to `{}`: {}", i.node, i.message),
                format!("selects `{}`", i.node),
                i.help,
            );
        }
    }

    fn diag(
        &mut self,
        severity: Severity,
        code: Code,
        file: usize,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        // Problems inside a `use`d recipe say which `use` reached them.
        let help = match (file, self.via) {
            (f, Some(line)) if f != 0 => {
                let note = format!(
                    "reached through the `use` on line {line} of {}",
                    self.files[0].name
                );
                Some(help.map_or(note.clone(), |h| format!("{h}\n({note})")))
            }
            _ => help,
        };
        self.diags.push(Diag {
            severity,
            code: code.to_string(),
            message: message.into(),
            label: label.into(),
            file,
            span,
            help,
        });
    }
    fn error(
        &mut self,
        code: Code,
        file: usize,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        self.diag(Severity::Error, code, file, span, message, label, help);
    }

    /// 1-based line of a byte offset of a file.
    fn line(&self, file: usize, offset: u32) -> usize {
        self.lines[file].line(offset as usize)
    }

    fn text_of(&self, file: usize, span: Span) -> String {
        let t = &self.files[file].text;
        t.get(span.start as usize..span.end as usize)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    }

    fn run(&mut self) {
        let Some(recipe) = self.asts[0].clone() else {
            return;
        };
        let mut main_stage: Option<usize> = None;
        for item in &recipe.items {
            match item {
                Item::Def(_) => {}
                Item::Use(u) => {
                    let env = Env::new();
                    let mut stage = None;
                    self.expand_use(u, 0, &env, &mut stage, &mut main_stage, None);
                }
                Item::Rule(r) => {
                    let idx = self.implicit_stage(&mut main_stage);
                    self.check_rule(r, 0, &Env::new(), idx, None);
                }
                Item::Stage(s) => {
                    main_stage = None;
                    self.check_stage(s, 0, &Env::new(), None);
                }
                Item::Data(d) => self.check_data(d),
                Item::Budget(b) => self.check_budget(b),
            }
        }
        if self
            .plan
            .budget
            .iter()
            .any(|b| b.metric == Metric::AccuracyDrop)
            && self
                .plan
                .evaluate
                .as_ref()
                .is_none_or(|e| e.labels.is_none())
        {
            let span = recipe
                .items
                .iter()
                .find_map(|i| {
                    if let Item::Budget(b) = i {
                        Some(b.span)
                    } else {
                        None
                    }
                })
                .unwrap_or_default();
            self.error(
                Code::AccuracyWithoutLabels,
                0,
                span,
                "an accuracy budget needs labelled evaluation data",
                "accuracy_drop is measured on the evaluation set",
                Some("add `evaluate with \"x.npy\" labels \"y.npy\"`".into()),
            );
        }
        if let Some(b) = self
            .plan
            .budget
            .iter()
            .find(|b| b.metric == Metric::OutputError)
            && self.plan.evaluate.is_none()
            && self.plan.calibrate.is_none()
        {
            let span = recipe
                .items
                .iter()
                .find_map(|i| match i {
                    Item::Budget(bb) => Some(bb.span),
                    _ => None,
                })
                .unwrap_or_default();
            let line = b.line;
            self.error(
                Code::OutputErrorWithoutData,
                0,
                span,
                format!("the output_error budget (line {line}) needs data to run the model on"),
                "output_error is measured on the evaluation (else calibration) data",
                Some("add `calibrate with \"x.npy\"` or `evaluate with \"x.npy\"`".into()),
            );
        }
        if self.plan.stages.iter().all(|s| s.steps.is_empty()) && !self.has_errors() {
            self.diag(
                Severity::Warning,
                Code::EmptyRecipe,
                0,
                Span::new(0, 0),
                "the recipe changes no layer of this model",
                "nothing to do",
                None,
            );
        }
        self.apply_precedence();
    }

    fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    fn implicit_stage(&mut self, main_stage: &mut Option<usize>) -> usize {
        if let Some(i) = *main_stage {
            return i;
        }
        self.plan.stages.push(PlanStage {
            name: "main".into(),
            steps: vec![],
        });
        let i = self.plan.stages.len() - 1;
        *main_stage = Some(i);
        i
    }

    fn check_stage(&mut self, s: &ast::Stage, file: usize, env: &Env, via: Option<usize>) {
        if file == 0 {
            if let Some(prev) = self.stage_names.get(&s.name.name).copied() {
                let line = self.line(0, prev.start);
                self.error(
                    Code::DuplicateStage,
                    0,
                    s.name.span,
                    format!("a stage named `{}` already exists", s.name.name),
                    "second definition",
                    Some(format!(
                        "the first one is on line {line}; stage names must be unique"
                    )),
                );
            }
            self.stage_names.insert(s.name.name.clone(), s.name.span);
        }
        self.plan.stages.push(PlanStage {
            name: s.name.name.clone(),
            steps: vec![],
        });
        let idx = self.plan.stages.len() - 1;
        for it in &s.items {
            match it {
                BodyItem::Rule(r) => self.check_rule(r, file, env, idx, via),
                BodyItem::Use(u) => {
                    let mut stage = Some(idx);
                    let mut none = None;
                    self.expand_use(u, file, env, &mut stage, &mut none, via);
                }
                BodyItem::Stage(inner) => self.check_stage(inner, file, env, via),
            }
        }
    }

    /// Splices a recipe definition in: its stages become stages (or, inside a stage, its
    /// rules join that stage); its rules join the current stage.
    fn expand_use(
        &mut self,
        u: &ast::Use,
        file: usize,
        env: &Env,
        stage: &mut Option<usize>,
        main_stage: &mut Option<usize>,
        via: Option<usize>,
    ) {
        let name = &u.path.name;
        let Some((def_file, def)) = self.defs.get(name).cloned() else {
            let cands: Vec<&str> = self.defs.keys().map(String::as_str).collect();
            let help = did_you_mean(&suggest(name, cands.iter().copied()))
                .or_else(|| Some(format!("available: {}", cands.join(", "))));
            self.error(
                Code::UnknownRecipe,
                file,
                u.path.span,
                format!("no recipe named `{name}`"),
                "not defined here or in the standard library",
                help,
            );
            return;
        };
        // A cycle, or an error in the parameter list, is reported at the definition.
        let shape = self.uses.shapes.get(name).cloned().unwrap_or_default();
        if shape.cyclic || self.bad_signatures.contains(name) {
            return;
        }
        if !self.within_limits(u, file, &shape) {
            return;
        }
        // Bind arguments to parameters.
        let mut bound = Env::new();
        for a in &u.args {
            match def.params.iter().find(|p| p.name.name == a.name.name) {
                None => {
                    let names: Vec<&str> =
                        def.params.iter().map(|p| p.name.name.as_str()).collect();
                    let help =
                        did_you_mean(&suggest(&a.name.name, names.iter().copied())).or_else(|| {
                            Some(if names.is_empty() {
                                format!("`{name}` takes no parameters")
                            } else {
                                format!("`{name}` takes: {}", names.join(", "))
                            })
                        });
                    self.error(
                        Code::UnknownParameter,
                        file,
                        a.name.span,
                        format!("`{name}` has no parameter `{}`", a.name.name),
                        "unknown parameter",
                        help,
                    );
                }
                Some(p) => {
                    let (vf, v) = substitute(env, file, &a.value);
                    if let Some(ty) = &p.ty
                        && let Err((label, help)) = check_declared(&ty.name, &v)
                    {
                        self.error(
                            Code::BadArgument,
                            vf,
                            v.span,
                            format!("`{}` must be {}", a.name.name, describe_declared(&ty.name)),
                            label,
                            help,
                        );
                        continue;
                    }
                    if bound.insert(p.name.name.clone(), (vf, v)).is_some() {
                        self.error(
                            Code::DuplicateParameter,
                            file,
                            a.name.span,
                            format!("`{}` is given twice", a.name.name),
                            "again here",
                            None,
                        );
                    }
                }
            }
        }
        for p in &def.params {
            if !bound.contains_key(&p.name.name) {
                match &p.default {
                    Some(d) => {
                        bound.insert(p.name.name.clone(), (def_file, d.clone()));
                    }
                    None => self.error(
                        Code::MissingParameter,
                        file,
                        u.span,
                        format!("`{name}` needs the parameter `{}`", p.name.name),
                        "missing parameter",
                        Some(format!("write `use {name}({}: …)`", p.name.name)),
                    ),
                }
            }
        }
        let via = via.or(if file == 0 {
            Some(self.line(0, u.span.start))
        } else {
            None
        });
        let saved_via = std::mem::replace(&mut self.via, via);
        self.use_depth += 1;
        for it in &def.body {
            match it {
                BodyItem::Rule(r) => {
                    let idx = match *stage {
                        Some(i) => i,
                        None => self.implicit_stage(main_stage),
                    };
                    self.check_rule(r, def_file, &bound, idx, via);
                }
                BodyItem::Stage(s) => {
                    if let Some(i) = *stage {
                        for inner in &s.items {
                            match inner {
                                BodyItem::Rule(r) => self.check_rule(r, def_file, &bound, i, via),
                                BodyItem::Use(u2) => {
                                    let mut st = Some(i);
                                    self.expand_use(u2, def_file, &bound, &mut st, main_stage, via);
                                }
                                BodyItem::Stage(_) => {}
                            }
                        }
                    } else {
                        *main_stage = None;
                        self.check_stage(s, def_file, &bound, via);
                    }
                }
                BodyItem::Use(u2) => self.expand_use(u2, def_file, &bound, stage, main_stage, via),
            }
        }
        self.use_depth -= 1;
        self.via = saved_via;
    }

    /// Whether expanding `u` (a `use` of a recipe of this shape) stays within
    /// [`MAX_USE_DEPTH`] and [`MAX_EXPANDED`] (reported otherwise). Only the outermost `use`
    /// is measured: its shape covers everything it brings in.
    fn within_limits(&mut self, u: &ast::Use, file: usize, shape: &modules::Shape) -> bool {
        let name = &u.path.name;
        if self.use_depth >= MAX_USE_DEPTH {
            // The outermost `use` was measured: its chain cannot go deeper than this.
            self.error(
                Code::Bug,
                file,
                u.span,
                format!("`use {name}` is expanded {} deep", self.use_depth + 1),
                "here",
                Some("this is a bug in mcc".into()),
            );
            return false;
        }
        if self.use_depth > 0 {
            return true;
        }
        if shape.depth > MAX_USE_DEPTH {
            self.error(
                Code::UseTooDeep,
                file,
                u.span,
                format!(
                    "this `use` nests {} recipes deep, more than the {MAX_USE_DEPTH} allowed",
                    shape.depth
                ),
                "too deep",
                Some(format!(
                    "the longest chain: {}",
                    show_chain(&self.uses.chain(name))
                )),
            );
            return false;
        }
        let total = self.expanded.saturating_add(shape.size);
        if total > MAX_EXPANDED {
            let size = if shape.size == u64::MAX {
                format!("more than {}", u64::MAX)
            } else {
                shape.size.to_string()
            };
            let before = if self.expanded > 0 {
                format!(" (with the {} spliced in before it)", self.expanded)
            } else {
                String::new()
            };
            self.error(
                Code::ExpansionTooLarge,
                file,
                u.span,
                format!("this `use` splices in {size} statements{before}, more than the {MAX_EXPANDED} a recipe may expand to"),
                "expands too far",
                Some(format!("a `use` splices in a copy of `{name}`, and each `use` inside it a copy of the recipe it names")),
            );
            return false;
        }
        self.expanded = total;
        true
    }

    /// Checks a definition's parameter list once, wherever it is used: declared types are
    /// known ones, names are unique, defaults fit their types. `false` if not.
    fn check_signature(&mut self, file: usize, def: &ast::Def) -> bool {
        let mut ok = true;
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for p in &def.params {
            if !seen.insert(&p.name.name) {
                self.error(
                    Code::DuplicateParameter,
                    file,
                    p.name.span,
                    format!("`{}` is declared twice", p.name.name),
                    "again here",
                    None,
                );
                ok = false;
            }
            let Some(ty) = &p.ty else { continue };
            if !TYPES.contains(&ty.name.as_str()) {
                let help = did_you_mean(&suggest(&ty.name, TYPES.iter().copied()))
                    .or_else(|| Some(format!("parameter types: {}", TYPES.join(", "))));
                self.error(
                    Code::UnknownType,
                    file,
                    ty.span,
                    format!("`{}` is not a parameter type", ty.name),
                    "unknown type",
                    help,
                );
                ok = false;
                continue;
            }
            if let Some(d) = &p.default
                && let Err((label, help)) = check_declared(&ty.name, d)
            {
                self.error(
                    Code::BadDefault,
                    file,
                    d.span,
                    format!(
                        "the default of `{}` must be {}",
                        p.name.name,
                        describe_declared(&ty.name)
                    ),
                    label,
                    help,
                );
                ok = false;
            }
        }
        ok
    }

    fn check_rule(
        &mut self,
        r: &ast::Rule,
        file: usize,
        env: &Env,
        stage: usize,
        via: Option<usize>,
    ) {
        let Some((tech, variant, built)) = self.rule_variant(r, file) else {
            return;
        };
        let (full, params_ok) = self.rule_params(r, file, env, tech, variant, built);
        let (applicable, layers_ok) = self.rule_layers(r, file, tech, variant);
        if built && params_ok && layers_ok && !applicable.is_empty() {
            let origin = Origin {
                file,
                line: self.line(file, r.span.start),
                text: self.text_of(file, r.span),
                span: r.span,
                via,
            };
            let nodes = applicable
                .iter()
                .map(|&i| self.facts[i].name.clone())
                .collect();
            self.plan.stages[stage].steps.push(Step {
                technique: tech.name,
                variant: variant.name,
                params: full,
                nodes,
                origin,
            });
        }
    }

    /// The rule's technique and variant from the registry, and whether the variant is built;
    /// `None` (after reporting, and resolving the selector for its own diagnostics) when
    /// either is unknown.
    fn rule_variant(
        &mut self,
        r: &ast::Rule,
        file: usize,
    ) -> Option<(&'a TechniqueSchema, &'a VariantSchema, bool)> {
        let mut ok = true;
        let registry = self.registry;
        let Some(tech) = registry.technique(&r.technique.name) else {
            let names: Vec<&str> = registry.techniques().iter().map(|t| t.name).collect();
            let help = did_you_mean(&suggest(&r.technique.name, names.iter().copied()))
                .or_else(|| Some(format!("techniques: {}", names.join(", "))));
            self.error(
                Code::UnknownTechnique,
                file,
                r.technique.span,
                format!("`{}` is not a technique", r.technique.name),
                "unknown technique",
                help,
            );
            self.resolve(r, file);
            return None;
        };
        let variant_name = r
            .variant
            .as_ref()
            .map(|v| v.name.as_str())
            .or(tech.default_variant);
        let names: Vec<&str> = tech.variants.iter().map(|v| v.name).collect();
        let Some(variant_name) = variant_name else {
            self.error(
                Code::MissingVariant,
                file,
                r.technique.span,
                format!("`{}` needs a variant", tech.name),
                "which kind?",
                Some(format!(
                    "write one of: {}",
                    names
                        .iter()
                        .map(|n| format!("`{} {n}`", tech.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            self.resolve(r, file);
            return None;
        };
        let Some(variant) = tech.variants.iter().find(|v| v.name == variant_name) else {
            let span = r.variant.as_ref().map_or(r.technique.span, |v| v.span);
            let help = did_you_mean(&suggest(variant_name, names.iter().copied()))
                .or_else(|| Some(format!("`{}` variants: {}", tech.name, names.join(", "))));
            self.error(
                Code::UnknownVariant,
                file,
                span,
                format!("`{}` has no variant `{variant_name}`", tech.name),
                "unknown variant",
                help,
            );
            self.resolve(r, file);
            return None;
        };
        if let Status::Planned(track) = variant.status {
            let span = Span {
                start: r.technique.span.start,
                end: r
                    .variant
                    .as_ref()
                    .map_or(r.technique.span.end, |v| v.span.end),
            };
            self.error(
                Code::NotSupportedYet,
                file,
                span,
                format!("`{} {}` is not supported yet", tech.name, variant.name),
                "planned, not built",
                Some(format!("{} — it arrives with: {track}", variant.summary)),
            );
            ok = false;
        }
        Some((tech, variant, ok))
    }

    /// The rule's parameters checked against the variant's schema, defaults filled in, in
    /// schema order, and whether they are all valid (reported otherwise).
    fn rule_params(
        &mut self,
        r: &ast::Rule,
        file: usize,
        env: &Env,
        tech: &TechniqueSchema,
        variant: &VariantSchema,
        built: bool,
    ) -> (Vec<(&'static str, ParamValue)>, bool) {
        let mut ok = built;
        let mut values: Vec<(&'static str, ParamValue)> = vec![];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let params_ok_before = ok;
        for a in &r.params {
            let Some(schema) = variant.params.iter().find(|p| p.name == a.name.name) else {
                let pn: Vec<&str> = variant.params.iter().map(|p| p.name).collect();
                let help = did_you_mean(&suggest(&a.name.name, pn.iter().copied())).or_else(|| {
                    Some(if pn.is_empty() {
                        format!("`{} {}` takes no parameters", tech.name, variant.name)
                    } else {
                        format!("`{} {}` takes: {}", tech.name, variant.name, pn.join(", "))
                    })
                });
                self.error(
                    Code::UnknownParameter,
                    file,
                    a.name.span,
                    format!(
                        "`{} {}` has no parameter `{}`",
                        tech.name, variant.name, a.name.name
                    ),
                    "unknown parameter",
                    help,
                );
                ok = false;
                continue;
            };
            if !seen.insert(schema.name) {
                self.error(
                    Code::DuplicateParameter,
                    file,
                    a.name.span,
                    format!("`{}` is given twice", a.name.name),
                    "again here",
                    None,
                );
                ok = false;
                continue;
            }
            let (vf, v) = substitute(env, file, &a.value);
            // `auto` for the parameter the variant sweeps: mcc chooses it per layer under the
            // recipe's budget (`check_auto` requires one).
            if matches!(&v.kind, ValueKind::Word(w) if w == AUTO) {
                if variant.sweep.is_some_and(|sw| sw.param == schema.name) {
                    values.push((schema.name, ParamValue::Word(AUTO.into())));
                } else {
                    let help = match variant.sweep {
                        Some(sw) => format!(
                            "`{} {}` can choose `{}` per layer: write `{}: auto`",
                            tech.name, variant.name, sw.param, sw.param
                        ),
                        None => format!(
                            "`{} {}` has no parameter mcc can choose per layer",
                            tech.name, variant.name
                        ),
                    };
                    self.error(
                        Code::BadParameter,
                        vf,
                        v.span,
                        format!("`{}` cannot be `auto`", schema.name),
                        "not chosen automatically",
                        Some(help),
                    );
                    ok = false;
                }
                continue;
            }
            match check_value(schema, &v, self.base) {
                Ok(pv) => values.push((schema.name, pv)),
                Err((label, help)) => {
                    self.error(
                        Code::BadParameter,
                        vf,
                        v.span,
                        format!("`{}` must be {}", schema.name, schema.ty.describe()),
                        label,
                        help,
                    );
                    ok = false;
                }
            }
        }
        let mut full = vec![];
        for schema in variant.params {
            match values.iter().find(|(n, _)| *n == schema.name) {
                Some((_, v)) => full.push((schema.name, v.clone())),
                // Given but invalid: already reported.
                None if seen.contains(schema.name) => {}
                None => match schema.default {
                    Default::Required => {
                        self.error(
                            Code::MissingParameter,
                            file,
                            r.span,
                            format!(
                                "`{} {}` needs the parameter `{}`",
                                tech.name, variant.name, schema.name
                            ),
                            "missing parameter",
                            Some(format!("{}: write `{{ {}: … }}`", schema.doc, schema.name)),
                        );
                        ok = false;
                    }
                    Default::Num(n) => full.push((schema.name, ParamValue::Num(n))),
                    Default::Word(w) => full.push((schema.name, ParamValue::Word(w.to_string()))),
                },
            }
        }
        let params_valid = full.len() == variant.params.len();
        if params_valid && params_ok_before {
            ok &= self.check_params(variant, &full, r, file);
        } else {
            ok &= params_valid;
        }
        (full, ok)
    }

    /// The layers the rule selects that its variant applies to, and whether the selection is
    /// valid and not empty (reported otherwise).
    fn rule_layers(
        &mut self,
        r: &ast::Rule,
        file: usize,
        tech: &TechniqueSchema,
        variant: &VariantSchema,
    ) -> (Vec<usize>, bool) {
        let mut ok = true;
        let mut errs = vec![];
        let picked = select::resolve(&r.selector, &self.facts, self.model, &mut errs);
        let had_sel_errors = !errs.is_empty();
        for e in errs {
            self.error(e.code, file, e.span, e.message, e.label, e.help);
        }
        let applicable: Vec<usize> = picked
            .iter()
            .copied()
            .filter(|&i| match variant.applies {
                Applies::Any => true,
                Applies::Weighted => self.facts[i].weighted,
                Applies::Ops(ops) => ops.contains(&self.facts[i].op),
            })
            .collect();
        if !had_sel_errors && !picked.is_empty() && applicable.is_empty() {
            let ops: BTreeSet<&str> = picked.iter().map(|&i| self.facts[i].op).collect();
            self.error(
                Code::NotApplicable,
                file,
                r.selector.span,
                match variant.applies {
                    Applies::Ops(want) => format!("none of the {} selected layer(s) is a {} that `{} {}` works on", picked.len(), want.join(" or "), tech.name, variant.name),
                    _ => format!("none of the {} selected layer(s) has weights `{}` can change", picked.len(), tech.name),
                },
                format!("selects only {}", ops.into_iter().collect::<Vec<_>>().join(", ")),
                Some(match variant.applies {
                    Applies::Ops(want) => format!("`{} {}` applies to {} layers", tech.name, variant.name, want.join(" and ")),
                    _ => "compression techniques change Conv, Gemm and MatMul layers with constant weights".into(),
                }),
            );
            ok = false;
        } else if !had_sel_errors && picked.is_empty() && !select::is_optional(&r.selector) {
            self.error(
                Code::EmptySelector,
                file,
                r.selector.span,
                "this selector matches no layer",
                "selects nothing",
                Some("the parts match layers, but their combination is empty".into()),
            );
            ok = false;
        }
        (applicable, ok && !had_sel_errors)
    }

    /// The variant's own parameter check (cross-parameter rules, no-op warnings): `false` when
    /// it found an error.
    fn check_params(
        &mut self,
        variant: &VariantSchema,
        params: &[(&'static str, ParamValue)],
        r: &ast::Rule,
        file: usize,
    ) -> bool {
        let mut ok = true;
        for issue in (variant.check_params)(params) {
            let span = r
                .params
                .iter()
                .find(|a| a.name.name == issue.param)
                .map_or(r.span, |a| a.value.span);
            let code = match issue.severity {
                Severity::Error => Code::BadParameter,
                Severity::Warning => Code::NoEffect,
            };
            ok &= issue.severity != Severity::Error;
            self.diag(
                issue.severity,
                code,
                file,
                span,
                issue.message,
                issue.label,
                issue.help,
            );
        }
        ok
    }

    fn resolve(&mut self, r: &ast::Rule, file: usize) {
        let mut errs = vec![];
        select::resolve(&r.selector, &self.facts, self.model, &mut errs);
        for e in errs {
            self.error(e.code, file, e.span, e.message, e.label, e.help);
        }
    }

    fn check_data(&mut self, d: &ast::Data) {
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.base.join(p)
            }
        };
        let set = DataSet {
            inputs: resolve(&d.path.value),
            labels: d.labels.as_ref().map(|l| resolve(&l.value)),
            span: d.span,
            inputs_span: d.path.span,
            labels_span: d.labels.as_ref().map(|l| l.span),
        };
        let slot = match d.kind {
            ast::DataKind::Calibrate => &mut self.plan.calibrate,
            ast::DataKind::Evaluate => &mut self.plan.evaluate,
        };
        if slot.is_some() {
            let what = if d.kind == ast::DataKind::Calibrate {
                "calibration"
            } else {
                "evaluation"
            };
            self.error(
                Code::DuplicateData,
                0,
                d.span,
                format!("the {what} data is given twice"),
                "second one",
                Some("a recipe names one calibration set and one evaluation set".into()),
            );
            return;
        }
        *slot = Some(set);
    }

    fn check_budget(&mut self, b: &ast::Budget) {
        for c in &b.constraints {
            let metric = match c.metric.name.as_str() {
                "accuracy_drop" => Metric::AccuracyDrop,
                "size" => Metric::Size,
                "flops" | "macs" => Metric::Flops,
                "output_error" => Metric::OutputError,
                "latency" => Metric::Latency,
                other => {
                    let known = ["accuracy_drop", "size", "flops", "output_error", "latency"];
                    let help = did_you_mean(&suggest(other, known))
                        .or_else(|| Some(format!("metrics: {}", known.join(", "))));
                    self.error(
                        Code::UnknownMetric,
                        0,
                        c.metric.span,
                        format!("`{other}` is not a budget metric"),
                        "unknown metric",
                        help,
                    );
                    continue;
                }
            };
            if !matches!(c.cmp, Cmp::Le | Cmp::Lt) {
                self.error(
                    Code::BadBudget,
                    0,
                    c.span,
                    format!("a budget bounds {} from above", metric.name()),
                    format!("use `<=` or `<`, not `{}`", c.cmp.text()),
                    None,
                );
                continue;
            }
            let ValueKind::Number { value, unit } = c.value.kind else {
                self.error(
                    Code::BadBudget,
                    0,
                    c.value.span,
                    format!("`{}` needs a number", metric.name()),
                    "not a number",
                    None,
                );
                continue;
            };
            let bound = match (metric, unit) {
                (Metric::AccuracyDrop, Some(Unit::Percent)) => value / 100.0,
                (Metric::Size, Some(Unit::Bytes(f))) => value * f,
                (Metric::Flops, None) => value,
                (Metric::Flops, Some(Unit::Count(f))) => value * f,
                (Metric::OutputError, Some(Unit::Percent)) => value / 100.0,
                (Metric::OutputError, None) => value,
                (Metric::Latency, Some(Unit::Seconds(f))) => value * f,
                (Metric::AccuracyDrop, None) => {
                    // A bare number is ambiguous (is `1` one point or everything?): only a
                    // percentage says which, as for ratio parameters.
                    self.error(
                        Code::BadUnit,
                        0,
                        c.value.span,
                        "an accuracy drop is written as a percentage",
                        "no unit",
                        Some(format!(
                            "write `{value}%` for a drop of {value} point(s) of top-1 accuracy{}",
                            if value > 0.0 && value < 1.0 {
                                format!(", or `{}%` if {value} was a fraction", value * 100.0)
                            } else {
                                String::new()
                            }
                        )),
                    );
                    continue;
                }
                (m, _) => {
                    let want = match m {
                        Metric::AccuracyDrop => "a percentage like `1%`",
                        Metric::Size => "a size like `400 KiB` or `2 MB`",
                        Metric::Flops => "a count like `5 M` or `200000`",
                        Metric::OutputError => "a relative error like `1%` or `0.01`",
                        Metric::Latency => "a duration like `2 ms` or `500 us`",
                    };
                    self.error(
                        Code::BadUnit,
                        0,
                        c.value.span,
                        format!("`{}` is measured in other units", m.name()),
                        format!("expected {want}"),
                        None,
                    );
                    continue;
                }
            };
            if bound < 0.0 {
                self.error(
                    Code::BadBudget,
                    0,
                    c.value.span,
                    "a budget bound cannot be negative",
                    "negative",
                    None,
                );
                continue;
            }
            let line = self.line(0, c.span.start);
            self.plan.budget.push(BudgetItem {
                metric,
                cmp: c.cmp,
                bound,
                text: self.text_of(0, c.span),
                line,
            });
        }
    }

    /// Within a stage, a later rule of the same technique takes the layers it shares with an
    /// earlier one (of the same variant, for a technique whose variants compose, like
    /// `merge`); an earlier rule left with none is shadowed.
    ///
    /// One walk from the last rule back, with, per technique (and variant), the nearest later
    /// rule selecting each layer: linear in the rules and their layers.
    fn apply_precedence(&mut self) {
        let registry = self.registry;
        let mut warnings = vec![];
        for stage in &mut self.plan.stages {
            let mut takers: HashMap<(&str, &str), HashMap<String, usize>> = HashMap::new();
            for i in (0..stage.steps.len()).rev() {
                let step = &mut stage.steps[i];
                let exclusive = registry
                    .technique(step.technique)
                    .is_none_or(|t| t.exclusive);
                let key = (step.technique, if exclusive { "" } else { step.variant });
                let taken = takers.entry(key).or_default();
                let selected = step.nodes.clone();
                // The rule that takes the last of this one's layers.
                let mut last_taker = None;
                step.nodes.retain(|x| match taken.get(x) {
                    Some(&j) => {
                        last_taker = last_taker.max(Some(j));
                        false
                    }
                    None => true,
                });
                for x in selected {
                    taken.insert(x, i);
                }
                if let Some(j) = last_taker
                    && stage.steps[i].nodes.is_empty()
                {
                    warnings.push((stage.steps[i].origin.clone(), stage.steps[j].origin.line));
                }
            }
            stage.steps.retain(|s| !s.nodes.is_empty());
        }
        for (o, line) in warnings {
            self.diag(
                Severity::Warning,
                Code::ShadowedRule,
                o.file,
                o.span,
                "this rule is overridden for every layer it selects",
                format!("every layer is taken by the rule on line {line}"),
                Some(
                    "within a stage, the later rule of a technique wins for the layers both select"
                        .into(),
                ),
            );
        }
    }
}

/// Replaces a bare word naming a recipe parameter by the value bound to it.
fn substitute(env: &Env, file: usize, v: &Value) -> (usize, Value) {
    if let ValueKind::Word(w) = &v.kind
        && let Some((f, bound)) = env.get(w)
    {
        return (*f, bound.clone());
    }
    (file, v.clone())
}

fn describe_declared(ty: &str) -> &'static str {
    match ty {
        "ratio" => "a ratio (like 50% or 0.5)",
        "int" => "a whole number",
        "bits" => "a bit width",
        "path" => "a quoted path",
        "number" => "a number of at least 0",
        _ => "a word",
    }
}

fn check_declared(ty: &str, v: &Value) -> Result<(), (String, Option<String>)> {
    let schema = ParamSchema {
        name: "",
        ty: match ty {
            "ratio" => ParamType::Ratio,
            "int" => ParamType::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            "bits" => ParamType::Bits(&[1, 2, 3, 4, 5, 6, 7, 8, 16, 32]),
            "path" => ParamType::Path,
            "number" => ParamType::Number,
            _ => {
                return if matches!(v.kind, ValueKind::Word(_)) {
                    Ok(())
                } else {
                    Err(("expected a word".into(), None))
                };
            }
        },
        default: Default::Required,
        doc: "",
    };
    check_value(&schema, v, Path::new("")).map(|_| ())
}

/// Checks one value against a parameter's type.
fn check_value(
    schema: &ParamSchema,
    v: &Value,
    base: &Path,
) -> Result<ParamValue, (String, Option<String>)> {
    match (&schema.ty, &v.kind) {
        (
            ParamType::Ratio,
            ValueKind::Number {
                value,
                unit: Some(Unit::Percent),
            },
        ) => {
            if (0.0..=100.0).contains(value) {
                Ok(ParamValue::Num(value / 100.0))
            } else {
                Err(("must be between 0% and 100%".into(), None))
            }
        }
        (ParamType::Ratio, ValueKind::Number { value, unit: None }) => {
            if (0.0..=1.0).contains(value) {
                Ok(ParamValue::Num(*value))
            } else if (1.0..=100.0).contains(value) {
                Err((
                    "a ratio is between 0 and 1".into(),
                    Some(format!("for a percentage write `{value}%`")),
                ))
            } else {
                Err(("must be between 0 and 1".into(), None))
            }
        }
        (ParamType::Int { min, max }, ValueKind::Number { value, unit: None }) => {
            if value.fract() != 0.0 {
                Err(("not a whole number".into(), None))
            } else if *value < *min as f64 || *value > *max as f64 {
                Err((format!("must be from {min} to {max}"), None))
            } else {
                Ok(ParamValue::Num(*value))
            }
        }
        (
            ParamType::Bits(allowed),
            ValueKind::Number {
                value,
                unit: None | Some(Unit::Bits),
            },
        ) => {
            if value.fract() == 0.0 && allowed.contains(&(*value as i64)) {
                Ok(ParamValue::Num(*value))
            } else {
                Err((
                    format!(
                        "not one of {}",
                        allowed
                            .iter()
                            .map(i64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ))
            }
        }
        (ParamType::Number, ValueKind::Number { value, unit: None }) if *value >= 0.0 => {
            Ok(ParamValue::Num(*value))
        }
        (ParamType::Choice(options), ValueKind::Word(w)) => {
            if options.contains(&w.as_str()) {
                Ok(ParamValue::Word(w.clone()))
            } else {
                Err((
                    format!("`{w}` is not one of them"),
                    did_you_mean(&suggest(w, options.iter().copied())),
                ))
            }
        }
        (ParamType::Path, ValueKind::Str(s)) => {
            let p = Path::new(s);
            Ok(ParamValue::Path(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }))
        }
        (_, ValueKind::Number { unit: Some(_), .. }) => {
            Err(("this unit does not fit here".into(), None))
        }
        (_, ValueKind::Word(w)) => Err((
            format!("`{w}` is not a value of this kind (nor a parameter of the enclosing recipe)"),
            None,
        )),
        _ => Err(("wrong kind of value".into(), None)),
    }
}

/// Checks `src` (the recipe named `name`, in folder `base`) against `graph` (the model named
/// `model`) and the techniques of `registry`. Never fails: problems are diagnostics in the
/// result.
pub fn check(
    src: &str,
    name: &str,
    base: &Path,
    graph: &Graph,
    model: &str,
    registry: &Registry,
) -> Checked {
    let mut files = vec![SourceFile {
        name: name.to_string(),
        text: src.to_string(),
    }];
    let mut asts = vec![];
    let mut diags = vec![];
    match mcc_recipe::parse(src) {
        Ok(r) => asts.push(Some(Rc::new(r))),
        Err(e) => {
            diags.push(Diag {
                severity: Severity::Error,
                code: "mcc::recipe::syntax".into(),
                message: e.message.clone(),
                label: "here".into(),
                file: 0,
                span: e.span(),
                help: None,
            });
            asts.push(None);
        }
    }
    for (fname, text) in STDLIB {
        files.push(SourceFile {
            name: (*fname).to_string(),
            text: (*text).to_string(),
        });
        match mcc_recipe::parse(text) {
            Ok(r) => asts.push(Some(Rc::new(r))),
            Err(e) => {
                diags.push(Diag {
                    severity: Severity::Error,
                    code: Code::Bug.to_string(),
                    message: format!("the standard library does not parse: {}", e.message),
                    label: "here".into(),
                    file: files.len() - 1,
                    span: e.span(),
                    help: Some("this is a bug in mcc".into()),
                });
                asts.push(None);
            }
        }
    }
    let lines = files.iter().map(|f| LineIndex::new(&f.text)).collect();
    let mut checker = Checker {
        registry,
        files,
        lines,
        asts,
        defs: BTreeMap::new(),
        uses: modules::Graph::default(),
        bad_signatures: BTreeSet::new(),
        use_depth: 0,
        expanded: 0,
        facts: select::facts(graph),
        model,
        base,
        diags,
        plan: Plan::default(),
        stage_names: BTreeMap::new(),
        via: None,
    };
    // Definitions: the stdlib's as `std.<name>`, the recipe's own by bare name.
    for (fi, ast) in checker.asts.clone().into_iter().enumerate() {
        let Some(ast) = ast else { continue };
        for item in &ast.items {
            if let Item::Def(d) = item {
                let key = if fi == 0 {
                    d.name.name.clone()
                } else {
                    format!("std.{}", d.name.name)
                };
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    checker.defs.entry(key.clone())
                {
                    slot.insert((fi, Rc::new(d.clone())));
                } else {
                    checker.error(
                        Code::DuplicateRecipe,
                        fi,
                        d.name.span,
                        format!("a recipe named `{key}` already exists"),
                        "second definition",
                        None,
                    );
                }
            }
        }
    }
    let defs: Vec<(String, DefEntry)> = checker
        .defs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, (file, def)) in defs {
        if !checker.check_signature(file, &def) {
            checker.bad_signatures.insert(name);
        }
    }
    checker.uses = modules::analyse(&checker.defs);
    for c in checker.uses.cycles.clone() {
        let message = if c.path.len() == 2 {
            format!("recipe `{}` uses itself", c.path[0])
        } else {
            format!("recipes use each other in a cycle: {}", show_chain(&c.path))
        };
        checker.error(
            Code::RecursiveUse,
            c.file,
            c.span,
            message,
            "closes the cycle",
            None,
        );
    }
    checker.run();
    checker.check_data_needs(graph);
    checker.check_feasible(graph);
    checker.check_order();
    checker.check_auto();
    let mut diags = checker.diags;
    diags.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(a.file.cmp(&b.file))
            .then(a.span.start.cmp(&b.span.start))
    });
    diags.dedup();
    Checked {
        plan: checker.plan,
        diags,
        files: checker.files,
    }
}
