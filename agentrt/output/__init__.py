"""Typed results: ``output_type=`` on prompts and chains.

The pieces, each pure (no I/O), used by the chain and the provider codecs:

- :func:`output_spec` — what a type means as an output: its JSON Schema and its validator,
  built once per type and cached without keeping the type alive (``_spec.py``);
- :func:`dialect` — the schema in each provider's strict dialect, converted once
  (``_strict.py``);
- the request pieces of each mode and of ``tool_choice``/``parallel_tool_calls``
  (``_wire.py``);
- :class:`OutputRun` — one chain's output contract as plain decisions: what a request
  carries, what a turn means (value, retry, run the tools), when to give up (``_run.py``);
- :func:`validate_answer`, :func:`retry_message` and the final
  :class:`~agentrt.OutputValidationError` (``_validate.py``);
- :func:`extract_json` / :func:`partial_json` for answers in text and while streaming
  (``_extract.py``);
- :func:`load_schema` / :func:`concise_schema` for the command line's ``--schema``
  (``_concise.py``).
"""

from __future__ import annotations

from ._concise import concise_schema, load_schema
from ._extract import extract_json, partial_json
from ._fake import output_json, render_json, render_output
from ._run import (
    Continue,
    Done,
    OutputRequest,
    OutputRun,
    PartialOutput,
    Retry,
    Verdict,
    judge_prompt,
    judge_turn,
    plan_output,
    refusal_of,
)
from ._spec import OutputInvalid, OutputSpec, output_spec
from ._strict import Dialect, dialect
from ._validate import exhausted, retry_message, truncated_message, validate_answer
from ._wire import (
    OUTPUT_TOOL_NAME,
    OutputMode,
    ResolvedMode,
    ToolChoice,
    check_tool_choice,
    merge_body,
    native_body,
    native_json,
    output_tool,
    output_tool_choice,
    output_tool_wire,
    prompted_system,
    request_fragment,
    resolve_mode,
    tool_choice_body,
)

__all__ = [
    "OUTPUT_TOOL_NAME",
    "Continue",
    "Dialect",
    "Done",
    "OutputInvalid",
    "OutputMode",
    "OutputRequest",
    "OutputRun",
    "OutputSpec",
    "PartialOutput",
    "ResolvedMode",
    "Retry",
    "ToolChoice",
    "Verdict",
    "check_tool_choice",
    "concise_schema",
    "dialect",
    "exhausted",
    "extract_json",
    "load_schema",
    "merge_body",
    "native_body",
    "native_json",
    "output_json",
    "output_spec",
    "output_tool",
    "output_tool_choice",
    "judge_prompt",
    "judge_turn",
    "output_tool_wire",
    "partial_json",
    "plan_output",
    "prompted_system",
    "refusal_of",
    "render_json",
    "render_output",
    "request_fragment",
    "resolve_mode",
    "retry_message",
    "tool_choice_body",
    "truncated_message",
    "validate_answer",
]
