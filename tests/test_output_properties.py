"""Property test: each provider dialect accepts exactly what the original schema accepts.

For generated pydantic models (scalars, constraints, literals, enums, lists, optionals,
nested models, unions of models, defaults, descriptions) and generated JSON values, both
the original JSON Schema and the converted one judge each value with ``jsonschema``:

- OpenAI strict (every property required, optional ones nullable): a value in strict shape
  ``w`` (an omitted optional field sent as ``null``) is accepted by the strict schema exactly
  when the original accepts ``normalize(w)``; and every value ``v`` the original accepts has
  its strict form ``w`` accepted.
- Anthropic and Gemini keep optional fields optional: the converted schema accepts exactly
  the values the original accepts.
- With a union of models a sample is in the strict shape of the branch it was drawn for,
  not necessarily of the branch that accepts it: there the OpenAI property is soundness
  (every value the strict schema accepts validates, once normalised).

A dialect that moves a constraint it cannot enforce into a description (``lossy``) may
accept more, never less: there the property is the one-way inclusion.
"""

from __future__ import annotations

import copy
import enum
import itertools
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from agentrt.output import dialect, output_spec


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


_names = itertools.count()


@dataclass(frozen=True)
class Leaf:
    kind: str  # int, float, str, bool, literal, enum
    bounds: tuple[int, int] | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class Opt:
    inner: Any


@dataclass(frozen=True)
class OneOf:
    """A union of two models (often alike in their field names)."""

    left: Any
    right: Any


@dataclass(frozen=True)
class Obj:
    fields: tuple[tuple[str, Any, bool, bool], ...]  # name, type, has default, described


leaves = st.one_of(
    st.sampled_from([Leaf("int"), Leaf("float"), Leaf("str"), Leaf("bool"), Leaf("literal")]),
    st.just(Leaf("enum")),
    st.builds(
        lambda lo, span: Leaf("int", bounds=(lo, lo + span)), st.integers(-5, 5), st.integers(0, 5)
    ),
    st.builds(lambda n: Leaf("str", max_length=n), st.integers(0, 3)),
)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Obj]:
    field = st.tuples(children, st.booleans(), st.booleans())
    return st.lists(field, min_size=1, max_size=4).map(
        lambda fs: Obj(tuple((f"f{i}", t, d, desc) for i, (t, d, desc) in enumerate(fs)))
    )


types = st.recursive(
    leaves,
    lambda children: st.one_of(
        children.map(ListOf),
        children.map(Opt),
        _objects(children),
        st.builds(OneOf, _objects(children), _objects(children)),
    ),
    max_leaves=8,
)
models = _objects(types)


def _annotation(t: Any) -> Any:
    if isinstance(t, Leaf):
        base: Any = {
            "int": int,
            "float": float,
            "str": str,
            "bool": bool,
            "literal": Literal["a", "b"],
            "enum": Shade,
        }[t.kind]
        if t.bounds is not None:
            return Annotated[base, Field(ge=t.bounds[0], le=t.bounds[1])]
        if t.max_length is not None:
            return Annotated[base, Field(max_length=t.max_length)]
        return base
    if isinstance(t, ListOf):
        return list[_annotation(t.item)]  # type: ignore[misc]
    if isinstance(t, Opt):
        return Optional[_annotation(t.inner)]  # noqa: UP045
    if isinstance(t, OneOf):
        return Union[_model(t.left), _model(t.right)]  # noqa: UP007
    return _model(t)


def _default(t: Any) -> Any:
    if isinstance(t, Opt):
        return None
    if isinstance(t, ListOf):
        return []
    if isinstance(t, Leaf):
        if t.bounds is not None:
            return t.bounds[0]
        return {
            "int": 0,
            "float": 0.0,
            "str": "",
            "bool": False,
            "literal": "a",
            "enum": Shade.DARK,
        }[t.kind]
    return ...  # a nested model has no default here


def _model(obj: Obj) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, t, has_default, described in obj.fields:
        default = _default(t) if has_default else ...
        info = Field(default, description=f"about {name}") if described else Field(default)
        fields[name] = (_annotation(t), info)
    return create_model(f"Gen{next(_names)}", **fields)


def _optional(obj: Obj, name: str) -> bool:
    for field_name, t, has_default, _ in obj.fields:
        if field_name == name:
            return has_default and _default(t) is not ...
    raise KeyError(name)


_junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(-10, 10), st.text(max_size=3)
)


def _values(t: Any) -> st.SearchStrategy[tuple[Any, Any]]:
    """Pairs (v, w): a value in the original shape and its strict (OpenAI) shape."""
    if isinstance(t, Leaf):
        good: st.SearchStrategy[Any] = {
            "int": st.integers(-8, 8),
            "float": st.floats(-8, 8),
            "str": st.text(max_size=4),
            "bool": st.booleans(),
            "literal": st.sampled_from(["a", "b", "c"]),
            "enum": st.sampled_from(["light", "dark", "dim"]),
        }[t.kind]
        return st.one_of(good, _junk).map(lambda x: (x, x))
    if isinstance(t, ListOf):
        return st.one_of(
            st.lists(_values(t.item), max_size=3).map(
                lambda pairs: ([p[0] for p in pairs], [p[1] for p in pairs])
            ),
            _junk.map(lambda x: (x, x)),
        )
    if isinstance(t, OneOf):
        return st.one_of(
            _object_values(t.left), _object_values(t.right), _junk.map(lambda x: (x, x))
        )
    if isinstance(t, Opt):
        return st.one_of(st.just((None, None)), _values(t.inner))
    return st.one_of(_object_values(t), _junk.map(lambda x: (x, x)))


@st.composite
def _object_values(draw: st.DrawFn, obj: Obj) -> tuple[dict[str, Any], dict[str, Any]]:
    v: dict[str, Any] = {}
    w: dict[str, Any] = {}
    for name, t, _, _ in obj.fields:
        if draw(st.integers(0, 4)) == 0:  # omitted
            if _optional(obj, name):
                w[name] = None  # strict shape: every key present, null for omitted
            continue
        v[name], w[name] = draw(_values(t))
    return v, w


def _has_union(t: Any) -> bool:
    if isinstance(t, OneOf):
        return True
    if isinstance(t, (ListOf, Opt)):
        return _has_union(t.item if isinstance(t, ListOf) else t.inner)
    if isinstance(t, Obj):
        return any(_has_union(ft) for _, ft, _, _ in t.fields)
    return False


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@settings(
    # AGENTRT_OUTPUT_EXAMPLES=2500 explores further (about 4 minutes; 2500 passed).
    max_examples=int(os.environ.get("AGENTRT_OUTPUT_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.timeout(300)  # a shared CI machine may be slow; the default is 60 s
@given(
    models.flatmap(
        lambda obj: st.tuples(st.just(obj), st.lists(_object_values(obj), min_size=1, max_size=8))
    )
)
def test_each_dialect_accepts_exactly_what_the_original_accepts(
    case: tuple[Obj, list[tuple[dict[str, Any], dict[str, Any]]]],
) -> None:
    obj, samples = case
    model = _model(obj)
    spec = output_spec(model)
    original = _validator(spec.object_schema)
    openai = dialect(spec, "openai")
    assert openai.strict
    strict = _validator(openai.schema)
    others = [
        (d, _validator(d.schema)) for d in (dialect(spec, "anthropic"), dialect(spec, "gemini"))
    ]
    union = _has_union(obj)
    for v, w in samples:
        # OpenAI: strict shape in, normalised answer judged by the original schema
        normalized = openai.normalize(copy.deepcopy(w))
        if not openai.lossy and strict.is_valid(w):
            # sound: whatever a strict provider may send validates
            assert original.is_valid(normalized), (w, normalized)
        if union:
            # A union's sample is in the strict shape of the branch it was drawn for, which
            # need not be the branch that accepts it: only soundness is exact here.
            continue
        if openai.lossy:
            if original.is_valid(normalized):
                assert strict.is_valid(w), (v, w)
        else:
            assert strict.is_valid(w) == original.is_valid(normalized), (w, normalized)
        if original.is_valid(v):
            assert strict.is_valid(w), (v, w)
            # and the normalised strict answer is the same value pydantic accepts
            assert model.model_validate(normalized) == model.model_validate(v)
        for d, converted in others:
            if d.lossy:
                if original.is_valid(v):
                    assert converted.is_valid(v), (d.provider, v)
            else:
                assert converted.is_valid(v) == original.is_valid(v), (d.provider, v)


def test_the_generator_reaches_every_shape() -> None:
    # A guard for the property above: the strategies produce nested, optional and
    # constrained fields, and both accepted and rejected values.
    obj = Obj(
        (
            ("f0", Opt(Obj((("f0", Leaf("int", bounds=(0, 2)), True, True),))), True, True),
            ("f1", ListOf(Leaf("enum")), True, False),
            ("f2", Leaf("literal"), False, False),
        )
    )
    spec = output_spec(_model(obj))
    openai = dialect(spec, "openai")
    strict = _validator(openai.schema)
    original = _validator(spec.object_schema)
    w = {"f0": {"f0": None}, "f1": None, "f2": "a"}
    assert strict.is_valid(w)
    assert original.is_valid(openai.normalize(copy.deepcopy(w)))
    assert not strict.is_valid({"f0": None, "f2": "a"})  # strict needs every key
    assert original.is_valid({"f0": None, "f2": "a"})
    assert not original.is_valid({"f0": {"f0": 5}, "f2": "a"})
    assert strict.is_valid({"f0": {"f0": 2}, "f1": ["light"], "f2": "b"})
