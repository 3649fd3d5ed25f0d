"""agentrft: self-hosted reinforcement fine-tuning of tool-using agents.

The packages form layers. A module imports its own package and packages of lower layers,
never one of its own layer or above (`tests/test_import_layers.py` reads every import and
fails otherwise, and on any circle of modules importing each other)::

    cli.py                      the `agentrft` command: parses arguments, calls the layers below
    server/                     the jobs HTTP API, dashboard, `agentrft server` (hosts serving/)
    serving/                    OpenAI-compatible inference for a model or a pool of them
    web/                        what both HTTP apps share: error bodies, JSON encoding, middleware
    jobs/                       job store (SQLite), worker, service
    analysis/                   reading finished runs: comparisons, plots, report, alarms
    train/                      the loop, policy, loss, checkpoints, eval, ranks, rollouts on Ray
    rollout/                    one agent episode: render, generate, call tools, grade
    tools/  graders/            tool clients | graders (peers: neither imports the other)
    engines/                    generation backends behind `Engine`; the continuous batcher
    spec/                       the typed job spec and dataset rows
    models/                     loading weights and tokenizers, chat rendering, tool-call parsing
    sandbox/                    running untrusted commands: one-shot processes, workspaces
    retry httpio loopback       small shared helpers: retry with backoff, capped HTTP bodies,
    malloc templates            loopback ports, returning freed memory, `{{item.x}}` templates
    errors.py                   the one exception tree

Why this order: everything below `rollout` is a part that one rollout uses and that knows
nothing of training; `train` composes them; `analysis` only reads what a run wrote; `jobs`
runs training for the HTTP API; entry points (`server`, `serving`, `cli`) sit on top.
`ft:` model names (a job's fine-tuned model) are resolved to their checkpoint directories by
the entry points through `jobs.models`, before anything loads them: `models` loads only
directories and bundled names.
`spec` sits above `models` because a job spec's `response_format` is read by
`models.structured`.
"""

__version__ = "0.1.0"
