"""ServiceStack's wire behaviour, as its own clients see it: binding, validation texts, bodies.

The service replaces an operation of a ServiceStack host, and the booking frontends talk
to it with ServiceStack's typed clients. This module reproduces what ServiceStack does
on the wire, read from its source (ServiceStack.Text, the bundled FluentValidation, the
request handlers), so that those clients cannot tell the difference:

- binding: JSON bodies bind leniently (ServiceStack.Text without strict mode): names
  match case-insensitively, a number or boolean sent for a string property is taken as
  its text, a string of digits for an integer as the number, and a value that does not
  parse leaves the property at its default for validation to report. Query strings and
  form bodies bind like `StringMapTypeDeserializer`: complex values are JSV, and a value
  that does not parse is a `SerializationException` naming the key as it was sent.
- validation: FluentValidation's error codes (the validator's name without the
  `Validator` suffix), its English message texts, the display name split from the
  property name (`'Company Id' must not be empty.`), the `FieldName` path
  (`Articles[0].Quantity`) and the placeholder values as the per-error `Meta`.
- answers: the `ResponseStatus` body, `?jsconfig=` property casing, and JSONP as the
  host writes it.

docs/servicestack.md lists every rule and text, and where this service deliberately
differs. Nothing here knows about HTTP events or about checkouts.
"""

from __future__ import annotations

import json
import re
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import cache
from typing import Any, ClassVar, Union, get_args, get_origin
from urllib.parse import parse_qsl

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

SERIALIZATION_EXCEPTION = "SerializationException"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
# HostConfig.JsonpContentType; the utf-8 suffix is only appended to application/json.
JSONP_CONTENT_TYPE = "text/javascript"
_INT32 = (-(2**31), 2**31 - 1)


# -- names ------------------------------------------------------------------------------


def split_pascal_case(name: str) -> str:
    """FluentValidation's display name: `InternalReferenceId` -> `Internal Reference Id`."""
    out: list[str] = []
    for i, char in enumerate(name):
        if char.isupper() and (
            (i > 1 and not name[i - 1].isupper()) or (i + 1 < len(name) and not name[i + 1].isupper())
        ):
            out.append(" ")
        out.append(char)
    return "".join(out).strip()


def camel_case(name: str) -> str:
    """ServiceStack.Text's ToCamelCase: the leading run of capitals is lowered (`URL` -> `url`)."""
    chars = list(name)
    for i, char in enumerate(chars):
        following = chars[i + 1] if i + 1 < len(chars) else "A"
        if char.isupper() and (i == 0 or following.isupper()):
            chars[i] = char.lower()
        else:
            break
    return "".join(chars)


def snake_case(name: str) -> str:
    """ServiceStack.Text's ToLowercaseUnderscore: `SessionId` -> `session_id`."""
    return "".join(c if c.isdigit() or c.islower() or c == "_" else f"_{c.lower()}" for c in camel_case(name))


# -- the properties of a request or response DTO, as C# types -----------------------------


class Kind(StrEnum):
    """The C# types the wire models use."""

    STRING = "String"
    INT = "Int32"
    GUID = "Guid"
    LIST = "List`1"


@dataclass(frozen=True)
class CSharp:
    """Annotated marker for a property whose C# type the Python type cannot tell (`Guid?`)."""

    nullable: bool = False


@dataclass(frozen=True)
class Property:
    """One DTO property: its wire name, C# type and what the generated DTOs say about it."""

    name: str
    attribute: str
    kind: Kind
    item: type[BaseModel] | None
    nullable: bool
    required: bool
    default: Any
    description: str | None

    @property
    def display_name(self) -> str:
        return split_pascal_case(self.name)


def _kind_of(annotation: Any) -> tuple[Kind, type[BaseModel] | None, bool]:
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(members) < len(get_args(annotation))
        annotation = members[0]
    if get_origin(annotation) is list:
        [item] = get_args(annotation)
        return Kind.LIST, item, optional
    if annotation is int:
        return Kind.INT, None, optional
    if annotation is uuid.UUID:
        return Kind.GUID, None, optional
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return Kind.STRING, None, optional
    raise TypeError(f"no C# type for {annotation!r}: teach checkout.servicestack._kind_of")


@cache
def properties(model: type[BaseModel]) -> tuple[Property, ...]:
    """The model's properties in declaration order, with their C# types."""
    result = []
    for attribute, info in model.model_fields.items():
        kind, item, optional = _kind_of(info.annotation)
        marker = next((m for m in info.metadata if isinstance(m, CSharp)), None)
        default = None if info.default is PydanticUndefined else info.default
        if isinstance(default, Enum):
            default = default.value
        result.append(
            Property(
                name=info.alias or attribute,
                attribute=attribute,
                kind=kind,
                item=item,
                nullable=optional or (marker is not None and marker.nullable),
                required=info.is_required(),
                default=default,
                description=info.description,
            )
        )
    return tuple(result)


def _property_map(model: type[BaseModel], *, snake: bool) -> dict[str, Property]:
    names: dict[str, Property] = {}
    for prop in properties(model):
        names[prop.name.lower()] = prop
        if snake:
            # ServiceStack.Text's lenient convention, on when the casing is snake_case.
            names[snake_case(prop.name).replace("_", "")] = prop
    return names


def _lookup(names: Mapping[str, Property], key: str, *, snake: bool) -> Property | None:
    prop = names.get(key.lower())
    if prop is None and snake:
        prop = names.get(key.lower().replace("_", ""))
    return prop


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """A new DTO: every property at its C# default (or its declared initializer)."""
    values: dict[str, Any] = {}
    for prop in properties(model):
        if prop.default is not None:
            values[prop.name] = prop.default
        elif prop.kind is Kind.INT and not prop.nullable:
            values[prop.name] = 0
        else:
            values[prop.name] = None
    return values


# -- errors ---------------------------------------------------------------------------------


class Meta(dict[str, str]):
    """A `Meta` dictionary: its keys are data, so `?jsconfig=` casing leaves them alone."""


@dataclass(frozen=True)
class Failure:
    """One entry of `ResponseStatus.Errors`."""

    error_code: str
    field_name: str
    message: str
    meta: Meta | None = None


class BindingFailed(Exception):
    """The request could not be deserialized: ServiceStack's `SerializationException` (400)."""

    def __init__(self, message: str, errors: Sequence[Failure] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)


class ValidationFailed(Exception):
    """The request DTO broke its validation rules (400, written by ValidationFeature)."""

    def __init__(self, failures: Sequence[Failure]) -> None:
        super().__init__(failures[0].message)
        self.failures = list(failures)


def error_body(error_code: str, message: str, errors: Iterable[Failure] = ()) -> dict[str, Any]:
    """The `{"ResponseStatus": ...}` body every error carries, nulls omitted."""
    rendered = []
    for error in errors:
        item: dict[str, Any] = {"ErrorCode": error.error_code}
        if error.field_name:
            item["FieldName"] = error.field_name
        item["Message"] = error.message
        if error.meta:
            item["Meta"] = error.meta
        rendered.append(item)
    return {"ResponseStatus": {"ErrorCode": error_code, "Message": message, "Errors": rendered}}


def deserialize_error(operation: str, detail: str) -> BindingFailed:
    """What a body that is no `{...}` object of the DTO answers (ServiceStackHandlerBase)."""
    return BindingFailed(
        f"Could not deserialize 'application/json' request using {operation}'\nError: {detail}"
    )


# -- JSON binding (ServiceStack.Text, lenient) ------------------------------------------


class _Unparsable(Exception):
    """A value ServiceStack.Text cannot convert; the property keeps its default."""


def _as_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    # A number is taken as its text; an object or array as its JSON text.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise _Unparsable
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
    else:
        raise _Unparsable
    if not _INT32[0] <= number <= _INT32[1]:
        raise _Unparsable
    return number


_GUID_DIGITS = r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_GUID = re.compile(rf"(?:{_GUID_DIGITS})|\{{(?:{_GUID_DIGITS})\}}|\((?:{_GUID_DIGITS})\)", re.IGNORECASE)


def parse_guid(text: str) -> uuid.UUID | None:
    """.NET's Guid.Parse spellings: 32 digits, dashed, in braces or in parentheses."""
    text = text.strip()
    if _GUID.fullmatch(text) is None:
        return None
    return uuid.UUID(re.sub(r"[^0-9a-fA-F]", "", text))


def _as_guid(value: Any) -> uuid.UUID:
    parsed = parse_guid(value) if isinstance(value, str) else None
    if parsed is None:
        raise _Unparsable
    return parsed


def _coerce(prop: Property, value: Any, *, snake: bool) -> Any:
    if value is None:
        if prop.kind is Kind.INT and not prop.nullable:
            raise _Unparsable
        return None
    if prop.kind is Kind.STRING:
        return _as_string(value)
    if prop.kind is Kind.INT:
        return _as_int(value)
    if prop.kind is Kind.GUID:
        return _as_guid(value)
    assert prop.item is not None
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise _Unparsable
    return [bind_object(prop.item, item, snake=snake) for item in value]


def bind_object(model: type[BaseModel], data: Mapping[str, Any], *, snake: bool = False) -> dict[str, Any]:
    """A JSON object bound as ServiceStack.Text binds it: a dict keyed by wire names.

    Every property is present, at its default unless the object set it; a value that
    does not convert is ignored, as ServiceStack.Text ignores it outside strict mode.
    Later spellings of a property overwrite earlier ones, as they do there.
    """
    names = _property_map(model, snake=snake)
    values = defaults(model)
    for key, value in data.items():
        prop = _lookup(names, str(key), snake=snake)
        if prop is None:
            continue
        try:
            values[prop.name] = _coerce(prop, value, snake=snake)
        except _Unparsable:
            continue
    return values


def bind_json(model: type[BaseModel], text: str, *, snake: bool = False) -> dict[str, Any]:
    """A JSON request body; anything but an object of the DTO is a serialization failure."""
    if not text.strip():
        return defaults(model)  # an empty body is an empty DTO
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise deserialize_error(model.__name__, f"{exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise deserialize_error(model.__name__, "the JSON is nested too deeply") from None
    if data is None:
        return defaults(model)
    if not isinstance(data, dict):
        start = text.strip()[:50]
        raise deserialize_error(
            model.__name__,
            f"Type definitions should start with a '{{', expecting serialized type '{model.__name__}', "
            f"got string starting with: {start}",
        )
    return bind_object(model, data, snake=snake)


# -- query string and form binding (StringMapTypeDeserializer, JSV values) ---------------


class _JsvError(Exception):
    pass


def parse_jsv(text: str) -> Any:
    """A JSV value (`[{ArticleId:42,ArticleTypeId:1}]`); JSON-style quotes are read too.

    Scalars stay text: the property they bind to converts them.
    """
    value, end = _jsv_value(text, 0)
    if text[end:].strip():
        raise _JsvError(text)
    return value


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _jsv_value(text: str, i: int) -> tuple[Any, int]:
    i = _skip_space(text, i)
    if i >= len(text):
        return "", i
    if text[i] == "[":
        return _jsv_items(text, i + 1, "]")
    if text[i] == "{":
        return _jsv_items(text, i + 1, "}")
    if text[i] == '"':
        return _jsv_quoted(text, i + 1)
    end = i
    while end < len(text) and text[end] not in ",:]}":
        end += 1
    return text[i:end].strip(), end


def _jsv_items(text: str, i: int, close: str) -> tuple[Any, int]:
    """The items of a `[...]` list or the `key:value` pairs of a `{...}` object."""
    items: list[Any] = []
    pairs: dict[str, Any] = {}
    i = _skip_space(text, i)
    if text[i : i + 1] == close:
        return (pairs if close == "}" else items), i + 1
    while True:
        value, i = _jsv_value(text, i)
        if close == "}":
            if not isinstance(value, str) or text[i : i + 1] != ":":
                raise _JsvError(text)
            pairs[value], i = _jsv_value(text, i + 1)
        else:
            items.append(value)
        i = _skip_space(text, i)
        if text[i : i + 1] == close:
            return (pairs if close == "}" else items), i + 1
        if text[i : i + 1] != ",":
            raise _JsvError(text)
        i += 1


def _jsv_quoted(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] != '"':
                return "".join(out), i + 1
            i += 1  # JSV escapes a quote by doubling it
        out.append(text[i])
        i += 1
    raise _JsvError(text)


def _parse_text(prop: Property, text: str) -> Any:
    """One query-string or form value for a property; raises on what JSV cannot convert."""
    if prop.kind is Kind.STRING:
        return text  # strings are never JSV-decoded
    if prop.kind is Kind.INT:
        return _as_int(text)
    if prop.kind is Kind.GUID:
        return _as_guid(text)
    assert prop.item is not None
    try:
        items = parse_jsv(text)
    except _JsvError:
        raise _Unparsable from None
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise _Unparsable
    return [bind_object(prop.item, item) for item in items]


def bind_pairs(
    model: type[BaseModel],
    pairs: Iterable[tuple[str, str]],
    values: dict[str, Any] | None = None,
    *,
    only_defaults: bool = False,
    snake: bool = False,
) -> dict[str, Any]:
    """Bind key/value pairs (query string or form body) onto the DTO's values.

    Empty values and unknown keys are skipped. With `only_defaults` a pair sets only a
    property the body left at its default, as the predefined routes apply the query
    string to a POST. Values that do not convert are collected and raised together.
    """
    names = _property_map(model, snake=snake)
    values = defaults(model) if values is None else values
    initial = defaults(model)
    errors: list[Failure] = []
    for key, text in pairs:
        if not text:
            continue
        prop = _lookup(names, key, snake=snake)
        if prop is None:
            continue
        if only_defaults and values[prop.name] not in (None, initial[prop.name]):
            continue
        try:
            values[prop.name] = _parse_text(prop, text)
        except _Unparsable:
            errors.append(Failure(SERIALIZATION_EXCEPTION, key, f"'{text}' is an Invalid value for '{key}'"))
    if errors:
        raise BindingFailed(f"Unable to bind to request '{model.__name__}'", errors)
    return values


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def read_request(
    model: type[BaseModel],
    *,
    method: str,
    body: str | None,
    content_type: str | None,
    query: Sequence[tuple[str, str]],
    snake: bool = False,
) -> dict[str, Any]:
    """Bind a request to its DTO as ServiceStack's predefined and custom routes do.

    No body on GET/DELETE/OPTIONS/HEAD: the query string. A form body: the query string,
    then the form over it. Otherwise the body is JSON (whatever its Content-Type says,
    as the JSON handlers read it), and the query string fills what it left unset.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    has_body = bool(body)
    if not has_body and method.upper() in {"GET", "DELETE", "OPTIONS", "HEAD"}:
        return bind_pairs(model, query, snake=snake)
    if media in FORM_CONTENT_TYPES:
        values = bind_pairs(model, query, snake=snake)
        if media == "multipart/form-data":
            raise BindingFailed(f"Unable to bind to request '{model.__name__}'")
        return bind_pairs(model, parse_qsl(body or "", keep_blank_values=True), values, snake=snake)
    values = bind_json(model, body or "", snake=snake)
    if query:
        values = bind_pairs(model, query, values, only_defaults=True, snake=snake)
    return values


# -- validation (FluentValidation as bundled with ServiceStack, English texts) ----------


def _display_value(value: Any) -> str | None:
    """A placeholder value as ServiceStack's ConvertTo<string> renders it into Meta."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, list):
        return "[" + ",".join(_jsv(item) for item in value) + "]"
    return str(value)


def _jsv(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_jsv(v)}" for k, v in value.items() if v is not None) + "}"
    return _display_value(value) or ""


class Check:
    """A property validator: its ErrorCode, its message template and its test."""

    code: ClassVar[str]
    template: ClassVar[str]

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        """None when the value passes; otherwise the placeholder values of the message."""
        raise NotImplementedError


@dataclass(frozen=True)
class NotEmpty(Check):
    """Null, an empty or white-space string, an empty list, 0 or the empty GUID fail."""

    code = "NotEmpty"
    template = "'{PropertyName}' must not be empty."

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        empty = (
            value is None
            or (isinstance(value, str) and not value.strip())
            or (isinstance(value, list) and not value)
            or (isinstance(value, uuid.UUID) and value.int == 0)
            or (isinstance(value, int) and not isinstance(value, bool) and value == 0)
        )
        return {} if empty else None


@dataclass(frozen=True)
class GreaterThan(Check):
    code = "GreaterThan"
    template = "'{PropertyName}' must be greater than '{ComparisonValue}'."
    value: int

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        if value is None or value > self.value:
            return None
        return {"ComparisonValue": self.value, "ComparisonProperty": ""}


@dataclass(frozen=True)
class InclusiveBetween(Check):
    code = "InclusiveBetween"
    template = "'{PropertyName}' must be between {From} and {To}. You entered {PropertyValue}."
    low: int
    high: int

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        if value is None or self.low <= value <= self.high:
            return None
        return {"From": self.low, "To": self.high, "Value": value}


@dataclass(frozen=True)
class MaximumLength(Check):
    code = "MaximumLength"
    template = (
        "The length of '{PropertyName}' must be {MaxLength} characters or fewer. "
        "You entered {TotalLength} characters."
    )
    max: int

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        if value is None or len(str(value)) <= self.max:
            return None
        return {"MinLength": 0, "MaxLength": self.max, "TotalLength": len(str(value))}


@dataclass(frozen=True)
class Must(Check):
    """`Must(predicate)`: FluentValidation's PredicateValidator and its generic text."""

    code = "Predicate"
    template = "The specified condition was not met for '{PropertyName}'."
    predicate: Callable[[Any], bool]

    def failure_args(self, value: Any) -> dict[str, Any] | None:
        return None if self.predicate(value) else {}


@dataclass(frozen=True)
class Rule:
    """`RuleFor(x => x.Property)` with its validators, or `RuleForEach(...).SetValidator(...)`."""

    property: str
    checks: tuple[Check, ...] = ()
    each: type[BaseModel] | None = None


def rule(prop: str, *checks: Check) -> Rule:
    """`RuleFor(x => x.<prop>)` followed by the checks, all evaluated (CascadeMode.Continue)."""
    return Rule(prop, checks)


def each(prop: str, model: type[BaseModel]) -> Rule:
    """`RuleForEach(x => x.<prop>).SetValidator(<model's validator>)`."""
    return Rule(prop, each=model)


_PLACEHOLDER = re.compile(r"{([^{}:]+)}")


def _message(template: str, placeholders: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in placeholders:
            return match.group(0)
        return _display_value(placeholders[key]) or ""

    return _PLACEHOLDER.sub(value, template)


def validate(
    model: type[BaseModel],
    values: Mapping[str, Any],
    rules: Callable[[type[BaseModel]], Sequence[Rule]],
    *,
    path: str = "",
    index: int | None = None,
) -> list[Failure]:
    """Every failure of the model's rules, in rule order; child items by their path."""
    failures: list[Failure] = []
    for item in rules(model):
        value = values.get(item.property)
        field_name = f"{path}{item.property}"
        for check in item.checks:
            args = check.failure_args(value)
            if args is None:
                continue
            placeholders: dict[str, Any] = {
                **args,
                "PropertyName": split_pascal_case(item.property),
                "PropertyValue": value,
            }
            if index is not None:
                placeholders["CollectionIndex"] = index
            meta = Meta({k: text for k, v in placeholders.items() if (text := _display_value(v)) is not None})
            failures.append(Failure(check.code, field_name, _message(check.template, placeholders), meta))
        if item.each is not None and isinstance(value, list):
            for position, child in enumerate(value):
                failures.extend(
                    validate(item.each, child, rules, path=f"{field_name}[{position}].", index=position)
                )
    return failures


# -- answers: jsconfig casing and JSONP ----------------------------------------------------


class TextCase(StrEnum):
    """The property-name casings `?jsconfig=` can ask for."""

    DEFAULT = "default"
    PASCAL = "pascal"
    CAMEL = "camel"
    SNAKE = "snake"


_CASE_VALUES = {
    "d": TextCase.DEFAULT,
    "default": TextCase.DEFAULT,
    "pc": TextCase.PASCAL,
    "pascalcase": TextCase.PASCAL,
    "cc": TextCase.CAMEL,
    "camelcase": TextCase.CAMEL,
    "sc": TextCase.SNAKE,
    "snakecase": TextCase.SNAKE,
}
_CASE_FLAGS = {
    "eccn": TextCase.CAMEL,
    "emitcamelcasenames": TextCase.CAMEL,
    "epcn": TextCase.PASCAL,
    "emitpascalcasenames": TextCase.PASCAL,
    "elun": TextCase.SNAKE,
    "emitlowercaseunderscorenames": TextCase.SNAKE,
}


def text_case(jsconfig: str | None) -> TextCase:
    """The casing a `jsconfig` value asks for (JsConfig.CreateScope); other options are ignored.

    `key:value` pairs separated by commas, names case-insensitive, long or abbreviated;
    a flag without a value, or with any value but `false`/`0`, is on.
    """
    case = TextCase.DEFAULT
    for item in (jsconfig or "").split(","):
        key, _, value = item.partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if key in _CASE_FLAGS and (not _ or value not in {"false", "0"}):
            case = _CASE_FLAGS[key]
        elif key in {"tc", "textcase"} and value in _CASE_VALUES:
            case = _CASE_VALUES[value]
    return case


def recase(body: Any, case: TextCase) -> Any:
    """Property names in the asked casing; `Meta` keys and values are left as they are."""
    if case in (TextCase.DEFAULT, TextCase.PASCAL) or isinstance(body, Meta):
        return body
    rename = camel_case if case is TextCase.CAMEL else snake_case
    if isinstance(body, dict):
        return {rename(key): recase(value, case) for key, value in body.items()}
    if isinstance(body, list):
        return [recase(item, case) for item in body]
    return body


_UNSAFE_CALLBACK_CHARS = re.compile(r"[^A-Za-z0-9._]")


def jsonp_callback(callback: str | None) -> str | None:
    """The callback name ServiceStack echoes: every character outside `A-Za-z0-9._` becomes `_`."""
    if not callback:
        return None
    return _UNSAFE_CALLBACK_CHARS.sub("_", callback)


class Origin(StrEnum):
    """Where an answer comes from, which decides how ServiceStack writes it as JSONP."""

    SERVICE = "service"  # the service's result or its exception: wrapped, status kept
    HOST = "host"  # an exception outside the service (binding, routing): wrapped, status 200
    VALIDATION = "validation"  # ValidationFeature writes its error itself: never wrapped


@dataclass(frozen=True)
class Answer:
    """An HTTP answer ready to send."""

    status: int
    content_type: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def render(status: int, body: Any, query: Mapping[str, str], origin: Origin = Origin.SERVICE) -> Answer:
    """The answer's bytes: JSON in the asked casing, wrapped as JSONP where ServiceStack wraps it."""
    text = json.dumps(
        recase(body, text_case(query.get("jsconfig"))), separators=(",", ":"), ensure_ascii=False
    )
    callback = jsonp_callback(query.get("callback"))
    if callback is None or origin is Origin.VALIDATION:
        return Answer(status, JSON_CONTENT_TYPE, text)
    return Answer(200 if origin is Origin.HOST else status, JSONP_CONTENT_TYPE, f"{callback}({text})")
