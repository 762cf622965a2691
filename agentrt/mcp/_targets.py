"""What to connect to: a target (command or URL) checked and resolved, and the config file.

Everything here is I/O-free except reading the config file: bad input raises
:class:`~agentrt.errors.UsageError` naming what was wrong, before any process starts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import UsageError

__all__ = ["ServerConfig", "Target", "read_config", "resolve_target"]

Transport = Literal["stdio", "http", "sse"]
_TRANSPORTS = ("stdio", "http", "sse")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, repr=False)
class Target:
    """A resolved connection target.

    Attributes:
        transport: ``"stdio"``, ``"http"`` (streamable HTTP) or ``"sse"`` (legacy SSE).
        command: the command line of a stdio server (program first).
        url: the URL of an HTTP or SSE server.
        env: extra environment variables of a stdio server.
        headers: HTTP headers for an HTTP or SSE server.
        cwd: the working directory of a stdio server.
    """

    transport: Transport
    command: tuple[str, ...] = ()
    url: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __repr__(self) -> str:
        # Never the env, headers or a URL's credentials: they often hold secrets.
        return f"Target({self.transport}: {self.describe()})"

    def describe(self) -> str:
        """A short description for messages: the command, or the URL without credentials.

        A URL loses its ``user:password@`` part and its query (tokens often travel there).
        """
        if self.transport == "stdio":
            return shlex.join(self.command)
        url = self.url.split("?", 1)[0].split("#", 1)[0]
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}"


def resolve_target(
    target: str | Sequence[str],
    *,
    transport: str | None = None,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Target:
    """Check a target and decide its transport.

    A string starting with ``http://`` or ``https://`` is a URL: streamable HTTP, or legacy
    SSE when it ends in ``/sse`` or ``transport="sse"``. Any other string is a command line
    (split like a shell does); a list or tuple is the command's arguments as they are.

    Raises:
        UsageError: the target, transport, env or headers are of the wrong kind.
    """
    if transport is not None and transport not in _TRANSPORTS:
        raise UsageError(
            f"transport must be one of {', '.join(map(repr, _TRANSPORTS))} or None, "
            f"got {transport!r}"
        )
    env_map = _str_map(env, "env")
    header_map = _str_map(headers, "headers")
    if isinstance(target, str) and target.strip().lower().startswith(("http://", "https://")):
        url = target.strip()
        kind: Transport = "sse" if url.split("?", 1)[0].rstrip("/").endswith("/sse") else "http"
        if transport == "stdio":
            raise UsageError(f"transport='stdio' needs a command, got the URL {url!r}")
        if transport is not None:
            kind = transport  # type: ignore[assignment]
        if env_map:
            raise UsageError("env= is for stdio servers (a command); an HTTP server has headers=")
        if cwd is not None:
            raise UsageError("cwd= is for stdio servers (a command), not for a URL")
        return Target(kind, url=url, headers=header_map)
    if isinstance(target, str):
        try:
            command = tuple(shlex.split(target))
        except ValueError as exc:
            raise UsageError(f"cannot split the command {target!r}: {exc}") from exc
    elif isinstance(target, Sequence) and not isinstance(target, (bytes, bytearray)):
        command = tuple(target)
        for part in command:
            if not isinstance(part, str):
                raise UsageError(
                    f"a command list holds strings only, got {part!r} in {list(target)!r}"
                )
    else:
        raise UsageError(
            "connect() takes a command (a string or a list of strings) or an http(s):// URL, "
            f"got {target!r}"
        )
    if not command or not command[0]:
        raise UsageError("connect() got an empty command: pass e.g. ['uvx', 'mcp-server-git']")
    if transport not in (None, "stdio"):
        raise UsageError(f"transport={transport!r} needs an http(s):// URL, got a command")
    if header_map:
        raise UsageError("headers= is for HTTP servers (a URL); a stdio server has env=")
    return Target("stdio", command=command, env=env_map, cwd=None if cwd is None else str(cwd))


def _str_map(value: Mapping[str, str] | None, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{what}= must be a mapping of strings to strings, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise UsageError(
                f"{what}= must map strings to strings; {key!r}: {item!r} is not (convert it "
                "with str())"
            )
    return dict(value)


def name_filter(names: Iterable[str] | None, what: str) -> frozenset[str] | None:
    """Check an ``allow=``/``deny=`` argument.

    Raises:
        UsageError: a bare string (which would be read letter by letter) or non-strings.
    """
    if names is None:
        return None
    if isinstance(names, str):
        raise UsageError(
            f"{what}= takes a list of tool names, got the string {names!r}: "
            f"write {what}=[{names!r}]"
        )
    result = frozenset(names)
    for name in result:
        if not isinstance(name, str):
            raise UsageError(f"{what}= takes tool names (strings), got {name!r}")
    return result


@dataclass(frozen=True)
class ServerConfig:
    """One entry of an ``mcpServers`` config file."""

    key: str
    target: Target
    timeout: float | None = None


def read_config(path: str | os.PathLike[str]) -> list[ServerConfig]:
    """Read an ``{"mcpServers": {...}}`` file, expanding ``${VAR}`` from the environment.

    Each server is ``{"command": ..., "args": [...], "env": {...}, "cwd": ...}`` (stdio) or
    ``{"url": ..., "headers": {...}}`` (HTTP; ``"type": "sse"`` or a URL ending in ``/sse``
    for legacy SSE). Entries with ``"disabled": true`` are skipped.

    Raises:
        UsageError: the file is missing, not JSON, not of this shape, or names an unset variable.
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"MCP config file {str(file)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read the MCP config file {str(file)!r}: {exc}") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise UsageError(
            f'{str(file)!r} must be a JSON object with an "mcpServers" object, mapping each '
            'server\'s name to {"command": ..., "args": [...]} or {"url": ...}'
        )
    configs = []
    for key, entry in servers.items():
        if not isinstance(entry, dict):
            raise UsageError(f"{str(file)!r}: server {key!r} must be an object, got {entry!r}")
        if entry.get("disabled") is True:
            continue
        configs.append(_server(file, key, _expand(entry, f"{file}: server {key!r}")))
    return configs


def _server(file: Path, key: str, entry: dict[str, Any]) -> ServerConfig:
    where = f"{str(file)!r}: server {key!r}"
    kind = entry.get("type", entry.get("transport"))
    if kind in ("streamable-http", "streamableHttp", "http"):
        kind = "http"
    timeout = entry.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise UsageError(f'{where}: "timeout" must be a positive number of seconds')
    try:
        if "url" in entry:
            target = resolve_target(entry["url"], transport=kind, headers=entry.get("headers"))
        elif "command" in entry:
            args = entry.get("args", [])
            if not isinstance(args, list):
                raise UsageError(f'"args" must be a list of strings, got {args!r}')
            command = entry["command"]
            parts = [command, *args] if isinstance(command, str) else command
            target = resolve_target(
                parts, transport=kind, env=entry.get("env"), cwd=entry.get("cwd")
            )
        else:
            raise UsageError('give "command" (a stdio server) or "url" (an HTTP server)')
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc
    return ServerConfig(key, target, timeout)


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise UsageError(f"{where} uses ${{{name}}}, which is not set in the environment")
            return os.environ[name]

        return _VAR.sub(variable, value)
    if isinstance(value, list):
        return [_expand(item, where) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, where) for key, item in value.items()}
    return value
