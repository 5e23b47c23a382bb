"""Checkpoint runs (`model.source: checkpoint`, rule import_checkpoint): a model trained elsewhere analysed by the real
workflow. The round trip — a model trained by the workflow, exported to the Hugging Face format and imported as a
checkpoint run — gives the trained run's logits and every number of its analysis; a `transformers` GPT-2 with biases,
GPT-2's GELU and a byte-level BPE tokenizer given as vocab.json + merges.txt runs through to the report; bad
checkpoints are refused before any job, naming the file and what was expected."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from corpus_weights.corpus.tokenizing import load_tokenizer
from corpus_weights.measure.residual_space import forward_logits
from corpus_weights.model.checkpoints import (CheckpointError, check_vocabulary, read_checkpoint, read_spec,
                                              reinitialised_weights, tokenizer_files)
from corpus_weights.model.export import export_hf
from corpus_weights.model.gpt import GPTConfig
from corpus_weights.model.training import TrainConfig, build_model
from corpus_weights.model.weights import extract_weights, load_model_safetensors
from workflow_helpers import make_workdir, planned_rules, snakemake, write_config

T = "results/tiny"


def _numbers(x, path=""):
    """Every leaf of a metrics block as {path: value}."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_numbers(v, f"{path}/{k}"))
        return out
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(_numbers(v, f"{path}[{i}]"))
        return out
    return {path: x}


def _differences(a: dict, b: dict, tol: float, skip=()) -> list:
    diffs, n = [], 0
    for key, va in a.items():
        if any(s in key for s in skip):
            continue
        vb = b.get(key, "<missing>")
        if isinstance(va, (int, float)) and not isinstance(va, bool) and isinstance(vb, (int, float)):
            n += 1
            if not (math.isnan(va) and math.isnan(vb)) and abs(va - vb) > tol * max(1.0, abs(va)):
                diffs.append((key, va, vb))
        elif va != vb:
            diffs.append((key, va, vb))
    return diffs, n


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny workflow, one seed, no shuffled control, one K (the numbers compared are per model), trained in float32
    (so the trainer's evaluation and the numpy one agree to float32 rounding); then orig-s0 exported to the Hugging
    Face format with the run's tokenizer."""
    wd = make_workdir(tmp_path_factory.mktemp("checkpoint-run"),
                      {"train": {"seeds": [0], "dtype": "float32", "snapshots": [0.0, 1.0]},
                       "controls": {"shuffled": False}, "analysis": {"K": [8]}})
    proc = snakemake(wd, "--cores", "2", "results/report.html")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    export_hf(wd / f"{T}/default/train/orig-s0/snapshot_100.safetensors", wd / "exported",
              wd / f"{T}/default/tokens/tokenizer.json")
    return wd


@pytest.fixture(scope="module")
def round_trip(trained):
    (trained / "config/ckpt.yaml").write_text("experiment: ckpt\nmodel:\n  source: checkpoint\n  path: exported\n"
                                              "  format: hf\n")
    proc = snakemake(trained, "--cores", "2", "results/report.html", configfile=["config/test.yaml",
                                                                                  "config/ckpt.yaml"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return trained, proc.stdout + proc.stderr


@pytest.mark.workflow
def test_the_exported_model_imports_with_the_trained_models_logits(trained):
    model, cfg = load_model_safetensors(trained / f"{T}/default/train/orig-s0/snapshot_100.safetensors")
    weights, spec = read_checkpoint(trained / "exported", "hf")
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(3, cfg.context))
    with torch.no_grad():
        theirs, _ = model(torch.as_tensor(toks))
    ours = forward_logits(weights, toks, spec["n_head"], spec["activation"], spec["ln_eps"])
    assert np.abs(ours - theirs.double().numpy()).max() < 1e-5


@pytest.mark.workflow
def test_a_checkpoint_run_trains_nothing_and_reads_the_model_once(round_trip):
    wd, log = round_trip
    assert not (wd / f"{T}/ckpt/train").exists()
    assert (wd / f"{T}/ckpt/benchmarks/import_checkpoint/checkpoint.tsv").is_file()
    assert (wd / f"{T}/ckpt/analysis/checkpoint/snapshot_000/validation.json").is_file()  # step 0: re-initialised
    assert "import_checkpoint" in log and " train " not in log.replace("[train]", "")


@pytest.mark.workflow
def test_the_round_trip_gives_every_number_of_the_trained_models_analysis(round_trip):
    wd, _ = round_trip
    a = json.loads((wd / f"{T}/default/metrics.json").read_text())
    b = json.loads((wd / f"{T}/ckpt/metrics.json").read_text())
    identity = ("/label", "/run", "/tokens", "/source", "/path", "/format", "/weights")
    for ours, theirs in (("main-s0", "checkpoint"), ("step0", "step0")):
        # the validation loss of a trained run is the trainer's own evaluation (torch, float32); of a checkpoint the
        # same windows by the float64 numpy forward: equal to float32 rounding
        diffs, n = _differences(_numbers(a["models"][ours]), _numbers(b["models"][theirs]), 1e-6,
                                skip=identity + ("/val_loss", "/val_gain_over_unigram"))
        assert n > 100 and not diffs, (ours, diffs[:10])
        for key in ("val_loss", "val_gain_over_unigram"):
            va, vb = a["models"][ours]["corrected"]["ladder"][key], b["models"][theirs]["corrected"]["ladder"][key]
            assert abs(va - vb) < 2e-5, (ours, key, va, vb)
    diffs, n = _differences(_numbers(a["spectra"]), _numbers(b["spectra"]), 1e-6)
    assert n > 5 and not diffs, diffs
    assert a["corpus"] == b["corpus"]


@pytest.mark.workflow
def test_a_checkpoint_run_reports_its_origin_and_its_not_applicable_gates(round_trip):
    wd, _ = round_trip
    m = json.loads((wd / f"{T}/ckpt/metrics.json").read_text())
    assert m["config"]["checkpoint"]["path"] == "exported" and m["config"]["checkpoint"]["format"] == "hf"
    assert m["gates"]["G4"]["passed"] is None and "not applicable" in m["gates"]["G4"]["rule"]
    g2 = m["gates"]["G2"]
    assert g2["not_applicable"] == ["shuffled"] and g2["passed"] is not None
    assert {r["role"] for r in g2["values"]} == {"main", "step0", "shuffled"}
    assert m["models"]["checkpoint"]["source"] == "checkpoint" and "step0" in m["models"]
    html = (wd / "results/report.html").read_text()
    assert "a checkpoint trained elsewhere" in html and "<code>exported</code>" in html
    assert html.count('class="na">not applicable') == 1  # G4 (G2 is decided on its main and step-0 parts)
    assert "re-initialis" in html or "initialisation of the same architecture" in html
    assert len(m["verdicts"]) >= 5 and all(v["conclusion"] for v in m["verdicts"])
    assert "raise train.tokens" not in html and "config/note.yaml" not in html  # nothing here trains a checkpoint


# ----------------------------------------------------------------------------- a GPT-2 from transformers


def _byte_level_tokenizer(text_file, folder):
    """A GPT-2-style byte-level BPE trained on the tiny corpus, saved as vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(text_file)], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(folder))
    return tok


@pytest.mark.workflow
def test_a_transformers_gpt2_with_biases_and_its_byte_level_tokenizer_runs_to_the_report(trained):
    transformers = pytest.importorskip("transformers")
    folder = trained / "gpt2"
    tok = _byte_level_tokenizer(trained / "tests/data/tiny_corpus.txt", folder)
    torch.manual_seed(5)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=tok.get_vocab_size(),
                                  activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    (trained / "config/gpt2.yaml").write_text("experiment: gpt2\nmodel:\n  source: checkpoint\n  path: gpt2\n"
                                              "  format: hf\n")
    proc = snakemake(trained, "--cores", "2", f"{T}/gpt2/metrics.json",
                     configfile=["config/test.yaml", "config/gpt2.yaml"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    meta = json.loads((trained / f"{T}/gpt2/tokens/meta.json").read_text())
    assert meta["kind"] == "model's own" and meta["vocab_size"] == tok.get_vocab_size()
    ids = np.load(trained / f"{T}/gpt2/tokens/train.npy")
    first = (trained / "tests/data/tiny_corpus.txt").read_text().splitlines()[0]
    assert list(ids[:5]) == tok.encode(first).ids[:5]  # the corpus in the model's own ids
    wmeta = json.loads((trained / f"{T}/gpt2/weights/checkpoint/snapshot_100.json").read_text())
    assert wmeta["activation"] == "gelu_new" and wmeta["biases"] is True
    # its validation loss is the model's own: transformers' forward on the same evaluation windows
    val = json.loads((trained / f"{T}/gpt2/analysis/checkpoint/snapshot_100/validation.json").read_text())
    from corpus_weights.measure.loss_ladder import eval_windows
    val_ids = np.load(trained / f"{T}/gpt2/tokens/val.npy").astype(np.int64)
    starts = eval_windows(val_ids.size, 256, 16)
    batch = torch.as_tensor(val_ids[starts[:, None] + np.arange(17)[None, :]])
    with torch.no_grad():  # in float64, as the numpy forward: equal to ~1e-12 (GPT-2's GELU vs the exact one: 1e-5)
        logp = torch.log_softmax(model.double()(batch[:, :-1]).logits, -1)
    expected = -logp.gather(-1, batch[:, 1:, None]).mean().item()
    assert abs(val["val_loss"] - expected) < 1e-9
    m = json.loads((trained / f"{T}/gpt2/metrics.json").read_text())
    assert m["config"]["checkpoint"]["activation"] == "gelu_new"
    assert m["models"]["checkpoint"]["corrected"]["ladder"]["val_loss"] == pytest.approx(val["val_loss"])


# ----------------------------------------------------------------------------- refused before any job


def test_a_vocabulary_mismatch_is_refused_naming_both_sizes_and_trimming_is_opt_in():
    spec = dict(vocab_size=50304)
    with pytest.raises(CheckpointError, match=r"50,257 tokens.*50,304 embedding rows.*trim_vocab"):
        check_vocabulary(spec, 50257, False, "tok.json")
    assert check_vocabulary(spec, 50257, True, "tok.json") == 50257
    with pytest.raises(CheckpointError, match=r"50,305 tokens, the checkpoint 50,304"):
        check_vocabulary(spec, 50305, True, "tok.json")  # more tokens than rows: never


def test_the_tokenizer_is_found_next_to_the_checkpoint_or_refused_saying_what_was_expected(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(CheckpointError, match="tokenizer.json, or vocab.json and merges.txt"):
        tokenizer_files(tmp_path / "m", "hf")
    (tmp_path / "vocab.json").write_text("{}")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    assert tokenizer_files(tmp_path / "ckpt.pt", "nanogpt") == {"vocab": str(tmp_path / "vocab.json"),
                                                               "merges": str(tmp_path / "merges.txt")}
    (tmp_path / "m" / "tokenizer.json").write_text("{}")
    assert tokenizer_files(tmp_path / "m", "hf") == {"tokenizer_json": str(tmp_path / "m" / "tokenizer.json")}


def test_vocab_and_merges_give_the_tokenizers_own_ids(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\nthe dog sat <|endoftext|> on the log\n" * 20)
    tok = _byte_level_tokenizer(text, tmp_path / "tok")
    loaded, info = load_tokenizer(tokenizer_files(tmp_path / "tok" / "ckpt.pt", "nanogpt"))
    assert info["vocab_size"] == tok.get_vocab_size() and info["kind"] == "model's own"
    line = "the dog sat on the mat"
    assert loaded.encode(line).ids == tok.encode(line).ids
    assert loaded.encode("<|endoftext|>").ids == [tok.token_to_id("<|endoftext|>")]


def test_the_re_initialised_step_0_is_the_trainers_step_0_bit_for_bit():
    cfg = GPTConfig(vocab_size=40, n_layer=2, d_model=16, n_head=2, context=8)
    expected = extract_weights(build_model(cfg, TrainConfig(seed=3, tokens=1000), torch.device("cpu")), cfg)
    got = reinitialised_weights(dict(cfg.to_dict(), d_mlp=64), 3)
    assert got.keys() == expected.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    other = reinitialised_weights(dict(cfg.to_dict(), d_mlp=64), 4)
    assert not np.array_equal(other["L0.W_Q"], got["L0.W_Q"])


@pytest.mark.workflow
def test_bad_checkpoint_configs_stop_the_dry_run_naming_the_key_or_file(tmp_path):
    wd = make_workdir(tmp_path / "wd")
    cases = [({"model": {"source": "checkpoint"}}, ["in 'model.path': required", "in 'model.format': required"]),
             ({"model": {"source": "checkpoint", "path": "nowhere", "format": "hf"}},
              ["model.path nowhere", "config.json and model.safetensors"]),
             ({"model": {"path": "x"}}, ["in 'model.path': only used with model.source: checkpoint"]),
             ({"model": {"source": "checkpoint", "path": "m", "format": "gguf"}}, ["model.format"])]
    base = (wd / "config/test.yaml").read_text()
    for overrides, expected in cases:
        write_config(wd, overrides)
        try:
            proc = snakemake(wd, "-n", "results/report.html")
        finally:
            (wd / "config/test.yaml").write_text(base)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and all(e in out for e in expected), (overrides, out[-2000:])
        assert "Traceback" not in out


def test_a_hugging_face_folder_is_planned_from_its_config_alone(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=3, n_embd=24, n_head=3, n_positions=20, vocab_size=77)
    folder = tmp_path / "m"
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    spec = read_spec(folder, "hf")
    assert (spec["n_layer"], spec["d_model"], spec["n_head"], spec["context"], spec["vocab_size"]) == (3, 24, 3, 20, 77)
    assert spec["activation"] == "gelu_new" and spec["tied"]
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        read_spec(folder, "hf")


@pytest.mark.workflow
def test_a_checkpoint_run_plans_no_training(tmp_path):
    wd = make_workdir(tmp_path / "wd")
    export_dir = wd / "m"
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=258, n_layer=1, d_model=16, n_head=2, context=8)
    from corpus_weights.model.weights import save_model_safetensors
    from corpus_weights.model.gpt import GPT
    save_model_safetensors(GPT(cfg), wd / "own.safetensors")
    export_hf(wd / "own.safetensors", export_dir)
    # a tokenizer of the right size: the tiny corpus's word-level one (258 tokens)
    from corpus_weights.corpus.tokenizing import text_blocks, train_tokenizer
    tok, info = train_tokenizer(text_blocks(wd / "tests/data/tiny_corpus.txt"), "word", 300)
    assert info["vocab_size"] == 258
    tok.save(str(export_dir / "tokenizer.json"))
    write_config(wd, {"experiment": "ckpt", "model": {"source": "checkpoint", "path": "m", "format": "hf"}})
    jobs = planned_rules(wd, "results/report.html")
    assert "train" not in jobs and "extract_weights" not in jobs and "shuffle_tokens" not in jobs
    assert "trajectory" not in jobs
    assert jobs["import_checkpoint"] == 1 and jobs["validation_loss"] == 2
    assert jobs["align"] == jobs["measure"] == jobs["attention"] == 2


@pytest.mark.workflow
def test_a_nanogpt_checkpoint_with_its_tokenizer_beside_it_is_planned_from_its_model_args(tmp_path):
    transformers = pytest.importorskip("transformers")
    from test_checkpoints import nanogpt_state

    wd = make_workdir(tmp_path / "wd")
    tok = _byte_level_tokenizer(wd / "tests/data/tiny_corpus.txt", wd / "out")
    V_ = tok.get_vocab_size()
    cfg = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=4, n_positions=24, vocab_size=V_,
                                  activation_function="gelu")
    model = transformers.GPT2LMHeadModel(cfg)
    args = dict(n_layer=3, n_head=4, n_embd=32, block_size=24, bias=True, vocab_size=V_ + 7, dropout=0.0)
    state = nanogpt_state(model)
    for key in ("_orig_mod.transformer.wte.weight", "_orig_mod.lm_head.weight"):  # padded rows, as nanoGPT's
        state[key] = torch.cat([state[key], torch.zeros(7, 32)])
    torch.save({"model": state, "model_args": args}, wd / "out" / "ckpt.pt")
    write_config(wd, {"experiment": "nano", "model": {"source": "checkpoint", "path": "out/ckpt.pt",
                                                     "format": "nanogpt"}})
    proc = snakemake(wd, "-n", "results/report.html")
    assert proc.returncode != 0 and f"{V_:,} tokens, the checkpoint {V_ + 7:,} embedding rows" in proc.stdout + proc.stderr
    write_config(wd, {"model": {"trim_vocab": True}})
    jobs = planned_rules(wd, "results/report.html")
    assert jobs["import_checkpoint"] == 1 and "train" not in jobs
    proc = snakemake(wd, "--cores", "1", "results/tiny/nano/weights/checkpoint/snapshot_100.npz")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((wd / "results/tiny/nano/weights/checkpoint/snapshot_100.json").read_text())
    assert (meta["n_layer"], meta["d_model"], meta["n_head"], meta["context"]) == (3, 32, 4, 24)
    assert meta["vocab_size"] == V_ and meta["checkpoint_vocab_size"] == V_ + 7 and meta["format"] == "nanogpt"
    w = np.load(wd / "results/tiny/nano/weights/checkpoint/snapshot_100.npz")
    assert w["W_E"].shape == (V_, 32)
