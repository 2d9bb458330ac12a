//! Sliding-window geometry shared by shape inference and the evaluator (Conv and the
//! pools): resolved pads and output sizes, so the two can never disagree.

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
    if kernel_shape.len() != n {
        return Err(WindowError::Arity {
            attr: "kernel_shape",
            got: kernel_shape.len(),
            want: n,
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
    let strides = list("strides", strides, n, 1, 1, "positive")?;
    let dilations = list("dilations", dilations, n, 1, 1, "positive")?;
    let (mut pb, mut pe) = (vec![0; n], vec![0; n]);
    match auto_pad {
        AutoPad::NotSet => {
            if !pads.is_empty() {
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
                        pb[i] = p as usize;
                    } else {
                        pe[i - n] = p as usize;
                    }
                }
            }
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
