# The report: every table and figure of the note beside ours, plus metrics.json with every headline number.


def report_inputs(wildcards):
    per_model = ["alignment.json", "attention.parquet", "attention.json", "note_protocol.json",
                 "weight_spectra.parquet"]
    return {
        "manifest": f"resources/corpus/{CORPUS}.manifest.json",
        "tokens_meta": f"results/tokens/{CORPUS}/meta.json",
        "spectra": f"results/corpus_stats/{CORPUS}/spectra.parquet",
        "train_logs": [f"results/train/{run}/log.parquet" for run in ALL_RUNS],
        "train_summaries": [f"results/train/{run}/summary.json" for run in ALL_RUNS],
        "projections": projection_files(),
        "per_model": [f"results/analysis/{run}/{snap}/{name}" for _, run, snap in ANALYSED for name in per_model],
        "code": lib("report", "analysis"),
    }


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
        metrics="results/metrics.json",
    params:
        models=[{"label": label, "run": run, "snap": snap} for label, run, snap in ANALYSED],
        K=ANALYSIS["K"],
        headline_K=ANALYSIS.get("headline_K", 32),
        config=config,
        benchmarks_dir="results/benchmarks",
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report.py"
