# Training (one job per seed and control) and weight extraction per snapshot.


rule train:
    input:
        unpack(train_inputs),
        val=result_path("val_tokens"),
        meta=result_path("tokens_meta"),
        code=script_code("train"),
    output:
        final=result_path("final_model"),
        snapshots=expand(result_path("model", run="{{run}}", snap="snapshot_{pct:03d}"), pct=SNAPSHOT_PCTS),
        log=result_path("train_log"),
        summary=result_path("train_summary"),
    params:
        model=MODEL_ARCH,
        train=train_params,
        val_fraction=config["corpus"]["val_fraction"],
        # Resume state lives outside the job's outputs so that Snakemake does not delete it when a job fails.
        state_dir=lambda wildcards: result_path("train_state", run=wildcards.run),
    wildcard_constraints:
        run=registry_pattern(TRAINED),  # a run whose weights come from a file is never trained
    log:
        res("logs/train/{run}.log"),
    benchmark:
        res("benchmarks/train/{run}.tsv")
    threads: 8
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/train.py"


rule extract_weights:
    input:
        model=result_path("model"),
        code=script_code("extract_weights"),
    output:
        weights=result_path("weights"),
        meta=result_path("weights_meta"),
    wildcard_constraints:
        run=registry_pattern(TRAINED),  # a run from a file gets its weights file from its own rule (planted.smk)
    log:
        res("logs/extract_weights/{run}.{snap}.log"),
    benchmark:
        res("benchmarks/extract_weights/{run}.{snap}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/extract_weights.py"
