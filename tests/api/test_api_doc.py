"""docs/API.md, the project's API reference, is generated from GET /openapi.json and kept equal
to it: `JINAD_WRITE_API_DOC=1 pytest tests/api/test_api_doc.py` writes it again."""

from __future__ import annotations

import os
from pathlib import Path

from jinad.app import create_app

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"


def _enum_line(name: str, schema: dict) -> str:
    groups = "".join(f"; {key[2:]}: {', '.join(schema[key])}" for key in ("x-live", "x-terminal") if key in schema)
    values = ("null" if value is None else value for value in schema["enum"])
    return f"- `{name}`: {', '.join(f'`{v}`' for v in values)}{groups}"


def render(doc: dict) -> str:
    lines = [
        "# jinad API reference",
        "",
        "Generated from the daemon's own `GET /openapi.json` (tests/api/test_api_doc.py keeps the two",
        "equal); that document has every schema in full. Errors are JSON `{\"error\", \"message\"}`.",
        "",
        "| method | path | what | answers |",
        "| --- | --- | --- | --- |",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            shown = f"`{path}`" + (f" `?{'&'.join(query)}`" if query else "")
            lines.append(f"| {method.upper()} | {shown} | {op.get('summary', '')} | {', '.join(op['responses'])} |")
    schemas = doc["components"]["schemas"]
    lines += ["", "## Enumerated values", ""]
    lines.append(_enum_line("Object.state", schemas["Object"]["properties"]["state"]))
    lines.append(_enum_line("Object.kind", schemas["Object"]["properties"]["kind"]))
    lines.append(_enum_line("restart", schemas["Object"]["properties"]["restart"]))
    lines.append(_enum_line("protocol", schemas["CreateExecutor"]["properties"]["protocol"]))
    lines.append(_enum_line("Workspace.state", schemas["Workspace"]["properties"]["state"]))
    lines.append(_enum_line("Part.kind", schemas["Part"]["properties"]["kind"]))
    lines.append(_enum_line("Part.state", schemas["Part"]["properties"]["state"]))
    lines += ["", "## A Flow's parts", ""]
    for name in ("parts", "degraded"):
        lines.append(f"- `Object.{name}`: {schemas['Object']['properties'][name]['description']}")
    part = schemas["Part"]
    lines.append(f"- `Part`: {', '.join(f'`{field}`' for field in part['properties'])} "
                 f"(`state`: {part['properties']['state']['description']})")
    return "\n".join(lines) + "\n"


async def test_the_api_reference_is_the_openapi_document(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    text = render(await (await client.get("/openapi.json")).json())
    if os.environ.get("JINAD_WRITE_API_DOC"):
        API_DOC.write_text(text)
    assert API_DOC.read_text() == text, "docs/API.md is stale: JINAD_WRITE_API_DOC=1 pytest tests/api/test_api_doc.py"
