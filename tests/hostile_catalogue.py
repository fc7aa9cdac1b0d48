"""The hostile requests of test_hostile.py: each with the answers it may get."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

CLOSED = 0  # the server closed the connection without a response
PUBLISH = "/v1/queues/work/messages"
ADMIN = "Authorization: Bearer admin-secret\r\n"
# Slow clients are cut off by the head timeout (5 s) or the body timeout (10 s).
CUT_OFF_WITHIN_S = 16.0


@dataclass
class Case:
    name: str
    chunks: list[bytes]  # sent one by one, `pause` seconds apart
    expect: frozenset[int]
    pause: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # response headers that must be set


def case(
    name: str, data: bytes | list[bytes], *expect: int, pause: float = 0.0, **hdrs: str
) -> Case:
    chunks = data if isinstance(data, list) else [data]
    return Case(
        name, chunks, frozenset(expect), pause, {k.replace("_", "-"): v for k, v in hdrs.items()}
    )


def post(path: str, body: bytes, ctype: str = "application/json", auth: str = ADMIN) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {len(body)}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


def get(path: str, auth: str = ADMIN, extra: str = "", host: str = "t") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{extra}Connection: close\r\n\r\n".encode()


# Hosts werkzeug's IDNA step cannot bind a URL map to (an empty label, a label over 63).
BAD_HOSTS = ["a..b", ".", "x" * 64, "ok." + "y" * 64 + ":8000", "..:80"]
PROBLEM = "application/problem+json"


def utf8_cases() -> Iterator[Case]:
    """Invalid UTF-8 inside each string an envelope, a batch or a redrive carries."""
    bad = b"\xff\xfe"
    for where, doc in [
        ("idempotency key", b'{"body":1,"idempotency_key":"k' + bad + b'"}'),
        ("header name", b'{"body":1,"headers":{"' + bad + b'":"v"}}'),
        ("header value", b'{"body":1,"headers":{"h":"\xc3"}}'),
        ("unknown key", b'{"body":1,"' + bad + b'":1}'),
    ]:
        yield case(f"invalid utf-8 in the {where}", post(PUBLISH, doc), 400, Content_Type=PROBLEM)
        batch = b'{"messages":[{"body":1},' + doc + b"]}"
        yield case(f"invalid utf-8 in a batch's {where}", post(PUBLISH + "/batch", batch), 400)
    redrive = post("/v1/queues/work/dead/redrive", b'{"ids":["\xed\xa0\x80"]}')
    yield case("invalid utf-8 in a redrive id", redrive, 400, Content_Type=PROBLEM)


def odd_target_and_host_cases() -> Iterator[Case]:
    for host in BAD_HOSTS:
        yield case(
            f"host {host[:12]!r}", get("/v1/queues/work", host=host), 400, Content_Type=PROBLEM
        )
        yield case(
            f"host {host[:12]!r} on publish",
            post(PUBLISH, b'{"body": 1}').replace(b"Host: t", b"Host: " + host.encode("latin-1")),
            400,
            Content_Type=PROBLEM,
        )
    for target in [
        "?x",
        "healthz",
        "*",
        "http://t",
        "http://[x/healthz",
        "v1/queues/work/messages",
    ]:
        yield case(f"target {target!r}", get(target), 400, Content_Type=PROBLEM)
    # RFC 9112 3.2.2: a server must accept the absolute form (Quart routes its path).
    yield case("absolute-form target", get("http://t/v1/queues/work"), 200)
    yield case(
        "target without a slash on publish",
        post(PUBLISH, b'{"body": 1}').replace(b"POST /", b"POST "),
        400,
        Content_Type=PROBLEM,
    )
    # Unicode digits pass str.isdigit() and int()/float() but are not numbers in a URL.
    # Digits beyond int()'s 4300 make it raise ValueError, not return a number.
    digits = "9" * 5000
    for query in [
        "limit=%C2%B2",
        "limit=%D9%A3",
        "limit=%EF%BC%91",
        "limit=1_0",
        f"limit={digits}",
    ]:
        yield case(
            f"dead {query[:20]}", get(f"/v1/queues/work/dead?{query}"), 400, Content_Type=PROBLEM
        )
    for query in ["wait=%EF%BC%91", "wait=%D9%A3", "wait=1_0", "wait=%C2%B2"]:
        yield case(f"message {query}", get(f"/v1/messages/x?{query}"), 400, Content_Type=PROBLEM)


def catalogue() -> Iterator[Case]:
    # Malformed request heads.
    yield case("garbage line", b"HELLO THERE\r\n\r\n", 400, CLOSED)
    yield case("no http version", b"GET /healthz\r\n\r\n", 400, CLOSED)
    yield case(
        "malformed http version", b"GET /healthz HTTP/x.y\r\nHost: t\r\n\r\n", 400, 505, CLOSED
    )
    yield case(
        "header without colon", b"GET /healthz HTTP/1.1\r\nHost: t\r\nOops\r\n\r\n", 400, CLOSED
    )
    yield case("space before colon", b"GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n", 400, CLOSED)
    yield case(
        "nul in header", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400, CLOSED
    )
    yield case("missing host", b"GET /healthz HTTP/1.1\r\n\r\n", 400, CLOSED)
    # Over the app's bounds (a problem+json answer) and over Hypercorn's (it answers itself).
    yield case("header over 16 KiB", get("/healthz", extra=f"X-Big: {'a' * 20000}\r\n"), 431)
    yield case(
        "header over 32 KiB", get("/healthz", extra=f"X-Big: {'a' * 40000}\r\n"), 431, 400, CLOSED
    )
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    yield case("200 headers", get("/healthz", extra=many), 431)
    many = "".join(f"X-H{i}: {'v' * 20}\r\n" for i in range(2000))
    yield case("2000 headers", get("/healthz", extra=many), 431, 400, CLOSED)
    yield case("request target over 8 KiB", get("/healthz?" + "q" * 10000), 414)
    yield case("request target over 32 KiB", get("/healthz?" + "q" * 40000), 414, 431, 400, CLOSED)
    # Bad framing.
    cl = (
        "POST "
        + PUBLISH
        + " HTTP/1.1\r\nHost: t\r\n"
        + ADMIN
        + "Content-Type: application/json\r\n"
    )
    yield case(
        "content-length not a number", (cl + "Content-Length: abc\r\n\r\n").encode(), 400, CLOSED
    )
    yield case("negative content-length", (cl + "Content-Length: -1\r\n\r\n").encode(), 400, CLOSED)
    yield case(
        "conflicting content-lengths",
        (cl + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n{}").encode(),
        400,
        CLOSED,
    )
    # RFC 9112 6.1: a transfer coding the server does not know gets 501 (h11 answers it).
    yield case(
        "unsupported transfer-encoding",
        (cl + "Transfer-Encoding: gzip\r\n\r\n").encode(),
        400,
        501,
        CLOSED,
    )
    yield case(
        "bad chunk size",
        (cl + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode(),
        400,
        CLOSED,
    )
    yield case(
        "content-length over max_body_bytes",
        (cl + "Content-Length: 99999999\r\n\r\n").encode(),
        413,
    )
    big_chunk = b"%x\r\n" % 5000 + b"[" * 5000 + b"\r\n"
    yield case(
        "chunked body over max_body_bytes",
        [(cl + "Transfer-Encoding: chunked\r\n\r\n").encode(), big_chunk],
        413,
        CLOSED,
    )
    yield case(
        "expect 100-continue over max_body_bytes",
        (cl + "Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n").encode(),
        413,
    )
    # Slow clients.
    yield case(
        "slow head",
        [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Slow: a\r\n"] * 40,
        CLOSED,
        408,
        pause=1.0,
    )
    yield case("idle connection", [b"", b""], CLOSED, 408, pause=9.0)
    yield case(
        "slow body",
        [(cl + "Content-Length: 100\r\n\r\n").encode()] + [b" "] * 40,
        408,
        CLOSED,
        pause=1.0,
    )
    yield case(
        "body shorter than content-length",
        (cl + "Content-Length: 100\r\n\r\n{}").encode(),
        408,
        CLOSED,
    )
    # Bad JSON shapes on publish.
    yield case("truncated json", post(PUBLISH, b'{"body": '), 400)
    yield case("empty body", post(PUBLISH, b""), 400)
    yield case("top-level array", post(PUBLISH, b"[1, 2]"), 422)
    yield case("missing body", post(PUBLISH, b'{"priority": 1}'), 422)
    yield case("unknown field", post(PUBLISH, b'{"body": 1, "colour": "red"}'), 422)
    yield case("priority out of range", post(PUBLISH, b'{"body": 1, "priority": 10}'), 422)
    yield case("negative delay", post(PUBLISH, b'{"body": 1, "delay_s": -1}'), 422)
    yield case("header value not a string", post(PUBLISH, b'{"body": 1, "headers": {"a": 1}}'), 422)
    yield case(
        "idempotency key too long",
        post(PUBLISH, b'{"body":1,"idempotency_key":"' + b"k" * 201 + b'"}'),
        422,
    )
    yield case("NaN", post(PUBLISH, b'{"body": NaN}'), 400)
    yield case("Infinity", post(PUBLISH, b'{"body": [Infinity]}'), 400)
    yield case("duplicate keys", post(PUBLISH, b'{"body": 1, "body": 2}'), 400)
    yield case("duplicate keys in the body", post(PUBLISH, b'{"body": {"a": 1, "a": 2}}'), 400)
    yield case("deep nesting", post(PUBLISH, b'{"body": ' + b"[" * 2000 + b"]" * 2000 + b"}"), 400)
    yield case(
        "deep nesting just over the limit",
        post(PUBLISH, b'{"body": ' + b"[" * 64 + b"]" * 64 + b"}"),
        400,
    )
    yield case("invalid utf-8", post(PUBLISH, b'{"body": "\xff\xfe"}'), 400)
    yield case("lone surrogate escape", post(PUBLISH, b'{"body": "\\ud800"}'), 400)
    yield case("huge integer", post(PUBLISH, b'{"body": ' + b"9" * 400 + b"}"), 400)
    yield case("huge exponent", post(PUBLISH, b'{"body": 1e999}'), 400)
    yield case("text/plain", post(PUBLISH, b'{"body": 1}', "text/plain"), 415)
    yield case("no content type", post(PUBLISH, b'{"body": 1}', ""), 415)
    batch = b'{"messages": [' + b",".join([b'{"body": 1}'] * 6) + b"]}"
    yield case("batch over max_batch", post(PUBLISH + "/batch", batch), 422)
    yield case("batch of a non-list", post(PUBLISH + "/batch", b'{"messages": {}}'), 422)
    yield case(
        "redrive with ids not strings", post("/v1/queues/work/dead/redrive", b'{"ids": [1]}'), 422
    )
    # An optional body may be absent (zero bytes); anything else must be a JSON document.
    yield case("redrive with a vertical tab", post("/v1/queues/work/dead/redrive", b"\x0b"), 400)
    yield case("redrive with a form feed", post("/v1/queues/work/dead/redrive", b" \x0c "), 400)
    yield case("redrive with a newline", post("/v1/queues/work/dead/redrive", b"\n"), 400)
    yield case("redrive with no body", post("/v1/queues/work/dead/redrive", b""), 200)
    yield case("body over max_body_bytes", post(PUBLISH, b'{"body": "' + b"x" * 5000 + b'"}'), 413)
    # Auth.
    body = b'{"body": 1}'
    yield case("no token", post(PUBLISH, body, auth=""), 401, WWW_Authenticate="Bearer")
    yield case("wrong token", post(PUBLISH, body, auth="Authorization: Bearer nope\r\n"), 401)
    yield case("basic scheme", post(PUBLISH, body, auth="Authorization: Basic YTpi\r\n"), 401)
    yield case("empty bearer", post(PUBLISH, body, auth="Authorization: Bearer \r\n"), 401)
    yield case(
        "token with a prefix of a real one",
        post(PUBLISH, body, auth="Authorization: Bearer admin\r\n"),
        401,
    )
    yield case(
        "non-ascii token", post(PUBLISH, body, auth="Authorization: Bearer \xe9\xe9\r\n"), 401
    )
    yield case(
        "read token publishes",
        post(PUBLISH, body, auth="Authorization: Bearer read-secret\r\n"),
        403,
    )
    yield case(
        "publish token pauses",
        post("/v1/queues/work/pause", b"", auth="Authorization: Bearer pub-secret\r\n"),
        403,
    )
    yield case(
        "publish token lists queues",
        get("/v1/queues", auth="Authorization: Bearer pub-secret\r\n"),
        403,
    )
    yield case("metrics without token", get("/metrics", auth=""), 401)
    # Odd paths, methods and parameters.
    yield case("bad wait", get("/v1/messages/x?wait=abc"), 400)
    yield case("wait over range", get("/v1/messages/x?wait=1e309"), 400)
    yield case("unknown route", get("/v1/nothing/here"), 404)
    yield case("nul in path", get("/v1/messages/%00"), 404)
    yield case("bad percent-encoding", get("/v1/messages/%zz"), 404, 400)
    yield case("queue name not allowed", post("/v1/queues/..%2F..%2Fetc/messages", body), 404)
    yield case(
        "unknown method", b"BREW /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405
    )
    yield case(
        "delete a queue",
        b"DELETE /v1/queues/work HTTP/1.1\r\nHost: t\r\n"
        + ADMIN.encode()
        + b"Connection: close\r\n\r\n",
        405,
    )
    yield from utf8_cases()
    yield from odd_target_and_host_cases()
