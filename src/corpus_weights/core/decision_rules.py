"""Every threshold a gate or a verdict uses, and the words they answer with, in one place (a leaf module).

Gates (gates.py) decide whether a measurement can mean anything; verdicts (verdicts.py) state, per claim of the
note, two things kept apart:
- the *number*: does the note's value reproduce under the note's own protocol, like for like?
  "reproduces", "does not reproduce", or "reproduces (uninformative)" when the number is an arithmetic identity
  or sits inside its null (it would come out the same for any model);
- the *conclusion*: is the note's claim supported, contradicted, or not demonstrated (the test lacks the power to
  tell, or the claim is not testable on this run) — or withheld, naming the gate that failed. No conclusion is
  drawn from a model that fails G1, whatever the claim.
The intervention experiment's gate reuses G1's rule (`trained_enough`).
"""
from __future__ import annotations

import math

GATE_THRESHOLDS = dict(min_val_gain=0.3, min_learned_fraction=0.5, min_control_z=5.0, min_control_r=0.05,
                       max_null_abs_z=3.0, max_map_p=0.01, min_seeds=2)

VERDICT_THRESHOLDS = dict(
    reproduce_rel_tol=0.25,   # a note value reproduces when ours is within 25 % of it (relative)
    reproduce_abs_tol=0.1,    # ... or within 0.1 absolute for values near ±1 (the norm-matched R²)
    min_z=3.0,                # an effect is stated when z > 3 on its whole uncertainty
    max_fpr=0.05,             # a decision rule is used only when its measured false-positive rate is ≤ 5 % ...
    fpr_alpha=0.05,           # ... i.e. not significantly above it (one-sided binomial test over the models measured)
    l0_alpha=0.01,            # |cos| with a fixed direction is significant when its exact random-direction p < 0.01
    inside_null_z=3.0,        # a note-protocol cosine is "inside its null" when |z| < 3
)

# Gates each claim's conclusion needs. G1 is in every list: no conclusion from a model that is not trained.
CLAIM_GATES = {
    "corpus_basis": ["G1", "G3"],
    "attention": ["G1", "G2"],
    "depth": ["G1"],
    "l0_alignment": ["G1"],
    "norm_matched": ["G1"],
}

# The number, under the note's protocol
REPRODUCES = "reproduces"
DOES_NOT_REPRODUCE = "does not reproduce"
UNINFORMATIVE = "reproduces (uninformative)"
# The conclusion
SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_DEMONSTRATED = "not demonstrated"
WITHHELD = "withheld"
CONCLUSIONS = (SUPPORTED, CONTRADICTED, NOT_DEMONSTRATED, WITHHELD)


def trained_enough(val_gain: float, learned_fraction: float, t=GATE_THRESHOLDS) -> bool:
    """G1's rule for one model: validation loss ≥ min_val_gain nats below the unigram CE and g ≥ the minimum."""
    return bool(val_gain >= t["min_val_gain"] and learned_fraction >= t["min_learned_fraction"])


def within_tolerance(ours: float, note: float, t=VERDICT_THRESHOLDS, absolute: bool = False) -> bool:
    """Does our value reproduce the note's (relative tolerance, or absolute for values of order one)?"""
    if not (math.isfinite(ours) and math.isfinite(note)):
        return False
    if absolute:
        return abs(ours - note) <= t["reproduce_abs_tol"]
    return abs(ours - note) <= t["reproduce_rel_tol"] * abs(note)


def significant(z: float, t=VERDICT_THRESHOLDS) -> bool:
    return bool(z is not None and math.isfinite(z) and z > t["min_z"])


def fpr_consistent(fpr: float, n_models: int, t=VERDICT_THRESHOLDS) -> bool:
    """Is a false-positive rate measured on n_models null models consistent with ≤ max_fpr? With 20 models the rate
    moves in steps of 0.05, so 2 false positives (0.10) are well within chance at 5 % (P = 0.26) while 4 are not
    (P = 0.016): the rule is refused only when the measured rate is significantly above its bound."""
    from scipy.stats import binom

    k = int(round(fpr * n_models))
    return bool(binom.sf(k - 1, n_models, t["max_fpr"]) >= t["fpr_alpha"])
