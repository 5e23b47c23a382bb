"""Verdicts: the number apart from the conclusion, each conclusion from its own statistic and null, no conclusion from
a model that fails G1, and no verdict from a missing value. Inputs are built so that a wrong choice (another null,
another seed, an inverted rule) changes the answer."""
import copy

import numpy as np
import pandas as pd
import pytest

from corpus_weights.core import decision_rules as R
from corpus_weights.report.gates import evaluate_gates
from corpus_weights.core.ids import CORPUS_SPECTRA, WE_COVARIANCE, MissingValue
from corpus_weights.report.metrics import spectra_metrics
from corpus_weights.core.note_values import NOTE
from corpus_weights.report.verdicts import all_verdicts, random_direction_p

from test_gates import passing_models


def basis_test(z=5.0, planted_z=6.0, share=0.60, null=0.50):
    return dict(share=share, null_mean=null, null_sd=0.02, split_sd=0.01, total_sd=0.0224, z_total=z,
                n_null_draws=50, n_splits=5, planted_delta=0.05, planted_z=planted_z, planted_detected=planted_z > 3,
                mde=0.04, p_vs_null=0.02)


def attention(sig=3, fn_sig=2, fpr=0.0, planted=True, step0=0):
    part = lambda s: dict(significant=s, positive=s, negative=0, step0_qk_significant=step0, fpr_heads=0.01,  # noqa
                          fpr_models=fpr, n_fpr_models=20, planted_z=8.0 if planted else 1.0,
                          planted_detected=planted)
    return dict(heads=32, significant_bh=sig, token_space=part(sig), functional=part(fn_sig))


def main(seed, l0=0.05, **kw):
    return {"role": "main", "seed": seed,
            "corrected": {"corpus_basis_test": basis_test(**kw.get("basis", {})),
                          "attention": attention(**kw.get("attention", {}))},
            "note_protocol": {"r2_linear_all": 0.10, "l0_wq_alignment": l0, "l0_wq_alignment_null_mean": 0.1}}


def metrics(gates=None, d=64, mains=None):
    mains = mains or [main(0), main(1)]
    models = {f"main-s{mm['seed']}": mm for mm in mains}
    models["step0"] = {"role": "step0", "corrected": {}, "note_protocol": {}}
    return {"gates": gates or evaluate_gates(passing_models()), "K": 8, "K_over_d": 8 / d,
            "config": {"n_layer": 8, "d_model": d}, "models": models,
            "spectra": {"pr_symmetric": 1.05, "pr_symmetric_abs": 20.0, "pr_symmetric_signed": 0.1, "pr_ppmi": 30.0,
                        "pr_sigma_e": 12.0},
            "note_protocol": {"qk_cosines": [0.001, -0.002] * 4, "qk_cosine_null_mean": 0.0,
                              "qk_cosine_null_sd": 0.004, "r2_direct": -0.98, "r2_random": -1.0,
                              "cos_direct": 0.01, "cos_random": 0.0}}


def verdicts(m):
    return {v["id"]: v for v in all_verdicts(m, NOTE)}


def test_every_verdict_separates_the_number_from_the_conclusion():
    for v in verdicts(metrics()).values():
        assert v["number"] in (R.REPRODUCES, R.DOES_NOT_REPRODUCE, R.UNINFORMATIVE)
        assert v["conclusion"] in R.CONCLUSIONS and v["conclusion"] == v["status"]
        for key in ("number_text", "statistic", "null", "power", "rule", "finding"):
            assert v[key], (v["id"], key)


@pytest.mark.parametrize("z, planted_z, expected", [
    ((5.0, 4.0), (6.0, 6.0), R.SUPPORTED),           # every seed beyond its null on the whole uncertainty
    ((1.0, 0.5), (6.0, 6.0), R.CONTRADICTED),        # nothing, although a planted increase would be seen
    ((1.0, 0.5), (6.0, 2.0), R.NOT_DEMONSTRATED),    # nothing, and one seed could not have seen it
    ((5.0, 1.0), (6.0, 6.0), R.NOT_DEMONSTRATED),    # the seeds disagree
])
def test_corpus_basis_conclusion(z, planted_z, expected):
    m = metrics(mains=[main(0, basis=dict(z=z[0], planted_z=planted_z[0])),
                       main(1, basis=dict(z=z[1], planted_z=planted_z[1]))])
    v = verdicts(m)["corpus_basis"]
    assert v["conclusion"] == expected, v["finding"]
    assert v["number"] == R.DOES_NOT_REPRODUCE  # ours 0.10 under the note's protocol vs its 0.383
    assert "K/d" in v["number_text"]


def test_corpus_basis_reads_z_on_the_whole_uncertainty_not_the_draw_sd():
    # share 0.56 vs null 0.50: z = 3 on the null-draw sd alone (0.02), but only 2.7 with the splits (0.0224)
    mm = [main(s, basis=dict(z=(0.56 - 0.50) / 0.0224, share=0.56)) for s in (0, 1)]
    assert verdicts(metrics(mains=mm))["corpus_basis"]["conclusion"] == R.CONTRADICTED


def test_corpus_basis_number_reproduces_like_for_like():
    m = metrics()
    for mm in m["models"].values():
        if mm["role"] == "main":
            mm["note_protocol"]["r2_linear_all"] = 0.40
    assert verdicts(m)["corpus_basis"]["number"] == R.REPRODUCES


@pytest.mark.parametrize("kw, expected", [
    (dict(sig=3), R.CONTRADICTED),                                   # routing found in every seed
    (dict(sig=0, fn_sig=0), R.SUPPORTED),                             # nothing, and a planted head is seen
    (dict(sig=0, fn_sig=0, planted=False), R.NOT_DEMONSTRATED),       # nothing, but no power
    (dict(sig=0, fn_sig=2), R.NOT_DEMONSTRATED),                      # the functional test disagrees
    (dict(sig=3, fpr=0.2), R.NOT_DEMONSTRATED),                       # a rule with a false-positive rate of 20 %
    (dict(sig=3, fpr=0.1), R.CONTRADICTED),                           # 2 of 20: within chance at 5 %
])
def test_attention_conclusion(kw, expected):
    m = metrics(mains=[main(0, attention=kw), main(1, attention=kw)])
    assert verdicts(m)["attention"]["conclusion"] == expected


def test_attention_needs_every_seed():
    m = metrics(mains=[main(0, attention=dict(sig=3)), main(1, attention=dict(sig=0, fn_sig=0))])
    assert verdicts(m)["attention"]["conclusion"] == R.NOT_DEMONSTRATED


def test_attention_number_is_uninformative_inside_its_null_and_not_outside():
    m = metrics()
    assert verdicts(m)["attention"]["number"] == R.UNINFORMATIVE
    m["note_protocol"]["qk_cosines"][3] = 0.02  # 5 null sd out
    assert verdicts(m)["attention"]["number"] == R.DOES_NOT_REPRODUCE


def test_depth_is_never_concluded_from_one_depth_and_its_number_follows_the_pr():
    m = metrics()
    v = verdicts(m)["depth"]
    assert v["conclusion"] == R.NOT_DEMONSTRATED and v["number"] == R.REPRODUCES
    assert "[1, 4, 7, 10]" in v["finding"] and "real depth is 8" in v["finding"]
    m["spectra"]["pr_symmetric"] = 1.38  # another corpus: the same card cannot flip to "holds"
    v = verdicts(m)["depth"]
    assert v["conclusion"] == R.NOT_DEMONSTRATED and v["number"] == R.DOES_NOT_REPRODUCE
    m["spectra"]["pr_symmetric_abs"] = 22.0  # |λ| reading gives L_opt = 8 = the real depth: the card says so
    assert "|eigenvalues| reading happens to give" in verdicts(m)["depth"]["finding"]


@pytest.mark.parametrize("d, cos, expected", [
    (64, (0.9, 0.8), R.SUPPORTED),
    (64, (0.05, 0.10), R.CONTRADICTED),        # inside the null; the note's 0.75 would not be at d = 64
    (64, (0.33, 0.05), R.NOT_DEMONSTRATED),    # seeds disagree (0.33 is beyond the 99th percentile at d = 64)
    (4, (0.3, 0.2), R.NOT_DEMONSTRATED),       # at d = 4 even 0.75 is a likely random |cos|: no power
])
def test_l0_conclusion_from_the_exact_random_direction_null(d, cos, expected):
    m = metrics(d=d, mains=[main(0, l0=cos[0]), main(1, l0=cos[1])])
    assert verdicts(m)["l0_alignment"]["conclusion"] == expected


def test_random_direction_p_planted():
    # d = 3: |cos| with a fixed axis is uniform on [0, 1]; d = 2: P(|cos θ| ≥ c) = 1 − 2 arcsin(c)/π
    for c in (0.1, 0.5, 0.9):
        assert random_direction_p(c, 3) == pytest.approx(1 - c, abs=1e-12)
        assert random_direction_p(c, 2) == pytest.approx(1 - 2 * np.arcsin(c) / np.pi, abs=1e-12)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, 16))
    cos = np.abs(x[:, 0]) / np.linalg.norm(x, axis=1)
    assert random_direction_p(0.5, 16) == pytest.approx((cos >= 0.5).mean(), abs=3e-3)


def test_norm_matched_reproduces_uninformatively_and_concludes_nothing():
    v = verdicts(metrics())["norm_matched"]
    assert v["number"] == R.UNINFORMATIVE and v["conclusion"] == R.NOT_DEMONSTRATED


def test_no_conclusion_from_a_model_that_fails_g1():
    bad = passing_models()
    bad[1]["ladder"]["learned_fraction"] = 0.1
    v = verdicts(metrics(gates=evaluate_gates(bad)))
    for claim in ("corpus_basis", "attention", "depth", "l0_alignment", "norm_matched"):
        assert v[claim]["conclusion"] == R.WITHHELD, claim
        assert "G1" in v[claim]["reason"] and "main-s1" in v[claim]["reason"], v[claim]["reason"]
        assert v[claim]["conclusion_ungated"] != R.WITHHELD
        assert v[claim]["number"] != R.WITHHELD  # the number is still stated


def test_each_gate_withholds_only_the_claims_that_need_it():
    bad = passing_models()
    bad[3]["controls"]["bigram"]["z"] = 6.0  # G2: the shuffled control shows bigrams
    v = verdicts(metrics(gates=evaluate_gates(bad)))
    assert v["attention"]["conclusion"] == R.WITHHELD and "G2" in v["attention"]["reason"]
    assert v["corpus_basis"]["conclusion"] == R.SUPPORTED
    bad = passing_models()
    bad[0]["alignment"]["vocab_map_null"]["p"] = 0.2  # G3: the map is not better than chance
    v = verdicts(metrics(gates=evaluate_gates(bad)))
    assert v["corpus_basis"]["conclusion"] == R.WITHHELD and "main-s0" in v["corpus_basis"]["reason"]
    assert v["attention"]["conclusion"] == R.CONTRADICTED


@pytest.mark.parametrize("path, name", [
    (("corrected", "corpus_basis_test", "z_total"), "z_total"),
    (("corrected", "corpus_basis_test", "null_sd"), "null_sd"),
    (("corrected", "attention", "token_space", "fpr_models"), "fpr_models"),
    (("corrected", "attention", "functional"), "functional"),
    (("note_protocol", "l0_wq_alignment"), "l0_wq_alignment"),
    (("note_protocol", "r2_linear_all"), "r2_linear_all"),
])
def test_a_missing_value_raises_naming_it(path, name):
    m = metrics()
    target = m["models"]["main-s1"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = None
    where = r"\.".join(["models", "main-s1", *path[:-1]])
    with pytest.raises(MissingValue, match=f"^{name} is missing from {where}$"):
        all_verdicts(m, NOTE)


def test_a_missing_spectrum_raises_naming_it():
    names = list(CORPUS_SPECTRA.values())
    spectra = pd.DataFrame({"name": names, "pr": np.arange(1.0, len(names) + 1)})
    weights = pd.DataFrame({"name": [WE_COVARIANCE], "pr": [3.0]})
    out = spectra_metrics(spectra, weights)
    assert out["pr_ppmi"] == 4.0 and out["L_opt_ppmi"] == 2 and out["pr_we_cov"] == 3.0
    for missing in names:
        with pytest.raises(MissingValue, match=missing.replace("^", r"\^").replace("(", r"\(").replace(")", r"\)")
                           .replace("+", r"\+").replace("|", r"\|")):
            spectra_metrics(spectra[spectra["name"] != missing], weights)
    m = metrics()
    del m["spectra"]["pr_ppmi"]
    with pytest.raises(MissingValue, match="pr_ppmi"):
        all_verdicts(m, NOTE)


def test_intervention_gate_reuses_g1s_rule():
    from corpus_weights.report.metrics import intervention_metrics
    runs = [dict(init=init, seed=s, measures=dict(final_val_loss=loss, learned_fraction=0.6, tokens_to_bigram=None,
                                                 tokens_to_random_final=None, aligned_share_by_snapshot={}))
            for s in (0, 1) for init, loss in (("random", 5.9), ("corpus", 5.5 + 0.01 * s), ("corpus_permuted", 5.8))]
    ok = intervention_metrics(copy.deepcopy(runs), ladder_unigram=6.5)
    assert ok["gate"]["passed"] and ok["verdict"]["conclusion"] == R.SUPPORTED
    # 0.29 nats below unigram: G1's own threshold (0.3) must refuse it, as the gate G1 would
    bad = intervention_metrics(copy.deepcopy(runs), ladder_unigram=5.5 + 0.29)
    assert not bad["gate"]["passed"] and bad["verdict"]["conclusion"] == R.WITHHELD
    assert "corpus-s0" in bad["gate"]["reason"]


def test_fpr_consistency_by_the_binomial_tail():
    # 20 models at 5 %: P(≥ 2) = 0.264, P(≥ 3) = 0.075, P(≥ 4) = 0.016
    assert R.fpr_consistent(0.0, 20) and R.fpr_consistent(0.10, 20) and R.fpr_consistent(0.15, 20)
    assert not R.fpr_consistent(0.20, 20) and not R.fpr_consistent(0.5, 20)
    assert not R.fpr_consistent(0.10, 200)  # 20 of 200 is far above 5 %


def test_corpus_basis_power_is_needed_only_when_nothing_is_found():
    mm = [main(s, basis=dict(z=18.9, share=1.0, null=0.38)) for s in (0, 1)]
    for m in mm:
        m["corrected"]["corpus_basis_test"].update(planted_z=None, mde=None)  # no room to plant at a share of 1
    assert verdicts(metrics(mains=mm))["corpus_basis"]["conclusion"] == R.SUPPORTED
    for m in mm:
        m["corrected"]["corpus_basis_test"]["z_total"] = 1.0
    with pytest.raises(MissingValue, match="planted_z"):
        verdicts(metrics(mains=mm))


@pytest.mark.parametrize("control, expected", [(0, R.CONTRADICTED), (2, R.CONTRADICTED), (16, R.NOT_DEMONSTRATED)])
def test_attention_routing_only_beyond_the_token_shuffled_control(control, expected):
    """A shuffled-corpus model cannot learn bigram routing: heads it shows are what the test finds without bigrams."""
    m = metrics(mains=[main(0, attention=dict(sig=10)), main(1, attention=dict(sig=16))])
    m["models"]["shuffled"] = {"role": "shuffled", "corrected": {"attention": attention(sig=control)},
                               "note_protocol": {}}
    v = verdicts(m)["attention"]
    assert v["conclusion"] == expected, v["finding"]
    assert f"token-shuffled control (shuffled): {control} / 32" in v["statistic"]
    if expected == R.NOT_DEMONSTRATED:
        assert "cannot learn bigram routing, shows 16" in v["finding"]


# --- the cards as the report prints them: every field of every verdict, per branch of its rule ---------------------
# The expected cards are tests/data/verdict_cards.json, written by `python tests/test_verdicts.py --write-cards` and
# read by hand before committing (each scenario's texts must say what its numbers say). A change to a card's wording
# shows here as a diff to review, not as a silent change of what the report tells its reader.

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from corpus_weights.report.verdicts import (fmt, intervention_verdict, k_mapping, mean_sd, pm,  # noqa: E402
                                            seeds_text)

CARDS = Path(__file__).parent / "data" / "verdict_cards.json"


def _shuffled(sig):
    return {"role": "shuffled", "corrected": {"attention": attention(sig=sig, fn_sig=1)}, "note_protocol": {}}


def _failing_g1():
    from test_gates import passing_models
    models = passing_models()
    models[1]["ladder"].update(learned_fraction=0.31)
    return evaluate_gates(models)


def card_scenarios() -> dict:
    """Each scenario: the metrics a verdict reads, built so that every value on the card is distinct."""
    s = {}
    s["basis supported, attention routes, l0 supported"] = metrics(mains=[
        main(0, l0=0.61, basis=dict(z=5.25, planted_z=6.5, share=0.625, null=0.5)),
        main(1, l0=0.55, basis=dict(z=4.75, planted_z=7.25, share=0.6375, null=0.5125))])
    s["basis contradicted, attention supported, l0 contradicted"] = metrics(d=96, mains=[
        main(0, l0=0.11, basis=dict(z=0.5, planted_z=6.5), attention=dict(sig=0, fn_sig=0)),
        main(1, l0=0.09, basis=dict(z=-1.25, planted_z=5.5), attention=dict(sig=0, fn_sig=0))])
    s["basis and l0 not demonstrated (seeds disagree), attention uncalibrated"] = metrics(mains=[
        main(0, l0=0.61, basis=dict(z=5.5, planted_z=6.0), attention=dict(fpr=0.3)),
        main(1, l0=0.09, basis=dict(z=1.5, planted_z=6.0), attention=dict(fpr=0.3))])
    s["basis not powered, attention not powered"] = metrics(mains=[
        main(0, basis=dict(z=0.25, planted_z=2.5), attention=dict(sig=0, fn_sig=0, planted=False)),
        main(1, basis=dict(z=0.75, planted_z=1.5), attention=dict(sig=0, fn_sig=0, planted=False))])
    m = metrics(mains=[main(0, attention=dict(sig=2, fn_sig=0)), main(1, attention=dict(sig=3, fn_sig=0))])
    m["models"]["shuffled"] = _shuffled(4)
    s["attention unspecific (the shuffled control shows more heads)"] = m
    m = metrics(mains=[main(0, attention=dict(sig=5, fn_sig=0)), main(1, attention=dict(sig=6, fn_sig=0))])
    m["models"]["shuffled"] = _shuffled(1)
    s["attention beyond the shuffled control, nothing on text"] = m
    m = metrics(gates=_failing_g1(), mains=[main(0, basis=dict(z=0.5)), main(1, basis=dict(z=0.5))])
    m["note_protocol"].update(qk_cosines=[0.1, -0.002], r2_direct=-0.5, r2_random=-0.25, cos_direct=0.25,
                              cos_random=0.375)
    m["spectra"].update(pr_symmetric=1.5, pr_symmetric_abs=24.0)
    s["withheld by G1; note cosines outside their null; norm-matched off the identity"] = m
    m = metrics(mains=[main(0, l0=0.61)])
    m["config"]["n_layer"] = 1
    s["one seed; the depth the note's reading gives"] = m
    return s


def intervention_scenarios() -> dict:
    def diffs(corpus_mean, ci, permuted_mean):
        return {"final_val_loss": {"corpus": {"mean": corpus_mean, "ci95": ci},
                                   "corpus_permuted": {"mean": permuted_mean}}}
    return {"helps, identities matter": (diffs(-0.125, [-0.25, -0.0625], 0.0625), None),
            "helps, permuted rows help more": (diffs(-0.125, [-0.25, -0.0625], -0.5), None),
            "hurts": (diffs(0.375, [0.125, 0.625], None), None),
            "interval across zero": (diffs(-0.0625, [-0.25, 0.125], 0.5), None),
            "one seed: no interval": ({"final_val_loss": {"corpus": {"mean": -0.125, "ci95": None}}}, None),
            "no corpus variant": ({"final_val_loss": {}}, None),
            "withheld": (diffs(-0.125, [-0.25, -0.0625], 0.0625), "G1 fails for corpus-s1")}


def all_cards() -> dict:
    out = {name: all_verdicts(m, NOTE) for name, m in card_scenarios().items()}
    out.update({f"intervention: {name}": [intervention_verdict(d, reason)]
                for name, (d, reason) in intervention_scenarios().items()})
    return json.loads(json.dumps(out))  # as metrics.json stores them


def test_every_card_field_as_reviewed():
    expected = json.loads(CARDS.read_text())
    got = all_cards()
    assert sorted(got) == sorted(expected)
    for scenario, cards in got.items():
        assert len(cards) == len(expected[scenario]), scenario
        for card, want in zip(cards, expected[scenario]):
            for key in sorted(set(card) | set(want)):
                assert card.get(key, "<missing>") == want.get(key, "<missing>"), (scenario, card["id"], key)


def test_the_scenarios_reach_every_conclusion():
    seen = {(c["id"], c["conclusion_ungated"]) for cards in all_cards().values() for c in cards}
    for claim in ("corpus_basis", "attention", "l0_alignment", "intervention"):
        for conclusion in (R.SUPPORTED, R.CONTRADICTED, R.NOT_DEMONSTRATED):
            assert (claim, conclusion) in seen, (claim, conclusion)
    statuses = {(c["id"], c["conclusion"]) for cards in all_cards().values() for c in cards}
    assert ("corpus_basis", R.WITHHELD) in statuses and ("intervention", R.WITHHELD) in statuses


def test_fmt_by_hand():
    assert fmt(None) == "—" and fmt("text") == "text" and fmt(float("nan")) == "—" and fmt(float("inf")) == "—"
    assert fmt(1234567) == "1,234,567" and fmt(True) == "1.000"  # a bool is not a count
    assert fmt([0.5, None, 3]) == "[0.500, —, 3]"
    assert fmt([0.12345], 2) == "[0.12]"
    assert fmt(999.5) == "999.500" and fmt(1000.0) == "1,000" and fmt(123456789.4) == "123,456,789"
    assert fmt(1e9) == "1e+09" and fmt(999999999.0) == "999,999,999"
    assert fmt(0.0) == "0.000" and fmt(0.001) == "0.001" and fmt(0.000999) == "0.000999"
    assert fmt(0.0099, 2) == "0.0099" and fmt(0.01, 2) == "0.01" and fmt(-0.25) == "-0.250"
    assert fmt(1.5) == "1.500" and fmt(2.5, 1) == "2.5"


def test_pm_mean_sd_and_seeds_text_by_hand():
    assert pm({"mean": 0.5, "sd": None}) == "0.500" and pm({"mean": 0.5}) == "0.500"
    assert pm({"mean": 0.5, "sd": 0.25}) == "0.500 ± 0.250"
    assert pm({"mean": 0.5, "sd": 0.25}, 2, spans="2 seeds") == "0.50 ± 0.25 (sd over 2 seeds)"
    assert pm({"mean": 0.123456}, 2) == "0.12"
    assert mean_sd([]) == {"mean": None, "sd": None, "n": 0}
    assert mean_sd([None, float("nan")]) == {"mean": None, "sd": None, "n": 0}
    assert mean_sd([2.0, None]) == {"mean": 2.0, "sd": None, "n": 1}
    assert mean_sd([1.0, 2.0, float("nan"), 3.0]) == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert (seeds_text(1), seeds_text(2), seeds_text(0)) == ("1 seed", "2 seeds", "0 seeds")


def test_k_mapping_by_hand():
    note = {"K": 32, "accounting": {"d": 256}}
    assert k_mapping({"config": {"d_model": 64}, "K": 8}, note) == "K = 8 of d = 64 (K/d = 0.125, the note’s 32/256)"
    assert k_mapping({"config": {"d_model": 96}, "K": 8}, note) == (
        "K = 8 of d = 96 (K/d = 0.083); the note: K = 32 of d = 256 (K/d = 0.125) — not the same K/d")


def test_note_cosines_inside_their_null_at_the_bound():
    from corpus_weights.report.verdicts import _note_cosines_inside_null
    z = R.VERDICT_THRESHOLDS["inside_null_z"]
    assert _note_cosines_inside_null({"qk_cosines": [0.5 + 0.25 * z * 0.999, 0.5], "qk_cosine_null_mean": 0.5,
                                      "qk_cosine_null_sd": 0.25})
    assert not _note_cosines_inside_null({"qk_cosines": [0.5, 0.5 + 0.25 * z], "qk_cosine_null_mean": 0.5,
                                          "qk_cosine_null_sd": 0.25})
    assert not _note_cosines_inside_null({"qk_cosines": [0.5 - 0.25 * z * 1.001], "qk_cosine_null_mean": 0.5,
                                          "qk_cosine_null_sd": 0.25})
    assert not _note_cosines_inside_null({"qk_cosines": [0.0], "qk_cosine_null_mean": 0.0, "qk_cosine_null_sd": 0.0})
    for key in ("qk_cosines", "qk_cosine_null_mean", "qk_cosine_null_sd"):
        values = {"qk_cosines": [0.0], "qk_cosine_null_mean": 0.0, "qk_cosine_null_sd": 1.0}
        del values[key]
        with pytest.raises(MissingValue, match=f"^{key} is missing from note_protocol$"):
            _note_cosines_inside_null(values)


def test_every_required_value_is_named_with_its_place():
    from corpus_weights.report import verdicts as V
    with pytest.raises(KeyError, match="^'metrics: no main model among step0, x'$"):
        V.main_models({"models": {"step0": {"role": "step0"}, "x": {"role": "shuffled"}}})
    with pytest.raises(MissingValue, match=r"^corpus_basis_test is missing from models\.m\.corrected$"):
        V.basis_test("m", {"corrected": {}})
    with pytest.raises(MissingValue, match=r"^attention is missing from models\.m\.corrected$"):
        V.attention_test("m", {"corrected": {}})
    with pytest.raises(MissingValue, match=r"^heads is missing from models\.m\.corrected\.attention$"):
        V.attention_test("m", {"corrected": {"attention": {}}})
    t = V.basis_test("m", {"corrected": {"corpus_basis_test": basis_test(z=5.0, planted_z=6.0)}})
    assert (t["planted_z"], t["mde"]) == (6.0, 0.04)


def test_rules_at_their_bounds():
    """Each verdict's comparisons exactly at the value where the rule turns (strict or not, as the rule says)."""
    v = verdicts(metrics(mains=[main(0, basis=dict(z=5.0, share=0.5, null=0.5)), main(1)]))  # z > 3, no excess
    assert v["corpus_basis"]["conclusion"] == R.NOT_DEMONSTRATED
    at = R.VERDICT_THRESHOLDS["min_z"]
    v = verdicts(metrics(mains=[main(0, basis=dict(z=0.5, planted_z=at)), main(1, basis=dict(z=0.5))]))
    assert v["corpus_basis"]["conclusion"] == R.NOT_DEMONSTRATED  # a planted z of exactly 3 is not detected
    # attention: one head, no shuffled control, is found; as many heads as the control is not
    assert verdicts(metrics(mains=[main(0, attention=dict(sig=1)), main(1, attention=dict(sig=1))]))[
        "attention"]["conclusion"] == R.CONTRADICTED
    m = metrics(mains=[main(0, attention=dict(sig=1, fn_sig=0)), main(1, attention=dict(sig=1, fn_sig=0))])
    m["models"]["shuffled"] = _shuffled(1)
    card = verdicts(m)["attention"]
    assert card["conclusion"] == R.NOT_DEMONSTRATED and "shows 1: the test also detects" in card["finding"]
    assert card["finding"].endswith("On real text no head of the main models is significant.")
    m = metrics(mains=[main(0, attention=dict(sig=2, fn_sig=1)), main(1, attention=dict(sig=2, fn_sig=0))])
    m["models"]["shuffled"] = _shuffled(2)
    m["models"]["shuffled-2"] = _shuffled(0)
    card = verdicts(m)["attention"]
    assert card["finding"].endswith("so it cannot tell routing here.")  # a head on text: no such sentence
    assert card["statistic"].endswith("; the token-shuffled control (shuffled): 2 / 32 in token space, 1 on text; "
                                      "the token-shuffled control (shuffled-2): 0 / 32 in token space, 1 on text")
    m2 = metrics(mains=[main(0, attention=dict(sig=0, fn_sig=1)), main(1, attention=dict(sig=3, fn_sig=0))])
    m2["models"]["shuffled"] = _shuffled(2)  # a seed without heads: the seeds disagree, whatever the control shows
    assert verdicts(m2)["attention"]["finding"].startswith("The seeds disagree")
    m["models"]["shuffled"]["corrected"]["attention"]["token_space"]["significant"] = None
    with pytest.raises(MissingValue, match=r"^significant is missing from models\.shuffled\.corrected\.attention\."
                                           r"token_space$"):
        all_verdicts(m, NOTE)
    # depth: a PR of 0 gives no L_opt (shown as —)
    m = metrics()
    m["spectra"]["pr_symmetric"] = 0.0
    card = verdicts(m)["depth"]
    assert "0.000 → L_opt = — →" in card["number_text"]
    assert card["statistic"].startswith("C + Cᵀ, squared eigenvalues: PR 0.000 → L_opt —;")
    m["spectra"]["pr_ppmi"] = None
    with pytest.raises(MissingValue, match="^pr_ppmi is missing from spectra$"):
        all_verdicts(m, NOTE)


def test_corpus_basis_power_missing_is_named_and_unmeasurable_power_said():
    m = metrics(mains=[main(0, basis=dict(z=0.5)), main(1, basis=dict(z=0.5))])
    m["models"]["main-s1"]["corrected"]["corpus_basis_test"]["planted_z"] = None
    with pytest.raises(MissingValue, match=r"^planted_z is missing from models\.main-s1\.corrected\.corpus_basis_test$"):
        all_verdicts(m, NOTE)
    m = metrics()  # found in every seed: the power is not needed, and its absence is said
    m["models"]["main-s1"]["corrected"]["corpus_basis_test"]["planted_z"] = None
    card = verdicts(m)["corpus_basis"]
    assert card["conclusion"] == R.SUPPORTED
    assert "z = 6.00, — (NOT detected; not measurable where the share leaves no room); smallest" in card["power"]


def test_norm_matched_reads_both_values_with_the_absolute_tolerance():
    tol = R.VERDICT_THRESHOLDS["reproduce_abs_tol"]
    for r2d, r2r, expected in [(NOTE["r2_direct"] + 0.9 * tol, NOTE["r2_random"] - 0.9 * tol, R.UNINFORMATIVE),
                               (NOTE["r2_direct"], NOTE["r2_random"] + 1.1 * tol, R.DOES_NOT_REPRODUCE),
                               (NOTE["r2_direct"] - 1.1 * tol, NOTE["r2_random"], R.DOES_NOT_REPRODUCE)]:
        m = metrics()
        m["note_protocol"].update(r2_direct=r2d, r2_random=r2r)
        assert verdicts(m)["norm_matched"]["number"] == expected, (r2d, r2r)
    for key in ("r2_direct", "r2_random"):
        m = metrics()
        m["note_protocol"][key] = None
        with pytest.raises(MissingValue, match=f"^{key} is missing from note_protocol$"):
            all_verdicts(m, NOTE)


def test_intervention_rule_at_its_bounds():
    def card(ci, corpus_mean=-0.125, permuted=0.0625):
        d = {"final_val_loss": {"corpus": {"mean": corpus_mean, "ci95": ci}, "corpus_permuted": {"mean": permuted}}}
        return intervention_verdict(d, None)["conclusion"]
    assert card([-0.25, 0.0]) == R.NOT_DEMONSTRATED  # an interval ending at 0 does not lie below it
    assert card([0.0, 0.25], 0.125) == R.NOT_DEMONSTRATED  # nor above it
    assert card([-0.25, -0.0625], permuted=-0.125) == R.NOT_DEMONSTRATED  # permuted rows as good: not specific


def test_two_failing_gates_are_named_together():
    from corpus_weights.report.verdicts import withheld_reason
    gates = {"G1": {"passed": False, "reason": "a"}, "G2": {"passed": False, "reason": "b"},
             "G3": {"passed": None, "reason": "n/a"}, "G4": {"passed": True, "reason": None}}
    assert withheld_reason("attention", gates) == "G1 — a; G2 — b"
    assert withheld_reason("corpus_basis", gates) == "G1 — a"  # G3 not applicable: not failing


if __name__ == "__main__" and "--write-cards" in sys.argv:
    CARDS.parent.mkdir(exist_ok=True)
    CARDS.write_text(json.dumps(all_cards(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {CARDS}")
