//! Recipe modules before anything is expanded: every definition's parameter list is checked
//! once, and the `use` graph is analysed once, so that expanding a `use` costs what it
//! splices in and never more.
//!
//! The analysis walks the graph iteratively (a recipe may define any number of recipes) and
//! memoizes, per definition, how many statements a `use` of it splices in (saturating, so a
//! recipe that uses another four times twelve levels deep is measured, not expanded) and how
//! deep its `use` chain goes. A `use` that closes a cycle is found as a back edge of the walk
//! and reported once, with the cycle's path; definitions that reach a cycle are never
//! expanded. The driver of the expansion ([`crate::plan`]) refuses a `use` whose chain is
//! deeper than [`MAX_USE_DEPTH`] or whose expansion would take the recipe past
//! [`MAX_EXPANDED`] statements, naming that `use`.

use std::collections::BTreeMap;
use std::rc::Rc;

use mcc_recipe::ast::{BodyItem, Def, Span};

/// How many recipes a chain of `use`s may nest (`use a` where `a` uses `b` … is a chain of
/// that many recipes).
pub const MAX_USE_DEPTH: usize = 64;

/// How many statements (rules, stages and `use`s) the `use`s of a recipe may splice in, in
/// all.
pub const MAX_EXPANDED: u64 = 100_000;

/// The types a recipe parameter may declare.
pub const TYPES: &[&str] = &["ratio", "int", "bits", "number", "path", "word"];

/// A definition: the file it is written in and its AST.
pub(crate) type DefEntry = (usize, Rc<Def>);

/// What expanding one definition involves.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Shape {
    /// Statements a `use` of it splices in, its own and those of the recipes it uses
    /// (saturating).
    pub size: u64,
    /// Recipes on its longest `use` chain, itself included (1 for a recipe without `use`).
    pub depth: usize,
    /// The recipe it uses that leads the longest chain.
    pub deepest: Option<String>,
    /// Whether a `use` chain from it reaches a cycle (it is then never expanded).
    pub cyclic: bool,
}

/// A `use` that closes a cycle.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cycle {
    /// The file of the `use`.
    pub file: usize,
    /// The `use`.
    pub span: Span,
    /// The recipes of the cycle in `use` order, the first repeated at the end.
    pub path: Vec<String>,
}

/// The `use` graph's analysis: a [`Shape`] per definition, and every cycle.
#[derive(Clone, Debug, Default)]
pub(crate) struct Graph {
    pub shapes: BTreeMap<String, Shape>,
    pub cycles: Vec<Cycle>,
}

impl Graph {
    /// The recipes of the longest `use` chain from `name`, in order.
    pub fn chain(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut at = self.shapes.get(name);
        while let Some(next) = at.and_then(|s| s.deepest.as_ref()) {
            out.push(next.clone());
            at = self.shapes.get(next);
        }
        out
    }
}

/// A chain of recipe names as `a → b → c`, its middle left out when long.
pub(crate) fn show_chain(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let arrow = " → ";
    if names.len() <= SHOWN {
        return names.join(arrow);
    }
    format!(
        "{}{arrow}… ({} more){arrow}{}",
        names[..SHOWN / 2].join(arrow),
        names.len() - SHOWN,
        names[names.len() - SHOWN / 2..].join(arrow)
    )
}

/// The statements of a definition's body, stages opened: how many there are, and its `use`s
/// (callee name, span) in order.
fn body_of(def: &Def) -> (u64, Vec<(String, Span)>) {
    let mut count = 0u64;
    let mut uses = vec![];
    let mut todo: Vec<&[BodyItem]> = vec![&def.body];
    while let Some(items) = todo.pop() {
        for item in items {
            count += 1;
            match item {
                BodyItem::Use(u) => uses.push((u.path.name.clone(), u.span)),
                BodyItem::Stage(s) => todo.push(&s.items),
                BodyItem::Rule(_) => {}
            }
        }
    }
    uses.sort_by_key(|(_, span)| span.start);
    (count, uses)
}

/// One definition on the walk's stack.
struct Frame {
    name: String,
    own: u64,
    uses: Vec<(String, Span)>,
    next: usize,
}

/// Analyses the `use` graph of `defs`: an iterative depth-first walk, each definition and
/// each `use` visited once. A `use` of an unknown recipe is left to the expansion to report.
pub(crate) fn analyse(defs: &BTreeMap<String, DefEntry>) -> Graph {
    let mut g = Graph::default();
    // On the stack (being walked): its position there.
    let mut active: BTreeMap<&str, usize> = BTreeMap::new();
    for root in defs.keys() {
        if g.shapes.contains_key(root) {
            continue;
        }
        let mut stack = vec![frame(root, defs)];
        active.insert(root, 0);
        while let Some(top) = stack.last_mut() {
            if let Some((callee, span)) = top.uses.get(top.next).cloned() {
                top.next += 1;
                let Some((name, _)) = defs.get_key_value(&callee) else {
                    continue;
                };
                if let Some(&at) = active.get(name.as_str()) {
                    let mut path: Vec<String> =
                        stack[at..].iter().map(|f| f.name.clone()).collect();
                    path.push(name.clone());
                    let file = defs.get(&stack[stack.len() - 1].name).map_or(0, |d| d.0);
                    g.cycles.push(Cycle { file, span, path });
                    continue;
                }
                if !g.shapes.contains_key(name) {
                    active.insert(name, stack.len());
                    stack.push(frame(name, defs));
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            active.remove(done.name.as_str());
            let mut shape = Shape {
                size: done.own,
                depth: 1,
                deepest: None,
                cyclic: false,
            };
            for (callee, _) in &done.uses {
                if !defs.contains_key(callee) {
                    continue;
                }
                match g.shapes.get(callee) {
                    // Still being walked: a back edge, the cycle is recorded above.
                    None => shape.cyclic = true,
                    Some(s) => {
                        shape.cyclic |= s.cyclic;
                        shape.size = shape.size.saturating_add(s.size);
                        if s.depth + 1 > shape.depth {
                            shape.depth = s.depth + 1;
                            shape.deepest = Some(callee.clone());
                        }
                    }
                }
            }
            g.shapes.insert(done.name, shape);
        }
    }
    g
}

fn frame(name: &str, defs: &BTreeMap<String, DefEntry>) -> Frame {
    let (own, uses) = defs.get(name).map_or((0, vec![]), |(_, d)| body_of(d));
    Frame {
        name: name.to_string(),
        own,
        uses,
        next: 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn graph(src: &str) -> Graph {
        let recipe = mcc_recipe::parse(src).unwrap();
        let defs = recipe
            .items
            .into_iter()
            .filter_map(|i| match i {
                mcc_recipe::ast::Item::Def(d) => Some((d.name.name.clone(), (0, Rc::new(d)))),
                _ => None,
            })
            .collect();
        analyse(&defs)
    }

    #[test]
    fn sizes_are_memoized_not_expanded() {
        let mut src = String::new();
        for i in 0..40 {
            src += &format!(
                "recipe r{i} {{ use r{0} use r{0} use r{0} use r{0} }}\n",
                i + 1
            );
        }
        src += "recipe r40 { prune on Gemm { amount: 50% } }\n";
        let g = graph(&src);
        assert_eq!(g.shapes["r39"].size, 4 + 4);
        assert_eq!(g.shapes["r0"].size, u64::MAX, "4^40 saturates");
        assert_eq!(g.shapes["r0"].depth, 41);
        assert_eq!(g.chain("r38"), ["r38", "r39", "r40"]);
        assert!(g.cycles.is_empty());
    }

    #[test]
    fn a_cycle_is_found_once_with_its_path() {
        let g = graph(
            "recipe a { use b }\nrecipe b { stage s { use c } }\nrecipe c { use a }\nrecipe d { use a }\n",
        );
        assert_eq!(g.cycles.len(), 1);
        assert_eq!(g.cycles[0].path, ["a", "b", "c", "a"]);
        assert!(["a", "b", "c", "d"].iter().all(|n| g.shapes[*n].cyclic));
    }

    #[test]
    fn a_long_chain_is_walked_without_recursion() {
        // Deep enough to overflow a recursive walk's stack.
        let n = 200_000;
        let mut src = String::new();
        for i in 0..n {
            src += &format!("recipe c{i} {{ use c{} }}\n", i + 1);
        }
        let g = graph(&src);
        assert_eq!(g.shapes["c0"].depth, n);
        assert!(g.cycles.is_empty());
        assert_eq!(
            show_chain(&g.chain("c0")),
            format!(
                "c0 → c1 → c2 → c3 → … ({} more) → c{} → c{} → c{} → c{}",
                n - 8,
                n - 4,
                n - 3,
                n - 2,
                n - 1
            )
        );
    }
}
