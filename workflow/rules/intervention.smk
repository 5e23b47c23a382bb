# The intervention experiment (experiments.init): models started from a corpus-derived W_E against the random
# initialisation, at the same seeds, data order, budget and schedule. Off by default (init: [random]).


rule init_embedding:
    input:
        train=res("tokens/train.npy"),
        shuffled=res("tokens/train_shuffled.npy"),
        meta=res("tokens/meta.json"),
        code=script_code("init_embedding"),
    output:
        embedding=res("init/{variant}.npy"),
    params:
        d=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        freq_bins=ANALYSIS["freq_bins"],
        seed=ANALYSIS["seed"],
    wildcard_constraints:
        variant="corpus|corpus_permuted|shuffled_corpus",
    log:
        res("logs/init_embedding/{variant}.log"),
    benchmark:
        res("benchmarks/init_embedding/{variant}.tsv")
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
        log=res("train/{run}/log.parquet"),
        random_log=lambda wildcards: res(f"train/{random_init_run(RUNS[wildcards.run]['seed'])}/log.parquet"),
        random_meta=lambda wildcards: res(f"weights/{random_init_run(RUNS[wildcards.run]['seed'])}/snapshot_100.json"),
        snapshots=expand(res("weights/{{run}}/snapshot_{pct:03d}.npz"), pct=SNAPSHOT_PCTS),
        embeddings=res("corpus_stats/embeddings.npz"),
        covariance=res("corpus_stats/covariance.npz"),
        ladder=res("corpus_stats/ladder.json"),
        val=res("tokens/val.npy"),
        vocab=res("tokens/vocab.parquet"),
        code=script_code("intervention"),
    output:
        json=res("intervention/{run}.json"),
    params:
        identity=lambda wildcards: trained_identity(wildcards.run),
        align={k: ANALYSIS[k] for k in ["top_n", "freq_bins", "seed"]},
        K=ANALYSIS["headline_K"],
    log:
        res("logs/intervention/{run}.log"),
    benchmark:
        res("benchmarks/intervention/{run}.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/intervention.py"
