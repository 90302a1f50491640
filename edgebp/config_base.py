"""Typed configs that reject unknown keys (modelopt style), shared by train, export and runtime."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="StrictConfig")


class StrictConfig:
    """Mixin for dataclass configs: ``from_dict`` rejects unknown keys and names them."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        clean = {}
        for key, value in data.items():
            # JSON has lists where the config holds tuples
            if isinstance(value, list) and "tuple" in str(types[key]):
                value = tuple(value)
            clean[key] = value
        obj = cls(**clean)  # type: ignore[call-arg]
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
        return obj

    @classmethod
    def from_file(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
        if path.suffix == ".toml":
            import tomllib

            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML ({exc})") from exc
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        return cls.from_dict(data, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def replace(self: T, **changes: Any) -> T:
        return type(self).from_dict({**self.to_dict(), **changes})


def check_choice(value: str, choices: tuple[str, ...] | list[str], field: str) -> str:
    """Raise a ValueError listing the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{field}: {value!r} is not valid; choose one of: {', '.join(choices)}")
    return value
