//! `mcc-runtime`: what programs emitted by mcc link against: the schedule format
//! ([`program`]), the kernels ([`kernels`]: dense GEMM with packed weights, convolution,
//! pooling, elementwise…), the executor that validates a schedule and runs it over a thread
//! pool ([`exec`], [`split`], [`threads`], [`aligned`]), the C ABI compiled code calls
//! ([`abi`]), and `.npy` I/O. It depends on nothing in `compiler/` (and on no crate but
//! `std`), so it can be built as a static library for ahead-of-time compiled models.
/// Defines `$name` as `$generic` compiled twice: for AVX2+FMA (chosen at run time when the
/// CPU has them) and for the x86-64 baseline. The body is `#[inline(always)]`, so each copy
/// is vectorized for its own instruction set.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident ( $($a:ident : $t:ty),* $(,)? ) => $generic:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            if crate::kernels::gemm::Isa::cached().has_avx2() {
                /// `$generic` compiled with AVX2 and FMA.
                ///
                /// # Safety
                /// The CPU has AVX2 and FMA.
                #[allow(unsafe_code)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) {
                    $generic($($a),*)
                }
                // SAFETY: `Isa::cached()` has AVX2 (is Avx2 or Avx512) only where
                // `Isa::detect` found AVX2 and FMA on this CPU, `fast`'s one precondition
                // (`$generic` itself is safe, its arguments forwarded as given).
                #[allow(unsafe_code)]
                unsafe {
                    fast($($a),*)
                };
                return;
            }
            $generic($($a),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident ( $($a:ident : $t:ty),* $(,)? ) -> $ret:ty => $generic:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if crate::kernels::gemm::Isa::cached().has_avx2() {
                /// `$generic` compiled with AVX2 and FMA.
                ///
                /// # Safety
                /// The CPU has AVX2 and FMA.
                #[allow(unsafe_code)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) -> $ret {
                    $generic($($a),*)
                }
                // SAFETY: as in the arm above: `Isa::cached()` has AVX2 only where
                // `Isa::detect` found AVX2 and FMA on this CPU, `fast`'s one precondition.
                #[allow(unsafe_code)]
                return unsafe { fast($($a),*) };
            }
            $generic($($a),*)
        }
    };
}

// The schedule format, and weights in stored form.
pub mod huffman;
pub mod program;
pub mod quant;
pub mod stored;

// The kernels.
pub mod kernels;

// The executor: validation, dispatch, the per-batch split plan, the thread pool, memory.
pub mod aligned;
pub mod exec;
pub mod split;
pub mod threads;

// The edges: the C ABI and executables' `main`, `.npy` files, test helpers.
pub mod abi;
pub mod npy;
pub mod output;
pub mod testing;
