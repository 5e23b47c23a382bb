# Corpus preparation, tokenization and training-free corpus statistics.


rule prepare_corpus:
    input:
        files=corpus_inputs,
        code=script_code("prepare_corpus"),
    output:
        text="resources/corpus/{corpus}.txt",
        manifest="resources/corpus/{corpus}.manifest.json",
    params:
        files=config["corpus"]["files"],
    log:
        "results/{corpus}/logs/prepare_corpus.log",
    benchmark:
        "results/{corpus}/benchmarks/prepare_corpus.tsv"
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
        code=script_code("tokenize"),
    output:
        train="results/{corpus}/tokens/train.npy",
        val="results/{corpus}/tokens/val.npy",
        vocab="results/{corpus}/tokens/vocab.parquet",
        tokenizer="results/{corpus}/tokens/tokenizer.json",
        meta="results/{corpus}/tokens/meta.json",
    params:
        tokenizer=config["tokenizer"],
        val_fraction=config["corpus"]["val_fraction"],
    log:
        "results/{corpus}/logs/tokenize.log",
    benchmark:
        "results/{corpus}/benchmarks/tokenize.tsv"
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
        train="results/{corpus}/tokens/train.npy",
        code=script_code("shuffle_tokens"),
    output:
        shuffled="results/{corpus}/tokens/train_shuffled.npy",
    params:
        seed=TRAIN["seeds"][0],
    log:
        "results/{corpus}/logs/shuffle_tokens.log",
    benchmark:
        "results/{corpus}/benchmarks/shuffle_tokens.tsv"
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
        train="results/{corpus}/tokens/train.npy",
        meta="results/{corpus}/tokens/meta.json",
        code=script_code("corpus_stats"),
    output:
        bigrams="results/{corpus}/corpus_stats/bigram_counts.npz",
        embeddings="results/{corpus}/corpus_stats/embeddings.npz",
        covariance="results/{corpus}/corpus_stats/covariance.npz",
        spectra="results/{corpus}/corpus_stats/spectra.parquet",
    params:
        dim=MODEL["d_model"],
        alpha=ANALYSIS["ppmi_alpha"],
        power=ANALYSIS["svd_power"],
        seed=ANALYSIS["seed"],
    log:
        "results/{corpus}/logs/corpus_stats.log",
    benchmark:
        "results/{corpus}/benchmarks/corpus_stats.tsv"
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
        train="results/{corpus}/tokens/train.npy",
        val="results/{corpus}/tokens/val.npy",
        meta="results/{corpus}/tokens/meta.json",
        code=script_code("corpus_ladder"),
    output:
        ladder="results/{corpus}/corpus_stats/ladder.json",
    log:
        "results/{corpus}/logs/corpus_ladder.log",
    benchmark:
        "results/{corpus}/benchmarks/corpus_ladder.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/corpus-weights.yaml"
    script:
        "../scripts/corpus_ladder.py"
