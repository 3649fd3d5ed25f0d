"""One table pinning each grader type's documented semantics through the public API
(`run_grader`: config + sample + item -> OpenAI's graders-run response).

Each case: (id, grader config, sample, item, expected) where expected is a reward (exact, or
a (lo, hi) interval) or the name of the error flag that must be raised.
"""

import math

import pytest

from agentrft.graders.api import run_grader


def sc(op, inp="{{sample.output_text}}", ref="{{item.answer}}"):
    return {"type": "string_check", "name": "sc", "input": inp, "reference": ref, "operation": op}


def ts(metric, threshold=None):
    cfg = {"type": "text_similarity", "name": "ts", "input": "{{sample.output_text}}",
           "reference": "{{item.answer}}", "evaluation_metric": metric}
    if threshold is not None:
        cfg["pass_threshold"] = threshold
    return cfg


def multi(formula, **graders):
    return {"type": "multi", "name": "m", "graders": graders, "calculate_output": formula}


NUMERIC = {"type": "python", "name": "num", "callable": "examples.graders.numeric:grade"}
A = {"answer": "Paris"}
NUMERIC_SOURCE = __import__("examples.graders.numeric", fromlist=["SOURCE"]).SOURCE

CASES = [
    # --- string_check: eq / ne / like / ilike --------------------------------------------------
    ("eq-exact", sc("eq"), "Paris", A, 1.0),
    ("eq-case", sc("eq"), "paris", A, 0.0),
    ("eq-trailing-space", sc("eq"), "Paris ", A, 0.0),
    ("eq-empty-output", sc("eq"), "", A, 0.0),
    ("eq-both-empty", sc("eq"), "", {"answer": ""}, 1.0),
    ("eq-unicode", sc("eq"), "Zürich", {"answer": "Zürich"}, 1.0),
    ("eq-unicode-nfd-differs", sc("eq"), "Zu\u0308rich", {"answer": "Zürich"}, 0.0),
    ("ne-different", sc("ne"), "Lyon", A, 1.0),
    ("ne-same", sc("ne"), "Paris", A, 0.0),
    ("like-contains", sc("like"), "It is Paris.", A, 1.0),
    ("like-case-sensitive", sc("like"), "it is paris.", A, 0.0),
    ("like-empty-reference", sc("like"), "anything", {"answer": ""}, 1.0),
    ("ilike-case-insensitive", sc("ilike"), "IT IS PARIS", A, 1.0),
    ("ilike-missing", sc("ilike"), "Lyon", A, 0.0),
    ("ilike-unicode-case", sc("ilike"), "ÉCOLE", {"answer": "école"}, 1.0),
    ("template-nested-item", sc("eq", ref="{{item.meta.city}}"), "Paris",
     {"meta": {"city": "Paris"}}, 1.0),
    ("template-index", sc("eq", ref="{{item.cities[1]}}"), "Lyon", {"cities": ["Paris", "Lyon"]}, 1.0),
    ("template-sample-tools", sc("eq", inp="{{sample.output_tools[0].function.name}}", ref="search"),
     {"output_text": "", "output_tools": [{"function": {"name": "search", "arguments": "{}"}}]}, {}, 1.0),
    ("template-unknown-item-key", sc("eq", ref="{{item.nope}}"), "Paris", A, "invalid_variable_error"),
    ("template-unknown-namespace", sc("eq", ref="{{foo.bar}}"), "Paris", A, "invalid_variable_error"),
    ("template-index-out-of-range", sc("eq", inp="{{sample.output_tools[0].function.name}}"), "x", A,
     "invalid_variable_error"),
    ("template-number-json", sc("eq", ref="{{item.n}}"), "42", {"n": 42}, 1.0),
    ("template-not-reexpanded", sc("eq"), "{{item.answer}}", A, 0.0),
    # --- text_similarity ----------------------------------------------------------------------
    ("fuzzy-identical", ts("fuzzy_match"), "Paris", A, 1.0),
    ("fuzzy-typo", ts("fuzzy_match"), "Pariss", A, (0.85, 0.95)),
    ("fuzzy-empty-output", ts("fuzzy_match"), "", A, 0.0),
    ("bleu-identical", ts("bleu"), "the cat sat on the mat", {"answer": "the cat sat on the mat"}, 1.0),
    ("bleu-disjoint", ts("bleu"), "dogs bark loudly", {"answer": "the cat sat on the mat"}, (0.0, 0.05)),
    ("gleu-identical", ts("gleu"), "a b c d", {"answer": "a b c d"}, 1.0),
    ("gleu-partial", ts("gleu"), "a b c x", {"answer": "a b c d"}, (0.2, 0.8)),
    ("meteor-identical", ts("meteor"), "the quick fox", {"answer": "the quick fox"}, 1.0),
    ("meteor-partial", ts("meteor"), "the quick dog", {"answer": "the quick fox"}, (0.3, 0.9)),
    ("rouge1-partial", ts("rouge_1"), "the cat ran", {"answer": "the cat sat"}, (0.66, 0.67)),
    ("rouge2-identical", ts("rouge_2"), "the cat sat", {"answer": "the cat sat"}, 1.0),
    ("rouge5-short-equal", ts("rouge_5"), "Paris!", {"answer": "paris"}, 1.0),
    ("rougeL-reordered", ts("rouge_l"), "sat the cat", {"answer": "the cat sat"}, (0.6, 0.7)),
    ("rouge-unicode", ts("rouge_1"), "東京 大阪", {"answer": "東京 大阪"}, 1.0),
    ("cosine-identical", ts("cosine"), "Revenue grew by ten percent.",
     {"answer": "Revenue grew by ten percent."}, (0.99, 1.0)),
    ("cosine-unrelated", ts("cosine"), "I like green apples.",
     {"answer": "The bond market closed lower."}, (0.0, 0.4)),
    ("similarity-both-empty", ts("rouge_l"), "", {"answer": ""}, 1.0),
    ("similarity-unknown-var", {**ts("bleu"), "reference": "{{item.x}}"}, "a", A, "invalid_variable_error"),
    # --- python callable: the numeric finance grader --------------------------------------------
    ("num-plain", NUMERIC, "The answer is 1234", {"answer": "1234"}, 1.0),
    ("num-dollar-commas", NUMERIC, "Revenue was $1,234.", {"answer": "1234"}, 1.0),
    ("num-million", NUMERIC, "$4.2 million", {"answer": "4200000"}, 1.0),
    ("num-M-vs-million", NUMERIC, "4.2M", {"answer": "4.2 million"}, 1.0),
    ("num-percent-vs-fraction", NUMERIC, "It grew 7%", {"answer": "0.07"}, 1.0),
    ("num-negative-parens", NUMERIC, "Net loss: (1,234)", {"answer": "-1234"}, 1.0),
    ("num-unicode-minus", NUMERIC, "−5.5", {"answer": "-5.5"}, 1.0),
    ("num-rounding", NUMERIC, "100.05", {"answer": "100"}, 0.5),
    ("num-wrong", NUMERIC, "101", {"answer": "100"}, 0.0),
    ("num-last-number-counts", NUMERIC, "From 90 to 100", {"answer": "100"}, 1.0),
    ("num-no-number", NUMERIC, "I don't know", {"answer": "100"}, 0.0),
    ("num-empty-output", NUMERIC, "", {"answer": "100"}, 0.0),
    # --- python source, sandboxed ------------------------------------------------------------
    ("source-exact", {"type": "python", "name": "p", "source":
                      "def grade(sample, item):\n    return float(sample['output_text'] == item['answer'])"},
     "Paris", A, 1.0),
    ("source-uses-trajectory", {"type": "python", "name": "p", "source":
                                "def grade(sample, item):\n    return len(sample['trajectory']['tool_calls']) / 4"},
     {"output_text": "x", "trajectory": {"tool_calls": [{}, {}], "messages": []}}, {}, 0.5),
    ("source-clips", {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 7"},
     "x", {}, 1.0),
    ("source-raises", {"type": "python", "name": "p", "source": "def grade(s, i):\n    return i['missing']"},
     "x", {}, "python_grader_runtime_error"),
    ("source-numeric-example", {"type": "python", "name": "p", "source": NUMERIC_SOURCE},
     "It rose to $1.2 billion.", {"answer": "1,200 million"}, 1.0),
    # --- multi: formula over sub-grader rewards ---------------------------------------------------
    ("multi-average", multi("(a + b) / 2", a=sc("eq"), b=sc("ilike")), "paris", A, 0.5),
    ("multi-precedence", multi("a + b * 0", a=sc("eq"), b=sc("ilike")), "Paris", A, 1.0),
    ("multi-parens", multi("(a + b) * 0.25", a=sc("eq"), b=sc("ilike")), "Paris", A, 0.5),
    ("multi-power-right-assoc", multi("2 ^ 3 ^ 2 / 1024", a=sc("eq")), "Paris", A, 0.5),
    ("multi-unary-minus-power", multi("-2 ^ 2 + 4.5 * a", a=sc("eq")), "Paris", A, 0.5),
    ("multi-min-max", multi("max(min(a, b), 0.25)", a=sc("eq"), b=sc("ilike")), "paris", A, 0.25),
    ("multi-functions", multi("sqrt(a) * floor(1.9) * ceil(0.1) * abs(-1) * exp(0) * log(exp(1))",
                              a=sc("eq")), "Paris", A, 1.0),
    ("multi-clipped-above", multi("a * 3", a=sc("eq")), "Paris", A, 1.0),
    ("multi-clipped-below", multi("a - 2", a=sc("eq")), "Paris", A, 0.0),
    ("multi-division-by-zero", multi("a / (b - b)", a=sc("eq"), b=sc("eq")), "Paris", A,
     "formula_parse_error"),
    ("multi-log-zero", multi("log(a)", a=sc("eq")), "Lyon", A, "formula_parse_error"),
    ("multi-sub-flag-propagates", multi("a", a=sc("eq", ref="{{item.nope}}")), "Paris", A,
     "invalid_variable_error"),
    ("multi-nested", multi("x", x=multi("p * q", p=sc("ilike"), q=sc("like"))), "Paris", A, 1.0),
    # --- samples that are not what a grader expects --------------------------------------------
    ("sample-object-without-text", sc("eq"), {"output_json": {"a": 1}}, {"answer": ""}, 1.0),
    ("sample-not-a-string-or-object", sc("eq"), 42, A, "sample_parse_error"),
    ("sample-text-not-a-string", sc("eq"), {"output_text": ["Paris"]}, A, "sample_parse_error"),
    ("item-not-an-object", sc("eq"), "Paris", ["Paris"], "sample_parse_error"),
]


@pytest.mark.parametrize("config,sample,item,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_grader_semantics(config, sample, item, expected):
    result = await run_grader(config, sample, item)
    raised = [k for k, v in result["metadata"]["errors"].items() if v is True]
    reward = result["reward"]
    assert 0.0 <= reward <= 1.0 and not math.isnan(reward)
    if isinstance(expected, str):
        assert expected in raised, (raised, result["metadata"])
        assert reward == 0.0
    elif isinstance(expected, tuple):
        assert not raised and expected[0] <= reward <= expected[1], (reward, raised)
    else:
        assert not raised, (raised, result["metadata"])
        assert reward == pytest.approx(expected, abs=1e-6)


def test_table_has_at_least_sixty_cases():
    assert len(CASES) >= 60


async def test_pass_threshold_sets_passed():
    high = await run_grader(ts("fuzzy_match", threshold=0.8), "Pariss", A)
    low = await run_grader(ts("fuzzy_match", threshold=0.95), "Pariss", A)
    assert high["metadata"]["passed"] is True and low["metadata"]["passed"] is False
