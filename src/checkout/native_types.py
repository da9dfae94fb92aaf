"""`/types/typescript`, `/types/python` and `/types/metadata`: ServiceStack's "Add ServiceStack Reference".

A frontend gets typed request and response DTOs for every operation in one command
(`npx get-dtos typescript <base-url>`, `x python <base-url>`), in the form ServiceStack's
NativeTypesFeature writes them and its clients expect: request DTOs that implement
`IReturn<Response>` and name their operation and verb, property names as this service
sends them (PascalCase), and the header of options the tools read back on update.
`/types/metadata` is the JSON description (ServiceStack's `MetadataTypes`) they read.

All of it derives from `checkout.operations.OPERATIONS` and the contract's models.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from checkout.operations import OPERATIONS, Operation
from checkout.servicestack import Kind, Property, properties, snake_case

VERSION = "8.0"  # the ServiceStack DTO format these files follow
NAMESPACE = "StripeCheckout.ServiceModel"
TS_TYPES = {Kind.STRING: "string", Kind.INT: "number", Kind.GUID: "string"}
PY_TYPES = {Kind.STRING: "str", Kind.INT: "int", Kind.GUID: "str"}


def _types() -> Iterator[tuple[type[BaseModel], Operation | None]]:
    """Every DTO once, dependencies first: nested types, then each response and request."""
    seen: set[type[BaseModel]] = set()

    def nested(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
        for prop in properties(model):
            if prop.item is not None and prop.item not in seen:
                yield from nested(prop.item)
                seen.add(prop.item)
                yield prop.item

    for operation in OPERATIONS:
        for model in (operation.response, operation.request):
            for item in nested(model):
                yield item, None
        if operation.response not in seen:
            seen.add(operation.response)
            yield operation.response, None
        seen.add(operation.request)
        yield operation.request, operation


def _docstring(model: type[BaseModel]) -> str | None:
    doc = " ".join((model.__doc__ or "").split())
    return doc or None


def _header(base_url: str, comment: str, imports: str) -> list[str]:
    options = [
        "GlobalNamespace: ",
        *(["MakePropertiesOptional: False"] if comment == "//" else []),
        "AddServiceStackTypes: True",
        "AddResponseStatus: False",
        "AddImplicitVersion: ",
        "AddDescriptionAsComments: True",
        "IncludeTypes: ",
        "ExcludeTypes: ",
        f"DefaultImports: {imports}",
        *(["DataClass: ", "DataClassJson: "] if comment == "#" else []),
    ]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [
        f"Date: {now}",
        f"Version: {VERSION}",
        f'Tip: To override a DTO option, remove "{comment}" prefix before updating',
        f"BaseUrl: {base_url}",
        "",
        *(f"{comment}{option}" for option in options),
    ]


# -- TypeScript --------------------------------------------------------------------------------


def _ts_type(prop: Property) -> str:
    if prop.kind is Kind.LIST:
        assert prop.item is not None
        return f"{prop.item.__name__}[]"
    return TS_TYPES[prop.kind]


def typescript(base_url: str) -> str:
    """The TypeScript DTOs (`dtos.ts`) for `@servicestack/client`."""
    lines = ["/* Options:", *_header(base_url, "//", ""), "*/", "", "// @ts-nocheck", ""]
    lines += ["export interface IReturn<T>", "{", "    createResponse(): T;", "}", ""]
    verbs = sorted({operation.verb for operation in OPERATIONS})
    for verb in verbs:
        lines += [f"export interface I{verb.capitalize()}", "{", "}", ""]
    for model, operation in _types():
        name = model.__name__
        doc = _docstring(model)
        if doc:
            lines.append(f"/** @description {doc} */")
        implements = ""
        if operation is not None:
            for route in operation.routes:
                lines.append(f'// @Route("{route}", "{operation.verb}")')
            implements = f" implements IReturn<{operation.response.__name__}>, I{operation.verb.capitalize()}"
        lines += [f"export class {name}{implements}", "{"]
        for i, prop in enumerate(properties(model)):
            if i:
                lines.append("")
            if prop.description:
                lines.append(f"    /** @description {prop.description} */")
            optional = "" if prop.required and operation is not None else "?"
            lines.append(f"    public {prop.name}{optional}: {_ts_type(prop)};")
        lines += [
            "",
            f"    public constructor(init?: Partial<{name}>) {{ (Object as any).assign(this, init); }}",
        ]
        if operation is not None:
            lines += [
                f"    public getTypeName() {{ return '{name}'; }}",
                f"    public getMethod() {{ return '{operation.verb}'; }}",
                f"    public createResponse() {{ return new {operation.response.__name__}(); }}",
            ]
        lines += ["}", ""]
    return "\n".join(lines) + "\n"


# -- Python ------------------------------------------------------------------------------------

PY_IMPORTS = (
    "datetime,decimal,marshmallow.fields:*,servicestack:*,typing:*,dataclasses:dataclass/field,"
    "dataclasses_json:dataclass_json/LetterCase/Undefined/config,enum:Enum/IntEnum"
)


def _py_field(prop: Property) -> str:
    name = snake_case(prop.name)
    if prop.kind is Kind.LIST:
        assert prop.item is not None
        return f"{name}: List[{prop.item.__name__}] = field(default_factory=list)"
    if prop.kind is Kind.INT and not prop.nullable:
        return f"{name}: int = {prop.default or 0!r}"
    return f"{name}: Optional[{PY_TYPES[prop.kind]}] = None"


def python(base_url: str) -> str:
    """The Python DTOs (`dtos.py`) for the `servicestack` PyPI client."""
    lines = ['""" Options:', *_header(base_url, "#", PY_IMPORTS), '"""', ""]
    lines += [
        "import datetime",
        "import decimal",
        "from marshmallow.fields import *",
        "from servicestack import *",
        "from typing import *",
        "from dataclasses import dataclass, field",
        "from dataclasses_json import dataclass_json, LetterCase, Undefined, config",
        "from enum import Enum, IntEnum",
        "",
    ]
    for model, operation in _types():
        lines += ["", ""]
        if operation is not None:
            lines += [f'# @Route("{route}", "{operation.verb}")' for route in operation.routes]
        bases = ""
        if operation is not None:
            bases = f"(IReturn[{operation.response.__name__}], I{operation.verb.capitalize()})"
        lines += [
            "@dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)",
            "@dataclass",
            f"class {model.__name__}{bases}:",
        ]
        doc = _docstring(model)
        if doc:
            lines += ['    """', f"    {doc}", '    """', ""]
        for prop in properties(model):
            lines.append(f"    {_py_field(prop)}")
            if prop.description:
                lines += ['    """', f"    {prop.description}", '    """', ""]
    return "\n".join(lines) + "\n"


# -- MetadataTypes -----------------------------------------------------------------------------


def _metadata_property(prop: Property, required: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": prop.name}
    if prop.kind is Kind.LIST:
        assert prop.item is not None
        entry |= {
            "Type": "List`1",
            "Namespace": "System.Collections.Generic",
            "GenericArgs": [prop.item.__name__],
        }
    elif prop.nullable and prop.kind is not Kind.STRING:
        entry |= {
            "Type": "Nullable`1",
            "Namespace": "System",
            "IsValueType": True,
            "GenericArgs": [prop.kind.value],
        }
    else:
        entry |= {"Type": prop.kind.value, "Namespace": "System"}
        if prop.kind is not Kind.STRING:
            entry["IsValueType"] = True
    if prop.description:
        entry["Description"] = prop.description
    if required:
        entry["IsRequired"] = True
    return entry


def _metadata_type(model: type[BaseModel], operation: Operation | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": model.__name__, "Namespace": NAMESPACE}
    if operation is not None:
        entry["Implements"] = [
            {"Name": "IReturn`1", "Namespace": "ServiceStack", "GenericArgs": [operation.response.__name__]},
            {"Name": f"I{operation.verb.capitalize()}", "Namespace": "ServiceStack"},
        ]
    doc = _docstring(model)
    if doc:
        entry["Description"] = doc
    entry["Properties"] = [
        _metadata_property(prop, prop.required and operation is not None) for prop in properties(model)
    ]
    return entry


def metadata(base_url: str) -> dict[str, Any]:
    """ServiceStack's `MetadataTypes` for every operation and the types they use."""
    operation_types = {op.request for op in OPERATIONS} | {op.response for op in OPERATIONS}
    return {
        "Config": {
            "BaseUrl": base_url,
            "MakePartial": True,
            "MakeVirtual": True,
            "AddReturnMarker": True,
            "AddDescriptionAsComments": True,
            "AddServiceStackTypes": True,
            "AddResponseStatus": False,
            "MakePropertiesOptional": False,
        },
        "Namespaces": ["System", "System.Collections.Generic", "ServiceStack", NAMESPACE],
        "Types": [_metadata_type(model, None) for model, _ in _types() if model not in operation_types],
        "Operations": [
            {
                "Request": _metadata_type(op.request, op),
                "Response": _metadata_type(op.response, None),
                "Actions": list(op.verbs),
                "Method": op.verb,
                "Routes": [{"Path": route, "Verbs": op.verb} for route in op.routes],
                "Tags": list(op.tags),
            }
            for op in OPERATIONS
        ],
    }
