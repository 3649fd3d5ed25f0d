"""A small tool task the bundled 135M model can sometimes do: look up a person's room number.

Each row asks for one person's room. The `lookup` tool returns it; the row carries one
demonstration exchange (question → tool call → result → answer) for a different person,
because a model this small almost never writes a valid call without one.

Reward (partial credit): 0.5 for calling `lookup` with the right name, 0.5 for an answer
that contains the right room number.

    python -m examples.lookup.task OUT_DIR     # writes train.jsonl, valid.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emil", "Farah", "Gita", "Hugo", "Ines", "Jonas",
         "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
         "Umar", "Vera", "Wade", "Xenia", "Yusuf", "Zoe", "Arjun", "Bea", "Cyrus", "Dita",
         "Eli", "Fern", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lia", "Milo", "Nina"]


DEMOS = 2  # demonstration exchanges per row


def room_of(name: str) -> int:
    """Deterministic, unguessable-looking room number per name."""
    return 100 + (sum(ord(c) * (i + 7) for i, c in enumerate(name)) * 37) % 800


LOOKUP_SCHEMA = {"type": "function", "function": {
    "name": "lookup", "description": "Find the room number of a person by name.",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}},
                   "required": ["name"]}}}


def demonstration(demo: str, i: int) -> list[dict]:
    call = {"id": f"call_demo{i}", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"name": demo})}}
    return [
        {"role": "user", "content": f"What is the room number of {demo}?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"call_demo{i}", "content": f"{demo}: room {room_of(demo)}"},
        {"role": "assistant", "content": f"{demo} is in room {room_of(demo)}."},
    ]


def make_row(name: str, demos: list[str]) -> dict:
    messages = [m for i, d in enumerate(demos) for m in demonstration(d, i)]
    return {
        "messages": messages + [{"role": "user", "content": f"What is the room number of {name}?"}],
        "tools": [LOOKUP_SCHEMA],
        "name": name,
        "room": str(room_of(name)),
    }


def make_rows(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train and validation rows ask about disjoint people."""
    rng = random.Random(seed)
    names = NAMES[:]
    rng.shuffle(names)
    train_names, valid_names = names[:28], names[28:]

    def rows(targets):
        return [make_row(n, rng.sample([d for d in NAMES if d != n], DEMOS)) for n in targets]

    return rows(train_names), rows(valid_names)


def lookup(arguments: dict, context) -> str:
    """The tool (Python-function form; the same logic is served over HTTP in tests)."""
    name = str(arguments.get("name", "")).strip()
    match = next((n for n in NAMES if n.lower() == name.lower()), None)
    if match is None:
        raise ValueError(f"no person named {name!r}")
    return f"{match}: room {room_of(match)}"


def grade(sample: dict, item: dict) -> float:
    calls = sample["trajectory"]["tool_calls"]
    looked_up = any(c["name"] == "lookup" and not c["is_error"]
                    and json.loads(c["arguments"]).get("name", "").lower() == item["name"].lower()
                    for c in calls)
    answered = item["room"] in sample["output_text"]
    return 0.5 * looked_up + 0.5 * answered


def write(out_dir: str | Path, seed: int = 0) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, valid = make_rows(seed)
    for fname, rows in (("train.jsonl", train), ("valid.jsonl", valid)):
        with (out / fname).open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data")
