//! The code generator's exact merges (`MERGE_ORDER`) are the stdlib's `std.merge`, rule for
//! rule: the same variants, in the same order, on the same operators.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

#[test]
fn merge_order_is_std_merge() {
    let src = include_str!("../../../stdlib/std/vision.mcr");
    let body = src.split("recipe merge {").nth(1).unwrap();
    let rules: Vec<(String, Vec<String>)> = body
        .lines()
        .map(str::trim)
        .take_while(|l| *l != "}")
        .filter_map(|l| l.strip_prefix("merge "))
        .map(|l| {
            let (variant, ops) = l.split_once(" on ").unwrap();
            let ops = ops.split('{').next().unwrap();
            (
                variant.trim().to_string(),
                ops.split('|')
                    .map(|o| o.trim().trim_end_matches('?').to_string())
                    .collect(),
            )
        })
        .collect();
    let order: Vec<(String, Vec<String>)> = mcc_passes::MERGE_ORDER
        .iter()
        .map(|(v, ops)| (v.to_string(), ops.iter().map(|o| o.to_string()).collect()))
        .collect();
    assert_eq!(rules, order);
}
