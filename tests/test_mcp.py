"""agentrt.mcp against real MCP servers (tools/mcp_servers/demo.py, written on the mcp SDK).

Most scenarios run over streamable HTTP against one server per module (a connection costs
milliseconds); what is about processes (the child's end, crashes, a server that never
answers) runs over stdio.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_helpers import SILENT, STDIO, eventually, http_server, scripted

import agentrt
from agentrt import mcp
from agentrt.callbacks import CallbackHandler
from agentrt.errors import MCPConnectionError, MCPToolError, UsageError
from agentrt.messages import ToolCall, ToolResult
from agentrt.testing import call

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with http_server() as address:
        yield address


@pytest.fixture(scope="module")
def sse_url() -> Iterator[str]:
    with http_server(sse=True) as address:
        yield address


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- list and call ---------------------------------------------------------------------------


async def test_stdio_list_call_and_the_child_is_gone_after_close() -> None:
    # The event loop's own child watcher (uvloop opens its pipe at the first subprocess and
    # keeps it for the loop's life) belongs in the baseline: it is not the connection's.
    await anyio.run_process([sys.executable, "-c", "pass"])
    fds = _fds()
    async with mcp.connect(STDIO, prefix="demo") as box:
        names = [t.name for t in box.tools()]
        assert "demo__add" in names and "demo__echo" in names
        assert box["demo__add"].parameters["properties"] == {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
        }
        model, _ = scripted([call("demo__add", a=2, b=40), call("demo__pid")])
        chain = model.chain("add", tools=[box])
        text = await chain.text()
        total, pid = text.split("|")
        assert total == "42"
        assert int(pid) != os.getpid()
        os.kill(int(pid), 0)  # alive while connected
    # Gone, and reaped (a zombie would still accept signal 0).
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert _fds() <= fds, "a pipe or socket of the connection was left open"


async def test_http_list_and_call_keeps_the_wire_name(url: str) -> None:
    async with mcp.connect(url, prefix="web.demo!") as box:
        tool = box["echo"]
        assert tool.name == "web_demo___echo"  # sanitised for providers
        assert tool.wire_name == "echo"
        model, _ = scripted([call(tool.name, text="héllo")])
        assert await model.chain("echo", tools=[box]).text() == "héllo"


async def test_legacy_sse_transport(sse_url: str) -> None:
    async with mcp.connect(sse_url, prefix="old", headers={"X-Agentrt-Test": "sse"}) as box:
        assert box._connection.target.transport == "sse"
        model, _ = scripted(
            [call("old__add", a=1, b=1), call("old__header", name="x-agentrt-test")]
        )
        assert await model.chain("sum", tools=[box]).text() == "2|sse"


async def test_headers_reach_an_http_server(url: str) -> None:
    async with mcp.connect(url, headers={"X-Agentrt-Test": "yes"}) as box:
        assert (await box["header"].fn(name="x-agentrt-test")).content == "yes"


async def test_the_sqlite_log_records_mcp_calls_under_the_server_prefix(
    url: str, tmp_path: Path
) -> None:
    from agentrt.logs import SQLiteLogger, recent_chains

    async with mcp.connect(url, prefix="docs") as box, SQLiteLogger(tmp_path / "l.db") as log:
        model, _ = scripted([call("docs__echo", text="logged"), call("docs__fail")])
        await model.chain("log it", tools=[box], callbacks=[log]).text()
    (chain,) = recent_chains(tmp_path / "l.db")
    calls = chain["turns"][0]["tool_calls"]
    assert [(c["name"], c["result"], c["error"]) for c in calls][0] == (
        "docs__echo",
        "logged",
        None,
    )
    assert calls[1]["name"] == "docs__fail" and "it broke" in calls[1]["error"]
    assert "docs__echo" in chain["tools"]


async def test_parallel_calls_in_one_turn_run_at_once(url: str) -> None:
    async with mcp.connect(url) as box:
        model, _ = scripted([call("sleep", seconds=0.6) for _ in range(4)])
        started = time.perf_counter()
        text = await model.chain("sleep", tools=[box]).text()
        elapsed = time.perf_counter() - started
    assert text == "|".join(["slept"] * 4)
    assert elapsed < 2.0, f"four 0.6 s calls took {elapsed:.2f} s: they ran one by one"


async def test_calls_after_parallel_ones_still_run_at_once(url: str) -> None:
    # Calls run in their callers' tasks, as many at once as the turn has, however many
    # came before.
    async with mcp.connect(url) as box:
        model, _ = scripted(
            [call("sleep", seconds=0.6) for _ in range(2)],
            [call("echo", text="one")],
            [call("sleep", seconds=0.6) for _ in range(4)],
            [call("echo", text="two")],
        )
        chain = model.chain("sleep", tools=[box])
        await chain.text()
    results = chain.tool_results
    assert [r.content for r in results] == ["slept"] * 2 + ["one"] + ["slept"] * 4 + ["two"]
    wider = results[3:7]
    assert max(r.duration or 0.0 for r in wider) < 1.1, (
        f"four 0.6 s calls took up to {max(r.duration or 0.0 for r in wider):.2f} s each: "
        "some waited for a busy worker"
    )


async def test_callbacks_see_mcp_calls_as_tool_calls(url: str) -> None:
    seen: list[tuple[str, str, bool]] = []

    class Recorder(CallbackHandler):
        def on_tool_start(self, response: Any, call: ToolCall) -> None:
            seen.append(("start", call.name, False))

        def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> None:
            seen.append(("end", call.name, result.is_error))

        def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> None:
            seen.append(("error", call.name, result.is_error))

    async with mcp.connect(url, prefix="d") as box:
        model, _ = scripted([call("d__echo", text="x")], [call("d__fail")])
        await model.chain("go", tools=[box], callbacks=[Recorder()]).text()
    assert seen == [
        ("start", "d__echo", False),
        ("end", "d__echo", False),
        ("start", "d__fail", False),
        ("error", "d__fail", True),
    ]


# --- names -----------------------------------------------------------------------------------


async def test_colliding_names_are_refused_naming_both_servers_and_prefixes_fix_them(
    url: str, sse_url: str
) -> None:
    async with mcp.connect(url) as one, mcp.connect(sse_url) as two:
        model, _ = scripted("done")
        with pytest.raises(UsageError, match="two tools are named 'echo'") as refused:
            model.chain("x", tools=[one, two])
        assert url in str(refused.value) and sse_url in str(refused.value)
    async with mcp.connect(url, prefix="a") as one, mcp.connect(sse_url, prefix="b") as two:
        model, offered = scripted([call("a__echo", text="1"), call("b__echo", text="2")])
        assert await model.chain("x", tools=[one, two]).text() == "1|2"
        assert {"a__echo", "b__echo"} <= set(offered[0])


async def test_allow_and_deny_filter_the_tools(url: str) -> None:
    async with mcp.connect(url, allow=["echo", "add"], deny=["add"]) as box:
        assert [t.name for t in box.tools()] == ["echo"]
    with pytest.raises(UsageError, match="does not have: nope"):
        async with mcp.connect(url, allow=["echo", "nope"]):
            pass


# --- results ---------------------------------------------------------------------------------


async def test_results_is_error_json_rpc_error_structured_and_images(url: str) -> None:
    async with mcp.connect(url) as box:
        model, _ = scripted(
            [
                call("fail"),
                call("rpc_error"),
                call("structured_only", n=7),
                call("add", a=1, b=2),
                call("image"),
                call("add", a="one", b=2),
            ]
        )
        chain = model.chain("results", tools=[box])
        await chain.text()
    results = chain.tool_results
    fail, rpc, structured, added, image, invalid = results
    assert fail.is_error and fail.content == "Error: it broke"
    assert isinstance(fail.error, MCPToolError) and fail.error.result.is_error
    assert rpc.is_error and "-32042" in rpc.content and "the custom failure" in rpc.content
    assert isinstance(rpc.error, MCPToolError) and rpc.error.code == -32042
    assert not structured.is_error and structured.content == '{"n":7,"ok":true}'
    assert structured.structured == {"n": 7, "ok": True}  # kept for the application
    assert added.content == "3"  # text wins over structuredContent for the model
    assert added.structured == {"sum": 3}
    assert image.content.startswith("a pixel\n[image image/png, ")
    assert image.media and image.media[0]["mimeType"] == "image/png"
    assert fail.structured is None and fail.error_type == "MCPToolError"
    assert invalid.is_error and "invalid arguments" in invalid.content
    assert '"integer"' in invalid.content  # the model is shown the schema


async def test_to_output_keeps_structured_content_and_media(url: str) -> None:
    async with mcp.connect(url) as box:
        # The SDK's own result, as the toolbox receives it from its connection.
        added = await box._connection.call("add", {"a": 2, "b": 3}, 5)
        image = await box._connection.call("image", {}, 5)
    out = mcp.to_output(added)
    assert (out.text, out.structured) == ("5", {"sum": 5})
    pictured = mcp.to_output(image)
    assert pictured.media[0]["mimeType"] == "image/png"
    assert pictured.media[0]["data"]


async def test_a_10_mb_result_is_capped_like_any_tool(url: str) -> None:
    async with mcp.connect(url) as box:
        model, _ = scripted([call("big", n=10_000_000)])
        chain = model.chain("big", tools=[box], max_tool_output=50_000)
        await chain.text()
    (result,) = chain.tool_results
    assert result.content.startswith("x" * 50_000 + "\n[truncated by agentrt")
    assert "10000000 characters" in result.content


# --- timeouts and cancellation ---------------------------------------------------------------


async def _cancelled_on_server(box: mcp.MCPToolbox, tag: str) -> bool:
    return tag in json.loads((await box["cancelled"].fn()).content)


async def test_a_timed_out_call_is_cancelled_on_the_server(url: str) -> None:
    tag = uuid.uuid4().hex  # this call's own, whichever test ran before on the server
    async with mcp.connect(url, timeout=0.3) as box:
        model, _ = scripted([call("sleep", seconds=30, tag=tag)], [call("echo", text="still here")])
        started = time.perf_counter()
        chain = model.chain("slow", tools=[box])
        await chain.text()
        assert time.perf_counter() - started < 10
        timed_out, after = chain.tool_results
        assert timed_out.is_error and "timeout of 0.3 s" in timed_out.content
        assert after.content == "still here"  # the connection stays usable
        await eventually(lambda: _cancelled_on_server(box, tag))


async def _sleeping(box: mcp.MCPToolbox, tag: str) -> bool:
    return tag in json.loads((await box["sleeping"].fn()).content)


async def test_a_tools_own_timeout_wins(url: str) -> None:
    async with mcp.connect(url, timeout=30) as box:
        box["sleep"].timeout = 0.2
        model, _ = scripted([call("sleep", seconds=30)])
        chain = model.chain("slow", tools=[box])
        with anyio.fail_after(10):
            await chain.text()
        assert chain.tool_results[0].is_error
        assert "timeout of 0.2 s" in chain.tool_results[0].content


async def test_cancelling_a_chain_mid_call_leaves_the_connection_usable(url: str) -> None:
    started = anyio.Event()

    class Started(CallbackHandler):
        def on_tool_start(self, response: Any, call: ToolCall) -> None:
            started.set()

    async with mcp.connect(url) as box:
        tag = uuid.uuid4().hex
        model, _ = scripted([call("sleep", seconds=30, tag=tag)])
        chain = model.chain("slow", tools=[box], callbacks=[Started()])
        async with anyio.create_task_group() as tg:
            tg.start_soon(chain.text)
            await started.wait()
            await eventually(lambda: _sleeping(box, tag))  # the call reached the server
            tg.cancel_scope.cancel()
        assert chain.status == "cancelled"
        await eventually(lambda: _cancelled_on_server(box, tag))
        assert (await box["echo"].fn(text="ok")).content == "ok"


async def test_closing_the_toolbox_ends_the_calls_in_flight_with_an_error(url: str) -> None:
    # Calls run in their callers' tasks: closing must still end each of them, promptly, with
    # an error saying the connection closed (not leave them waiting, not a crash report).
    errors: list[BaseException] = []

    async def slow(box: mcp.MCPToolbox, tag: str) -> None:
        try:
            await box["sleep"].fn(seconds=30, tag=tag)
        except MCPConnectionError as exc:
            errors.append(exc)

    tags = [uuid.uuid4().hex for _ in range(2)]
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        async with mcp.connect(url) as box:
            for tag in tags:
                tg.start_soon(slow, box, tag)
            for tag in tags:
                await eventually(lambda tag=tag: _sleeping(box, tag))  # type: ignore[misc]
    assert len(errors) == 2, errors
    assert all("closed before the call finished" in str(e) for e in errors)
    assert time.perf_counter() - started < 10, "close waited for the 30 s calls"


# --- processes -------------------------------------------------------------------------------


async def test_a_server_that_exits_mid_call_gives_an_error_then_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with mcp.connect(STDIO) as box:
        first = int((await box["pid"].fn()).content)
        model, _ = scripted([call("crash")], [call("pid")])
        chain = model.chain("crash", tools=[box])
        await chain.text()
        crashed, pid = chain.tool_results
        assert crashed.is_error and "may have crashed" in crashed.content
        assert int(pid.content) != first  # a new server process answered
    assert any("reconnecting" in r.getMessage() for r in caplog.records)


async def test_an_http_server_gone_mid_call_gives_an_error_and_one_bounded_reconnect() -> None:
    with http_server() as own_url:  # this test kills its server
        async with mcp.connect(own_url, connect_timeout=2) as box:
            model, _ = scripted([call("crash")], [call("echo", text="again")], [call("pid")])
            chain = model.chain("crash", tools=[box])
            started = time.perf_counter()
            await chain.text()
            crashed, again, after = chain.tool_results
            assert crashed.is_error and "may have crashed" in crashed.content
            # The one reconnect found nothing listening; later calls fail at once.
            assert again.is_error and "reconnecting failed" in again.content
            assert after.is_error and "reconnecting failed" in after.content
            assert time.perf_counter() - started < 10


async def test_a_server_that_never_answers_is_refused_and_ended_in_bounded_time(
    tmp_path: Path,
) -> None:
    # It never answers initialize, and keeps running after its input ends: connect() gives
    # up after connect_timeout, and the child is terminated (its group, after the SDK's
    # grace period) and reaped before connect() returns.
    pidfile = tmp_path / "pid"
    started = time.perf_counter()
    with pytest.raises(MCPConnectionError, match=r"connect_timeout=0\.5"):
        async with mcp.connect(
            [sys.executable, SILENT, str(pidfile), "--linger"], connect_timeout=0.5
        ):
            pass  # pragma: no cover
    assert time.perf_counter() - started < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_command_that_does_not_exist_is_a_connection_error() -> None:
    with pytest.raises(MCPConnectionError, match="no-such-mcp-server"):
        async with mcp.connect("no-such-mcp-server --flag"):
            pass  # pragma: no cover


async def test_nothing_listening_is_a_connection_error() -> None:
    with pytest.raises(MCPConnectionError, match=r"127\.0\.0\.1:9/mcp"):
        async with mcp.connect("http://127.0.0.1:9/mcp", connect_timeout=5):
            pass  # pragma: no cover


async def test_an_error_in_the_block_reaches_the_caller_unwrapped(url: str) -> None:
    with pytest.raises(KeyError, match="nope"):
        async with mcp.connect(url) as box:
            box["nope"]


# --- list changes ----------------------------------------------------------------------------


async def _list_change_between_turns(target: str | list[str], protocol: str) -> None:
    async with mcp.connect(target) as box:
        assert (box.protocol_version >= "2026") == (protocol == "2026-07-28")
        version = box.tools_version

        async def after_call(tool: object, call: object, result: object) -> None:
            # The turn's calls are done: wait (bounded) until the server's change arrived,
            # so the next turn is certain to start after it.
            await eventually(lambda: box.tools_version != version)

        model, offered = scripted([call("add_tool")], [call("extra")])
        chain = model.chain("change", tools=[box], after_call=after_call)
        await chain.text()
        added, extra = chain.tool_results
        assert not added.is_error
        assert not extra.is_error and extra.content == "extra works"
        # The first turn had the old list; the list was taken anew between turns, never
        # mid-turn, so the second turn offered (and could call) the new tool.
        assert "extra" not in offered[0] and "extra" in offered[1]
        model, offered = scripted([call("extra")])
        assert await model.chain("again", tools=[box]).text() == "extra works"
        assert "extra" in offered[0]


async def test_a_list_change_announced_on_listen_shows_in_the_next_turn() -> None:
    with http_server() as own_url:  # this test changes the server's tool list
        await _list_change_between_turns(own_url, "2026-07-28")


async def test_a_list_changed_notification_from_a_legacy_server_shows_in_the_next_turn() -> None:
    await _list_change_between_turns([*STDIO, "--legacy"], "legacy")


# --- the sync facade -------------------------------------------------------------------------


async def test_connect_sync_inside_an_event_loop_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="running"), mcp.connect_sync(url):
        pass  # pragma: no cover


async def test_an_async_toolbox_in_a_sync_chain_says_what_to_do(url: str) -> None:
    async with mcp.connect(url) as box:
        model, _ = scripted([call("echo", text="x")])
        chain = agentrt.get_model(model).chain("x", tools=[box])
        await anyio.to_thread.run_sync(chain.text)
    assert "connect_sync" in chain.tool_results[0].content
