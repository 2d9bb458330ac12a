//! The 6×64 AVX-512 register tile's k loop in inline assembly: 24 accumulators, 4 B loads and
//! 6 broadcasts per k. (The same loop in intrinsics makes LLVM spill accumulators to the
//! stack: this one keeps all of them in zmm0–zmm23.) Two loops, written out in full as
//! assembly must be: B rows at a stride, or through a table of row offsets (a convolution's
//! indirect B); they differ only in how they address A and B.
//!
//! Every function here requires AVX-512F and that its pointers are valid for `k` steps: A's 6
//! rows (`a + r` for a packed panel, `a + r·a_rs` otherwise) advancing by `a_ks` floats, and B's
//! 4 groups of 16 floats (`b + h·b_hs`, or `bbase + tab[kk] + 16·h`) advancing by `b_ks`.
#![allow(unsafe_code)]

use std::arch::x86_64::__m512;

/// Six rows of four 16-lane accumulators.
pub(super) type Acc = [[__m512; 4]; 6];

/// A packed, B row kk at `bbase + tab[kk]` (groups adjacent).
///
/// # Safety
/// The CPU has AVX-512F. For kk < `k`: `tab + kk` is a readable `usize`; A's 6 floats
/// `a + kk·a_ks + r` (r < 6) are readable, and B's 64 floats at `bbase + tab[kk]`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_lines)]
pub(super) unsafe fn packed_a_tab(
    k: usize,
    a: *const f32,
    a_ks: usize,
    bbase: *const f32,
    tab: *const usize,
) -> Acc {
    let c00: __m512;
    let c01: __m512;
    let c02: __m512;
    let c03: __m512;
    let c10: __m512;
    let c11: __m512;
    let c12: __m512;
    let c13: __m512;
    let c20: __m512;
    let c21: __m512;
    let c22: __m512;
    let c23: __m512;
    let c30: __m512;
    let c31: __m512;
    let c32: __m512;
    let c33: __m512;
    let c40: __m512;
    let c41: __m512;
    let c42: __m512;
    let c43: __m512;
    let c50: __m512;
    let c51: __m512;
    let c52: __m512;
    let c53: __m512;
    // SAFETY: AVX-512F is enabled for this function, and its callers have it (the
    // contract). The loop runs `k` times (none when k is 0); step kk reads `tab[kk]`, A's 6
    // floats at step kk and B's 4 vectors of row kk, all readable by the contract, and
    // nothing else (`readonly`: no writes to memory; `nostack`). Every register it changes
    // is an output or an `inout` whose final value is discarded, and flags are clobbered by
    // default.
    unsafe {
        std::arch::asm!(
            "vxorps zmm0, zmm0, zmm0",
            "vxorps zmm1, zmm1, zmm1",
            "vxorps zmm2, zmm2, zmm2",
            "vxorps zmm3, zmm3, zmm3",
            "vxorps zmm4, zmm4, zmm4",
            "vxorps zmm5, zmm5, zmm5",
            "vxorps zmm6, zmm6, zmm6",
            "vxorps zmm7, zmm7, zmm7",
            "vxorps zmm8, zmm8, zmm8",
            "vxorps zmm9, zmm9, zmm9",
            "vxorps zmm10, zmm10, zmm10",
            "vxorps zmm11, zmm11, zmm11",
            "vxorps zmm12, zmm12, zmm12",
            "vxorps zmm13, zmm13, zmm13",
            "vxorps zmm14, zmm14, zmm14",
            "vxorps zmm15, zmm15, zmm15",
            "vxorps zmm16, zmm16, zmm16",
            "vxorps zmm17, zmm17, zmm17",
            "vxorps zmm18, zmm18, zmm18",
            "vxorps zmm19, zmm19, zmm19",
            "vxorps zmm20, zmm20, zmm20",
            "vxorps zmm21, zmm21, zmm21",
            "vxorps zmm22, zmm22, zmm22",
            "vxorps zmm23, zmm23, zmm23",
            "test {k}, {k}",
            "jz 3f",
            "2:",
            "mov {t}, qword ptr [{tab}]",
            "lea {b}, [{bbase} + {t}*4]",
            "vmovups zmm24, zmmword ptr [{b}]",
            "vmovups zmm25, zmmword ptr [{b} + 64]",
            "vmovups zmm26, zmmword ptr [{b} + 128]",
            "vmovups zmm27, zmmword ptr [{b} + 192]",
            "vbroadcastss zmm28, dword ptr [{a}]",
            "vfmadd231ps zmm0, zmm28, zmm24",
            "vfmadd231ps zmm1, zmm28, zmm25",
            "vfmadd231ps zmm2, zmm28, zmm26",
            "vfmadd231ps zmm3, zmm28, zmm27",
            "vbroadcastss zmm29, dword ptr [{a} + 4]",
            "vfmadd231ps zmm4, zmm29, zmm24",
            "vfmadd231ps zmm5, zmm29, zmm25",
            "vfmadd231ps zmm6, zmm29, zmm26",
            "vfmadd231ps zmm7, zmm29, zmm27",
            "vbroadcastss zmm30, dword ptr [{a} + 8]",
            "vfmadd231ps zmm8, zmm30, zmm24",
            "vfmadd231ps zmm9, zmm30, zmm25",
            "vfmadd231ps zmm10, zmm30, zmm26",
            "vfmadd231ps zmm11, zmm30, zmm27",
            "vbroadcastss zmm31, dword ptr [{a} + 12]",
            "vfmadd231ps zmm12, zmm31, zmm24",
            "vfmadd231ps zmm13, zmm31, zmm25",
            "vfmadd231ps zmm14, zmm31, zmm26",
            "vfmadd231ps zmm15, zmm31, zmm27",
            "vbroadcastss zmm28, dword ptr [{a} + 16]",
            "vfmadd231ps zmm16, zmm28, zmm24",
            "vfmadd231ps zmm17, zmm28, zmm25",
            "vfmadd231ps zmm18, zmm28, zmm26",
            "vfmadd231ps zmm19, zmm28, zmm27",
            "vbroadcastss zmm29, dword ptr [{a} + 20]",
            "vfmadd231ps zmm20, zmm29, zmm24",
            "vfmadd231ps zmm21, zmm29, zmm25",
            "vfmadd231ps zmm22, zmm29, zmm26",
            "vfmadd231ps zmm23, zmm29, zmm27",
            "add {a}, {aks}",
            "add {tab}, 8",
            "dec {k}",
            "jnz 2b",
            "3:",
            k = inout(reg) k => _,
            a = inout(reg) a => _,
            aks = in(reg) a_ks * 4,
            tab = inout(reg) tab => _,
            bbase = in(reg) bbase,
            b = out(reg) _,
            t = out(reg) _,
            out("zmm0") c00,
            out("zmm1") c01,
            out("zmm2") c02,
            out("zmm3") c03,
            out("zmm4") c10,
            out("zmm5") c11,
            out("zmm6") c12,
            out("zmm7") c13,
            out("zmm8") c20,
            out("zmm9") c21,
            out("zmm10") c22,
            out("zmm11") c23,
            out("zmm12") c30,
            out("zmm13") c31,
            out("zmm14") c32,
            out("zmm15") c33,
            out("zmm16") c40,
            out("zmm17") c41,
            out("zmm18") c42,
            out("zmm19") c43,
            out("zmm20") c50,
            out("zmm21") c51,
            out("zmm22") c52,
            out("zmm23") c53,
            out("zmm24") _,
            out("zmm25") _,
            out("zmm26") _,
            out("zmm27") _,
            out("zmm28") _,
            out("zmm29") _,
            out("zmm30") _,
            out("zmm31") _,
            options(nostack, readonly),
        );
    }
    [
        [c00, c01, c02, c03],
        [c10, c11, c12, c13],
        [c20, c21, c22, c23],
        [c30, c31, c32, c33],
        [c40, c41, c42, c43],
        [c50, c51, c52, c53],
    ]
}

/// A rows `a_rs` apart (its k at stride `a_ks`), B rows `b_ks` apart, groups `b_hs` apart.
///
/// # Safety
/// The CPU has AVX-512F. For kk < `k`: A's floats `a + kk·a_ks + r·a_rs` (r < 6) are
/// readable, and B's 16 floats at `b + kk·b_ks + h·b_hs` for each h < 4.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_lines)]
pub(super) unsafe fn rows_a(
    k: usize,
    a: *const f32,
    a_rs: usize,
    a_ks: usize,
    b: *const f32,
    b_ks: usize,
    b_hs: usize,
) -> Acc {
    let c00: __m512;
    let c01: __m512;
    let c02: __m512;
    let c03: __m512;
    let c10: __m512;
    let c11: __m512;
    let c12: __m512;
    let c13: __m512;
    let c20: __m512;
    let c21: __m512;
    let c22: __m512;
    let c23: __m512;
    let c30: __m512;
    let c31: __m512;
    let c32: __m512;
    let c33: __m512;
    let c40: __m512;
    let c41: __m512;
    let c42: __m512;
    let c43: __m512;
    let c50: __m512;
    let c51: __m512;
    let c52: __m512;
    let c53: __m512;
    // SAFETY: AVX-512F is enabled for this function, and its callers have it (the
    // contract). The loop runs `k` times (none when k is 0); step kk reads A's 6 floats
    // (`a`, `a + a_rs`, `a + 2·a_rs` and `a3` = `a + 3·a_rs` onwards, advancing `a_ks`) and
    // B's 4 vectors (`b`, `b + b_hs`, `b + 2·b_hs`, `b3` = `b + 3·b_hs`, advancing `b_ks`),
    // all readable by the contract, and nothing else (`readonly`, `nostack`). `a3` and `b3`
    // are made with `wrapping_add` and only dereferenced inside the loop. Every register
    // it changes is an output or a discarded `inout`; flags are clobbered by default.
    unsafe {
        std::arch::asm!(
            "vxorps zmm0, zmm0, zmm0",
            "vxorps zmm1, zmm1, zmm1",
            "vxorps zmm2, zmm2, zmm2",
            "vxorps zmm3, zmm3, zmm3",
            "vxorps zmm4, zmm4, zmm4",
            "vxorps zmm5, zmm5, zmm5",
            "vxorps zmm6, zmm6, zmm6",
            "vxorps zmm7, zmm7, zmm7",
            "vxorps zmm8, zmm8, zmm8",
            "vxorps zmm9, zmm9, zmm9",
            "vxorps zmm10, zmm10, zmm10",
            "vxorps zmm11, zmm11, zmm11",
            "vxorps zmm12, zmm12, zmm12",
            "vxorps zmm13, zmm13, zmm13",
            "vxorps zmm14, zmm14, zmm14",
            "vxorps zmm15, zmm15, zmm15",
            "vxorps zmm16, zmm16, zmm16",
            "vxorps zmm17, zmm17, zmm17",
            "vxorps zmm18, zmm18, zmm18",
            "vxorps zmm19, zmm19, zmm19",
            "vxorps zmm20, zmm20, zmm20",
            "vxorps zmm21, zmm21, zmm21",
            "vxorps zmm22, zmm22, zmm22",
            "vxorps zmm23, zmm23, zmm23",
            "test {k}, {k}",
            "jz 3f",
            "2:",
            "vmovups zmm24, zmmword ptr [{b}]",
            "vmovups zmm25, zmmword ptr [{b} + {hs}]",
            "vmovups zmm26, zmmword ptr [{b} + {hs}*2]",
            "vmovups zmm27, zmmword ptr [{b3}]",
            "vbroadcastss zmm28, dword ptr [{a}]",
            "vfmadd231ps zmm0, zmm28, zmm24",
            "vfmadd231ps zmm1, zmm28, zmm25",
            "vfmadd231ps zmm2, zmm28, zmm26",
            "vfmadd231ps zmm3, zmm28, zmm27",
            "vbroadcastss zmm29, dword ptr [{a} + {rs}]",
            "vfmadd231ps zmm4, zmm29, zmm24",
            "vfmadd231ps zmm5, zmm29, zmm25",
            "vfmadd231ps zmm6, zmm29, zmm26",
            "vfmadd231ps zmm7, zmm29, zmm27",
            "vbroadcastss zmm30, dword ptr [{a} + {rs}*2]",
            "vfmadd231ps zmm8, zmm30, zmm24",
            "vfmadd231ps zmm9, zmm30, zmm25",
            "vfmadd231ps zmm10, zmm30, zmm26",
            "vfmadd231ps zmm11, zmm30, zmm27",
            "vbroadcastss zmm31, dword ptr [{a3}]",
            "vfmadd231ps zmm12, zmm31, zmm24",
            "vfmadd231ps zmm13, zmm31, zmm25",
            "vfmadd231ps zmm14, zmm31, zmm26",
            "vfmadd231ps zmm15, zmm31, zmm27",
            "vbroadcastss zmm28, dword ptr [{a3} + {rs}]",
            "vfmadd231ps zmm16, zmm28, zmm24",
            "vfmadd231ps zmm17, zmm28, zmm25",
            "vfmadd231ps zmm18, zmm28, zmm26",
            "vfmadd231ps zmm19, zmm28, zmm27",
            "vbroadcastss zmm29, dword ptr [{a3} + {rs}*2]",
            "vfmadd231ps zmm20, zmm29, zmm24",
            "vfmadd231ps zmm21, zmm29, zmm25",
            "vfmadd231ps zmm22, zmm29, zmm26",
            "vfmadd231ps zmm23, zmm29, zmm27",
            "add {a}, {aks}",
            "add {a3}, {aks}",
            "add {b}, {bks}",
            "add {b3}, {bks}",
            "dec {k}",
            "jnz 2b",
            "3:",
            k = inout(reg) k => _,
            a = inout(reg) a => _,
            aks = in(reg) a_ks * 4,
            b = inout(reg) b => _,
            b3 = inout(reg) b.wrapping_add(3 * b_hs) => _,
            bks = in(reg) b_ks * 4,
            hs = in(reg) b_hs * 4,
            a3 = inout(reg) a.wrapping_add(3 * a_rs) => _,
            rs = in(reg) a_rs * 4,
            out("zmm0") c00,
            out("zmm1") c01,
            out("zmm2") c02,
            out("zmm3") c03,
            out("zmm4") c10,
            out("zmm5") c11,
            out("zmm6") c12,
            out("zmm7") c13,
            out("zmm8") c20,
            out("zmm9") c21,
            out("zmm10") c22,
            out("zmm11") c23,
            out("zmm12") c30,
            out("zmm13") c31,
            out("zmm14") c32,
            out("zmm15") c33,
            out("zmm16") c40,
            out("zmm17") c41,
            out("zmm18") c42,
            out("zmm19") c43,
            out("zmm20") c50,
            out("zmm21") c51,
            out("zmm22") c52,
            out("zmm23") c53,
            out("zmm24") _,
            out("zmm25") _,
            out("zmm26") _,
            out("zmm27") _,
            out("zmm28") _,
            out("zmm29") _,
            out("zmm30") _,
            out("zmm31") _,
            options(nostack, readonly),
        );
    }
    [
        [c00, c01, c02, c03],
        [c10, c11, c12, c13],
        [c20, c21, c22, c23],
        [c30, c31, c32, c33],
        [c40, c41, c42, c43],
        [c50, c51, c52, c53],
    ]
}
