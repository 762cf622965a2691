from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import agentrt
from agentrt.errors import ToolError, UnknownToolError
from agentrt.toolbox import (
    BUNDLED_TOOLS,
    CalculatorError,
    FileTools,
    HostNotAllowedError,
    HTTPTools,
    PathEscapeError,
    bundled_tool,
    bundled_tools,
    calculator,
    evaluate,
    now,
)

# --- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("-3 // 2", -2),
        ("7 % 3", 1),
        ("7 / 2", 3.5),
        ("-(-4)", 4),
        ("+5", 5),
        ("2 ** -1", 0.5),
        ("1.5e3 + 0.5", 1500.5),
        ("10 ** 1000 // 10 ** 999", 10),
    ],
)
def test_calculator_computes_arithmetic(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected
    assert calculator(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("x + 1", "names such as 'x' are not allowed"),
        ("__import__('os').system('echo hi')", "function calls are not allowed"),
        ("(1).real", "attribute accesses are not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("1 < 2", "comparisons are not allowed"),
        ("1 and 2", "boolean operators are not allowed"),
        ("[1, 2][0]", "subscripts are not allowed"),
        ("(lambda: 1)()", "function calls are not allowed"),
        ("'a' * 3", "'a' is not a number"),
        ("True + 1", "True is not a number"),
        ("1j * 2", "1j is not a number"),
        ("1 << 3", "the operator '<<' is not allowed"),
        ("~1", "the operator '~' is not allowed"),
        ("1 +", "cannot parse"),
        ("import os", "cannot parse"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("9 ** 9 ** 9", "is too large"),
        ("2 ** 100000", "is too large"),
        ("(10 ** 1000) * (10 ** 1000)", "too large"),
        ("1e308 * 10", "too large"),
        ("2.5 ** 100000", "too large"),
        ("(-8) ** 0.5", "complex"),
        ("1" * 2000, "the limit is 1000"),
    ],
)
def test_calculator_rejects_anything_but_bounded_arithmetic(expression: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(CalculatorError, match=re.escape(message)) as info:
        evaluate(expression)
    assert isinstance(info.value, ToolError)
    assert time.perf_counter() - started < 1  # refused before computing, never hangs


@pytest.mark.anyio
async def test_calculator_error_goes_back_to_the_model() -> None:
    model = agentrt.get_async_model("offline")
    chain = model.chain('compute {"expression": "os.getcwd()"}', tools=[calculator])
    text = await chain.text()
    (result,) = chain.tool_results
    assert result.is_error
    assert "function calls are not allowed" in result.content
    assert "failed" in text


# --- now ----------------------------------------------------------------------------------


def test_now_in_a_time_zone() -> None:
    result = now("Asia/Kolkata")
    assert result["timezone"] == "Asia/Kolkata"
    assert result["utc_offset"] == "+05:30"
    assert result["datetime"].endswith("+05:30")
    assert now()["timezone"] == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", ""])
def test_now_refuses_unknown_zones(zone: str) -> None:
    with pytest.raises(ToolError, match="unknown time zone"):
        now(zone)


# --- files --------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/root with files, and tmp/secret.txt outside it."""
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.txt").write_text("hello notes", encoding="utf-8")
    (root / "big.txt").write_text("x" * 5000, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    return root


def _symlink(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target, target_is_directory=target.is_dir())
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")


def test_read_file_and_list_dir_inside_the_root(tree: Path) -> None:
    files = FileTools(tree)
    assert files.read_file("docs/notes.txt")["content"] == "hello notes"
    assert files.read_file("docs/../docs/notes.txt")["path"] == "docs/notes.txt"
    # An absolute path is fine while it stays inside the root.
    assert files.read_file(str(tree / "docs" / "notes.txt"))["content"] == "hello notes"
    listing = files.list_dir()
    assert listing["path"] == "."
    assert {e["name"]: e["type"] for e in listing["entries"]} == {
        "big.txt": "file",
        "docs": "directory",
    }
    assert files.list_dir("docs")["entries"] == [{"name": "notes.txt", "type": "file", "size": 11}]


def test_read_file_truncates_long_files(tree: Path) -> None:
    result = FileTools(tree, max_bytes=100).read_file("big.txt")
    assert result["truncated"] is True
    assert result["size"] == 5000
    assert result["content"] == "x" * 100


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../secret.txt", "leaves the allowed root directory"),
        ("docs/../../secret.txt", "leaves the allowed root directory"),
        ("..", "leaves the allowed root directory"),
    ],
)
def test_dot_dot_escapes_are_refused(tree: Path, path: str, message: str) -> None:
    files = FileTools(tree)
    with pytest.raises(PathEscapeError, match=message):
        files.read_file(path)
    with pytest.raises(PathEscapeError, match=message):
        files.list_dir(path)


def test_absolute_paths_outside_the_root_are_refused(tree: Path) -> None:
    files = FileTools(tree)
    outside = str(tree.parent / "secret.txt")
    with pytest.raises(PathEscapeError, match=r"absolute path .* is outside the allowed root"):
        files.read_file(outside)
    with pytest.raises(PathEscapeError, match="outside the allowed root"):
        files.list_dir(str(tree.parent))


def test_symlinks_escaping_the_root_are_refused(tree: Path) -> None:
    _symlink(tree / "link.txt", tree.parent / "secret.txt")
    _symlink(tree / "outdir", tree.parent)
    _symlink(tree / "inside.txt", tree / "docs" / "notes.txt")
    files = FileTools(tree)
    with pytest.raises(PathEscapeError, match="symbolic link that points outside"):
        files.read_file("link.txt")
    with pytest.raises(PathEscapeError, match="symbolic link that points outside"):
        files.read_file("outdir/secret.txt")
    with pytest.raises(PathEscapeError, match="symbolic link that points outside"):
        files.list_dir("outdir")
    # A link that stays inside the root is followed.
    assert files.read_file("inside.txt")["content"] == "hello notes"
    kinds = {e["name"]: e["type"] for e in files.list_dir()["entries"]}
    assert kinds["link.txt"] == "symlink"


def test_file_errors_are_clear(tree: Path) -> None:
    files = FileTools(tree)
    with pytest.raises(ToolError, match=r"there is no file 'missing.txt'"):
        files.read_file("missing.txt")
    with pytest.raises(ToolError, match="is a directory: call list_dir"):
        files.read_file("docs")
    with pytest.raises(ToolError, match="is a file, not a directory"):
        files.list_dir("big.txt")
    with pytest.raises(PathEscapeError, match="NUL"):
        files.read_file("docs\x00/notes.txt")
    with pytest.raises(NotADirectoryError):
        FileTools(tree / "big.txt")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_read_file_refuses_special_files(tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        FileTools(tree).read_file("pipe")


@pytest.mark.anyio
async def test_escape_attempt_in_a_chain_becomes_an_error_result(tree: Path) -> None:
    model = agentrt.get_async_model("offline")
    tools = FileTools(tree).tools()
    chain = model.chain('{"path": "../secret.txt"}', tools=tools)
    text = await chain.text()
    assert "top secret" not in text
    results = {r.name: r for r in chain.tool_results}
    assert results["read_file"].is_error
    assert "leaves the allowed root directory" in results["read_file"].content


# --- http_get -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    stop: threading.Event

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/hello":
            self._send(200, b"hello world", "text/plain; charset=utf-8")
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.end_headers()
            try:
                for _ in range(1000):  # up to 64 MB, far beyond any limit under test
                    self.wfile.write(b"a" * 65536)
            except OSError:
                pass  # the client stopped reading
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            try:
                while not self.stop.wait(0.05):  # a drip that never ends until teardown
                    self.wfile.write(b".")
                    self.wfile.flush()
            except OSError:
                pass
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("location", self.path.split("=", 1)[1])
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"stop": stop})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = False  # server_close() joins every handler thread
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("allowed", "url", "message"),
    [
        ([], "http://example.com/", "no host is allowed"),
        (["example.com"], "http://evil.example.org/", "may not fetch 'evil.example.org'"),
        (["example.com"], "http://example.com.evil.org/", "may not fetch"),
        (["example.com"], "http://user@evil.org/", "may not fetch 'evil.org'"),
        (["*.example.com"], "http://example.com/", "may not fetch 'example.com'"),
        (["example.com:8080"], "http://example.com/", "port 80"),
    ],
)
def test_disallowed_hosts_are_refused(allowed: list[str], url: str, message: str) -> None:
    tools = HTTPTools(allowed)
    with pytest.raises(HostNotAllowedError, match=message):
        tools.http_get(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "not a url"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ToolError, match="only http:// and https://"):
        HTTPTools(["*"]).http_get(url)


def test_allowlist_forms() -> None:
    tools = HTTPTools(["Example.COM", "*.api.test", "127.0.0.1:8080", "[::1]:9000"])
    assert tools.allowed_hosts == ["example.com", "*.api.test", "127.0.0.1:8080", "[::1]:9000"]
    assert str(tools._check("https://a.b.api.test/x")) == "https://a.b.api.test/x"
    assert tools._check("http://127.0.0.1:8080/").port == 8080
    assert tools._check("http://[::1]:9000/").host == "::1"
    assert HTTPTools(["*"])._check("https://anything.example/").host == "anything.example"


@pytest.mark.anyio
async def test_http_get_async_against_a_local_server(web: str) -> None:
    (http_get,) = HTTPTools(["127.0.0.1"]).tools()
    impl, is_async = http_get.implementation(prefer_sync=False)
    assert is_async
    result = await impl(url=f"{web}/hello")
    assert result["status"] == 200
    assert result["text"] == "hello world"
    assert result["truncated"] is False
    assert result["content_type"].startswith("text/plain")
    missing = await impl(url=f"{web}/missing")
    assert missing["status"] == 404


def test_http_get_sync_against_a_local_server(web: str) -> None:
    tools = HTTPTools(["127.0.0.1"])
    result = tools.http_get(f"{web}/hello")
    assert (result["status"], result["text"]) == (200, "hello world")


@pytest.mark.anyio
async def test_http_get_size_limit(web: str) -> None:
    (http_get,) = HTTPTools(["127.0.0.1"], max_bytes=100_000).tools()
    impl, _ = http_get.implementation(prefer_sync=False)
    result = await impl(url=f"{web}/big")
    assert result["truncated"] is True
    assert len(result["text"]) == 100_000
    sync_result = http_get.fn(url=f"{web}/big")
    assert sync_result["truncated"] is True
    assert len(sync_result["text"]) == 100_000


@pytest.mark.anyio
async def test_http_get_time_limit(web: str) -> None:
    (http_get,) = HTTPTools(["127.0.0.1"], timeout=0.3).tools()
    impl, _ = http_get.implementation(prefer_sync=False)
    started = time.perf_counter()
    with pytest.raises(ToolError, match=r"did not finish within 0.3 s"):
        await impl(url=f"{web}/slow")
    assert time.perf_counter() - started < 2
    started = time.perf_counter()
    with pytest.raises(ToolError, match=r"did not finish within 0.3 s"):
        http_get.fn(url=f"{web}/slow")
    assert time.perf_counter() - started < 2


@pytest.mark.anyio
async def test_redirects_are_checked_against_the_allowlist(web: str) -> None:
    (http_get,) = HTTPTools(["127.0.0.1"]).tools()
    impl, _ = http_get.implementation(prefer_sync=False)
    followed = await impl(url=f"{web}/redirect?to=/hello")
    assert (followed["url"], followed["text"]) == (f"{web}/hello", "hello world")
    with pytest.raises(HostNotAllowedError, match=r"may not fetch 'evil.example'"):
        await impl(url=f"{web}/redirect?to=http://evil.example/")
    with pytest.raises(HostNotAllowedError):
        http_get.fn(url=f"{web}/redirect?to=http://evil.example/")


@pytest.mark.anyio
async def test_http_get_in_a_chain(web: str) -> None:
    model = agentrt.get_async_model("offline")
    prompt = json.dumps({"url": f"{web}/hello"})
    chain = model.chain(prompt, tools=[HTTPTools(["127.0.0.1"])])
    await chain.text()
    (result,) = chain.tool_results
    assert not result.is_error
    assert json.loads(result.content)["text"] == "hello world"


# --- registry -----------------------------------------------------------------------------


def test_registry_builds_every_bundled_tool(tmp_path: Path) -> None:
    tools = bundled_tools(root=tmp_path, allowed_hosts=["example.com"])
    assert [t.name for t in tools] == list(BUNDLED_TOOLS)
    assert [t.name for t in tools] == ["calculator", "now", "http_get", "read_file", "list_dir"]
    assert all(t.parameters["type"] == "object" for t in tools)
    with pytest.raises(UnknownToolError, match=r"no bundled tool named 'nope'.*calculator"):
        bundled_tool("nope")


def test_registry_settings_reach_the_tools(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A", encoding="utf-8")
    read_file, http_get = bundled_tools(["read_file", "http_get"], root=tmp_path, allowed_hosts=[])
    assert read_file(path="a.txt")["content"] == "A"
    with pytest.raises(HostNotAllowedError, match="no host is allowed"):
        http_get(url="http://example.com/")


if sys.platform == "win32":  # pragma: no cover - symlink/fifo behaviour differs
    pytestmark = pytest.mark.filterwarnings("default")
