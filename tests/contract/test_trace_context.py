"""W3C Trace Context end to end, on every backend: the publish request's `traceparent` and
`tracestate` are kept with the message, shown in its JSON, and handed to every attempt's
handler as `ctx.trace`, with a span id of the attempt's own."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import Connect
from .helpers import get, publish_batch, wait_final

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
SPAN_ID = re.compile(r"[0-9a-f]{16}")
HANDLERS = {
    "thread": "tests.handlers:trace_of",
    "process": "tests.handlers:trace_of",
    "async": "tests.handlers:trace_of_async",
}


def check_attempt_trace(seen: dict[str, Any], traceparent: str = TRACEPARENT) -> None:
    _, trace_id, parent_id, flags = traceparent.split("-")
    assert seen["trace_id"] == trace_id
    assert seen["parent_id"] == parent_id
    assert SPAN_ID.fullmatch(seen["span_id"]) and seen["span_id"] not in (parent_id, "0" * 16)
    assert seen["traceparent"] == f"00-{trace_id}-{seen['span_id']}-{flags}"
    assert seen["sampled"] is (flags == "01")


@pytest.mark.parametrize("mode", list(HANDLERS))
async def test_handler_context_carries_the_publish_requests_trace(
    connect: Connect, mode: str
) -> None:
    async with connect({"q": {"handler": HANDLERS[mode], "mode": mode}}) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages",
            json={"body": 1},
            headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE},
        )
        assert response.status_code == 202
        accepted = await response.get_json()
        assert accepted["trace"] == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
        done = await wait_final(client, accepted["id"])
        assert done["status"] == "succeeded", done
        assert done["trace"] == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
        check_attempt_trace(done["result"])
        assert done["result"]["tracestate"] == TRACESTATE


async def test_every_message_of_a_batch_carries_the_requests_trace(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:trace_of"}}) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages/batch",
            json={"messages": [{"body": n} for n in range(3)]},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 202
        accepted = (await response.get_json())["messages"]
        assert [m["trace"] for m in accepted] == [{"traceparent": TRACEPARENT}] * 3
        spans = set()
        for message in accepted:
            done = await wait_final(client, message["id"])
            check_attempt_trace(done["result"])
            assert done["result"]["tracestate"] is None
            spans.add(done["result"]["span_id"])
        assert len(spans) == 3  # an attempt's span is its own


async def test_each_retry_is_a_span_of_its_own(connect: Connect) -> None:
    queues = {"q": {"handler": "tests.handlers:flaky_trace", "retry_backoff_s": 0.01}}
    async with connect(queues) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages", json={"body": None}, headers={"traceparent": TRACEPARENT}
        )
        done = await wait_final(client, (await response.get_json())["id"])
        assert done["status"] == "succeeded" and done["attempts"] == 2
        first, second = done["result"]
        assert first != second and all(SPAN_ID.fullmatch(s) for s in (first, second))


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # trace id all zero
        f"00-{TRACE_ID}-0000000000000000-01",  # parent id all zero
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is never valid
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has nothing after the flags
        f"00-{TRACE_ID}-{PARENT_ID}",
        "not a traceparent",
        "",
    ],
)
async def test_an_invalid_traceparent_is_ignored_not_refused(connect: Connect, header: str) -> None:
    async with connect({"q": {"handler": "tests.handlers:trace_of"}}) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages",
            json={"body": 1},
            headers={"traceparent": header, "tracestate": TRACESTATE},
        )
        assert response.status_code == 202  # W3C: an invalid traceparent is ignored
        accepted = await response.get_json()
        assert accepted["trace"] is None
        done = await wait_final(client, accepted["id"])
        assert done["status"] == "succeeded" and done["result"] is None


async def test_a_later_version_is_read_as_version_00(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:trace_of"}}) as (client, _):
        response = await client.post(
            "/v1/queues/q/messages",
            json={"body": 1},
            headers={"traceparent": f"cc-{TRACE_ID}-{PARENT_ID}-00-what-comes-later"},
        )
        accepted = await response.get_json()
        assert accepted["trace"] == {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
        done = await wait_final(client, accepted["id"])
        check_attempt_trace(done["result"], f"00-{TRACE_ID}-{PARENT_ID}-00")


async def test_a_message_published_without_a_trace_has_none(connect: Connect) -> None:
    async with connect({"q": {"handler": "tests.handlers:trace_of"}}) as (client, _):
        response = await publish_batch(client, "q", [{"body": 1}])
        (accepted,) = (await response.get_json())["messages"]
        assert accepted["trace"] is None
        done = await wait_final(client, accepted["id"])
        assert done["result"] is None and (await get(client, done["id"]))["trace"] is None
