"""The library's layering: stage sub-packages whose imports run one way (core → corpus → model → measure → report,
each importing only its own stage and earlier ones; measure and report never the model stage), no import cycles,
torch only in the model stage (and, imported inside its functions, in the corpus decompositions' GPU path), and the
analysis side importable without torch."""
import ast
import subprocess
import sys
from pathlib import Path

import corpus_weights

PKG = Path(corpus_weights.__file__).parent
STAGES = ["core", "corpus", "model", "measure", "report"]
# what each stage may import besides itself: the stages before it, except that the analysis side (measure, report)
# reads weight files and never imports the model stage (so it runs without torch)
ALLOWED = {"core": set(), "corpus": {"core"}, "model": {"core"}, "measure": {"core", "corpus"},
           "report": {"core", "corpus", "measure"}}
TORCH_STAGE = "model"
# modules outside the model stage that may use torch, importing it inside their functions only (the corpus
# decompositions on torch tensors, analysis.svd_solver: torch; corpus_stats reaches it lazily)
LAZY_TORCH = {"corpus.torch_svd"}


def imports():
    """{"stage.module": {"stage.module", ...}} for every module of the package, and the modules that import torch
    and, of those, the ones that import it only inside functions."""
    graph, torch_users, top_level = {}, set(), set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.name == "__init__.py":
            body = ast.parse(path.read_text()).body  # a docstring saying what the stage is, and nothing else
            assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), rel
            continue
        assert len(rel.parts) == 2 and rel.parts[0] in STAGES, f"{rel}: every module lives in a stage package"
        name = ".".join(rel.with_suffix("").parts)
        stage = rel.parts[0]
        deps = set()
        tree = ast.parse(path.read_text())
        module_level = {id(n) for n in ast.walk(tree)} - {id(n) for f in ast.walk(tree)
                                                        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                                                        for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = [stage] if node.level == 1 else []
                parts = base + (node.module.split(".") if node.module else [])
                if len(parts) == 2:
                    deps.add(".".join(parts))
                else:  # `from . import x` / `from ..measure import x`
                    deps |= {".".join(parts + [a.name]) for a in node.names}
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("corpus_weights"):
                deps.add(".".join(node.module.split(".")[1:3]))
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "torch" or n.startswith("torch.") for n in names):
                    torch_users.add(name)
                    if id(node) in module_level:
                        top_level.add(name)
        graph[name] = deps
    return graph, torch_users, torch_users - top_level


def test_every_module_is_in_a_stage_and_imports_run_one_way():
    graph, _, _ = imports()
    assert len(graph) >= 39
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
              if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert upward == [], upward
    unknown = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if d not in graph]
    assert unknown == [], unknown


def test_no_import_cycles():
    graph, _, _ = imports()
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "active", f"import cycle: {' -> '.join(stack + [m])}"
        state[m] = "active"
        for dep in graph.get(m, ()):
            visit(dep, stack + [m])
        state[m] = "done"

    for module in graph:
        visit(module, [])


def test_torch_only_in_the_model_stage():
    _, torch_users, lazy_torch = imports()
    outside = {m for m in torch_users if m.split(".")[0] != TORCH_STAGE}
    assert outside <= LAZY_TORCH, outside
    assert outside <= lazy_torch, outside - lazy_torch  # never at import time


def test_analysis_side_imports_without_torch():
    code = ("import sys; import corpus_weights.measure.analysis, corpus_weights.report.page, "
            "corpus_weights.report.metrics, corpus_weights.measure.trajectory, corpus_weights.core.workflow_io, "
            "corpus_weights.corpus.corpus_stats, corpus_weights.corpus.torch_svd; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
