"""Local batches: ``agentrt.run_batch`` / ``run_batch_sync`` on the offline model and over
real loopback HTTP to ``tools/fakeserver`` with injected failures."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import agentrt
from agentrt import BatchResult, CancelChain, RateLimit, UsageError, run_batch, run_batch_sync
from agentrt.batch import BatchProgress
from agentrt.batch._pace import Pacer, PacingHandler
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

_ITEM = re.compile(r"item (\d+)")

#: Every 33rd item fails (3%), cycling through these kinds of failure.
FAULTS: list[tuple[str, Fault]] = [
    ("BadRequestError", Fault(status=400, message="bad prompt")),
    ("ServerError", Fault(status=500, message="boom")),
    ("AuthenticationError", Fault(status=401, message="key revoked")),
    (
        "APIConnectionError",
        Fault(drop_after_bytes=40, turn=Turn(text="a long answer that is cut " * 4)),
    ),
]


def expected_failure(index: int) -> str | None:
    """The error type the scripted server gives item ``index``, or ``None``."""
    if index % 33 != 7:
        return None
    return FAULTS[(index // 33) % len(FAULTS)][0]


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def responder_for(tool: str) -> Any:
    """A stateless script: ``item N`` asks for ``tool`` once, then answers ``answer N``.

    ``add`` gets ``{"a": N, "b": 1}``, ``calculator`` gets ``{"expression": "N+1"}``. Items
    whose number ``expected_failure`` names fail on their first request.
    """

    def respond(wire_name: str, body: dict[str, Any]) -> Turn | Fault:
        match = _ITEM.search(_first_user_text(body))
        index = int(match.group(1)) if match else -1
        answered = any(m.get("role") == "tool" for m in body.get("messages") or [])
        if not answered:
            kind = expected_failure(index)
            if kind is not None:
                return FAULTS[(index // 33) % len(FAULTS)][1]
            arguments = {"a": index, "b": 1} if tool == "add" else {"expression": f"{index}+1"}
            call = ScriptedToolCall(name=tool, arguments=json.dumps(arguments), id="c1")
            return Turn(tool_calls=[call])
        return Turn(text=f"answer {index}", usage=(20, 3))

    return respond


batch_responder = responder_for("add")


@agentrt.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake(server: FakeServer) -> Iterator[FakeServer]:
    server.reset()
    server.responder = batch_responder
    yield server
    server.reset()


def openai_model(server: FakeServer, **options: Any) -> agentrt.AsyncModel:
    return agentrt.get_async_model(
        "openai:fake",
        base_url=server.openai_base_url,
        api_key="sk-batch-test-key",
        max_retries=0,
        **options,
    )


def observed_rpm(times: list[float]) -> float:
    """Requests per minute: the least-squares slope of start time against request number.

    From the 11th request on (the first may start late while connections and workers warm
    up), and fitted rather than first-to-last, so one request delayed by a busy machine
    does not move the figure.
    """
    steady = sorted(times)[10:]
    n = len(steady)
    mean_x, mean_y = (n - 1) / 2, sum(steady) / n
    slope = sum((i - mean_x) * (t - mean_y) for i, t in enumerate(steady)) / sum(
        (i - mean_x) ** 2 for i in range(n)
    )
    return 60 / slope


def check_one_record_each(records: list[BatchResult], n: int) -> None:
    assert sorted(r.index for r in records) == list(range(n))


# --- the offline model, 10,000 items --------------------------------------------------


async def test_ten_thousand_offline_items_one_record_each_in_order() -> None:
    model = agentrt.get_async_model("offline")
    n = 10_000
    items: list[Any] = [f"prompt {i}" for i in range(n)]
    items[17] = {"no prompt": True}  # malformed: a failed record, not a stopped batch
    items[400] = 42
    items[901] = {"prompt": 'add {"a": 5, "b": 6}', "id": "sum-901", "max_turns": 1}
    items[902] = {"prompt": 'add {"a": 5, "b": 6}', "id": "sum-902"}
    items[903] = {"prompt": "no tools for this one", "tools": []}
    items[3] = 'add {"a": 1, "b": 1}'
    async with run_batch(model, items, tools=[add], concurrency=500) as batch:
        records = [record async for record in batch]
    assert [r.index for r in records] == list(range(n))
    by_index = {r.index: r for r in records}
    assert by_index[17].status == "failed" and by_index[17].error_type == "UsageError"
    assert "'prompt'" in (by_index[17].error or "")
    assert by_index[400].status == "failed" and by_index[400].error_type == "UsageError"
    # The per-item max_turns=1 overrides the batch's: the chain hits its limit.
    assert by_index[901].status == "failed" and by_index[901].error_type == "ChainLimitError"
    assert by_index[901].input == "sum-901" and by_index[901].turns == 1
    assert by_index[902].status == "completed" and by_index[902].input == "sum-902"
    assert by_index[902].text is not None and "add(a=5, b=6) returned 11" in by_index[902].text
    assert by_index[902].turns == 2
    # text is the final answer: the last turn's, after the tool call.
    assert (
        by_index[3].text == "Offline model summary of the tool results:\n- add(a=1, b=1) returned 2"
    )
    assert by_index[903].text is not None and "no tools for this one" in by_index[903].text
    assert by_index[903].turns == 1
    summary = batch.summary
    assert (summary.total, summary.completed, summary.failed) == (n, n - 3, 3)
    assert summary.failures == {"UsageError": 2, "ChainLimitError": 1}
    expected_usage = sum((r.usage for r in records if r.usage is not None), agentrt.Usage())
    assert summary.usage == expected_usage and summary.usage.total_tokens > 0


async def test_unordered_yields_as_chains_finish() -> None:
    order: list[int] = []

    @agentrt.tool
    async def wait(ms: int) -> str:
        """Sleep for ms milliseconds."""
        await anyio.sleep(ms / 1000)
        return "slept"

    model = agentrt.get_async_model("offline")
    items = [f'wait {{"ms": {ms}}}' for ms in (300, 1, 150, 1, 1)]
    async for record in run_batch(model, items, tools=[wait], concurrency=5, ordered=False):
        assert record.status == "completed"
        order.append(record.index)
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert order[-2:] == [2, 0]  # the slow ones come last, as they finish

    ordered = [r.index async for r in run_batch(model, items, tools=[wait], concurrency=5)]
    assert ordered == [0, 1, 2, 3, 4]


async def test_ordered_submission_stalls_behind_a_slow_item() -> None:
    started: list[int] = []
    release = anyio.Event()

    @agentrt.tool
    async def step(n: int) -> int:
        """Record that item n started; item 0 waits to be released."""
        started.append(n)
        if n == 0:
            await release.wait()
        return n

    model = agentrt.get_async_model("offline")
    items = [f'step {{"n": {i}}}' for i in range(100)]
    got: list[int] = []

    async def consume() -> None:
        got.extend([r.index async for r in run_batch(model, items, tools=[step], concurrency=4)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        # Item 0 blocks the ordered output: the window (2 x concurrency) bounds what
        # was submitted past it, and nothing was yielded yet.
        assert sorted(started) == list(range(8))
        assert got == []
        release.set()
    assert got == list(range(100))


# --- over HTTP, 2,000 chains with 3% injected failures ---------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_two_thousand_chains_over_http_failures_isolated_and_typed(
    fake: FakeServer, ordered: bool
) -> None:
    n = 2_000
    model = openai_model(fake)
    async with model:
        records = [
            r
            async for r in run_batch(
                model, (f"item {i}" for i in range(n)), tools=[add], concurrency=64, ordered=ordered
            )
        ]
    if ordered:
        assert [r.index for r in records] == list(range(n))
    check_one_record_each(records, n)
    failures = 0
    for record in records:
        kind = expected_failure(record.index)
        if kind is None:
            assert record.status == "completed", record
            assert record.text == f"answer {record.index}"
            assert record.turns == 2 and record.error is None
            assert record.usage == agentrt.Usage.of(30, 8)
        else:
            failures += 1
            assert record.status == "failed" and record.error_type == kind, record
            assert record.text is None and record.error
            assert "sk-batch-test-key" not in record.error
    assert 0.025 < failures / n < 0.035
    assert len(fake.requests) == 2 * n - failures


async def test_cancel_chain_in_a_tool_gives_a_cancelled_record() -> None:
    @agentrt.tool
    def refuse(n: int) -> int:
        """Refuse odd numbers."""
        if n % 2:
            raise CancelChain(f"{n} is odd")
        return n

    model = agentrt.get_async_model("offline")
    records = [
        r
        async for r in run_batch(model, [f'refuse {{"n": {i}}}' for i in range(4)], tools=[refuse])
    ]
    assert [r.status for r in records] == ["completed", "cancelled", "completed", "cancelled"]
    assert records[1].error_type == "CancelChain" and records[1].error == "1 is odd"


# --- results file and resume -----------------------------------------------------------


async def test_results_file_holds_every_record_and_resume_skips_completed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    model = agentrt.get_async_model("offline")
    items: list[Any] = [f"prompt {i}" for i in range(50)]
    items[5] = {"bad": 1}
    first = [r async for r in run_batch(model, items, results_path=path, concurrency=8)]
    lines = path.read_text().splitlines()
    assert len(lines) == 50
    # The file holds the records in the order they were yielded: input order here.
    assert [BatchResult.from_json(line).index for line in lines] == list(range(50))
    assert BatchResult.from_json(lines[0]).input in items

    # Run again: completed items come back from the file; the failed one runs again; a
    # changed input is noticed by its hash and run again.
    items[5] = "prompt 5 fixed"
    items[9] = "prompt 9 changed"
    batch = run_batch(model, items, results_path=path, concurrency=8)
    second = [r async for r in batch]
    assert [r.index for r in second] == list(range(50))
    assert [r.resumed for r in second].count(True) == 48
    assert not second[5].resumed and second[5].status == "completed"
    assert not second[9].resumed and second[9].text is not None and "changed" in second[9].text
    assert second[0] == dataclasses.replace(first[0], resumed=True)
    summary = batch.summary
    assert (summary.resumed, summary.rerun, summary.completed) == (48, 1, 50)
    # The file is append-only: the last record of each index is the current one.
    latest = {}
    for line in path.read_text().splitlines():
        record = BatchResult.from_json(line)
        latest[record.index] = record
    assert len(path.read_text().splitlines()) == 52
    assert all(r.status == "completed" for r in latest.values())


async def test_a_torn_last_line_is_dropped_and_run_again(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    model = agentrt.get_async_model("offline")
    items = [f"prompt {i}" for i in range(5)]
    [r async for r in run_batch(model, items, results_path=path)]
    data = path.read_bytes()
    cut = data[: data.rindex(b"\n", 0, len(data) - 1) + 1] + b'{"index": 4, "sta'
    path.write_bytes(cut)
    records = [r async for r in run_batch(model, items, results_path=path)]
    assert [r.resumed for r in records] == [True, True, True, True, False]
    assert [BatchResult.from_json(line).index for line in path.read_text().splitlines()] == [
        0,
        1,
        2,
        3,
        4,
    ]


async def test_a_file_that_is_not_a_results_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text("hello\n")
    with pytest.raises(UsageError, match="line 1 is not a batch record"):
        async for _ in run_batch(agentrt.get_async_model("offline"), ["a"], results_path=path):
            pass


async def test_early_exit_cancels_running_chains_and_keeps_finished_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    started = running = peak = 0

    @agentrt.tool
    async def slow(n: int) -> int:
        """Sleep unless n is small."""
        nonlocal started, running, peak
        started += 1
        running += 1
        peak = max(peak, running)
        try:
            if n >= 3:
                await anyio.sleep_forever()
            return n
        finally:
            running -= 1

    model = agentrt.get_async_model("offline")
    items = [f'slow {{"n": {i}}}' for i in range(20)]
    seen = []
    async with run_batch(model, items, tools=[slow], concurrency=6, results_path=path) as batch:
        async for record in batch:
            seen.append(record.index)
            if record.index == 2:
                break
    assert seen == [0, 1, 2]
    # 0, 1 and 2 finished and gave their slots to the next items: never more than 6 ran,
    # nothing new started while the batch was being stopped, and nothing runs now.
    assert peak <= 6 and started <= 9 and running == 0
    written = [BatchResult.from_json(x) for x in path.read_text().splitlines()]
    assert sorted(r.index for r in written) == [0, 1, 2]


async def test_an_error_of_the_items_iterable_is_raised_as_is() -> None:
    def items() -> Iterator[str]:
        yield "one"
        yield "two"
        raise ValueError("the input file is corrupt")

    got: list[int] = []

    async def consume() -> None:
        async for record in run_batch(agentrt.get_async_model("offline"), items()):
            got.append(record.index)  # noqa: PERF401 - what arrived before the error

    with pytest.raises(ValueError, match="corrupt"):
        await consume()
    assert got == [0, 1]


async def test_async_iterable_items_are_read_lazily() -> None:
    read = 0

    async def items() -> Any:
        nonlocal read
        for i in range(1_000):
            read += 1
            yield f"prompt {i}"

    model = agentrt.get_async_model("offline")
    async with run_batch(model, items(), concurrency=10) as batch:
        async for record in batch:
            # Read ahead by at most the reorder window (2 x concurrency), never the input.
            assert read <= record.index + 1 + 2 * 10 + 1
    assert batch.summary.total == 1_000 and read == 1_000


# --- rate limits -----------------------------------------------------------------------


async def test_requests_per_minute_is_obeyed_within_five_percent(fake: FakeServer) -> None:
    fake.responder = lambda wire, body: Turn(text="ok")
    rpm = 3_000  # 50 requests a second, so the test takes about 2 s
    n = 121
    model = openai_model(fake)
    async with model:
        records = [
            r
            async for r in run_batch(
                model,
                [f"item {i}" for i in range(n)],
                concurrency=16,
                rate_limit=RateLimit(requests_per_minute=rpm),
            )
        ]
    assert all(r.status == "completed" for r in records)
    times = sorted(r.time for r in fake.requests)
    assert len(times) == n
    observed = observed_rpm(times)
    assert 0.95 * rpm <= observed <= 1.05 * rpm, observed


async def test_tokens_per_minute_holds_requests_while_over_budget(fake: FakeServer) -> None:
    fake.responder = lambda wire, body: Turn(text="ok", usage=(90, 10))  # 100 tokens each
    tpm = 60_000  # 1,000 tokens a second: 10 requests a second
    model = openai_model(fake)
    async with model:
        records = [
            r
            async for r in run_batch(
                model,
                [f"item {i}" for i in range(30)],
                concurrency=2,
                rate_limit=RateLimit(tokens_per_minute=tpm),
            )
        ]
    assert all(r.status == "completed" for r in records)
    times = sorted(r.time for r in fake.requests)
    # Each request waits until the tokens reported before it are paid for; two run at
    # once, so the 30 requests spread over at least (30 - 2) * 0.1 s.
    assert times[-1] - times[0] >= 2.7


async def test_a_rate_limited_chain_pauses_the_whole_batch(fake: FakeServer) -> None:
    fake.responder = None
    fake.push(Fault(status=429, message="slow down", headers={"retry-after": "1"}))
    model = openai_model(fake)
    async with model:
        records = [
            r async for r in run_batch(model, [f"item {i}" for i in range(6)], concurrency=1)
        ]
    assert records[0].status == "failed" and records[0].error_type == "RateLimitError"
    assert all(r.status == "completed" for r in records[1:])
    times = [r.time for r in fake.requests]
    assert times[1] - times[0] >= 1.0  # the backoff after a RateLimitError
    assert times[-1] - times[1] < 1.0  # and no pause once chains complete again


async def test_a_retried_429_pauses_every_chain_of_the_batch(fake: FakeServer) -> None:
    fake.responder = None
    fake.push(Fault(status=429, message="slow down", headers={"retry-after": "1"}))
    # One retry: the chain that got the 429 waits Retry-After and tries again, and the
    # batch, told through the on_retry hook, holds every other chain's requests as long.
    model = openai_model(fake, retry=agentrt.RetryPolicy(max_retries=1))
    async with model:
        records = [
            r async for r in run_batch(model, [f"item {i}" for i in range(6)], concurrency=2)
        ]
    assert [r.status for r in records] == ["completed"] * 6
    times = sorted(r.time for r in fake.requests)
    assert len(times) == 7  # six answers and the one 429
    start = times[0]
    # Without the pause the five other items would all be asked within the Retry-After
    # second; with it only those already under way when the 429 came back are (the one
    # racing the 429, and at most one that started before the hook ran).
    early = [t for t in times if t - start < 0.9]
    assert len(early) <= 3, early


def test_pacer_spaces_requests_and_pauses_on_retry() -> None:
    now = [100.0]
    pacer = Pacer(RateLimit(requests_per_minute=60), clock=lambda: now[0])
    assert [pacer.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    handler = PacingHandler(pacer)
    handler.on_retry(None, 1, agentrt.RateLimitError("429", status=429), 5.0)
    assert pacer.paused_for() == 5.0
    assert pacer.reserve() == 5.0  # the pause is later than the next slot (3.0)
    handler.on_retry(None, 1, agentrt.ServerError("500", status=500), 30.0)
    assert pacer.paused_for() == 5.0  # only 429s pause the batch
    tokens = Pacer(RateLimit(tokens_per_minute=600), clock=lambda: now[0])
    tokens.add_tokens(20)  # 10 tokens a second: 2 s of budget used
    assert tokens.reserve() == 2.0
    assert [tokens.rate_limited() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    tokens.succeeded()
    assert tokens.rate_limited() == 1


# --- progress --------------------------------------------------------------------------


async def test_progress_callable_gets_the_numbers() -> None:
    seen: list[BatchProgress] = []
    model = agentrt.get_async_model("offline")
    items: list[Any] = ["a", "b", {"oops": 1}, "d"]
    async for _ in run_batch(model, items, progress=seen.append, concurrency=2):
        pass
    assert [p.done for p in seen] == [1, 2, 3, 4]
    last = seen[-1]
    assert (last.total, last.completed, last.failed, last.in_flight) == (4, 3, 1, 0)
    assert last.total_tokens == last.input_tokens + last.output_tokens > 0
    assert last.eta == 0.0 and last.rate > 0


async def test_progress_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    model = agentrt.get_async_model("offline")
    async for _ in run_batch(model, ["a", "b", {"oops": 1}], progress=True):
        pass
    err = capsys.readouterr().err
    assert "3/3" in err and "failed=1" in err and "tokens=" in err


def test_progress_bar_without_tqdm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    with pytest.raises(UsageError, match=r"agentrt\[progress\]"):
        run_batch(agentrt.get_async_model("offline"), ["a"], progress=True)


# --- validation at the call ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency= must be a positive integer"),
        ({"concurrency": "8"}, "concurrency= must be a positive integer"),
        ({"concurrency": True}, "concurrency= must be a positive integer"),
        ({"max_turns": 0}, "max_turns= must be a positive integer"),
        ({"ordered": "yes"}, "ordered= takes True or False"),
        ({"progress": 3}, "progress= takes True"),
        ({"rate_limit": 600}, "rate_limit= takes agentrt.RateLimit"),
        ({"results_path": 5}, "results_path= takes a file path"),
        ({"results_path": "/no/such/dir/out.jsonl"}, "does not exist"),
        ({"system": 3}, "system= takes a string"),
        ({"tools": [42]}, "got 42"),
    ],
)
def test_bad_parameters_raise_usage_error_at_the_call(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    model = agentrt.get_async_model("offline")
    with pytest.raises(UsageError, match=message):
        run_batch(model, ["a"], **kwargs)


def test_bad_first_arguments() -> None:
    with pytest.raises(UsageError, match="run_batch_sync"):
        run_batch(agentrt.get_model("offline"), ["a"])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="AsyncModel"):
        run_batch("offline", ["a"])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="for one prompt pass a list"):
        run_batch(agentrt.get_async_model("offline"), "just one prompt")
    with pytest.raises(UsageError, match="run_batch\\(\\)"):
        run_batch_sync(agentrt.get_async_model("offline"), ["a"])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"results_path=.* is a directory"):
        run_batch(agentrt.get_async_model("offline"), ["a"], results_path=Path("."))
    with pytest.raises(UsageError, match="requests_per_minute"):
        RateLimit(requests_per_minute=0)
    with pytest.raises(UsageError, match="limits nothing"):
        RateLimit()


async def test_a_batch_is_iterated_once() -> None:
    batch = run_batch(agentrt.get_async_model("offline"), ["a"])
    assert [r.index async for r in batch] == [0]
    with pytest.raises(UsageError, match="iterated once"):
        async for _ in batch:
            pass


# --- the sync facade -------------------------------------------------------------------


def test_run_batch_sync_yields_every_record_and_stops_early() -> None:
    with agentrt.get_model("offline") as model:
        batch = run_batch_sync(model, [f"prompt {i}" for i in range(300)], tools=[add])
        records = list(batch)
        assert [r.index for r in records] == list(range(300))
        assert all(r.status == "completed" for r in records)
        assert batch.summary.completed == 300
        for record in run_batch_sync(model, ["a", "b", "c"]):
            if record.index == 1:
                break
        # The model is still usable after an early stop.
        assert "again" in model.chain("again").text()
        assert [r.index for r in run_batch_sync(model, ["x", "y"])] == [0, 1]


async def test_run_batch_sync_refused_inside_an_event_loop() -> None:
    with pytest.raises(UsageError, match="inside a running"):
        run_batch_sync(agentrt.get_model("offline"), ["a"])


async def test_two_batches_cannot_share_a_results_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    release = anyio.Event()
    entered = anyio.Event()

    @agentrt.tool
    async def hold(n: int) -> int:
        """Wait to be released."""
        entered.set()
        await release.wait()
        return n

    model = agentrt.get_async_model("offline")
    first: list[BatchResult] = []

    async def run_first() -> None:
        first.extend(
            [r async for r in run_batch(model, ['hold {"n": 1}'], tools=[hold], results_path=path)]
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        await entered.wait()  # the first batch has its file open
        with pytest.raises(UsageError, match="in use by another running batch"):
            async for _ in run_batch(model, ["other"], results_path=path):
                pass
        release.set()
    assert [r.status for r in first] == ["completed"]
    # Once the first batch ended, the file is free again.
    again = [r async for r in run_batch(model, ['hold {"n": 1}'], tools=[hold], results_path=path)]
    assert [r.resumed for r in again] == [True]


@pytest.mark.parametrize(
    "options", [{"temprature": 0.2}, {"max_turn": 3}, {"tool_errors": "maybe"}]
)
def test_chain_options_are_checked_by_model_chain_at_the_call(options: dict[str, Any]) -> None:
    # run_batch refuses at the call exactly what model.chain refuses (the strict option
    # check lives there), and accepts what it accepts.
    model = agentrt.get_async_model("offline")
    try:
        model.chain("probe", **options)
    except UsageError as exc:
        with pytest.raises(UsageError, match=re.escape(str(exc))):
            run_batch(model, ["a"], **options)
    else:
        assert isinstance(run_batch(model, ["a"], **options), agentrt.batch.BatchRun)
