"""Typed settings slices: what each component receives from the one GraftConfig.

Each component declares a frozen dataclass of exactly the settings it reads, without defaults
(GraftConfig holds every default, once). The slice travels in the component's custom_config
as plain data (`to_dict`) and is read back typed (`from_dict`) where the component runs, so
`run_fn` reads `settings.batch_size`, never `settings.get("batch_size", 32)`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import os
import typing

_COMPONENTS_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_COMPONENTS_DIR)


@dataclasses.dataclass(frozen=True)
class ComponentSettings:
    """Base of the per-component slices: conversion to and from custom_config data."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """The slice from custom_config data. Numbers that crossed a protobuf Struct come back
        as floats; fields typed int are restored, and nested dataclass lists rebuilt."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"{cls.__name__}: custom_config lacks {missing}: it was made by another Graft version")
        return _build(cls, values)


def _build(cls, values: dict):
    """`cls` (a dataclass) from plain data, its fields coerced (nested dataclasses too)."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _coerce(hints[f.name], values[f.name]) for f in dataclasses.fields(cls) if f.name in values})


def _coerce(hint, value):
    if value is None:
        return None
    optional = (
        [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is typing.Union else []
    )
    if len(optional) == 1 and dataclasses.is_dataclass(optional[0]):
        hint = optional[0]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if hint is int or (
        typing.get_origin(hint) is typing.Union and int in typing.get_args(hint) and float not in typing.get_args(hint)
    ):
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if typing.get_origin(hint) in (list, tuple) and typing.get_args(hint):
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            return tuple(v if isinstance(v, item) else item(**v) for v in value)
    return value


class ConfigSection:
    """Base of a config file's sections (a frozen dataclass with defaults, e.g. `export:`):
    `from_section` rejects unknown options, builds it, and raises every problem `problems`
    finds at once, each naming `<SECTION>.<option>`."""

    SECTION = ""

    def problems(self) -> list[str]:
        return []

    @classmethod
    def from_section(cls, values: dict):
        from components.contract import ConfigError

        values = dict(values or {})
        unknown = unknown_options(cls, values, cls.SECTION)
        if unknown:
            raise ConfigError(unknown)
        section = cls(**values)
        problems = section.problems()
        if problems:
            raise ConfigError(f"invalid {cls.SECTION} settings:\n  - " + "\n  - ".join(problems))
        return section


def unknown_options(cls, values: dict, section: str) -> str:
    """'' when every key of a config section names a field of `cls`; else the message, with
    the closest field name as a hint for each unknown key."""
    known = [f.name for f in dataclasses.fields(cls)]
    hints = [
        repr(k) + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else "")
        for k in values
        if k not in known
    ]
    return f"{section}: unknown option(s) {', '.join(hints)}" if hints else ""


def _module_files(module: str) -> list[str]:
    """Files of one of our modules ('components.trainer.model'), with the package __init__s."""
    parts = module.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        init = os.path.join(_REPO_DIR, *parts[:depth], "__init__.py")
        if os.path.exists(init):
            files.append(init)
    single = os.path.join(_REPO_DIR, *parts) + ".py"
    if os.path.exists(single):
        files.append(single)
    return files


def _imports_of(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "components"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "components":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from package import module`
    return found


def code_files(stage: str) -> list[str]:
    """components/<stage>/ and every module of ours it imports, transitively."""
    folder = os.path.join(_COMPONENTS_DIR, stage)
    pending = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".py")]
    seen = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports_of(path):
            pending += _module_files(module)
    return sorted(seen)


def code_version(stage: str) -> str:
    """A digest of the code a step runs. It travels in that step's custom_config: TFX's cache
    keys on inputs and properties, not on code referenced by import path, so without it an
    upgraded Graft would reuse results computed by the old code."""
    digest = hashlib.sha256()
    for path in code_files(stage):
        with open(path, "rb") as f:
            digest.update(os.path.relpath(path, _REPO_DIR).encode() + b"\0" + f.read())
    return digest.hexdigest()[:12]
