"""Unit tests of the pure pieces of typed results (``agentrt.output``)."""

from __future__ import annotations

import dataclasses
import enum
import gc
import json
import logging
import pickle
import weakref
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import jsonschema
import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from agentrt.errors import (
    AgentrtError,
    OutputAttempt,
    OutputRefusedError,
    OutputValidationError,
    UsageError,
)
from agentrt.output import (
    OUTPUT_TOOL_NAME,
    OutputInvalid,
    check_tool_choice,
    concise_schema,
    dialect,
    exhausted,
    extract_json,
    load_schema,
    merge_body,
    native_body,
    native_json,
    output_spec,
    output_tool,
    output_tool_choice,
    output_tool_wire,
    partial_json,
    prompted_system,
    resolve_mode,
    retry_message,
    tool_choice_body,
    validate_answer,
)


class Address(BaseModel):
    """A postal address."""

    city: str
    zip: Optional[str] = None  # noqa: UP045 - the spelling users write


class Person(BaseModel):
    """A person."""

    name: str
    age: int = Field(ge=0)
    tags: list[str] = []
    address: Address | None = None


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Movie(TypedDict):
    title: str
    year: int


# --- the spec of each kind of type ------------------------------------------------------------


def test_pydantic_model_spec_validates_and_names_itself() -> None:
    spec = output_spec(Person)
    assert spec.name == "Person"
    assert spec.description == "A person."
    assert not spec.wrapped
    value = validate_answer(spec, '{"name": "Ada", "age": 36}', mode="native", provider="x")
    assert value == Person(name="Ada", age=36)


@pytest.mark.parametrize(
    ("output_type", "raw", "expected"),
    [
        (Point, '{"x": 1, "y": 2.5}', Point(1.0, 2.5)),
        (Movie, '{"title": "Up", "year": 2009}', {"title": "Up", "year": 2009}),
        (list[int], "[1, 2, 3]", [1, 2, 3]),
        (dict[str, int], '{"a": 1}', {"a": 1}),
        (int, "42", 42),
        (str, '"hi"', "hi"),
        (bool, "true", True),
        (Literal["yes", "no"], '"no"', "no"),
        (Color, '"green"', Color.GREEN),
        (Union[Cat, Dog], '{"kind": "dog", "good": true}', Dog(kind="dog", good=True)),  # noqa: UP007
        (Cat | Dog, '{"kind": "cat", "lives": 9}', Cat(kind="cat", lives=9)),
        (list[Person], '[{"name": "A", "age": 1}]', [Person(name="A", age=1)]),
    ],
)
def test_every_kind_of_output_type_validates(output_type: Any, raw: str, expected: Any) -> None:
    spec = output_spec(output_type)
    # prompted mode: the bare value, as the prompt shows the type's own schema
    assert validate_answer(spec, raw, mode="prompted", provider="openai") == expected
    # native/tool modes: the object schema (wrapped when the type is not an object)
    wire = json.dumps({"result": json.loads(raw)}) if spec.wrapped else raw
    for provider in ("openai", "anthropic", "gemini", "offline"):
        assert validate_answer(spec, wire, mode="native", provider=provider) == expected


def test_non_object_types_are_wrapped_for_providers() -> None:
    spec = output_spec(list[int])
    assert spec.wrapped
    assert spec.object_schema == {
        "type": "object",
        "properties": {"result": {"type": "array", "items": {"type": "integer"}}},
        "required": ["result"],
    }
    with pytest.raises(OutputInvalid, match='exactly one key "result"'):
        validate_answer(spec, "[1, 2]", mode="native", provider="openai")
    # prompted answers may use the wrapper too
    assert validate_answer(spec, '{"result": [1]}', mode="prompted", provider="x") == [1]
    # ...unless {"result": ...} is the value itself
    loose = output_spec(dict[str, int])
    assert validate_answer(loose, '{"result": 3}', mode="prompted", provider="x") == {"result": 3}


def test_json_schema_dict_is_validated_with_jsonschema() -> None:
    schema = {
        "title": "Reply",
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "required": ["n"],
    }
    spec = output_spec(schema)
    assert spec.name == "Reply"
    assert validate_answer(spec, '{"n": 3}', mode="native", provider="openai") == {"n": 3}
    with pytest.raises(OutputInvalid) as info:
        validate_answer(spec, '{"n": 0}', mode="native", provider="openai")
    assert "n: 0 is less than the minimum of 1" in str(info.value)
    assert output_spec(dict(schema)) is not spec  # a new spec object...
    assert output_spec(dict(schema)).data is spec.data  # ...over the cached data


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "output_type=None"),
        ("int", "is a string: pass the type itself"),
        (42, "is not a type"),
        (object(), "is not a type"),
        ({"type": "nonsense"}, "not a valid JSON Schema"),
        ({}, "empty JSON Schema"),
        ({"x": {1, 2}}, "not JSON"),
        (type("Opaque", (), {}), "cannot be validated by pydantic"),
    ],
)
def test_unsupported_output_types_fail_at_once_naming_the_type(bad: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        output_spec(bad)


def test_callable_field_is_refused_naming_the_type() -> None:
    class Weird(BaseModel):
        fn: Callable[[], int]

    with pytest.raises(UsageError, match="output_type=Weird has no JSON Schema"):
        output_spec(Weird)


# --- caching --------------------------------------------------------------------------------


def test_specs_are_cached_per_type_and_dialects_per_provider() -> None:
    assert output_spec(Person).data is output_spec(Person).data
    assert output_spec(list[int]).data is output_spec(list[int]).data
    assert dialect(output_spec(Person), "openai") is dialect(output_spec(Person), "openai")


def test_the_cache_keeps_no_model_class_alive() -> None:
    def make() -> type[BaseModel]:
        class PerRequest(BaseModel):
            payload: list[int]

        spec = output_spec(PerRequest)
        for provider in ("openai", "anthropic", "gemini"):
            dialect(spec, provider)
        validate_answer(spec, '{"payload": [1]}', mode="native", provider="openai")
        return PerRequest

    ref = weakref.ref(make())
    gc.collect()
    assert ref() is None


def test_adapters_of_other_classes_are_bounded() -> None:
    refs = []
    for i in range(300):
        cls = dataclasses.make_dataclass(f"D{i}", [("x", int)])
        output_spec(cls)
        refs.append(weakref.ref(cls))
        del cls
    gc.collect()
    alive = sum(1 for r in refs if r() is not None)
    assert alive <= 128


# --- the strict dialects ------------------------------------------------------------------------


def test_openai_strict_requires_every_property_and_nulls_stand_for_omitted() -> None:
    spec = output_spec(Person)
    d = dialect(spec, "openai")
    assert d.strict
    person = d.schema
    assert person["additionalProperties"] is False
    assert person["required"] == ["name", "age", "tags", "address"]
    assert person["properties"]["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}, "title": "Tags"}, {"type": "null"}]
    }
    address = d.schema["$defs"]["Address"]
    assert address["required"] == ["city", "zip"]
    assert address["additionalProperties"] is False
    assert "default" not in json.dumps(d.schema)
    # nulls for omitted optional fields go away before validation: the default applies
    raw = '{"name": "Ada", "age": 3, "tags": null, "address": {"city": "Oslo", "zip": null}}'
    value = validate_answer(spec, raw, mode="native", provider="openai")
    assert value == Person(name="Ada", age=3, tags=[], address=Address(city="Oslo"))


def test_recursive_models_keep_defs_with_an_object_root() -> None:
    spec = output_spec(Node)
    for provider in ("openai", "anthropic", "gemini"):
        d = dialect(spec, provider)
        assert d.strict, provider
        assert d.schema["type"] == "object"
        children = d.schema["properties"]["children"]
        if provider == "openai":  # optional -> required and nullable
            children = children["anyOf"][0]
        assert children["items"] == {"$ref": "#/$defs/Node"}
        assert "Node" in d.schema["$defs"]
        jsonschema.Draft202012Validator.check_schema(d.schema)
    raw = '{"value": 1, "children": [{"value": 2, "children": null}]}'
    value = validate_answer(spec, raw, mode="native", provider="openai")
    assert value == Node(value=1, children=[Node(value=2)])


def test_gemini_inlines_non_recursive_defs_and_drops_what_it_rejects() -> None:
    d = dialect(output_spec(Person), "gemini")
    text = json.dumps(d.schema)
    assert "$ref" not in text and "$defs" not in text
    assert '"title"' not in text
    assert d.schema["properties"]["address"]["anyOf"][0]["properties"]["city"] == {"type": "string"}
    literal = dialect(output_spec(Cat), "gemini").schema["properties"]["kind"]
    assert literal == {"type": "string", "enum": ["cat"]}  # const -> enum


def test_anthropic_moves_unenforced_constraints_into_the_description() -> None:
    d = dialect(output_spec(Person), "anthropic")
    assert d.strict and d.lossy
    assert d.schema["properties"]["age"]["description"] == "{minimum: 0}"
    assert "minimum" not in d.schema["properties"]["age"]
    assert d.schema["required"] == ["name", "age"]  # Anthropic keeps optional fields optional
    # validation still enforces the moved constraint
    with pytest.raises(OutputInvalid, match="greater than or equal to 0"):
        validate_answer(
            output_spec(Person), '{"name": "a", "age": -1}', mode="tool", provider="anthropic"
        )


def test_discriminated_unions_become_anyof() -> None:
    class Pet(BaseModel):
        pet: Cat | Dog = Field(discriminator="kind")

    d = dialect(output_spec(Pet), "openai")
    assert d.strict
    text = json.dumps(d.schema)
    assert "oneOf" not in text and "discriminator" not in text
    value = validate_answer(
        output_spec(Pet), '{"pet": {"kind": "cat", "lives": 3}}', mode="native", provider="openai"
    )
    assert value.pet == Cat(kind="cat", lives=3)


def test_free_form_dict_falls_back_to_non_strict_with_a_logged_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Loose(BaseModel):
        labels: dict[str, int]

    caplog.set_level(logging.WARNING, logger="agentrt.output")
    d = dialect(output_spec(Loose), "openai")
    assert not d.strict
    assert "labels is an object with free-form extra keys" in (d.reason or "")
    assert d.schema["properties"]["labels"]["additionalProperties"] == {"type": "integer"}
    [record] = [r for r in caplog.records if r.name == "agentrt.output"]
    assert "Loose cannot be expressed as a strict openai schema" in record.getMessage()
    body = native_body(output_spec(Loose), "openai")
    assert body["response_format"]["json_schema"]["strict"] is False
    # converted once: no second warning
    caplog.clear()
    dialect(output_spec(Loose), "openai")
    assert not caplog.records
    # Gemini's responseJsonSchema can express it
    assert dialect(output_spec(Loose), "gemini").strict


def test_any_and_tuples_are_not_strict() -> None:
    assert not dialect(output_spec(Any), "openai").strict  # type: ignore[arg-type]
    d = dialect(output_spec(tuple[int, str]), "openai")
    assert not d.strict and "prefixItems" in (d.reason or "")


def test_ref_with_description_sibling_is_inlined_for_openai() -> None:
    class Holder(BaseModel):
        home: Address = Field(description="Where they live")

    d = dialect(output_spec(Holder), "openai")
    home = d.schema["properties"]["home"]
    assert "$ref" not in home
    assert home["description"] == "Where they live"
    assert home["required"] == ["city", "zip"]


# --- wire pieces ----------------------------------------------------------------------------


def test_native_bodies_per_provider() -> None:
    spec = output_spec(Person)
    openai = native_body(spec, "openai")
    assert openai == {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "Person",
                "schema": dialect(spec, "openai").schema,
                "strict": True,
                "description": "A person.",
            },
        }
    }
    assert native_body(spec, "anthropic") == {
        "output_config": {
            "format": {"type": "json_schema", "schema": dialect(spec, "anthropic").schema}
        }
    }
    assert native_body(spec, "gemini") == {
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": dialect(spec, "gemini").schema,
        }
    }
    with pytest.raises(ValueError, match="offline"):
        native_body(spec, "offline")


def test_native_json_is_encoded_once_per_type() -> None:
    spec = output_spec(Person)
    text = native_json(spec, "openai")
    assert json.loads(text) == native_body(spec, "openai")["response_format"]
    assert native_json(output_spec(Person), "openai") is text


def test_merge_body_merges_generation_config_key_by_key() -> None:
    body = {"contents": [], "generationConfig": {"temperature": 0.1}}
    merge_body(body, native_body(output_spec(int), "gemini"))
    assert body["generationConfig"]["temperature"] == 0.1
    assert body["generationConfig"]["responseMimeType"] == "application/json"


def test_output_tool_per_provider() -> None:
    spec = output_spec(list[int])
    tool = output_tool(spec)
    assert tool.name == OUTPUT_TOOL_NAME == "final_result"
    assert tool.parameters == spec.object_schema
    assert "final answer" in tool.description
    openai = output_tool_wire(spec, "openai")
    assert openai["function"]["strict"] is True
    assert openai["function"]["parameters"]["additionalProperties"] is False
    assert output_tool_wire(spec, "anthropic")["input_schema"]["properties"]["result"]
    assert output_tool_wire(spec, "gemini")["parametersJsonSchema"]["required"] == ["result"]
    assert output_tool_choice([]) == "final_result"
    assert output_tool_choice(["add"]) == "required"


@pytest.mark.parametrize(
    ("provider", "has_tools", "expected"),
    [
        ("openai", False, "native"),
        ("openai", True, "native"),
        ("anthropic", False, "tool"),
        ("anthropic", True, "tool"),
        ("gemini", False, "native"),
        ("gemini", True, "tool"),
        ("offline", True, "native"),
        ("function", False, "native"),
    ],
)
def test_auto_mode_per_provider(provider: str, has_tools: bool, expected: str) -> None:
    spec = output_spec(Person)
    assert resolve_mode("auto", provider, spec=spec, has_tools=has_tools) == expected
    for explicit in ("native", "tool", "prompted"):
        assert resolve_mode(explicit, provider, spec=spec, has_tools=has_tools) == explicit


def test_bad_output_mode_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match="did you mean 'native'"):
        resolve_mode("nativ", "openai", spec=output_spec(int), has_tools=False)


def test_anthropic_native_for_a_free_form_dict_becomes_tool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentrt.output")
    spec = output_spec(dict[str, float])
    assert resolve_mode("native", "anthropic", spec=spec, has_tools=False) == "tool"
    assert any("using output_mode='tool'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("provider", "choice", "parallel", "expected"),
    [
        ("openai", "auto", None, {"tool_choice": "auto"}),
        ("openai", "required", False, {"tool_choice": "required", "parallel_tool_calls": False}),
        ("openai", "add", None, {"tool_choice": {"type": "function", "function": {"name": "add"}}}),
        ("openai", None, True, {"parallel_tool_calls": True}),
        ("anthropic", "required", None, {"tool_choice": {"type": "any"}}),
        ("anthropic", "none", False, {"tool_choice": {"type": "none"}}),
        (
            "anthropic",
            "add",
            False,
            {"tool_choice": {"type": "tool", "name": "add", "disable_parallel_tool_use": True}},
        ),
        (
            "anthropic",
            None,
            False,
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        ),
        ("gemini", "none", None, {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}),
        (
            "gemini",
            "add",
            True,
            {
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["add"]}
                }
            },
        ),
        ("gemini", None, True, {}),
        ("openai", None, None, {}),
    ],
)
def test_tool_choice_wire_forms(
    provider: str, choice: str | None, parallel: bool | None, expected: dict[str, Any]
) -> None:
    assert tool_choice_body(provider, choice, parallel) == expected


def test_tool_choice_misuse_is_refused() -> None:
    with pytest.raises(UsageError, match="did you mean 'required'"):
        check_tool_choice("requird", ["add"])
    with pytest.raises(UsageError, match="the tools offered are add, mul"):
        check_tool_choice("sub", ["mul", "add"])
    with pytest.raises(UsageError, match="needs tools"):
        check_tool_choice("required", [])
    with pytest.raises(UsageError, match="must be 'auto'"):
        check_tool_choice(3, ["add"])
    check_tool_choice("add", ["add"])
    check_tool_choice(None, [])
    with pytest.raises(UsageError, match="Gemini has no switch"):
        tool_choice_body("gemini", "auto", False)
    with pytest.raises(UsageError, match="must be True or False"):
        tool_choice_body("openai", None, "no")  # type: ignore[arg-type]


def test_prompted_system_holds_the_schema_after_the_callers_prompt() -> None:
    text = prompted_system(output_spec(Point), "Be brief.")
    assert text.startswith("Be brief.\n\n")
    schema = json.loads(text.split("\n")[-1])
    assert schema == output_spec(Point).schema
    assert prompted_system(output_spec(int), None).startswith("Answer with one JSON value")


# --- extraction, partial parsing, errors for the model --------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        'Here you go:\n```json\n{"a": 1}\n```\nAnything else?',
        '```\n{"a": 1}\n```',
        '```python\nprint(1)\n```\n```json\n{"a": 1}\n```',
        'Sure! {"a": 1} is the answer.',
    ],
)
def test_extract_json_from_text(text: str) -> None:
    assert extract_json(text) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("no json here", "not valid JSON"), ('{"a": ', "not valid JSON")],
)
def test_extract_json_failures_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(OutputInvalid, match=message):
        extract_json(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ('{"name": "Ad', {"name": "Ad"}),
        ('{"a": [1, 2', {"a": [1, 2]}),
        ('```json\n{"a": {"b": tr', {"a": {}}),
        ("Sure:\n```json\n", None),
        ('[{"x": 1}, {"x"', [{"x": 1}, {}]),
        ("4", 4),
    ],
)
def test_partial_json(text: str, expected: Any) -> None:
    assert partial_json(text) == expected


def test_partial_json_grows_with_the_stream() -> None:
    final = json.dumps({"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry"]})
    seen = [partial_json(final[:i]) for i in range(len(final) + 1)]
    assert seen[-1] == json.loads(final)
    assert {"name": "Ada"} in seen
    assert all(v is None or isinstance(v, dict) for v in seen)


def test_validation_errors_read_well_for_the_model() -> None:
    with pytest.raises(OutputInvalid) as info:
        validate_answer(
            output_spec(Person), '{"name": 3, "age": "x"}', mode="native", provider="openai"
        )
    text = retry_message(info.value, "native")
    assert text.splitlines()[0] == "Your answer did not validate:"
    assert "- name: Input should be a valid string (got 3)" in text
    assert "- age: Input should be a valid integer" in text
    assert text.endswith("Reply again with the corrected JSON only.")
    assert retry_message("boom", "tool").startswith("The arguments of final_result did not")


def test_exhaustion_error_carries_every_attempt() -> None:
    attempts = [OutputAttempt("{", "not JSON"), OutputAttempt('{"a": 1}', "1 validation error")]
    error = exhausted(output_spec(Person), attempts)
    assert isinstance(error, OutputValidationError)
    assert isinstance(error, AgentrtError)
    assert error.attempts == attempts
    assert "in 2 attempts" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert again.attempts == attempts and str(again) == str(error)
    assert again.attempts[0].raw == "{"


def test_refusal_error_pickles_with_its_text() -> None:
    error = OutputRefusedError("I can't help with that.", provider="openai")
    again = pickle.loads(pickle.dumps(error))
    assert (again.text, again.provider, str(again)) == (error.text, "openai", str(error))


# --- the command line's --schema --------------------------------------------------------------


def test_concise_schema_like_llm() -> None:
    assert concise_schema("name, age int, bio: a short bio") == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "bio": {"type": "string", "description": "a short bio"},
        },
        "required": ["name", "age", "bio"],
    }
    multi = concise_schema("name: the name, with a comma\nscore float\nok bool")
    assert multi["properties"]["name"]["description"] == "the name, with a comma"
    assert multi["properties"]["score"] == {"type": "number"}
    assert multi["properties"]["ok"] == {"type": "boolean"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name, age integer", "unknown type 'integer'"),
        ("name, name", "given twice"),
        ("9lives int", "not a usable field name"),
        ("first name str extra", "write 'name'"),
    ],
)
def test_concise_schema_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        concise_schema(text)


def test_load_schema_file_inline_and_concise(tmp_path: Any) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}))
    assert load_schema(str(path))["properties"]["a"] == {"type": "integer"}
    assert load_schema('{"type": "string"}') == {"type": "string"}
    assert load_schema("a int")["properties"]["a"] == {"type": "integer"}
    with pytest.raises(UsageError, match="does not parse"):
        load_schema('{"type": ')
    with pytest.raises(UsageError, match="not a JSON object"):
        load_schema("[1]")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not readable JSON"):
        load_schema(str(bad))
    # the loaded schema is a usable output type
    spec = output_spec(load_schema("name, age int"))
    value = validate_answer(spec, '{"name": "a", "age": 2}', mode="native", provider="openai")
    assert value == {"name": "a", "age": 2}


def test_the_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import output_bench

    assert output_bench.main(["--calls", "5", "--repeat", "1", "--turn-us", "300"]) == 0
    out = capsys.readouterr().out
    assert "| per turn: lookup + body + validation |" in out
    assert "| a turn (--turn-us) | 300 |" in out


class _Left(BaseModel):
    f0: int = 0
    f1: str


class _RightNullable(BaseModel):
    f0: int | None
    f1: str


class _RightRequired(BaseModel):
    f0: str
    f1: str


def test_a_null_in_a_union_of_alike_models_is_read_for_the_branch_that_takes_it() -> None:
    # {"f0": null}: dropped (the omitted default of _Left) unless a branch requires f0 and
    # takes null, where the null is the value itself.
    kept = output_spec(list[_Left | _RightNullable])
    value = validate_answer(
        kept, '{"result": [{"f0": null, "f1": "x"}]}', mode="native", provider="openai"
    )
    assert value == [_RightNullable(f0=None, f1="x")]
    dropped = output_spec(list[_Left | _RightRequired])
    value = validate_answer(
        dropped, '{"result": [{"f0": null, "f1": "x"}]}', mode="native", provider="openai"
    )
    assert value == [_Left(f0=0, f1="x")]
