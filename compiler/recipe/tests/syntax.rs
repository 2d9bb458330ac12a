//! Grammar checks: what parses, into what, and what the syntax errors say.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_recipe::ast::{Item, SelKind, Unit, ValueKind};
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
    let SelKind::Inter(lhs, rhs) = &rule.selector.kind else {
        panic!("{:?}", rule.selector)
    };
    assert!(matches!(rhs.kind, SelKind::Inside(ref p) if p == "/conv"));
    assert!(matches!(lhs.kind, SelKind::Diff(_, _)));
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
