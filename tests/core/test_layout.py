"""The house rule: tools import the core, the core never imports a tool."""

import ast

from conftest import ROOT

CORE = ["config", "dataset", "generator", "discriminator", "losses", "train", "loop", "save",
        "pretrained", "sketch", "infer", "completion", "tune", "hints"]
TOOLS = {path.stem for path in (ROOT / "tools").glob("*.py")} - {"__init__"}


def imported_modules(path) -> set:
    """Top-level names of every module a file imports, at any depth of the file (lazy imports
    too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_never_imports_a_tool():
    assert {"data", "evaluate", "demo", "edges", "app", "bench"} <= TOOLS
    for name in CORE:
        wrong = imported_modules(ROOT / f"{name}.py") & (TOOLS | {"tools"})
        assert not wrong, f"{name}.py imports the tool(s) {sorted(wrong)}"


def test_the_top_level_holds_only_the_core():
    assert sorted(path.stem for path in ROOT.glob("*.py")) == sorted(CORE)
