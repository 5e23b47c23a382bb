# Training (one job per seed and control) and weight extraction per snapshot.


rule train:
    input:
        unpack(train_inputs),
        val=res("tokens/val.npy"),
        meta=res("tokens/meta.json"),
        code=script_code("train"),
    output:
        final=res("train/{run}/final.safetensors"),
        snapshots=expand(res("train/{{run}}/snapshot_{pct:03d}.safetensors"), pct=SNAPSHOT_PCTS),
        log=res("train/{run}/log.parquet"),
        summary=res("train/{run}/summary.json"),
    params:
        model=MODEL,
        train=train_params,
        val_fraction=config["corpus"]["val_fraction"],
        # Resume state lives outside the job's outputs so that Snakemake does not delete it when a job fails.
        state_dir=lambda wildcards: res(f".train_state/{wildcards.run}"),
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
        model=res("train/{run}/{snap}.safetensors"),
        code=script_code("extract_weights"),
    output:
        weights=res("weights/{run}/{snap}.npz"),
        meta=res("weights/{run}/{snap}.json"),
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
