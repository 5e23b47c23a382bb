# Corpus preparation, tokenization and training-free corpus statistics.


rule prepare_corpus:
    input:
        files=corpus_inputs,
        code=lib("corpus"),
    output:
        text="resources/corpus/{corpus}.txt",
        manifest="resources/corpus/{corpus}.manifest.json",
    params:
        files=config["corpus"]["files"],
    log:
        "results/logs/prepare_corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/prepare_corpus/{corpus}.tsv"
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
        text="resources/corpus/{corpus}.txt",
        code=lib("tokenizing"),
    output:
        train="results/tokens/{corpus}/train.npy",
        val="results/tokens/{corpus}/val.npy",
        vocab="results/tokens/{corpus}/vocab.parquet",
        tokenizer="results/tokens/{corpus}/tokenizer.json",
        meta="results/tokens/{corpus}/meta.json",
    params:
        tokenizer=config["tokenizer"],
        val_fraction=config["corpus"].get("val_fraction", 0.05),
    log:
        "results/logs/tokenize/{corpus}.log",
    benchmark:
        "results/benchmarks/tokenize/{corpus}.tsv"
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
        train="results/tokens/{corpus}/train.npy",
        code=lib("tokenizing"),
    output:
        shuffled="results/tokens/{corpus}/train_shuffled.npy",
    params:
        seed=TRAIN["seeds"][0],
    log:
        "results/logs/shuffle_tokens/{corpus}.log",
    benchmark:
        "results/benchmarks/shuffle_tokens/{corpus}.tsv"
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
        train="results/tokens/{corpus}/train.npy",
        meta="results/tokens/{corpus}/meta.json",
        code=lib("corpus_stats", "spectra"),
    output:
        bigrams="results/corpus_stats/{corpus}/bigram_counts.npz",
        embeddings="results/corpus_stats/{corpus}/embeddings.npz",
        covariance="results/corpus_stats/{corpus}/covariance.npz",
        spectra="results/corpus_stats/{corpus}/spectra.parquet",
    params:
        dim=MODEL["d_model"],
        alpha=ANALYSIS.get("ppmi_alpha", 0.75),
        power=ANALYSIS.get("svd_power", 0.5),
        seed=ANALYSIS.get("seed", 0),
    log:
        "results/logs/corpus_stats/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus_stats/{corpus}.tsv"
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
        train="results/tokens/{corpus}/train.npy",
        val="results/tokens/{corpus}/val.npy",
        meta="results/tokens/{corpus}/meta.json",
        code=lib("loss_ladder"),
    output:
        ladder="results/corpus_stats/{corpus}/ladder.json",
    log:
        "results/logs/corpus_ladder/{corpus}.log",
    benchmark:
        "results/benchmarks/corpus_ladder/{corpus}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/corpus_ladder.py"
