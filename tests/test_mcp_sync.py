"""agentrt.mcp without an event loop: the sync facade, names, targets and config files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp_helpers import STDIO, http_server, scripted

import agentrt
from agentrt import mcp
from agentrt.errors import MCPConnectionError, MCPToolError, UsageError
from agentrt.testing import call


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with http_server() as address:
        yield address


def test_connect_sync_with_get_model(url: str) -> None:
    model, _ = scripted([call("demo__add", a=20, b=22)])
    with mcp.connect_sync(url, prefix="demo") as box:
        assert agentrt.get_model(model).chain("sum", tools=[box]).text() == "42"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_connect_sync_toolbox_works_in_an_async_chain_on_any_loop(url: str, backend: str) -> None:
    async def run(box: mcp.MCPToolbox) -> str:
        model, _ = scripted([call("echo", text="across loops")])
        return await model.chain("x", tools=[box]).text()

    with mcp.connect_sync(url) as box:
        assert anyio.run(run, box, backend=backend) == "across loops"


def test_load_config_expands_variables_and_prefixes_each_server(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_URL", url)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "web": {"url": "${DEMO_URL}", "headers": {"X-Test": "1"}},
                    "local": {"command": STDIO[0], "args": STDIO[1:], "timeout": 5},
                    "off": {"command": "never-started", "disabled": True},
                }
            }
        )
    )
    with mcp.load_config_sync(config) as boxes:
        assert [b.prefix for b in boxes] == ["web", "local"]
        assert boxes[1].timeout == 5
        model, _ = scripted([call("web__echo", text="a"), call("local__echo", text="b")])
        assert agentrt.get_model(model).chain("x", tools=boxes).text() == "a|b"


def test_config_file_mistakes_are_usage_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(UsageError, match="does not exist"), mcp.load_config_sync(missing):
        pass  # pragma: no cover
    bad = tmp_path / "bad.json"
    bad.write_text('{"servers": {}}')
    with pytest.raises(UsageError, match="mcpServers"), mcp.load_config_sync(bad):
        pass  # pragma: no cover
    unset = tmp_path / "unset.json"
    unset.write_text('{"mcpServers": {"x": {"url": "${AGENTRT_TEST_UNSET_VAR}"}}}')
    with pytest.raises(UsageError, match="AGENTRT_TEST_UNSET_VAR"), mcp.load_config_sync(unset):
        pass  # pragma: no cover
    neither = tmp_path / "neither.json"
    neither.write_text('{"mcpServers": {"x": {"args": []}}}')
    with pytest.raises(UsageError, match="server 'x'"), mcp.load_config_sync(neither):
        pass  # pragma: no cover


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 42}, "takes a command"),
        ({"target": []}, "empty command"),
        ({"target": ["python", 3]}, "strings only"),
        ({"target": "http://x/mcp", "env": {"A": "1"}}, "env= is for stdio"),
        ({"target": "server", "headers": {"A": "1"}}, "headers= is for HTTP"),
        ({"target": "server", "allow": "echo"}, r"allow=\['echo'\]"),
        ({"target": "server", "env": {"A": 1}}, "strings to strings"),
        ({"target": "server", "timeout": 0}, "positive number"),
        ({"target": "server", "connect_timeout": None}, "connect_timeout"),
        ({"target": "server", "transport": "websocket"}, "transport must be"),
        ({"target": "server", "transport": "http"}, "needs an http"),
        ({"target": "server", "prefix": ""}, "prefix="),
    ],
)
def test_wrong_arguments_are_usage_errors_before_anything_starts(
    kwargs: dict[str, object], message: str
) -> None:
    target = kwargs.pop("target")
    with pytest.raises(UsageError, match=message), mcp.connect_sync(target, **kwargs):  # type: ignore[arg-type]
        pass  # pragma: no cover


def test_long_names_are_cut_to_64_characters_and_stay_distinct() -> None:
    first = mcp.model_name("t" * 80 + "a", "server")
    second = mcp.model_name("t" * 80 + "b", "server")
    assert len(first) == len(second) == 64
    assert first != second
    assert mcp.model_name("read-file", "fs") == "fs__read-file"
    assert mcp.model_name("9lives", None) == "_9lives"


def test_sse_urls_pick_the_legacy_transport() -> None:
    from agentrt.mcp._targets import resolve_target

    assert resolve_target("https://host/sse").transport == "sse"
    assert resolve_target("https://host/mcp").transport == "http"
    assert resolve_target("https://host/x", transport="sse").transport == "sse"
    assert resolve_target("uvx mcp-server-git --repo 'a b'").command == (
        "uvx",
        "mcp-server-git",
        "--repo",
        "a b",
    )


def test_mcp_errors_pickle_with_their_attributes() -> None:
    import pickle

    error = MCPToolError("boom", server="git", code=-32000)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.server, copy.code) == ("boom", "git", -32000)
    lost = pickle.loads(pickle.dumps(MCPConnectionError("gone", server="fs")))
    assert (str(lost), lost.server) == ("gone", "fs")


def test_credentials_in_a_target_stay_out_of_messages_and_reprs() -> None:
    from agentrt.mcp._targets import resolve_target

    target = resolve_target(
        "https://user:s3cret@host.example/mcp?token=t0ken", headers={"Authorization": "Bearer k3y"}
    )
    assert target.describe() == "https://host.example/mcp"
    shown = repr(target)
    assert all(secret not in shown for secret in ("s3cret", "k3y", "t0ken")), shown
    stdio = resolve_target(["server"], env={"API_KEY": "k3y"})
    assert "k3y" not in repr(stdio)


def test_the_benchmark_still_runs(url: str) -> None:
    # Figures come from `python -m benchmarks.mcp_bench`; this only keeps it from rotting.
    from benchmarks.mcp_bench import measure_chain, measure_sdk, measure_toolbox

    for measure in (measure_sdk, measure_toolbox, measure_chain):
        wall, cpu = anyio.run(measure, url, 4, 2)
        assert wall > 0 and cpu >= 0
