"""One definition of each answer (service/api/bodies.py): the OpenAPI document and
docs/api.md are generated from it, the client mirrors it, the brokers' figures fill it.
(tests/contract/test_answer_types.py checks the answers themselves against it.)"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from service.api import bodies
from service.broker.base import QueueCounts
from service.broker.queues import DEPTH_STATUSES
from service.client import models as client
from service.model import ErrorInfo, MessageView
from service.openapi import openapi_document
from service.openapi_markdown import markdown
from service.scheduler import ScheduleView
from service.tracing import TraceView

from .conftest import ROOT

# The client's decoding type for each answer type (it decodes times as datetimes, bodies as
# Python values, and tolerates fields a newer server adds, so it keeps its own types).
CLIENT_MIRRORS: list[tuple[type[msgspec.Struct], type[msgspec.Struct]]] = [
    (client.Message, MessageView),
    (client.ErrorInfo, ErrorInfo),
    (client.TraceView, TraceView),
    (client.QueueInfo, bodies.QueueFigures),
    (client.Depth, bodies.Depth),
    (client.Counts, bodies.Counts),
    (client.DeadPage, bodies.DeadPage),
    (client.Redriven, bodies.Redriven),
    (client.Schedule, ScheduleView),
]


@pytest.mark.parametrize(("mirror", "answer"), CLIENT_MIRRORS, ids=lambda k: k.__name__)
def test_the_client_reads_every_field_the_api_writes(
    mirror: type[msgspec.Struct], answer: type[msgspec.Struct]
) -> None:
    assert mirror.__struct_fields__ == answer.__struct_fields__


def test_the_brokers_figures_are_the_answers_figures() -> None:
    """api/queues.py fills Depth and Counts from a broker's QueueStats by keyword."""
    assert bodies.Depth.__struct_fields__ == DEPTH_STATUSES
    names = tuple(f.name for f in dataclasses.fields(QueueCounts))
    assert names == bodies.Counts.__struct_fields__


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*map(_refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(_refs, node))
    return set()


def test_every_reference_of_the_document_is_one_of_its_schemas() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    assert {ref.rsplit("/", 1)[1] for ref in _refs(doc)} <= set(schemas)
    assert msgspec.json.encode(doc)  # nothing in it that JSON cannot write


def test_docs_api_md_is_what_the_document_generates() -> None:
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == markdown(openapi_document()), (
        "docs/api.md is out of date: python -m service.openapi_markdown > docs/api.md"
    )
