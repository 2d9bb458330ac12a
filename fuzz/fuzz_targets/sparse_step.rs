//! Fuzzes the sparse fully connected step as a hostile program would give it: every size of
//! the step (rows, depth, columns, nonzeros, offsets, buffer lengths) and every word of its
//! stored matrix (column offsets, row indices, values) comes from the input, small or huge.
//! Making the runner must refuse what does not fit — sizes whose products overflow, offsets
//! that decrease or pass the end, indices beyond the depth — and running what it accepts, at
//! batch 1 and 3, must give outputs or an error: never a panic, an out-of-bounds access or a
//! wrapped bound (the kernel's unchecked reads rely on that validation).
#![no_main]

use mcc_runtime::exec::Runner;
use mcc_runtime::kernels::epilogue::Act;
use mcc_runtime::program::{Buf, Io, Program, Step};

/// Reads little-endian words from the input, then zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u32(&mut self) -> u32 {
        let mut w = [0u8; 4];
        for b in &mut w {
            if let Some((first, rest)) = self.0.split_first() {
                *b = *first;
                self.0 = rest;
            }
        }
        u32::from_le_bytes(w)
    }

    /// A size: mostly small (so runs happen), sometimes anything (so bounds are tested).
    fn size(&mut self) -> usize {
        let v = self.u32();
        match v >> 28 {
            0 => (v as usize) << 32 | self.u32() as usize,
            1 => usize::MAX - (v as usize & 0xff),
            _ => (v & 0x3f) as usize,
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let (rows, k, n, nnz) = (b.size(), b.size(), b.size(), b.size());
    let (x_len, y_len) = (b.size(), b.size());
    let has_bias = b.u32() & 1 == 1;
    // The stored matrix: offsets, indices and values as the input gives them, at most 4096
    // words (its declared length may be far larger: the runner must refuse that).
    let words: Vec<f32> = (0..b.size().min(4096)).map(|_| f32::from_bits(b.u32())).collect();
    let mut weights = words;
    let bias = weights.len();
    weights.extend((0..64).map(|i| i as f32 * 0.25));
    let arena = x_len.saturating_add(y_len).min(1 << 20);
    let step = Step::SparseDense {
        x: Buf { off: 0, len: x_len },
        y: Buf {
            off: x_len.min(arena),
            len: y_len,
        },
        rows,
        k,
        n,
        nnz,
        w: 0,
        bias: has_bias.then_some(bias),
        act: Act::Relu,
    };
    let p = Program {
        fixed_batch: None,
        inputs: vec![Io {
            name: "x".into(),
            dims: vec![x_len],
            buf: Buf { off: 0, len: x_len },
        }],
        outputs: vec![Io {
            name: "y".into(),
            dims: vec![y_len],
            buf: Buf {
                off: x_len.min(arena),
                len: y_len,
            },
        }],
        arena,
        scratch: k.saturating_mul(64).min(1 << 20),
        steps: vec![step],
        weights,
    };
    let Ok(mut r) = Runner::new(&p, 1) else {
        return;
    };
    for batch in [1usize, 3] {
        let Some(len) = x_len.checked_mul(batch).filter(|&l| l <= 1 << 20) else {
            continue;
        };
        let x: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
        if let Ok(out) = r.run(&[&x]) {
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].len(), y_len * batch);
        }
    }
});
