"""The update step on 2 CPU ranks (gloo) equals the single-process step: DDP and FSDP, LoRA and
full fine-tuning, on the tiny random model; checkpoints move between world sizes."""

from __future__ import annotations

import random

import pytest
import torch

from agentrft.errors import RankError, SpecError
from agentrft.spec.job import parse_job
from agentrft.train.distributed import DistributedPolicy, split_by_tokens
from agentrft.train.loss import TrainSequence
from agentrft.train.policy import Policy
from tests.tiny_jobs import lookup_job


def job_for(model_dir, *, finetune="lora", strategy="single", world_size=1, **hp):
    return parse_job({
        "model": str(model_dir), "training_file": "unused.jsonl",
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "x", "input": "a", "reference": "a",
                       "operation": "eq"},
            "training": {"strategy": strategy, "world_size": world_size},
            # micro-batches of 2 sequences: ranks run different numbers of them
            "hyperparameters": {"finetune": finetune, "micro_batch_size": 2, **hp}}}})


def batch(seed: int, vocab: int) -> list[TrainSequence]:
    """Sequences of different lengths, loss on their tails, advantages of both signs, half with
    the engine's log-probs (near a uniform model's) and half without (on-policy)."""
    rng = random.Random(seed)
    out = []
    for i, n in enumerate([9, 23, 14, 31, 6, 17, 12]):
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        start = rng.randrange(2, n - 2)
        mask = [0] * start + [1] * (n - start)
        behaviour = [rng.gauss(-10.8, 0.5) for _ in range(n)] if i % 2 else None
        out.append(TrainSequence(ids, mask, rng.uniform(-1.5, 1.5), behaviour))
    return out


def trained(model, finetune: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if p.requires_grad or finetune == "full"}


def assert_same_weights(a: dict, b: dict, before: dict) -> None:
    assert a.keys() == b.keys()
    moved = max(float((a[k] - before[k]).abs().max()) for k in a)
    assert moved > 1e-6  # the step changed something, so equality below means something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_tokens_are_split_evenly():
    seqs = [TrainSequence([0] * n, [1] * n, 0.0) for n in [50, 40, 30, 20, 10, 10]]
    parts = split_by_tokens(seqs, 2)
    assert sorted(sum(len(s.token_ids) for s in p) for p in parts) == [80, 80]
    assert sorted(len(s.token_ids) for p in parts for s in p) == [10, 10, 20, 30, 40, 50]
    assert split_by_tokens(seqs[:1], 2)[1] == []  # a rank may get nothing


def test_training_field_errors_name_the_field(tiny_model_dir):
    with pytest.raises(SpecError, match=r"method\.reinforcement\.training.*world_size 2 needs"):
        job_for(tiny_model_dir, world_size=2)
    with pytest.raises(SpecError, match=r"method\.reinforcement\.training\.strategy"):
        job_for(tiny_model_dir, strategy="zero3", world_size=2)
    with pytest.raises(SpecError, match=r"method\.reinforcement\.training\.world_size"):
        job_for(tiny_model_dir, strategy="ddp", world_size=0)


def assert_exports_like(checkpoint, out, model) -> None:
    """`agentrft export` of `checkpoint` is a plain Hugging Face directory computing what
    `model` computes (a LoRA adapter merged in)."""
    from transformers import AutoModelForCausalLM

    from agentrft.cli import main

    assert main(["export", str(checkpoint), str(out)]) == 0
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not hasattr(plain, "peft_config")
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("finetune", ["lora", "full"])
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_step_like_one_process(tiny_model_dir, tmp_path, strategy, finetune):
    hp = {"kl_coef": 0.05} if finetune == "full" else {}  # the reference copy is sharded too
    torch.manual_seed(0)
    single = Policy(str(tiny_model_dir), job_for(tiny_model_dir, finetune=finetune, **hp).hp)
    before = trained(single.model, finetune)
    seqs = batch(1, len(single.tokenizer))
    torch.manual_seed(0)  # the same fresh LoRA adapter
    dist = DistributedPolicy(job_for(tiny_model_dir, finetune=finetune, strategy=strategy,
                                     world_size=2, **hp))
    try:
        for name, value in trained(dist.model, finetune).items():
            assert torch.equal(value, before[name]), name
        ours, theirs = dist.update(seqs), single.update(seqs)
        assert_same_weights(trained(dist.model, finetune), trained(single.model, finetune), before)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key

        # a world-size-2 checkpoint resumes in one process, optimizer state included
        dist.save_weights(tmp_path / "ckpt", step=1)
        assert_exports_like(tmp_path / "ckpt", tmp_path / "exported", single.model)
        torch.manual_seed(1)  # another fresh adapter, which the checkpoint must overwrite
        resumed = Policy(str(tiny_model_dir), job_for(tiny_model_dir, finetune=finetune, **hp).hp)
        resumed.load_weights(tmp_path / "ckpt")
        assert_same_weights(trained(resumed.model, finetune), trained(single.model, finetune), before)
        after_one = trained(single.model, finetune)
        more = batch(2, len(single.tokenizer))
        resumed.update(more), single.update(more), dist.update(more)
        assert_same_weights(trained(resumed.model, finetune), trained(single.model, finetune), after_one)
        assert_same_weights(trained(dist.model, finetune), trained(single.model, finetune), after_one)

        # and a one-process checkpoint loads into the ranks (weights and AdamW state)
        single.update(batch(4, len(single.tokenizer)))  # now the two differ by a step
        single.save_weights(tmp_path / "ckpt1", step=3)
        dist.load_weights(tmp_path / "ckpt1")
        after_three = trained(single.model, finetune)
        last = batch(5, len(single.tokenizer))
        dist.update(last), single.update(last)
        assert_same_weights(trained(dist.model, finetune), trained(single.model, finetune), after_three)

        # a rank that fails stops the group, and the error says which and why
        with pytest.raises(RankError, match=r"rank 0 failed(.|\n)*lacks"):
            dist.group.call_all("load", {"no.such.weight": torch.zeros(1)}, None)
    finally:
        dist.close()


def _gather_on_rank(rank: int, port: int) -> None:
    """Rank `rank` of 2: FSDP2-style row shards (uneven, one rank empty) reach rank 0 whole."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    from agentrft.train.sharded import to_rank0

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        mesh = init_device_mesh("cpu", (2,))

        def no_all_gather(self):
            raise AssertionError("full_tensor() would gather the whole tensor on every rank")

        DTensor.full_tensor = no_all_gather
        for shape in [(5, 3), (1, 4), (2,), (7,)]:
            whole = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
            sharded = distribute_tensor(whole, mesh, [Shard(0)], src_data_rank=None)
            got = to_rank0(sharded)
            if rank == 0:
                assert torch.equal(got, whole), shape
            else:
                assert got is None
        plain = torch.ones(3)  # a DDP replica: rank 0's own
        assert (to_rank0(plain) is plain) == (rank == 0)
    finally:
        dist.destroy_process_group()


def test_sharded_weights_reach_rank_0_alone():
    """How new weights leave FSDP ranks for the sampling engine (agentrft.train.sharded)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_on_rank, args=(port,), nprocs=2)


def test_a_job_trained_on_two_ranks_resumes_on_one_and_exports(tmp_path, tiny_model_dir):
    import asyncio
    import json

    from transformers import AutoModelForCausalLM

    from agentrft.models.export import export_model
    from agentrft.models.loading import load_model
    from agentrft.train.loop import Trainer

    run = tmp_path / "run"
    hp = {"batch_size": 2, "eval_interval": 1, "eval_samples": 1, "max_new_tokens": 12,
          "micro_batch_size": 3}
    job = lookup_job(tmp_path, tiny_model_dir, seed=3, max_steps=2,
                     training={"strategy": "fsdp", "world_size": 2}, **hp)
    metrics = asyncio.run(Trainer(job, run).run_async())
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert metrics[1]["trained_sequences"] > 0 and metrics[1]["grad_norm"] > 0
    ckpt = run / "checkpoints" / "step_000002"
    meta = json.loads((ckpt / "agentrft_checkpoint.json").read_text())
    assert meta["training"] == {"strategy": "fsdp", "world_size": 2}

    resumed = asyncio.run(Trainer(lookup_job(tmp_path, tiny_model_dir, seed=3, max_steps=3,
                                             training={"strategy": "single"}, **hp), run)
                          .run_async(resume=True))
    assert [m["step"] for m in resumed] == [0, 1, 2, 3]
    assert resumed[3]["trained_sequences"] > 0

    out = export_model(str(ckpt), tmp_path / "exported")  # a plain HF directory, LoRA merged
    plain = AutoModelForCausalLM.from_pretrained(out)
    adapter = load_model(str(ckpt))  # the checkpoint as agentrft loads it: base + adapter
    base = load_model(str(tiny_model_dir))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        logits = plain(ids).logits
        torch.testing.assert_close(logits, adapter(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(logits, base(ids).logits, atol=1e-4)  # it did train


def test_ranks_as_ray_actors_step_like_one_process(tiny_model_dir):
    import ray  # the [ray] extra; scripts/setup.sh installs it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        torch.manual_seed(0)
        single = Policy(str(tiny_model_dir), job_for(tiny_model_dir).hp)
        before = trained(single.model, "lora")
        seqs = batch(3, len(single.tokenizer))
        torch.manual_seed(0)
        dist = DistributedPolicy(job_for(tiny_model_dir, strategy="ddp", world_size=2), ray="local")
        try:
            dist.update(seqs), single.update(seqs)
            assert_same_weights(trained(dist.model, "lora"), trained(single.model, "lora"), before)
        finally:
            dist.close()
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(5400)  # 13 min for the baseline eval alone at load ~9 on 2 cores
def test_the_lookup_job_learns_as_well_on_two_ranks(tmp_path):
    """The lookup job learns on 2 FSDP ranks by the criteria tests/test_learning.py holds one
    process to: a possible-but-unsolved baseline and a validation gain of at least MIN_GAIN.

    A tighter floor on the trained reward (one process's 0.757 over seeds 1-3, less 0.1) was
    tried and is a coin flip: the validation eval is 12 rows x 2 rollouts, whose binomial
    spread at p = 0.75 is sqrt(0.75 * 0.25 / 24) = 0.088 alone, and sampling is not
    bit-reproducible (at step 1 of seed 1, 434 trained tokens on 2 ranks against 407 on one).
    Seed 1, 2026-12-04, 2-core CPU at load ~5: 2 ranks 0.292 -> 0.625 (13 min 19 s); one
    process right after 0.292 -> 0.792, and 0.750 in README's table. That a step on 2 ranks
    is the same update as one process's, up to float rounding, the fast tests above check."""
    from pathlib import Path

    from agentrft.spec import load_job
    from agentrft.spec.job import TrainingDecl
    from agentrft.train.loop import train
    from examples.lookup import task
    from tests.test_learning import MIN_GAIN

    task.write(tmp_path / "data")
    job = load_job(Path(__file__).parents[1] / "examples" / "lookup" / "job.yaml")
    job.rl.training = TrainingDecl(strategy="fsdp", world_size=2)
    job = job.model_copy(update={"training_file": str(tmp_path / "data" / "train.jsonl"),
                                 "validation_file": str(tmp_path / "data" / "valid.jsonl")})
    metrics = train(job, tmp_path / "run")
    evals = [m for m in metrics if m.get("valid_reward_mean") is not None]
    baseline, trained = evals[0]["valid_reward_mean"], evals[-1]["valid_reward_mean"]
    print(f"world_size 2: validation reward {baseline:.3f} -> {trained:.3f}")
    assert evals[-1]["step"] == job.hp.max_steps
    assert 0.0 < baseline < 0.6
    assert trained - baseline >= MIN_GAIN
