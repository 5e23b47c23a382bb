import numpy as np
import pytest

from corpus_weights.measure.residual_space import (
    fold_layernorm, forward_logits, gelu, layer_of, matrix_type, random_rotation_fixing_ones,
    residual_vectors, rotate_residual, residual_matrix_names,
)


def small_model(rng, V=40, d=16, L=2, ctx=8):
    w = {"W_E": rng.standard_normal((V, d)), "W_pos": 0.3 * rng.standard_normal((ctx, d)),
         "ln_final.w": 1 + 0.3 * rng.standard_normal(d)}
    for i in range(L):
        for t in ("W_Q", "W_K", "W_V", "W_O"):
            w[f"L{i}.{t}"] = rng.standard_normal((d, d)) / np.sqrt(d)
        w[f"L{i}.W_in"] = rng.standard_normal((4 * d, d)) / np.sqrt(d)
        w[f"L{i}.W_out"] = rng.standard_normal((d, 4 * d)) / np.sqrt(4 * d)
        w[f"L{i}.ln1.w"] = 1 + 0.3 * rng.standard_normal(d)
        w[f"L{i}.ln2.w"] = 1 + 0.3 * rng.standard_normal(d)
    return w


def test_names_and_orientation():
    assert matrix_type("L3.W_Q") == "W_Q" and matrix_type("W_E") == "W_E"
    assert layer_of("L12.W_out") == 12 and layer_of("W_E") == -1
    W_out = np.arange(6.0).reshape(2, 3)  # (d=2, 4d=3): columns are residual vectors
    assert residual_vectors("L0.W_out", W_out).shape == (3, 2)
    W_in = np.arange(6.0).reshape(3, 2)  # (4d=3, d=2): rows are residual vectors
    assert residual_vectors("L0.W_in", W_in).shape == (3, 2)
    with pytest.raises(ValueError):
        residual_vectors("L0.ln1.w", np.ones(2))


def test_rotation_fixing_ones():
    Q = random_rotation_fixing_ones(16, np.random.default_rng(0))
    assert np.allclose(Q @ Q.T, np.eye(16), atol=1e-12)
    assert np.allclose(Q @ np.ones(16), np.ones(16), atol=1e-12)
    assert not np.allclose(Q, np.eye(16))


def test_gelu_exact():
    assert np.isclose(gelu(np.array(1.0)), 0.8413447460685429)


def test_causal_and_fold():
    rng = np.random.default_rng(1)
    w = small_model(rng)
    tok = rng.integers(0, 40, size=(2, 8))
    a = forward_logits(w, tok, 2)
    tok2 = tok.copy()
    tok2[:, -1] = (tok2[:, -1] + 1) % 40
    b = forward_logits(w, tok2, 2)
    assert np.allclose(a[:, :-1], b[:, :-1])  # causal
    f = fold_layernorm(w)
    assert np.allclose(f["ln_final.w"], 1) and "W_U" in f and "W_U" not in w
    assert np.allclose(forward_logits(f, tok, 2), a, atol=1e-10)
    with pytest.raises(ValueError):
        rotate_residual(w, np.eye(16))
    assert residual_matrix_names(f)[:3] == ["W_E", "W_pos", "W_U"]


@pytest.mark.parametrize("key", ["L1.ln1.w", "L0.ln2.w", "ln_final.w"])
def test_rotation_refuses_each_unfolded_layernorm_weight(key):
    folded = fold_layernorm(small_model(np.random.default_rng(1)))
    Q = random_rotation_fixing_ones(16, np.random.default_rng(2))
    rotate_residual(folded, Q)  # folded: fine
    folded[key] = folded[key] * 1.5
    with pytest.raises(ValueError, match=r"^rotate_residual needs folded LayerNorm weights \(fold_layernorm first\)$"):
        rotate_residual(folded, Q)
    assert rotate_residual(folded, Q, check_folded=False)[key] is not folded[key]  # copied, not shared
    unfolded_unembedding = fold_layernorm(small_model(np.random.default_rng(1)))
    del unfolded_unembedding["W_U"]
    with pytest.raises(ValueError, match=r"^rotate_residual needs an explicit W_U \(fold_layernorm first\)$"):
        rotate_residual(unfolded_unembedding, Q)


def test_fold_returns_independent_arrays_and_layer_count():
    from corpus_weights.measure.residual_space import n_layers

    w = small_model(np.random.default_rng(3))
    folded = fold_layernorm(w)
    for k in w:
        assert not np.shares_memory(folded[k], w[k]), k
    assert n_layers(w) == 2 and n_layers({"W_E": np.ones((2, 2))}) == 0 and n_layers({}) == 0
    with pytest.raises(ValueError, match="'L0.ln1.w' is not a residual-space matrix"):
        residual_vectors("L0.ln1.w", np.ones(2))
    assert residual_matrix_names(w, embeddings=False)[0] == "L0.W_Q"
    assert residual_matrix_names(w)[:2] == ["W_E", "W_pos"]
