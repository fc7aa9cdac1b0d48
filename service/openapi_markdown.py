"""docs/api.md: the API reference, written from the OpenAPI document (openapi.py), which is
itself generated from the types the routes encode. Regenerate it with

    python -m service.openapi_markdown > docs/api.md

tests/test_api_types.py fails while the committed file differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .openapi import openapi_document

PROBLEM_JSON = "application/problem+json"
HEADER = """\
# Spool HTTP API reference

<!-- Generated from the OpenAPI document (`GET /openapi.json`) by
`python -m service.openapi_markdown > docs/api.md`: edit the types, not this file. -->

{description}

Request and answer bodies are JSON (`application/json`); every error is
`application/problem+json` ([Problem](#problem)). With `auth.tokens` set, send
`Authorization: Bearer TOKEN`; a token's scopes decide which routes it may call (README,
Operations, "Auth"). The same document, machine-readable, is served at `GET /openapi.json`.
"""


def markdown(doc: dict[str, Any]) -> str:
    out = [HEADER.format(description=doc["info"]["description"]), "## Routes\n"]
    out.append("| method | path | does | answers |")
    out.append("|---|---|---|---|")
    routes = [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    ]
    for path, method, op in routes:
        answers = ", ".join(_status_codes(op["responses"]))
        out.append(f"| {method.upper()} | `{path}` | {op['summary']} | {answers} |")
    out.append("")
    for path, method, op in routes:
        out.extend(_route(path, method, op))
    out.append("## Types\n")
    for name, schema in sorted(doc["components"]["schemas"].items()):
        out.extend(_type(name, schema))
    return "\n".join(out).rstrip() + "\n"


def _status_codes(responses: dict[str, Any]) -> list[str]:
    """Every status a route answers, lowest first, its successes in bold."""
    return [
        code if _problem(responses[code]) else f"**{code}**" for code in sorted(responses, key=int)
    ]


def _problem(answer: dict[str, Any]) -> bool:
    return PROBLEM_JSON in answer.get("content", {})


def _route(path: str, method: str, op: dict[str, Any]) -> list[str]:
    out = [f"### {method.upper()} `{path}`\n", f"{op['summary']}.\n"]
    if "description" in op:
        out.append(f"{op['description']}\n")
    parameters = op.get("parameters", [])
    if parameters:
        out.append("| parameter | in | required | type |")
        out.append("|---|---|---|---|")
        for p in parameters:
            required = "yes" if p.get("required") else "no"
            out.append(f"| `{p['name']}` | {p['in']} | {required} | {_describe(p['schema'])} |")
        out.append("")
    body = op.get("requestBody")
    if body is not None:
        required = "required" if body.get("required") else "optional: no body stands for `{}`"
        out.append(f"Request body ({required}): {_content(body['content'])}.\n")
    problems = []
    for code in sorted(op["responses"], key=int):
        answer = op["responses"][code]
        if _problem(answer):
            problems.append(code)
            continue
        said = "" if answer["description"] == op["summary"] else f" {answer['description']}"
        content = answer.get("content")
        out.append(f"- **{code}**{said}" + (f": {_content(content)}" if content else ""))
        for name, header in answer.get("headers", {}).items():
            out.append(f"  - header `{name}`: {header['description']}")
    if problems:
        out.append(f"- problems ([Problem](#problem)): {', '.join(problems)}")
    out.append("")
    return out


def _content(content: dict[str, Any]) -> str:
    return "; ".join(f"{_describe(c['schema'])} (`{kind}`)" for kind, c in content.items())


def _type(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name}\n"]
    if "description" in schema:
        out.append(" ".join(schema["description"].split()) + "\n")
    if "enum" in schema:
        out.append("One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".\n")
        return out
    required = set(schema.get("required", []))
    out.append("| field | type | required | notes |")
    out.append("|---|---|---|---|")
    for field, spec in schema["properties"].items():
        notes = _notes(spec)
        if "default" in spec:
            notes.append(f"default `{json.dumps(spec['default'])}`")
        yes = "yes" if field in required else "no"
        out.append(f"| `{field}` | {_describe(spec)} | {yes} | {'; '.join(notes)} |")
    if schema.get("additionalProperties") is False:
        out.append("\nOther fields are refused (422).")
    out.append("")
    return out


def _describe(schema: dict[str, Any]) -> str:
    """A JSON schema as a short phrase: `string ≤ 200 chars`, `list of [X](#x)`, ..."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        kinds = [_describe(s) for s in schema["anyOf"]]
        return " or ".join(kinds)
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "any JSON"
    if kind == "array":
        return f"list of {_describe(schema['items'])}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map of string to {_describe(schema['additionalProperties'])}"
    return " ".join([str(kind), *_bounds(schema)])


def _bounds(schema: dict[str, Any]) -> list[str]:
    marks = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minLength": "length ≥",
        "maxLength": "length ≤",
    }
    found = [f"{mark} {_number(schema[key])}" for key, mark in marks.items() if key in schema]
    if "pattern" in schema:
        found.append(f"matching `{schema['pattern']}`")
    return [", ".join(found)] if found else []


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _notes(spec: dict[str, Any]) -> list[str]:
    return [" ".join(spec["description"].split())] if "description" in spec else []


def main() -> int:
    sys.stdout.write(markdown(openapi_document()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
