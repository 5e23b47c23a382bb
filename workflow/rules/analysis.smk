# Measurements on one model snapshot. `align` fits the corpus -> model map with its nulls and the corpus basis with its
# basis null (for every K at once); `measure` computes the loss ladder, the positive controls, the note's protocol and
# the weight spectra; `attention` tests every head; `fit_projections` is the cheap per-K part (K is a wildcard, so
# adding a K plans only that K's jobs and the report).


rule align:
    input:
        weights=result_path("weights"),
        embeddings=result_path("embeddings"),
        covariance=result_path("covariance"),
        vocab=result_path("vocab"),
        code=script_code("align"),
    output:
        npz=result_path("alignment"),
        json=result_path("alignment_summary"),
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
        weights=result_path("weights"),
        bigrams=result_path("bigrams"),
        embeddings=result_path("embeddings"),
        ladder=result_path("ladder"),
        val=result_path("val_tokens"),
        vocab=result_path("vocab"),
        code=script_code("measure"),
    output:
        summary=result_path("summary"),
        weight_spectra=result_path("weight_spectra"),
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
        weights=result_path("weights"),
        step0=result_path("weights", snap="snapshot_000"),
        bigrams=result_path("bigrams"),
        embeddings=result_path("embeddings"),
        val=result_path("val_tokens"),
        vocab=result_path("vocab"),
        code=script_code("attention"),
    output:
        table=result_path("attention"),
        json=result_path("attention_summary"),
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
        weights=result_path("weights"),
        init=result_path("weights", snap="snapshot_000"),
        alignment=result_path("alignment"),
        covariance=result_path("covariance"),
        embeddings=result_path("embeddings"),
        code=script_code("fit_projections"),
    output:
        table=result_path("projection"),
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
        models=expand(result_path("model", run="{{run}}", snap="snapshot_{pct:03d}"), pct=SNAPSHOT_PCTS),
        train_log=result_path("train_log"),
        bigrams=result_path("bigrams"),
        embeddings=result_path("embeddings"),
        covariance=result_path("covariance"),
        ladder=result_path("ladder"),
        val=result_path("val_tokens"),
        vocab=result_path("vocab"),
        code=script_code("trajectory"),
    output:
        table=result_path("trajectory"),
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
