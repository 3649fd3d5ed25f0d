"""Where the ranks of a distributed update step run: processes on this machine, or Ray actors.

    RankGroup.call("update", [(seqs_0, total), (seqs_1, total), ...])   one call per rank,
        └─ LocalRanks: N spawned processes, a pipe each (CPU: gloo; CUDA: rank r on cuda:r)
        └─ RayRanks:   N Ray actors (`agentrft train --ray ADDRESS`), one GPU each on CUDA
                       all at once, since ranks meet in collectives; every answer is awaited

A rank that raises or dies stops the whole group (the others would wait for it in their next
collective forever) and the call raises `RankError` with the rank's traceback.
"""

from __future__ import annotations

import traceback
from typing import Any, Protocol

from agentrft.errors import RankError


class RankGroup(Protocol):
    """N `agentrft.train.rank.RankTrainer`s; `call` runs a method on all of them at once.

        group.call("start", [(host, port)] * group.world_size)
        group.call_all("weights")[0]   # rank 0's answer"""

    world_size: int

    def call(self, method: str, args_per_rank: list[tuple]) -> list[Any]: ...

    def call_all(self, method: str, *args) -> list[Any]: ...

    def close(self) -> None: ...


def start_group(group: RankGroup) -> None:
    """Rendezvous: rank 0 names an address, every rank joins the process group there."""
    host, port = group.call("address", [()] * group.world_size)[0]
    group.call_all("start", host, port)


def _serve(conn, kwargs: dict) -> None:
    """A local rank's process: build the RankTrainer, then run what the pipe asks."""
    from agentrft.train.rank import RankTrainer

    try:
        worker = RankTrainer(**kwargs)
        conn.send(("ok", None))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            worker.stop()
            conn.send(("ok", None))
            return
        method, args = message
        try:
            conn.send(("ok", getattr(worker, method)(*args)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class LocalRanks:
    def __init__(self, kwargs_per_rank: list[dict]):
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")  # CUDA and a forked torch do not mix
        self.world_size = len(kwargs_per_rank)
        self.conns, self.procs = [], []
        for kwargs in kwargs_per_rank:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, kwargs), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._answers()  # every rank constructed

    def call(self, method: str, args_per_rank: list[tuple]) -> list[Any]:
        for conn, args in zip(self.conns, args_per_rank):
            conn.send((method, args))
        return self._answers()

    def call_all(self, method: str, *args) -> list[Any]:
        return self.call(method, [args] * self.world_size)

    def _answers(self) -> list[Any]:
        out = []
        for rank, (conn, proc) in enumerate(zip(self.conns, self.procs)):
            while not conn.poll(1.0):
                if not proc.is_alive():
                    self._kill()
                    raise RankError(f"trainer rank {rank} died (exit code {proc.exitcode})")
            try:
                status, value = conn.recv()
            except EOFError:
                self._kill()
                raise RankError(f"trainer rank {rank} died (exit code {proc.exitcode})") from None
            if status == "error":
                self._kill()
                raise RankError(f"trainer rank {rank} failed:\n{value}")
            out.append(value)
        return out

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        self.conns, self.procs = [], []

    def close(self) -> None:
        if not self.procs:
            return
        try:
            for conn in self.conns:
                conn.send(None)
            self._answers()
        except (RankError, OSError):
            pass
        for proc in self.procs:
            proc.join(timeout=30)
        self._kill()


class RayRanks:
    def __init__(self, kwargs_per_rank: list[dict], *, address: str, gpus_per_rank: float):
        import ray

        from agentrft.rollout.ray_pool import connect_ray
        from agentrft.train.rank import RankTrainer

        connect_ray(address)
        self.world_size = len(kwargs_per_rank)
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_rank, max_restarts=0)(RankTrainer)
        self.actors = [actor.remote(**kwargs) for kwargs in kwargs_per_rank]

    def call(self, method: str, args_per_rank: list[tuple]) -> list[Any]:
        import ray
        from ray.exceptions import RayError

        refs = [getattr(a, method).remote(*args) for a, args in zip(self.actors, args_per_rank)]
        try:
            return ray.get(refs)
        except RayError as e:
            self.close()
            raise RankError(f"a trainer rank failed: {e}") from None

    def call_all(self, method: str, *args) -> list[Any]:
        return self.call(method, [args] * self.world_size)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
