# Corpus preparation, tokenization and training-free corpus statistics.


rule prepare_corpus:
    input:
        files=corpus_inputs,
        code=script_code("prepare_corpus"),
    output:
        text=CORPUS_TEXT,
        manifest=CORPUS_MANIFEST,
    params:
        files=config["corpus"]["files"],
    log:
        res("logs/prepare_corpus.log"),
    benchmark:
        res("benchmarks/prepare_corpus.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/prepare_corpus.py"


rule tokenize:
    input:
        text=CORPUS_TEXT,
        own_tokenizer=own_tokenizer_files(),  # a checkpoint run: the model's tokenizer (else none)
        code=script_code("tokenize"),
    output:
        train=result_path("train_tokens"),
        val=result_path("val_tokens"),
        vocab=result_path("vocab"),
        tokenizer=result_path("tokenizer"),
        meta=result_path("tokens_meta"),
    params:
        tokenizer=config["tokenizer"],
        own_tokenizer=CHECKPOINT["tokenizer"] if CHECKPOINT else None,
        val_fraction=config["corpus"]["val_fraction"],
    log:
        res("logs/tokenize.log"),
    benchmark:
        res("benchmarks/tokenize.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/tokenize.py"


rule shuffle_tokens:
    input:
        train=result_path("train_tokens"),
        code=script_code("shuffle_tokens"),
    output:
        shuffled=result_path("shuffled_tokens"),
    params:
        seed=TRAIN["seeds"][0],
    log:
        res("logs/shuffle_tokens.log"),
    benchmark:
        res("benchmarks/shuffle_tokens.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/shuffle_tokens.py"


rule corpus_stats:
    input:
        train=result_path("train_tokens"),
        meta=result_path("tokens_meta"),
        code=script_code("corpus_stats"),
    output:
        bigrams=result_path("bigrams"),
        embeddings=result_path("embeddings"),
        covariance=result_path("covariance"),
        spectra=result_path("spectra"),
    params:
        dim=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        seed=ANALYSIS["seed"],
        solver=ANALYSIS["svd_solver"],
        device=ANALYSIS["svd_device"],
        spectrum_k=ANALYSIS["spectrum_k"],
    log:
        res("logs/corpus_stats.log"),
    benchmark:
        res("benchmarks/corpus_stats.tsv")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=svd_gpus(),  # 1 with analysis.svd_solver: torch on CUDA (the profile's sbatch then asks for it)
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/corpus_stats.py"


rule corpus_ladder:
    input:
        train=result_path("train_tokens"),
        val=result_path("val_tokens"),
        meta=result_path("tokens_meta"),
        code=script_code("corpus_ladder"),
    output:
        ladder=result_path("ladder"),
    log:
        res("logs/corpus_ladder.log"),
    benchmark:
        res("benchmarks/corpus_ladder.tsv")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/corpus_ladder.py"
