# Measurements on one model snapshot. `align` fits the corpus -> model map with its nulls and the corpus basis with its
# basis null (for every K at once); `measure` computes the loss ladder, the positive controls, the note's protocol and
# the weight spectra; `attention` tests every head; `fit_projections` is the cheap per-K part (K is a wildcard, so
# adding a K plans only that K's jobs and the report).

STATS = f"results/{CORPUS}/corpus_stats"
TOKENS = f"results/{CORPUS}/tokens"


rule align:
    input:
        weights="results/{corpus}/weights/{run}/{snap}.npz",
        embeddings=f"{STATS}/embeddings.npz",
        covariance=f"{STATS}/covariance.npz",
        vocab=f"{TOKENS}/vocab.parquet",
        code=script_code("align"),
    output:
        npz="results/{corpus}/analysis/{run}/{snap}/alignment.npz",
        json="results/{corpus}/analysis/{run}/{snap}/alignment.json",
    params:
        align=align_params(),
    log:
        "results/{corpus}/logs/align/{run}.{snap}.log",
    benchmark:
        "results/{corpus}/benchmarks/align/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/align.py"


rule measure:
    input:
        unpack(measure_run_inputs),
        weights="results/{corpus}/weights/{run}/{snap}.npz",
        bigrams=f"{STATS}/bigram_counts.npz",
        embeddings=f"{STATS}/embeddings.npz",
        ladder=f"{STATS}/ladder.json",
        val=f"{TOKENS}/val.npy",
        vocab=f"{TOKENS}/vocab.parquet",
        code=script_code("measure"),
    output:
        summary="results/{corpus}/analysis/{run}/{snap}/summary.json",
        weight_spectra="results/{corpus}/analysis/{run}/{snap}/weight_spectra.parquet",
    params:
        measure=measure_params(),
        identity=lambda wildcards: analysed_identity(wildcards.run, wildcards.snap),
    log:
        "results/{corpus}/logs/measure/{run}.{snap}.log",
    benchmark:
        "results/{corpus}/benchmarks/measure/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/measure.py"


rule attention:
    input:
        weights="results/{corpus}/weights/{run}/{snap}.npz",
        step0="results/{corpus}/weights/{run}/snapshot_000.npz",
        bigrams=f"{STATS}/bigram_counts.npz",
        embeddings=f"{STATS}/embeddings.npz",
        val=f"{TOKENS}/val.npy",
        vocab=f"{TOKENS}/vocab.parquet",
        code=script_code("attention"),
    output:
        table="results/{corpus}/analysis/{run}/{snap}/attention.parquet",
        json="results/{corpus}/analysis/{run}/{snap}/attention.json",
    params:
        attention=attention_params(),
    log:
        "results/{corpus}/logs/attention/{run}.{snap}.log",
    benchmark:
        "results/{corpus}/benchmarks/attention/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/attention.py"


rule fit_projections:
    input:
        weights="results/{corpus}/weights/{run}/{snap}.npz",
        init="results/{corpus}/weights/{run}/snapshot_000.npz",
        alignment="results/{corpus}/analysis/{run}/{snap}/alignment.npz",
        covariance=f"{STATS}/covariance.npz",
        embeddings=f"{STATS}/embeddings.npz",
        code=script_code("fit_projections"),
    output:
        table="results/{corpus}/analysis/{run}/{snap}/projection/K{K}.parquet",
    params:
        projection=projection_params(),
    log:
        "results/{corpus}/logs/fit_projections/{run}.{snap}.K{K}.log",
    benchmark:
        "results/{corpus}/benchmarks/fit_projections/{run}.{snap}.K{K}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/fit_projections.py"
