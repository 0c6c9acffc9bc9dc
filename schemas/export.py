"""JSON Schemas of the events for producers, checked into ``docs/schemas``.

Generated from the models so the published schema cannot drift from what the
projector accepts; ``projector export-schemas --check`` (run in CI) catches a
model change whose schemas were not regenerated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.errors import ExportError
from schemas.union import EVENT_ADAPTER, MODEL_OF_TYPE

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """File name -> file content of every schema file, deterministic."""
    files: dict[str, str] = {}
    for type_, model in sorted(MODEL_OF_TYPE.items()):
        schema = model.model_json_schema(mode="validation")
        files[f"{type_}.json"] = _dump({"$schema": _DIALECT, "$id": f"{type_}.json", **schema})
    union = EVENT_ADAPTER.json_schema(mode="validation")
    union["title"] = "Event"
    union["description"] = (
        "Any event of contract v1; `type` selects the member. A record value is one "
        "event or a non-empty array of events."
    )
    files["event.json"] = _dump({"$schema": _DIALECT, "$id": "event.json", **union})
    return files


def stale_files(out_dir: Path) -> list[Path]:
    """Schema files in ``out_dir`` that are missing or differ from the models."""
    stale = []
    for name, content in render_schemas().items():
        path = out_dir / name
        try:
            current = path.read_text(encoding="utf-8") if path.exists() else None
        except OSError as e:
            raise ExportError(f"cannot read {path}: {e}") from e
        if current != content:
            stale.append(path)
    return stale


def export_schemas(out_dir: Path | str) -> list[Path]:
    """Write one JSON Schema per event type plus ``event.json`` for the union.

    Args:
        out_dir: Folder to write into; created if missing.

    Returns:
        The paths written, sorted by name.
    """
    out = Path(out_dir)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in render_schemas().items():
            path = out / name
            # newline="\n": byte-identical files on every platform.
            with path.open("w", encoding="utf-8", newline="\n") as f:
                f.write(content)
            written.append(path)
    except OSError as e:
        raise ExportError(f"cannot write schemas to {out}: {e}") from e
    return sorted(written)
