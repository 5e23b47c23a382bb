import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from corpus_weights.model.gpt import GPT, GPTConfig
from corpus_weights.model.training import TrainConfig, TrainingDiverged, train_model

MC = GPTConfig(vocab_size=50, n_layer=2, d_model=32, n_head=4, context=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    rng = np.random.default_rng(0)
    # a learnable sequence: mostly i -> i+1 with noise
    seq = (np.arange(600) + rng.integers(0, 3, 600)) % 50
    np.save(d / "train.npy", seq.astype(np.int32))
    np.save(d / "val.npy", ((np.arange(200) + rng.integers(0, 3, 200)) % 50).astype(np.int32))
    return d / "train.npy", d / "val.npy"


def tc(**kw):
    base = dict(tokens=4 * 16 * 20, batch_size=4, lr=3e-3, min_lr_frac=0.1, warmup_frac=0.1, weight_decay=0.1,
                grad_clip=1.0, eval_every=5, eval_tokens=64, checkpoint_every=4, snapshot_fracs=[0.0, 0.5, 1.0],
                seed=0, device="cpu", compile="auto", dtype="auto", threads=1)
    base.update(kw)
    return TrainConfig(**base)


def run(data, tmp, cfg, name, lines=None):
    out = tmp / name
    s = train_model(MC, cfg, *data, out, tmp / f"state_{name}", log=(lines.append if lines is not None else print))
    return out, s


def final(out):
    return load_file(str(out / "final.safetensors"))


def test_outputs_determinism_and_seeds(data, tmp_path):
    a, s = run(data, tmp_path, tc(), "a")
    b, _ = run(data, tmp_path, tc(), "b")
    c, _ = run(data, tmp_path, tc(seed=1), "c")
    fa, fb, fc = final(a), final(b), final(c)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(fa["blocks.0.attn.q.weight"], fc["blocks.0.attn.q.weight"])
    for pct in (0, 50, 100):
        assert (a / f"snapshot_{pct:03d}.safetensors").exists()
    log = pd.read_parquet(a / "log.parquet")
    assert list(log.columns) == ["step", "tokens", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"]
    assert log.step.iloc[0] == 0 and log.step.iloc[-1] == 20
    assert log.val_loss.iloc[-1] < log.val_loss.iloc[0]
    summ = json.loads((a / "summary.json").read_text())
    assert summ["steps"] == 20 and summ["dtype"] == s["dtype"] and "mfu" in summ
    assert not (tmp_path / "state_a").exists()  # state removed after success
    # snapshot_000 == init weights
    torch.manual_seed(0)
    init = GPT(MC).state_dict()
    s0 = load_file(str(a / "snapshot_000.safetensors"))
    assert all(torch.equal(init[k], s0[k]) for k in init)
    assert torch.equal(final(a)["wte.weight"], load_file(str(a / "snapshot_100.safetensors"))["wte.weight"])


def test_crash_and_resume_bit_identical(data, tmp_path, monkeypatch):
    ref, _ = run(data, tmp_path, tc(), "ref")
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "12")
    with pytest.raises(RuntimeError, match="step 12"):
        run(data, tmp_path, tc(), "x")
    assert not (tmp_path / "x" / "final.safetensors").exists()
    assert json.loads((tmp_path / "state_x" / "latest.json").read_text())["step"] == 12
    monkeypatch.delenv("CW_CRASH_AFTER_STEP")
    lines = []
    out, s = run(data, tmp_path, tc(), "x", lines)
    assert any("resumed from state step 12" in l for l in lines)
    assert s["resumed_from_step"] == 12
    fr, fx = final(ref), final(out)
    assert all(torch.equal(fr[k], fx[k]) for k in fr)
    for pct in (0, 50):
        a = load_file(str(ref / f"snapshot_{pct:03d}.safetensors"))
        b = load_file(str(out / f"snapshot_{pct:03d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("final.safetensors", "snapshot_000.safetensors", "snapshot_050.safetensors"):
        # byte for byte, so a user checking with sha256sum sees the same file (metadata in a fixed order)
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name
    la, lb = pd.read_parquet(ref / "log.parquet"), pd.read_parquet(out / "log.parquet")
    pd.testing.assert_series_equal(la.val_loss, lb.val_loss)


def test_divergence_names_step(data, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        run(data, tmp_path, tc(lr=1e30, grad_clip=0.0, warmup_frac=0.0), "nan")
    assert not (tmp_path / "nan" / "final.safetensors").exists()


def test_resume_keeps_the_full_log(data, tmp_path, monkeypatch):
    """After a crash and resume the whole log (every row, every column but timings) equals the uninterrupted run's."""
    ref, _ = run(data, tmp_path, tc(), "ref")
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "8")
    with pytest.raises(RuntimeError):
        run(data, tmp_path, tc(), "x")
    monkeypatch.delenv("CW_CRASH_AFTER_STEP")
    out, _ = run(data, tmp_path, tc(), "x")
    la, lb = pd.read_parquet(ref / "log.parquet"), pd.read_parquet(out / "log.parquet")
    cols = ["step", "tokens", "train_loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(la[cols], lb[cols])


def test_changed_hyperparameter_starts_fresh(data, tmp_path, monkeypatch):
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "8")
    with pytest.raises(RuntimeError):
        run(data, tmp_path, tc(), "x")
    monkeypatch.delenv("CW_CRASH_AFTER_STEP")
    lines = []
    _, s = run(data, tmp_path, tc(lr=1e-3), "x", lines)  # same state dir, different lr: fingerprint differs
    assert s["resumed_from_step"] == 0
    assert any("different fingerprint" in line for line in lines)


def test_consecutive_steps_draw_different_batches():
    from corpus_weights.model.training import sample_offsets

    a = sample_offsets(0, 5, 10_000, 8, 16)
    assert not np.array_equal(a, sample_offsets(0, 6, 10_000, 8, 16))
    assert not np.array_equal(a, sample_offsets(1, 5, 10_000, 8, 16))
    assert np.array_equal(a, sample_offsets(0, 5, 10_000, 8, 16))  # a pure function of (seed, step)


def test_divergence_names_the_exact_first_step(data, tmp_path, monkeypatch):
    import corpus_weights.model.training as training

    real = training.train_step

    def poisoned(fwd, opt, params, data_, it, *args, **kwargs):
        loss, lr = real(fwd, opt, params, data_, it, *args, **kwargs)
        return (loss * float("nan") if it == 6 else loss), lr

    monkeypatch.setattr(training, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"at step 7 \(iteration 6,"):
        run(data, tmp_path, tc(), "nan7")


def test_progress_lines(data, tmp_path):
    lines = []
    train_model(MC, tc(), *data, tmp_path / "p", tmp_path / "state_p", log=lines.append, progress_every_s=0.0)
    progress = [line for line in lines if "tok/s eta" in line]
    assert progress and all("tokens" in line and "loss" in line for line in progress)


def test_dtype_choice_depends_on_cpu_flags_only(monkeypatch):
    """No timing probe: the same machine always makes the same choice (a busy machine once flipped it mid-test)."""
    import corpus_weights.model.training as training

    def boom(*args, **kwargs):
        raise AssertionError("resolve_dtype must not time anything")

    from corpus_weights.model import hardware

    monkeypatch.setattr(hardware, "time_matmul", boom)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert training.resolve_dtype("auto", torch.device("cpu"))[0] == torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "fma"})
    assert training.resolve_dtype("auto", torch.device("cpu"))[0] == torch.float32
