"""The intervention experiment's initial embeddings: planted properties, and runs that differ only in W_E."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from corpus_weights.measure.alignment import corpus_basis, stratified_halves, top_tokens, RidgeFits
from corpus_weights.corpus.initialisation import INIT_STD, initial_embedding, scaled_to_random_norm
from corpus_weights.measure.intervention import paired_differences, tokens_to_reach
from corpus_weights.model.gpt import GPTConfig
from corpus_weights.core.nulls import log_frequency_bins
from corpus_weights.measure.projection import projection_share
from corpus_weights.model.training import TrainConfig, train_model


def markov_ids(rng, V=60, n=60_000):
    T = rng.dirichlet(np.full(V, 0.2), size=V)
    ids = np.empty(n, dtype=np.int64)
    ids[0] = 0
    u = rng.random(n)
    cdf = T.cumsum(1)
    for i in range(1, n):
        ids[i] = min(np.searchsorted(cdf[ids[i - 1]], u[i]), V - 1)
    return ids


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    ids = markov_ids(rng)
    return ids, rng.permutation(ids)


def test_scaling_to_the_random_norm():
    E = np.random.default_rng(1).standard_normal((50, 8)) * 7 + 3
    S = scaled_to_random_norm(E)
    assert np.allclose(S.mean(0), 0) and np.isclose(np.linalg.norm(S), INIT_STD * np.sqrt(S.size))


def test_variants(corpus):
    ids, shuffled = corpus
    V, d = 60, 16
    c = initial_embedding("corpus", ids, shuffled, V, d)
    p = initial_embedding("corpus_permuted", ids, shuffled, V, d)
    s = initial_embedding("shuffled_corpus", ids, shuffled, V, d)
    assert c.shape == p.shape == s.shape == (V, d) and c.dtype == np.float32
    # permuted = the same rows in another order, only within frequency strata
    order = [int(np.nonzero((c == row).all(1))[0][0]) for row in p]
    strata = log_frequency_bins(np.bincount(ids, minlength=V), 20)
    assert sorted(order) == list(range(V)) and order != list(range(V))
    assert all(strata[i] == strata[j] for i, j in enumerate(order))
    assert not np.allclose(c, s)
    with pytest.raises(ValueError, match="init variant"):
        initial_embedding("random", ids, shuffled, V, d)


def test_corpus_initialised_W_E_lies_in_the_corpus_coordinate_system(corpus):
    """Planted: a W_E that *is* the corpus embedding (centred, rescaled) is predicted exactly by the vocabulary map
    (held-out R² ≈ 1) and the aligned basis is the corpus basis itself (Σ_E's eigenvectors, up to the map); a random
    W_E is not predicted at all."""
    ids, shuffled = corpus
    V, d, K = 60, 16, 4
    from corpus_weights.corpus.initialisation import corpus_embedding

    E = corpus_embedding(ids, V, d, 0.75, 0.5, 0)
    pi = np.bincount(ids, minlength=V) / ids.size
    U = np.linalg.eigh((E - pi @ E).T @ ((E - pi @ E) * pi[:, None]))[1][:, ::-1]
    fit, test = stratified_halves(top_tokens(pi, V), 0)
    corpus_fit = RidgeFits(E, fit, test).fit(initial_embedding("corpus", ids, shuffled, V, d))
    random_fit = RidgeFits(E, fit, test).fit(INIT_STD * np.random.default_rng(2).standard_normal((V, d)))
    assert corpus_fit["heldout_r2"] > 0.95 and random_fit["heldout_r2"] < 0.05
    B = corpus_basis(corpus_fit["A"], U)[:, :K]
    # the map is a multiple of the identity, so the aligned basis spans the corpus's own top-K directions
    assert np.isclose(projection_share(U[:, :K].T, B), 1.0, atol=1e-3)


def test_runs_differ_only_in_W_E(corpus, tmp_path):
    ids, shuffled = corpus
    np.save(tmp_path / "train.npy", ids[:50_000].astype(np.int32))
    np.save(tmp_path / "val.npy", ids[50_000:].astype(np.int32))
    cfg = GPTConfig(vocab_size=60, n_layer=1, d_model=16, n_head=2, context=8)
    init = initial_embedding("corpus", ids, shuffled, 60, 16)
    np.save(tmp_path / "init.npy", init)
    outs = {}
    for name, path in (("random", None), ("corpus", str(tmp_path / "init.npy"))):
        tc = TrainConfig(tokens=4 * 8 * 4, batch_size=4, eval_every=2, eval_tokens=32, checkpoint_every=2,
                         device="cpu", compile=False, threads=1, init_embedding=path)
        train_model(cfg, tc, tmp_path / "train.npy", tmp_path / "val.npy", tmp_path / name, tmp_path / f"st_{name}",
                    log=lambda m: None)
        outs[name] = load_file(str(tmp_path / name / "snapshot_000.safetensors"))
    for key in outs["random"]:
        same = torch.equal(outs["random"][key], outs["corpus"][key])
        assert same == (key != "wte.weight"), key
    assert np.allclose(outs["corpus"]["wte.weight"].numpy(), init)


def test_tokens_to_reach_and_paired_differences():
    import pandas as pd

    log = pd.DataFrame({"tokens": [0, 100, 200, 300], "val_loss": [8.0, 6.0, 5.0, 4.5]})
    assert tokens_to_reach(log, 5.5) == 150.0 and tokens_to_reach(log, 8.5) == 0.0 and tokens_to_reach(log, 4) is None
    runs = [dict(init=v, seed=s, measures={"loss": x}) for v, s, x in
            [("random", 0, 5.0), ("random", 1, 5.2), ("corpus", 0, 4.8), ("corpus", 1, 4.9)]]
    d = paired_differences(runs, "loss")["corpus"]
    assert np.allclose(d["diffs"], [-0.2, -0.3]) and np.isclose(d["mean"], -0.25) and d["ci95"][1] > d["mean"]
