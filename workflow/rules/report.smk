# `metrics` assembles metrics.json (every number: gates, verdicts, seeds, run times) from the per-model files;
# `report` only renders it: every table and figure of the note beside ours; its figures and full tables are also
# written as files (results/<corpus>/<experiment>/report_files/), which `snakemake --report` collects.
# Every experiment of every corpus keeps its report under results/<corpus>/<experiment>/; results/report.html is a copy
# of the configured one's.

REPORT_FIGURES = ["loss_ladder", "training", "r2k", "r2k_dW", "attention_layers", "matrix_layer_heatmap",
                  "head_heatmap", "spectra_heatmap", "trajectory"]
REPORT_TABLES = ["per_matrix", "per_head", "weight_spectra", "runtimes"]


rule metrics:
    input:
        unpack(metrics_inputs),
    output:
        metrics=result_path("metrics"),
    params:
        models=[{**e, "files": model_files(e)} for e in ANALYSED],
        runs=TRAINED,
        trajectory_runs=TRAJECTORY,
        K=ANALYSIS["K"],
        headline_K=ANALYSIS["headline_K"],
        config=config,
        config_hash=config_hash(),
        benchmarks=benchmark_jobs(),
        checkpoint=CHECKPOINT,
    log:
        res("logs/metrics.log"),
    benchmark:
        res("benchmarks/metrics.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/metrics.py"


rule report:
    input:
        unpack(report_inputs),
    output:
        html=result_path("report"),
        figures=[
            report(result_path("report_file", name=f"{name}.png"), caption=f"../report/{name}.rst", category="Figures")
            for name in REPORT_FIGURES
        ],
        tables=[
            report(result_path("report_file", name=f"{name}.csv"), caption="../report/table.rst", category="Tables")
            for name in REPORT_TABLES
        ],
    params:
        models=[{**e, "files": model_files(e)} for e in ANALYSED],
        runs=TRAINED,
        K=ANALYSIS["K"],
        headline_K=ANALYSIS["headline_K"],
        config=config,
    log:
        res("logs/report.log"),
    benchmark:
        res("benchmarks/report.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/report.py"


rule current_report:
    input:
        html=result_path("report"),
        metrics=result_path("metrics"),
        code=script_code("current_report"),
    output:
        html="results/report.html",
        metrics="results/metrics.json",
    params:
        corpus=CORPUS,
        experiment=EXPERIMENT,
    log:
        res("logs/current_report.log"),
    localrule: True
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/current_report.py"
