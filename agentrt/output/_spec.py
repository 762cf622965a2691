"""What ``output_type=`` means: one :class:`OutputSpec` per type, built once and cached.

An :class:`OutputSpec` knows the type's JSON Schema, how to validate a parsed JSON value
into the caller's value (pydantic for Python types, ``jsonschema`` for a schema ``dict``) and
whether the schema had to be wrapped in an object (``{"result": ...}``) for providers that
only accept an object at the root.

Caching keeps no user type alive: classes (models, dataclasses, ``TypedDict``, ``Enum``) are
keys of a weak dictionary whose values hold JSON data only, never the class; anything else
(``list[Model]``, ``Literal[...]``, unions, schema dicts) lives in a small bounded LRU, as do
the pydantic ``TypeAdapter`` objects (which do reference their type).
"""

from __future__ import annotations

import json
import re
import threading
import typing
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, PydanticSchemaGenerationError, PydanticUserError, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from ..errors import UsageError

__all__ = ["OutputInvalid", "OutputSpec", "output_spec"]

#: Property name of the wrapper object around a non-object output (``list[int]``, ``str``).
WRAP_KEY = "result"

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


class OutputInvalid(Exception):
    """An answer that failed validation; ``str(exc)`` is the text sent back to the model."""


class _LRU:
    """A small thread-safe LRU cache (entries may reference user types: bounded, so safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            try:
                self._data.move_to_end(key)
                return self._data[key]
            except KeyError:
                return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(eq=False)
class SchemaData:
    """JSON data derived from one output type; holds no reference to the type itself.

    ``dialects`` caches each provider dialect's conversion (see ``_strict.py``).
    """

    name: str
    #: The type's own JSON Schema, as pydantic (or the caller) wrote it.
    schema: dict[str, Any]
    #: The schema offered to providers that need an object root: ``schema`` itself, or a
    #: ``{"result": schema}`` wrapper.
    object_schema: dict[str, Any]
    wrapped: bool
    description: str
    dialects: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# Classes -> SchemaData: weak keys, values without a reference back to the key.
_by_class: weakref.WeakKeyDictionary[Any, SchemaData] = weakref.WeakKeyDictionary()
# Everything else (generic aliases, Literal, unions, canonical JSON of schema dicts).
_by_value = _LRU(256)
# TypeAdapters reference their type: bounded.
_adapters = _LRU(128)
_cache_lock = threading.Lock()


class OutputSpec:
    """How to ask for, and validate, one ``output_type``.

    Build it with :func:`output_spec` (cached per type). Attributes:

    Attributes:
        output_type: the type (or JSON Schema dict) given.
        name: a provider-safe name for the schema/tool (``[A-Za-z0-9_-]{1,64}``).
        schema: the type's JSON Schema.
        object_schema: ``schema``, or a ``{"result": ...}`` object wrapping it.
        wrapped: whether ``object_schema`` wraps ``schema``.
    """

    __slots__ = ("_validate", "data", "output_type")

    def __init__(self, output_type: Any, data: SchemaData, validate: Callable[[Any], Any]) -> None:
        self.output_type = output_type
        self.data = data
        self._validate = validate

    @property
    def name(self) -> str:
        """The schema's name as providers see it."""
        return self.data.name

    @property
    def schema(self) -> dict[str, Any]:
        """The type's own JSON Schema."""
        return self.data.schema

    @property
    def object_schema(self) -> dict[str, Any]:
        """The schema with an object at its root."""
        return self.data.object_schema

    @property
    def wrapped(self) -> bool:
        """Whether :attr:`object_schema` wraps the schema as ``{"result": ...}``."""
        return self.data.wrapped

    @property
    def description(self) -> str:
        """The type's docstring or schema description, or a generic sentence."""
        return self.data.description

    def validate_value(self, value: Any, *, wrapped: bool) -> Any:
        """Validate a parsed JSON value into the caller's value.

        Args:
            value: the parsed JSON.
            wrapped: the value follows :attr:`object_schema` (unwrap ``{"result": ...}``).

        Raises:
            OutputInvalid: with the error text for the model.
        """
        if wrapped and self.data.wrapped:
            if not isinstance(value, dict) or set(value) != {WRAP_KEY}:
                raise OutputInvalid(
                    f'expected a JSON object with exactly one key "{WRAP_KEY}", got '
                    f"{_preview(value)}"
                )
            value = value[WRAP_KEY]
        return self._validate(value)

    def __repr__(self) -> str:
        return f"OutputSpec({_type_name(self.output_type)})"


def output_spec(output_type: Any) -> OutputSpec:
    """Return the (cached) :class:`OutputSpec` of ``output_type``.

    Args:
        output_type: a pydantic model, a dataclass, a ``TypedDict``, ``list[...]``,
            ``dict[str, ...]``, a primitive type, a ``Literal``, an ``Enum``, a union of
            models, or a JSON Schema ``dict`` (validated with ``jsonschema``, the ``schema``
            extra).

    Raises:
        UsageError: the type cannot describe an output; the message names it.
    """
    if isinstance(output_type, OutputSpec):
        return output_type
    if isinstance(output_type, dict):
        return _schema_dict_spec(output_type)
    _refuse_non_types(output_type)
    if isinstance(output_type, type) and issubclass(output_type, BaseModel):
        model: type[BaseModel] = output_type
        data = _class_data(model, lambda: _model_schema(model))
        return OutputSpec(model, data, _model_validator(model))
    adapter = _adapter(output_type)
    if isinstance(output_type, type):
        data = _class_data(output_type, lambda: _adapter_schema(output_type, adapter))
    else:
        key = ("type", output_type)
        try:
            data = _by_value.get(key)
        except TypeError:
            data = _adapter_schema(output_type, adapter)
        if data is None:
            data = _adapter_schema(output_type, adapter)
            _by_value.put(key, data)
    return OutputSpec(output_type, data, _adapter_validator(adapter))


# --- building -------------------------------------------------------------------------------


def _refuse_non_types(output_type: Any) -> None:
    if output_type is None:
        raise UsageError("output_type=None asks for no typed output; pass a type or omit it")
    if isinstance(output_type, str):
        raise UsageError(
            f"output_type={output_type!r} is a string: pass the type itself (for example "
            "output_type=int or output_type=MyModel), or a JSON Schema dict"
        )
    if isinstance(output_type, type) or typing.get_origin(output_type) is not None:
        return
    if isinstance(output_type, (typing.TypeVar, type(typing.Any))) or output_type is typing.Any:
        return
    if type(output_type).__module__ in ("typing", "typing_extensions", "types"):
        return
    raise UsageError(
        f"output_type={output_type!r} is not a type: pass a pydantic model, a dataclass, a "
        "TypedDict, list[...]/dict[str, ...], a primitive type, a Literal, an Enum, a union of "
        "models, or a JSON Schema dict"
    )


def _class_data(cls: type, build: Callable[[], SchemaData]) -> SchemaData:
    data = _by_class.get(cls)
    if data is None:
        data = build()
        with _cache_lock:
            data = _by_class.setdefault(cls, data)
    return data


def _adapter(output_type: Any) -> TypeAdapter[Any]:
    key: Hashable = ("adapter", output_type)
    try:
        adapter = _adapters.get(key)
    except TypeError:  # unhashable metadata (Annotated[..., {...}]): build, do not cache
        return _new_adapter(output_type)
    if adapter is None:
        adapter = _new_adapter(output_type)
        _adapters.put(key, adapter)
    return typing.cast("TypeAdapter[Any]", adapter)


def _new_adapter(output_type: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(output_type)
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError, NameError) as exc:
        raise UsageError(
            f"output_type={_type_name(output_type)} cannot be validated by pydantic "
            f"({_first_line(exc)}); use a pydantic model, a dataclass or a TypedDict of "
            "JSON-friendly fields"
        ) from exc


def _model_schema(model: type[BaseModel]) -> SchemaData:
    try:
        schema = model.model_json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise UsageError(
            f"output_type={model.__name__} has no JSON Schema ({_first_line(exc)}): give its "
            "fields JSON-friendly types"
        ) from exc
    return _data(model, schema)


def _adapter_schema(output_type: Any, adapter: TypeAdapter[Any]) -> SchemaData:
    try:
        schema = adapter.json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise UsageError(
            f"output_type={_type_name(output_type)} has no JSON Schema ({_first_line(exc)}): "
            "use JSON-friendly types"
        ) from exc
    return _data(output_type, schema)


def _data(output_type: Any, schema: dict[str, Any]) -> SchemaData:
    doc = None
    if isinstance(output_type, type):
        # Only a class's own docstring counts (not BaseModel's or Enum's, nor the signature
        # text a dataclass makes up when it has none).
        doc = output_type.__dict__.get("__doc__")
        if doc and doc.startswith(f"{output_type.__name__}("):
            doc = None
    description = (doc or schema.get("description") or "").strip()
    return _schema_data(_name_of(output_type), schema, description)


def _schema_data(name: str, schema: dict[str, Any], description: str) -> SchemaData:
    root = _resolve_root(schema)
    is_object = root.get("type") == "object" and "properties" in root
    if is_object:
        object_schema = schema
        if root is not schema:
            # A root ``$ref`` (a recursive model): providers want the object itself at the
            # root; the definition stays in ``$defs`` for the inner references.
            object_schema = {**root, "$defs": schema["$defs"]}
    else:
        inner = {k: v for k, v in schema.items() if k != "$defs"}
        object_schema = {
            "type": "object",
            "properties": {WRAP_KEY: inner},
            "required": [WRAP_KEY],
        }
        if "$defs" in schema:
            object_schema["$defs"] = schema["$defs"]
    return SchemaData(
        name=name,
        schema=schema,
        object_schema=object_schema,
        wrapped=not is_object,
        description=description or "The final result.",
    )


def _resolve_root(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref[len("#/$defs/") :])
        if isinstance(target, dict):
            return target
    return schema


def _model_validator(model: type[BaseModel]) -> Callable[[Any], Any]:
    validate = model.__pydantic_validator__.validate_python

    def run(value: Any) -> Any:
        try:
            return validate(value)
        except PydanticValidationError as exc:
            raise OutputInvalid(format_pydantic_errors(exc)) from None

    return run


def _adapter_validator(adapter: TypeAdapter[Any]) -> Callable[[Any], Any]:
    validate = adapter.validate_python

    def run(value: Any) -> Any:
        try:
            return validate(value)
        except PydanticValidationError as exc:
            raise OutputInvalid(format_pydantic_errors(exc)) from None

    return run


def format_pydantic_errors(exc: PydanticValidationError) -> str:
    """Turn a pydantic error into short lines a model can act on."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error.get("loc", ())) or "(the value)"
        lines.append(f"- {loc}: {error.get('msg', 'invalid')} (got {_preview(error.get('input'))})")
    count = len(lines)
    head = f"{count} validation error{'s' if count != 1 else ''}:"
    return "\n".join([head, *lines[:20], *(["- ..."] if count > 20 else [])])


# --- JSON Schema dicts ----------------------------------------------------------------------


def _schema_dict_spec(schema: dict[str, Any]) -> OutputSpec:
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"output_type is a dict but not JSON ({exc}): pass a JSON Schema dict"
        ) from exc
    key = ("schema", canonical)
    cached = _by_value.get(key)
    if cached is None:
        validator = _jsonschema_validator(schema)
        name = schema.get("title") if isinstance(schema.get("title"), str) else "output"
        data = _schema_data(_safe_name(str(name)), schema, str(schema.get("description", "")))
        cached = (data, _jsonschema_check(validator))
        _by_value.put(key, cached)
    data, validate = cached
    return OutputSpec(schema, data, validate)


def _jsonschema_validator(schema: dict[str, Any]) -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - CI installs the extra
        raise UsageError(
            "output_type as a JSON Schema dict needs the jsonschema package: "
            "pip install 'agentrt[schema]'"
        ) from exc
    if not schema:
        raise UsageError("output_type={} is an empty JSON Schema: describe the output")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise UsageError(
            f"output_type is not a valid JSON Schema: {exc.message} at {where}"
        ) from None
    return cls(schema)


def _jsonschema_check(validator: Any) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return value
        lines = []
        for error in errors[:20]:
            loc = ".".join(str(p) for p in error.absolute_path) or "(the value)"
            lines.append(f"- {loc}: {error.message}")
        count = len(errors)
        head = f"{count} validation error{'s' if count != 1 else ''}:"
        raise OutputInvalid("\n".join([head, *lines, *(["- ..."] if count > 20 else [])]))

    return run


# --- names ----------------------------------------------------------------------------------


def _name_of(output_type: Any) -> str:
    if isinstance(output_type, type):
        return _safe_name(output_type.__name__)
    return _safe_name(_type_name(output_type))


def _safe_name(text: str) -> str:
    name = _NAME_CHARS.sub("_", text).strip("_")[:64]
    return name or "output"


def _type_name(output_type: Any) -> str:
    if isinstance(output_type, type):
        return output_type.__qualname__
    if isinstance(output_type, dict):
        return "<JSON Schema dict>"
    return repr(output_type).replace("typing.", "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clear_caches() -> None:
    """Forget every cached spec (for tests and benchmarks)."""
    with _cache_lock:
        _by_class.clear()
    _by_value.clear()
    _adapters.clear()
