"""The library's layering: no import cycles, leaves import nothing of the package, torch only where a model runs."""
import ast
import subprocess
import sys
from pathlib import Path

import corpus_weights

PKG = Path(corpus_weights.__file__).parent
TORCH_MODULES = {"model", "training", "weights", "hardware", "snapshot_eval", "checkpoints"}  # checkpoints: nanoGPT files only
LEAVES = {"linalg", "workflow_io", "note_values", "circuits", "hardware", "ids", "decision_rules", "input_checks",
          "config_check"}


def imports():
    graph, torch_users = {}, set()
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "torch" or n.startswith("torch.") for n in names):
                    torch_users.add(path.stem)
        graph[path.stem] = deps
    return graph, torch_users


def test_no_import_cycles_and_leaves_are_leaves():
    graph, _ = imports()
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
    for leaf in LEAVES:
        assert not graph[leaf], (leaf, graph[leaf])


def test_torch_only_where_a_model_runs():
    _, torch_users = imports()
    assert torch_users <= TORCH_MODULES, torch_users - TORCH_MODULES


def test_analysis_side_imports_without_torch():
    code = ("import sys; import corpus_weights.analysis, corpus_weights.report, corpus_weights.workflow_io; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
