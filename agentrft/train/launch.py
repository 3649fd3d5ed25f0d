"""Where the ranks of a distributed update step run: processes on this machine, or Ray actors.

    RankGroup.call("update", [(seqs_0, total), (seqs_1, total), ...])   one call per rank,
        └─ LocalRanks: N processes on this machine, a loopback connection each
                       (CPU: gloo; CUDA: rank r on cuda:r)
        └─ RayRanks:   N Ray actors (`agentrft train --ray ADDRESS`), one GPU each on CUDA
                       all at once, since ranks meet in collectives; every answer is awaited

A rank that raises or dies stops the whole group (the others would wait for it in their next
collective forever) and the call raises `RankError` with the rank's traceback.
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
import traceback
from multiprocessing.connection import Client, Listener
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


class LocalRanks:
    """Rank processes on this machine: `python -m agentrft.train.launch`, each listening on a
    loopback port for this process (an authenticated `multiprocessing` connection). Not
    `multiprocessing` spawn, which re-runs the caller's main module in every rank (a script
    calling `train()` without a `__main__` guard would start itself again)."""

    def __init__(self, kwargs_per_rank: list[dict]):
        self.world_size = len(kwargs_per_rank)
        self.conns, self.procs = [], []
        key = secrets.token_bytes(32)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            for kwargs in kwargs_per_rank:
                proc = subprocess.Popen([sys.executable, "-m", "agentrft.train.launch"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                self.procs.append(proc)
                proc.stdin.write(key.hex().encode() + b"\n")
                proc.stdin.close()
            for rank, (proc, kwargs) in enumerate(zip(self.procs, kwargs_per_rank)):
                port = proc.stdout.readline().strip()
                if not port:
                    raise RankError(f"trainer rank {rank} exited before it listened "
                                    f"(exit code {proc.wait()})")
                conn = Client(("127.0.0.1", int(port)), authkey=key)
                self.conns.append(conn)
                conn.send_bytes(pickle.dumps(kwargs))
            self._answers()  # every rank constructed
        except BaseException:
            self._kill()
            raise

    def call(self, method: str, args_per_rank: list[tuple]) -> list[Any]:
        for conn, args in zip(self.conns, args_per_rank):
            conn.send_bytes(pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL))
        return self._answers()

    def call_all(self, method: str, *args) -> list[Any]:
        return self.call(method, [args] * self.world_size)

    def _answers(self) -> list[Any]:
        out = []
        for rank, (conn, proc) in enumerate(zip(self.conns, self.procs)):
            try:
                while not conn.poll(1.0):
                    if proc.poll() is not None:
                        raise EOFError
                status, value = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self._kill()
                raise RankError(f"trainer rank {rank} died (exit code {proc.wait()})") from None
            if status == "error":
                self._kill()
                raise RankError(f"trainer rank {rank} failed:\n{value}")
            out.append(value)
        return out

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []

    def close(self) -> None:
        if not self.procs:
            return
        try:
            for conn in self.conns:
                conn.send_bytes(pickle.dumps(None))
            self._answers()
            for proc in self.procs:
                proc.wait(timeout=30)
        except (RankError, OSError, subprocess.TimeoutExpired):
            pass
        self._kill()


def serve_rank() -> None:
    """A local rank's process: listen for the trainer, build the RankTrainer, run its calls."""
    key = bytes.fromhex(sys.stdin.readline().strip())
    listener = Listener(("127.0.0.1", 0), authkey=key)
    print(listener.address[1], flush=True)
    os.dup2(2, 1)  # nobody reads our stdout after the port: prints must not fill the pipe
    conn = listener.accept()
    listener.close()
    from agentrft.train.rank import RankTrainer

    def answer(status: str, value: Any) -> None:
        conn.send_bytes(pickle.dumps((status, value), protocol=pickle.HIGHEST_PROTOCOL))

    try:
        worker = RankTrainer(**pickle.loads(conn.recv_bytes()))
        answer("ok", None)
    except BaseException:
        answer("error", traceback.format_exc())
        return
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except EOFError:  # the trainer is gone
            return
        if message is None:
            worker.stop()
            answer("ok", None)
            sys.stderr.flush()
            os._exit(0)  # nothing left to save; the interpreter's teardown takes seconds
        method, args = message
        try:
            answer("ok", getattr(worker, method)(*args))
        except BaseException:
            answer("error", traceback.format_exc())


class RayRanks:
    def __init__(self, kwargs_per_rank: list[dict], *, address: str, gpus_per_rank: float):
        import ray

        from agentrft.train.ray_cluster import connect_ray
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


if __name__ == "__main__":
    serve_rank()
