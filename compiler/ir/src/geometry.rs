//! Sliding-window geometry shared by shape inference and the evaluator (Conv and the
//! pools, and ConvTranspose's scatter): resolved pads and output sizes, so the two can never
//! disagree.

use crate::attr::AutoPad;

/// The window attributes of a Conv or pool, resolved against a spatial input size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel size per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilations: Vec<usize>,
    /// Padding before each spatial axis.
    pub pad_begin: Vec<usize>,
    /// Padding after each spatial axis.
    pub pad_end: Vec<usize>,
    /// Output size per spatial axis.
    pub out: Vec<usize>,
}

/// Why a window cannot be formed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// An attribute list has the wrong length.
    #[error("`{attr}` has {got} entries, expected {want}")]
    Arity {
        /// Attribute name.
        attr: &'static str,
        /// Entries found.
        got: usize,
        /// Entries expected.
        want: usize,
    },
    /// A value is out of range.
    #[error("`{attr}` must be {what}, found {value}")]
    Range {
        /// Attribute name.
        attr: &'static str,
        /// The constraint.
        what: &'static str,
        /// The offending value.
        value: i64,
    },
    /// The window does not fit in the (padded) input, or the output would be too large.
    #[error(
        "a window of {window} does not fit in an input of {input} (padded: {padded}), or the output is too large"
    )]
    TooLarge {
        /// Dilated window extent.
        window: usize,
        /// Input size.
        input: usize,
        /// Padded size.
        padded: usize,
    },
}

/// The largest stride, dilation, pad or kernel size accepted (no real model comes close);
/// bounding them keeps every size computation far from overflow.
pub const MAX_WINDOW_ATTR: i64 = 1 << 20;

fn list(
    attr: &'static str,
    v: &[i64],
    n: usize,
    default: i64,
    min: i64,
    what: &'static str,
) -> Result<Vec<usize>, WindowError> {
    if v.is_empty() {
        return Ok(vec![default as usize; n]);
    }
    if v.len() != n {
        return Err(WindowError::Arity {
            attr,
            got: v.len(),
            want: n,
        });
    }
    v.iter()
        .map(|&x| {
            if x > MAX_WINDOW_ATTR {
                Err(WindowError::Range {
                    attr,
                    what: "at most 2^20",
                    value: x,
                })
            } else if x < min {
                Err(WindowError::Range {
                    attr,
                    what,
                    value: x,
                })
            } else {
                Ok(x as usize)
            }
        })
        .collect()
}

/// Resolves a window over spatial `input` sizes. `ceil_mode` rounds the output size up
/// (a window may not start in the end padding).
pub fn window(
    input: &[usize],
    kernel_shape: &[usize],
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<Window, WindowError> {
    let n = input.len();
    check_kernel(input, kernel_shape)?;
    let strides = list("strides", strides, n, 1, 1, "positive")?;
    let dilations = list("dilations", dilations, n, 1, 1, "positive")?;
    let (mut pb, mut pe) = (vec![0; n], vec![0; n]);
    match auto_pad {
        AutoPad::NotSet => {
            // Within 0..=2^20, so the casts are exact.
            let (b, e) = explicit_pads(pads, n)?;
            pb = b.into_iter().map(|p| p as usize).collect();
            pe = e.into_iter().map(|p| p as usize).collect();
        }
        AutoPad::Valid => {}
        AutoPad::SameUpper | AutoPad::SameLower => {
            for i in 0..n {
                let ext = (kernel_shape[i] - 1) * dilations[i] + 1;
                let out = input[i].div_ceil(strides[i]);
                let total = ((out.saturating_sub(1)) * strides[i] + ext).saturating_sub(input[i]);
                let small = total / 2;
                if auto_pad == AutoPad::SameUpper {
                    pb[i] = small;
                    pe[i] = total - small;
                } else {
                    pb[i] = total - small;
                    pe[i] = small;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ext = (kernel_shape[i] - 1) * dilations[i] + 1;
        let padded = input[i] + pb[i] + pe[i];
        if padded < ext {
            return Err(WindowError::TooLarge {
                window: ext,
                input: input[i],
                padded,
            });
        }
        let span = padded - ext;
        let mut o = if ceil_mode {
            span.div_ceil(strides[i]) + 1
        } else {
            span / strides[i] + 1
        };
        // With ceil_mode the last window must start inside the input or the begin padding.
        if ceil_mode && o > 1 && (o - 1) * strides[i] >= input[i] + pb[i] {
            o -= 1;
        }
        out.push(o);
    }
    if crate::tensor::checked_numel(&out).is_none() {
        return Err(WindowError::TooLarge {
            window: 0,
            input: input.iter().product(),
            padded: usize::MAX,
        });
    }
    Ok(Window {
        kernel: kernel_shape.to_vec(),
        strides,
        dilations,
        pad_begin: pb,
        pad_end: pe,
        out,
    })
}

/// The attributes of a ConvTranspose, resolved against a spatial input size: output
/// position `o` along axis `d` receives input position `i` through kernel tap `k` when
/// `o = i·stride + k·dilation − pad_begin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransposedWindow {
    /// Kernel size per spatial axis.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilations: Vec<usize>,
    /// Cells cut from the start of the full output per spatial axis; negative when an
    /// explicit `output_shape` is larger than the full output (its first cells are then 0).
    pub pad_begin: Vec<i64>,
    /// Output size per spatial axis.
    pub out: Vec<usize>,
}

/// Resolves a ConvTranspose over spatial `input` sizes (ONNX's equations):
///
/// * the full output is `stride·(in − 1) + output_padding + (k − 1)·dilation + 1` cells;
/// * explicit `pads` cut `pad_begin + pad_end` of them (`NOTSET`, or none with `VALID`);
/// * `output_shape` (its spatial sizes; a full `N, C, …` shape has them last) or, under
///   `SAME_*`, `in · stride` fixes the output instead, and the difference `total` from the
///   full size is cut as `SAME_UPPER`: `⌊total/2⌋` at the start, else `total − ⌊total/2⌋`
///   (floor division, so a negative total, an output larger than the full one, grows it at
///   the end first). `pads` is then ignored.
pub fn transposed_window(
    input: &[usize],
    kernel_shape: &[usize],
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    output_padding: &[i64],
    output_shape: &[i64],
    auto_pad: AutoPad,
) -> Result<TransposedWindow, WindowError> {
    let n = input.len();
    check_kernel(input, kernel_shape)?;
    let strides = list("strides", strides, n, 1, 1, "positive")?;
    let dilations = list("dilations", dilations, n, 1, 1, "positive")?;
    let output_padding = list("output_padding", output_padding, n, 0, 0, "non-negative")?;
    for d in 0..n {
        if output_padding[d] >= strides[d].max(dilations[d]) {
            return Err(WindowError::Range {
                attr: "output_padding",
                what: "less than the stride or the dilation",
                value: output_padding[d] as i64,
            });
        }
    }
    // Every term is at most 2^28 · 2^20 or 2^40: no i64 arithmetic below can overflow.
    let full: Vec<i64> = (0..n)
        .map(|d| {
            let ext = (kernel_shape[d] as i64 - 1) * dilations[d] as i64 + 1;
            strides[d] as i64 * (input[d] as i64 - 1) + output_padding[d] as i64 + ext
        })
        .collect();
    let target: Option<Vec<i64>> = if !output_shape.is_empty() {
        let spatial = match output_shape.len() {
            l if l == n => output_shape,
            l if l == n + 2 => &output_shape[2..],
            l => {
                return Err(WindowError::Arity {
                    attr: "output_shape",
                    got: l,
                    want: n,
                });
            }
        };
        for &o in spatial {
            if !(0..=crate::tensor::MAX_ELEMENTS as i64).contains(&o) {
                return Err(WindowError::Range {
                    attr: "output_shape",
                    what: "between 0 and 2^28",
                    value: o,
                });
            }
        }
        Some(spatial.to_vec())
    } else if matches!(auto_pad, AutoPad::SameUpper | AutoPad::SameLower) {
        Some(
            (0..n)
                .map(|d| input[d] as i64 * strides[d] as i64)
                .collect(),
        )
    } else {
        None
    };
    let (pad_begin, out): (Vec<i64>, Vec<i64>) = match target {
        Some(t) => (0..n)
            .map(|d| {
                let total = full[d] - t[d];
                let half = total.div_euclid(2);
                let begin = if auto_pad == AutoPad::SameUpper {
                    half
                } else {
                    total - half
                };
                (begin, t[d])
            })
            .unzip(),
        None => {
            let (pb, pe) = if auto_pad == AutoPad::NotSet {
                explicit_pads(pads, n)?
            } else {
                (vec![0i64; n], vec![0i64; n])
            };
            let mut out = Vec::with_capacity(n);
            for d in 0..n {
                let o = full[d] - pb[d] - pe[d];
                if o < 0 {
                    return Err(WindowError::Range {
                        attr: "pads",
                        what: "no more than the full output",
                        value: pb[d] + pe[d],
                    });
                }
                out.push(o);
            }
            (pb, out)
        }
    };
    let out: Vec<usize> = out.into_iter().map(|o| o.max(0) as usize).collect();
    if crate::tensor::checked_numel(&out).is_none() {
        return Err(WindowError::TooLarge {
            window: 0,
            input: input.iter().product(),
            padded: usize::MAX,
        });
    }
    Ok(TransposedWindow {
        kernel: kernel_shape.to_vec(),
        strides,
        dilations,
        pad_begin,
        out,
    })
}

impl Window {
    /// For each (kernel tap, output position), the input position along each spatial axis
    /// as a signed offset (may lie in the padding). Row-major over taps, then positions.
    pub fn taps(&self) -> (usize, usize) {
        (self.kernel.iter().product(), self.out.iter().product())
    }

    /// Input coordinate of tap `k` (multi-index) for output `o` (multi-index) along axis `d`.
    pub fn coord(&self, d: usize, o: usize, k: usize) -> i64 {
        (o * self.strides[d]) as i64 - self.pad_begin[d] as i64 + (k * self.dilations[d]) as i64
    }
}

/// Splits a row-major flat index into a multi-index over `dims`.
pub fn unravel(mut flat: usize, dims: &[usize], out: &mut [usize]) {
    for d in (0..dims.len()).rev() {
        out[d] = flat % dims[d];
        flat /= dims[d];
    }
}

/// Explicit `pads` (every begin, then every end), each within 0..=2^20; none given: zeros.
fn explicit_pads(pads: &[i64], n: usize) -> Result<(Vec<i64>, Vec<i64>), WindowError> {
    let (mut pb, mut pe) = (vec![0i64; n], vec![0i64; n]);
    if pads.is_empty() {
        return Ok((pb, pe));
    }
    if pads.len() != 2 * n {
        return Err(WindowError::Arity {
            attr: "pads",
            got: pads.len(),
            want: 2 * n,
        });
    }
    for (i, &p) in pads.iter().enumerate() {
        if !(0..=MAX_WINDOW_ATTR).contains(&p) {
            return Err(WindowError::Range {
                attr: "pads",
                what: "between 0 and 2^20",
                value: p,
            });
        }
        if i < n {
            pb[i] = p;
        } else {
            pe[i - n] = p;
        }
    }
    Ok((pb, pe))
}
/// One kernel size per spatial axis, each within bounds, and spatial sizes within the
/// element limit: what forward and transposed windows both require first.
fn check_kernel(input: &[usize], kernel_shape: &[usize]) -> Result<(), WindowError> {
    if kernel_shape.len() != input.len() {
        return Err(WindowError::Arity {
            attr: "kernel_shape",
            got: kernel_shape.len(),
            want: input.len(),
        });
    }
    for &k in kernel_shape {
        if k == 0 || k as i64 > MAX_WINDOW_ATTR {
            return Err(WindowError::Range {
                attr: "kernel_shape",
                what: "between 1 and 2^20",
                value: k as i64,
            });
        }
    }
    if input.iter().any(|&i| i > crate::tensor::MAX_ELEMENTS) {
        return Err(WindowError::TooLarge {
            window: 0,
            input: input.iter().copied().max().unwrap_or(0),
            padded: 0,
        });
    }
    Ok(())
}
