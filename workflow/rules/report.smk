# The report: gates, verdicts, every table and figure of the note beside ours, plus metrics.json; its figures and
# full tables are also written as files (results/report_files/), which `snakemake --report` collects.

REPORT_FIGURES = ["loss_ladder", "training", "r2k", "r2k_dW", "attention_layers", "matrix_layer_heatmap",
                  "head_heatmap", "spectra_heatmap"]
REPORT_TABLES = ["per_matrix", "per_head", "weight_spectra", "runtimes"]


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
        metrics="results/metrics.json",
        figures=[
            report(f"results/report_files/{name}.png", caption=f"../report/{name}.rst", category="Figures")
            for name in REPORT_FIGURES
        ],
        tables=[
            report(f"results/report_files/{name}.csv", caption="../report/table.rst", category="Tables")
            for name in REPORT_TABLES
        ],
    params:
        models=[{**e, "files": model_files(e)} for e in ANALYSED],
        runs=list(RUNS),
        K=ANALYSIS["K"],
        headline_K=ANALYSIS["headline_K"],
        config=config,
        config_hash=config_hash(),
        benchmarks=[f"results/benchmarks/{rule}/{job}.tsv" for rule, job in benchmark_jobs()],
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/report.py"
