"""Config defaults live in the schema; config/config.yaml and config/README.md state them and must agree with it."""
from __future__ import annotations

import re

import pytest
import yaml

from workflow_helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def schema_defaults(node=SCHEMA, prefix="") -> dict:
    out = {}
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "default" in sub and sub.get("type") != "object":
            out[path] = sub["default"]
        if sub.get("type") == "object":
            out.update(schema_defaults(sub, path + "."))
    return out


def leaves(cfg: dict, prefix="") -> dict:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_states_the_schema_defaults():
    defaults = schema_defaults()
    stated = leaves(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    differ = {k: (v, defaults[k]) for k, v in stated.items() if k in defaults and v != defaults[k]}
    assert differ == {}, f"config.yaml vs schema default: {differ}"
    assert len(set(stated) & set(defaults)) >= 25


def test_config_readme_default_column_matches_the_schema():
    defaults = schema_defaults()
    checked = 0
    for key_cell, default_cell in re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", (REPO / "config/README.md").read_text(),
                                             flags=re.M):
        if key_cell not in defaults:
            continue
        try:
            stated = yaml.safe_load(default_cell.replace("`", "").split("(")[0].strip())
        except yaml.YAMLError:
            continue
        assert stated == defaults[key_cell], (key_cell, stated, defaults[key_cell])
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("pattern", [r"\.get\(\"[a-z_]+\", [^)]"])
def test_rules_and_scripts_take_no_fallback_defaults(pattern):
    """A fallback in a rule or script would be a second default that can drift from the schema's."""
    offenders = []
    for path in [*REPO.glob("workflow/rules/*.smk"), *REPO.glob("workflow/scripts/*.py")]:
        for line in path.read_text().splitlines():
            if re.search(pattern, line) and ("config" in line or "ANALYSIS" in line or "TRAIN" in line
                                             or "CONTROLS" in line or "cfg" in line):
                offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []


def test_the_dataclasses_share_the_schemas_defaults():
    """GPTConfig has no defaults (the schema requires every model key); TrainConfig's defaults are the schema's
    train.* defaults, key by key (snapshot_fracs is train.snapshots); its other fields are not config keys."""
    import dataclasses

    from corpus_weights.model.gpt import GPTConfig
    from corpus_weights.model.training import TrainConfig

    assert [f.name for f in dataclasses.fields(GPTConfig) if f.default is not dataclasses.MISSING] == []
    assert set(SCHEMA["properties"]["model"]["required"]) >= {"n_layer", "d_model", "n_head", "context"}
    defaults, compared = schema_defaults(), []
    for f in dataclasses.fields(TrainConfig):
        value = (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        key = "train.snapshots" if f.name == "snapshot_fracs" else f"train.{f.name}"
        if key in defaults:
            assert value == defaults[key], (f.name, value, defaults[key])
            compared.append(f.name)
        else:
            assert f.name in {"tokens", "seed", "threads", "init_embedding"}, f"{f.name}: not a config key"
    assert len(compared) == 15, compared
