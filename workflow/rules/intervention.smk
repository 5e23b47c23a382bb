# The intervention experiment (experiments.init): models started from a corpus-derived W_E against the random
# initialisation, at the same seeds, data order, budget and schedule. Off by default (init: [random]).


rule init_embedding:
    input:
        train=result_path("train_tokens"),
        shuffled=result_path("shuffled_tokens"),
        meta=result_path("tokens_meta"),
        code=script_code("init_embedding"),
    output:
        embedding=result_path("init_embedding"),
    params:
        d=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        freq_bins=ANALYSIS["freq_bins"],
        seed=ANALYSIS["seed"],
        solver=ANALYSIS["svd_solver"],
        device=ANALYSIS["svd_device"],
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
        gpu=svd_gpus(),
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/init_embedding.py"


rule intervention:
    input:
        log=result_path("train_log"),
        random_log=lambda wildcards: result_path("train_log", run=random_init_run(RUNS[wildcards.run]["seed"])),
        random_meta=lambda wildcards: result_path("weights_meta", run=random_init_run(RUNS[wildcards.run]["seed"]),
                                                  snap="snapshot_100"),
        snapshots=expand(result_path("weights", run="{{run}}", snap="snapshot_{pct:03d}"), pct=SNAPSHOT_PCTS),
        embeddings=result_path("embeddings"),
        covariance=result_path("covariance"),
        ladder=result_path("ladder"),
        val=result_path("val_tokens"),
        vocab=result_path("vocab"),
        code=script_code("intervention"),
    output:
        json=result_path("intervention"),
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
