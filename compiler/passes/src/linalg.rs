//! Dense symmetric linear algebra in f64 for the calibration-driven rewrites: Cholesky
//! factorization, solves, and the inverse of a symmetric positive definite matrix.
//!
//! Matrices are row-major `n × n` slices. Every routine works in a fixed order, so the same
//! input gives the same bits on every run and thread count. A matrix that is not positive
//! definite (a pivot ≤ 0 or not finite) is reported, never divided by.

/// A pivot was not positive: the matrix is not (numerically) positive definite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NotPositiveDefinite {
    /// The row where elimination failed.
    pub row: usize,
}

/// Factors `a = L·Lᵀ` in place: afterwards the lower triangle (diagonal included) of `a`
/// is `L`, the strict upper triangle is zero.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<(), NotPositiveDefinite> {
    debug_assert_eq!(a.len(), n * n);
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(NotPositiveDefinite { row: j });
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    Ok(())
}

/// Solves `L·Lᵀ·x = b` in place, `l` from [`cholesky`].
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// The inverse of a symmetric positive definite `a`.
pub fn inverse_spd(a: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    let mut l = a.to_vec();
    cholesky(&mut l, n)?;
    let mut inv = vec![0.0; n * n];
    let mut col = vec![0.0; n];
    for j in 0..n {
        col.iter_mut().for_each(|c| *c = 0.0);
        col[j] = 1.0;
        cholesky_solve(&l, n, &mut col);
        for i in 0..n {
            inv[i * n + j] = col[i];
        }
    }
    // Exactly symmetric, whatever the rounding of the two triangles.
    for i in 0..n {
        for j in i + 1..n {
            let m = 0.5 * (inv[i * n + j] + inv[j * n + i]);
            inv[i * n + j] = m;
            inv[j * n + i] = m;
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random SPD matrix `BᵀB + I` from a fixed seed.
    fn spd(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let b: Vec<f64> = (0..n * n).map(|_| next()).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[k * n + i] * b[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn cholesky_reconstructs_and_the_inverse_inverts() {
        for n in [1, 2, 5, 17] {
            let a = spd(n, n as u64);
            let mut l = a.clone();
            cholesky(&mut l, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let llt: f64 = (0..n).map(|k| l[i * n + k] * l[j * n + k]).sum();
                    assert!((llt - a[i * n + j]).abs() < 1e-9, "n={n} ({i},{j})");
                }
            }
            let inv = inverse_spd(&a, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let p: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((p - want).abs() < 1e-9, "n={n} ({i},{j}): {p}");
                }
            }
        }
    }

    #[test]
    fn matrices_that_are_not_positive_definite_are_refused() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky(&mut a, 2), Err(NotPositiveDefinite { row: 1 }));
        let mut nan = vec![f64::NAN];
        assert!(cholesky(&mut nan, 1).is_err());
        assert!(inverse_spd(&[0.0], 1).is_err());
    }
}
