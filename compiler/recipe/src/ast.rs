//! The recipe AST: plain data, every node carrying the byte span it was parsed from, so
//! the planner can point diagnostics at the exact text.

/// A byte range in the recipe source.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    /// Length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start as usize, s.len()).into()
    }
}

/// A whole recipe file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `use std.name(args)`.
    Use(Use),
    /// `recipe name(params) { … }`: a reusable recipe (the stdlib is made of these).
    Def(Def),
    /// `calibrate with "…"` / `evaluate with "…" labels "…"`.
    Data(Data),
    /// `budget { … }`.
    Budget(Budget),
    /// `stage name { … }`.
    Stage(Stage),
    /// A rule outside any stage (it belongs to the implicit stage `main`).
    Rule(Rule),
}

/// A name with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// A string literal (unescaped) with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Str {
    /// The unescaped contents.
    pub value: String,
    /// Where (including the quotes).
    pub span: Span,
}

/// `use path(args)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Use {
    /// Dotted path, e.g. `std.fold_norms`.
    pub path: Ident,
    /// Named arguments.
    pub args: Vec<Arg>,
    /// The whole statement.
    pub span: Span,
}

/// `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name.
    pub name: Ident,
    /// The value.
    pub value: Value,
}

/// `recipe name(params) { body }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    /// Its name.
    pub name: Ident,
    /// Declared parameters.
    pub params: Vec<ParamDecl>,
    /// Uses, stages and rules.
    pub body: Vec<BodyItem>,
    /// The whole definition.
    pub span: Span,
}

/// `name: type = default`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// The name.
    pub name: Ident,
    /// The declared type (`ratio`, `int`, `bits`, `word`…), if any.
    pub ty: Option<Ident>,
    /// The default, if any.
    pub default: Option<Value>,
}

/// What a stage or a recipe definition may contain.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyItem {
    /// `use …` (its stages are spliced in here).
    Use(Use),
    /// A nested stage (only in recipe definitions).
    Stage(Stage),
    /// A rule.
    Rule(Rule),
}

/// Calibration or evaluation data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// `calibrate with`.
    Calibrate,
    /// `evaluate with`.
    Evaluate,
}

/// `calibrate with "x.npy"` / `evaluate with "x.npy" labels "y.npy"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// Which set.
    pub kind: DataKind,
    /// The inputs file.
    pub path: Str,
    /// The labels file.
    pub labels: Option<Str>,
    /// The statement.
    pub span: Span,
}

/// `budget { constraints }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Constraints in order.
    pub constraints: Vec<Constraint>,
    /// The block.
    pub span: Span,
}

/// A comparison operator.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    /// The operator's text.
    pub fn text(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
    /// Applies the comparison.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// `metric cmp value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    /// The metric (`accuracy_drop`, `size`, `flops`, `latency`).
    pub metric: Ident,
    /// The comparison.
    pub cmp: Cmp,
    /// The bound.
    pub value: Value,
    /// The constraint.
    pub span: Span,
}

/// `stage name { items }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Its name.
    pub name: Ident,
    /// Uses and rules.
    pub items: Vec<BodyItem>,
    /// The block.
    pub span: Span,
}

/// `technique variant on selector { params }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The technique (`prune`, `quantize`, …).
    pub technique: Ident,
    /// Its variant (`filters`, `int8`, …), if given.
    pub variant: Option<Ident>,
    /// The layers it applies to.
    pub selector: Selector,
    /// Parameters.
    pub params: Vec<Arg>,
    /// The whole rule.
    pub span: Span,
}

/// A unit attached to a number.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Unit {
    /// `%`: the number is divided by 100.
    Percent,
    /// A byte size; the factor to bytes.
    Bytes(f64),
    /// A duration; the factor to seconds.
    Seconds(f64),
    /// A count multiplier (`K`, `M`, `G`).
    Count(f64),
    /// `bits`.
    Bits,
}

/// A value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A number with an optional unit.
    Number {
        /// As written (before the unit is applied).
        value: f64,
        /// The unit.
        unit: Option<Unit>,
    },
    /// A string.
    Str(String),
    /// A bare word: an enum value (`l1`, `static`) or a recipe parameter's name.
    Word(String),
}

/// A value with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where.
    pub span: Span,
}

/// `attr cmp value` inside `Op[…]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pred {
    /// The attribute (`kernel`, `group`, `out_channels`…).
    pub attr: Ident,
    /// The comparison.
    pub cmp: Cmp,
    /// The value.
    pub value: Value,
}

/// A layer selector.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    /// What it selects.
    pub kind: SelKind,
    /// Where.
    pub span: Span,
}

/// Selector forms.
#[derive(Clone, Debug, PartialEq)]
pub enum SelKind {
    /// `*`: every node.
    All,
    /// `"name"`: exactly this node.
    Name(String),
    /// `"conv*"`: nodes whose name matches the glob (`*`, `?`, `[…]`).
    Glob(String),
    /// `/regex/`: nodes whose name the regular expression matches (anywhere).
    Regex(String),
    /// `Conv[kernel == 3]`: nodes of an op type, with attribute predicates.
    Op {
        /// The op type.
        name: Ident,
        /// Predicates, all of which must hold.
        preds: Vec<Pred>,
    },
    /// `after(S)`: nodes reading an output of a node in S.
    After(Box<Selector>),
    /// `before(S)`: nodes whose output a node in S reads.
    Before(Box<Selector>),
    /// `inside("prefix")`: nodes whose name starts with the prefix.
    Inside(String),
    /// `A | B & C - D`: set operations applied left to right, `((A | B) & C) - D`. Flat, so
    /// a long union is a list, not a nesting as deep as its terms.
    Combine(Box<Selector>, Vec<(SetOp, Selector)>),
    /// `S?`: S may match nothing.
    Optional(Box<Selector>),
}

/// A set operation between selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// `|`: union.
    Union,
    /// `&`: intersection.
    Inter,
    /// `-`: exclusion.
    Diff,
}
