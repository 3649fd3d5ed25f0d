"""Joining a Ray cluster, for the two things that run on one: rollout workers
(`agentrft.train.ray_pool`) and training ranks (`agentrft.train.launch`)."""

from __future__ import annotations


def connect_ray(address: str) -> None:
    """Join the cluster at `address` (or `auto`), or start a fresh one-machine instance for
    `local` (tests, one box); nothing when this process is connected already."""
    import ray

    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
