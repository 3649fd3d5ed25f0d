"""Graders for code navigation: F1 between the files the answer names and the files to edit.

Precision alone rewards naming one sure file, recall alone rewards naming every file; F1
rewards neither. Paths are compared relative to the repository root (`./a/b.py`,
`/workspace/a/b.py` and `a/b.py` are the same file). Self-contained (standard library
only), so it runs as a `callable` grader or as sandboxed python `source`:

    grader: {type: python, name: f1, callable: "examples.code_nav.grade:grade"}

`searched` is a process reward for a model too small to find the files on its own: 1 when a
`shell` command that succeeded named the request's identifier (`grep -rlw NAME`, say).

`grade_with_reads` also rewards reading the files that matter:
0.8 × F1 + 0.2 × (share of the reference files the rollout read with `read_file`, or
printed with cat/head/sed/less in `shell`).
"""

import json
import re

_PATH = re.compile(r"[\w./-]*\w\.py\b")
_READERS = re.compile(r"^\s*(cat|head|tail|sed|less|more|nl)\b")


def normalize(path):
    path = path.strip().strip("`'\"")
    for prefix in ("/workspace/", "./"):
        while path.startswith(prefix):
            path = path[len(prefix):]
    return path


def named_files(text):
    return {normalize(m.group(0)) for m in _PATH.finditer(text or "")}


def f1(predicted, reference):
    predicted, reference = set(predicted), set(reference)
    hits = len(predicted & reference)
    if not hits:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(reference)
    return 2 * precision * recall / (precision + recall)


def _succeeded_calls(sample):
    """(name, parsed arguments) of the rollout's tool calls that succeeded."""
    for call in sample.get("trajectory", {}).get("tool_calls", []):
        if call.get("is_error"):
            continue
        try:
            args = json.loads(call.get("arguments") or "{}")
        except ValueError:
            continue
        yield call.get("name"), args


def files_read(sample):
    read = set()
    for name, args in _succeeded_calls(sample):
        if name == "read_file" and isinstance(args.get("path"), str):
            read.add(normalize(args["path"]))
        elif name == "shell" and _READERS.match(str(args.get("command", ""))):
            read |= named_files(args["command"])
    return read


def grade(sample, item):
    return f1(named_files(sample.get("output_text", "")), item["files"])


def grade_with_reads(sample, item):
    reference = set(item["files"])
    read_share = len(files_read(sample) & reference) / len(reference) if reference else 0.0
    return 0.8 * grade(sample, item) + 0.2 * read_share


def searched(sample, item):
    for name, args in _succeeded_calls(sample):
        if name == "shell" and isinstance(args, dict) and \
                re.search(rf"\b{re.escape(item['identifier'])}\b", str(args.get("command", ""))):
            return 1.0
    return 0.0
