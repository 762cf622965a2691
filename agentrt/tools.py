"""Declaring tools: ``@tool``, ``@async_tool_is``, ``Tool.from_schema``, ``Toolbox``.

A :class:`Tool` wraps a function (``def`` or ``async def``), stays callable like it, and
carries what a provider needs: a name, a description from the docstring and a JSON Schema
built by pydantic from the type hints (``_tool_schema``). Its argument validator is built
once, when the tool is.
:meth:`Tool.from_schema` builds one from a JSON Schema instead (tools of other systems,
such as MCP servers).

Nothing here keeps a per-request object alive: a plain function is converted again for
each chain unless it is a module-level function (which lives as long as its module anyway),
whose tool is kept on the function itself.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from ._tool_schema import (
    ArgumentsProblem,
    SchemaCheck,
    parse_docstring,
    signature_key,
    signature_model,
)
from .callbacks import is_async_callable
from .errors import UsageError
from .messages import ToolSpec

__all__ = [
    "ArgumentsProblem",
    "Tool",
    "Toolbox",
    "async_tool_is",
    "collect_tools",
    "parse_docstring",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])


class Tool:
    """A function the model may call.

    A sync tool (``def``) runs in a worker thread, an async one (``async def``) on the event
    loop. A sync function that returns an awaitable (a plain ``def`` wrapper around an
    ``async def``, such as a logging decorator made with ``functools.wraps``) is called in a
    worker thread like any sync tool, and the awaitable it returns is then awaited on the
    event loop: its result, not ``"<coroutine object ...>"``, goes to the model. Write the
    wrapper as ``async def`` (or mark it with ``inspect.markcoroutinefunction``) to skip the
    thread.

    Attributes:
        name: the name the model sees.
        description: from ``description=`` or the docstring.
        parameters: the JSON Schema of the arguments.
        timeout: seconds the call may take, or ``None``.
        sequential: the call runs alone, after the turn's other calls.
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
        sequential: bool = False,
    ) -> None:
        """Build a tool from a function's signature and docstring.

        Raises:
            UsageError: ``fn`` is not a function; the name is not usable; ``timeout`` is
                not positive; a parameter is ``*args``/``**kwargs``/positional-only or has
                a type agentrt cannot describe as JSON Schema.
        """
        # How the tool binds when declared in a class body: like a method, or not at all.
        self._binds = "instance"
        if isinstance(fn, staticmethod):
            fn, self._binds = fn.__func__, "static"
        elif isinstance(fn, classmethod):
            fn, self._binds = fn.__func__, "class"
        if not callable(fn):
            raise UsageError(f"@tool needs a function, got {fn!r}")
        self.fn = fn
        self.async_fn = async_fn
        self._setup(name or getattr(fn, "__name__", None) or type(fn).__name__, timeout, sequential)
        doc_description, param_docs = parse_docstring(inspect.getdoc(fn))
        self.description = description if description is not None else doc_description
        self.is_async = is_async_callable(fn)
        self.arguments_model: type[BaseModel] | None
        self.arguments_model, self._field_names, self.parameters = signature_model(
            fn, self.name, param_docs
        )
        self._check: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        #: The bound form's validator and schema, built on first bind (``self`` left out).
        self._bound: tuple[type[BaseModel], tuple[tuple[str, str], ...], dict[str, Any]] | None
        self._bound = None
        self.spec = ToolSpec(self.name, self.description, self.parameters)
        functools.update_wrapper(self, fn)

    def _setup(self, name: str, timeout: float | None, sequential: bool) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", name):
            raise UsageError(
                f"tool name {name!r} is not usable by providers: use letters, digits, "
                "'_', '.' or '-', at most 64 characters, starting with a letter or '_'"
            )
        self.name = name
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise UsageError(f"tool {name!r}: timeout must be a positive number, got {timeout!r}")
        if not isinstance(sequential, bool):
            raise UsageError(f"tool {name!r}: sequential must be True or False, got {sequential!r}")
        self.timeout = timeout
        self.sequential = sequential

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        fn: Callable[..., Any],
        *,
        timeout: float | None = None,
        sequential: bool = False,
    ) -> Tool:
        """Build a tool from a JSON Schema, for tools defined elsewhere (an MCP server...).

        Validation is deliberately light, and the callee is expected to validate fully:
        before the call, the arguments must hold every ``required`` property, each
        top-level property that declares a ``type`` must have a value of that JSON type, and
        properties the schema does not list are refused when ``additionalProperties`` is
        ``false``. A call that fails these checks becomes an error result the model can
        correct itself from, as with any tool.

        Args:
            name: the name the model sees.
            description: what the tool does, for the model.
            parameters: the JSON Schema of the arguments, an ``"object"`` schema (copied).
            fn: called as ``await fn(**arguments)``; an ``async def`` (a plain ``def`` runs in
                a worker thread, like any sync tool).
            timeout: seconds the call may take, or ``None``.
            sequential: the call runs alone, after the turn's other calls.

        Returns:
            The tool.

        Raises:
            UsageError: the name, the schema, ``fn`` or ``timeout`` is not usable.
        """
        self = cls.__new__(cls)
        self._setup(name, timeout, sequential)
        if not isinstance(description, str):
            raise UsageError(f"tool {name!r}: description must be a str, got {description!r}")
        if not isinstance(parameters, Mapping):
            raise UsageError(
                f"tool {name!r}: parameters must be a JSON Schema dict, got {parameters!r}"
            )
        schema = copy.deepcopy(dict(parameters))
        if schema.setdefault("type", "object") != "object":
            raise UsageError(
                f"tool {name!r}: the parameters schema must have type 'object' (tools take "
                f"named arguments), got type {schema['type']!r}"
            )
        for key in ("properties", "required"):
            if not isinstance(schema.get(key, {} if key == "properties" else []), dict | list):
                raise UsageError(f"tool {name!r}: the schema's {key!r} is malformed")
        if not callable(fn):
            raise UsageError(f"tool {name!r}: fn must be callable, got {fn!r}")
        self.fn, self.async_fn, self._binds = fn, None, "static"
        self.description, self.parameters = description, schema
        self.is_async = is_async_callable(fn)
        self.arguments_model, self._field_names, self._bound = None, (), None
        self._check = SchemaCheck(schema)
        self.spec = ToolSpec(name, description, schema)
        self.__dict__.update(__name__=name, __qualname__=name, __doc__=description)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly, exactly as before decoration."""
        return self.fn(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # A Tool defined in a class body binds like a method (used by Toolbox).
        if self._binds == "class":
            return self.bind(owner if owner is not None else type(instance))
        if instance is None or self._binds in ("static", "bound"):
            return self
        return self.bind(instance)

    def bind(self, instance: object) -> Tool:
        """Return this tool bound to ``instance`` (for tools declared on a class).

        ``instance`` is the class for a ``classmethod``; a ``staticmethod`` tool is returned
        as it is.
        """
        if self._binds in ("static", "bound"):
            return self
        if self._bound is None:  # built once per declared tool, not per instance
            _, docs = parse_docstring(inspect.getdoc(self.fn))
            self._bound = signature_model(self.fn, self.name, docs, skip_first=True)
        bound = Tool.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        if self._binds == "class" and not isinstance(instance, type):
            instance = type(instance)
        bound.fn = self.fn.__get__(instance)
        if self.async_fn is not None:
            bound.async_fn = self.async_fn.__get__(instance)
        bound.arguments_model, bound._field_names, bound.parameters = self._bound
        bound.spec = ToolSpec(self.name, self.description, bound.parameters)
        bound._binds = "bound"
        return bound

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate the model's arguments and return the keyword arguments for the call.

        Raises:
            pydantic.ValidationError: the arguments do not fit the signature.
            ArgumentsProblem: the arguments do not fit a :meth:`from_schema` schema.
        """
        if self._check is not None:
            return self._check(arguments)
        assert self.arguments_model is not None
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
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    sequential: bool = False,
) -> Callable[[F], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    sequential: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`; usable as ``@tool`` or ``@tool(...)``.

    Args:
        fn: the function (``def`` or ``async def``), or a ``Tool`` to re-configure.
        name: the name the model sees; defaults to the function's name.
        description: defaults to the docstring's text before its sections.
        timeout: seconds after which the call becomes an error result.
        sequential: run the call alone, after the turn's other calls have finished (for
            side effects that must not overlap); several sequential calls of one turn run
            one after another in the model's order.

    Returns:
        The tool, still callable like the function.

    Raises:
        UsageError: the function cannot be a tool (``*args``, ``**kwargs``, positional-only
            parameters, a parameter type without a JSON Schema) or an option is wrong.
    """

    def decorate(f: Callable[..., Any]) -> Tool:
        if isinstance(f, Tool):
            if f._check is not None:  # from_schema: rebuild from its schema
                return Tool.from_schema(
                    name or f.name,
                    description if description is not None else f.description,
                    f.parameters,
                    f.fn,
                    timeout=timeout if timeout is not None else f.timeout,
                    sequential=sequential or f.sequential,
                )
            raw: Any = {"static": staticmethod, "class": classmethod}.get(f._binds, lambda fn: fn)(
                f.fn
            )
            return Tool(
                raw,
                name=name or f.name,
                description=description if description is not None else f.description,
                timeout=timeout if timeout is not None else f.timeout,
                async_fn=f.async_fn,
                sequential=sequential or f.sequential,
            )
        return Tool(f, name=name, description=description, timeout=timeout, sequential=sequential)

    if fn is not None:
        return decorate(fn)
    return decorate


def async_tool_is(async_fn: Callable[..., Awaitable[Any]]) -> Callable[[Callable[..., Any]], Tool]:
    """Give a sync tool an async implementation: one tool, two implementations.

    Async chains await ``async_fn``; sync chains (the ``get_model`` facade) call the
    decorated sync function.

    Raises:
        UsageError: ``async_fn`` is not ``async def``, the decorated function is, or their
            signatures (names, kinds, defaults, annotations) differ.
    """
    if not is_async_callable(async_fn):
        raise UsageError(f"async_tool_is() needs an async function, got {async_fn!r}")

    def decorate(fn: Callable[..., Any]) -> Tool:
        sync_fn = fn.fn if isinstance(fn, Tool) else fn
        if is_async_callable(sync_fn):
            raise UsageError(
                f"@async_tool_is decorates the sync implementation, but {sync_fn.__name__} "
                "is async: decorate the def, pass the async def to async_tool_is()"
            )
        sync_key, async_key = signature_key(sync_fn), signature_key(async_fn)
        if sync_key != async_key:
            raise UsageError(
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
                sequential=fn.sequential,
            )
        return Tool(sync_fn, async_fn=async_fn)

    return decorate


class Toolbox:
    """A class whose instances offer their public methods as tools bound to the instance.

    Subclass it, write methods (optionally decorated with ``@tool(...)``), and pass an
    instance in ``tools=[...]``. Instance methods, ``@staticmethod`` and ``@classmethod``
    methods are offered; properties, attributes and names starting with ``_`` are not.
    Each method's schema is built once per class; an instance holds no reference to its
    tools, so a toolbox made per request is freed with the chain that used it.
    """

    def tools(self) -> list[Tool]:
        """Return the instance's public methods as tools bound to it."""
        return [template.bind(self) for template in _class_tools(type(self))]


_TOOLBOX_OWN = frozenset(name for name in dir(Toolbox) if not name.startswith("_"))

#: A Toolbox class's declared tools, unbound; per class, never per instance.
_CLASS_TOOLS: weakref.WeakKeyDictionary[type, list[Tool]] = weakref.WeakKeyDictionary()


def _class_tools(cls: type) -> list[Tool]:
    found = _CLASS_TOOLS.get(cls)
    if found is not None:
        return found
    found = []
    for attr in dir(cls):
        if attr.startswith("_") or attr in _TOOLBOX_OWN:
            continue
        raw = inspect.getattr_static(cls, attr)
        if isinstance(raw, staticmethod) and isinstance(raw.__func__, Tool):
            raw = raw.__func__
            if raw._binds == "instance":  # @staticmethod over @tool: it takes no self
                raw._binds = "static"
        if isinstance(raw, Tool):
            found.append(raw)
        elif isinstance(raw, staticmethod | classmethod) or inspect.isfunction(raw):
            found.append(Tool(typing.cast("Callable[..., Any]", raw)))
    _CLASS_TOOLS[cls] = found
    return found


def collect_tools(tools: Iterable[Any] | None) -> dict[str, Tool]:
    """Normalise ``tools=[...]`` into a name -> tool map.

    Items may be tools, plain functions, ``Toolbox`` instances and any object with a
    ``tools()`` method returning tools (an MCP connection, say). An item given twice is
    taken once; ``None`` is no tools.

    Raises:
        UsageError: an item is none of those, or two tools share a name (the message names
            where each came from).
    """
    if tools is None:
        return {}
    if callable(tools) or isinstance(tools, str | bytes | Toolbox) or not _iterable(tools):
        raise UsageError(
            f"tools= takes a list of tools, functions or toolboxes, got {tools!r}; "
            "write tools=[...]"
        )
    result: dict[str, Tool] = {}
    sources: dict[str, Any] = {}
    taken: dict[int, Any] = {}  # the items seen, by identity (kept alive while we look)
    for item in tools:
        if id(item) in taken:
            continue
        taken[id(item)] = item
        for found in _expand(item):
            name = found.name
            if name in result:
                first, second = _source(sources[name], result[name]), _source(item, found)
                where = f"one from {first}, one from {second}" if first != second else first
                raise UsageError(
                    f"two tools are named {name!r} ({where}); tool names must be unique: "
                    "rename one with @tool(name=...)"
                )
            result[name], sources[name] = found, item
    return result


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _expand(item: Any) -> Iterator[Tool]:
    if isinstance(item, Tool):
        yield item
    elif isinstance(item, type):
        raise UsageError(
            f"tools=[...] got the class {item.__qualname__}; pass an instance "
            f"({item.__qualname__}(...)) or a function"
        )
    elif callable(getattr(item, "tools", None)) and not inspect.isroutine(item):
        offered = item.tools()
        if inspect.isawaitable(offered) or not _iterable(offered):
            _close(offered)
            raise UsageError(f"{item!r}.tools() must return the tools (a list), got {offered!r}")
        for found in offered:
            if isinstance(found, Tool):
                yield found
            elif callable(found) and not isinstance(found, type):
                yield _plain_tool(found)
            else:
                raise UsageError(f"{item!r}.tools() returned {found!r}, which is not a tool")
    elif callable(item):
        yield _plain_tool(item)
    else:
        raise UsageError(
            "tools=[...] takes functions, @tool objects, Toolbox instances and objects with "
            f"a tools() method, got {item!r}"
        )


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if inspect.iscoroutine(value) and close is not None:
        close()  # no "never awaited" warning on top of the error


def _source(item: Any, found: Tool) -> str:
    """Where a tool of ``tools=[...]`` came from, for the collision message."""
    if item is found or (callable(item) and not hasattr(item, "tools")):
        target = inspect.unwrap(getattr(found.fn, "__func__", found.fn))
        module = getattr(target, "__module__", None)
        qualname = getattr(target, "__qualname__", None)
        if module and qualname:
            return f"the function {module}.{qualname}"
        return f"{found!r}"
    text = repr(item)
    return text if len(text) <= 120 else f"{text[:117]}..."


_TOOL_ATTRIBUTE = "__agentrt_tool__"


def _plain_tool(fn: Callable[..., Any]) -> Tool:
    # A module-level function lives as long as its module: its tool is kept on it, so the
    # schema is built once. Anything else (a closure, a function defined per request, a
    # bound method, a partial) may hold per-request state and is converted per chain, so
    # that nothing of a request outlives its chain.
    if not isinstance(fn, types.FunctionType) or fn.__closure__ or "<locals>" in fn.__qualname__:
        return Tool(fn)
    cached = fn.__dict__.get(_TOOL_ATTRIBUTE)
    if isinstance(cached, Tool) and cached.fn is fn:
        return cached
    converted = Tool(fn)
    converted.__dict__.pop(_TOOL_ATTRIBUTE, None)
    fn.__dict__[_TOOL_ATTRIBUTE] = converted
    return converted
