"""Pure vector operations (no database): DBA augmentation, whitening, expansion."""
import numpy as np

from app.describe.vectors import apply_whitening, augment, expand, fit_whitening


def test_augment_adds_the_nearest_neighbours_weighted_by_similarity_cubed():
    vectors = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1], [0, 0.6, 0.8]], np.float32)
    out = augment(vectors, top=1, alpha=3.0)
    expected = vectors[0] + 0.8 ** 3 * vectors[1]  # row 0's nearest other row is row 1 (cosine 0.8)
    assert np.allclose(out[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(augment(vectors, top=0, alpha=3.0), vectors, atol=1e-6)


def test_whitening_scales_each_principal_axis_by_the_shrunk_eigenvalue():
    # Data spread along known axes: variances 9, 4, 1 on e0, e1, e2 (mean eigenvalue 14/3).
    rng = np.random.default_rng(0)
    axes = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    samples = rng.choice([-1.0, 1.0], size=(4000, 3)) * np.array([3.0, 2.0, 1.0])
    vectors = (samples - samples.mean(axis=0)) @ axes.T + np.array([5.0, -2.0, 1.0])
    mean, projection = fit_whitening(vectors, 3)
    eigval = np.linalg.eigvalsh(np.cov(vectors.T, bias=True))[::-1]
    assert np.allclose(mean, vectors.mean(axis=0), atol=1e-5)
    scales = np.linalg.norm(projection, axis=1)  # each row = axis / sqrt(eigenvalue + mean eigenvalue)
    assert np.allclose(scales, 1 / np.sqrt(eigval + eigval.mean()), rtol=1e-4)
    assert np.allclose(np.abs(projection / scales[:, None] @ axes), np.eye(3), atol=0.03)  # sampling noise
    whitened = apply_whitening(vectors[:5], mean, projection)
    assert np.allclose(np.linalg.norm(whitened, axis=1), 1.0, atol=1e-6)


def test_expand_weights_neighbours_by_similarity_to_the_power_alpha():
    query = np.array([1.0, 0.0], np.float32)
    neighbours = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    out = expand(query, neighbours, [0.5, 1.5], alpha=3.0)  # similarities 0.5 and -0.5 (clipped to 0)
    expected = query + 0.5 ** 3 * neighbours[0]
    assert np.allclose(out, expected / np.linalg.norm(expected), atol=1e-6)
