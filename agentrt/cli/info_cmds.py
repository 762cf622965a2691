"""``agentrt models`` and ``agentrt tools``: what is available, and how it is configured."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..providers import PROVIDERS
from ..toolbox import BUNDLED_TOOLS, HTTP_ALLOW_ENV, bundled_tools
from .chain_cmd import DEFAULT_MODEL, MODEL_ENV

__all__ = ["run_models", "run_tools"]

#: The variable each provider reads its API root from (``--base-url`` overrides it).
BASE_URL_ENV = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GOOGLE_GEMINI_BASE_URL",
}


def run_models(args: argparse.Namespace) -> int:
    """List the providers, their model-id form and whether their key is set (never the key)."""
    rows: list[dict[str, Any]] = []
    for prefix, (_, _, env_var) in PROVIDERS.items():
        rows.append(
            {
                "provider": prefix,
                "model_id": prefix if env_var is None else f"{prefix}:<name>",
                "key_env": env_var,
                "key_set": None if env_var is None else bool(os.environ.get(env_var)),
                "base_url_env": BASE_URL_ENV.get(prefix),
                "base_url": os.environ.get(BASE_URL_ENV.get(prefix, "")) or None,
            }
        )
    default = os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if args.json:
        print(json.dumps({"default_model": default, "providers": rows}, indent=2))
        return 0
    for row in rows:
        if row["key_env"] is None:
            key = "no key needed"
        else:
            key = f"{row['key_env']} is {'set' if row['key_set'] else 'not set'}"
            if row["base_url"]:
                key += f"; {row['base_url_env']}={row['base_url']}"
        print(f"{row['provider']:<10} {row['model_id']:<18} {key}")
    print(f"\ndefault model: {default} (set {MODEL_ENV} or pass -m to change it)")
    print(
        "keys come from the variables above; API roots from OPENAI_BASE_URL, "
        "ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL or agentrt chain --base-url"
    )
    return 0


def run_tools(args: argparse.Namespace) -> int:
    """List the bundled tools with their descriptions and JSON schemas."""
    tools = bundled_tools(list(BUNDLED_TOOLS))
    if args.json:
        described = [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in tools
        ]
        print(json.dumps(described, indent=2))
        return 0
    for tool in tools:
        summary = tool.description.split("\n\n")[0].replace("\n", " ")
        print(f"{tool.name}: {summary}")
        print(f"  schema: {json.dumps(tool.parameters)}")
    print(
        "\nread_file and list_dir are confined to the current directory; http_get may fetch "
        f"only the hosts listed in {HTTP_ALLOW_ENV} (comma-separated).",
        file=sys.stdout,
    )
    return 0
