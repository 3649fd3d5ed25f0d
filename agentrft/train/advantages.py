"""Group-relative advantages (GRPO) from the rewards of one row's G rollouts.

    grpo:          A_i = (r_i - mean(r)) / (std(r) + eps)
    unnormalized:  A_i =  r_i - mean(r)          (no division: keeps reward scale, "Dr. GRPO")

A group whose rewards are all equal teaches nothing (every A_i = 0) and is dropped and
counted as a zero-variance group; discarded rollouts never enter a group.
"""

from __future__ import annotations

import math
from typing import Literal

EPS = 1e-6


def group_advantages(rewards_G: list[float], mode: Literal["grpo", "unnormalized"] = "grpo"
                     ) -> list[float] | None:
    """Advantages for one group, or None when the group has fewer than 2 rewards or no variance."""
    if len(rewards_G) < 2:
        return None
    mean = sum(rewards_G) / len(rewards_G)
    var = sum((r - mean) ** 2 for r in rewards_G) / len(rewards_G)
    if var < 1e-12:
        return None
    if mode == "unnormalized":
        return [r - mean for r in rewards_G]
    std = math.sqrt(var)
    return [(r - mean) / (std + EPS) for r in rewards_G]
