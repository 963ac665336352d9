"""The one config builder and the one command-line JSON parser (safefakes.common.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from safefakes.common.config import build_config, parse_json_argument
from safefakes.common.errors import SafefakesError


@dataclass(frozen=True)
class Inner:
    """A nested section."""

    name: str = "a"
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.scales:
            raise ValueError("scales must not be empty")


@dataclass(frozen=True)
class Outer:
    """A section with plain, optional, nested, tuple and list fields."""

    rate: float = 0.5
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)
    items: tuple[Inner, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Sections:
    """Sections without defaults (like a GAN's hparams): left out, they are built from their defaults."""

    model: Inner
    train: Inner


@dataclass(frozen=True)
class NeedsName:
    """A config with a required plain field."""

    name: str


def test_build_config_defaults_nesting_and_shapes() -> None:
    assert build_config(Outer, None, "outer") == Outer()
    config = build_config(
        Outer,
        {"rate": 1, "inner": {"scales": [1, 2]}, "items": [{"name": "b"}, ["c", [3]]], "ranges": [[1, 2]], "values": [1, 2]},
        "outer",
    )
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert config.inner == Inner("a", (1.0, 2.0)) and isinstance(config.inner.scales, tuple)
    assert config.items == (Inner("b"), Inner("c", (3.0,)))
    assert config.ranges == ((1, 2),)
    assert config.values == [1, 2] and isinstance(config.values, list)  # a list field stays a list
    assert build_config(Outer, {"limit": None}, "outer").limit is None
    assert build_config(Sections, {"train": {"name": "t"}}, "hparams") == Sections(Inner(), Inner("t"))


def test_build_config_errors_name_the_section() -> None:
    with pytest.raises(SafefakesError, match=r"unknown outer setting\(s\): rat; valid: inner, items, limit, ranges, rate, values"):
        build_config(Outer, {"rat": 1}, "outer")
    with pytest.raises(SafefakesError, match=r"unknown outer\.inner setting\(s\): nam; valid: name, scales"):
        build_config(Outer, {"inner": {"nam": "x"}}, "outer")
    with pytest.raises(SafefakesError, match=r"invalid outer\.inner settings: scales must not be empty"):
        build_config(Outer, {"inner": {"scales": []}}, "outer")
    with pytest.raises(SafefakesError, match="outer settings must be a mapping"):
        build_config(Outer, [1, 2], "outer")  # type: ignore[arg-type]
    with pytest.raises(SafefakesError, match="named settings need name"):
        build_config(NeedsName, {}, "named")


def test_build_config_aliases_and_value_conversion() -> None:
    def to_upper(value: Any, hint: Any, name: str) -> Any:
        return value.upper() if isinstance(value, str) else value

    assert build_config(Inner, {"name": "b"}, "inner", convert_value=to_upper).name == "B"
    with pytest.raises(SafefakesError, match=r"valid: strength, name, scales"):
        build_config(Inner, {"size": 1}, "inner", aliases=("strength",))


def test_parse_json_argument_inline_files_and_errors(tmp_path: Path) -> None:
    assert parse_json_argument(None, "--config-json") == {} and parse_json_argument("  ", "--config-json") == {}
    assert parse_json_argument(' {"a": 1}', "--config-json") == {"a": 1}
    json_file = tmp_path / "settings.json"
    json_file.write_text('{"b": [1, 2]}')
    assert parse_json_argument(str(json_file), "--config-json") == {"b": [1, 2]}
    assert parse_json_argument(f"@{json_file}", "--config-json") == {"b": [1, 2]}
    yaml_file = tmp_path / "settings.yaml"
    yaml_file.write_text("c:\n  d: true\n")
    assert parse_json_argument(str(yaml_file), "--hparams") == {"c": {"d": True}}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert parse_json_argument(str(empty), "--hparams") == {}
    with pytest.raises(SafefakesError, match=r"--config-json: inline JSON is not valid JSON"):
        parse_json_argument("{not json", "--config-json")
    with pytest.raises(SafefakesError, match="--hparams is neither a JSON object nor an existing JSON/YAML file"):
        parse_json_argument(str(tmp_path / "missing.json"), "--hparams")
    with pytest.raises(SafefakesError, match="--hparams must hold a JSON object of settings, got list from inline JSON"):
        parse_json_argument("[1, 2]", "--hparams")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(SafefakesError, match="--config-json must hold a JSON object of settings, got list"):
        parse_json_argument(str(listed), "--config-json")
