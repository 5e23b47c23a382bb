# A model trained elsewhere (`model.source: checkpoint`, run kind "checkpoint" in the registry): rule import_checkpoint
# reads it into the weight contract (model/checkpoints.py: Hugging Face GPT-2, nanoGPT, this workflow's safetensors)
# and writes its step-0 control, a re-initialisation of the same architecture with the first train seed, where
# extract_weights writes a trained run's snapshots. Its validation loss comes from rule validation_loss (planted.smk);
# rule tokenize has used the model's own tokenizer; align, measure, attention, fit_projections, metrics and report run
# unchanged. Without model.source: checkpoint there is no such run and this rule plans nothing.

rule import_checkpoint:
    input:
        checkpoint=CHECKPOINT["files"] if CHECKPOINT else [],
        meta=result_path("tokens_meta"),
        code=script_code("import_checkpoint"),
    output:
        weights=result_path("weights", snap="snapshot_100"),
        meta=result_path("weights_meta", snap="snapshot_100"),
        init=result_path("weights", snap="snapshot_000"),
        init_meta=result_path("weights_meta", snap="snapshot_000"),
    params:
        checkpoint=checkpoint_params() if CHECKPOINT else None,
    wildcard_constraints:
        run=registry_pattern(CHECKPOINT_RUNS),
    log:
        res("logs/import_checkpoint/{run}.log"),
    benchmark:
        res("benchmarks/import_checkpoint/{run}.tsv")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/import_checkpoint.py"
