# Measurements on one model snapshot. `align` fits the corpus -> model map with its nulls and the corpus basis with its
# basis null (for every K at once); `measure` computes the loss ladder, the positive controls, the note's protocol and
# the weight spectra; `attention` tests every head; `fit_projections` is the cheap per-K part (K is a wildcard, so
# adding a K plans only that K's jobs and the report).


rule align:
    input:
        weights=res("weights/{run}/{snap}.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        covariance=res("corpus_stats/covariance.npz"),
        vocab=res("tokens/vocab.parquet"),
        code=script_code("align"),
    output:
        npz=res("analysis/{run}/{snap}/alignment.npz"),
        json=res("analysis/{run}/{snap}/alignment.json"),
    params:
        align=align_params(),
    log:
        res("logs/align/{run}.{snap}.log"),
    benchmark:
        res("benchmarks/align/{run}.{snap}.tsv")
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
        weights=res("weights/{run}/{snap}.npz"),
        bigrams=res("corpus_stats/bigram_counts.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        ladder=res("corpus_stats/ladder.json"),
        val=res("tokens/val.npy"),
        vocab=res("tokens/vocab.parquet"),
        code=script_code("measure"),
    output:
        summary=res("analysis/{run}/{snap}/summary.json"),
        weight_spectra=res("analysis/{run}/{snap}/weight_spectra.parquet"),
    params:
        measure=measure_params(),
        identity=lambda wildcards: analysed_identity(wildcards.run, wildcards.snap),
    log:
        res("logs/measure/{run}.{snap}.log"),
    benchmark:
        res("benchmarks/measure/{run}.{snap}.tsv")
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
        weights=res("weights/{run}/{snap}.npz"),
        step0=res("weights/{run}/snapshot_000.npz"),
        bigrams=res("corpus_stats/bigram_counts.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        val=res("tokens/val.npy"),
        vocab=res("tokens/vocab.parquet"),
        code=script_code("attention"),
    output:
        table=res("analysis/{run}/{snap}/attention.parquet"),
        json=res("analysis/{run}/{snap}/attention.json"),
    params:
        attention=attention_params(),
    log:
        res("logs/attention/{run}.{snap}.log"),
    benchmark:
        res("benchmarks/attention/{run}.{snap}.tsv")
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
        weights=res("weights/{run}/{snap}.npz"),
        init=res("weights/{run}/snapshot_000.npz"),
        alignment=res("analysis/{run}/{snap}/alignment.npz"),
        covariance=res("corpus_stats/covariance.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        code=script_code("fit_projections"),
    output:
        table=res("analysis/{run}/{snap}/projection/K{K}.parquet"),
    params:
        projection=projection_params(),
    log:
        res("logs/fit_projections/{run}.{snap}.K{K}.log"),
    benchmark:
        res("benchmarks/fit_projections/{run}.{snap}.K{K}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/fit_projections.py"


rule trajectory:
    input:
        unpack(trajectory_analysed),
        snapshots=expand(res("weights/{{run}}/snapshot_{pct:03d}.npz"), pct=SNAPSHOT_PCTS),
        models=expand(res("train/{{run}}/snapshot_{pct:03d}.safetensors"), pct=SNAPSHOT_PCTS),
        train_log=res("train/{run}/log.parquet"),
        bigrams=res("corpus_stats/bigram_counts.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        covariance=res("corpus_stats/covariance.npz"),
        ladder=res("corpus_stats/ladder.json"),
        val=res("tokens/val.npy"),
        vocab=res("tokens/vocab.parquet"),
        code=script_code("trajectory"),
    output:
        table=res("analysis/{run}/trajectory.parquet"),
    params:
        trajectory=trajectory_params(),
        model=dict(n_head=MODEL["n_head"], context=MODEL["context"], batch_size=TRAIN["batch_size"],
                   eval_tokens=TRAIN["eval_tokens"], dtype=TRAIN["dtype"]),
    log:
        res("logs/trajectory/{run}.log"),
    benchmark:
        res("benchmarks/trajectory/{run}.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/trajectory.py"
