"""Every problem of a configuration against its JSON schema, in one short message (key, problem, expected), with
"did you mean" for misspelt keys — instead of the first error followed by a dump of the schema.

`schema_problems(config, schema)` returns the problems as (key, text) pairs; `format_problems` writes them one a
line. The workflow (workflow/rules/common.smk) stops before any job with that message; the schema's defaults are
filled only once the config is clean.
"""
from __future__ import annotations

import difflib

import jsonschema


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _subschema(schema: dict, path) -> dict:
    node = schema
    for part in path:
        props = node.get("properties", {})
        if isinstance(part, str) and part in props:
            node = props[part]
        elif isinstance(part, int) and "items" in node:
            node = node["items"]
        else:
            return {}
    return node


def _expected(node: dict) -> str:
    """What the schema expects at a key, in a few words."""
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(repr(v) for v in node["enum"]))
    elif "type" in node:
        parts.append(f"{node['type']}")
    for word, key in (("≥", "minimum"), (">", "exclusiveMinimum"), ("≤", "maximum"), ("<", "exclusiveMaximum")):
        if key in node:
            parts.append(f"{word} {node[key]}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if "description" in node:
        parts.append(f"({node['description']})")
    return " ".join(parts)


def schema_problems(config: dict, schema: dict) -> list[tuple[str, str]]:
    """All violations of `schema` by `config`, sorted by key: unknown keys with the nearest known one, wrong types,
    values out of range, missing required keys."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for err in validator.iter_errors(config):
        path = list(err.absolute_path)
        node = _subschema(schema, path)
        if err.validator == "additionalProperties":
            known = sorted(node.get("properties", {}))
            for extra in sorted(set(err.instance) - set(known)):
                guess = difflib.get_close_matches(str(extra), known, n=1, cutoff=0.6)
                hint = f"; did you mean '{_key(path + [guess[0]])}'?" if guess else f"; known keys: {', '.join(known)}"
                problems.append((_key(path + [extra]), f"unknown key{hint}"))
        elif err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            problems.append((_key(path + [missing]), "required key is missing"))
        else:
            problems.append((_key(path), f"{err.instance!r} is not valid: expected {_expected(node) or err.message}"))
    return sorted(set(problems))


def format_problems(problems: list[tuple[str, str]], source: str = "the configuration") -> str:
    lines = [f"{len(problems)} problem(s) in {source} (every key: config/README.md):"]
    lines += [f"  {key}: {text}" for key, text in problems]
    return "\n".join(lines)
