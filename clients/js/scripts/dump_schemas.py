"""JSON Schema of the payload models the services validate with, for the SDK's generated types.

Every pydantic model defined in the modules below (whatever they hold when this runs) goes into
one schema per module under ``clients/js/schemas/``; ``scripts/gen-types.mjs`` turns those into
``src/generated/*.ts`` with json-schema-to-typescript.

    .venv/bin/python clients/js/scripts/dump_schemas.py            # rewrite the schemas
    .venv/bin/python clients/js/scripts/dump_schemas.py --check    # exit 1 when they are stale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = HERE.parent / "schemas"

#: schema file name -> (module, title of the union of its models)
MODULES = {
    "realtime-payloads": ("services.realtime.payloads", "RealtimePayload"),
    "boards-payloads": ("services.boards.payloads", "BoardsPayload"),
    "board-events": ("services.boards.event_schemas", "BoardEventData"),
}


def models_of(module_name: str) -> list[type[BaseModel]]:
    module = importlib.import_module(module_name)
    found = [
        obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module.__name__
        and not name.startswith("_")
    ]
    return sorted(found, key=lambda model: model.__name__)


def _strip_titles(node: Any, top: bool = False) -> Any:
    """Pydantic titles every property; the generator would make a named type of each."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "title" and not top and isinstance(value, str):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: _strip_titles(prop) for name, prop in value.items()}
            else:
                out[key] = _strip_titles(value)
        return out
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def schema_for(module_name: str, title: str) -> dict[str, Any]:
    models = models_of(module_name)
    definitions: dict[str, Any] = {}
    if models:
        _, combined = models_json_schema(
            [(model, "validation") for model in models], ref_template="#/definitions/{model}"
        )
        definitions = combined.get("$defs", {})
    definitions = {name: _strip_titles(schema, top=True) for name, schema in sorted(definitions.items())}
    for schema in definitions.values():
        # pydantic's default is to ignore unknown keys unless a model says "allow"
        schema.setdefault("additionalProperties", False)
    root: dict[str, Any] = {
        "$comment": f"generated from {module_name} by clients/js/scripts/dump_schemas.py; do not edit",
        "title": title,
        "definitions": definitions,
    }
    if models:
        root["anyOf"] = [{"$ref": f"#/definitions/{model.__name__}"} for model in models]
    else:
        root["type"] = "null"  # nothing defined there (yet)
    return root


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed schemas are stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, (module_name, title) in MODULES.items():
        path = OUT / f"{name}.schema.json"
        text = render(schema_for(module_name, title))
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            "stale generated schemas (run `make sdk-types`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
