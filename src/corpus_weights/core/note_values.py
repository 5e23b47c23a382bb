"""The research note's own figures (../shared/docs/seed.md), so the report can put ours beside them.

These are the note's published numbers, not results of this project; every number of ours is computed by the run.
"""

NOTE = {
    "vocab_size": 15007,
    "n_layer": 8,
    "params": 10.2e6,
    "K": 32,
    "r2_corpus_linear": 0.383,
    "r2_direct": -0.968,
    "r2_random": -1.001,
    "training_share": 0.617,
    "qk_cosines": [0.001, -0.005, 0.001, -0.016, -0.007, -0.004, 0.000, -0.001],
    "l0_wq_alignment": 0.75,
    "l0_asymmetry_cos": 0.923,
    "pr_symmetric": 1.01,
    "L_opt": 1,
    "accounting": {
        "basis_params": 8448,
        "score_params": 1484736,
        "non_weight_params": 4352512,
        "weight_structure": 10393152,
        "structure_params": 10393152,
        "d": 256,
        "K": 32,
        "raw_weight_params": 11877888,
        "rows": 46398,
        "compression": 8.0,
        "derivable_share": 0.875,
    },
}
