"""Gates decide whether a verdict may be stated; a failing gate withholds exactly the verdicts that depend on it."""
import pytest

from corpus_weights.report.gates import NO_SHUFFLED_TWIN, evaluate_gates, gate_status


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


def _labels_in(text: str) -> set[str]:
    return {lab for lab in ("main-s0", "main-s1", "step0", "shuffled") if lab in (text or "")}


@pytest.mark.parametrize("label, change, gate", [
    ("main-s1", lambda m: m["ladder"].update(val_loss=6.3), "G1"),
    ("main-s0", lambda m: m["ladder"].update(learned_fraction=0.2), "G1"),
    ("main-s1", lambda m: m["controls"]["bigram"].update(z=1.0), "G2"),
    ("main-s0", lambda m: m["controls"]["bigram"].update(r=0.0), "G2"),
    ("step0", lambda m: m["controls"]["bigram"].update(z=4.0), "G2"),
    ("shuffled", lambda m: m["controls"]["bigram"].update(z=-3.5), "G2"),
    ("main-s1", lambda m: m["alignment"]["vocab_map_null"].update(p=0.5), "G3"),
])
def test_a_gate_fails_naming_exactly_the_model_that_violates_it(label, change, gate):
    models = passing_models()
    change(next(m for m in models if m["label"] == label))
    gates = evaluate_gates(models)
    assert {k for k, g in gates.items() if not g["passed"]} == {gate}
    assert _labels_in(gates[gate]["reason"]) == {label}, gates[gate]["reason"]


@pytest.mark.parametrize("label, change", [
    ("step0", lambda m: m["ladder"].update(val_loss=6.39, learned_fraction=0.0)),      # G1 reads main models only
    ("shuffled", lambda m: m["ladder"].update(val_loss=6.39, learned_fraction=-0.1)),
    ("shuffled", lambda m: m["controls"]["unigram"].update(z=40.0)),  # shuffling keeps unigrams: allowed
    ("step0", lambda m: m["alignment"]["vocab_map_null"].update(p=0.9)),  # G3 reads main models only
    ("shuffled", lambda m: m["alignment"]["vocab_map_null"].update(p=0.9)),
    ("step0", lambda m: m.update(tokens=5)),                               # G4: the main seeds' budgets only
    ("shuffled", lambda m: m.update(tokens=7)),
])
def test_a_gate_ignores_the_models_it_must_not_look_at(label, change):
    models = passing_models()
    change(next(m for m in models if m["label"] == label))
    gates = evaluate_gates(models)
    assert all(g["passed"] for g in gates.values()), {k: g["reason"] for k, g in gates.items() if not g["passed"]}


def checkpoint_models():
    """A checkpoint run: one main model trained elsewhere and its re-initialised step 0; no shuffled twin."""
    main = model("checkpoint", "main", tokens=None)
    main["source"] = "checkpoint"
    return [main, model("step0", "step0", tokens=None, z=0.4, r=0.0)]


def test_a_checkpoint_has_g2s_shuffled_part_and_g4_not_applicable_neither_passed_nor_failed():
    from corpus_weights.report.gates import gate_status

    gates = evaluate_gates(checkpoint_models())
    assert gates["G2"]["passed"] is True and gates["G2"]["not_applicable"] == ["shuffled"]
    assert [r["ok"] for r in gates["G2"]["values"] if r["role"] == "shuffled"] == [None]
    assert gates["G4"]["passed"] is None and gate_status(gates["G4"]) == "not applicable"
    assert gates["G1"]["passed"] and gates["G3"]["passed"]


@pytest.mark.parametrize("index, change", [(0, lambda m: m["controls"]["bigram"].update(z=2.0)),
                                           (1, lambda m: m["controls"]["unigram"].update(z=5.0))])
def test_a_checkpoint_still_fails_g2_on_its_main_or_step0_part(index, change):
    models = checkpoint_models()
    change(models[index])
    gates = evaluate_gates(models)
    assert gates["G2"]["passed"] is False and models[index]["label"] in gates["G2"]["reason"]


def test_a_trained_run_without_its_shuffled_control_still_fails_g2():
    """Not applicable only for a model trained elsewhere: a missing control of a trained run is a failure."""
    models = [m for m in passing_models() if m["role"] != "shuffled"]
    models[1]["source"] = "checkpoint"  # one of two mains: the run is not a checkpoint run
    gates = evaluate_gates(models)
    assert gates["G2"]["passed"] is False and "shuffled" in gates["G2"]["reason"]
    assert gates["G4"]["passed"] is True


# ----------------------------------------------------------------------------- the whole record, as the report shows it

def test_each_gates_record_on_a_failing_run_is_exactly_what_the_report_prints():
    """Every field of every gate (rows, rule, reason), on a run where each gate fails for one named reason: a row
    with a wrong value, a dropped field or a rule text that no longer states the threshold is caught here."""
    models = passing_models()
    models[1]["ladder"].update(val_loss=6.2)                  # G1: main-s1 only 0.2 nats below unigram
    models[3]["controls"]["bigram"].update(z=3.0)             # G2: the shuffled control's |z| at the bound
    models[0]["alignment"]["vocab_map_null"].update(p=0.01)   # G3: main-s0's p at the bound
    models[1]["tokens"] = 2000                                # G4: unequal budgets
    g = evaluate_gates(models)
    assert g["G1"] == dict(
        name="G1", title="trained", passed=False,
        values=[dict(model="main-s0", val_loss=5.8, unigram_ce=6.4, bigram_ce=5.6, ce_pos0=6.4 - 0.6 * 0.8,
                     val_gain=pytest.approx(0.6), learned_fraction=0.6, ok=True),
                dict(model="main-s1", val_loss=6.2, unigram_ce=6.4, bigram_ce=5.6, ce_pos0=6.4 - 0.6 * 0.8,
                     val_gain=pytest.approx(0.2), learned_fraction=0.6, ok=False)],
        rule="val loss ≥ 0.3 nats below unigram CE and g ≥ 0.5",
        reason="under-trained: main-s1 (val loss 0.200 nats below unigram, g = 0.600)")
    assert g["G2"] == dict(
        name="G2", title="bigram control", passed=False, not_applicable=[],
        values=[dict(model="main-s0", role="main", bigram_r=0.3, bigram_z=8.0, unigram_r=0.1, unigram_z=0.5, ok=True),
                dict(model="main-s1", role="main", bigram_r=0.3, bigram_z=8.0, unigram_r=0.1, unigram_z=0.5, ok=True),
                dict(model="step0", role="step0", bigram_r=0.0, bigram_z=0.4, unigram_r=0.1, unigram_z=0.5, ok=True),
                dict(model="shuffled", role="shuffled", bigram_r=0.0, bigram_z=3.0, unigram_r=0.1, unigram_z=9.0,
                     ok=False)],
        reason="bigram control failed for shuffled (shuffled)",
        rule="main z > 5.0 and r > 0.05; shuffled |z| < 3.0; step 0 |z| < 3.0 (bigram and unigram)")
    assert g["G3"] == dict(
        name="G3", title="vocabulary map", passed=False,
        values=[dict(model="main-s0", heldout_r2=0.2, heldout_r2_split_sd=None, null_mean=-0.1, null_max=0.0, p=0.01,
                     n_draws=100, ok=False),
                dict(model="main-s1", heldout_r2=0.2, heldout_r2_split_sd=None, null_mean=-0.1, null_max=0.0,
                     p=0.005, n_draws=100, ok=True)],
        rule="held-out R² beats its label-permutation null, p < 0.01",
        reason="the corpus -> model map is not better than chance: main-s0 (p = 0.01)")
    assert g["G4"] == dict(name="G4", title="seeds", passed=False,
                           reason="main seeds trained on different budgets [1000, 2000]",
                           values=[dict(seeds=[0, 1], token_budgets=[1000, 2000], ok=False)],
                           rule="≥ 2 main seeds at equal token budget")


@pytest.mark.parametrize("change, gate, passed", [
    # exactly at each threshold: the rule's comparison decides (≥ for G1, > for G2's main part, < for the others)
    (lambda ms: ms[0]["ladder"].update(val_loss=6.1), "G1", True),            # gain 0.3 exactly
    (lambda ms: ms[0]["ladder"].update(learned_fraction=0.5), "G1", True),
    (lambda ms: ms[0]["controls"]["bigram"].update(z=5.0), "G2", False),
    (lambda ms: ms[0]["controls"]["bigram"].update(r=0.05), "G2", False),
    (lambda ms: ms[2]["controls"]["unigram"].update(z=3.0), "G2", False),
    (lambda ms: ms[2]["controls"]["bigram"].update(z=-3.0), "G2", False),
    (lambda ms: ms[0]["controls"]["bigram"].update(z=None), "G2", False),    # a control that could not be computed
    (lambda ms: ms[0]["alignment"]["vocab_map_null"].update(p=None), "G3", False),
])
def test_each_threshold_is_on_the_side_the_rule_states(change, gate, passed):
    models = passing_models()
    change(models)
    assert evaluate_gates(models)[gate]["passed"] is passed


def test_gates_with_no_main_model_fail_saying_so():
    g = evaluate_gates([model("step0", "step0", z=0.4, r=0.0), model("shuffled", "shuffled", z=-1.0, r=0.0)])
    assert g["G1"]["reason"] == "no main model" and g["G1"]["values"] == []
    assert g["G2"]["reason"] == "missing control(s): main"
    assert g["G3"]["reason"] == "the corpus -> model map is not better than chance: no main model"
    assert g["G4"]["reason"] == "only 0 main seed(s)"
    lone = evaluate_gates([model("main-s0", "main"), model("step0", "step0", z=0.4, r=0.0)])
    assert lone["G2"]["reason"] == "missing control(s): shuffled"


def test_a_checkpoints_g2_and_g4_records():
    ckpt = [{**model("checkpoint", "main"), "source": "checkpoint"}, model("step0", "step0", z=0.4, r=0.0)]
    g = evaluate_gates(ckpt)
    assert g["G2"]["passed"] is True and g["G2"]["not_applicable"] == ["shuffled"]
    assert g["G2"]["values"][-1] == dict(model="shuffled", role="shuffled", bigram_r=None, bigram_z=None,
                                         unigram_r=None, unigram_z=None, ok=None, note=NO_SHUFFLED_TWIN)
    assert g["G2"]["rule"] == ("main z > 5.0 and r > 0.05; shuffled: not applicable (a checkpoint trained "
                               "elsewhere); step 0 |z| < 3.0 (bigram and unigram)")
    assert g["G4"] == dict(name="G4", title="seeds", passed=None, reason=None,
                           values=[dict(seeds=[], token_budgets=[], ok=None)],
                           rule="not applicable: one checkpoint trained elsewhere has no second seed; every ± of its "
                                "report spans null draws or fit/test splits, none spans seeds")
    assert [gate_status(g[k]) for k in ("G1", "G2", "G3", "G4")] == ["pass", "pass", "pass", "not applicable"]
    ckpt[0]["controls"]["bigram"].update(z=1.0)
    assert gate_status(evaluate_gates(ckpt)["G2"]) == "FAIL"
    # a checkpoint given a shuffled model anyway: that part is judged, nothing is marked not applicable
    with_twin = evaluate_gates([*ckpt[:1], ckpt[1], model("shuffled", "shuffled", z=-1.0, r=0.0)])
    assert with_twin["G2"]["not_applicable"] == [] and len(with_twin["G2"]["values"]) == 3


def test_a_passing_gate_has_no_reason_and_several_failures_are_all_named():
    assert all(g["reason"] is None for g in evaluate_gates(passing_models()).values())
    models = passing_models()
    for m in models[:2]:
        m["ladder"].update(val_loss=6.3)
        m["alignment"]["vocab_map_null"].update(p=0.5)
    models[2]["controls"]["bigram"].update(z=4.0)
    models[3]["controls"]["bigram"].update(z=4.0)
    g = evaluate_gates(models)
    assert g["G1"]["reason"] == ("under-trained: main-s0 (val loss 0.100 nats below unigram, g = 0.600); "
                                 "main-s1 (val loss 0.100 nats below unigram, g = 0.600)")
    assert g["G2"]["reason"] == "bigram control failed for step0 (step0), shuffled (shuffled)"
    assert g["G3"]["reason"] == ("the corpus -> model map is not better than chance: main-s0 (p = 0.5), "
                                 "main-s1 (p = 0.5)")
    assert evaluate_gates([model("main-s0", "main")])["G2"]["reason"] == "missing control(s): shuffled, step0"


def test_g3_rows_carry_the_split_spread_and_count_missing_draws_as_none():
    models = passing_models()
    models[0]["alignment"]["vocab_map_heldout_r2_split_sd"] = 0.03
    del models[1]["alignment"]["vocab_map_null"]["n_draws"]
    rows = evaluate_gates(models)["G3"]["values"]
    assert rows[0]["heldout_r2_split_sd"] == 0.03 and rows[0]["n_draws"] == 100 and rows[1]["n_draws"] == 0


def test_g2_skips_a_model_of_another_role_and_judges_the_ones_after_it():
    models = passing_models()
    models.insert(1, model("corpus-s0", "intervention"))
    models[-1]["controls"]["bigram"].update(z=4.0)  # the shuffled control, after the skipped model, fails
    g2 = evaluate_gates(models)["G2"]
    assert [r["model"] for r in g2["values"]] == ["main-s0", "main-s1", "step0", "shuffled"]
    assert g2["passed"] is False
    models[0]["controls"]["bigram"].update(z=None)
    assert evaluate_gates(models)["G2"]["values"][0]["ok"] is False
