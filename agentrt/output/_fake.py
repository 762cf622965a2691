"""How the stand-in models answer with an output: the offline model and ``FunctionModel``.

They do what a provider does in each mode: ``native`` and ``prompted`` put the JSON in the
text, ``tool`` calls the final-result tool with it as arguments.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

from ._run import OutputRequest
from ._spec import WRAP_KEY
from ._wire import OUTPUT_TOOL_NAME

__all__ = ["output_json", "render_json", "render_output"]


def render_output(request: OutputRequest, value: Any) -> tuple[str, tuple[str, str] | None]:
    """Render ``value`` as a model's answer to ``request``.

    Args:
        request: the request's output (``TurnRequest.output``).
        value: the output: a Python value (a model, a dataclass, a dict, ...) is encoded as
            JSON; a ``str`` is the raw answer, sent as it is (to test invalid answers).

    Returns:
        The text, and the final-result tool call ``(name, arguments)`` in ``tool`` mode.
    """
    if isinstance(value, str):
        return _answer(request, value)
    return render_json(request, pydantic_core.to_jsonable_python(value), wrapped=False)


def render_json(
    request: OutputRequest, data: Any, *, wrapped: bool
) -> tuple[str, tuple[str, str] | None]:
    """Render JSON data as the answer (see :func:`render_output`).

    Args:
        request: the request's output.
        data: JSON-able data of the output type, or of its object schema when ``wrapped``.
        wrapped: ``data`` is already ``{"result": ...}`` for a wrapped type.
    """
    if request.spec.wrapped:
        if wrapped and request.mode == "prompted":
            data = data[WRAP_KEY]
        elif not wrapped and request.mode != "prompted":
            data = {WRAP_KEY: data}
    return _answer(request, json.dumps(data))


def _answer(request: OutputRequest, raw: str) -> tuple[str, tuple[str, str] | None]:
    if request.mode == "tool":
        return "", (OUTPUT_TOOL_NAME, raw)
    return raw, None


def output_json(value: Any) -> Any:
    """The output as JSON-able data (for the log and the CLI record); ``None`` stays ``None``."""
    if value is None:
        return None
    return pydantic_core.to_jsonable_python(value)
