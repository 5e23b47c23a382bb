"""Gates: the conditions under which a measurement means anything (validity, not results).

G1 trained          every main model: validation loss ≥ 0.3 nats below the unigram cross-entropy and learned
                    fraction g ≥ 0.5 (loss_ladder);
G2 bigram control   every main model: bigram-check z > 5 with r > 0.05; the shuffled-corpus model: |z| < 3 on the
                    bigram check; the step-0 snapshot: |z| < 3 on the bigram check and the unigram check;
G3 map              every main model: the vocabulary map's held-out R² beats its label-permutation null (p < 0.01);
G4 seeds            ≥ 2 main seeds, all trained on the same token budget (needed for any ± sd).
A verdict that depends on a failing gate is withheld, with the gate named (see verdicts.py).

A model trained elsewhere (role main, source "checkpoint") has no token-shuffled twin and no second seed: G2's
shuffled part and G4 are *not applicable* there — neither passed nor failed (G4's `passed` is None, G2 is decided
on its main and step-0 parts, its `not_applicable` names the shuffled part) — and :func:`gate_status` says so.
"""
from __future__ import annotations

from ..core.decision_rules import GATE_THRESHOLDS as THRESHOLDS, trained_enough
from ..core.ids import Role


NOT_APPLICABLE = "not applicable"
NO_SHUFFLED_TWIN = ("not applicable: the model was trained elsewhere, so no model of the same architecture was "
                    "trained on the token-shuffled corpus")


def _role(models: list[dict], role: str) -> list[dict]:
    return [m for m in models if m["role"] == role]


def from_checkpoint(models: list[dict]) -> bool:
    """The main models are a checkpoint trained elsewhere (model.source: checkpoint)."""
    mains = _role(models, Role.MAIN)
    return bool(mains) and all(m.get("source") == "checkpoint" for m in mains)


def gate_status(gate: dict) -> str:
    """'pass', 'FAIL' or 'not applicable' (a gate whose `passed` is None)."""
    if gate.get("passed") is None:
        return NOT_APPLICABLE
    return "pass" if gate["passed"] else "FAIL"


def gate_trained(models: list[dict], t=THRESHOLDS) -> dict:
    rows = []
    for m in _role(models, Role.MAIN):
        lad = m["ladder"]
        gain = lad["unigram_ce"] - lad["val_loss"]
        rows.append(dict(model=m["label"], val_loss=lad["val_loss"], unigram_ce=lad["unigram_ce"],
                         bigram_ce=lad["bigram_ce"], ce_pos0=lad["ce_pos0"], val_gain=gain,
                         learned_fraction=lad["learned_fraction"],
                         ok=trained_enough(gain, lad["learned_fraction"], t)))
    ok = bool(rows) and all(r["ok"] for r in rows)
    failing = "; ".join(f"{r['model']} (val loss {r['val_gain']:.3f} nats below unigram, g = {r['learned_fraction']:.3f})"
                        for r in rows if not r["ok"])
    return dict(name="G1", title="trained", passed=ok, values=rows,
                rule=f"val loss ≥ {t['min_val_gain']} nats below unigram CE and g ≥ {t['min_learned_fraction']}",
                reason=None if ok else ("no main model" if not rows else f"under-trained: {failing}"))


def gate_bigram_control(models: list[dict], t=THRESHOLDS) -> dict:
    rows, problems = [], []
    for m in models:
        c = m["controls"]
        big, uni = c["bigram"], c["unigram"]
        row = dict(model=m["label"], role=m["role"], bigram_r=big["r"], bigram_z=big.get("z"), unigram_r=uni["r"],
                   unigram_z=uni["z"])
        z = big.get("z")
        if z is None:
            row["ok"] = False
        elif m["role"] == Role.MAIN:
            row["ok"] = bool(z > t["min_control_z"] and big["r"] > t["min_control_r"])
        elif m["role"] == Role.SHUFFLED:
            row["ok"] = bool(abs(z) < t["max_null_abs_z"])
        elif m["role"] == Role.STEP0:
            row["ok"] = bool(abs(z) < t["max_null_abs_z"] and abs(uni["z"]) < t["max_null_abs_z"])
        else:
            continue
        rows.append(row)
        if not row["ok"]:
            problems.append(f"{m['label']} ({m['role']})")
    roles = {r["role"] for r in rows}
    not_applicable = []
    if from_checkpoint(models) and Role.SHUFFLED not in roles:
        not_applicable.append(Role.SHUFFLED)
        rows.append(dict(model=Role.SHUFFLED, role=Role.SHUFFLED, bigram_r=None, bigram_z=None, unigram_r=None,
                         unigram_z=None, ok=None, note=NO_SHUFFLED_TWIN))
    missing = [r for r in (Role.MAIN, Role.SHUFFLED, Role.STEP0) if r not in roles and r not in not_applicable]
    ok = not problems and not missing
    reason = None if ok else ("bigram control failed for " + ", ".join(problems) if problems
                              else "missing control(s): " + ", ".join(missing))
    shuffled_rule = ("shuffled: " + NOT_APPLICABLE + " (a checkpoint trained elsewhere)" if not_applicable
                     else f"shuffled |z| < {t['max_null_abs_z']}")
    return dict(name="G2", title="bigram control", passed=ok, values=rows, reason=reason,
                not_applicable=not_applicable,
                rule=f"main z > {t['min_control_z']} and r > {t['min_control_r']}; {shuffled_rule}; "
                     f"step 0 |z| < {t['max_null_abs_z']} (bigram and unigram)")


def gate_map(models: list[dict], t=THRESHOLDS) -> dict:
    rows = []
    for m in _role(models, Role.MAIN):
        a = m["alignment"]
        null = a["vocab_map_null"]
        p = null.get("p")
        rows.append(dict(model=m["label"], heldout_r2=a["vocab_map_heldout_r2"],
                         heldout_r2_split_sd=a.get("vocab_map_heldout_r2_split_sd"), null_mean=null.get("mean"),
                         null_max=null.get("max"), p=p, n_draws=null.get("n_draws", 0),
                         ok=bool(p is not None and p < t["max_map_p"])))
    ok = bool(rows) and all(r["ok"] for r in rows)
    failing = ", ".join(f"{r['model']} (p = {r['p']})" for r in rows if not r["ok"])
    return dict(name="G3", title="vocabulary map", passed=ok, values=rows,
                rule=f"held-out R² beats its label-permutation null, p < {t['max_map_p']}",
                reason=None if ok else f"the corpus -> model map is not better than chance: {failing or 'no main model'}")


def gate_seeds(models: list[dict], t=THRESHOLDS) -> dict:
    mains = _role(models, Role.MAIN)
    if from_checkpoint(models):
        return dict(name="G4", title="seeds", passed=None, reason=None,
                    values=[dict(seeds=[], token_budgets=[], ok=None)],
                    rule=f"{NOT_APPLICABLE}: one checkpoint trained elsewhere has no second seed; every ± of its "
                         f"report spans null draws or fit/test splits, none spans seeds")
    budgets = sorted({m["tokens"] for m in mains})
    ok = len(mains) >= t["min_seeds"] and len(budgets) == 1
    reason = None
    if len(mains) < t["min_seeds"]:
        reason = f"only {len(mains)} main seed(s)"
    elif len(budgets) > 1:
        reason = f"main seeds trained on different budgets {budgets}"
    return dict(name="G4", title="seeds", passed=ok, reason=reason,
                values=[dict(seeds=[m["seed"] for m in mains], token_budgets=budgets, ok=ok)],
                rule=f"≥ {t['min_seeds']} main seeds at equal token budget")


def evaluate_gates(models: list[dict]) -> dict:
    """{G1..G4: {name, title, passed, rule, reason, values}} from the per-model summaries.

    Each model summary: label, role (main | step0 | shuffled), seed, tokens, ladder, controls, alignment."""
    gates = [gate_trained(models), gate_bigram_control(models), gate_map(models), gate_seeds(models)]
    return {g["name"]: g for g in gates}
