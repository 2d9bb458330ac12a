//! Memory planning: every arena buffer gets an offset so that buffers alive at the same time
//! never overlap; greedy by size (largest first, lowest offset that fits), 64-byte aligned.
//!
//! **Invariant:** two buffers whose live ranges (first write to last read, inclusive)
//! intersect get disjoint floats. Sizes and offsets are per sample (see
//! `mcc_runtime::program`), so the plan holds for every batch size.

/// Floats per alignment unit (64 bytes).
const ALIGN: usize = 16;

/// Offsets for `sizes[i]` floats live over `live[i]` (inclusive step range); returns the
/// offsets and the arena size.
pub fn plan(sizes: &[usize], live: &[(usize, usize)]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut offsets = vec![0; sizes.len()];
    let mut placed: Vec<usize> = vec![];
    let mut total = 0;
    for i in order {
        let size = sizes[i].div_ceil(ALIGN) * ALIGN;
        // Intervals taken by live-overlapping buffers, by offset.
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| live[j].0 <= live[i].1 && live[i].0 <= live[j].1)
            .map(|&j| (offsets[j], offsets[j] + sizes[j].div_ceil(ALIGN) * ALIGN))
            .collect();
        taken.sort_unstable();
        let mut at = 0;
        for (s, e) in taken {
            if at + size <= s {
                break;
            }
            at = at.max(e);
        }
        offsets[i] = at;
        total = total.max(at + size);
        placed.push(i);
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn overlapping_lifetimes_get_disjoint_memory_and_others_reuse_it() {
        let sizes = [100, 50, 100, 30];
        let live = [(0, 1), (1, 2), (2, 3), (0, 3)];
        let (off, total) = plan(&sizes, &live);
        for i in 0..4 {
            for j in 0..i {
                if live[i].0 <= live[j].1 && live[j].0 <= live[i].1 {
                    let (a, b) = (off[i]..off[i] + sizes[i], off[j]..off[j] + sizes[j]);
                    assert!(a.end <= b.start || b.end <= a.start, "{i} and {j} overlap");
                }
            }
        }
        // Buffers 0 and 2 never live together: they share memory.
        assert_eq!(off[0], off[2]);
        assert!(total < sizes.iter().map(|s| s.div_ceil(16) * 16).sum::<usize>());
    }
}
