"""System parts some tests need (bubblewrap, chromium, WordNet): skipped locally, failed in CI.

`scripts/setup.sh` installs these as root with apt-get. Where one is missing, a developer's
run skips the tests that need it and says why; a CI run (`CI=true`) fails them instead, so a
broken install step cannot hide behind a green run of skips.

    pytestmark = needs_system("bubblewrap", BwrapBackend.available())   # a module
    @needs_system("chromium", None if ok else "not installed")           # one test
    require_system("WordNet", problem)                                   # inside a test

`problem` is None when the part is there, else why it is not. (Docker and CUDA are not on
this list: no CI machine of ours has them, so those tests skip everywhere.)
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_system(part: str, problem: str | None) -> None:
    """Inside a test: go on if `problem` is None; else skip, or fail under CI=true."""
    if problem is None:
        return
    message = f"needs {part}: {problem}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing system part is a failure, not a skip; "
                    f"scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(message)


def needs_system(part: str, problem: str | None) -> pytest.MarkDecorator:
    """A mark for a test or module (`pytestmark`); tests/conftest.py applies it at setup."""
    return pytest.mark.needs_system(part, problem)
