//! Tensor types: element type and (possibly symbolic) shape.
//!
//! A dimension is a known size, a named symbol (`N`, the batch of an exported model), or
//! unknown (`?`, when shape inference cannot tell, e.g. a Reshape whose target shape is
//! only known at run time). A shape of unknown rank is `None`.

use std::fmt;

use crate::DType;

/// One dimension of a tensor shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at compile time.
    Fixed(usize),
    /// A named size bound at run time (the same symbol is the same size everywhere).
    Sym(String),
    /// A size inference could not determine.
    Unknown,
}

impl Dim {
    /// The size, if it is known.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// The type of a value: element type plus shape (`None` = rank unknown).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first; `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl TensorType {
    /// A type with a fully known shape.
    pub fn fixed(dtype: DType, dims: &[usize]) -> Self {
        TensorType {
            dtype,
            shape: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()),
        }
    }
    /// A type whose shape is not known at all.
    pub fn unknown(dtype: DType) -> Self {
        TensorType { dtype, shape: None }
    }
    /// The rank, if known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
    /// All dims as sizes, if every one is known.
    pub fn fixed_dims(&self) -> Option<Vec<usize>> {
        self.shape.as_ref()?.iter().map(Dim::fixed).collect()
    }
    /// Number of elements, if every dim is known.
    pub fn numel(&self) -> Option<usize> {
        self.fixed_dims().map(|d| d.iter().product())
    }
    /// Whether a concrete shape fits this type, binding symbols consistently in `binds`.
    pub fn accepts(&self, dims: &[usize], binds: &mut Vec<(String, usize)>) -> bool {
        self.misfit(dims, binds).is_none()
    }

    /// Why a concrete shape does not fit this type, naming the axis (`None`: it fits);
    /// symbols are bound consistently in `binds`.
    pub fn misfit(&self, dims: &[usize], binds: &mut Vec<(String, usize)>) -> Option<String> {
        let shape = self.shape.as_ref()?;
        if shape.len() != dims.len() {
            return Some(format!(
                "the model wants rank {}, not {}",
                shape.len(),
                dims.len()
            ));
        }
        for (axis, (d, &n)) in shape.iter().zip(dims).enumerate() {
            match d {
                Dim::Fixed(k) if *k != n => {
                    return Some(format!("axis {axis} is {n}; the model fixes it at {k}"));
                }
                Dim::Sym(s) => match binds.iter().find(|(b, _)| b == s) {
                    Some((_, k)) if *k != n => {
                        return Some(format!(
                            "axis {axis} is {n}, but `{s}` is {k} on an axis before it (one name, one size)"
                        ));
                    }
                    Some(_) => {}
                    None => binds.push((s.clone(), n)),
                },
                _ => {}
            }
        }
        None
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dtype)?;
        match &self.shape {
            None => write!(f, "[*]"),
            Some(dims) => {
                write!(f, "[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{d}")?;
                }
                write!(f, "]")
            }
        }
    }
}
