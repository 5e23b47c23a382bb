"""Measurements of one model against its corpus: residual space, projections, alignment, attention, controls, loss ladder, the note's protocol, the trajectory. Imports core and corpus."""
