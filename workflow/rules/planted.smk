# Weights from a file instead of training (`source: file` in the run registry): rule plant_weights writes a planted
# model of the verdict calibration (config key `calibration`, docs/calibration.md) where extract_weights writes a
# trained model's weights, and rule validation_loss evaluates such weights on the validation windows (the train log
# gives a trained model's); align, measure, attention, fit_projections, metrics and report then run unchanged.
# With `calibration` unset there is no such run and these rules plan nothing. Rules train and extract_weights are
# constrained to the trained runs, so a run from a file has exactly one producer of its weights.

rule plant_weights:
    input:
        unpack(plant_inputs),
        code=script_code("plant_weights"),
    output:
        weights=result_path("weights", snap="snapshot_100"),
        meta=result_path("weights_meta", snap="snapshot_100"),
        init=result_path("weights", snap="snapshot_000"),
        init_meta=result_path("weights_meta", snap="snapshot_000"),
    params:
        plant=plant_params,
    wildcard_constraints:
        run=registry_pattern(FROM_FILE),
    log:
        res("logs/plant_weights/{run}.log"),
    benchmark:
        res("benchmarks/plant_weights/{run}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/plant_weights.py"


rule validation_loss:
    input:
        weights=result_path("weights"),
        val=result_path("val_tokens"),
        code=script_code("validation_loss"),
    output:
        json=result_path("validation"),
    params:
        eval_tokens=TRAIN["eval_tokens"],
    wildcard_constraints:
        run=registry_pattern(FROM_FILE + CHECKPOINT_RUNS),  # weights from a file or a checkpoint, never trained
    log:
        res("logs/validation_loss/{run}.{snap}.log"),
    benchmark:
        res("benchmarks/validation_loss/{run}.{snap}.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/validation_loss.py"
