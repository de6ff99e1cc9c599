"""The schemas of the relay's OpenAPI document (``components/schemas``), generated
from the types of the bodies the relay reads and writes (:mod:`.api_types`), and
the small shapes the paths share with them (slots, tenant ids, sizes).

Split from :mod:`backchannel.relay.openapi`, which assembles the paths.
"""

from __future__ import annotations

import copy
import functools
from typing import Annotated, Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from backchannel.relay import api_types as api
from backchannel.relay.settings import RelaySettings

REF = "#/components/schemas/"
ERROR_REF = {"$ref": REF + "Error"}


def ref(tp: type) -> dict[str, str]:
    """A reference to the named schema of one of :mod:`.api_types`' bodies."""
    if tp not in api.COMPONENTS:
        raise KeyError(f"{tp.__name__} is not a body of the relay's document")
    return {"$ref": REF + tp.__name__}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body or answer with ``schema``."""
    return {"application/json": {"schema": schema}}


def error_answer(description: str) -> dict[str, Any]:
    """An error answer (the ``Error`` schema) described as ``description``."""
    return {"description": description, "content": json_content(ERROR_REF)}


def _untitled(schema: Any) -> Any:
    """``schema`` without the titles pydantic derives from names (they repeat them)."""
    if isinstance(schema, dict):
        return {
            k: _untitled(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema


def schema_of(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one of :mod:`.api_types`' constrained shapes (a path parameter)."""
    return dict(_untitled(TypeAdapter(tp).json_schema()))


SLOT = schema_of(api.Slot)
TENANT_ID = schema_of(api.TenantId)
U63 = schema_of(api.U63)
SIZE = schema_of(api.Size)


@functools.cache
def _generated() -> dict[str, Any]:
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (tp.__name__, "validation", TypeAdapter(tp)) for tp in api.COMPONENTS
    ]
    _, defs = TypeAdapter.json_schemas(inputs, ref_template=REF + "{model}")
    schemas: dict[str, Any] = _untitled(defs["$defs"])
    return {tp.__name__: schemas[tp.__name__] for tp in api.COMPONENTS}


def component_schemas(settings: RelaySettings) -> dict[str, Any]:
    """The named schemas for a relay with these settings (cell size, limits): the
    generated ones, with the bounds that are a relay's own set on them."""
    schemas = copy.deepcopy(_generated())

    def prop(name: str, field: str) -> dict[str, Any]:
        found: dict[str, Any] = schemas[name]["properties"][field]
        return found

    prop("TenantRequest", "quota_cells")["maximum"] = settings.max_quota_cells
    prop("SlotList", "slots")["maxItems"] = settings.max_batch
    prop("Info", "cell_size")["const"] = settings.cell_size
    prop("Info", "max_batch")["const"] = settings.max_batch
    cell = Annotated[str, api.base64_of(settings.cell_size)]
    schemas["IntakeAnswer"]["properties"]["cell"] = schema_of(cell)
    for value in prop("Cells", "cells")["patternProperties"].values():
        value["description"] = f"standard base64 of the {settings.cell_size}-byte cell"
    return schemas
