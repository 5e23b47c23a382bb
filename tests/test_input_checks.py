"""Degenerate inputs are refused naming the key to change and a value that would work (input_checks)."""
from corpus_weights.core.input_checks import budget_problems, corpus_problems, map_problems, split_problems, width_problems


def test_budget_below_one_batch():
    (key, text), = budget_problems(100, 16, 16)
    assert key == "train.tokens" and "256" in text and "one batch" in text
    assert budget_problems(256, 16, 16) == []


def test_validation_split_shorter_than_a_window():
    (key, text), = split_problems(n_train=100_000, n_val=2484, context=4096, val_fraction=0.05)
    assert key == "model.context" and "2,484" in text and "model.context ≤ 2,482" in text
    assert split_problems(100_000, 4098, 4096, 0.05) == []


def test_too_few_distinct_tokens_for_the_width_and_the_map():
    # a 9-word text with a large vocabulary_size: 9 distinct tokens, d = 32, top_n = 100
    problems = dict(corpus_problems(n_train=40, n_val=5, vocab_size=9, context=16, d_model=32, top_n=100,
                                    val_fraction=0.1))
    assert set(problems) == {"model.context", "corpus.files", "model.d_model", "analysis.top_n"}
    assert "9 distinct tokens" in problems["model.d_model"]
    assert width_problems(33, 32) == [] and map_problems(15007, 2000, 96) == []
    assert map_problems(300, 100, 32) == []  # the tiny config: 100 ≥ 64
    (key, _), = map_problems(300, 100, 64)
    assert key == "analysis.top_n"


def test_results_page_on_a_run_without_the_intervention_says_so_without_a_traceback(tmp_path, capsys):
    import json

    from corpus_weights.report.results_page import main

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"config": {}, "corpus": {}}))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "config/intervention.yaml" in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.json")]) == 2
