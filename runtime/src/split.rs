//! Which steps of a program split over the threads, decided once per batch size by a static
//! cost model that prices what a split costs beside what it saves, so that a second thread
//! does not make a model slower.
//!
//! Invariant: the plan depends only on the program, the batch and the thread count — never on
//! a timing — so a build runs the same schedule every time, and with one thread (or a batch
//! of a sample per thread, where samples run in parallel) nothing changes.
//!
//! Why a model and not a per-step threshold: splitting one sample's step over two threads
//! costs more than the step's own synchronisation. A worker must be awake to take its half:
//! waking a sleeping one costs tens of µs on this project's 2-vCPU VMs, while a worker that
//! spins between jobs is cheap to hand work to but slows the caller's serial steps a little
//! meanwhile. So whether a split pays depends on its neighbours (a lone middling step
//! between long serial stretches pays less than a chain of large ones). The model walks the steps in order with
//! two states — the worker asleep or spinning — and finds the cheapest choice of splits and
//! of where to send the worker to sleep ([`Plan::park_after`]) by dynamic programming over
//! the chain:
//!
//! - a serial step costs its estimated time `t`, or `t · (1 + INTERFERENCE)` next to a
//!   spinning worker;
//! - a split step costs `t / threads + SYNC`, plus `WAKE` when the worker was asleep; after
//!   it the worker spins, or is sent to sleep at no cost.
//!
//! A run starts with the worker asleep, so a split must pay for its wake-up; one that ends
//! with the worker spinning spares the next run that wake-up (runs come back to back).
//! What it cannot see: this project's VMs have minutes-long phases in which every 2-thread
//! run of a small model is slower, ONNX Runtime's too (mobilenet_dw at batch 1 once ran
//! 0.120 ms on 2 threads against 0.077 on 1, with the pre-model thresholds as well). A step's time
//! is estimated from its FLOPs and the bytes it moves, weights included (the larger of the two
//! at this CPU class's rough rates); only steps large enough to split at all
//! ([`splittable`], the measured minimum sizes) are candidates. At a batch of at least one
//! sample per thread the runner already keeps every thread busy with whole samples; the plan
//! there is just [`splittable`].

use crate::kernels::blocked::LANES;
use crate::program::{ConvLayout, Program, Step};

/// Estimated µs to wake a sleeping worker and have it start a task (futex wake-up and
/// scheduling on a 2-vCPU VM: inception_mini at batch 1, whose one split step woke a parked
/// worker every run, took 17 µs more per run than with the worker spinning).
const WAKE: f64 = 25.0;

/// Estimated µs a split step spends handing out its tasks and waiting for the last one when
/// the worker is spinning.
const SYNC: f64 = 1.0;

/// How much longer a serial step takes while a worker spins beside it (inception_mini at
/// batch 1: its ~70 µs of serial steps after its one split ran about 12 µs slower next to a
/// spinning worker).
const INTERFERENCE: f64 = 0.2;

/// Rough single-thread rates of the kernels: FLOPs and bytes per µs (100 GFLOP/s; 50 GB/s,
/// a layer's working set mostly coming from L2/L3).
const FLOPS_PER_US: f64 = 100_000.0;
const BYTES_PER_US: f64 = 50_000.0;

/// FLOPs from which one sample's grouped convolution may split its groups.
pub const GROUP_SPLIT: usize = 2_000_000;

/// FLOPs from which one sample's blocked convolution may split its pixels (measured at
/// batch 1 on 2 threads: MobileNet's 0.8–1.6 MFLOP pointwise layers lose from a split below
/// this; ResNet's chains of 1.8–3.6 MFLOP layers gain).
pub const BLOCKED_SPLIT: usize = 1_000_000;

/// FLOPs from which one sample's plain (GEMM-layout) convolution may split its output
/// channels (LeNet-5's 3.2 MFLOP second convolution: 36 → 27 µs on 2 threads).
pub const GEMM_SPLIT: usize = 2_000_000;

/// FLOPs of the whole batch from which a dense step may split its GEMM (one sample of
/// LeNet-5's 800×500 layer: 26 → 9 µs on 2 threads, each core reading half the weights).
pub const DENSE_SPLIT: usize = 500_000;

/// Output floats per sample from which one sample's blocked concatenation may split its
/// pixels.
pub const CONCAT_SPLIT: usize = 32 * 1024;

/// Output floats per sample from which a pooling or depthwise convolution of one sample
/// may split its channels.
pub const WINDOW_SPLIT: usize = 64 * 1024;

/// Floats per sample from which one sample's reorder may split its channel blocks
/// (SqueezeNet's last 1000 × 13 × 13 reorder: 0.11 → 0.05 ms on 2 threads).
pub const REORDER_SPLIT: usize = 64 * 1024;

/// Whether step `s` has a split path at this batch and is large enough for it to pay at all
/// (the runner's split paths are the arms of `Runner::step` these conditions name).
pub fn splittable(s: &Step, batch: usize, threads: usize) -> bool {
    if threads < 2 {
        return false;
    }
    let one = batch < threads;
    let flops = s.flops();
    match s {
        Step::Dense { .. } | Step::SparseDense { .. } | Step::BlockDense { .. } => {
            flops.saturating_mul(batch) > DENSE_SPLIT
        }
        // Split by rows only (a share of the batch's rows per thread).
        Step::QDense { .. } | Step::QDynDense { .. } => {
            batch >= threads && flops.saturating_mul(batch) > DENSE_SPLIT
        }
        Step::Conv {
            layout: ConvLayout::Blocked { .. } | ConvLayout::Winograd,
            ..
        } => one && flops > BLOCKED_SPLIT,
        Step::Conv { groups: 1, .. } => one && flops > GEMM_SPLIT,
        Step::Conv { .. } => one && flops > GROUP_SPLIT,
        Step::Concat { y, plane, .. } => one && *plane > 0 && y.len >= CONCAT_SPLIT,
        Step::Reorder { y, c, .. } => one && y.len >= REORDER_SPLIT && c.div_ceil(LANES) >= threads,
        Step::MaxPool { y, g, .. } | Step::AvgPool { y, g, .. } | Step::Depthwise { y, g, .. } => {
            one && y.len >= WINDOW_SPLIT && g.c >= threads
        }
        _ => false,
    }
}

/// Weight floats a step reads (once per run, whatever the batch).
fn weight_floats(s: &Step) -> usize {
    match s {
        Step::Conv { g, m, groups, .. } => m * g.c / groups.max(&1) * g.kh * g.kw,
        Step::Dense { k, n, .. } => k * n,
        Step::SparseDense { nnz, .. } => 2 * nnz,
        Step::BlockDense {
            r, c, blocks, n, ..
        } => blocks * (1 + r * c) + n / r,
        Step::Depthwise { g, m, .. } => m * g.kh * g.kw,
        _ => 0,
    }
}

/// Estimated µs of step `s` on one thread for `batch` samples.
fn estimate(s: &Step, batch: usize) -> f64 {
    let floats: usize = s.reads().iter().map(|b| b.len).sum::<usize>() + s.writes().len;
    let bytes = ((floats * batch + weight_floats(s)) * 4) as f64;
    let flops = (s.flops() * batch) as f64;
    (flops / FLOPS_PER_US).max(bytes / BYTES_PER_US)
}

/// The split decisions for one batch size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Step `i` splits over the threads.
    pub split: Vec<bool>,
    /// After step `i` (a split one), the workers go to sleep at once instead of spinning:
    /// the serial stretch that follows costs less without them than their wake-up.
    pub park_after: Vec<bool>,
}

/// The plan for `prog` at `batch` samples on `threads` threads.
pub fn plan(prog: &Program, batch: usize, threads: usize) -> Plan {
    let n = prog.steps.len();
    if threads < 2 || batch >= threads {
        return Plan {
            split: prog
                .steps
                .iter()
                .map(|s| splittable(s, batch, threads))
                .collect(),
            park_after: vec![false; n],
        };
    }
    // cost[state] after each step; state 0: the worker asleep, 1: spinning. `from[i][state]`
    // is (previous state, split?, parked?) of the cheapest way there.
    let mut cost = [0.0f64, f64::INFINITY];
    let mut from = Vec::with_capacity(n);
    let ways = threads as f64;
    for s in &prog.steps {
        let t = estimate(s, batch);
        let mut next = [f64::INFINITY; 2];
        let mut how = [(0usize, false, false); 2];
        let mut offer = |state: usize, c: f64, way: (usize, bool, bool)| {
            if c < next[state] {
                next[state] = c;
                how[state] = way;
            }
        };
        // Serial.
        offer(0, cost[0] + t, (0, false, false));
        offer(1, cost[1] + t * (1.0 + INTERFERENCE), (1, false, false));
        if splittable(s, batch, threads) {
            for (prev, wake) in [(0, WAKE), (1, 0.0)] {
                let c = cost[prev] + wake + t / ways + SYNC;
                offer(1, c, (prev, true, false));
                offer(0, c, (prev, true, true));
            }
        }
        cost = next;
        from.push(how);
    }
    // Runs come back to back: a run that ends with the worker spinning spares the next one
    // its first wake-up (only a run that split something can end spinning).
    let mut state = if cost[1] - WAKE < cost[0] { 1 } else { 0 };
    let (mut split, mut park_after) = (vec![false; n], vec![false; n]);
    for i in (0..n).rev() {
        let (prev, s, p) = from[i][state];
        split[i] = s;
        park_after[i] = p;
        state = prev;
    }
    Plan { split, park_after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::Geometry;
    use crate::kernels::epilogue::Act;
    use crate::program::Buf;

    /// A 3×3 one-group convolution of `c` channels to `c` on an `s`×`s` image, blocked.
    fn conv(c: usize, s: usize) -> Step {
        let g = Geometry::three_by_three(c, s, s, 1);
        let len = c * s * s;
        Step::Conv {
            x: Buf { off: 0, len },
            y: Buf { off: len, len },
            g,
            m: c,
            groups: 1,
            w: 0,
            bias: None,
            residual: None,
            act: Act::None,
            layout: ConvLayout::Blocked { x_blocked: true },
        }
    }

    /// 18.9 MFLOP (about 190 µs at the model's rate).
    fn big() -> Step {
        conv(64, 16)
    }

    /// 0.3 MFLOP: below every split minimum.
    fn small() -> Step {
        conv(16, 8)
    }

    /// 1.6 MFLOP: just above the blocked split minimum.
    fn middling() -> Step {
        conv(16, 19)
    }

    fn program(steps: Vec<Step>) -> Program {
        crate::testing::bare_program(steps, vec![])
    }

    #[test]
    fn sizes_are_what_the_tests_say() {
        assert!(big().flops() > 10 * BLOCKED_SPLIT);
        assert!(small().flops() < BLOCKED_SPLIT);
        let m = middling().flops();
        assert!(m > BLOCKED_SPLIT && m < 2 * BLOCKED_SPLIT, "{m}");
    }

    #[test]
    fn large_steps_split_small_ones_never() {
        let p = plan(&program(vec![big(), small(), big(), big()]), 1, 2);
        assert_eq!(p.split, [true, false, true, true]);
        assert_eq!(
            p.park_after, [false; 4],
            "a short serial gap: the worker spins on"
        );
        let p = plan(&program(vec![small(); 5]), 1, 2);
        assert_eq!(p.split, [false; 5]);
    }

    #[test]
    fn one_thread_or_a_sample_per_thread_keeps_the_eligibility() {
        assert_eq!(plan(&program(vec![big()]), 1, 1).split, [false]);
        // With a sample per thread, one-sample splits do not apply.
        assert_eq!(
            plan(&program(vec![big(), middling()]), 2, 2).split,
            [false; 2]
        );
    }

    #[test]
    fn a_lone_middling_step_splits_only_when_its_neighbours_are_short() {
        // Between long serial stretches, the spinning worker would slow them more than the
        // split saves.
        let mut steps = vec![small(); 40];
        steps.push(middling());
        steps.extend(vec![small(); 40]);
        let p = plan(&program(steps), 1, 2);
        assert!(!p.split.iter().any(|&s| s), "{p:?}");
        // Alone, it pays (runs come back to back, so its worker stays awake for the next).
        let p = plan(&program(vec![small(), middling(), small()]), 1, 2);
        assert_eq!(p.split, [false, true, false]);
    }

    #[test]
    fn the_worker_sleeps_through_a_long_serial_stretch() {
        // Split, then a long run of small serial steps, then split again: parking after the
        // first and waking for the last beats spinning through the stretch.
        let mut steps = vec![big()];
        steps.extend(vec![small(); 60]);
        steps.push(big());
        let p = plan(&program(steps), 1, 2);
        assert!(p.split[0] && p.split[61] && !p.split[1..61].iter().any(|&s| s));
        assert!(p.park_after[0], "{p:?}");
        assert!(
            !p.park_after[61],
            "the run ends with the worker awake for the next one"
        );
    }

    #[test]
    fn the_plan_is_a_function_of_the_program_batch_and_threads() {
        let prog = program(vec![big(), small(), middling(), small(), big()]);
        assert_eq!(plan(&prog, 1, 2), plan(&prog, 1, 2));
    }
}
