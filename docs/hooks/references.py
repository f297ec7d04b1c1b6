"""MkDocs hook: the references that are generated from the code at build time, offline.

- ``<!-- generated: settings -->``: one table per settings section, from the pydantic models of
  :mod:`rulerag.config` and :mod:`server.config` (key, environment variable, type, default,
  description);
- ``<!-- generated: openapi -->``: the HTTP API from the FastAPI app's OpenAPI schema
  (``server.app.create_app(...).openapi()``), rendered by essentials-openapi; the schema itself is
  published beside the site as ``openapi.json``;
- ``<!-- generated: cli -->``: every command of the Typer app :data:`rulerag.cli.app`, with Typer's
  own Markdown generator (what ``typer rulerag.cli utils docs`` prints).
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- CLI


def cli_markdown() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from rulerag.cli import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=typer.Context(command, info_name="rulerag"), name="rulerag", indent=1)
    return text.replace(f"{ROOT}/", "")  # defaults such as the demo index are absolute paths of this checkout


# ----------------------------------------------------------------------------- OpenAPI


@cache
def openapi_schema() -> dict[str, Any]:
    """The web API's schema with default limits, no API keys and no index loaded."""
    from server.app import create_app
    from server.config import ServerSettings

    from rulerag.config import Settings

    app = create_app(ROOT / "indexes" / "demo", ROOT / "rules" / "demo.jsonl", Settings(),
                     api_keys=set(), server_settings=ServerSettings())
    return app.openapi()


def openapi_markdown() -> str:
    from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler

    text = OpenAPIV3DocumentationHandler(openapi_schema(), style="MKDOCS").write()
    # the page has its own title: demote the generated headings one level
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "openapi.json", content=json.dumps(openapi_schema(), indent=2)))
    return files


# ----------------------------------------------------------------------------- settings


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if annotation is type(None):
        return "`None`"
    return f"`{getattr(annotation, '__name__', str(annotation))}`"


def _bounds(info: FieldInfo) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{signs[k]} {getattr(m, k)}" for m in info.metadata for k in signs if getattr(m, k, None) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if isinstance(value, enum.Enum):
        value = value.value
    return "`None`" if value is None else f"`{json.dumps(value) if isinstance(value, str) else value}`"


def settings_table(model: type[BaseModel], env_prefix: str, key_prefix: str = "") -> str:
    rows = ["| key | environment variable | type | default | description |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key_prefix}{name}` | `{env_prefix}{name.upper()}` | {_type_name(info.annotation)}{_bounds(info)} "
                    f"| {_default(info)} | {desc} |")
    return "\n".join(rows)


def settings_markdown() -> str:
    from server.config import ServerSettings

    from rulerag.config import Settings

    parts = []
    for section, info in Settings.model_fields.items():
        model = info.annotation
        doc = re.sub(r":\w+:`", "`", (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
        parts += [f"### `{section}`", doc, settings_table(model, f"RULERAG_{section.upper()}__", f"{section}.")]
    parts += ["### Web server (`RULERAG_SERVER__*`)",
              "Read by `rulerag serve` and `server.app.create_app` from the environment only "
              "(`server.config.ServerSettings`).",
              settings_table(ServerSettings, "RULERAG_SERVER__")]
    return "\n\n".join(p for p in parts if p)


GENERATED = {
    "<!-- generated: cli -->": cli_markdown,
    "<!-- generated: openapi -->": openapi_markdown,
    "<!-- generated: settings -->": settings_markdown,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    for marker, render in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
