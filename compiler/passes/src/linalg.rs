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

/// Eigenvalues and eigenvectors of a symmetric `a` (n × n): values in descending order, and
/// the vectors as the columns of an n × n row-major matrix in the same order.
///
/// Householder reduction to tridiagonal form, then the QL algorithm with implicit shifts on
/// the tridiagonal matrix, accumulating the rotations (the EISPACK `tred2`/`tql2` scheme):
/// O(n³) with a small constant, so a 2048-wide layer takes seconds.
pub fn eig_sym(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (vec![], vec![]);
    }
    let mut v = a.to_vec();
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
    tridiagonalize(&mut v, &mut d, &mut e, n);
    ql_implicit(&mut v, &mut d, &mut e, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| d[y].total_cmp(&d[x]).then(x.cmp(&y)));
    let values = order.iter().map(|&i| d[i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + col] = v[k * n + i];
        }
    }
    (values, vectors)
}

/// Householder reduction of the symmetric `v` (n × n, overwritten by the orthogonal
/// transformation) to tridiagonal form: diagonal `d`, subdiagonal `e[1..]`.
fn tridiagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for x in d[..i].iter_mut() {
                *x /= scale;
                h += *x * *x;
            }
            let f = d[i - 1];
            let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].iter_mut().for_each(|x| *x = 0.0);
            for j in 0..i {
                let f = d[j];
                v[at(j, i)] = f;
                let mut g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Eigenvalues (into `d`) and eigenvectors (the columns of `v`, which holds the
/// tridiagonalizing transformation on entry) of the tridiagonal matrix `d`, `e[1..]`, by QL
/// with implicit shifts. A value that does not converge in 60 iterations is left as it is.
fn ql_implicit(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let (mut f, mut tst1) = (0.0f64, 0.0f64);
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            for _ in 0..60 {
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in d[l + 2..n].iter_mut() {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        let h = v[at(k, i + 1)];
                        v[at(k, i + 1)] = s * v[at(k, i)] + c * h;
                        v[at(k, i)] = c * v[at(k, i)] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
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
    fn eigenvectors_diagonalize_and_values_are_sorted() {
        for n in [1, 2, 3, 8, 30, 100] {
            let a = spd(n, 7 + n as u64);
            let (vals, vecs) = eig_sym(&a, n);
            assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{vals:?}");
            for c in 0..n {
                // A·v = λ·v, |v| = 1.
                let norm: f64 = (0..n).map(|k| vecs[k * n + c].powi(2)).sum();
                assert!((norm - 1.0).abs() < 1e-9);
                for i in 0..n {
                    let av: f64 = (0..n).map(|k| a[i * n + k] * vecs[k * n + c]).sum();
                    assert!(
                        (av - vals[c] * vecs[i * n + c]).abs() < 1e-8 * vals[0],
                        "n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn rank_deficient_and_diagonal_matrices_decompose() {
        // u·uᵀ: one eigenvalue |u|², the rest 0.
        let u = [1.0, -2.0, 0.5, 3.0];
        let a: Vec<f64> = (0..16).map(|i| u[i / 4] * u[i % 4]).collect();
        let (vals, vecs) = eig_sym(&a, 4);
        assert!((vals[0] - 14.25).abs() < 1e-12, "{vals:?}");
        assert!(vals[1..].iter().all(|v| v.abs() < 1e-12), "{vals:?}");
        let dot: f64 = (0..4).map(|k| vecs[k * 4] * u[k]).sum::<f64>() / 14.25f64.sqrt();
        assert!((dot.abs() - 1.0).abs() < 1e-12);
        let (vals, _) = eig_sym(&[3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0], 3);
        assert_eq!(vals, [3.0, 2.0, 1.0]);
        assert_eq!(eig_sym(&[], 0), (vec![], vec![]));
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
