"""config_check: every schema problem at once, named by its dotted key, with the nearest known key for a misspelling."""
from pathlib import Path

import yaml

from corpus_weights.core.config_check import format_problems, schema_problems

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())


def test_the_default_config_has_no_problem():
    assert schema_problems(CONFIG, SCHEMA) == []


def test_every_problem_is_reported_with_its_key():
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["train"]["lrr"] = cfg["train"].pop("lr")
    cfg["train"]["batch_size"] = 0
    cfg["tokenizer"]["kind"] = "sentencepiece"
    del cfg["model"]["d_model"]
    cfg["seeds"] = [0]
    problems = dict(schema_problems(cfg, SCHEMA))
    assert problems["train.lrr"] == "unknown key; did you mean 'train.lr'?"
    assert problems["train.batch_size"].startswith("0 is not valid: expected integer ≥ 1")
    assert "one of 'word', 'bpe'" in problems["tokenizer.kind"]
    assert problems["model.d_model"] == "required key is missing"
    assert problems["seeds"].startswith("unknown key")  # 'seeds' belongs under train: no close top-level key
    assert len(problems) == 5
    text = format_problems(sorted(problems.items()))
    assert text.splitlines()[0].startswith("5 problem(s)") and len(text.splitlines()) == 6
