# The report: every table and figure of the note beside ours, plus metrics.json with every headline number.


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
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/report.py"
