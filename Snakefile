# corpus-weights: how much of a trained transformer's weights can be derived from corpus statistics?
# Chain: prepare corpus -> tokenize -> corpus statistics -> train -> extract weights -> projections/alignment -> report.
# Run: snakemake --cores 8 results/report.html   (see README.md; configuration in config/README.md)
import os

from snakemake.utils import min_version

min_version("9.0")


# The default config is found next to this Snakefile, so `--directory` and runs from elsewhere still merge the
# user's --configfile over it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/planted.smk"
include: "workflow/rules/checkpoint.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/intervention.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report.html",
        "results/metrics.json",
    default_target: True
