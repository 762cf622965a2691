"""Each provider's dialect of JSON Schema, converted once per output type.

Providers constrain decoding only with a subset of JSON Schema, each a different one:

- ``openai`` (Structured Outputs, ``strict: true``): every object lists all its properties
  as required and sets ``additionalProperties: false``; an optional property becomes
  required and nullable; ``$ref`` takes no sibling keywords; no ``oneOf``, no ``default``.
  An answer then carries ``null`` for an omitted optional field: :class:`Dialect.normalize`
  drops those nulls again before validation, so the field gets its default.
- ``anthropic`` (structured outputs, ``output_config.format``): ``additionalProperties: false``
  on every object, numeric and length constraints not enforced (they move into the
  description, where the model reads them).
- ``gemini`` (``responseJsonSchema``): ``$defs`` inlined where not recursive; no ``title``,
  ``const``, ``discriminator``, exclusive bounds or string formats.

Whatever a dialect cannot enforce is still checked: the answer is always validated locally
against the original type. A schema a dialect cannot express at all (a free-form ``dict``,
``Any``, tuples) is converted non-strictly: :attr:`Dialect.strict` is false, the reason is
logged once on the ``agentrt.output`` logger, and the request says ``strict: false``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._spec import OutputSpec

__all__ = ["Dialect", "ProviderName", "dialect", "logger"]

logger = logging.getLogger("agentrt.output")

ProviderName = Literal["openai", "anthropic", "gemini"]

_OPENAI_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_ANTHROPIC_FORMATS = _OPENAI_FORMATS | {"uri"}
# Keywords that change which values are valid but that no dialect below can express:
# a schema using them is converted non-strictly.
_STRUCTURAL = frozenset(
    {
        "prefixItems",
        "patternProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "contains",
        "minContains",
        "maxContains",
        "if",
        "then",
        "else",
        "not",
    }
)
# Annotations: carry no constraint, dropped where a dialect does not accept them.
_ANNOTATIONS = frozenset(
    {
        "default",
        "examples",
        "discriminator",
        "$schema",
        "$id",
        "$comment",
        "readOnly",
        "writeOnly",
        "deprecated",
    }
)
_CONSTRAINTS: dict[str, frozenset[str]] = {
    "openai": frozenset(
        {
            "pattern",
            "multipleOf",
            "maximum",
            "exclusiveMaximum",
            "minimum",
            "exclusiveMinimum",
            "minItems",
            "maxItems",
        }
    ),
    "anthropic": frozenset(),
    "gemini": frozenset({"minimum", "maximum", "minItems", "maxItems"}),
}
_ALL_CONSTRAINTS = frozenset(
    {
        "pattern",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "uniqueItems",
        "format",
    }
)


# A converted node with none of these accepts any value.
_SHAPES = frozenset({"type", "anyOf", "enum", "allOf", "properties", "$ref"})


@dataclass(frozen=True)
class Dialect:
    """One provider's form of an output schema (always with an object at the root).

    Attributes:
        provider: ``"openai"``, ``"anthropic"`` or ``"gemini"``.
        schema: the converted schema.
        strict: whether the provider can enforce it (``strict: true`` on OpenAI).
        reason: why not, when ``strict`` is false.
        lossy: a constraint was moved into a description (validation still checks it).
    """

    provider: str
    schema: dict[str, Any]
    strict: bool
    reason: str | None = None
    lossy: bool = False
    _normalizer: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)

    def normalize(self, value: Any) -> Any:
        """Undo the dialect's own changes to an answer (nulls standing for omitted fields)."""
        if self._normalizer is None:
            return value
        return self._normalizer(value)


def dialect(spec: OutputSpec, provider: ProviderName) -> Dialect:
    """Return ``spec``'s schema in ``provider``'s dialect (converted once, then cached).

    Raises:
        ValueError: ``provider`` is not one of the three.
    """
    data = spec.data
    found: Dialect | None = data.dialects.get(provider)
    if found is not None:
        return found
    if provider not in _CONSTRAINTS:
        raise ValueError(f"no schema dialect for provider {provider!r}")
    with data.lock:
        found = data.dialects.get(provider)
        if found is None:
            found = _Converter(provider, data.object_schema).run()
            if not found.strict:
                logger.warning(
                    "output type %s cannot be expressed as a strict %s schema (%s): sending "
                    "it non-strict; the answer is still validated locally",
                    data.name,
                    provider,
                    found.reason,
                )
            data.dialects[provider] = found
    return found


# --- conversion -------------------------------------------------------------------------------


class _Norm:
    """Undoes OpenAI's null-for-omitted at one schema node (see ``_Converter``)."""

    __slots__ = ("any_of", "drop", "items", "props", "ref", "table")

    def __init__(self) -> None:
        self.drop: frozenset[str] = frozenset()
        self.props: dict[str, _Norm] = {}
        self.items: _Norm | None = None
        #: ``(property names, required nullable names, normaliser)`` of each branch; the
        #: names are ``None`` for a branch that is not an object with properties.
        self.any_of: list[tuple[frozenset[str] | None, frozenset[str], _Norm | None]] = []
        self.ref: str | None = None
        self.table: dict[str, _Norm | None] = {}

    def apply(self, value: Any) -> Any:
        if self.ref is not None:
            target = self.table.get(self.ref)
            return value if target is None else target.apply(value)
        if isinstance(value, dict):
            self._drop(value, self.drop)
            self._nested(value)
        elif isinstance(value, list) and self.items is not None:
            for index, item in enumerate(value):
                value[index] = self.items.apply(item)
        if self.any_of:
            return self._branch(value)
        return value

    @staticmethod
    def _drop(value: dict[str, Any], keys: frozenset[str]) -> None:
        for key in keys:
            if key in value and value[key] is None:
                del value[key]

    def _nested(self, value: dict[str, Any]) -> None:
        for key, norm in self.props.items():
            if key in value:
                value[key] = norm.apply(value[key])

    def _branch(self, value: Any) -> Any:
        # A strict answer to an object branch has exactly that branch's property names.
        if isinstance(value, dict):
            keys = frozenset(value)
            matching = [(keep, n) for names, keep, n in self.any_of if names == keys]
            if len(matching) > 1:
                # Branches alike in their names: a null some branch sent for an omitted
                # field is dropped, unless another branch requires that field and takes null.
                kept = frozenset().union(*(keep for keep, _ in matching))
                drops = [n.resolved().drop for _, n in matching if n is not None]
                self._drop(value, frozenset().union(*drops) - kept)
                first = next((n for _, n in matching if n is not None), None)
                if first is not None:
                    first.resolved()._nested(value)
                return value
            if matching:
                norm = matching[0][1]
                return value if norm is None else norm.apply(value)
        for names, _, norm in self.any_of:
            if names is None and norm is not None:
                return norm.apply(value)
        return value

    def resolved(self) -> _Norm:
        """This normaliser, or the definition's that it refers to."""
        if self.ref is not None:
            target = self.table.get(self.ref)
            return target.resolved() if target is not None else _Norm()
        return self


class _Converter:
    def __init__(self, provider: str, schema: dict[str, Any]) -> None:
        self.provider = provider
        self.root = copy.deepcopy(schema)
        self.defs: dict[str, Any] = self.root.pop("$defs", {}) or {}
        self.reasons: list[str] = []
        self.lossy = False
        self.table: dict[str, _Norm | None] = {}
        self.recursive = _recursive_defs(self.defs)
        self.needs_norm = False

    def run(self) -> Dialect:
        inline = self.provider == "gemini"
        out_defs: dict[str, Any] = {}
        for name, sub in self.defs.items():
            if inline and name not in self.recursive:
                continue
            converted, norm = self.node(sub, f"$defs/{name}")
            out_defs[name] = converted
            self.table[name] = norm
        for name, sub in self.defs.items():
            if name not in self.table:
                self.table[name] = self.node(sub, f"$defs/{name}")[1]
        schema, norm = self.node(self.root, "")
        if out_defs:
            schema["$defs"] = out_defs
        normalizer = norm.apply if (norm is not None and self.needs_norm) else None
        strict = not self.reasons
        return Dialect(
            provider=self.provider,
            schema=schema,
            strict=strict,
            reason="; ".join(self.reasons) if self.reasons else None,
            lossy=self.lossy,
            _normalizer=normalizer,
        )

    # One schema node -> (converted node, normalizer or None).
    def node(self, schema: Any, path: str) -> tuple[dict[str, Any], _Norm | None]:
        if schema is True or schema == {}:
            self.reasons.append(f"{path or 'the root'} accepts any value")
            return {}, None
        if not isinstance(schema, dict):
            self.reasons.append(f"{path or 'the root'} is not a schema")
            return {}, None
        schema = dict(schema)
        ref = schema.pop("$ref", None)
        if isinstance(ref, str):
            return self.reference(ref, schema, path)
        for key in _STRUCTURAL & schema.keys():
            self.reasons.append(f"{path or 'the root'} uses {key!r}")
            schema.pop(key)
        out: dict[str, Any] = {}
        moved: list[str] = []
        for key in list(schema):
            if key in _ANNOTATIONS:
                schema.pop(key)
        if "const" in schema:
            out["enum"] = [schema.pop("const")]
            schema.pop("enum", None)
        title = schema.pop("title", None)
        if title is not None and self.provider != "gemini":
            out["title"] = title
        description = schema.pop("description", None)
        norm: _Norm | None = None
        for key in ("anyOf", "oneOf"):
            branches = schema.pop(key, None)
            if isinstance(branches, list):
                norm = self.union(out, branches, path)
        all_of = schema.pop("allOf", None)
        if isinstance(all_of, list):
            if len(all_of) == 1:
                merged, norm = self.node(all_of[0], path)
                out.update(merged)
            else:
                out["allOf"] = [self.node(s, f"{path}/allOf/{i}")[0] for i, s in enumerate(all_of)]
                if self.provider == "openai":
                    self.reasons.append(f"{path or 'the root'} uses 'allOf'")
        kind = schema.pop("type", None)
        if kind is not None:
            out["type"] = kind
        if "enum" in schema:
            out["enum"] = schema.pop("enum")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if "object" in kinds or "properties" in schema:
            norm = self.object(out, schema, path)
        if "array" in kinds or "items" in schema:
            items = schema.pop("items", None)
            if items is not None:
                converted, item_norm = self.node(items, f"{path}/items")
                out["items"] = converted
                if item_norm is not None:
                    norm = norm or _Norm()
                    norm.items = item_norm
        fmt = schema.pop("format", None)
        if fmt is not None:
            allowed = {"openai": _OPENAI_FORMATS, "anthropic": _ANTHROPIC_FORMATS}.get(
                self.provider, frozenset()
            )
            if fmt in allowed:
                out["format"] = fmt
            else:
                moved.append(f"format: {fmt}")
        keep = _CONSTRAINTS[self.provider]
        for key in list(schema):
            value = schema.pop(key)
            if key in keep:
                out[key] = value
            elif key == "minItems" and self.provider == "anthropic" and value in (0, 1):
                out[key] = value
            elif key in _ALL_CONSTRAINTS:
                moved.append(f"{key}: {value}")
            # Unknown keywords (vendor extensions) are dropped: they constrain nothing.
        if moved:
            self.lossy = True
            note = "{" + ", ".join(moved) + "}"
            description = f"{description}\n\n{note}" if description else note
        if description is not None:
            out["description"] = description
        if not _SHAPES & out.keys():
            self.reasons.append(f"{path or 'the root'} accepts any value")
        return out, norm

    def reference(
        self, ref: str, siblings: dict[str, Any], path: str
    ) -> tuple[dict[str, Any], _Norm | None]:
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith("#/$defs/") or name not in self.defs:
            self.reasons.append(f"{path or 'the root'} refers to {ref!r}, which is not in $defs")
            return {"$ref": ref}, None
        inline = self.provider == "gemini" and name not in self.recursive
        extra = {k: v for k, v in siblings.items() if k not in _ANNOTATIONS}
        if not inline and not extra:
            by_name = _Norm()
            by_name.ref, by_name.table = name, self.table
            return {"$ref": ref}, by_name
        # $ref with siblings (or a dialect without refs): the definition inlined, with the
        # siblings (a description, usually) on top. Its own refs stay refs.
        converted, norm = self.node({**self.defs[name], **extra}, path)
        return converted, norm

    def union(self, out: dict[str, Any], branches: list[Any], path: str) -> _Norm | None:
        converted: list[dict[str, Any]] = []
        norms: list[tuple[frozenset[str] | None, frozenset[str], _Norm | None]] = []
        for i, branch in enumerate(branches):
            sub, norm = self.node(branch, f"{path}/anyOf/{i}")
            converted.append(sub)
            names, optional = self.shape_of(branch)
            norms.append((names, optional, norm))
        out["anyOf"] = converted
        if any(n is not None for _, _, n in norms):
            union = _Norm()
            union.any_of = norms
            return union
        return None

    def shape_of(self, schema: Any, depth: int = 0) -> tuple[frozenset[str] | None, frozenset[str]]:
        """The property names of an original object branch, and its required nullable ones."""
        if not isinstance(schema, dict) or depth > 8:
            return None, frozenset()
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.shape_of(self.defs.get(ref.rsplit("/", 1)[-1]), depth + 1)
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return None, frozenset()
        required = set(schema.get("required", ()))
        nullable = {
            k for k, sub in properties.items() if k in required and self.takes_null(sub, depth)
        }
        return frozenset(properties), frozenset(nullable)

    def takes_null(self, schema: Any, depth: int = 0) -> bool:
        """Whether an original schema accepts ``null``."""
        if not isinstance(schema, dict) or depth > 8:
            return False
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.takes_null(self.defs.get(ref.rsplit("/", 1)[-1]), depth + 1)
        if _nullable(schema) or schema.get("const", 0) is None:
            return True
        return any(self.takes_null(b, depth + 1) for b in schema.get("anyOf", ()))

    def object(self, out: dict[str, Any], schema: dict[str, Any], path: str) -> _Norm | None:
        properties = schema.pop("properties", None)
        required = list(schema.pop("required", []))
        extra = schema.pop("additionalProperties", None)
        if properties is None or (extra is not None and extra is not False):
            if properties is None and extra is None:
                what = "a free-form object"
            else:
                what = "an object with free-form extra keys"
            if self.provider == "gemini":
                if extra is not None and extra is not False:
                    out["additionalProperties"] = (
                        True
                        if extra is True
                        else self.node(extra, f"{path}/additionalProperties")[0]
                    )
            else:
                self.reasons.append(f"{path or 'the root'} is {what} (a dict)")
                if extra not in (None, True, False):
                    out["additionalProperties"] = self.node(extra, f"{path}/additionalProperties")[
                        0
                    ]
            if properties is None:
                return None
        norm = _Norm()
        drop: set[str] = set()
        props_out: dict[str, Any] = {}
        for key, sub in properties.items():
            converted, sub_norm = self.node(sub, f"{path}/{key}")
            if self.provider == "openai" and key not in required and not _nullable(converted):
                converted = {"anyOf": [converted, {"type": "null"}]}
                drop.add(key)
                self.needs_norm = True
            props_out[key] = converted
            if sub_norm is not None:
                norm.props[key] = sub_norm
        out["properties"] = props_out
        if self.provider == "openai":
            out["required"] = list(properties)
        elif required:
            out["required"] = required
        if self.provider != "gemini" or extra is False:
            if "additionalProperties" not in out:
                out["additionalProperties"] = False
        norm.drop = frozenset(drop)
        return norm if (drop or norm.props) else None


def _nullable(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in schema.get("enum", ()):
        return True
    return any(isinstance(branch, dict) and _nullable(branch) for branch in schema.get("anyOf", ()))


def _recursive_defs(defs: dict[str, Any]) -> set[str]:
    """Names of the definitions that reach themselves through ``$ref``."""
    edges = {name: _refs(sub) for name, sub in defs.items()}
    recursive: set[str] = set()
    for start in edges:
        stack, seen = list(edges[start]), set()
        while stack:
            name = stack.pop()
            if name == start:
                recursive.add(start)
                break
            if name in seen:
                continue
            seen.add(name)
            stack.extend(edges.get(name, ()))
    return recursive


def _refs(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref[len("#/$defs/") :])
        for value in schema.values():
            found |= _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _refs(value)
    return found
