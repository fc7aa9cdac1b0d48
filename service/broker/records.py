"""Message ⇄ bytes for anything that stores messages: the memory snapshot, the sqlite
journal, the amqp outcome stream. One format, so a message reads back the same everywhere."""

from __future__ import annotations

import msgspec

from ..model import ErrorInfo, Message, Status


class MessageRecord(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    id: str
    queue: str
    status: Status
    body: msgspec.Raw
    priority: int
    created_at: float
    headers: dict[str, str] = {}
    scheduled_for: float | None = None
    attempts: int = 0
    failures: int = 0
    # Not `Raw | None`: msgspec decodes that union as null-only, and a handler's result may
    # itself be JSON null. UNSET means "no result yet".
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    idempotency_key: str | None = None
    snoozes: int = 0
    # Appended (records are positional): a record from before traces decodes with None.
    traceparent: str | None = None
    tracestate: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MessageRecord)


def encode_message(msg: Message) -> bytes:
    # Positional (a journal encodes every row it writes), in MessageRecord's field order,
    # which tests/test_field_order.py pins.
    return _encoder.encode(
        MessageRecord(
            msg.id,
            msg.queue,
            msg.status,
            msgspec.Raw(msg.body),
            msg.priority,
            msg.created_at,
            msg.headers,
            msg.scheduled_for,
            msg.attempts,
            msg.failures,
            msgspec.Raw(msg.result) if msg.result is not None else msgspec.UNSET,
            msg.error,
            msg.started_at,
            msg.finished_at,
            msg.idempotency_key,
            msg.snoozes,
            msg.traceparent,
            msg.tracestate,
        )
    )


def decode_message(data: bytes | str) -> Message:
    """Raises msgspec.DecodeError / ValidationError on anything that is not a record."""
    rec = _decoder.decode(data)
    return Message(
        id=rec.id,
        queue=rec.queue,
        status=rec.status,
        # bytes(): a Raw keeps the whole source buffer alive; a copy keeps only this body
        body=bytes(rec.body),
        headers=rec.headers,
        priority=rec.priority,
        created_at=rec.created_at,
        scheduled_for=rec.scheduled_for,
        attempts=rec.attempts,
        failures=rec.failures,
        result=bytes(rec.result) if not isinstance(rec.result, msgspec.UnsetType) else None,
        error=rec.error,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        idempotency_key=rec.idempotency_key,
        snoozes=rec.snoozes,
        traceparent=rec.traceparent,
        tracestate=rec.tracestate,
    )
