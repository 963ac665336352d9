"""The stages depend one way: common < data < anonymize < detect < evaluate < plots.

Every import inside ``src/safefakes`` (module level and inside functions) is parsed with ``ast``; a module
of one stage may import only its own stage and the stages beneath it. The top-level ``cli.py`` (which
gathers every stage's sub-commands) is the only exemption.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "safefakes"
LAYERS = ("common", "data", "anonymize", "detect", "evaluate", "plots")
EXEMPT = {PACKAGE / "cli.py", PACKAGE / "__init__.py", PACKAGE / "__main__.py"}


def stage_of(module: str) -> str | None:
    """The stage of a dotted ``safefakes.X...`` module name, or None for anything else."""
    parts = module.split(".")
    if parts[0] != "safefakes" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if stage_of(module) is None and module == "safefakes"]
    return found


def backward_imports(root: Path = PACKAGE) -> list[str]:
    """``file:line imports module`` for every import that points up the stage order."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        if path in EXEMPT:
            continue
        own = stage_of(".".join(path.relative_to(root.parent).with_suffix("").parts))
        if own is None:
            continue
        for line, module in imported_modules(path, root):
            target = stage_of(module)
            if target is not None and LAYERS.index(target) > LAYERS.index(own):
                problems.append(f"{path.relative_to(root.parent)}:{line} ({own}) imports {module} ({target})")
    return problems


def test_no_stage_imports_a_later_stage() -> None:
    problems = backward_imports()
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def test_the_check_finds_a_backward_import(tmp_path: Path) -> None:
    package = tmp_path / "safefakes"
    (package / "data").mkdir(parents=True)
    (package / "plots").mkdir()
    (package / "data" / "reader.py").write_text("def read():\n    from safefakes.plots.figures import plot\n    return plot\n")
    (package / "plots" / "figures.py").write_text("from safefakes.data.reader import read\n")
    problems = backward_imports(package)
    assert len(problems) == 1 and "data/reader.py:2" in problems[0] and "safefakes.plots.figures" in problems[0]


@pytest.mark.parametrize("module, stage", [("safefakes.detect.train", "detect"), ("safefakes.cli", None), ("numpy", None)])
def test_stage_of(module: str, stage: str | None) -> None:
    assert stage_of(module) == stage


def _enums_naming(node: object, member: str) -> list[list[str]]:
    """Every ``enum`` list in a parsed JSON schema that contains ``member``."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list) and member in node["enum"]:
            found.append(node["enum"])
        for value in node.values():
            found += _enums_naming(value, member)
    elif isinstance(node, list):
        for value in node:
            found += _enums_naming(value, member)
    return found


def test_the_gan_names_are_defined_once() -> None:
    """The package's GAN_METHODS names every registered GAN method and recipe; the workflow imports it; the
    config schema (which cannot import) repeats it exactly."""
    import yaml

    from safefakes.anonymize import GAN_METHODS
    from safefakes.anonymize.base import ANONYMIZER_SPECS
    from safefakes.anonymize.gan.recipe import GAN_RECIPES

    assert tuple(GAN_RECIPES) == GAN_METHODS
    assert all(name in ANONYMIZER_SPECS and ANONYMIZER_SPECS[name].startswith("safefakes.anonymize.gan.") for name in GAN_METHODS)
    root = PACKAGE.parents[1]
    schema = yaml.safe_load((root / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    enums = _enums_naming(schema, "deepprivacy")
    assert enums and all(sorted(enum) == sorted(GAN_METHODS) for enum in enums)
    rules = "\n".join(path.read_text(encoding="utf-8") for path in (root / "workflow" / "rules").glob("*.smk"))
    assert "from safefakes.anonymize import GAN_METHODS" in rules and '"deepprivacy", "ciagan"' not in rules
