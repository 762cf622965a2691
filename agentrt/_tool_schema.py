"""Schemas from signatures: the argument validator and JSON Schema of a tool.

Pure functions, no I/O: a function's signature, type hints and Google-style docstring
become a pydantic model (validation) and the JSON Schema the model sees. A signature a
model cannot call (``*args``, ``**kwargs``, positional-only parameters, a type pydantic
cannot describe) is refused here, with a message naming the tool and the parameter.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.fields import FieldInfo

from .errors import UsageError

__all__ = [
    "ArgumentsProblem",
    "SchemaCheck",
    "check_against_schema",
    "parse_docstring",
    "signature_key",
    "signature_model",
]

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION_HEADER = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and ``Args:`` descriptions.

    Returns:
        The text before the first section, and a mapping of parameter name to description.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    i = 0
    while i < len(lines) and not _SECTION_HEADER.match(lines[i]):
        description.append(lines[i])
        i += 1
    current: str | None = None
    in_args = False
    base_indent = 0
    for line in lines[i:]:
        if _ARGS_HEADER.match(line):
            in_args, current = True, None
            continue
        if _SECTION_HEADER.match(line) and not line.startswith(" "):
            in_args, current = False, None
            continue
        if not in_args or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (current is None or indent <= base_indent):
            current, base_indent = match.group(1), indent
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


def signature_model(
    fn: Callable[..., Any], name: str, docs: dict[str, str], *, skip_first: bool = False
) -> tuple[type[BaseModel], tuple[tuple[str, str], ...], dict[str, Any]]:
    """Build the pydantic model that validates a tool's arguments.

    Args:
        fn: the function.
        name: the tool's name, for error messages.
        docs: parameter descriptions from the docstring.
        skip_first: leave out the first parameter (``self`` or ``cls`` of a method).

    Returns:
        The model, ``(parameter name, model field name)`` pairs, and the JSON Schema. A
        parameter whose name pydantic reserves (``json``, ``schema``, ``model_config``,
        ``_private``, ...) gets another field name, aliased to its own, so the schema still
        shows the parameter.

    Raises:
        UsageError: a parameter is ``*args``, ``**kwargs`` or positional-only, or its type
            cannot be validated or described as JSON Schema.
    """
    sig = inspect.signature(fn)
    hints = _param_hints(fn, name)
    fields: dict[str, Any] = {}
    names: list[tuple[str, str]] = []
    params = list(sig.parameters.values())[1 if skip_first else 0 :]
    for param in params:
        _check_kind(param, name)
        annotation = hints.get(param.name, Any)
        key = param.name
        if _reserved(key):
            key = f"field_{len(names)}"
            while key in sig.parameters:
                key += "_"
            annotation = Annotated[annotation, Field(alias=param.name)]
        names.append((param.name, key))
        default = ... if param.default is param.empty else param.default
        description = docs.get(param.name)
        if isinstance(default, FieldInfo):
            fields[key] = (annotation, default)
        elif description and not _has_description(annotation):
            fields[key] = (annotation, Field(default, description=description))
        else:
            fields[key] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    model_name = "".join(part.capitalize() for part in re.split(r"\W+", name) if part) or "Tool"
    try:
        model = create_model(f"{model_name}Arguments", __config__=config, **fields)
        schema = _clean_schema(model.model_json_schema())
    except Exception as exc:
        raise _unsupported_type(name, params, hints, exc) from exc
    return model, tuple(names), schema


def _check_kind(param: inspect.Parameter, name: str) -> None:
    """Refuse the parameters a model cannot fill: it sends one JSON object of named values."""
    if param.kind is param.VAR_POSITIONAL:
        raise UsageError(
            f"tool {name!r}: parameter *{param.name} cannot be offered to a model, which calls "
            "tools with named JSON arguments; declare each argument as a named, type-hinted "
            "parameter (def f(a: int, b: str)), or take a list (items: list[str])"
        )
    if param.kind is param.VAR_KEYWORD:
        raise UsageError(
            f"tool {name!r}: parameter **{param.name} cannot be offered to a model: it would "
            "see a tool with no parameters; declare each argument as a named, type-hinted "
            "parameter, or take free-form data as one parameter (data: dict[str, Any])"
        )
    if param.kind is param.POSITIONAL_ONLY:
        raise UsageError(
            f"tool {name!r}: parameter {param.name!r} is positional-only, but tools are called "
            "with keyword arguments; drop the '/' from the signature, or wrap the function "
            "in a def with named parameters"
        )


def _unsupported_type(
    name: str, params: list[inspect.Parameter], hints: dict[str, Any], exc: Exception
) -> UsageError:
    """Name the parameter whose type pydantic cannot handle (its own error names neither)."""
    for param in params:
        annotation = hints.get(param.name, Any)
        try:
            TypeAdapter(annotation).json_schema()
        except Exception as inner:
            # pydantic's first sentence says what failed; the rest advises its own settings.
            reason = str(inner).strip().splitlines()[0].split(". ")[0].rstrip(".")
            return UsageError(
                f"tool {name!r}: parameter {param.name!r} has type {_type_name(annotation)}, "
                f"which agentrt cannot validate or describe to the model as JSON Schema "
                f"({reason}); use a JSON-friendly type (str, int, float, bool, list, dict, "
                "Literal, an Enum, a pydantic model, a dataclass or a TypedDict), or annotate "
                "it Any and convert the value inside the tool"
            )
    reason = str(exc).strip().splitlines()[0]
    return UsageError(f"tool {name!r}: cannot build the JSON Schema of its parameters ({reason})")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation)


def _reserved(name: str) -> bool:
    # Private names, pydantic's ``model_`` namespace and BaseModel's own attributes cannot
    # be field names: pydantic would drop, misread or warn about them.
    return name.startswith(("_", "model_")) or hasattr(BaseModel, name)


def _param_hints(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """Resolve the parameters' type hints; the return annotation does not matter here."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    # Retry without the return annotation (often a class local to a function).
    target = inspect.unwrap(getattr(fn, "__func__", fn))
    annotations = dict(getattr(target, "__annotations__", {}))
    annotations.pop("return", None)
    shim = types.SimpleNamespace(__annotations__=annotations)
    globalns = getattr(target, "__globals__", {})
    try:
        return typing.get_type_hints(shim, globalns=globalns, include_extras=True)
    except Exception as exc:
        raise UsageError(
            f"tool {name!r}: cannot resolve the type hints of its parameters ({exc}); "
            "define the types they use at module level"
        ) from exc


def _has_description(annotation: Any) -> bool:
    """Whether an ``Annotated[..., Field(description=...)]`` already describes the field."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, FieldInfo) and meta.description:
            return True
    return False


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles, which only add tokens for the model."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    for definition in schema.get("$defs", {}).values():
        if isinstance(definition, dict):
            _clean_schema(definition)
    return schema


class ArgumentsProblem(ValueError):
    """Arguments that do not fit a :meth:`Tool.from_schema` schema; the message says how."""


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def check_against_schema(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """The light checks of :meth:`Tool.from_schema`; the callee validates the rest."""
    properties = schema.get("properties") or {}
    problems = [
        f"missing required argument {key!r}"
        for key in schema.get("required") or ()
        if key not in arguments
    ]
    for key, value in arguments.items():
        prop = properties.get(key)
        if prop is None:
            if schema.get("additionalProperties") is False:
                problems.append(f"unexpected argument {key!r}")
            continue
        declared = prop.get("type") if isinstance(prop, dict) else None
        types_ = [declared] if isinstance(declared, str) else declared
        if isinstance(types_, list) and not any(
            _JSON_TYPES.get(t, lambda v: True)(value) for t in types_
        ):
            problems.append(f"argument {key!r} must be of JSON type {declared}, got {value!r}")
    if problems:
        raise ArgumentsProblem("; ".join(problems))
    return dict(arguments)


#: A key no arguments hold (a schema this check cannot read is always checked in full).
_NEVER = object()


class SchemaCheck:
    """:func:`check_against_schema` for one schema, with what it reads worked out once.

    A call whose arguments pass is checked without reading the schema again; one that
    fails goes through :func:`check_against_schema`, which words the problems.
    """

    __slots__ = ("_closed", "_properties", "_required", "_types", "schema")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        properties = schema.get("properties") or {}
        self._required = tuple(schema.get("required") or ())
        self._closed = schema.get("additionalProperties") is False
        self._properties = frozenset(properties)
        types: dict[str, tuple[Callable[[Any], bool], ...]] = {}
        for key, prop in properties.items():
            declared = prop.get("type") if isinstance(prop, dict) else None
            names = [declared] if isinstance(declared, str) else declared
            if isinstance(names, list):
                if not all(isinstance(name, str) for name in names):
                    self._closed, self._required = True, (_NEVER,)  # always the slow path
                elif all(name in _JSON_TYPES for name in names):
                    types[key] = tuple(_JSON_TYPES[name] for name in names)
                # else a type this check does not know: it accepts anything
        self._types = types

    def __call__(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``arguments`` if they pass, else raise ``ArgumentsProblem``."""
        if self._passes(arguments):
            return dict(arguments)
        return check_against_schema(self.schema, arguments)

    def _passes(self, arguments: dict[str, Any]) -> bool:
        for key in self._required:
            if key not in arguments:
                return False
        types, known = self._types, self._properties
        for key, value in arguments.items():
            checks = types.get(key)
            if checks is None:
                if self._closed and key not in known:
                    return False
            elif not any(check(value) for check in checks):
                return False
        return True


def signature_key(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    sig = inspect.signature(fn)
    try:
        hints = _param_hints(fn, getattr(fn, "__name__", "tool"))
    except UsageError:
        hints = {}
    hints.pop("return", None)
    return [
        (p.name, p.kind, p.default, hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
    ]
