# The report: gates, verdicts, every table and figure of the note beside ours, plus metrics.json.


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
        metrics="results/metrics.json",
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
