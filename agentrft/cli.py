"""The `agentrft` command.

    agentrft demo [--quick] [--device cpu|cuda] [--out DIR] [--task search|verify|…]
    agentrft train JOB.yaml [--out DIR] [--resume] [--device cpu|cuda] [--ray ADDRESS]
                   [--judge-models FILE] [--judge-base-url URL [--judge-api-key-env VAR]]
    agentrft eval  JOB.yaml [--model MODEL_OR_CHECKPOINT] [--samples N] [--out DIR] [--file JSONL]
    agentrft compare RUN_A RUN_B --out DIR [--step-a N] [--step-b N]
    agentrft validate JOB.yaml
    agentrft graders run --grader G.json [--item I.json] [--sample S.json | --sample-text TEXT]
    agentrft graders validate --grader G.json
    agentrft server [--host H] [--port P] [--data-dir D] [--api-key K] [--device cpu|cuda] [--runs DIR]
                    [--embedding-model NAME=TARGET] [--judge-models FILE] [--judge-base-url URL]
                    [--inference-memory-gb G] [--no-inference]
    agentrft serve MODEL_OR_CHECKPOINT [--host H] [--port P] [--api-key K] [--device cpu|cuda]
                   [--embedding-model NAME=TARGET]
    agentrft export CHECKPOINT OUT_DIR [--dtype float32|bfloat16|float16] [--overwrite]
    agentrft jobs create JOB.yaml | list | get ID | events ID [--follow] | checkpoints ID
                  | pause ID | resume ID | cancel ID
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from agentrft.errors import AgentRFTError


def _quiet_libraries() -> None:
    """Keep the terminal for our progress bar: no per-load bars or deprecation notes from
    transformers/peft internals (they say nothing a user can act on)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _load(job_path: str):
    from agentrft.spec import load_job
    from agentrft.train.setup import import_roots

    import_roots(job_path)
    return load_job(job_path)


def _install_judges(args) -> None:
    """--judge-models / --judge-base-url / --judge-api-key-env: where served judge names go."""
    from agentrft.graders import judge_routes

    if args.judge_models or args.judge_base_url or args.judge_api_key_env:
        judge_routes.install(judge_routes.load_routes(
            args.judge_models, base_url=args.judge_base_url, api_key_env=args.judge_api_key_env))


def _add_judge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-models", metavar="FILE",
                   help="YAML/JSON mapping judge model names or glob patterns (gpt-*) of "
                        "score_model/label_model graders to {base_url, api_key_env}")
    p.add_argument("--judge-base-url", metavar="URL",
                   help="OpenAI-compatible server for every other served judge model name")
    p.add_argument("--judge-api-key-env", metavar="VAR",
                   help="environment variable holding the key for --judge-base-url")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_train(args) -> int:
    _install_judges(args)  # before any grader is built
    from tqdm import tqdm

    from agentrft.analysis.alarm import AlarmWatcher
    from agentrft.analysis.compare import read_metrics
    from agentrft.jobs.models import resolve_spec_model
    from agentrft.train.loop import StepReport, Trainer, raise_if_paused

    job = resolve_spec_model(_load(args.job))  # an ft: model: its checkpoint directory
    out = Path(args.out or f"runs/{Path(args.job).stem}")
    alarms = AlarmWatcher(out)  # reward hacking: a warning in events.jsonl and here
    if args.resume:
        alarms.replay(read_metrics(out))
    trainer = Trainer(job, out, device=args.device, ray=args.ray, ray_workers=args.ray_workers)
    bar = tqdm(total=trainer.total_steps, unit="step", dynamic_ncols=True, disable=args.quiet)
    started = time.perf_counter()
    rollouts_done = 0

    def on_step(report: StepReport) -> None:
        nonlocal rollouts_done
        m = report.metrics
        rollouts_done += int(m.get("rollouts", 0))
        bar.n = report.step
        bar.set_postfix_str(
            f"step {report.step}/{report.total_steps} reward {_fmt(m.get('train_reward_mean'))} "
            f"valid {_fmt(m.get('valid_reward_mean'))} "
            f"{rollouts_done / max(time.perf_counter() - started, 1e-9):.2f} rollouts/s", refresh=False)
        bar.refresh()
        for warning in alarms.on_metrics({**m, "step": report.step}):
            bar.write(f"warning: {warning['message']}", file=sys.stderr)

    trainer.on_step = on_step
    metrics = asyncio.run(trainer.run_async(resume=args.resume))
    bar.close()
    raise_if_paused(trainer)  # too many rollouts discarded: the message says why and how to go on
    evals = [m for m in metrics if m.get("valid_reward_mean") is not None]
    if evals:
        print(f"validation reward: {evals[0]['valid_reward_mean']:.3f} (step {evals[0]['step']}) -> "
              f"{evals[-1]['valid_reward_mean']:.3f} (step {evals[-1]['step']})")
    print(f"run directory: {out}")
    return 0


def cmd_eval(args) -> int:
    _install_judges(args)  # before any grader is built
    from agentrft.jobs.models import resolve_fine_tuned, resolve_spec_model
    from agentrft.train.evaluate import evaluate

    job = _load(args.job)
    name = args.model or job.model  # an ft: name loads from its directory, keeps its name
    out = Path(args.out or f"runs/{Path(args.job).stem}-eval")
    summary = evaluate(resolve_spec_model(job), model_ref=resolve_fine_tuned(name), model_name=name,
                       samples=args.samples, out_dir=out, device=args.device, data_file=args.file)
    print(f"model {summary['model']}: mean reward {_fmt(summary.get('mean_reward'))}, "
          f"best-of-{args.samples} {_fmt(summary.get('best_of_n_reward'))}, "
          f"zero-variance rows {_fmt(summary.get('zero_variance_share'))}, "
          f"tool calls per rollout {_fmt(summary.get('valid_tool_calls_per_rollout'))}")
    from agentrft.analysis.commands import eval_analysis, readiness_line

    print(readiness_line(eval_analysis(out)["readiness"]))  # + variance.png, variance.html
    print(f"summary: {out / 'summary.json'}")
    return 0


def cmd_validate(args) -> int:
    _install_judges(args)  # before any grader is built
    from agentrft.train.setup import validate_job

    job = _load(args.job)
    v = validate_job(job)
    print(json.dumps({"ok": True, "training_rows": len(v.train_rows),
                      "validation_rows": len(v.valid_rows), "grader": v.grader.type,
                      "tools": [t.name for t in job.rl.tools]}))
    return 0


def _read_json(path: str, what: str, *, text_ok: bool = False):
    from agentrft.errors import SpecError

    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read {what}: {e.strerror}", file=path) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        if text_ok:  # a sample may be plain text: it is output_text
            return raw.rstrip("\n")
        raise SpecError(f"invalid JSON in {what}: {e.msg} (line {e.lineno})", file=path,
                        line=e.lineno) from None


def cmd_graders_run(args) -> int:
    _install_judges(args)  # before any grader is built
    from agentrft.graders.api import run_grader

    grader = _read_json(args.grader, "grader")
    item = _read_json(args.item, "item") if args.item else {}
    if args.sample_text is not None:
        sample = args.sample_text
    elif args.sample:
        sample = _read_json(args.sample, "sample", text_ok=True)
    else:
        sample = ""
    print(json.dumps(asyncio.run(run_grader(grader, sample, item)), indent=2))
    return 0


def cmd_graders_validate(args) -> int:
    _install_judges(args)  # before any grader is built
    from agentrft.graders.api import validate_grader

    grader = _read_json(args.grader, "grader")
    validate_grader(grader)
    print(json.dumps({"grader": grader}, indent=2))
    return 0


def _api_keys(args) -> list[str]:
    """--api-key values, and AGENTRFT_API_KEY when set."""
    env = os.environ.get("AGENTRFT_API_KEY")
    return [*args.api_key, *([env] if env else [])]


def _embedding_models(args) -> dict[str, str]:
    from agentrft.serving.embeddings import parse_mapping

    return parse_mapping(args.embedding_model)


def cmd_server(args) -> int:
    _install_judges(args)  # before any grader is built
    from agentrft.jobs.store import default_data_dir
    from agentrft.server.run import serve

    serve(host=args.host, port=args.port, data_dir=Path(args.data_dir) if args.data_dir
          else default_data_dir(), api_keys=_api_keys(args), device=args.device, workers=args.workers,
          runs=Path(args.runs) if args.runs else None,
          embedding_models=_embedding_models(args), inference=not args.no_inference,
          inference_memory_gb=args.inference_memory_gb)
    return 0


def cmd_serve(args) -> int:
    from agentrft.jobs.models import resolve_fine_tuned
    from agentrft.serving.run import serve_model

    # an ft: name loads from its checkpoint directory and is still what clients ask for
    serve_model(resolve_fine_tuned(args.model), host=args.host, port=args.port,
                api_keys=_api_keys(args), device=args.device,
                served_model_name=args.served_model_name or args.model, seed=args.seed,
                max_batch_size=args.max_batch_size, max_model_len=args.max_model_len,
                embedding_models=_embedding_models(args))
    return 0


def cmd_export(args) -> int:
    from agentrft.jobs.models import resolve_fine_tuned
    from agentrft.models.export import export_model

    out = export_model(resolve_fine_tuned(args.model), args.out, dtype=args.dtype,
                       overwrite=args.overwrite, name=args.model)
    print(f"exported {args.model} to {out} (a plain Hugging Face model directory)")
    return 0


def cmd_demo(args) -> int:
    from examples.finqa_lite.demo import run_demo

    run_demo(args.out, quick=args.quick, device=args.device, task=args.task,
             overrides=dict(args.set))
    return 0


def hyperparameter_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as a YAML scalar (`96`, `0.1`, `true`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"{key}: not a YAML value: {value!r} ({e})") from None


def _add_embedding_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding-model", action="append", default=[], metavar="NAME=TARGET",
                   help="answer /v1/embeddings for NAME with TARGET: all-minilm-l6-v2 (the "
                        "bundled model) or a local sentence-transformers directory; repeatable "
                        "(e.g. text-embedding-3-small=all-minilm-l6-v2)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="agentrft", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    # Commands that may run a `python` grader's source: without bubblewrap they refuse to,
    # unless the operator says so here (or with AGENTRFT_ALLOW_UNSANDBOXED_CODE=1).
    grading = argparse.ArgumentParser(add_help=False)
    grading.add_argument("--allow-unsandboxed-code", action="store_true",
                         help="run python grader code without network or file-system isolation "
                              "when bubblewrap is missing (default: refuse)")

    t = sub.add_parser("train", help="run a reinforcement fine-tuning job", parents=[grading])
    t.add_argument("job")
    t.add_argument("--out", help="run directory (default runs/JOB_NAME)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--device", default="cpu")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--ray", metavar="ADDRESS", help="run rollouts on Ray actors: a cluster address, "
                                                    "'auto' (the running cluster) or 'local'")
    t.add_argument("--ray-workers", type=int, default=2, help="rollout actors with --ray")
    _add_judge_options(t)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a model or checkpoint on the job's validation rows", parents=[grading])
    e.add_argument("job")
    e.add_argument("--model", help="model, checkpoint directory or ft: name "
                                   "(default: the job's model)")
    e.add_argument("--samples", type=int, default=3, help="rollouts per row")
    e.add_argument("--out")
    e.add_argument("--file", help="a JSONL dataset instead of the job's validation file")
    e.add_argument("--device", default="cpu")
    _add_judge_options(e)
    e.set_defaults(fn=cmd_eval)

    v = sub.add_parser("validate", help="check a job file, its datasets, grader and tools", parents=[grading])
    v.add_argument("job")
    _add_judge_options(v)
    v.set_defaults(fn=cmd_validate)
    d = sub.add_parser("demo", help="FinQA-lite: baseline eval, RL training, final eval, report", parents=[grading])
    d.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--task", default="verify",
                   choices=("search", "verify", "verify-last", "verify-hint", "verify-last-hint",
                            "search-hint", "browse", "browse-last"),
                   help="verify (default): demonstrations search, then open the report with cat "
                        "to confirm (examples/finqa_lite/verify.py); search: they answer from the "
                        "search snippet; browse*: one lists and cats instead of searching (browse.py)")
    d.add_argument("--set", action="append", default=[], type=hyperparameter_setting,
                   metavar="KEY=VALUE", help="a hyperparameter over the demo job's (repeatable), "
                   "e.g. --set max_new_tokens=96 --set turn_penalty=0.1")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("server", help="serve the jobs API (OpenAI's paths) and run a worker", parents=[grading])
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--data-dir", help="store, uploads and runs (default: AGENTRFT_DATA_DIR or "
                                      "~/.local/share/agentrft)")
    s.add_argument("--api-key", action="append", default=[],
                   help="accepted key (repeatable; also AGENTRFT_API_KEY)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--workers", type=int, default=1, help="jobs trained at once")
    s.add_argument("--runs", help="also show the run dirs under this folder on the dashboard "
                                  "(agentrft train/eval/demo outputs; read-only)")
    _add_embedding_option(s)
    _add_judge_options(s)
    s.add_argument("--inference-memory-gb", type=float, default=8.0,
                   help="model weights kept loaded for inference (least recently used evicted)")
    s.add_argument("--no-inference", action="store_true",
                   help="serve no /v1/responses, /v1/chat/completions, /v1/completions")
    s.set_defaults(fn=cmd_server)

    sv = sub.add_parser("serve", help="serve a model or checkpoint over OpenAI's chat/completions API")
    sv.add_argument("model", help="bundled model, local directory, checkpoint or ft: name")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8001)
    sv.add_argument("--api-key", action="append", default=[],
                    help="accepted key (repeatable; also AGENTRFT_API_KEY)")
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--served-model-name", help="the model id clients use (default: MODEL)")
    sv.add_argument("--seed", type=int, default=0, help="sampling seed for requests without one")
    sv.add_argument("--max-batch-size", type=int, default=64)
    sv.add_argument("--max-model-len", type=int,
                    help="longest prompt + completion (default: the model's max positions)")
    _add_embedding_option(sv)
    sv.set_defaults(fn=cmd_serve)

    x = sub.add_parser("export", help="write a checkpoint as a plain Hugging Face model directory "
                                      "(LoRA merged)")
    x.add_argument("model", help="checkpoint directory, ft: name or any model reference")
    x.add_argument("out", help="output directory")
    x.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    x.set_defaults(fn=cmd_export)

    from agentrft.jobs.client_cli import add_parser as add_jobs_parser

    add_jobs_parser(sub)
    from agentrft.analysis.commands import add_parser as add_compare_parser

    add_compare_parser(sub)

    g = sub.add_parser("graders", help="run or validate a grader config")
    gsub = g.add_subparsers(dest="graders_command", required=True)
    gr = gsub.add_parser("run", help="grade one sample; prints OpenAI's graders-run response", parents=[grading])
    gr.add_argument("--grader", required=True, help="grader config (JSON file)")
    gr.add_argument("--item", help="the dataset item (JSON file)")
    gr.add_argument("--sample", help="the sample (JSON file: an object, or a string / plain text "
                                     "for output_text)")
    gr.add_argument("--sample-text", help="the sample's output_text, given inline")
    _add_judge_options(gr)
    gr.set_defaults(fn=cmd_graders_run)
    gv = gsub.add_parser("validate", help="check a grader config; prints {\"grader\": ...}", parents=[grading])
    gv.add_argument("--grader", required=True)
    _add_judge_options(gv)
    gv.set_defaults(fn=cmd_graders_validate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    if getattr(args, "allow_unsandboxed_code", False):
        from agentrft.sandbox.process import ALLOW_UNSANDBOXED_ENV

        os.environ[ALLOW_UNSANDBOXED_ENV] = "1"  # the server's worker processes inherit it
    try:
        return args.fn(args)
    except AgentRFTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished steps are checkpointed every eval_interval steps "
              "(continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
