# The intervention experiment (experiments.init): models started from a corpus-derived W_E against the random
# initialisation, at the same seeds, data order, budget and schedule. Off by default (init: [random]).


rule init_embedding:
    input:
        train="results/tokens/{corpus}/train.npy",
        shuffled="results/tokens/{corpus}/train_shuffled.npy",
        meta="results/tokens/{corpus}/meta.json",
        code=lib("initialisation"),
    output:
        embedding="results/init/{corpus}/{variant}.npy",
    params:
        d=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        freq_bins=ANALYSIS["freq_bins"],
        seed=ANALYSIS["seed"],
    wildcard_constraints:
        variant="corpus|corpus_permuted|shuffled_corpus",
    log:
        "results/logs/init_embedding/{corpus}.{variant}.log",
    benchmark:
        "results/benchmarks/init_embedding/{corpus}.{variant}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/init_embedding.py"


rule intervention:
    input:
        log="results/train/{run}/log.parquet",
        random_log=lambda wildcards: f"results/train/orig-s{RUNS[wildcards.run]['seed']}/log.parquet",
        snapshots=expand("results/weights/{{run}}/snapshot_{pct:03d}.npz", pct=SNAPSHOT_PCTS),
        embeddings=f"results/corpus_stats/{CORPUS}/embeddings.npz",
        covariance=f"results/corpus_stats/{CORPUS}/covariance.npz",
        ladder=f"results/corpus_stats/{CORPUS}/ladder.json",
        val=f"results/tokens/{CORPUS}/val.npy",
        vocab=f"results/tokens/{CORPUS}/vocab.parquet",
        code=lib("intervention"),
    output:
        json="results/intervention/{run}.json",
    params:
        identity=lambda wildcards: RUNS[wildcards.run] | {"run": wildcards.run},
        align={k: ANALYSIS[k] for k in ["top_n", "freq_bins", "seed"]},
        K=ANALYSIS["headline_K"],
    log:
        "results/logs/intervention/{run}.log",
    benchmark:
        "results/benchmarks/intervention/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/intervention.py"
