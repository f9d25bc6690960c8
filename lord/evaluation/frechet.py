"""The Fréchet distance between two Gaussians, the formula behind FID (lower is better).

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

All in float64 numpy, without scipy's general `sqrtm`. With any factor S1 = R R^T, the matrix
R^T S2 R is symmetric and has the eigenvalues of S1 S2, so tr((S1 S2)^(1/2)) is the sum of the
square roots of its eigenvalues. R is the Cholesky factor (fast) or, when S1 is singular or
slightly indefinite (fewer samples than feature dimensions, rounding), its symmetric square root
with negative eigenvalues clipped; negative eigenvalues of R^T S2 R are clipped too, so nearly
singular covariances give a real number instead of a complex one.
"""

import numpy as np


def statistics(features):
    """Mean and (unbiased) covariance of (N, D) features, as float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need an (N, D) feature array with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _factor(sigma):
    """R with R R^T = sigma (up to clipping of negative eigenvalues)."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        eigenvalues, eigenvectors = np.linalg.eigh(sigma)
        return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as a float."""
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, dtype=np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, dtype=np.float64)) for sigma in (sigma1, sigma2))
    dimension = mu1.shape[0]
    if mu1.shape != (dimension,) or mu2.shape != (dimension,):
        raise ValueError(f"means must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (dimension, dimension) or sigma2.shape != (dimension, dimension):
        raise ValueError(f"covariances must be {dimension}x{dimension}, got {sigma1.shape} and {sigma2.shape}")
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} contains NaN or infinite values")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    factor = _factor(sigma1)
    inner = factor.T @ sigma2 @ factor
    inner_eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_of_root = np.sqrt(np.clip(inner_eigenvalues, 0.0, None)).sum()
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_of_root)
