# The intervention experiment (experiments.init): models started from a corpus-derived W_E against the random
# initialisation, at the same seeds, data order, budget and schedule. Off by default (init: [random]).


rule init_embedding:
    input:
        train="results/{corpus}/tokens/train.npy",
        shuffled="results/{corpus}/tokens/train_shuffled.npy",
        meta="results/{corpus}/tokens/meta.json",
        code=script_code("init_embedding"),
    output:
        embedding="results/{corpus}/init/{variant}.npy",
    params:
        d=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        freq_bins=ANALYSIS["freq_bins"],
        seed=ANALYSIS["seed"],
    wildcard_constraints:
        variant="corpus|corpus_permuted|shuffled_corpus",
    log:
        "results/{corpus}/logs/init_embedding/{variant}.log",
    benchmark:
        "results/{corpus}/benchmarks/init_embedding/{variant}.tsv"
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
        log="results/{corpus}/train/{run}/log.parquet",
        random_log=lambda wildcards: f"results/{CORPUS}/train/orig-s{RUNS[wildcards.run]['seed']}/log.parquet",
        snapshots=expand("results/{{corpus}}/weights/{{run}}/snapshot_{pct:03d}.npz", pct=SNAPSHOT_PCTS),
        embeddings=f"results/{CORPUS}/corpus_stats/embeddings.npz",
        covariance=f"results/{CORPUS}/corpus_stats/covariance.npz",
        ladder=f"results/{CORPUS}/corpus_stats/ladder.json",
        val=f"results/{CORPUS}/tokens/val.npy",
        vocab=f"results/{CORPUS}/tokens/vocab.parquet",
        code=script_code("intervention"),
    output:
        json="results/{corpus}/intervention/{run}.json",
    params:
        identity=lambda wildcards: trained_identity(wildcards.run),
        align={k: ANALYSIS[k] for k in ["top_n", "freq_bins", "seed"]},
        K=ANALYSIS["headline_K"],
    log:
        "results/{corpus}/logs/intervention/{run}.log",
    benchmark:
        "results/{corpus}/benchmarks/intervention/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/intervention.py"
