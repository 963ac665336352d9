"""Typed configs from plain mappings, and JSON objects of settings from the command line.

Every config of the project is a frozen dataclass built from the mapping ``config.yaml`` (or a JSON
command-line argument) gives for its section, with :func:`build_config`: unknown keys are refused with
one :class:`SafefakesError` that names the section and lists the valid keys, nested configs are built
recursively, JSON lists become tuples where the field is a tuple, and the dataclass's ``__post_init__``
checks the values. :func:`parse_json_argument` reads the one command-line spelling of such a mapping:
``--config-json`` (``--hparams`` for the hyper-parameters of detectors and GANs).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from safefakes.common.errors import SafefakesError

ConfigT = TypeVar("ConfigT")
#: ``(value, field type, field name) -> converted value``: an extra conversion of every plain (non-config,
#: non-tuple) value, e.g. the strings of ``--param KEY=VALUE`` to the field's type.
ValueConverter = Callable[[Any, Any, str], Any]
#: File suffixes :func:`parse_json_argument` reads as YAML (a JSON file is YAML too, but the error messages differ).
YAML_SUFFIXES = (".yaml", ".yml")


def build_config(
    cls: type[ConfigT],
    raw: Mapping[str, Any] | None,
    section: str,
    *,
    convert_value: ValueConverter | None = None,
    aliases: Sequence[str] = (),
) -> ConfigT:
    """The dataclass ``cls`` built from ``raw`` (``None``: every default), for the config ``section`` (e.g. ``train``).

    Unknown keys raise one SafefakesError naming ``section`` and the valid keys (``aliases``: keys the caller
    has already resolved, listed among them). A mapping (or a list, in field order) for a field whose type is
    a dataclass builds it recursively (section ``section.field``), and such a field left out without a default
    is built from its defaults. Lists become tuples where the field is a tuple, whole numbers become floats
    where it is a float, ``convert_value`` converts the other values. TypeError and ValueError of the
    constructor (``__post_init__`` checks) become a SafefakesError naming the section.
    """
    if raw is not None and not isinstance(raw, Mapping):
        raise SafefakesError(f"{section} settings must be a mapping, got {type(raw).__name__}: {raw!r}")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}  # type: ignore[arg-type]
    values = dict(raw or {})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = [*aliases, *sorted(fields)]
        raise SafefakesError(f"unknown {section} setting(s): {', '.join(map(str, unknown))}; valid: {', '.join(valid)}")
    hints = typing.get_type_hints(cls)
    for name, field in fields.items():
        if name in values:
            values[name] = _typed_value(values[name], hints[name], f"{section}.{name}", name, convert_value)
        elif _is_config_class(hints[name]) and not _has_default(field):
            values[name] = build_config(hints[name], None, f"{section}.{name}", convert_value=convert_value)
    missing = [name for name, field in fields.items() if name not in values and not _has_default(field)]
    if missing:
        raise SafefakesError(f"{section} settings need {', '.join(missing)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise SafefakesError(f"invalid {section} settings: {error}") from None


def _has_default(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _is_config_class(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _without_none(hint: Any) -> Any:
    """``X`` for ``X | None`` (one other option), else ``hint`` unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def _typed_value(value: Any, hint: Any, section: str, name: str, convert_value: ValueConverter | None) -> Any:
    """``value`` shaped as the field type ``hint`` says: nested configs built, lists as tuples, ints as floats."""
    target = _without_none(hint)
    if _is_config_class(target) and isinstance(value, (Mapping, list, tuple)):
        if not isinstance(value, Mapping):
            names = [field.name for field in dataclasses.fields(target) if field.init]
            if len(value) > len(names):
                raise SafefakesError(f"{section}: {len(value)} values for the {len(names)} settings {', '.join(names)}")
            value = dict(zip(names, value, strict=False))
        return build_config(target, value, section, convert_value=convert_value)
    if typing.get_origin(target) is tuple and isinstance(value, (list, tuple)):
        arguments = typing.get_args(target)
        item_hints = [arguments[0]] * len(value) if len(arguments) == 2 and arguments[1] is Ellipsis else list(arguments)
        if len(item_hints) != len(value):
            return tuple(value)  # a wrong length: the config's own checks (or its use) name the problem
        return tuple(
            _typed_value(item, item_hint, f"{section}[{index}]", name, convert_value)
            for index, (item, item_hint) in enumerate(zip(value, item_hints, strict=True))
        )
    if convert_value is not None:
        return convert_value(value, hint, name)
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_json_argument(text: str | None, option: str) -> dict[str, Any]:
    """The JSON object of settings a command-line ``option`` gives: inline JSON, or the path (``@`` in front
    optional) of a JSON or YAML file; ``None``, a blank text or an empty file give ``{}``. Anything else (bad
    JSON, not an object, no such file) is one SafefakesError naming ``option``."""
    if text is None or not text.strip():
        return {}
    stripped = text.strip()
    source = "inline JSON"
    if not stripped.startswith("{"):
        path = Path(stripped[1:] if stripped.startswith("@") else stripped)
        if not path.is_file():
            try:
                return _settings_object(json.loads(stripped), option, source)  # JSON, though not an object
            except json.JSONDecodeError:
                raise SafefakesError(f"{option} is neither a JSON object nor an existing JSON/YAML file: {text!r}") from None
        source = str(path)
        stripped = path.read_text(encoding="utf-8")
        if path.suffix.lower() in YAML_SUFFIXES:
            import yaml

            try:
                return _settings_object(yaml.safe_load(stripped), option, source)
            except yaml.YAMLError as error:
                raise SafefakesError(f"{option}: {source} is not valid YAML ({error})") from None
    try:
        loaded = json.loads(stripped)
    except json.JSONDecodeError as error:
        raise SafefakesError(f"{option}: {source} is not valid JSON ({error})") from None
    return _settings_object(loaded, option, source)


def _settings_object(loaded: Any, option: str, source: str) -> dict[str, Any]:
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SafefakesError(f"{option} must hold a JSON object of settings, got {type(loaded).__name__} from {source}")
    return loaded
