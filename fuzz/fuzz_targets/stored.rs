//! Fuzzes compressed weights, both readers: the object file's weight words
//! (`mcc_runtime::stored`, chunked and coded forms) and the IR's stored-constant blobs
//! (`mcc_ir::stored`, every values × layout × coding). Any bytes must decode or give an
//! error, never a panic, an out-of-bounds access or an allocation the input cannot back; what
//! the writers make from the same bytes (read as floats, with and without channel regions)
//! must read back bit for bit.
//!
//! The first byte picks an IR encoding and a shape; the rest is the blob, and also the
//! object-file words and a float array to encode.
#![no_main]

use mcc_ir::stored::{Coding, Encoding, Granularity, Layout, Stored, Values};

fn encoding(b: u8) -> Encoding {
    let bits = 1 + (b & 7);
    let per = match (b >> 3) & 3 {
        0 => Granularity::Tensor,
        1 => Granularity::Channel(0),
        2 => Granularity::Channel(1),
        _ => Granularity::Group(3),
    };
    let values = match (b >> 5) % 3 {
        0 => Values::F32,
        1 => Values::Int { bits, per },
        _ => Values::Codebook { bits, per },
    };
    let layout = match b % 7 {
        0 => Layout::Dense,
        1 => Layout::Bitmask,
        2 => Layout::Csr,
        3 => Layout::NM { n: 2, m: 4 },
        4 => Layout::Blocks { rows: 2, cols: 1 },
        _ => Layout::Gaps { bits },
    };
    let coding = if b & 0x80 != 0 { Coding::Huffman } else { Coding::None };
    Encoding { values, layout, coding }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    // The IR reader: any blob, a few shapes.
    let shapes: [&[usize]; 4] = [&[4, 8], &[2, 3, 2, 2], &[16], &[64, 64]];
    let shape = shapes[(head as usize / 7) % shapes.len()];
    if let Ok(s) = Stored::from_blob(encoding(head), shape, rest.to_vec()) {
        // What decodes has parts that lay out again to the same tensor (Huffman lengths may
        // differ: a fuzzed code need not be the optimal one the writer makes).
        let parts = s.parts().expect("a decoded blob has parts");
        let again = Stored::new(s.encoding(), shape, &parts).expect("its parts lay out");
        let bits = |t: &mcc_ir::Tensor| -> Vec<u32> {
            t.as_f32().expect("f32").iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(bits(again.decoded()), bits(s.decoded()), "{}", s.encoding());
    }
    // The object-file reader: any words, into a buffer of the length they claim (bounded).
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(n) = mcc_runtime::stored::decoded_len(&words)
        && n <= mcc_runtime::stored::max_decoded_len(&words)
        && n <= 1 << 20
    {
        let mut out = vec![0f32; n];
        let _ = mcc_runtime::stored::decode_into(&words, &mut out);
    }
    // The writer: the words as floats (few distinct values when the bytes repeat) read back
    // bit for bit, without channel regions and with two the first bytes choose (which may
    // be invalid: then they are not used).
    let floats: Vec<f32> = words.iter().map(|&w| f32::from_bits(w & 0xff00_00ff)).collect();
    let byte = |i: usize| usize::from(rest.get(i).copied().unwrap_or(0));
    // (A segment is whole periods unless the top bit of its byte is set.)
    let region = |i: usize| {
        let period = 1 + byte(i + 3) % 17;
        mcc_runtime::stored::Lanes {
            at: byte(i) % 64,
            len: 1 + byte(i + 1) * 4,
            segment: period * (1 + byte(i + 2) % 8) + byte(i + 2) / 128,
            period,
        }
    };
    let mut second = region(4);
    second.at += region(0).at + region(0).len;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for lanes in [vec![], vec![region(0)], vec![region(0), second]] {
        let e = mcc_runtime::stored::encode_lanes(&floats, &lanes);
        let mut back = vec![0f32; floats.len()];
        mcc_runtime::stored::decode_into(&e, &mut back).expect("what encode writes decodes");
        assert_eq!(bits(&back), bits(&floats));
    }
});
