"""Checking what users pass to ``get_async_model``, ``prompt`` and ``chain``, at the call.

Every check raises :class:`~agentrt.errors.UsageError` naming the parameter, what it got
and what it takes. Unknown generation options are refused with the closest known name
(``temprature`` -> ``temperature``), so a misspelt option is never sent to a provider or
silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UsageError

__all__ = [
    "COMMON_GENERATION_OPTIONS",
    "MODEL_PARAMETERS",
    "PROMPT_PARAMETERS",
    "CHAIN_PARAMETERS",
    "accepted_options",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_mapping",
    "check_optional_str",
    "check_timeout",
    "generation_options",
    "merge_extras",
    "suggest",
    "tools_list",
]

#: Options every provider accepts (the offline and function models accept any option a
#: remote provider accepts, so swapping a model id for ``"offline"`` needs no other change).
COMMON_GENERATION_OPTIONS = frozenset({"temperature", "max_tokens", "top_p", "stop"})

#: Keyword parameters of each entry point, for "did you mean" and "belongs to" hints.
MODEL_PARAMETERS = (
    "api_key",
    "base_url",
    "timeout",
    "max_retries",
    "retry",
    "http_client",
    "limits",
    "stream",
    "callbacks",
    "extra_body",
    "extra_headers",
)
PROMPT_PARAMETERS = (
    "system",
    "tools",
    "on_chunk",
    "callbacks",
    "stream",
    "history",
    "output_type",
    "output_mode",
    "tool_choice",
    "parallel_tool_calls",
    "extra_body",
    "extra_headers",
)
CHAIN_PARAMETERS = (
    "system",
    "tools",
    "max_turns",
    "before_call",
    "after_call",
    "on_chunk",
    "callbacks",
    "limiter",
    "stream",
    "max_tool_output",
    "tool_errors",
    "name",
    "output_type",
    "output_mode",
    "output_retries",
    "tool_choice",
    "parallel_tool_calls",
    "extra_body",
    "extra_headers",
)
_ENTRY_POINTS = {
    "get_async_model()": MODEL_PARAMETERS,
    "chain()": CHAIN_PARAMETERS,
    "prompt()": PROMPT_PARAMETERS,
}


def accepted_options(provider_cls: type) -> frozenset[str] | None:
    """The generation options ``provider_cls`` accepts; ``None`` when it accepts any."""
    options = getattr(provider_cls, "generation_options", None)
    return frozenset(options) if options is not None else None


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def generation_options(
    provider_cls: type, where: str, given: Mapping[str, Any], **named: Any
) -> dict[str, Any]:
    """Check generation options for one provider; return those that are set.

    Args:
        provider_cls: the provider class; its ``generation_options`` are the accepted names.
        where: the entry point, e.g. ``"chain()"``, for the messages.
        given: the options passed as extra keyword arguments (checked by name).
        **named: the explicit generation parameters (``temperature=...``), checked by type.

    Raises:
        UsageError: an unknown option, one the provider does not accept, or a wrong type.
    """
    accepted = accepted_options(provider_cls)
    provider = getattr(provider_cls, "name", provider_cls.__name__)
    options: dict[str, Any] = {}
    for key, value in named.items():
        if value is None:
            continue
        _check_generation_value(key, value, where)
        options[key] = value
    for key, value in given.items():
        if accepted is not None and key in accepted:
            if value is not None:
                options[key] = value
            continue
        if accepted is None and key in _all_known_options():
            if value is not None:
                options[key] = value
            continue
        raise UsageError(_unknown_message(key, where, provider, accepted))
    if accepted is not None:
        for key in options:
            if key not in accepted and key not in COMMON_GENERATION_OPTIONS:
                raise UsageError(
                    f"{where}: the {provider} provider does not accept {key}=; "
                    f"it accepts {', '.join(sorted(accepted))}, and vendor fields go in "
                    "extra_body={...}"
                )
    return options


def _unknown_message(key: str, where: str, provider: str, accepted: frozenset[str] | None) -> str:
    for other, parameters in _ENTRY_POINTS.items():
        if other != where and key in parameters:
            return f"{key}= is a parameter of {other}, not of {where}"
    if accepted is not None and key in _all_known_options():
        return (
            f"{where}: the {provider} provider does not accept {key}= (another provider "
            f"does); it accepts {', '.join(sorted(accepted))}; send vendor-specific fields "
            "with extra_body={...}"
        )
    known = accepted if accepted is not None else _all_known_options()
    hint = suggest(key, [*_ENTRY_POINTS.get(where, ()), *known])
    if hint:
        return (
            f"{where} got an unknown option {key}={hint} (vendor-specific fields go in "
            "extra_body={...})"
        )
    return (
        f"{where} got an unknown option {key}=; the {provider} provider accepts "
        f"{', '.join(sorted(known))}; send vendor-specific fields with extra_body={{...}}"
    )


def _all_known_options() -> frozenset[str]:
    # The options of every remote provider (imported lazily: their modules are large).
    from .providers import remote_generation_options

    return remote_generation_options()


def _check_generation_value(key: str, value: Any, where: str) -> None:
    if key in ("temperature", "top_p"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: {key}= takes a number, got {value!r}")
    elif key in ("max_tokens", "seed"):
        check_int(key, value, where, minimum=1 if key == "max_tokens" else None)
    elif key == "stop":
        if not (
            isinstance(value, str)
            or (isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value))
        ):
            raise UsageError(f"{where}: stop= takes a string or a list of strings, got {value!r}")


def check_int(
    name: str, value: Any, where: str, *, minimum: int | None = None, optional: bool = False
) -> None:
    """Refuse anything but an ``int`` (``None`` when ``optional``) of at least ``minimum``.

    Raises:
        UsageError: it is not an int (a bool or a string is not), or it is too small.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        what = "an integer or None" if optional else "an integer"
        raise UsageError(f"{where}: {name}= takes {what}, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{where}: {name}= must be at least {minimum}, got {value!r}")


def check_bool(name: str, value: Any, where: str, *, optional: bool = False) -> None:
    """Refuse anything but ``True``/``False`` (or ``None`` when ``optional``).

    Raises:
        UsageError: it is not a bool.
    """
    if value is None and optional:
        return
    if not isinstance(value, bool):
        raise UsageError(f"{where}: {name}= takes True or False, got {value!r}")


def check_optional_str(name: str, value: Any, where: str) -> None:
    """Refuse anything but a string or ``None``.

    Raises:
        UsageError: it is not a string.
    """
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}: {name}= takes a string, got {value!r}")


def check_callable(name: str, value: Any, where: str) -> None:
    """Refuse anything but a callable or ``None``.

    Raises:
        UsageError: it is not callable (a string such as ``"print"`` is not).
    """
    if value is not None and not callable(value):
        raise UsageError(f"{where}: {name}= takes a function, got {value!r}")


def check_choice(name: str, value: Any, where: str, choices: tuple[str, ...]) -> None:
    """Refuse a value that is not one of ``choices``.

    Raises:
        UsageError: it is not one of them.
    """
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise UsageError(f"{where}: {name}= takes {allowed}, got {value!r}")


def check_mapping(name: str, value: Any, where: str, *, str_values: bool = False) -> None:
    """Refuse anything but a dict with string keys (and string values when asked), or None.

    Raises:
        UsageError: it is not such a dict.
    """
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise UsageError(f"{where}: {name}= takes a dict with string keys, got {value!r}")
    if str_values and not all(isinstance(v, str) for v in value.values()):
        raise UsageError(f"{where}: {name}= takes a dict of strings, got {value!r}")


def check_timeout(value: Any, where: str) -> None:
    """Refuse a timeout that is not a positive number, an ``httpx.Timeout`` or ``None``.

    Raises:
        UsageError: it is a string, a bool, zero or negative, or another type.
    """
    if value is None or type(value).__name__ == "Timeout":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(
            f"{where}: timeout= takes seconds as a number (or an httpx.Timeout, or None for "
            f"no timeout), got {value!r}"
        )
    if value <= 0:
        raise UsageError(f"{where}: timeout= must be positive, got {value!r}")


def tools_list(tools: Any, where: str) -> Iterable[Any]:
    """``tools=`` as given, once it is known to be a list of tools (not a string)."""
    if type(tools) is list or type(tools) is tuple:  # the usual forms, without the ABC check
        return tools
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Iterable):
        raise UsageError(f"{where}: tools= takes a list of tools, got {tools!r}")
    return tools


def merge_extras(
    defaults: dict[str, Any], extra_body: Any, extra_headers: Any, where: str
) -> dict[str, Any]:
    """Merge call-level ``extra_body``/``extra_headers`` over the model's."""
    check_mapping("extra_body", extra_body, where)
    check_mapping("extra_headers", extra_headers, where, str_values=True)
    merged: dict[str, Any] = {}
    for key, value in (("extra_body", extra_body), ("extra_headers", extra_headers)):
        if value is not None:
            merged[key] = {**defaults.get(key, {}), **value}
    return merged
