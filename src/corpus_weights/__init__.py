"""corpus-weights: how much of a trained transformer's weights can be derived from statistics of its training corpus.

The library is laid out by stage, imports running one way (tests/test_layering.py):
core (shared foundations) → corpus (text, tokens, corpus statistics) → model (the GPT, its trainer, weight files; the
only stage that imports torch) → measure (one model against its corpus) → report (metrics.json, gates, verdicts, pages).
measure and report read weight files and never import the model stage. Scripts in workflow/scripts/ only call it.
"""
