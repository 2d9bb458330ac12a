//! Grammar checks: what parses, into what, and what the syntax errors say.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_recipe::ast::{Item, SelKind, SetOp, Unit, ValueKind};
use mcc_recipe::parse;

const FULL: &str = r#"
# A recipe using every construct.
use std.fold_norms
calibrate with "calib.npy"
evaluate with "test_x.npy" labels "test_y.npy"
budget {
  accuracy_drop <= 1%
  size <= 400 KiB
}
recipe mine(amount: ratio = 50%) {
  prune unstructured on Conv { amount: amount }
}
stage sparsify {
  prune unstructured on (Conv[kernel == 5] | "fc*") - "fc2" & inside("/conv") { amount: 90% }
  prune filters on after(Relu) | before("/fc2/Gemm")? { keep: 0.5, by: l1 }
  use mine(amount: 30%)
}
quantize int8 on /conv\d+/ { per: channel }
"#;

#[test]
fn every_construct_parses() {
    let r = parse(FULL).unwrap();
    assert_eq!(r.items.len(), 7);
    let Item::Stage(s) = &r.items[5] else {
        panic!("{:?}", r.items[5])
    };
    assert_eq!(s.name.name, "sparsify");
    let mcc_recipe::ast::BodyItem::Rule(rule) = &s.items[0] else {
        panic!()
    };
    assert_eq!(rule.technique.name, "prune");
    assert_eq!(rule.variant.as_ref().unwrap().name, "unstructured");
    // Left to right: ((Conv[…] | "fc*") - "fc2") & inside("/conv").
    let SelKind::Combine(first, rest) = &rule.selector.kind else {
        panic!("{:?}", rule.selector)
    };
    let ops: Vec<SetOp> = rest.iter().map(|(op, _)| *op).collect();
    assert_eq!(ops, [SetOp::Diff, SetOp::Inter]);
    assert!(matches!(rest[1].1.kind, SelKind::Inside(ref p) if p == "/conv"));
    // The group is one term: `Conv[…] | "fc*"`.
    assert!(
        matches!(&first.kind, SelKind::Combine(_, r) if r.len() == 1 && r[0].0 == SetOp::Union)
    );
    let ValueKind::Number { value, unit } = &rule.params[0].value.kind else {
        panic!()
    };
    assert_eq!((*value, *unit), (90.0, Some(Unit::Percent)));
    let Item::Rule(q) = &r.items[6] else { panic!() };
    assert!(matches!(&q.selector.kind, SelKind::Regex(re) if re == r"conv\d+"));
    let Item::Budget(b) = &r.items[3] else {
        panic!()
    };
    assert!(
        matches!(b.constraints[1].value.kind, ValueKind::Number { value, unit: Some(Unit::Bytes(f)) } if value == 400.0 && f == 1024.0)
    );
}

#[test]
fn spans_point_at_the_text() {
    let src = "prune unstructured on \"conv1\" { amount: 50% }";
    let r = parse(src).unwrap();
    let Item::Rule(rule) = &r.items[0] else {
        panic!()
    };
    let s = rule.selector.span;
    assert_eq!(&src[s.start as usize..s.end as usize], "\"conv1\"");
    let v = rule.params[0].value.span;
    assert_eq!(&src[v.start as usize..v.end as usize], "50%");
}

#[test]
fn syntax_errors_say_what_was_expected() {
    let e = parse("prune unstructured { amount: 50% }").unwrap_err();
    assert!(e.message.contains("expected"), "{e:?}");
    let e = parse("prune on").unwrap_err();
    assert!(e.message.contains("layer selector"), "{e:?}");
    let e = parse("stage s { prune on Conv { amount 50% } }").unwrap_err();
    // A parameter without its colon: the message says what a parameter looks like and
    // what stood there instead.
    assert!(
        e.message.contains("expected a parameter `name: value`")
            && e.message.contains("found `amount`"),
        "{e:?}"
    );
    assert!(parse("budget { size <= }").is_err());
}

#[test]
fn nesting_is_bounded_where_it_is_parsed() {
    let at = |n: usize, open: &str| {
        format!(
            "prune unstructured on {}Conv{} {{ amount: 50% }}",
            open.repeat(n),
            ")".repeat(n)
        )
    };
    let n = mcc_recipe::MAX_NESTING;
    for open in ["(", "after(", "before("] {
        assert!(parse(&at(n, open)).is_ok(), "{open} × {n}");
        for deep in [n + 1, 10_000, 200_000] {
            let src = at(deep, open);
            let e = parse(&src).unwrap_err();
            assert!(e.message.contains("nest deeper than 64"), "{e:?}");
            // The diagnostic points at the first parenthesis too many.
            let first_too_many = src.match_indices('(').nth(n).unwrap().0;
            assert_eq!(e.span.offset(), first_too_many);
        }
    }
    // Parentheses in comments, strings and regexes are not nesting.
    let quoted = format!(
        "# {}\nprune unstructured on \"{}\" | /{}/? {{ amount: 50% }}",
        "(".repeat(100),
        "(".repeat(100),
        "\\(".repeat(100)
    );
    assert!(parse(&quoted).is_ok(), "{:?}", parse(&quoted));
}

#[test]
fn a_flat_union_of_many_terms_is_one_list() {
    let terms = vec!["Conv"; 100_000].join(" | ");
    let r = parse(&format!("prune unstructured on {terms} {{ amount: 50% }}")).unwrap();
    let Item::Rule(rule) = &r.items[0] else {
        panic!()
    };
    let SelKind::Combine(_, rest) = &rule.selector.kind else {
        panic!()
    };
    assert_eq!(rest.len(), 99_999);
    // Cloning, comparing and dropping it does not recurse per term either.
    assert_eq!(rule.clone(), *rule);
}
