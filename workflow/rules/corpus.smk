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
        code=script_code("tokenize"),
    output:
        train=res("tokens/train.npy"),
        val=res("tokens/val.npy"),
        vocab=res("tokens/vocab.parquet"),
        tokenizer=res("tokens/tokenizer.json"),
        meta=res("tokens/meta.json"),
    params:
        tokenizer=config["tokenizer"],
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
        train=res("tokens/train.npy"),
        code=script_code("shuffle_tokens"),
    output:
        shuffled=res("tokens/train_shuffled.npy"),
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
        train=res("tokens/train.npy"),
        meta=res("tokens/meta.json"),
        code=script_code("corpus_stats"),
    output:
        bigrams=res("corpus_stats/bigram_counts.npz"),
        embeddings=res("corpus_stats/embeddings.npz"),
        covariance=res("corpus_stats/covariance.npz"),
        spectra=res("corpus_stats/spectra.parquet"),
    params:
        dim=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        seed=ANALYSIS["seed"],
    log:
        res("logs/corpus_stats.log"),
    benchmark:
        res("benchmarks/corpus_stats.tsv")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/corpus_stats.py"


rule corpus_ladder:
    input:
        train=res("tokens/train.npy"),
        val=res("tokens/val.npy"),
        meta=res("tokens/meta.json"),
        code=script_code("corpus_ladder"),
    output:
        ladder=res("corpus_stats/ladder.json"),
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
