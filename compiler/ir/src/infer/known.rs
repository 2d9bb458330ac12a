//! Values inference knows without their being constants: the shape arithmetic exporters
//! emit around a dynamic batch (`Shape → Gather → Unsqueeze → Concat → Reshape`, the
//! `Where(Equal(s, -1), 1, s)` of an `expand`), where every element is a known integer or
//! the input's size symbol.
//!
//! **Invariant:** a [`Known::Int`] element is what evaluation computes for *every* input
//! that fits the graph's declared input types, and a [`Known::Sym`] element equals the size
//! that symbol stands for; where that cannot be shown the element is [`Known::Unknown`] or
//! the whole value is `None`. Integer arithmetic is folded only where every ONNX rounding
//! mode agrees (an exact division, no overflow).
//!
//! Only small (≤ [`MAX_ELEMENTS`]) `i64`, `i32` and `bool` tensors are tracked, and one
//! query visits at most [`MAX_VISITS`] producers, so a hostile graph costs bounded time.

use std::collections::HashMap;

use crate::eval::array_shapes::{shape_range, slice_indices};
use crate::{DType, Dim, Graph, Op, ValueDef, ValueId};

/// One element of a small integer tensor whose value inference knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// A known integer (booleans as 0 and 1).
    Int(i64),
    /// The run-time size a dim symbol stands for (never negative).
    Sym(String),
    /// Not known.
    Unknown,
}

impl Known {
    /// The size this element gives an axis: a negative integer is not a size.
    pub fn dim(&self) -> Dim {
        match self {
            Known::Int(v) if *v >= 0 => Dim::Fixed(*v as usize),
            Known::Sym(s) => Dim::Sym(s.clone()),
            _ => Dim::Unknown,
        }
    }

    fn of_dim(d: &Dim) -> Known {
        match d {
            Dim::Fixed(n) => i64::try_from(*n).map_or(Known::Unknown, Known::Int),
            Dim::Sym(s) => Known::Sym(s.clone()),
            Dim::Unknown => Known::Unknown,
        }
    }
}

/// The most elements of a tracked value.
pub const MAX_ELEMENTS: usize = 64;

/// The most producers one query visits.
pub const MAX_VISITS: usize = 256;

/// The elements of `v` (row-major) when it is a small integer tensor whose value follows
/// from constants and declared shapes; `None` otherwise.
pub fn known_value(graph: &Graph, v: ValueId) -> Option<Vec<Known>> {
    let mut walk = Walk {
        graph,
        memo: HashMap::new(),
        budget: MAX_VISITS,
    };
    walk.value(v)
}

/// Whether values of this type are tracked.
fn tracked(dtype: DType) -> bool {
    matches!(dtype, DType::I64 | DType::I32 | DType::Bool)
}

struct Walk<'g> {
    graph: &'g Graph,
    memo: HashMap<ValueId, Option<Vec<Known>>>,
    budget: usize,
}

impl Walk<'_> {
    fn value(&mut self, v: ValueId) -> Option<Vec<Known>> {
        if let Some(k) = self.memo.get(&v) {
            return k.clone();
        }
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let k = self.compute(v).filter(|k| {
            // The element count must be the declared one.
            let val = self.graph.value(v);
            k.len() <= MAX_ELEMENTS
                && val
                    .ty
                    .fixed_dims()
                    .is_none_or(|d| d.iter().product::<usize>() == k.len())
        });
        self.memo.insert(v, k.clone());
        k
    }

    /// A value known to be all integers.
    fn ints(&mut self, v: Option<ValueId>) -> Option<Vec<i64>> {
        self.value(v?)?
            .into_iter()
            .map(|k| match k {
                Known::Int(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// The rank of `v`'s declared type.
    fn rank(&self, v: ValueId) -> Option<usize> {
        self.graph.value(v).ty.rank()
    }

    fn compute(&mut self, v: ValueId) -> Option<Vec<Known>> {
        let g = self.graph;
        let val = g.value(v);
        if !tracked(val.ty.dtype) {
            return None;
        }
        let node = match &val.def {
            ValueDef::Const(_) => {
                let t = g.const_data(v)?;
                if t.len() > MAX_ELEMENTS {
                    return None;
                }
                return Some(t.to_i64_vec().into_iter().map(Known::Int).collect());
            }
            ValueDef::Node { node, slot: 0 } => g.node(*node)?,
            _ => return None,
        };
        let input = |i: usize| node.inputs.get(i).copied().flatten();
        match &node.op {
            Op::Shape(s) => {
                let x = input(0)?;
                let dims = g.value(x).ty.shape.as_ref()?;
                let (a, b) = shape_range(dims.len(), s.start, s.end);
                Some(dims[a..b].iter().map(Known::of_dim).collect())
            }
            // Same elements, another shape.
            Op::Identity(_)
            | Op::Reshape(_)
            | Op::Unsqueeze(_)
            | Op::Squeeze(_)
            | Op::Flatten(_) => self.value(input(0)?),
            Op::Cast(c) => {
                let from = g.value(input(0)?).ty.dtype;
                if !tracked(from) || !tracked(c.to) {
                    return None;
                }
                let k = self.value(input(0)?)?;
                Some(k.into_iter().map(|e| cast(e, c.to)).collect())
            }
            Op::Gather(ga) => {
                let data = input(0)?;
                if self.rank(data)? != 1 || !(ga.axis == 0 || ga.axis == -1) {
                    return None;
                }
                let d = self.value(data)?;
                let n = i64::try_from(d.len()).ok()?;
                let idx = self.ints(input(1))?;
                idx.into_iter()
                    .map(|i| {
                        let j = if i < 0 { i + n } else { i };
                        (0..n).contains(&j).then(|| d[j as usize].clone())
                    })
                    .collect()
            }
            Op::Concat(_) => {
                let mut out = vec![];
                for v in node.inputs.iter().flatten() {
                    if self.rank(*v)? != 1 {
                        return None;
                    }
                    out.extend(self.value(*v)?);
                }
                Some(out)
            }
            Op::Slice(_) => {
                let data = input(0)?;
                if self.rank(data)? != 1 {
                    return None;
                }
                let d = self.value(data)?;
                let (starts, ends) = (self.ints(input(1))?, self.ints(input(2))?);
                let axes = match input(3) {
                    Some(a) => Some(self.ints(Some(a))?),
                    None => None,
                };
                let steps = match input(4) {
                    Some(s) => Some(self.ints(Some(s))?),
                    None => None,
                };
                let picks = slice_indices(
                    &[d.len()],
                    &starts,
                    &ends,
                    axes.as_deref(),
                    steps.as_deref(),
                )
                .ok()?;
                let idx = picks
                    .into_iter()
                    .find(|(ax, _)| *ax == 0)
                    .map_or_else(|| (0..d.len()).collect::<Vec<_>>(), |(_, idx)| idx);
                Some(idx.into_iter().map(|i| d[i].clone()).collect())
            }
            Op::ConstantOfShape(c) => {
                let fill = c.value.as_ref()?;
                if !tracked(fill.dtype()) || fill.len() != 1 {
                    return None;
                }
                let shape = self.ints(input(0))?;
                let n = shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))?;
                if n > MAX_ELEMENTS {
                    return None;
                }
                Some(vec![Known::Int(*fill.to_i64_vec().first()?); n])
            }
            Op::Add(_)
            | Op::Sub(_)
            | Op::Mul(_)
            | Op::Div(_)
            | Op::Equal(_)
            | Op::Max(_)
            | Op::Min(_)
                if node.inputs.len() == 2 =>
            {
                let (a, b) = (input(0)?, input(1)?);
                if self.rank(a)? > 1 || self.rank(b)? > 1 {
                    return None;
                }
                let (x, y) = (self.value(a)?, self.value(b)?);
                let n = pairs(x.len(), y.len())?;
                Some(
                    (0..n)
                        .map(|i| {
                            let (p, q) = (&x[i.min(x.len() - 1)], &y[i.min(y.len() - 1)]);
                            binary(&node.op, p, q)
                        })
                        .collect(),
                )
            }
            Op::Where(_) => {
                let (c, a, b) = (input(0)?, input(1)?, input(2)?);
                if [c, a, b]
                    .iter()
                    .any(|&v| self.rank(v).is_none_or(|r| r > 1))
                {
                    return None;
                }
                let (c, a, b) = (self.value(c)?, self.value(a)?, self.value(b)?);
                let n = pairs(pairs(c.len(), a.len())?, b.len())?;
                Some(
                    (0..n)
                        .map(|i| {
                            let pick = |v: &[Known]| v[i.min(v.len() - 1)].clone();
                            match pick(&c) {
                                Known::Int(0) => pick(&b),
                                Known::Int(_) => pick(&a),
                                _ => Known::Unknown,
                            }
                        })
                        .collect(),
                )
            }
            _ => None,
        }
    }
}

/// The broadcast length of two rank ≤ 1 operands, if they broadcast.
fn pairs(a: usize, b: usize) -> Option<usize> {
    match (a, b) {
        (0, _) | (_, 0) => None,
        (a, b) if a == b => Some(a),
        (1, b) => Some(b),
        (a, 1) => Some(a),
        _ => None,
    }
}

/// An element converted to `to` (the tracked integer types).
fn cast(e: Known, to: DType) -> Known {
    match (e, to) {
        (Known::Int(v), DType::Bool) => Known::Int(i64::from(v != 0)),
        (Known::Int(v), DType::I32) => Known::Int(i64::from(v as i32)),
        (Known::Int(v), _) => Known::Int(v),
        // A size can be 0, so its truth is not known; as i32 it keeps its value.
        (Known::Sym(s), DType::I64 | DType::I32) => Known::Sym(s),
        _ => Known::Unknown,
    }
}

/// One element of an integer binary operator.
fn binary(op: &Op, p: &Known, q: &Known) -> Known {
    use Known::{Int, Sym, Unknown};
    match (op, p, q) {
        (Op::Add(_), Int(a), Int(b)) => a.checked_add(*b).map_or(Unknown, Int),
        (Op::Sub(_), Int(a), Int(b)) => a.checked_sub(*b).map_or(Unknown, Int),
        (Op::Mul(_), Int(a), Int(b)) => a.checked_mul(*b).map_or(Unknown, Int),
        // Only exact quotients: there truncating and flooring division agree.
        (Op::Div(_), Int(a), Int(b)) if *b != 0 && a.checked_rem(*b) == Some(0) => {
            a.checked_div(*b).map_or(Unknown, Int)
        }
        (Op::Max(_), Int(a), Int(b)) => Int(*a.max(b)),
        (Op::Min(_), Int(a), Int(b)) => Int(*a.min(b)),
        (Op::Equal(_), Int(a), Int(b)) => Int(i64::from(a == b)),
        (Op::Equal(_), Sym(a), Sym(b)) if a == b => Int(1),
        // A size is never negative.
        (Op::Equal(_), Sym(_), Int(b)) | (Op::Equal(_), Int(b), Sym(_)) if *b < 0 => Int(0),
        (Op::Add(_) | Op::Sub(_), Sym(s), Int(0))
        | (Op::Add(_), Int(0), Sym(s))
        | (Op::Mul(_) | Op::Div(_), Sym(s), Int(1))
        | (Op::Mul(_), Int(1), Sym(s)) => Sym(s.clone()),
        _ => Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse;

    fn known(text: &str, name: &str) -> Option<Vec<Known>> {
        let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let v = g
            .find_value(name)
            .unwrap_or_else(|| panic!("no value {name}"));
        known_value(&g, v)
    }

    #[test]
    fn the_batch_flows_through_shape_arithmetic_as_its_symbol() {
        let text = r#"graph "g" {
  input %x: f32[N,1,28,28]
  const %zero: i64[] = [0]
  const %axes: i64[1] = [0]
  const %rest: i64[2] = [16, 49]
  const %minus: i64[3] = [-1, -1, -1]
  const %ones: i64[3] = [1, 1, 1]
  node s = Shape(%x) -> %s: i64[4]
  node b = Gather(%s, %zero) -> %b: i64[]
  node u = Unsqueeze(%b, %axes) -> %u: i64[1]
  node c = Concat(%u, %rest) -> %c: i64[3]
  node e = Equal(%c, %minus) -> %e: bool[3]
  node w = Where(%e, %ones, %c) -> %w: i64[3]
  node d = Div(%c, %c) -> %d: i64[3]
  node r = Reshape(%x, %c) -> %y: f32[N,16,49]
  output %y
  output %w
  output %d
}"#;
        let n = || Known::Sym("N".into());
        assert_eq!(
            known(text, "c"),
            Some(vec![n(), Known::Int(16), Known::Int(49)])
        );
        // N == -1 is false (a size is never negative), so Where keeps N.
        assert_eq!(known(text, "e"), Some(vec![Known::Int(0); 3]));
        assert_eq!(
            known(text, "w"),
            Some(vec![n(), Known::Int(16), Known::Int(49)])
        );
        // N / N is 1 for every N but 0: not known. 16/16 and 49/49 are.
        assert_eq!(
            known(text, "d"),
            Some(vec![Known::Unknown, Known::Int(1), Known::Int(1)])
        );
        assert_eq!(known(text, "y"), None, "f32 values are not tracked");
    }

    #[test]
    fn only_exact_quotients_and_in_range_gathers_fold() {
        let text = r#"graph "g" {
  input %x: f32[N,7]
  const %seven: i64[] = [7]
  const %two: i64[] = [2]
  const %far: i64[] = [5]
  node s = Shape(%x) -> %s: i64[2]
  node q = Div(%seven, %two) -> %q: i64[]
  node g = Gather(%s, %far) -> %g: i64[]
  output %q
  output %g
}"#;
        assert_eq!(known(text, "q"), Some(vec![Known::Unknown]));
        assert_eq!(known(text, "g"), None);
    }
}
