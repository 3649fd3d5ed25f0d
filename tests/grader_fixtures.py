"""Grade functions for tests, importable as `tests.grader_fixtures:<name>`."""

from __future__ import annotations

import math


def exact_answer(sample: dict, item: dict) -> float:
    return 1.0 if sample["output_text"].strip() == item["answer"] else 0.0


async def async_exact_answer(sample: dict, item: dict) -> float:
    return exact_answer(sample, item)


def too_big(sample: dict, item: dict) -> float:
    return 3.5


def negative(sample: dict, item: dict) -> int:
    return -2


def boolean(sample: dict, item: dict) -> bool:
    return True


def with_sub_rewards(sample: dict, item: dict) -> dict:
    return {"reward": 0.75, "sub_rewards": {"format": 1.0, "answer": 0.5}}


def bad_dict(sample: dict, item: dict) -> dict:
    return {"score": 1.0}


def buggy(sample: dict, item: dict) -> float:
    return item["no_such_key"]


async def async_buggy(sample: dict, item: dict) -> float:
    raise ValueError("judge exploded")


def returns_nan(sample: dict, item: dict) -> float:
    return math.nan


def returns_text(sample: dict, item: dict) -> str:
    return "0.5"


def returns_none(sample: dict, item: dict) -> None:
    return None


not_callable = 42
