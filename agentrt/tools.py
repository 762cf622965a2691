"""Declaring tools: ``@tool``, ``@async_tool_is``, ``Toolbox``, and schemas from signatures.

A :class:`Tool` wraps a function (``def`` or ``async def``), stays callable like it, and
carries what a provider needs: a name, a description from the docstring and a JSON Schema
built by pydantic from the type hints. Its argument validator is built once, here.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Annotated, Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from .callbacks import is_async_callable
from .messages import ToolSpec

__all__ = ["Tool", "Toolbox", "async_tool_is", "collect_tools", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

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


def _signature_model(
    fn: Callable[..., Any], name: str, docs: dict[str, str]
) -> tuple[type[BaseModel], tuple[tuple[str, str], ...]]:
    """Build the pydantic model that validates a tool's arguments.

    Returns:
        The model, and ``(parameter name, model field name)`` pairs. A parameter whose name
        pydantic reserves (``json``, ``schema``, ``model_config``, ``_private``, ...) gets
        another field name, aliased to its own, so the schema still shows the parameter.
    """
    sig = inspect.signature(fn)
    hints = _param_hints(fn, name)
    fields: dict[str, Any] = {}
    names: list[tuple[str, str]] = []
    for param in sig.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
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
    return create_model(f"{model_name}Arguments", __config__=config, **fields), tuple(names)


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
        raise TypeError(
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


class Tool:
    """A function the model may call.

    Attributes:
        name: the name the model sees.
        description: from ``description=`` or the docstring.
        parameters: the JSON Schema of the arguments.
        timeout: seconds the call may take, or ``None``.
        fn: the sync or async implementation.
        async_fn: the async implementation of a dual tool (see :func:`async_tool_is`).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        async_fn: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        self.async_fn = async_fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", self.name):
            raise ValueError(
                f"tool name {self.name!r} is not usable by providers: use letters, digits, "
                "'_', '.' or '-', at most 64 characters, starting with a letter or '_'"
            )
        if timeout is not None and timeout <= 0:
            raise ValueError(f"tool {self.name!r}: timeout must be positive, got {timeout}")
        self.timeout = timeout
        doc_description, param_docs = parse_docstring(inspect.getdoc(fn))
        self.description = description if description is not None else doc_description
        self.is_async = is_async_callable(fn)
        self.arguments_model, self._field_names = _signature_model(fn, self.name, param_docs)
        self.parameters = _clean_schema(self.arguments_model.model_json_schema())
        self.spec = ToolSpec(self.name, self.description, self.parameters)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly, exactly as before decoration."""
        return self.fn(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # A Tool defined in a class body binds like a method (used by Toolbox).
        if instance is None:
            return self
        return self.bind(instance)

    def bind(self, instance: object) -> Tool:
        """Return this tool bound to ``instance`` (for tools declared on a class)."""
        bound = Tool.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        bound.fn = self.fn.__get__(instance)
        if self.async_fn is not None:
            bound.async_fn = self.async_fn.__get__(instance)
        _, param_docs = parse_docstring(inspect.getdoc(self.fn))
        bound.arguments_model, bound._field_names = _signature_model(
            bound.fn, self.name, param_docs
        )
        bound.parameters = _clean_schema(bound.arguments_model.model_json_schema())
        bound.spec = ToolSpec(self.name, self.description, bound.parameters)
        return bound

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate the model's arguments and return the keyword arguments for the call.

        Raises:
            pydantic.ValidationError: the arguments do not fit the signature.
        """
        model = self.arguments_model.model_validate(arguments)
        return {name: getattr(model, key) for name, key in self._field_names}

    def implementation(self, *, prefer_sync: bool) -> tuple[Callable[..., Any], bool]:
        """Pick the function to call and whether it is async.

        Async chains use the async implementation of a dual tool; sync chains the sync one.
        """
        if self.async_fn is not None and not prefer_sync:
            return self.async_fn, True
        return self.fn, self.is_async

    def __repr__(self) -> str:
        kind = "dual" if self.async_fn else ("async" if self.is_async else "sync")
        return f"<Tool {self.name} ({kind})>"


@overload
def tool(fn: F, /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[F], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`; usable as ``@tool`` or ``@tool(...)``.

    Args:
        fn: the function (``def`` or ``async def``), or a ``Tool`` to re-configure.
        name: the name the model sees; defaults to the function's name.
        description: defaults to the docstring's text before its sections.
        timeout: seconds after which the call becomes an error result.

    Returns:
        The tool, still callable like the function.
    """

    def decorate(f: Callable[..., Any]) -> Tool:
        if isinstance(f, Tool):
            return Tool(
                f.fn,
                name=name or f.name,
                description=description if description is not None else f.description,
                timeout=timeout if timeout is not None else f.timeout,
                async_fn=f.async_fn,
            )
        return Tool(f, name=name, description=description, timeout=timeout)

    if fn is not None:
        return decorate(fn)
    return decorate


def _signature_key(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    sig = inspect.signature(fn)
    try:
        hints = _param_hints(fn, getattr(fn, "__name__", "tool"))
    except TypeError:
        hints = {}
    hints.pop("return", None)
    return [
        (p.name, p.kind, p.default, hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
    ]


def async_tool_is(async_fn: Callable[..., Awaitable[Any]]) -> Callable[[Callable[..., Any]], Tool]:
    """Give a sync tool an async implementation: one tool, two implementations.

    Async chains await ``async_fn``; sync chains (the ``get_model`` facade) call the
    decorated sync function.

    Raises:
        TypeError: ``async_fn`` is not ``async def``, the decorated function is, or their
            signatures (names, kinds, defaults, annotations) differ.
    """
    if not is_async_callable(async_fn):
        raise TypeError(f"async_tool_is() needs an async function, got {async_fn!r}")

    def decorate(fn: Callable[..., Any]) -> Tool:
        sync_fn = fn.fn if isinstance(fn, Tool) else fn
        if is_async_callable(sync_fn):
            raise TypeError(
                f"@async_tool_is decorates the sync implementation, but {sync_fn.__name__} "
                "is async: decorate the def, pass the async def to async_tool_is()"
            )
        sync_key, async_key = _signature_key(sync_fn), _signature_key(async_fn)
        if sync_key != async_key:
            raise TypeError(
                f"async_tool_is: the signatures of {sync_fn.__name__}"
                f"{inspect.signature(sync_fn)} and {async_fn.__name__}"
                f"{inspect.signature(async_fn)} differ; give both the same parameters"
            )
        if isinstance(fn, Tool):
            return Tool(
                sync_fn,
                name=fn.name,
                description=fn.description,
                timeout=fn.timeout,
                async_fn=async_fn,
            )
        return Tool(sync_fn, async_fn=async_fn)

    return decorate


class Toolbox:
    """A class whose instances offer their public methods as tools bound to the instance.

    Subclass it, write methods (optionally decorated with ``@tool(...)``), and pass an
    instance in ``tools=[...]``.
    """

    def tools(self) -> list[Tool]:
        """Return the instance's public methods as tools (cached per instance)."""
        cached: list[Tool] | None = self.__dict__.get("_agentrt_tools")
        if cached is not None:
            return cached
        found: list[Tool] = []
        for attr in dir(type(self)):
            if attr.startswith("_") or attr in _TOOLBOX_OWN:
                continue
            value = getattr(self, attr)
            if isinstance(value, Tool):
                found.append(value)
            elif inspect.ismethod(value):
                found.append(Tool(value))
        self.__dict__["_agentrt_tools"] = found
        return found


_TOOLBOX_OWN = frozenset(name for name in dir(Toolbox) if not name.startswith("_"))


def collect_tools(tools: Iterable[Any]) -> dict[str, Tool]:
    """Normalise ``tools=[...]`` (tools, plain functions, toolboxes) into a name -> tool map.

    Raises:
        TypeError: an item is not a function, a tool or a toolbox.
        ValueError: two tools share a name.
    """
    result: dict[str, Tool] = {}
    for item in _expand(tools):
        if item.name in result and result[item.name] is not item:
            raise ValueError(f"two tools are named {item.name!r}: rename one with @tool(name=...)")
        result[item.name] = item
    return result


def _expand(tools: Iterable[Any]) -> Iterator[Tool]:
    for item in tools:
        if isinstance(item, Tool):
            yield item
        elif isinstance(item, Toolbox):
            yield from item.tools()
        elif callable(item) and not isinstance(item, type):
            yield _plain_tool(item)
        else:
            raise TypeError(
                f"tools=[...] takes functions, @tool objects and Toolbox instances, got {item!r}"
            )


@functools.lru_cache(maxsize=512)
def _plain_tool_cached(fn: Callable[..., Any]) -> Tool:
    return Tool(fn)


def _plain_tool(fn: Callable[..., Any]) -> Tool:
    # Plain functions are converted once, not per chain: schema building is not free.
    try:
        return _plain_tool_cached(fn)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return Tool(fn)
