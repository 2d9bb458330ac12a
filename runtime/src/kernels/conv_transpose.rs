//! Transposed 2-D convolution (ONNX ConvTranspose) as a GEMM and a scatter: per group, the
//! packed GEMM multiplies the transposed weights (`(m/groups)·kh·kw × c/groups`) by the
//! input's channels (`c/groups × h·w`) into columns in scratch — one row per (output channel,
//! tap), one column per input cell — and each column value is added to the output cell its
//! input cell and tap land on, `i·stride + k·dilation − pad_begin` per axis (when that lies
//! in the output). The output starts as the bias.
//!
//! The geometry is a [`Geometry`] read the transposed way: `c, h, w` the input, `oh, ow` the
//! output, `pt, pl` the padding cut from the output's start; `lead` the cells an output
//! larger than the full one has before it (which no input reaches: they hold the bias).

use crate::kernels::conv::Geometry;
use crate::kernels::epilogue::Epilogue;
use crate::kernels::gemm::{self, Isa, PackedA, pack_a, pack_a_len};

/// Floats of scratch a transposed convolution of `m` output channels in `groups` groups
/// needs: one group's columns.
pub fn scratch_len(g: &Geometry, m: usize, groups: usize) -> usize {
    (m / groups.max(1))
        .saturating_mul(g.kh)
        .saturating_mul(g.kw)
        .saturating_mul(g.h)
        .saturating_mul(g.w)
}

/// Floats of the packed weights: per group, [`pack_a_len`] of its transposed weights.
pub fn weights_len(g: &Geometry, m: usize, groups: usize) -> usize {
    let groups = groups.max(1);
    let rows = (m / groups).saturating_mul(g.kh).saturating_mul(g.kw);
    groups.saturating_mul(pack_a_len(rows, g.c / groups))
}

/// Packs ONNX ConvTranspose weights (`c × m/groups × kh × kw`, row-major) into the GEMM's A
/// operand, group after group; `None` when `w` is not that long.
pub fn pack_weights(w: &[f32], g: &Geometry, m: usize, groups: usize) -> Option<Vec<f32>> {
    let groups = groups.max(1);
    let (cg, mg, kt) = (g.c / groups, m / groups, g.kh * g.kw);
    if w.len() != g.c.checked_mul(mg)?.checked_mul(kt)? {
        return None;
    }
    let rows = mg * kt;
    let mut out = Vec::with_capacity(weights_len(g, m, groups));
    let mut a = vec![0.0; rows * cg];
    for gi in 0..groups {
        for ci in 0..cg {
            let src = &w[(gi * cg + ci) * rows..(gi * cg + ci + 1) * rows];
            for (r, &v) in src.iter().enumerate() {
                a[r * cg + ci] = v;
            }
        }
        out.extend(pack_a(&a, rows, cg));
    }
    Some(out)
}

/// `y` (`m × oh × ow`) = the transposed convolution of `x` (`c × h × w`) by the packed
/// weights `w` ([`pack_weights`]), plus `bias` (one per output channel), `scratch` holding
/// [`scratch_len`] floats; `lead` (rows, columns) shifts the full output that far into `y`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose(
    isa: Isa,
    x: &[f32],
    g: &Geometry,
    lead: (usize, usize),
    m: usize,
    groups: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), String> {
    if groups == 0 || !g.c.is_multiple_of(groups) || !m.is_multiple_of(groups) {
        return Err("conv transpose: groups that do not divide the channels".into());
    }
    let (cg, mg, kt) = (g.c / groups, m / groups, g.kh * g.kw);
    let hw =
        g.h.checked_mul(g.w)
            .ok_or("conv transpose: sizes overflow")?;
    let ohw =
        g.oh.checked_mul(g.ow)
            .ok_or("conv transpose: sizes overflow")?;
    let need_x = g.c.checked_mul(hw);
    let need_y = m.checked_mul(ohw);
    let (Some(need_x), Some(need_y)) = (need_x, need_y) else {
        return Err("conv transpose: sizes overflow".into());
    };
    let cols = scratch_len(g, m, groups);
    let alen = pack_a_len(mg * kt, cg);
    if x.len() < need_x
        || y.len() < need_y
        || scratch.len() < cols
        || w.len() < weights_len(g, m, groups)
        || bias.is_some_and(|b| b.len() < m)
    {
        return Err("conv transpose: a buffer is shorter than its geometry needs".into());
    }
    for (oc, plane) in y[..need_y].chunks_exact_mut(ohw.max(1)).enumerate() {
        plane.fill(bias.map_or(0.0, |b| b[oc]));
    }
    if hw == 0 || ohw == 0 || mg * kt == 0 {
        return Ok(());
    }
    for gi in 0..groups {
        let a = PackedA {
            m: mg * kt,
            k: cg,
            data: &w[gi * alen..(gi + 1) * alen],
        };
        let xg = &x[gi * cg * hw..(gi + 1) * cg * hw];
        let col = &mut scratch[..cols];
        if cg == 0 {
            col.fill(0.0);
        } else {
            gemm::gemm_packed_a(isa, a, xg, hw, hw, col, hw, &Epilogue::NONE, 0..hw)?;
        }
        for mi in 0..mg {
            let oc = gi * mg + mi;
            let plane = &mut y[oc * ohw..(oc + 1) * ohw];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = &col[((mi * g.kh + ky) * g.kw + kx) * hw..][..hw];
                    scatter(row, g, lead, ky, kx, plane);
                }
            }
        }
    }
    Ok(())
}

/// Adds one (output channel, tap) row of columns to the output plane.
fn scatter(
    row: &[f32],
    g: &Geometry,
    lead: (usize, usize),
    ky: usize,
    kx: usize,
    plane: &mut [f32],
) {
    // The output coordinate of input index `i` and tap `k` along an axis, if inside.
    let land = |i: usize, s: usize, k: usize, d: usize, lead: usize, pad: usize, out: usize| {
        i.saturating_mul(s)
            .saturating_add(k.saturating_mul(d))
            .saturating_add(lead)
            .checked_sub(pad)
            .filter(|&o| o < out)
    };
    for (iy, src) in row.chunks_exact(g.w).enumerate() {
        let Some(oy) = land(iy, g.sh, ky, g.dh, lead.0, g.pt, g.oh) else {
            continue;
        };
        let dst = &mut plane[oy * g.ow..(oy + 1) * g.ow];
        for (ix, &v) in src.iter().enumerate() {
            if let Some(ox) = land(ix, g.sw, kx, g.dw, lead.1, g.pl, g.ow) {
                dst[ox] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::uniform;

    /// Straight from the definition: every input cell times every tap, added where it lands.
    fn naive(x: &[f32], w: &[f32], g: &Geometry, m: usize, groups: usize) -> Vec<f64> {
        let (cg, mg) = (g.c / groups, m / groups);
        let mut y = vec![0f64; m * g.oh * g.ow];
        for ci in 0..g.c {
            let gi = ci / cg;
            for mi in 0..mg {
                let oc = gi * mg + mi;
                for iy in 0..g.h {
                    for ix in 0..g.w {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let oy = (iy * g.sh + ky * g.dh) as i64 - g.pt as i64;
                                let ox = (ix * g.sw + kx * g.dw) as i64 - g.pl as i64;
                                if oy < 0 || ox < 0 || oy >= g.oh as i64 || ox >= g.ow as i64 {
                                    continue;
                                }
                                let v = x[(ci * g.h + iy) * g.w + ix];
                                let k = w[((ci * mg + mi) * g.kh + ky) * g.kw + kx];
                                y[(oc * g.oh + oy as usize) * g.ow + ox as usize] +=
                                    f64::from(v) * f64::from(k);
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition_with_groups_strides_dilations_and_pads() {
        for (c, m, groups, s, d, p) in [
            (3, 2, 1, 1, 1, 0),
            (4, 6, 2, 2, 1, 1),
            (6, 3, 3, 3, 2, 2),
            (2, 4, 1, 2, 2, 0),
        ] {
            let (h, w, kh, kw) = (5, 4, 3, 2);
            let oh = s * (h - 1) + (kh - 1) * d + 1 - p;
            let ow = s * (w - 1) + (kw - 1) * d + 1 - 2 * p;
            let g = Geometry {
                c,
                h,
                w,
                oh,
                ow,
                kh,
                kw,
                sh: s,
                sw: s,
                dh: d,
                dw: d,
                pt: p,
                pl: p,
            };
            let x = uniform(1, c * h * w);
            let wt = uniform(2, c * (m / groups) * kh * kw);
            let packed = pack_weights(&wt, &g, m, groups).unwrap();
            let mut y = vec![f32::NAN; m * oh * ow];
            let mut scratch = vec![f32::NAN; scratch_len(&g, m, groups)];
            conv_transpose(
                Isa::detect(),
                &x,
                &g,
                (0, 0),
                m,
                groups,
                &packed,
                None,
                &mut y,
                &mut scratch,
            )
            .unwrap();
            let want = naive(&x, &wt, &g, m, groups);
            for (i, (&a, &b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{i}: {a} {b}"
                );
            }
        }
    }
}
