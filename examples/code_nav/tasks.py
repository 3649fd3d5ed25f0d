"""Code navigation tasks from real repositories: given a change request, name the files to edit.

The repositories are the source trees of Python packages installed with agentrft (httpx,
starlette, click, …), copied (`.py` files only) into `repos/<package>/`, so everything
works offline. Each task names one identifier defined in the repository and asks for a
change that touches every file using it:

    Rename `build_request` to `build_request_v2` everywhere. Which files must be edited?

The reference `files` are the `.py` files where the identifier occurs as a whole word, the
files a person making that change would edit; tasks keep identifiers used in 1-4 files.
Train and validation draw from disjoint repositories (`TRAIN_REPOS`, `VALID_REPOS`).

Each row carries DEMOS demonstration exchanges (request → `shell` grep → its output → the
answer listing the files), on a fictional repository, because the bundled 135M model does
not call tools at all without one. Row keys: `repo` (the workspace is `repos/{{item.repo}}`),
`identifier`, `files` (sorted, relative to the repository root), `request`.

    python -m examples.code_nav.tasks [OUT_DIR]   # repos/, train.jsonl, valid.jsonl
"""

from __future__ import annotations

import ast
import importlib.util
import json
import random
import re
import shutil
import sys
from pathlib import Path


HERE = Path(__file__).parent
TRAIN_REPOS = ("httpx", "httpcore", "h11", "anyio", "starlette", "click", "yaml", "tqdm")
VALID_REPOS = ("uvicorn", "fastapi", "packaging", "filelock")
TASKS_PER_REPO = {"train": 8, "valid": 3}  # validation is small: every eval costs CPU minutes
MAX_FILES = 4
DEMOS = 2

REQUESTS = (
    "Rename `{name}` to `{new}` everywhere. Which files must be edited?",
    "We are adding a required argument to `{name}`. Which files must be edited?",
    "`{name}` is deprecated and must be replaced. Which files must be edited?",
)

SYSTEM = ("You are a coding agent in a repository. Find the files that use a name with "
          "shell: grep -rlw NAME . Then list the files to edit.")

# The schemas rows show the model: short, because every prompt token costs on a CPU
# (agentrft.tools.shell_tools has the full ones).
ROW_TOOLS = [
    {"type": "function", "function": {
        "name": "shell", "description": "Run a shell command in the repository.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                       "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}}},
]

# Demonstrations: a fictional repository, never one of the task repositories.
DEMO_CASES = (
    ("load_settings", "load_settings_v2", ["./app/config.py", "./app/cli.py"]),
    ("RetryPolicy", "RetryPolicyV2", ["./net/retry.py", "./net/client.py", "./tests/test_retry.py"]),
)


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed; run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0])


def copy_repo(name: str, repos: Path) -> Path:
    """The package's .py files (no caches, no binaries), readable by the sandbox user."""
    src, dst = package_dir(name), repos / name
    if dst.exists():
        shutil.rmtree(dst)
    for path in sorted(src.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for d in [repos, *dst.rglob("*")] + [dst]:
        d.chmod(0o755 if d.is_dir() else 0o644)
    return dst


def identifiers(repo: Path) -> dict[str, list[str]]:
    """Names of top-level functions and classes -> the files using them (whole words)."""
    texts = {str(p.relative_to(repo)): p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(repo.rglob("*.py"))}
    names: set[str] = set()
    for text in texts.values():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                # distinctive enough to grep for, short enough for a small model to copy
                if 6 <= len(node.name) <= 20 and not node.name.startswith("__"):
                    names.add(node.name)
    words = {f: set(re.findall(r"\w+", text)) for f, text in texts.items()}  # what grep -w matches
    out = {}
    for name in sorted(names):
        files = sorted(f for f, ws in words.items() if name in ws)
        if 1 <= len(files) <= MAX_FILES:
            out[name] = files
    return out


def demonstration(i: int, template: str) -> list[dict]:
    name, new, files = DEMO_CASES[i]
    call = {"id": f"call_demo{i}", "type": "function",
            "function": {"name": "shell", "arguments": json.dumps({"command": f"grep -rlw {name} ."})}}
    return [
        {"role": "user", "content": template.format(name=name, new=new)},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"call_demo{i}", "content": "\n".join(files)},
        {"role": "assistant", "content": "\n".join(files)},
    ]


def make_row(repo: str, name: str, files: list[str], rng: random.Random) -> dict:
    template = rng.choice(REQUESTS)
    request = template.format(name=name, new=name + "_v2")
    demos = [m for i in range(DEMOS) for m in demonstration(i, template)]  # asked the same way
    return {"messages": [{"role": "system", "content": SYSTEM}, *demos,
                         {"role": "user", "content": request}],
            "tools": ROW_TOOLS,
            "repo": repo, "identifier": name, "files": files, "request": request}


def make_rows(repos_dir: Path, names: tuple[str, ...], seed: int, per_repo: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for repo in names:
        found = identifiers(repos_dir / repo)
        picked = rng.sample(sorted(found), min(per_repo, len(found)))
        rows += [make_row(repo, name, found[name], rng) for name in picked]
    rng.shuffle(rows)
    return rows


def write(out_dir: str | Path = HERE, seed: int = 0) -> dict[str, int]:
    """repos/ (copies of the installed packages), train.jsonl and valid.jsonl under out_dir/data."""
    out = Path(out_dir)
    repos = out / "repos"
    repos.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_REPOS + VALID_REPOS:
        copy_repo(name, repos)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, names, s in (("train", TRAIN_REPOS, seed), ("valid", VALID_REPOS, seed + 1)):
        rows = make_rows(repos, names, s, TASKS_PER_REPO[split])
        with (data / f"{split}.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        counts[split] = len(rows)
    return counts


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else HERE))
