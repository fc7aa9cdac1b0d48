"""Recording a handler's outcome never fails on what the handler raised or returned.

An exception that cannot be turned into text (str() raises, returns a non-string or a str
subclass, holds a lone surrogate, is a megabyte long) and a result that cannot be encoded
(it contains itself, or holds an object) end the message in a final status with a clear,
bounded, encodable error, in every mode; the message is never left `running`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service import Settings
from service.failures import MAX_ERROR_MESSAGE_CHARS, TRUNCATED_MARK

from .conftest import client_for
from .contract.helpers import figures, publish, wait_final
from .shutdown_load import snapshot_lines

MODES = ["thread", "process", "async"]


def queue_for(mode: str, handler: str) -> dict[str, object]:
    prefix = "async_" if mode == "async" else ""
    return {"handler": f"tests.handlers:{prefix}{handler}", "mode": mode, "max_retries": 0}


@pytest.mark.parametrize("mode", MODES)
async def test_an_exception_that_cannot_be_printed_still_fails_the_message(
    mode: str,
    tmp_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = tmp_settings({"q": queue_for(mode, "raise_hostile")}, executor={"processes": 1})
    ids: dict[str, str] = {}
    async with client_for(settings) as (client, _):
        for kind in (
            "str_raises",
            "str_and_repr_raise",
            "str_not_a_string",
            "str_subclass",
            "huge",
            "lone_surrogate",
        ):
            ids[kind] = (await publish(client, "q", {"raise": kind}))["id"]
        done = {kind: await wait_final(client, mid) for kind, mid in ids.items()}
        assert {doc["status"] for doc in done.values()} == {"failed"}
        errors = {kind: doc["error"] for kind, doc in done.items()}
        # str() failed: the repr stands in for it; both failed: the type name alone.
        assert errors["str_raises"] == {"type": "Unprintable", "message": "Unprintable('hidden')"}
        assert errors["str_and_repr_raise"] == {
            "type": "UnprintableAndUnrepresentable",
            "message": "<unprintable UnprintableAndUnrepresentable>",
        }
        assert errors["str_not_a_string"] == {
            "type": "NonStringStr",
            "message": "NonStringStr('hidden')",
        }
        assert errors["str_subclass"] == {"type": "SubclassStr", "message": "a str, but not quite"}
        huge = errors["huge"]
        assert huge["type"] == "ValueError"
        assert len(huge["message"]) == MAX_ERROR_MESSAGE_CHARS
        assert huge["message"] == "x" * (MAX_ERROR_MESSAGE_CHARS - len(TRUNCATED_MARK)) + (
            TRUNCATED_MARK
        )
        assert errors["lone_surrogate"] == {"type": "ValueError", "message": "bad \\ud800 text"}
        depth = (await figures(client, "q"))["depth"]
        assert depth["running"] == 0 and depth["dead"] == len(ids)
    assert "recording the outcome" not in caplog.text
    # The stop's snapshot could encode every one of them.
    records = {r["id"]: r for r in snapshot_lines(tmp_path / "snapshot.jsonl")}
    assert {records[mid]["error"]["type"] for mid in ids.values()} >= {"Unprintable", "ValueError"}


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_that_cannot_be_encoded_fails_as_not_serializable(
    mode: str, tmp_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmp_settings({"q": queue_for(mode, "hostile_result")}, executor={"processes": 1})
    async with client_for(settings) as (client, _):
        for kind in ("cycle", "nested_cycle", "object"):
            msg = await publish(client, "q", {"result": kind})
            done = await wait_final(client, msg["id"])
            assert done["status"] == "failed", (kind, done)
            assert done["error"]["type"] == "ResultNotSerializable", (kind, done)
            assert len(done["error"]["message"]) <= MAX_ERROR_MESSAGE_CHARS
        # JSON has no NaN: it is encoded as null, as msgspec does, and the attempt succeeds.
        msg = await publish(client, "q", {"result": "nan"})
        done = await wait_final(client, msg["id"])
        assert (done["status"], done["result"]) == ("succeeded", {"value": None})
        assert (await figures(client, "q"))["depth"]["running"] == 0
    assert "RecursionError" not in caplog.text


async def test_an_async_handler_raising_cancelled_error_fails_and_keeps_its_consumer(
    tmp_settings: Callable[..., Settings],
) -> None:
    """Only a timeout or a stop cancels a handler; a CancelledError it raises of its own is
    its failure, and must not end the consumer as a stop would."""
    queue = {"handler": "tests.handlers:cancels_itself", "mode": "async", "max_retries": 0}
    settings = tmp_settings({"q": {**queue, "concurrency": 1}})
    async with client_for(settings) as (client, runtime):
        msg = await publish(client, "q", {"cancel": True})
        done = await wait_final(client, msg["id"])
        assert (done["status"], done["error"]["type"]) == ("failed", "CancelledError")
        after = await publish(client, "q", {"cancel": False})
        assert (await wait_final(client, after["id"]))["status"] == "succeeded"
        assert runtime.live_consumers("q") == 1
