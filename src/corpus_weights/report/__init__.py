"""Everything after the per-model measurements: metrics.json, gates, verdicts, the report page, results pages, the comparison. Imports core, corpus and measure."""
