# Measurements on one model snapshot: vocabulary alignment, projection shares per K (K is a wildcard, so adding
# a K computes only that K), attention vs corpus with nulls, and the note's protocol reproduced literally.

STATS = f"results/corpus_stats/{CORPUS}"
TOKENS = f"results/tokens/{CORPUS}"


rule alignment:
    input:
        weights="results/weights/{run}/{snap}.npz",
        embeddings=f"{STATS}/embeddings.npz",
        covariance=f"{STATS}/covariance.npz",
        code=lib("alignment", "residual_space", "analysis"),
    output:
        npz="results/analysis/{run}/{snap}/alignment.npz",
        json="results/analysis/{run}/{snap}/alignment.json",
    params:
        analysis=analysis_params(),
    log:
        "results/logs/alignment/{run}.{snap}.log",
    benchmark:
        "results/benchmarks/alignment/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/alignment.py"


rule fit_projections:
    input:
        weights="results/weights/{run}/{snap}.npz",
        init="results/weights/{run}/snapshot_000.npz",
        alignment="results/analysis/{run}/{snap}/alignment.npz",
        covariance=f"{STATS}/covariance.npz",
        embeddings=f"{STATS}/embeddings.npz",
        code=lib("projection", "note_protocol", "residual_space", "analysis"),
    output:
        table="results/analysis/{run}/{snap}/projection/K{K}.parquet",
    params:
        analysis=analysis_params(),
    log:
        "results/logs/fit_projections/{run}.{snap}.K{K}.log",
    benchmark:
        "results/benchmarks/fit_projections/{run}.{snap}.K{K}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/fit_projections.py"


rule attention:
    input:
        weights="results/weights/{run}/{snap}.npz",
        bigrams=f"{STATS}/bigram_counts.npz",
        embeddings=f"{STATS}/embeddings.npz",
        code=lib("alignment", "nulls", "residual_space", "analysis"),
    output:
        table="results/analysis/{run}/{snap}/attention.parquet",
        json="results/analysis/{run}/{snap}/attention.json",
    params:
        analysis=analysis_params(),
    log:
        "results/logs/attention/{run}.{snap}.log",
    benchmark:
        "results/benchmarks/attention/{run}.{snap}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=20,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/attention.py"


rule note_protocol:
    input:
        weights="results/weights/{run}/{snap}.npz",
        bigrams=f"{STATS}/bigram_counts.npz",
        embeddings=f"{STATS}/embeddings.npz",
        covariance=f"{STATS}/covariance.npz",
        code=lib("note_protocol", "nulls", "analysis"),
    output:
        json="results/analysis/{run}/{snap}/note_protocol.json",
    params:
        analysis=analysis_params(),
    log:
        "results/logs/note_protocol/{run}.{snap}.log",
    benchmark:
        "results/benchmarks/note_protocol/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/note_protocol.py"


rule weight_spectra:
    input:
        weights="results/weights/{run}/{snap}.npz",
        embeddings=f"{STATS}/embeddings.npz",
        code=lib("spectra", "residual_space", "analysis"),
    output:
        table="results/analysis/{run}/{snap}/weight_spectra.parquet",
    log:
        "results/logs/weight_spectra/{run}.{snap}.log",
    benchmark:
        "results/benchmarks/weight_spectra/{run}.{snap}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/weight_spectra.py"
