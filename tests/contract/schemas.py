"""Reference schemas the emulators are judged by: Google's discovery documents (shipped in
google-api-python-client) and Slack's OpenAPI 2.0 spec (MIT, copied from SlackAPI's repository)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import googleapiclient
import jsonschema

_DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
_SLACK_SPEC = Path(__file__).parent / "specs" / "slack_web_openapi_v2.json"

_FORMATS = {
    "int64": {"type": "string", "pattern": r"^-?\d+$"},
    "uint64": {"type": "string", "pattern": r"^\d+$"},
    "google-datetime": {
        "type": "string",
        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$",
    },
    "google-duration": {"type": "string", "pattern": r"^-?\d+(\.\d{1,9})?s$"},
    "byte": {"type": "string", "pattern": r"^[A-Za-z0-9+/_-]*={0,2}$"},
}


def _convert(prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        return {"$ref": f"#/definitions/{prop['$ref']}"}
    kind = prop.get("type")
    if kind == "any":
        return {}
    if kind == "string" and prop.get("format") in _FORMATS:
        return dict(_FORMATS[prop["format"]])
    if kind == "string" and "enum" in prop:
        return {"type": "string", "enum": prop["enum"]}
    if kind == "array":
        return {"type": "array", "items": _convert(prop.get("items", {"type": "any"}))}
    if kind == "object":
        if "properties" in prop:
            return _object(prop)
        extra = prop.get("additionalProperties")
        return {"type": "object", "additionalProperties": _convert(extra) if extra else {}}
    if kind in ("string", "integer", "number", "boolean"):
        return {"type": kind}
    raise ValueError(f"unhandled discovery property {prop}")


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown properties are refused: an emulator must not invent fields the real API lacks."""
    return {
        "type": "object",
        "properties": {name: _convert(p) for name, p in schema.get("properties", {}).items()},
        "additionalProperties": False,
    }


@functools.cache
def discovery(api: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((_DISCOVERY / f"{api}.json").read_text())
    return document


def google_validator(api: str, schema: str) -> jsonschema.Draft7Validator:
    """A validator for one schema of a discovery document, e.g. ("run.v2", "GoogleCloudRunV2Service")."""
    definitions = {name: _object(s) for name, s in discovery(api)["schemas"].items()}
    return jsonschema.Draft7Validator({"$ref": f"#/definitions/{schema}", "definitions": definitions})


def assert_google(api: str, schema: str, body: Any) -> None:
    errors = sorted(google_validator(api, schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


@functools.cache
def _slack_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(_SLACK_SPEC.read_text())
    return spec


def assert_slack(method: str, body: dict[str, Any]) -> None:
    """Validate a Web API response against the spec's success or error schema, as body['ok'] says."""
    spec = _slack_spec()
    operation = next(iter(spec["paths"][f"/{method}"].values()))
    schema = operation["responses"]["200" if body.get("ok") else "default"]["schema"]
    validator = jsonschema.Draft4Validator({**schema, "definitions": spec["definitions"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method}: " + "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
