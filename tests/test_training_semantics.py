"""What the trainer does, pinned by planted answers (issue 24): the learning rate at every step, the data order, the
tokens the losses are computed on, what each snapshot holds and when it is taken, and each matrix's initialisation.

The runs are real `train_model` runs of a 2-layer d=32 model (20 steps, well under a second each). Spies around the
trainer's own `train_step` and `get_batch` record, for every step, the batch it drew, the learning rate the optimiser
held and the model's state after the step; every number in the outputs is then checked against those records or
against a formula written out here by hand.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import corpus_weights.model.training as training
from corpus_weights.model.gpt import GPT, GPTConfig
from corpus_weights.model.training import TrainConfig, lr_at, sample_offsets, snapshot_schedule, train_model
from corpus_weights.model.weights import read_safetensors_step

V, C, B, STEPS = 50, 16, 6, 20
MC = GPTConfig(vocab_size=V, n_layer=2, d_model=32, n_head=4, context=C)
N_WIN = 40                 # eval_tokens // context evaluation windows, evenly spaced over a split:
N_TOK = N_WIN * C + 1      # validation: they tile it exactly (starts 0, C, 2C, ...; C + 1 tokens each)
N_TRAIN = 39 * 32 + C + 1  # training: starts 0, 32, 64, ..., 39 * 32 (another length, another spacing)
FRACS = [0.0, 0.25, 1 / 3, 0.5, 1.0]
SNAP_AT = {0: 0, 25: 5, 33: 7, 50: 10, 100: 20}  # percent name -> step: round(100 f), round(f * 20)


def cfg(**kw) -> TrainConfig:
    base = dict(tokens=B * C * STEPS, batch_size=B, lr=3e-3, min_lr_frac=0.1, warmup_frac=0.1, weight_decay=0.1,
                grad_clip=1.0, eval_every=5, eval_tokens=N_WIN * C, checkpoint_every=4, snapshot_fracs=FRACS,
                seed=0, device="cpu", compile=False, dtype="float32", threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train: a noisy forward cycle (a -> a+1); validation: a noisy backward cycle (a -> a-1), so a loss computed on
    the wrong split is a different number."""
    d = tmp_path_factory.mktemp("tok")
    rng = np.random.default_rng(0)
    train = (np.arange(N_TRAIN) + rng.integers(0, 3, N_TRAIN)) % V
    val = (-np.arange(N_TOK) + rng.integers(0, 3, N_TOK)) % V
    np.save(d / "train.npy", train.astype(np.int32))
    np.save(d / "val.npy", val.astype(np.int32))
    return d / "train.npy", d / "val.npy"


def spied_run(data, out, state, config: TrainConfig, crash_at: int | None = None, log=lambda *_: None) -> dict:
    """One real train_model run; returns its output dir and, per training iteration, the batch drawn (offsets and
    tokens), the lr the optimiser held, the loss and the model's state after the step."""
    rec = dict(out=out, offsets={}, x={}, y={}, lr={}, loss={}, state={}, data=[])
    real_step, real_batch = training.train_step, training.get_batch
    inside = []

    def batch_spy(arr, offsets, context):
        x, y = real_batch(arr, offsets, context)
        if inside:
            it = inside[-1]
            rec["offsets"][it], rec["x"][it], rec["y"][it] = np.array(offsets), x.clone(), y.clone()
            rec["data"].append(np.asarray(arr))
        return x, y

    def step_spy(fwd, opt, params, arr, it, *args, **kwargs):
        inside.append(it)
        try:
            loss, lr = real_step(fwd, opt, params, arr, it, *args, **kwargs)
        finally:
            inside.pop()
        rec["lr"][it] = [g["lr"] for g in opt.param_groups]
        rec["loss"][it] = float(loss.detach())
        rec["state"][it + 1] = {k: v.detach().clone() for k, v in fwd.state_dict().items()}
        return loss, lr

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train_step", step_spy)
        mp.setattr(training, "get_batch", batch_spy)
        if crash_at is not None:
            mp.setenv("CW_CRASH_AFTER_STEP", str(crash_at))
            with pytest.raises(training.InjectedCrash):
                train_model(MC, config, *data, out, state, log=log)
        else:
            train_model(MC, config, *data, out, state, log=log)
    return rec


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    ref = spied_run(data, tmp / "ref", tmp / "st_ref", cfg())
    again = spied_run(data, tmp / "again", tmp / "st_again", cfg())
    other = spied_run(data, tmp / "seed1", tmp / "st_seed1", cfg(seed=1))
    crashed = spied_run(data, tmp / "res", tmp / "st_res", cfg(), crash_at=12)
    resumed = spied_run(data, tmp / "res", tmp / "st_res", cfg())
    return dict(ref=ref, again=again, other=other, crashed=crashed, resumed=resumed)


# ----------------------------------------------------------------------------- learning rate

def planted_lr(step: int, total: int = STEPS, lr: float = 3e-3, warm: int = 2, floor: float = 3e-4) -> float:
    """Written out by hand: linear warm-up over `warm` steps (reaching lr at step warm - 1), then half a cosine from
    lr down to the floor min_lr_frac * lr, reached at step `total`; all in optimisation steps."""
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / (total - warm))
    return floor + (lr - floor) * (1 + math.cos(math.pi * progress)) / 2


def test_lr_schedule_by_hand():
    c = cfg()  # 20 steps, warmup_frac 0.1 -> 2 warm-up steps, floor 0.1 * 3e-3
    assert lr_at(0, STEPS, c) == pytest.approx(1.5e-3, rel=1e-12)
    assert lr_at(1, STEPS, c) == pytest.approx(3e-3, rel=1e-12)
    assert lr_at(2, STEPS, c) == pytest.approx(3e-3, rel=1e-12)           # the cosine starts at the peak
    assert lr_at(11, STEPS, c) == pytest.approx((3e-3 + 3e-4) / 2, rel=1e-12)  # half way down the cosine
    assert lr_at(20, STEPS, c) == pytest.approx(3e-4, rel=1e-12)           # the floor, min_lr_frac * lr
    assert lr_at(500, STEPS, c) == pytest.approx(3e-4, rel=1e-12)          # and never below it
    for s in range(STEPS + 1):
        assert lr_at(s, STEPS, c) == pytest.approx(planted_lr(s), rel=1e-12), s
    # no warm-up: step 0 already at the peak; a 5 % warm-up of 20 steps is one step
    assert lr_at(0, STEPS, cfg(warmup_frac=0.0)) == pytest.approx(3e-3, rel=1e-12)
    assert lr_at(0, STEPS, cfg(warmup_frac=0.05)) == pytest.approx(3e-3, rel=1e-12)
    assert lr_at(1, STEPS, cfg(warmup_frac=0.05)) == pytest.approx(3e-3, rel=1e-12)
    assert lr_at(19, 100, cfg(warmup_frac=0.2)) == pytest.approx(3e-3 * 20 / 20, rel=1e-12)
    assert lr_at(9, 100, cfg(warmup_frac=0.2)) == pytest.approx(3e-3 * 10 / 20, rel=1e-12)
    for s in range(STEPS + 1):  # without warm-up the cosine spans every step: step s is s / total of the way down
        assert lr_at(s, STEPS, cfg(warmup_frac=0.0)) == pytest.approx(planted_lr(s, warm=0), rel=1e-12), s
    # one step after a one-step warm-up: the cosine's whole span is that step, so the floor comes at step 2
    assert lr_at(2, 2, cfg(warmup_frac=0.5)) == pytest.approx(3e-4, rel=1e-12)


def test_the_optimiser_holds_the_planted_lr_at_every_step(runs):
    """Every parameter group at every step holds the planted lr of that step (steps, not tokens); the log's lr column
    is the lr of the last step taken before each row."""
    rec = runs["ref"]
    assert sorted(rec["lr"]) == list(range(STEPS))
    for it, lrs in rec["lr"].items():
        assert lrs == pytest.approx([planted_lr(it)] * len(lrs), rel=1e-12), it
    log = pd.read_parquet(rec["out"] / "log.parquet")
    for step, lr in zip(log.step, log.lr):
        assert lr == pytest.approx(planted_lr(max(step - 1, 0)), rel=1e-12), step


# ----------------------------------------------------------------------------- data order

def test_sampler_is_a_function_of_seed_and_step():
    n = 10_000
    grid = {(s, t): sample_offsets(s, t, n, 8, C) for s in range(3) for t in range(30)}
    assert all(np.array_equal(v, sample_offsets(s, t, n, 8, C)) for (s, t), v in grid.items())
    keys = list(grid)
    for i, a in enumerate(keys):  # no two (seed, step) pairs share a batch: not seed + step, not a shifted stream
        for b in keys[i + 1:]:
            assert not np.array_equal(grid[a], grid[b]), (a, b)
    # every offset leaves room for a window of C + 1 tokens, and the whole range is used (the last possible start,
    # n - C - 1, is never drawn today: the split's last token is never a target; harmless, allowed either way)
    allo = np.concatenate([sample_offsets(0, t, 200, 64, C) for t in range(200)])
    assert allo.min() == 0 and 200 - C - 2 <= allo.max() <= 200 - C - 1


def test_training_batches_follow_seed_and_step(runs, data):
    train = np.load(data[0])
    ref, again, other = runs["ref"], runs["again"], runs["other"]
    assert sorted(ref["offsets"]) == list(range(STEPS))
    for it in range(STEPS):
        o = ref["offsets"][it]
        assert np.array_equal(o, sample_offsets(0, it, N_TRAIN, B, C)), it
        assert np.array_equal(o, again["offsets"][it]), it                 # same seed: the same batch
        assert not np.array_equal(o, other["offsets"][it]), it             # another seed: another batch
        assert np.array_equal(other["offsets"][it], sample_offsets(1, it, N_TRAIN, B, C)), it
        win = train[o[:, None] + np.arange(C + 1)[None, :]]                # the batch is read from train.npy
        assert np.array_equal(ref["x"][it].numpy(), win[:, :-1]) and np.array_equal(ref["y"][it].numpy(), win[:, 1:])
    assert all(np.array_equal(d, train) for d in ref["data"])
    seq0 = [tuple(ref["offsets"][t]) for t in range(STEPS)]
    seq1 = [tuple(other["offsets"][t]) for t in range(STEPS)]
    assert not set(seq0) & set(seq1)  # seed 1's order is not seed 0's, shifted


def test_resumed_run_draws_exactly_the_uninterrupted_batches(runs):
    ref, crashed, resumed = runs["ref"], runs["crashed"], runs["resumed"]
    assert sorted(crashed["offsets"]) == list(range(12))            # crashed after saving the state of step 12
    assert sorted(resumed["offsets"]) == list(range(12, STEPS))     # resumed there: no step repeated or skipped
    for it in range(STEPS):
        got = (crashed if it < 12 else resumed)["offsets"][it]
        assert np.array_equal(got, ref["offsets"][it]), it
        got_lr = (crashed if it < 12 else resumed)["lr"][it]
        assert got_lr == ref["lr"][it], it


# ----------------------------------------------------------------------------- losses

def direct_loss(state: dict, ids: np.ndarray, stride: int) -> float:
    """Mean next-token cross-entropy of the model `state` over the N_WIN windows of `ids` that start every `stride`
    tokens (C inputs, the next C tokens as targets), computed here with torch directly."""
    m = GPT(MC)
    m.load_state_dict(state)
    m.eval()
    starts = np.arange(N_WIN) * stride
    x = torch.from_numpy(np.stack([ids[s:s + C] for s in starts]).astype(np.int64))
    y = torch.from_numpy(np.stack([ids[s + 1:s + C + 1] for s in starts]).astype(np.int64))
    with torch.no_grad():
        logits = m(x)[0]
    return float(F.cross_entropy(logits.reshape(-1, V).double(), y.reshape(-1)))


def seeded_init(seed: int) -> dict:
    torch.manual_seed(seed)
    return GPT(MC).state_dict()


def test_validation_loss_is_computed_on_every_validation_window_and_nothing_else(runs, data):
    """Every val_loss of the log equals the cross-entropy, computed directly, of the model at that step on all the
    validation windows (a batch of 6 leaves a ragged last batch of 4: a per-batch mean would be off)."""
    train, val = np.load(data[0]), np.load(data[1])
    rec = runs["ref"]
    log = pd.read_parquet(rec["out"] / "log.parquet")
    assert list(log.step) == [0, 5, 10, 15, 20]
    states = {0: seeded_init(0), **rec["state"]}
    for step, vl in zip(log.step, log.val_loss):
        assert vl == pytest.approx(direct_loss(states[step], val, C), rel=1e-5, abs=1e-6), step
        assert abs(vl - direct_loss(states[step], train, 32)) > 1e-3, step  # the train split gives another number
    # step 0's train loss: the init model on the training windows
    assert log.train_loss.iloc[0] == pytest.approx(direct_loss(states[0], train, 32), rel=1e-5, abs=1e-6)
    summary = json.loads((rec["out"] / "summary.json").read_text())
    assert summary["final_val_loss"] == pytest.approx(direct_loss(rec["state"][STEPS], val, C), rel=1e-5, abs=1e-6)


def test_train_loss_rows_are_the_mean_of_the_steps_since_the_last_row(runs):
    rec = runs["ref"]
    log = pd.read_parquet(rec["out"] / "log.parquet")
    for prev, step, tl in zip(log.step[:-1], log.step[1:], log.train_loss[1:]):
        assert tl == pytest.approx(np.mean([rec["loss"][it] for it in range(prev, step)]), rel=1e-6), step
    assert list(log.tokens) == [s * B * C for s in log.step]


# ----------------------------------------------------------------------------- snapshots

def test_snapshot_schedule_by_hand():
    assert snapshot_schedule(FRACS, STEPS) == {0: [0], 5: [25], 7: [33], 10: [50], 20: [100]}
    assert snapshot_schedule([0.0, 0.5, 1.0], 7) == {0: [0], 4: [50], 7: [100]}  # round(3.5) = 4 (half to even)
    assert snapshot_schedule([0.3, 0.35], 3) == {1: [30, 35]}                     # two names at one step


def test_every_snapshot_is_the_model_at_exactly_its_step(runs):
    rec = runs["ref"]
    out = rec["out"]
    assert sorted(p.name for p in out.glob("snapshot_*.safetensors")) == \
        [f"snapshot_{pct:03d}.safetensors" for pct in sorted(SNAP_AT)]
    states = {0: seeded_init(0), **rec["state"]}
    for pct, step in SNAP_AT.items():
        path = out / f"snapshot_{pct:03d}.safetensors"
        snap = load_file(str(path))
        assert set(snap) == set(states[step])
        assert all(torch.equal(snap[k], states[step][k]) for k in snap), pct
        if 0 < step:  # and not the state one step before or after
            assert not torch.equal(snap["wte.weight"], states.get(step - 1, states[0])["wte.weight"])
        if step < STEPS:
            assert not torch.equal(snap["wte.weight"], states[step + 1]["wte.weight"])
        assert read_safetensors_step(path) == step
    final = load_file(str(out / "final.safetensors"))
    assert all(torch.equal(final[k], rec["state"][STEPS][k]) for k in final)


def test_step0_snapshot_is_the_seeded_initialisation_bit_for_bit(runs):
    for name, seed in (("ref", 0), ("other", 1)):
        snap = load_file(str(runs[name]["out"] / "snapshot_000.safetensors"))
        init = seeded_init(seed)
        assert set(snap) == set(init) and all(torch.equal(snap[k], init[k]) for k in init), name
    a = load_file(str(runs["ref"]["out"] / "snapshot_000.safetensors"))
    b = load_file(str(runs["other"]["out"] / "snapshot_000.safetensors"))
    assert not torch.equal(a["blocks.0.attn.q.weight"], b["blocks.0.attn.q.weight"])


def test_resumed_snapshots_equal_the_uninterrupted_ones(runs):
    for pct in SNAP_AT:
        a = load_file(str(runs["ref"]["out"] / f"snapshot_{pct:03d}.safetensors"))
        b = load_file(str(runs["resumed"]["out"] / f"snapshot_{pct:03d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), pct


# ----------------------------------------------------------------------------- initialisation

def expected_init_std(name: str, n_layer: int) -> float | None:
    """model/gpt.py's GPT-2 init, by parameter name: N(0, 0.02); the residual-writing projections (attn.o, mlp.fc_out)
    N(0, 0.02 / sqrt(2 L)); LayerNorm weights exactly 1 (None)."""
    if name.endswith(("ln1.weight", "ln2.weight")) or name == "ln_f.weight":
        return None
    if name.endswith(("attn.o.weight", "mlp.fc_out.weight")):
        return 0.02 / math.sqrt(2 * n_layer)
    assert name in ("wte.weight", "wpe.weight") or name.endswith(
        ("attn.q.weight", "attn.k.weight", "attn.v.weight", "mlp.fc_in.weight")), f"unplanned parameter {name}"
    return 0.02


def test_each_matrix_initialisation_distribution():
    """Per matrix: mean 0, the planted std and a Gaussian shape (68.3 % within one sd: PyTorch's default uniform
    init gives 57.7 %), each within 6 standard errors; LayerNorm weights all exactly 1."""
    cfg_big = GPTConfig(vocab_size=400, n_layer=4, d_model=64, n_head=4, context=32)
    torch.manual_seed(123)
    m = GPT(cfg_big)
    seen = 0
    for name, p in m.named_parameters():
        w = p.detach().double().numpy().ravel()
        sd = expected_init_std(name, cfg_big.n_layer)
        if sd is None:
            assert np.all(w == 1.0), name
            continue
        n = w.size
        assert abs(w.mean()) < 6 * sd / math.sqrt(n), name
        assert abs(w.std() - sd) < 6 * sd / math.sqrt(2 * n), (name, w.std(), sd)
        inside = np.mean(np.abs(w) < sd)
        assert abs(inside - 0.6827) < 6 * math.sqrt(0.6827 * 0.3173 / n), (name, inside)
        seen += 1
    assert seen == 2 + 6 * cfg_big.n_layer
    assert m.wte.weight.shape == (400, 64) and m.wpe.weight.shape == (32, 64)


# ----------------------------------------------------------------------------- early stopping

# Planted validation losses by step (evaluations every 5 steps): best at step 10, none better after it. Patience 1
# stops at step 15 (one evaluation without a new best); patience 2 at step 20 (15 and 20), the budget's last step.
PLANTED_VAL = {0: 6.0, 5: 5.0, 10: 4.0, 15: 4.5, 20: 4.2}


def stopped_run(data, out, state, patience: int, crash_at: int | None = None, min_delta: float = 0.0,
                log=lambda *_: None) -> dict:
    """A spied run whose validation losses are the planted ones (the real evaluation of the training split is kept);
    the evaluation sees the step through the trainer's log rows."""
    real_evaluate = training.evaluate
    steps_seen = []

    def planted_evaluate(model, arr, windows, batch_size, context, runtime):
        if np.asarray(arr).shape[0] == N_TOK:  # the validation split
            return PLANTED_VAL[steps_seen[-1]]
        return real_evaluate(model, arr, windows, batch_size, context, runtime)

    real_record_eval, real_record_start = training.Trainer.record_eval, training.Trainer.record_start

    def record_eval(self, step, lr, tps):
        steps_seen.append(step)
        return real_record_eval(self, step, lr, tps)

    def record_start(self, ckpt):
        steps_seen.append(0)
        return real_record_start(self, ckpt)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "evaluate", planted_evaluate)
        mp.setattr(training.Trainer, "record_eval", record_eval)
        mp.setattr(training.Trainer, "record_start", record_start)
        return spied_run(data, out, state, cfg(patience=patience, min_delta=min_delta), crash_at=crash_at, log=log)


@pytest.fixture(scope="module")
def stopped(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stop")
    p1 = stopped_run(data, tmp / "p1", tmp / "st_p1", patience=1)
    p2 = stopped_run(data, tmp / "p2", tmp / "st_p2", patience=2)
    stopped_run(data, tmp / "res", tmp / "st_res", patience=1, crash_at=12)
    resumed = stopped_run(data, tmp / "res", tmp / "st_res", patience=1)
    return dict(p1=p1, p2=p2, resumed=resumed)


def test_early_stopping_stops_after_patience_evaluations_and_keeps_the_best_model(stopped):
    for name, stop in (("p1", 15), ("p2", 20)):
        rec = stopped[name]
        assert sorted(rec["lr"]) == list(range(stop)), name  # no step after the stop
        # the schedule stays the full budget's: stopping ends the run, it does not compress the cosine
        assert all(lrs == pytest.approx([planted_lr(it)] * len(lrs), rel=1e-12) for it, lrs in rec["lr"].items())
        summary = json.loads((rec["out"] / "summary.json").read_text())
        assert (summary["best_step"], summary["stop_step"], summary["steps"]) == (10, stop, stop), name
        assert summary["best_val_loss"] == 4.0 and summary["analysed_step"] == 10
        assert summary["stopped_early"] is (stop < STEPS) and summary["planned_steps"] == STEPS
        best = rec["state"][10]
        for f in ("final.safetensors", "snapshot_100.safetensors", "snapshot_050.safetensors"):
            w = load_file(str(rec["out"] / f))
            assert all(torch.equal(w[k], best[k]) for k in w), (name, f)
            assert read_safetensors_step(rec["out"] / f) == 10
        for pct, step in SNAP_AT.items():  # snapshots before the best step: the model at exactly their step
            if 0 < step < 10:
                w = load_file(str(rec["out"] / f"snapshot_{pct:03d}.safetensors"))
                assert all(torch.equal(w[k], rec["state"][step][k]) for k in w), (name, pct)
        log = pd.read_parquet(rec["out"] / "log.parquet")
        assert log["step"].tolist() == list(range(0, stop + 1, 5)), name
        assert log["val_loss"].tolist() == [PLANTED_VAL[s] for s in range(0, stop + 1, 5)]


def test_early_stopping_min_delta_and_resume(stopped, data, tmp_path):
    # resumed after a crash at step 12 (best at step 10 saved before it): the same stop, the same best model
    a, b = stopped["p1"], stopped["resumed"]
    assert json.loads((b["out"] / "summary.json").read_text())["best_step"] == 10
    for f in ("final.safetensors", "snapshot_100.safetensors"):
        wa, wb = load_file(str(a["out"] / f)), load_file(str(b["out"] / f))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f
    # min_delta 1.5: step 5 (6.0 -> 5.0) is not better by more than 1.5, so step 0 stays the best; patience 1 stops
    # at the first evaluation after it
    rec = stopped_run(data, tmp_path / "md", tmp_path / "st_md", patience=1, min_delta=1.5)
    summary = json.loads((rec["out"] / "summary.json").read_text())
    assert (summary["best_step"], summary["stop_step"]) == (0, 5)
    init = seeded_init(0)
    final = load_file(str(rec["out"] / "final.safetensors"))
    assert all(torch.equal(final[k], init[k]) for k in init)


def test_without_patience_the_run_ends_at_its_budget(runs):
    summary = json.loads((runs["ref"]["out"] / "summary.json").read_text())
    assert summary["early_stopping"] is False and summary["steps"] == STEPS == summary["analysed_step"]


def test_the_intervention_reads_the_analysed_models_validation_loss(stopped):
    """Under early stopping the analysed model is the best one: the intervention's final loss is the logged loss at
    its step (the step its weights file records), not the last evaluation; without a step, the last one."""
    from corpus_weights.measure.intervention import analysed_val_loss

    log = pd.read_parquet(stopped["p1"]["out"] / "log.parquet")
    step = read_safetensors_step(stopped["p1"]["out"] / "snapshot_100.safetensors")
    assert analysed_val_loss(log, step) == PLANTED_VAL[10] == 4.0
    assert analysed_val_loss(log) == PLANTED_VAL[15]
    with pytest.raises(ValueError, match="no evaluation at step 7"):
        analysed_val_loss(log, 7)


# ----------------------------------------------------------------------------- summary.json and log.parquet
# (Each test trains inside its own body, not in a shared fixture, so that mutmut's test-to-function map sees it.)

def test_summary_and_log_of_a_run_field_by_field(data, tmp_path):
    from dataclasses import asdict

    from corpus_weights.model import hardware
    from corpus_weights.model.gpt import flops_per_token
    rec = spied_run(data, tmp_path / "out", tmp_path / "state", cfg())
    s = json.loads((rec["out"] / "summary.json").read_text())
    log = pd.read_parquet(rec["out"] / "log.parquet")
    assert list(log.columns) == training.LOG_COLUMNS  # and no index column
    assert (log["step"].dtype, log["tokens"].dtype) == (np.dtype("int64"), np.dtype("int64"))
    assert log["tokens"].tolist() == [step * B * C for step in log["step"]]
    assert not list(rec["out"].glob("*.tmp")) and not (tmp_path / "state").exists()  # state removed after success
    torch.manual_seed(0)
    assert s["params"] == GPT(MC).n_params()
    assert (s["steps"], s["planned_steps"], s["tokens"]) == (STEPS, STEPS, STEPS * B * C)
    assert (s["batch_size"], s["context"], s["seed"], s["resumed_from_step"]) == (B, C, 0, 0)
    assert (s["final_train_loss"], s["final_val_loss"]) == (log["train_loss"].iloc[-1], log["val_loss"].iloc[-1])
    assert math.isfinite(s["tokens_per_s"]) and s["tokens_per_s"] > 0
    assert (s["device"], s["device_name"], s["dtype"], s["compiled"]) == ("cpu", hardware.cpu_name(), "float32", False)
    assert s["flops_per_token"] == flops_per_token(MC)
    assert s["mfu"] == pytest.approx(s["flops_per_token"] * s["tokens_per_s"] / (s["matmul_peak_tflops"] * 1e12))
    assert s["train_config"] == json.loads(json.dumps(asdict(cfg())))
    assert s["model_config"] == json.loads(json.dumps(asdict(MC)))
    assert {k: s[k] for k in ("early_stopping", "analysed_step")} == {"early_stopping": False, "analysed_step": STEPS}
    assert "patience" not in s and "best_step" not in s
    spied_run(data, tmp_path / "res", tmp_path / "st_res", cfg(), crash_at=12)
    again = spied_run(data, tmp_path / "res", tmp_path / "st_res", cfg())
    r = json.loads((again["out"] / "summary.json").read_text())
    assert r["resumed_from_step"] == 12 and r["final_val_loss"] == s["final_val_loss"]


def test_early_stopping_summary_and_a_snapshot_at_the_stop_step(data, tmp_path):
    real_fracs = list(FRACS)
    FRACS.append(0.75)  # a snapshot scheduled at step 15, where patience 1 stops: the model there, not the best
    try:
        rec = stopped_run(data, tmp_path / "p1", tmp_path / "st_p1", patience=1)
    finally:
        FRACS[:] = real_fracs
    s = json.loads((rec["out"] / "summary.json").read_text())
    assert {k: s[k] for k in ("early_stopping", "patience", "min_delta", "stopped_early", "stop_step", "best_step",
                              "best_tokens", "best_val_loss", "analysed_step", "steps")} == dict(
        early_stopping=True, patience=1, min_delta=0.0, stopped_early=True, stop_step=15, best_step=10,
        best_tokens=10 * B * C, best_val_loss=4.0, analysed_step=10, steps=15)
    assert s["tokens"] == 15 * B * C and s["planned_steps"] == STEPS
    at_stop = load_file(str(rec["out"] / "snapshot_075.safetensors"))
    assert all(torch.equal(at_stop[k], rec["state"][15][k]) for k in at_stop)
    assert read_safetensors_step(rec["out"] / "snapshot_075.safetensors") == 15


def started_trainer(data, state_dir, log=lambda *_: None) -> "training.Trainer":
    """A real Trainer after its start (step 0 evaluated and logged), without the loop: its records by hand."""
    run = training.Trainer(MC, cfg(), *data, log=log)
    ckpt = training.Checkpointer(state_dir, run.fingerprint, log=log)
    run.resume(ckpt)
    run.record_start(ckpt)
    return run


def test_summary_of_a_run_without_a_measured_interval(data, tmp_path):
    run = started_trainer(data, tmp_path / "state")  # only step 0, whose tokens/s is NaN
    s = training.summarise(run, [], 0.0)
    assert math.isnan(s["tokens_per_s"]) and math.isnan(s["mfu"])
    run.rows.append(dict(run.rows[0], tokens_per_s=123.0))
    assert training.summarise(run, [float("nan")], 2.0)["tokens_per_s"] == 123.0  # the log's rows, when no interval
    assert training.summarise(run, [5.0, 1.0, 6.0], 2.0)["tokens_per_s"] == 5.0  # the intervals' median first


def test_loss_monitor_recent_and_mean():
    mon = training.LossMonitor([], lambda it: 0.1)
    assert math.isnan(mon.recent()) and math.isnan(mon.take_mean())
    for it in range(25):
        mon.add(it, torch.tensor(float(it)))
    mon.flush()
    assert mon.recent() == pytest.approx(np.mean(range(5, 25)))  # the last 20
    assert mon.recent(3) == pytest.approx(23.0)
    assert mon.take_mean() == pytest.approx(12.0) and mon.interval == []
    mon.add(7, torch.tensor(float("inf")))
    with pytest.raises(training.TrainingDiverged, match=r"non-finite loss \(inf\) at step 8 \(iteration 7, lr=0.1\)"):
        mon.flush()


def test_checkpointer_publish_names_a_missing_snapshot_and_remove_is_idempotent(tmp_path):
    ckpt = training.Checkpointer(tmp_path / "state", "f", log=lambda *_: None)
    with pytest.raises(RuntimeError, match=r"^snapshot 25 \(step 5\) missing from .*state/snapshots$"):
        ckpt.publish(tmp_path / "out", {5: [25]})
    ckpt.remove()
    ckpt.remove()  # already gone (a person cleaned up): no error
    assert not (tmp_path / "state").exists()


def test_runtime_choices_by_hand():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for value, expected in [(True, True), (False, False), ("true", True), ("1", True), ("yes", True), ("TRUE", True),
                            ("false", False), ("0", False), ("no", False), ("No", False)]:
        assert training.resolve_compile(value, cpu, 10) == (expected, "configured"), value
    assert training.resolve_compile("auto", cpu, 10_000) == (
        False, "cpu auto: compile does not pay at this scale (see benchmarks/RESULTS.md)")
    assert training.resolve_compile("auto", cuda, 300) == (True, "cuda auto: total_steps=300 >= 300")
    assert training.resolve_compile("auto", cuda, 299) == (False, "cuda auto: total_steps=299 < 300")
    with pytest.raises(ValueError, match="^unknown compile setting 'maybe'$"):
        training.resolve_compile("maybe", cpu, 10)
    assert training.resolve_device("cpu") == cpu and training.resolve_device("cuda:1") == torch.device("cuda:1")
    assert training.resolve_device("auto") == (cuda if torch.cuda.is_available() else cpu)


def test_the_resume_fingerprint_covers_what_changes_the_run_and_nothing_else(data):
    base = training._fingerprint(MC, cfg(), {"dtype": "float32"}, [Path(p) for p in data])
    assert len(base) == 16 and base == training._fingerprint(MC, cfg(), {"dtype": "float32"}, [Path(p) for p in data])
    same = [cfg(threads=2), cfg(checkpoint_every=7), cfg(device="auto"), cfg(dtype="auto"), cfg(compile=True)]
    for c in same:  # how the run is executed (the resolved device/dtype are in `resolved`), not what it computes
        assert training._fingerprint(MC, c, {"dtype": "float32"}, [Path(p) for p in data]) == base, c
    other = [(MC, cfg(lr=1e-3), {"dtype": "float32"}), (MC, cfg(seed=1), {"dtype": "float32"}),
             (MC, cfg(tokens=B * C * 10), {"dtype": "float32"}), (MC, cfg(), {"dtype": "bfloat16"}),
             (GPTConfig(vocab_size=V, n_layer=3, d_model=32, n_head=4, context=C), cfg(), {"dtype": "float32"})]
    for mc, c, resolved in other:
        assert training._fingerprint(mc, c, resolved, [Path(p) for p in data]) != base, (c, resolved)
    assert training._fingerprint(MC, cfg(), {"dtype": "float32"}, [Path(data[0]), Path(data[0])]) != base


def test_take_mean_empties_the_interval():
    mon = training.LossMonitor([2.0, 4.0], lambda it: 0.1)
    assert mon.take_mean() == 3.0 and mon.interval == [] and math.isnan(mon.take_mean())


def test_eval_rows_and_progress_line(data, tmp_path):
    lines = []
    run = started_trainer(data, tmp_path / "state", log=lines.append)
    run.monitor = training.LossMonitor([1.5, 2.5], run.lr)
    vl = run.record_eval(5, 0.002, 1000.0)
    row = run.rows[-1]
    assert vl == row["val_loss"] and row["step"] == 5 and row["tokens"] == 5 * B * C
    assert (row["train_loss"], row["lr"], row["tokens_per_s"]) == (2.0, 0.002, 1000.0)
    assert 0 <= row["elapsed_s"] < 60
    eta = (STEPS - 5) * B * C / 1000.0
    assert lines[-1] == (f"[train] step 5/{STEPS} train_loss=2.0000 val_loss={vl:.4f} lr=2.00e-03 tok/s=1,000 "
                         f"elapsed={row['elapsed_s']:.0f}s eta={eta:.0f}s")


def test_optimizer_groups_and_hyperparameters():
    torch.manual_seed(0)
    model = GPT(MC)
    opt, params = training.build_optimizer(model, cfg(lr=2e-3, weight_decay=0.25), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() != 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters())) == len(params)
    assert [id(p) for p in params] == [id(p) for p in decay["params"] + no_decay["params"]]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.25, 0.0)
    for g in (decay, no_decay):
        assert (g["lr"], g["betas"], g["eps"]) == (2e-3, (0.9, 0.95), 1e-8)
    assert opt.defaults["fused"] is True  # torch's fused CPU kernel (the foreach fallback only where it is missing)


def test_summary_records_the_runtime_and_its_reasons(data, tmp_path):
    run = started_trainer(data, tmp_path / "state")
    s = training.summarise(run, [1000.0], 2.0)
    assert s["threads"] == torch.get_num_threads() and s["fingerprint"] == run.fingerprint
    assert (s["dtype"], s["dtype_reason"]) == ("float32", "configured")
    assert (s["compiled"], s["compile_reason"]) == (False, "configured")
    assert s["flops_formula"] == ("6*(V*d + 12*L*d^2) + 12*L*ctx*d  (matmul params incl. tied unembedding; "
                                  "attention scores/values term; fwd+bwd)")
    assert s["mfu"] == s["flops_per_token"] * 1000.0 / 2e12
    assert 0 <= s["elapsed_s"] < 60


def test_gradients_are_clipped_at_grad_clip_every_step_and_only_when_it_is_set(data, tmp_path, monkeypatch):
    """grad_clip is the max global norm of every step's gradient (the default 1.0 included); 0 or None: no clipping.
    The spy checks that the norm after clipping is the bound wherever the raw norm exceeded it."""
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kw):
        params = list(params)
        total = real(params, max_norm, **kw)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        calls.append((max_norm, float(total), float(after)))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    for clip, expected in ((1.0, STEPS), (0.05, STEPS), (0.0, 0), (None, 0)):
        calls.clear()
        train_model(MC, cfg(grad_clip=clip, eval_every=20, checkpoint_every=0), *data, tmp_path / f"o{clip}",
                    tmp_path / f"s{clip}", log=lambda *_: None)
        assert len(calls) == expected and all(c[0] == clip for c in calls), (clip, calls[:3])
        for bound, raw, after in calls:
            assert after == pytest.approx(min(raw, bound), rel=1e-4), (bound, raw, after)
        if clip == 0.05:
            assert sum(raw > clip for _, raw, _ in calls) > STEPS // 2  # the bound was active


def test_state_is_saved_every_checkpoint_every_steps_and_only_the_latest_is_kept(data, tmp_path, monkeypatch):
    """Resume states at every multiple of checkpoint_every below the last step (none with 0); each replaces the one
    before; its meta holds what a resumed run and a person reading it need."""
    saved = []
    real = training.Checkpointer.save

    def spy(self, step, *args, **kwargs):
        real(self, step, *args, **kwargs)
        saved.append((step, sorted(p.name for p in self.dir.iterdir())))

    monkeypatch.setattr(training.Checkpointer, "save", spy)
    for every, steps in ((4, [4, 8, 12, 16]), (7, [7, 14]), (1, list(range(1, STEPS))), (0, [])):
        saved.clear()
        train_model(MC, cfg(checkpoint_every=every), *data, tmp_path / f"o{every}", tmp_path / f"s{every}",
                    log=lambda *_: None)
        assert [s for s, _ in saved] == steps, every
        for step, files in saved:  # the previous state is gone the moment the new one is written
            assert files == ["latest.json", "snapshots", f"state_{step:06d}.json",
                             f"state_{step:06d}.safetensors"], files
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "12")
    with pytest.raises(training.InjectedCrash):
        train_model(MC, cfg(), *data, tmp_path / "crash", tmp_path / "st_crash", log=lambda *_: None)
    meta = json.loads((tmp_path / "st_crash" / "state_000012.json").read_text())
    assert meta["step"] == 12 and meta["total_steps"] == STEPS
    assert meta["resolved"] == {"device": "cpu", "dtype": "float32", "compile": False}
    assert [r["step"] for r in meta["rows"]] == [0, 5, 10]
    assert meta["best"] == {"step": 0, "val_loss": math.inf, "evals_since": 0}  # no patience: not tracked
    assert len(meta["interval_losses"]) == 2  # steps 11 and 12, since the row at step 10
    assert meta["fingerprint"] == json.loads((tmp_path / "st_crash" / "latest.json").read_text())["fingerprint"]


def test_an_unreadable_state_is_discarded_and_training_starts_fresh(data, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    train_model(MC, cfg(), *data, ref, tmp_path / "st_ref", log=lambda *_: None)
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "8")
    with pytest.raises(training.InjectedCrash):
        train_model(MC, cfg(), *data, tmp_path / "x", tmp_path / "st_x", log=lambda *_: None)
    monkeypatch.delenv("CW_CRASH_AFTER_STEP")
    (tmp_path / "st_x" / "state_000008.safetensors").write_bytes(b"truncated")
    stale = tmp_path / "st_x" / "snapshots" / "snapshot_999.safetensors"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"x")
    lines = []
    train_model(MC, cfg(), *data, tmp_path / "x", tmp_path / "st_x", log=lines.append)
    assert any("is unreadable; starting fresh" in line for line in lines)
    assert not any("resumed from" in line for line in lines) and not stale.exists()
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert summary["resumed_from_step"] == 0
    assert (tmp_path / "x" / "final.safetensors").read_bytes() == (ref / "final.safetensors").read_bytes()


def test_each_steps_loss_is_the_float32_loss_of_the_weights_before_it(data, tmp_path):
    """With dtype float32 every step's loss is the plain float32 cross-entropy of the model as it was before the step
    on that step's batch (no autocast to a lower precision on the way); the run's final file carries its step."""
    out = tmp_path / "not" / "yet" / "there"  # created with its parents
    rec = spied_run(data, out, tmp_path / "st", cfg())
    states = {0: seeded_init(0), **rec["state"]}
    for it in (0, 1, 7, STEPS - 1):
        m = GPT(MC)
        m.load_state_dict(states[it])
        with torch.no_grad():
            logits = m(rec["x"][it])[0]
        direct = float(F.cross_entropy(logits.reshape(-1, V), rec["y"][it].reshape(-1)))
        assert rec["loss"][it] == pytest.approx(direct, rel=1e-6, abs=1e-7), it
    assert read_safetensors_step(out / "final.safetensors") == STEPS


def test_the_run_writes_into_an_existing_folder_compiles_when_told_and_says_when_done(data, tmp_path, monkeypatch):
    """Snakemake creates a job's output folder before the job: training writes into it. compile: true hands the
    model to torch.compile (a spy here: compiling takes minutes on a CPU). The last log line names the steps, the
    analysed step and the final validation loss (the last row's)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: compiled.append(model) or model)
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.txt").write_text("kept")
    lines = []
    summary = train_model(MC, cfg(compile=True), *data, out, tmp_path / "st", log=lines.append)
    assert len(compiled) == 1 and isinstance(compiled[0], GPT) and summary["compiled"] is True
    assert (out / "unrelated.txt").read_text() == "kept"
    last = pd.read_parquet(out / "log.parquet").val_loss.iloc[-1]
    done = [line for line in lines if line.startswith("[train] done:")]
    assert len(done) == 1 and done[0].startswith(
        f"[train] done: {STEPS} steps (analysed: step {STEPS}), final val_loss={last:.4f}, "), done
    assert "final val_loss" in done[0] and lines[-1] == done[0]
    compiled.clear()
    train_model(MC, cfg(compile=False), *data, tmp_path / "o2", tmp_path / "st2", log=lambda *_: None)
    assert compiled == []


def test_the_adamw_fallback_keeps_every_hyperparameter(monkeypatch):
    """Where torch has no fused AdamW kernel (it raises), the foreach implementation is used with the same groups,
    lr, betas and eps."""
    real = torch.optim.AdamW

    def no_fused(params, **kw):
        if kw.get("fused"):
            raise RuntimeError("fused AdamW is not supported here")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    torch.manual_seed(0)
    model = GPT(MC)
    opt, params = training.build_optimizer(model, cfg(lr=2e-3, weight_decay=0.25), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.25, 0.0)
    for g in (decay, no_decay):
        assert (g["lr"], g["betas"], g["eps"]) == (2e-3, (0.9, 0.95), 1e-8)
    assert not opt.defaults["fused"] and opt.defaults["foreach"] is True
    assert len(params) == len(list(model.parameters()))


def test_token_files_too_short_are_refused_naming_the_split_and_a_one_step_budget_trains_one_step(data, tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.arange(C + 1, dtype=np.int32))  # one token short of context + 2
    np.save(tmp_path / "ok.npy", np.arange(C + 2, dtype=np.int32) % V)
    with pytest.raises(ValueError, match=rf"^train tokens \({C + 1}\) shorter than context\+2 \({C + 2}\)$"):
        training.Trainer(MC, cfg(), short, data[1], log=lambda *_: None)
    with pytest.raises(ValueError, match=rf"^val tokens \({C + 1}\) shorter than context\+2 \({C + 2}\)$"):
        training.Trainer(MC, cfg(), data[0], short, log=lambda *_: None)
    training.Trainer(MC, cfg(), tmp_path / "ok.npy", data[1], log=lambda *_: None)  # exactly context + 2: enough
    assert training.Trainer(MC, cfg(tokens=B * C), *data, log=lambda *_: None).total_steps == 1
    assert training.Trainer(MC, cfg(tokens=B * C - 1), *data, log=lambda *_: None).total_steps == 1  # at least one
    assert training.Trainer(MC, cfg(tokens=2 * B * C), *data, log=lambda *_: None).total_steps == 2
    # the evaluation windows: a file of context + 1 tokens has no window, context + 2 has one start (0) to spread
    with pytest.raises(ValueError, match=rf"^token file too short \({C + 1}\) for context {C}$"):
        training.eval_windows(C + 1, 10 * C, C)
    assert list(training.eval_windows(C + 2, 3 * C, C)) == [0, 0, 1]


def test_cpu_runs_ask_torch_for_deterministic_algorithms(monkeypatch):
    torch.use_deterministic_algorithms(False)
    try:
        rt = training.resolve_runtime(cfg(), STEPS)
        assert rt.device == torch.device("cpu")
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_wrongly_shaped_initial_embedding_is_refused_naming_both_shapes(tmp_path):
    path = tmp_path / "E.npy"
    np.save(path, np.zeros((V, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=rf"^init_embedding {path}: shape \({V}, 16\), expected \({V}, 32\) "
                                         r"\(vocab_size, d_model\)$"):
        training.build_model(MC, cfg(init_embedding=str(path)), torch.device("cpu"))


def fake_clock(monkeypatch, seconds_per_step: float) -> list[float]:
    """The trainer's clock replaced by one that stands still except during each optimisation step, which advances it
    by ``seconds_per_step``; returns that step length in a list, to be changed between runs."""
    now, tick = [1000.0], [seconds_per_step]

    class Clock:
        @staticmethod
        def perf_counter():
            return now[0]

    real_step = training.train_step

    def ticking_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        now[0] += tick[0]
        return out

    monkeypatch.setattr(training, "time", Clock)
    monkeypatch.setattr(training, "train_step", ticking_step)
    return tick


def test_speeds_progress_and_elapsed_by_a_clock_that_ticks_one_second_per_step(data, tmp_path, monkeypatch):
    """A fake clock that advances exactly 1 s during each optimisation step and never otherwise: every measured
    interval's tokens/s is B·C, the progress line every 3 s reports that rate and the seconds left, and elapsed_s
    is the number of steps taken (a resumed run adds the seconds before its crash)."""
    fake_clock(monkeypatch, 1.0)
    lines = []
    summary = train_model(MC, cfg(checkpoint_every=0), *data, tmp_path / "o", tmp_path / "s", log=lines.append,
                          progress_every_s=3.0)  # (no state saves: the first interval is the one of step 5's row)
    log = pd.read_parquet(tmp_path / "o" / "log.parquet")
    assert list(log.tokens_per_s[1:]) == [float(B * C)] * (len(log) - 1)
    assert list(log.elapsed_s) == [float(s) for s in log.step] and summary["elapsed_s"] == STEPS
    assert summary["tokens_per_s"] == B * C
    progress = [line for line in lines if line.startswith("[train] step ") and " tokens " in line]
    assert [int(line.split()[2].split("/")[0]) for line in progress] == [3, 6, 9, 12, 15, 18]
    assert progress[0] == f"[train] step 3/{STEPS} tokens {3 * B * C:,} loss {float(progress[0].split()[6]):.3f} " \
                          f"{B * C:,} tok/s eta {STEPS - 3}s"
    for line in progress:
        step = int(line.split()[2].split("/")[0])
        assert line.endswith(f"tokens {step * B * C:,} loss {line.split()[6]} {B * C:,} tok/s eta {STEPS - step}s")
    # a crash after step 8 and a resume: the seconds before the crash are kept
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "8")
    with pytest.raises(training.InjectedCrash):
        train_model(MC, cfg(), *data, tmp_path / "r", tmp_path / "rs", log=lambda *_: None)
    monkeypatch.delenv("CW_CRASH_AFTER_STEP")
    resumed = train_model(MC, cfg(), *data, tmp_path / "r", tmp_path / "rs", log=lambda *_: None)
    assert resumed["resumed_from_step"] == 8 and resumed["elapsed_s"] == STEPS


def test_step0_snapshot_carries_step_0_a_run_without_one_works_and_peak_is_measured_in_the_run_dtype(
        data, tmp_path, monkeypatch):
    peaks = []
    monkeypatch.setattr(training.hardware, "matmul_peak_tflops", lambda device, dtype: peaks.append(dtype) or 1.0)
    monkeypatch.setenv("CW_CRASH_AFTER_STEP", "")  # set but empty: no injected crash
    train_model(MC, cfg(), *data, tmp_path / "a", tmp_path / "sa", log=lambda *_: None)
    assert read_safetensors_step(tmp_path / "a" / "snapshot_000.safetensors") == 0
    assert peaks == [torch.float32]  # MFU's peak: the matmul rate in the dtype the run computes in
    train_model(MC, cfg(snapshot_fracs=[0.5, 1.0]), *data, tmp_path / "b", tmp_path / "sb", log=lambda *_: None)
    assert sorted(p.name for p in (tmp_path / "b").glob("snapshot_*")) == ["snapshot_050.safetensors",
                                                                           "snapshot_100.safetensors"]


def test_the_trainers_fingerprint_includes_the_resolved_dtype(data):
    """A state saved by a float32 run must not be resumed by a bfloat16 run of the same config (and vice versa)."""
    fp = {d: training.Trainer(MC, cfg(dtype=d), *data, log=lambda *_: None).fingerprint for d in ("float32", "bfloat16")}
    assert fp["float32"] != fp["bfloat16"]
    assert fp["float32"] == training._fingerprint(MC, cfg(), {"device": "cpu", "dtype": "float32", "compile": False},
                                                  [Path(p) for p in data])


def test_dtype_choices_and_their_reasons_by_hand(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for value, expected in (("float32", torch.float32), ("fp32", torch.float32), ("bfloat16", torch.bfloat16),
                            ("bf16", torch.bfloat16)):
        assert training.resolve_dtype(value, cpu) == (expected, "configured"), value
        assert training.resolve_dtype(value, cuda) == (expected, "configured"), value
    with pytest.raises(ValueError, match="^unknown dtype 'float16'$"):
        training.resolve_dtype("float16", cpu)
    for supported, expected in ((True, (torch.bfloat16, "cuda supports bf16")),
                                (False, (torch.float32, "cuda without bf16"))):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
        assert training.resolve_dtype("auto", cuda) == expected
    monkeypatch.setattr(training.hardware, "native_bf16_flags", lambda: {"avx512_bf16", "amx_bf16"})
    assert training.resolve_dtype("auto", cpu) == (torch.bfloat16, "cpu has native bf16 matmul (amx_bf16, avx512_bf16)")
    monkeypatch.setattr(training.hardware, "native_bf16_flags", lambda: set())
    assert training.resolve_dtype("auto", cpu) == (
        torch.float32, "cpu lacks amx_bf16/avx512_bf16 (bf16 matmul emulated, slow)")


def test_patience_counts_evaluations_since_the_best_and_a_tie_is_no_improvement(data, tmp_path, monkeypatch):
    """Planted validation losses 6, 5, 4, 4.5, 4.2 at steps 0–20: with patience 2 the two evaluations after the best
    (step 10) end the run at step 20, not earlier; a loss equal to the best (min_delta 0) is not an improvement, so
    with patience 1 it stops the run there; the stop is logged with the best step and loss."""
    s2 = json.loads((stopped_run(data, tmp_path / "p2", tmp_path / "s2", patience=2)["out"] / "summary.json")
                    .read_text())
    assert (s2["best_step"], s2["stop_step"], s2["stopped_early"]) == (10, 20, False)
    monkeypatch.setitem(PLANTED_VAL, 15, 4.0)  # a tie with the best
    lines = []
    rec = stopped_run(data, tmp_path / "tie", tmp_path / "st", patience=1, log=lines.append)
    s1 = json.loads((rec["out"] / "summary.json").read_text())
    assert (s1["best_step"], s1["stop_step"], s1["best_val_loss"]) == (10, 15, 4.0)
    assert "[train] early stop at step 15: no val_loss below 4.0000 (step 10) for 1 evaluations" in lines
    # best at step 5, then two evaluations without improvement: patience 2 stops at the second (step 15)
    monkeypatch.setitem(PLANTED_VAL, 10, 5.5)
    monkeypatch.setitem(PLANTED_VAL, 15, 5.2)
    rec = stopped_run(data, tmp_path / "two", tmp_path / "st2", patience=2)
    s = json.loads((rec["out"] / "summary.json").read_text())
    assert (s["best_step"], s["stop_step"], s["stopped_early"]) == (5, 15, True)


def test_a_bfloat16_step_computes_its_loss_under_bf16_autocast(data, tmp_path):
    rec = spied_run(data, tmp_path / "o", tmp_path / "s", cfg(dtype="bfloat16", tokens=B * C * 2, eval_every=2,
                                                             snapshot_fracs=[0.0, 1.0], checkpoint_every=0))
    m = GPT(MC)
    m.load_state_dict(seeded_init(0))
    with torch.no_grad():
        fp32 = float(F.cross_entropy(m(rec["x"][0])[0].reshape(-1, V), rec["y"][0].reshape(-1)))
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            bf16 = float(m(rec["x"][0], rec["y"][0])[1])
    assert rec["loss"][0] == pytest.approx(bf16, rel=1e-6) and abs(rec["loss"][0] - fp32) > 1e-5


def test_step0_train_loss_and_speeds_of_one_step_intervals_on_a_slow_clock(data, tmp_path, monkeypatch):
    """Step 0's row holds the untrained model's loss on the training windows. With a clock of 1,000 s per step and an
    evaluation every step, each interval is one step: tokens/s is B·C / 1000 exactly and the progress line's rate and
    seconds left follow (no floor on the rate); at 1 ms per step, B·C / 0.001 (no floor on the seconds)."""
    tick = fake_clock(monkeypatch, 1000.0)
    lines = []
    train_model(MC, cfg(eval_every=1, tokens=B * C * 4, checkpoint_every=0), *data, tmp_path / "o", tmp_path / "s",
                log=lines.append, progress_every_s=1000.0)
    log = pd.read_parquet(tmp_path / "o" / "log.parquet")
    assert log.train_loss.iloc[0] == pytest.approx(direct_loss(seeded_init(0), np.load(data[0]), 32), rel=1e-5)
    assert list(log.tokens_per_s[1:]) == [B * C / 1000.0] * 4
    progress = [line for line in lines if line.startswith("[train] step ") and " tokens " in line]
    assert [line.split(" tok/s eta ")[1] for line in progress] == ["3000s", "2000s", "1000s", "0s"]
    assert all(f" {B * C / 1000.0:,.0f} tok/s " in line for line in progress)
    tick[0] = 0.001
    train_model(MC, cfg(eval_every=1, tokens=B * C * 4, checkpoint_every=0), *data, tmp_path / "f", tmp_path / "sf",
                log=lambda *_: None)
    assert pd.read_parquet(tmp_path / "f" / "log.parquet").tokens_per_s[1:].tolist() == pytest.approx(
        [B * C / 0.001] * 4, rel=1e-9)
