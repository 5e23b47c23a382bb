"""Mutation score of the last `make mutation` run, with the surviving mutants judged equivalent left out.

    python tests/mutation_score.py              # table per module (killed / checked, equivalents excluded)
    python tests/mutation_score.py --survivors  # every survivor not judged equivalent, with its changed line
    python tests/mutation_score.py --write      # also put the table into docs/testing.md (between its markers)

Reads mutmut's result files (mutants/src/corpus_weights/*.py.meta) and tests/equivalent_mutants.txt, whose lines are
``<mutant name> | <the mutated line, stripped> | <why it is equivalent>`` (for a mutated signature the line is the
``def`` line, with the original function name). An entry is used only when the mutant
still exists, still survives and still changes that exact line (mutant numbers move when a function is edited;
a stale entry is reported, never silently applied; an entry whose mutant a partial run — `make mutation
MUTANTS='corpus_weights.report.*'` — did not check is skipped, and so is a module none of whose mutants it checked).
Exit status 1 if any entry is stale or was killed.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import difflib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.stats import status_by_exit_code  # mutmut's own reading of its exit codes

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants" / "src" / "corpus_weights"
EQUIVALENT = ROOT / "tests" / "equivalent_mutants.txt"


def results() -> dict[str, str]:
    out = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out[key] = status_by_exit_code[code]
    return out


def changed_lines() -> dict[str, list[str]]:
    """Mutant name -> the lines it adds relative to the original function (from mutmut's mutated copies)."""
    out = {}
    for path in sorted(MUTANTS.rglob("*.py")):
        source = path.read_text()
        rows = source.splitlines()
        funcs = {node.name: "\n".join(rows[node.lineno - 1:node.end_lineno])  # get_source_segment is quadratic here
                 for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
        for name, text in funcs.items():
            if "__mutmut_" not in name or name.endswith("__mutmut_orig"):
                continue
            original = funcs.get(name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
            if original is None:
                continue
            base = name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
            diff = difflib.unified_diff(original.splitlines(), text.replace(name, base, 1).splitlines(), lineterm="",
                                        n=0)
            key = ".".join(["corpus_weights", *path.relative_to(MUTANTS).with_suffix("").parts, name])
            out[key] = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return out


def equivalents(lines: dict[str, list[str]], status: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    ok, problems = {}, []
    for n, raw in enumerate(EQUIVALENT.read_text().splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        name, rest = raw.split(" | ", 1)
        line, why = (part.strip() for part in rest.rsplit(" | ", 1))  # the mutated line may itself contain " | "
        if status.get(name) == "not checked":  # a partial run (`make mutation MUTANTS=...`) did not reach it
            continue
        if status.get(name) != "survived":
            problems.append(f"line {n}: {name} is {status.get(name, 'missing')}, not a survivor")
        elif line not in lines.get(name, []):
            problems.append(f"line {n}: {name} no longer changes `{line}` (stale: renumbered by an edit?)")
        else:
            ok[name] = why
    return ok, problems


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--survivors", action="store_true", help="list the survivors not judged equivalent")
    parser.add_argument("--write", action="store_true", help="write the table into docs/testing.md")
    args = parser.parse_args()
    status = results()
    if not status:
        sys.exit("no mutmut results under mutants/ (run `make mutation` first)")
    lines = changed_lines()
    equivalent, problems = equivalents(lines, status)
    table: dict[str, Counter] = defaultdict(Counter)
    for key, st in status.items():
        module = key.split(".")[2]  # corpus_weights.<stage>.<module>.<mutant>
        table[module]["equivalent" if key in equivalent else st] += 1
    table_lines = ["| module | mutants | killed | survived | equivalent | timeout | not checked | "
                   "killed / (checked − equivalent) |", "|---|---|---|---|---|---|---|---|"]
    total = Counter()
    run = sorted(m for m in table if table[m]["not checked"] < sum(table[m].values()))  # modules this run reached
    for module in run + ["**all**"]:
        c = total if module == "**all**" else table[module]
        if module != "**all**":
            total.update(c)
        checked = c["killed"] + c["survived"] + c["timeout"] + c["no tests"] + c["suspicious"]
        score = c["killed"] / checked if checked else float("nan")
        table_lines.append(f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} | {c['equivalent']} | "
                           f"{c['timeout']} | {c['not checked']} | {100 * score:.1f} % |")
    raw = total["killed"] / max(1, sum(total.values()) - total["not checked"])
    table_lines.append(f"\nWithout leaving any equivalent out: {100 * raw:.1f} % killed of all checked mutants.")
    print("\n".join(table_lines))
    if args.write and not problems:
        doc = ROOT / "docs" / "testing.md"
        text = doc.read_text()
        begin, end = "<!-- mutation-score: begin -->", "<!-- mutation-score: end -->"
        head, rest = text.split(begin, 1)
        stamp = f"Last run: {dt.date.today().isoformat()} ({len(equivalent)} equivalents named)."
        doc.write_text(head + begin + "\n" + stamp + "\n\n" + "\n".join(table_lines) + "\n" + end
                       + rest.split(end, 1)[1])
    if args.survivors:
        for key in sorted(k for k, st in status.items() if st == "survived" and k not in equivalent):
            print(f"{key} | {' / '.join(lines.get(key, ['?']))}")
    for p in problems:
        print("equivalent_mutants.txt:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
