"""One verdict per claim of the note: the number apart from the conclusion (decision_rules.py has the words and the
thresholds).

Each verdict dict (metrics.json `verdicts`, docs/metrics.md):
  id, claim                    the claim as the note states it
  number                       REPRODUCES | DOES_NOT_REPRODUCE | UNINFORMATIVE (under the note's protocol)
  number_text                  the note's value beside ours, like for like (protocol, K mapping, what ± spans)
  conclusion                   SUPPORTED | CONTRADICTED | NOT_DEMONSTRATED | WITHHELD
  conclusion_ungated           what the decision rule says from the statistics alone, before the gates
  statistic, null, power       the corrected protocol's numbers, each ± saying what it spans
  rule                         the decision rule, in words
  finding                      why, from the same values the decision used
  gates, reason                the gates the conclusion needs; the failing ones, named with their values
  status                       = conclusion (kept for older readers)
Every value a verdict reads goes through `ids.require`: a missing one raises, naming it; none becomes a verdict.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta

from ..core.decision_rules import (CLAIM_GATES, CONTRADICTED, DOES_NOT_REPRODUCE, NOT_DEMONSTRATED, REPRODUCES, SUPPORTED,
                             UNINFORMATIVE, VERDICT_THRESHOLDS as T, WITHHELD, fpr_consistent, significant,
                             within_tolerance)
from ..core.ids import Role, require
from ..core.spectra import depth_heuristic


def fmt(value, digits=3) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    value = float(value)
    if not math.isfinite(value):
        return "—"
    if 1000 <= abs(value) < 1e9:  # counts (tokens, parameters): whole numbers with separators
        return f"{value:,.0f}"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def pm(stat: dict, digits=3, spans: str | None = None) -> str:
    """'mean ± sd (sd over <spans>)' (or just the value when there is no sd)."""
    if stat.get("sd") is None:
        return fmt(stat.get("mean"), digits)
    tail = f" (sd over {spans})" if spans else ""
    return f"{fmt(stat['mean'], digits)} ± {fmt(stat['sd'], digits)}{tail}"


def mean_sd(values) -> dict:
    """{mean, sd (ddof 1; None with one value), n} of the finite values given (None and NaN left out)."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "sd": sd, "n": len(values)}


def main_models(m: dict) -> list[tuple[str, dict]]:
    mains = [(label, mm) for label, mm in m["models"].items() if mm["role"] == Role.MAIN]
    if not mains:
        raise KeyError("metrics: no main model among " + ", ".join(m["models"]))
    return mains


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def withheld_reason(claim: str, gates: dict) -> str | None:
    failed = [g for g in CLAIM_GATES[claim] if gates[g]["passed"] is False]  # (None: not applicable)
    if not failed:
        return None
    return "; ".join(f"{g} — {gates[g]['reason']}" for g in failed)


def _verdict(claim_id: str, claim: str, gates: dict, *, number: str, number_text: str, conclusion: str,
             statistic: str, null: str, power: str, rule: str, finding: str, note_value, ours) -> dict:
    reason = withheld_reason(claim_id, gates)
    final = WITHHELD if reason else conclusion
    if reason:
        finding = f"Withheld: {reason}. The decision rule alone would say “{conclusion}”. " + finding
    return dict(id=claim_id, claim=claim, number=number, number_text=number_text, conclusion=final,
                conclusion_ungated=conclusion, status=final, statistic=statistic, null=null, power=power, rule=rule,
                finding=finding, gates=CLAIM_GATES[claim_id], reason=reason, note_value=note_value, ours=ours)


def k_mapping(m: dict, note: dict) -> str:
    d, K = m["config"]["d_model"], m["K"]
    note_d = note["accounting"]["d"]
    same = abs(K / d - note["K"] / note_d) < 1e-9
    return (f"K = {K} of d = {d} (K/d = {fmt(K / d)}{', the note’s ' + str(note['K']) + '/' + str(note_d) if same else ''})"
            + ("" if same else f"; the note: K = {note['K']} of d = {note_d} (K/d = {fmt(note['K'] / note_d)}) — "
                               f"not the same K/d"))


# ----------------------------------------------------------------------------------------------- claim 1

def basis_test(label: str, mm: dict) -> dict:
    """The corpus-basis test's numbers of one main model (corrected protocol, pooled non-embedding, headline K)."""
    t = require(mm["corrected"].get("corpus_basis_test"), "corpus_basis_test", f"models.{label}.corrected")
    where = f"models.{label}.corrected.corpus_basis_test"
    out = {k: require(t.get(k), k, where) for k in ("share", "null_mean", "null_sd", "split_sd", "total_sd", "z_total",
                                                    "n_null_draws", "n_splits", "planted_delta")}
    # the power is needed only when nothing was found; it cannot be measured when the share leaves no room to plant
    # an increase (an aligned share of ~1): then it stays None and only "supported" can be concluded without it
    return out | {"planted_z": t.get("planted_z"), "mde": t.get("mde")}


def corpus_basis_verdict(m: dict, note: dict, gates: dict) -> dict:
    mains = main_models(m)
    tests = [basis_test(label, mm) for label, mm in mains]
    n = len(tests)
    np_r2 = mean_sd(require(mm["note_protocol"].get("r2_linear_all"), "r2_linear_all",
                            f"models.{label}.note_protocol") for label, mm in mains)
    number = REPRODUCES if within_tolerance(np_r2["mean"], note["r2_corpus_linear"]) else DOES_NOT_REPRODUCE
    found = [significant(t["z_total"]) and t["share"] > t["null_mean"] for t in tests]
    if not all(found):  # the conclusion now rests on the power: it must have been measured
        for (label, _), t in zip(mains, tests):
            require(t["planted_z"], "planted_z", f"models.{label}.corrected.corpus_basis_test")
    powered = [t["planted_z"] is not None and t["planted_z"] > T["min_z"] for t in tests]
    if all(found):
        conclusion = SUPPORTED
    elif not any(found) and all(powered):
        conclusion = CONTRADICTED
    else:
        conclusion = NOT_DEMONSTRATED
    share = mean_sd(t["share"] for t in tests)
    excess = mean_sd(t["share"] - t["null_mean"] for t in tests)
    z_min = min(t["z_total"] for t in tests)
    delta = tests[0]["planted_delta"]
    mdes = [t["mde"] for t in tests]
    mde = None if any(x is None for x in mdes) else max(mdes)
    number_text = (f"note {fmt(note['r2_corpus_linear'])} (R² of the linear projection, pooled with the embeddings, "
                   f"K = {note['K']} of d = {note['accounting']['d']}) · ours under the note's protocol "
                   f"{pm(np_r2, spans=seeds_text(n))} ({k_mapping(m, note)}) → {number}")
    statistic = (f"aligned share of the non-embedding weights {pm(share, spans=seeds_text(n))}; excess over its null "
                 f"{pm(excess, spans=seeds_text(n))}; smallest z over seeds {fmt(z_min, 2)} on the whole uncertainty "
                 f"(null draws and fit/test splits). Not comparable with the note's number: uncentred share, "
                 f"corpus basis aligned through the vocabulary, embeddings excluded.")
    null = (f"{fmt(tests[0]['null_mean'])} ± {fmt(tests[0]['null_sd'])} (sd over {tests[0]['n_null_draws']} null draws"
            f", {mains[0][0]}); split-to-split sd {fmt(tests[0]['split_sd'])} (over {tests[0]['n_splits']} fit/test "
            f"splits); together ± {fmt(tests[0]['total_sd'])}")
    power = (f"a planted increase of {fmt(delta)} in the aligned share reaches z = "
             f"{', '.join(fmt(t['planted_z'], 2) for t in tests)} ({'detected' if all(powered) else 'NOT detected'}"
             f"{'; not measurable where the share leaves no room' if any(t['planted_z'] is None for t in tests) else ''}); "
             f"smallest detectable increase {fmt(mde)} (z > {fmt(T['min_z'], 1)})")
    rule = (f"supported when every seed's aligned share exceeds its null by z > {fmt(T['min_z'], 1)} on the whole "
            f"uncertainty; contradicted when no seed does although a planted increase of {fmt(delta)} would be "
            f"detected in every seed; otherwise not demonstrated")
    if conclusion == SUPPORTED:
        finding = (f"The corpus basis explains more of the weights than its frequency-matched null: an excess of "
                   f"{fmt(excess['mean'])} of the non-embedding variance (z ≥ {fmt(z_min, 2)}). That corpus-specific "
                   f"part is what the claim is about; the raw share ({fmt(share['mean'])}) is mostly what the null "
                   f"also explains — W_E's dominant directions and token frequencies.")
    elif conclusion == CONTRADICTED:
        finding = (f"The corpus basis explains no more than its frequency-matched null (excess {fmt(excess['mean'])}, "
                   f"z ≤ {fmt(max(t['z_total'] for t in tests), 2)}), although an increase of {fmt(delta)} would have "
                   f"been detected: what it explains comes from W_E's dominant directions and token frequencies.")
    else:
        finding = (f"The test cannot tell at this size: excess {fmt(excess['mean'])} over the null, z from "
                   f"{fmt(z_min, 2)} to {fmt(max(t['z_total'] for t in tests), 2)} over seeds; a planted increase of "
                   f"{fmt(delta)} gives z = {', '.join(fmt(t['planted_z'], 2) for t in tests)}.")
    return _verdict("corpus_basis", f"The corpus basis explains {note['r2_corpus_linear']:.1%} of weight variance "
                    f"(K = {note['K']}).", gates, number=number, number_text=number_text, conclusion=conclusion,
                    statistic=statistic, null=null, power=power, rule=rule, finding=finding,
                    note_value=note["r2_corpus_linear"], ours=pm(share, spans=seeds_text(n)))


# ----------------------------------------------------------------------------------------------- claim 2

def attention_test(label: str, mm: dict) -> dict:
    a = require(mm["corrected"].get("attention"), "attention", f"models.{label}.corrected")
    where = f"models.{label}.corrected.attention"
    out = {"heads": require(a.get("heads"), "heads", where)}
    for test in ("token_space", "functional"):
        part = require(a.get(test), test, where)
        for key in ("significant", "positive", "negative", "step0_qk_significant", "fpr_heads", "fpr_models",
                    "n_fpr_models", "planted_z", "planted_detected"):
            out[f"{test}.{key}"] = require(part.get(key), key, f"{where}.{test}")
    return out


def _note_cosines_inside_null(np_: dict) -> bool:
    cos = require(np_.get("qk_cosines"), "qk_cosines", "note_protocol")
    mu = require(np_.get("qk_cosine_null_mean"), "qk_cosine_null_mean", "note_protocol")
    sd = require(np_.get("qk_cosine_null_sd"), "qk_cosine_null_sd", "note_protocol")
    return sd > 0 and all(abs(c - mu) / sd < T["inside_null_z"] for c in cos)


def attention_verdict(m: dict, note: dict, gates: dict) -> dict:
    mains = main_models(m)
    tests = [attention_test(label, mm) for label, mm in mains]
    np_ = m["note_protocol"]
    inside = _note_cosines_inside_null(np_)
    number = UNINFORMATIVE if inside else DOES_NOT_REPRODUCE
    calibrated = all(fpr_consistent(t["token_space.fpr_models"], t["token_space.n_fpr_models"]) for t in tests)
    # the token-shuffled control cannot have learned bigram routing: heads it shows are attention the test detects
    # without bigrams (e.g. by token frequency), so routing is stated only beyond what the control shows
    shuffled = [(label, attention_test(label, mm)) for label, mm in m["models"].items() if mm["role"] == Role.SHUFFLED]
    control = max((t["token_space.significant"] for _, t in shuffled), default=0)
    found = all(t["token_space.significant"] >= 1 and t["token_space.significant"] > control for t in tests)
    unspecific = control > 0 and all(t["token_space.significant"] >= 1 for t in tests) and not found
    nothing = all(t["token_space.significant"] == 0 and t["functional.significant"] == 0 for t in tests)
    powered = all(bool(t["token_space.planted_detected"]) for t in tests)
    if not calibrated:
        conclusion = NOT_DEMONSTRATED
    elif found:
        conclusion = CONTRADICTED
    elif nothing and powered:
        conclusion = SUPPORTED
    else:
        conclusion = NOT_DEMONSTRATED
    heads = tests[0]["heads"]
    per_seed = "; ".join(
        f"{label}: {t['token_space.significant']} / {heads} heads in token space "
        f"({t['token_space.positive']} towards likely predecessors, {t['token_space.negative']} away), "
        f"{t['functional.significant']} / {heads} on real text; the step-0 W_Q/W_K on the same embedding: "
        f"{t['token_space.step0_qk_significant']}"
        for (label, _), t in zip(mains, tests))
    number_text = (f"note: cos(QKᵀ, T_proj) ≈ 0 in every layer · ours under the note's protocol "
                   f"{fmt(np_['qk_cosines'])} against a random-rotation null of {fmt(np_['qk_cosine_null_mean'])} ± "
                   f"{fmt(np_['qk_cosine_null_sd'])} (sd over rotations) → {number}"
                   + (": inside the null, as any pair of unrelated matrices would be" if inside else ""))
    statistic = (f"what trained W_Q/W_K add over random ones on the same model, per head (BH at FDR 0.05): {per_seed}"
                 + "".join(f"; the token-shuffled control ({label}): {t['token_space.significant']} / {heads} in token "
                           f"space, {t['functional.significant']} on text" for label, t in shuffled))
    null = ("per head, W_Q,h and W_K,h rotated by independent Haar-random orthogonal matrices on the residual side "
            "(singular values kept; everything else of the model as trained)")
    power = (f"false-positive rate of the rule “≥ 1 significant head” measured on models with random Frobenius-matched "
             f"W_Q/W_K: {', '.join(fmt(t['token_space.fpr_models'], 2) for t in tests)}; a planted routing head "
             f"reaches z = {', '.join(fmt(t['token_space.planted_z'], 2) for t in tests)} "
             f"({'detected' if powered else 'NOT detected'})")
    rule = (f"contradicted (attention does route by bigrams) when every seed has ≥ 1 head whose trained W_Q/W_K beat the "
            f"null, and more such heads than the token-shuffled control, with the rule's measured false-positive rate consistent with ≤ {fmt(T['max_fpr'], 2)} (one-sided "
            f"binomial test at {fmt(T['fpr_alpha'], 2)} over the random-QK models); supported when no head is "
            f"significant in either test and a planted routing head is detected; otherwise not demonstrated")
    ts = ", ".join(str(t["token_space.significant"]) for t in tests)
    pos = sum(t["token_space.positive"] for t in tests)
    neg = sum(t["token_space.negative"] for t in tests)
    fun = sum(t["functional.significant"] for t in tests)
    finding = {
        CONTRADICTED: f"Trained attention carries the corpus's preceding-token statistics beyond what random W_Q/W_K on "
                      f"the same embedding give ({pos} significant heads over seeds towards likely predecessors, {neg} "
                      f"away from them); the note's cosines are inside their null and could not have shown it. "
                      + (f"On real text, with positions and the residual stream, {fun} head(s) are significant."
                         if fun else f"On real text, with positions and the residual stream, no head is significant "
                                     f"(a planted routing head reaches z = "
                                     f"{', '.join(fmt(t['functional.planted_z'], 2) for t in tests)} there): the "
                                     f"effect is in the heads' token-space form, not shown in the attention the model "
                                     f"places on text."),
        SUPPORTED: "No head's trained W_Q/W_K route by the corpus's preceding-token statistics beyond random ones, "
                   "and the test detects a planted routing head at this size.",
        NOT_DEMONSTRATED: ("The decision rule's false-positive rate is above its bound on this run, so no conclusion."
                           if not calibrated else
                           f"Trained W_Q/W_K beat random ones in {ts} heads, but the token-shuffled control, which "
                           f"cannot learn bigram routing, shows {control}: the test also detects attention that needs "
                           f"no bigrams (for instance by token frequency), so it cannot tell routing here."
                           + (f" On real text no head of the main models is significant." if not fun else "")
                           if unspecific else "The seeds disagree, or the test would not detect a planted routing "
                                              "head: neither routing nor its absence is shown."),
    }[conclusion]
    return _verdict("attention", "Attention does not learn corpus bigram routing (cos(QKᵀ, T_proj) ≈ 0 in every "
                    "layer).", gates, number=number, number_text=number_text, conclusion=conclusion,
                    statistic=statistic, null=null, power=power, rule=rule, finding=finding, note_value="cos ≈ 0",
                    ours=f"{ts} / {heads} heads")


# ----------------------------------------------------------------------------------------------- claim 3

def depth_verdict(m: dict, note: dict, gates: dict) -> dict:
    sp = m["spectra"]
    keys = ("symmetric", "symmetric_abs", "symmetric_signed", "ppmi", "sigma_e")
    pr = {k: require(sp.get(f"pr_{k}"), f"pr_{k}", "spectra") for k in keys}
    depth = m["config"]["n_layer"]
    number = REPRODUCES if within_tolerance(pr["symmetric"], note["pr_symmetric"]) else DOES_NOT_REPRODUCE
    l_opt = {k: depth_heuristic(pr[k]) for k in keys if pr[k] > 0}
    matching = [k for k, v in l_opt.items() if v == depth]
    names = {"symmetric": "C + Cᵀ, squared eigenvalues", "symmetric_abs": "C + Cᵀ, |eigenvalues|",
             "symmetric_signed": "C + Cᵀ, signed eigenvalues", "ppmi": "PPMI", "sigma_e": "Σ_E"}
    number_text = (f"note: PR of the symmetric corpus matrix {fmt(note['pr_symmetric'])} → L_opt = {note['L_opt']} · "
                   f"ours (C + Cᵀ, squared eigenvalues, the note's reading) {fmt(pr['symmetric'])} → L_opt = "
                   f"{l_opt.get('symmetric', '—')} → {number}")
    statistic = "; ".join(f"{names[k]}: PR {fmt(pr[k])} → L_opt {l_opt.get(k, '—')}" for k in keys)
    finding = (f"L_opt = ceil(PR/3) ranges over {sorted(set(l_opt.values()))} depending on which corpus matrix and which "
               f"power of its spectrum is fed to it; the real depth is {depth}"
               + (f", which the {' and the '.join(names[k] for k in matching)} reading"
                  f"{'s happen' if len(matching) > 1 else ' happens'} to give" if matching else "")
               + ". Whether the formula predicts the best depth can only be tested by training models of several "
                 "depths on the same corpus (this run trains one depth), so the claim is not demonstrated either way.")
    return _verdict("depth", f"The depth formula fails: PR of the symmetric corpus matrix ≈ {note['pr_symmetric']} "
                    f"→ L_opt = 1.", gates, number=number, number_text=number_text, conclusion=NOT_DEMONSTRATED,
                    statistic=statistic, null="—", power="one depth trained: untestable here",
                    rule="not testable without a depth sweep; the number is compared under the note's reading",
                    finding=finding, note_value=note["pr_symmetric"], ours=fmt(pr["symmetric"]))


# ----------------------------------------------------------------------------------------------- claim 4

def random_direction_p(abs_cos: float, d: int) -> float:
    """P(|cos| ≥ abs_cos) between a fixed and a uniformly random direction in R^d (cos² ~ Beta(1/2, (d − 1)/2))."""
    return float(beta.sf(abs_cos ** 2, 0.5, (d - 1) / 2))


def l0_verdict(m: dict, note: dict, gates: dict) -> dict:
    mains = main_models(m)
    d = int(m["config"]["d_model"])
    cos = [require(mm["note_protocol"].get("l0_wq_alignment"), "l0_wq_alignment", f"models.{label}.note_protocol")
           for label, mm in mains]
    ps = [random_direction_p(c, d) for c in cos]
    alpha = T["l0_alpha"]
    stat = mean_sd(cos)
    number = REPRODUCES if within_tolerance(stat["mean"], note["l0_wq_alignment"]) else DOES_NOT_REPRODUCE
    powered = random_direction_p(note["l0_wq_alignment"], d) < alpha
    if all(p < alpha for p in ps):
        conclusion = SUPPORTED
    elif all(p >= alpha for p in ps) and powered:
        conclusion = CONTRADICTED
    else:
        conclusion = NOT_DEMONSTRATED
    threshold = math.sqrt(beta.isf(alpha, 0.5, (d - 1) / 2))
    number_text = (f"note |cos| = {fmt(note['l0_wq_alignment'])} (d = {note['accounting']['d']}) · ours "
                   f"{pm(stat, spans=seeds_text(len(cos)))} (d = {d}) → {number}")
    statistic = "; ".join(f"{label}: |cos| = {fmt(c)}, p = {fmt(p)}" for (label, _), c, p in zip(mains, cos, ps))
    null = (f"a random direction in d = {d}: E|cos| = {fmt(mains[0][1]['note_protocol'].get('l0_wq_alignment_null_mean'))}"
            f", 99th percentile {fmt(threshold)} (exact: cos² ~ Beta(1/2, (d − 1)/2))")
    finding = {
        SUPPORTED: "L0's W_Q top direction is closer to T_proj's leading direction than a random direction would be. "
                   "The two live in coordinate systems that are not aligned, so this says where the coordinates "
                   "happen to agree, not that training aligned them.",
        CONTRADICTED: f"|cos| is inside the random-direction null in every seed, while the note's {note['l0_wq_alignment']} "
                      f"would be far outside it at d = {d}: the alignment does not reproduce.",
        NOT_DEMONSTRATED: "The seeds disagree, or the note's value would not be distinguishable from a random direction "
                          f"at d = {d}.",
    }[conclusion]
    return _verdict("l0_alignment", f"L0's W_Q aligns with T_proj's leading singular vector (|cos| = "
                    f"{note['l0_wq_alignment']}).", gates, number=number, number_text=number_text,
                    conclusion=conclusion, statistic=statistic, null=null,
                    power=f"the note's {note['l0_wq_alignment']} at d = {d}: p = "
                          f"{fmt(random_direction_p(note['l0_wq_alignment'], d))}",
                    rule=f"supported when every seed's |cos| has p < {alpha} against a random direction; contradicted "
                         f"when none has and the note's value would; otherwise not demonstrated",
                    finding=finding, note_value=note["l0_wq_alignment"], ours=pm(stat, spans=seeds_text(len(cos))))


# ----------------------------------------------------------------------------------------------- claim 5

def norm_matched_verdict(m: dict, note: dict, gates: dict) -> dict:
    np_ = m["note_protocol"]
    r2d = require(np_.get("r2_direct"), "r2_direct", "note_protocol")
    r2r = require(np_.get("r2_random"), "r2_random", "note_protocol")
    close = (within_tolerance(r2d, note["r2_direct"], absolute=True)
             and within_tolerance(r2r, note["r2_random"], absolute=True))
    number = UNINFORMATIVE if close else DOES_NOT_REPRODUCE
    number_text = (f"note R² {note['r2_direct']} (direct), {note['r2_random']} (random) · ours {fmt(r2d)}, {fmt(r2r)} → "
                   f"{number}: for a centred, norm-matched prediction R² = 2·cos − 1 by arithmetic, so any prediction "
                   f"uncorrelated with the weights gives ≈ −1")
    finding = (f"Direct R² = {fmt(r2d)} (cos {fmt(np_.get('cos_direct'))}), random R² = {fmt(r2r)} (cos "
               f"{fmt(np_.get('cos_random'))}). The numbers follow from the identity whatever the model; they say "
               f"nothing about how much of the weights the corpus predicts.")
    return _verdict("norm_matched", "Norm-matched 'direct' and 'random' predictions give R² ≈ −0.968 and −1.001.",
                    gates, number=number, number_text=number_text, conclusion=NOT_DEMONSTRATED,
                    statistic=f"cos(direct) = {fmt(np_.get('cos_direct'))}, cos(random) = {fmt(np_.get('cos_random'))}",
                    null="−1 (R² = 2·cos − 1 with cos ≈ 0)", power="an arithmetic identity: no test",
                    rule="an arithmetic identity: the number can reproduce, the claim cannot be tested by it",
                    finding=finding, note_value=f"{note['r2_direct']}, {note['r2_random']}", ours=f"{fmt(r2d)}, {fmt(r2r)}")


def intervention_verdict(diffs: dict, reason: str | None) -> dict:
    """The note's slogan tested causally: final validation loss of corpus-initialised minus randomly initialised
    models, paired by seed (95 % t interval), beside the rows-permuted control. `reason`: why the intervention gate
    (G1 for every variant, ≥ 2 seeds) fails, or None."""
    corpus = diffs["final_val_loss"].get("corpus", {})
    permuted = diffs["final_val_loss"].get("corpus_permuted", {})
    ci = corpus.get("ci95")
    helps = ci is not None and ci[1] < 0
    hurts = ci is not None and ci[0] > 0
    specific = helps and permuted.get("mean") is not None and permuted["mean"] > corpus["mean"]
    conclusion = SUPPORTED if helps and specific else CONTRADICTED if hurts else NOT_DEMONSTRATED
    final = WITHHELD if reason else conclusion
    statistic = (f"final validation loss, corpus-initialised minus random (paired by seed): {fmt(corpus.get('mean'))} "
                 f"nats, 95 % CI {('[' + fmt(ci[0]) + ', ' + fmt(ci[1]) + ']') if ci else '—'} (t interval over seeds); "
                 f"rows permuted within frequency strata: {fmt(permuted.get('mean'))}")
    finding = {SUPPORTED: "Starting in the corpus's coordinate system gives a lower loss at the same budget, and the "
                          "right token identities matter.",
               CONTRADICTED: "Starting in the corpus's coordinate system gives a higher loss at the same budget.",
               NOT_DEMONSTRATED: "No reliable gain from starting in the corpus's coordinate system at this budget, or "
                                 "the gain does not depend on the right token identities."}[conclusion]
    if reason:
        finding = f"Withheld: {reason}. The decision rule alone would say “{conclusion}”. " + finding
    return dict(id="intervention", claim="The corpus gives the coordinate system, training gives the coordinates "
                "(tested causally: does a corpus-initialised model train better at the same budget?)",
                number="—", number_text="The note states this as a slogan: there is no number of the note to reproduce.",
                conclusion=final, conclusion_ungated=conclusion, status=final, statistic=statistic,
                null="random initialisation, same seeds, data order and budget; rows permuted within frequency strata",
                power="—", rule="supported when the 95 % CI of the paired difference lies below 0 and the permuted "
                                "rows do worse than the corpus rows; contradicted when the CI lies above 0",
                finding=finding, gates=["G1 (every variant)", "seeds"], reason=reason, note_value="(a slogan)",
                ours=fmt(corpus.get("mean")))


def all_verdicts(metrics: dict, note: dict) -> list[dict]:
    gates = metrics["gates"]
    return [f(metrics, note, gates) for f in (corpus_basis_verdict, attention_verdict, depth_verdict, l0_verdict,
                                              norm_matched_verdict)]
