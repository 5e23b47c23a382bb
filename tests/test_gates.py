"""Gates decide whether a verdict may be stated; a failing gate withholds exactly the verdicts that depend on it."""
import copy

import pytest

from corpus_weights.gates import evaluate_gates
from corpus_weights.note_values import NOTE
from corpus_weights.verdicts import all_verdicts


def model(label, role, seed=0, tokens=1000, val_loss=5.8, g=0.6, z=8.0, r=0.3, uz=0.5, map_p=0.005):
    return dict(label=label, role=role, seed=seed, tokens=tokens,
                ladder=dict(unigram_ce=6.4, bigram_ce=5.6, val_loss=val_loss, ce_pos0=6.4 - g * 0.8,
                            learned_fraction=g),
                controls=dict(bigram=dict(r=r, z=z), unigram=dict(r=0.1, z=uz)),
                alignment=dict(vocab_map_heldout_r2=0.2, vocab_map_null=dict(p=map_p, mean=-0.1, max=0.0,
                                                                            n_draws=100)))


def passing_models():
    return [model("main-s0", "main", 0), model("main-s1", "main", 1), model("step0", "step0", z=0.4, r=0.0),
            model("shuffled", "shuffled", z=-1.0, r=0.0, uz=9.0)]


def test_all_gates_pass_on_a_good_run():
    gates = evaluate_gates(passing_models())
    assert all(g["passed"] for g in gates.values()), {k: g["reason"] for k, g in gates.items()}


@pytest.mark.parametrize("change, gate", [
    (lambda ms: ms[0]["ladder"].update(val_loss=6.2), "G1"),  # only 0.2 nats below unigram
    (lambda ms: ms[1]["ladder"].update(learned_fraction=0.4), "G1"),
    (lambda ms: ms[0]["controls"]["bigram"].update(z=4.0), "G2"),
    (lambda ms: ms[0]["controls"]["bigram"].update(r=0.01), "G2"),
    (lambda ms: ms[3]["controls"]["bigram"].update(z=3.5), "G2"),  # shuffled corpus shows bigrams: broken
    (lambda ms: ms[2]["controls"]["unigram"].update(z=-3.5), "G2"),  # step 0 knows unigrams: broken
    (lambda ms: ms.pop(3), "G2"),  # no shuffled control at all
    (lambda ms: ms[0]["alignment"]["vocab_map_null"].update(p=0.02), "G3"),
    (lambda ms: ms.pop(1), "G4"),  # one seed
    (lambda ms: ms[1].update(tokens=2000), "G4"),  # unequal budgets
])
def test_each_gate_fails_on_its_own_condition(change, gate):
    models = passing_models()
    change(models)
    gates = evaluate_gates(models)
    failed = {k for k, g in gates.items() if not g["passed"]}
    assert failed == {gate}, failed
    assert gates[gate]["reason"]


def metrics_for(gates):
    s = lambda v: {"mean": v, "sd": 0.01, "n_seeds": 2}  # noqa: E731
    main = {"role": "main", "corrected": {"attention": {"significant_bh": 3, "heads": 64}}}
    step0 = {"role": "step0", "corrected": {"attention": {"significant_bh": 0, "heads": 64}}}
    return {"gates": gates, "K": 16, "K_over_d": 0.125, "config": {"n_layer": 8},
            "models": {"main-s0": main, "main-s1": copy.deepcopy(main), "step0": step0},
            "seeds": {"share_corpus": s(0.3), "share_corpus_null": s(0.25), "share_random": s(0.125),
                      "share_we_pca": s(0.4), "p_vs_null_max": 0.001, "z_vs_null_min": 5.0,
                      "null_draws": 50},
            "spectra": {"pr_symmetric": 1.5, "L_opt_symmetric": 1, "pr_symmetric_abs": 20.0,
                        "pr_symmetric_signed": 0.1, "pr_ppmi": 30.0, "L_opt_ppmi": 10, "pr_sigma_e": 12.0,
                        "L_opt_sigma_e": 4},
            "note_protocol": {"r2_linear_all": 0.1, "qk_cosines": [0.0] * 8, "qk_cosine_null_mean": 0.0,
                              "qk_cosine_null_sd": 0.004, "l0_wq_alignment": 0.05,
                              "l0_wq_alignment_null_mean": 0.05, "r2_direct": -1.0, "r2_random": -1.0,
                              "cos_direct": 0.0, "cos_random": 0.0}}


def test_failing_gate_withholds_its_verdicts_and_only_those():
    gates = evaluate_gates(passing_models())
    stated = {v["id"]: v for v in all_verdicts(metrics_for(gates), NOTE)}
    assert stated["corpus_basis"]["status"] == "holds"  # 0.30 vs null 0.25 ± 0.01, p = 0.001
    assert stated["attention"]["status"] == "does not hold"  # 3 significant heads vs 0 at step 0
    bad = passing_models()
    bad[0]["ladder"]["learned_fraction"] = 0.1
    v = {v["id"]: v for v in all_verdicts(metrics_for(evaluate_gates(bad)), NOTE)}
    assert v["corpus_basis"]["status"] == "withheld" and "G1" in v["corpus_basis"]["reason"]
    assert v["attention"]["status"] == "withheld" and "under-trained" in v["attention"]["finding"]
    assert v["depth"]["status"] == "holds" and v["norm_matched"]["status"] == "holds"  # need no gate
    bad = passing_models()
    bad[3]["controls"]["bigram"]["z"] = 6.0
    v = {v["id"]: v for v in all_verdicts(metrics_for(evaluate_gates(bad)), NOTE)}
    assert v["attention"]["status"] == "withheld" and "G2" in v["attention"]["reason"]
    assert v["corpus_basis"]["status"] == "holds"  # G2 is not its gate
