"""text_similarity grader: every metric on hand-checkable pairs, edge cases, config errors.

No network. METEOR's synonym case needs WordNet (Debian `wordnet-base`) and is skipped
without it; cosine loads the bundled MiniLM once for the module (~1-3 s on a CPU).
"""

from __future__ import annotations

import math

import pytest
import torch

from agentrft.errors import SpecError
from agentrft.graders import text_similarity as ts
from agentrft.graders.base import DETAIL_KEYS, ERROR_KEYS, GraderResult
from agentrft.graders.text_similarity import METRICS, TextSimilarityGrader, from_config, similarity
from tests.system_parts import require_system

SAMPLE = {"output_text": "The answer is Paris.", "output_json": None, "output_tools": [],
          "choices": [], "output_reasoning_summary": None, "trajectory": []}


def grader(metric: str, **kw) -> TextSimilarityGrader:
    return TextSimilarityGrader(name="sim", input="{{item.text}}", reference="{{item.ref}}",
                                evaluation_metric=metric, **kw)


async def grade(metric: str, text: str, ref: str, **kw) -> GraderResult:
    result = await grader(metric, **kw).grade(SAMPLE, {"text": text, "ref": ref}, "trace_1")
    assert 0.0 <= result.reward <= 1.0
    assert result.metadata["name"] == "sim" and result.metadata["type"] == "text_similarity"
    assert set(result.metadata["errors"]) == set(ERROR_KEYS) | set(DETAIL_KEYS)
    return result


@pytest.fixture(scope="module")
def minilm():
    """Load the embedding model once for the module (every cosine test reuses it)."""
    from agentrft.graders.embeddings import embed

    embed(["warm up"])
    return embed


# --- identical, disjoint, empty: the same rule for every metric --------------------------

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("text, ref, expected", [
    ("The cat sat on the mat.", "The cat sat on the mat.", 1.0),
    ("Paris", "Paris", 1.0),                        # shorter than rouge_5's n: still 1.0
    ("", "", 1.0),                                  # both empty
    ("  Paris \n", "Paris", 1.0),                   # outer whitespace is not content
    (" \t\n", "", 1.0),                             # whitespace only counts as empty
    ("café", "cafe\u0301", 1.0),                    # NFC vs NFD: the same text
    ("", "Paris", 0.0),                             # one empty
    ("Paris", "   ", 0.0),
])
async def test_identical_and_empty(metric, text, ref, expected):
    result = await grade(metric, text, ref)
    assert result.reward == expected
    assert result.metadata["scores"][metric] == expected
    assert result.raised_flags == []


# Disjoint texts: no shared characters, tokens or n-grams. Cosine is near 0, not 0.
@pytest.mark.parametrize("metric", [m for m in METRICS if m != "cosine"])
def test_disjoint_scores_zero(metric):
    assert similarity(metric, "xyz", "abc def") == 0.0


# --- hand-checked partial overlaps --------------------------------------------------------

# text = "the quick brown fox" (4 tokens), ref = "the quick brown fox jumps" (5 tokens)
FOX, FOX_REF = "the quick brown fox", "the quick brown fox jumps"
FOX_METEOR = (0.8 / (0.9 + 0.1 * 0.8)) * (1 - 0.5 * (1 / 4) ** 3)  # P=1, R=.8, 1 chunk of 4


@pytest.mark.parametrize("metric, text, ref, expected", [
    # fuzzy: 1 - indel distance / total length = 1 - 1/11 (one extra character)
    ("fuzzy_match", "Pariss", "Paris", 10 / 11),
    ("fuzzy_match", "paris", "Paris", 1 - 2 / 10),  # case-sensitive: one substitution = 2 indels
    # BLEU: every n-gram precision is 1; brevity penalty exp(1 - 5/4)
    ("bleu", FOX, FOX_REF, math.exp(-0.25)),
    # GLEU: 10 matching n-grams (1..4); 10 in the text, 14 in the reference: min(1, 10/14)
    ("gleu", FOX, FOX_REF, 10 / 14),
    ("meteor", FOX, FOX_REF, FOX_METEOR),
    # ROUGE-1: 3 shared unigrams; P = 3/3, R = 3/6, F = 2/3
    ("rouge_1", "the cat sat", "the cat sat on the mat", 2 / 3),
    # ROUGE-2: "the cat", "cat sat" shared; P = 2/2, R = 2/5, F = 4/7
    ("rouge_2", "the cat sat", "the cat sat on the mat", 4 / 7),
    ("rouge_3", "the cat sat", "the cat sat on the mat", 2 * 0.25 / 1.25),
    ("rouge_4", "the cat sat", "the cat sat on the mat", 0.0),  # no 4-gram in the text
    ("rouge_l", "the cat sat", "the cat sat on the mat", 2 / 3),  # LCS 3
    ("rouge_l", "mat the on sat", "the cat sat on the mat", 2 * 0.5 * (1 / 3) / (0.5 + 1 / 3)),
    # Porter stemmer: cats/cat, running/runs both stem alike
    ("rouge_1", "cats running", "cat runs", 1.0),
    # punctuation and case are not rouge tokens: equal token sequences score 1 even for n > len
    ("rouge_5", "Paris!", "paris", 1.0),
    # unicode words are tokens (rouge-score's own tokenizer would drop them all): P=1/2, R=1
    ("rouge_1", "東京 タワー", "東京", 2 / 3),
    ("rouge_1", "über straße", "über strasse", 0.5),
])
async def test_partial_overlap(metric, text, ref, expected):
    result = await grade(metric, text, ref)
    assert result.reward == pytest.approx(expected, abs=1e-4)


def test_bleu_short_sentences_are_not_zero():
    # Effective order: a two-word answer has no 3- or 4-grams, yet one shared word counts.
    assert 0.0 < similarity("bleu", "the dog", "the cat") < 1.0


# --- METEOR and WordNet -------------------------------------------------------------------

def test_meteor_synonyms_with_wordnet():
    reader, has_synonyms = ts._wordnet()
    require_system("WordNet", None if has_synonyms else "not installed (apt-get install wordnet-base)")
    # fast/quick are WordNet synonyms: all 4 words match in one chunk.
    assert similarity("meteor", "the cat is fast", "the cat is quick") == pytest.approx(
        1 - 0.5 * (1 / 4) ** 3)
    assert "quick" in {l.name() for s in reader.synsets("fast") for l in s.lemmas()}


async def test_meteor_without_wordnet_matches_exact_and_stems(monkeypatch):
    monkeypatch.setattr(ts, "_wordnet_state", (ts.NoSynonyms(), False))
    result = await grade("meteor", "the cat is fast", "the cat is quick")
    # 3 of 4 match: P = R = 3/4, 1 chunk of 3: 0.75 * (1 - 0.5 / 27)
    assert result.reward == pytest.approx(0.75 * (1 - 0.5 / 27))
    assert result.metadata["scores"]["meteor_synonyms"] is False
    # stems still match: walked/walking → walk
    assert similarity("meteor", "he walked home", "he walking home") > 0.9


def test_wordnet_missing_falls_back_with_one_warning(monkeypatch, tmp_path, caplog):
    import nltk

    monkeypatch.setattr(ts, "_wordnet_state", None)
    monkeypatch.setattr(ts, "_WORDNET_DIRS", [str(tmp_path)])
    monkeypatch.setattr(nltk.data, "find", lambda *a, **k: (_ for _ in ()).throw(LookupError()))
    with caplog.at_level("WARNING", logger=ts.__name__):
        first, second = ts._wordnet(), ts._wordnet()
    assert first is second and first[1] is False and first[0].synsets("fast") == []
    assert sum("WordNet not found" in r.message for r in caplog.records) == 1


# --- cosine -------------------------------------------------------------------------------

async def test_cosine_paraphrase_beats_unrelated(minilm):
    ref = "The company's revenue grew by 10% in 2023."
    para = await grade("cosine", "In 2023, sales at the firm rose ten percent.", ref)
    other = await grade("cosine", "My cat likes to sleep on the sofa.", ref)
    assert para.reward > other.reward + 0.3
    assert 0.0 <= other.reward < 0.3


def test_embed_rows_are_unit_vectors(minilm):
    vecs = minilm(["Paris is the capital of France.", "Paris is the capital of France.", ""])
    assert vecs.shape == (3, 384) and vecs.dtype == torch.float32
    assert torch.allclose(vecs.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(vecs[0] @ vecs[1]) == pytest.approx(1.0, abs=1e-5)  # identical → ~1.0
    assert minilm([]).shape == (0, 384)


# --- pass_threshold, failures as data -----------------------------------------------------

@pytest.mark.parametrize("threshold, passed", [(0.9, True), (10 / 11, True), (0.95, False)])
async def test_pass_threshold_sets_passed(threshold, passed):
    result = await grade("fuzzy_match", "Pariss", "Paris", pass_threshold=threshold)
    assert result.metadata["passed"] is passed


async def test_no_threshold_no_passed():
    assert "passed" not in (await grade("fuzzy_match", "Pariss", "Paris")).metadata


async def test_unknown_variable_scores_zero_and_is_not_discarded():
    g = TextSimilarityGrader(name="sim", input="{{sample.output_text}}",
                             reference="{{item.no_such_key}}", evaluation_metric="bleu",
                             pass_threshold=0.5)
    result = await g.grade(SAMPLE, {"answer": "Paris"}, "trace_1")
    assert result.reward == 0.0 and result.raised_flags == ["invalid_variable_error"]
    assert not result.should_discard and result.metadata["passed"] is False


async def test_metric_crash_is_other_error(monkeypatch):
    def boom(text, ref):
        raise RuntimeError("broken install")

    monkeypatch.setitem(ts._SCORERS, "bleu", boom)
    result = await grade("bleu", "a", "b")
    assert result.reward == 0.0 and result.raised_flags == ["other_error"]
    assert result.should_discard


async def test_nan_score_is_other_error(monkeypatch):
    monkeypatch.setitem(ts._SCORERS, "gleu", lambda text, ref: float("nan"))
    assert (await grade("gleu", "a", "b")).raised_flags == ["other_error"]


async def test_templates_render_from_sample_and_item():
    g = from_config({"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
                     "reference": "The answer is {{item.answer}}.", "evaluation_metric": "rouge_l"})
    result = await g.grade(SAMPLE, {"answer": "Paris"}, "trace_1")
    assert result.reward == 1.0


# --- config errors name the field ---------------------------------------------------------

BASE = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}", "evaluation_metric": "bleu"}


@pytest.mark.parametrize("change, field", [
    ({"evaluation_metric": "rouge_6"}, "grader.evaluation_metric"),
    ({"evaluation_metric": "BLEU"}, "grader.evaluation_metric"),
    ({"pass_threshold": "0.5"}, "grader.pass_threshold"),
    ({"pass_threshold": 1.5}, "grader.pass_threshold"),
    ({"pass_threshold": -0.1}, "grader.pass_threshold"),
    ({"pass_threshold": float("nan")}, "grader.pass_threshold"),
    ({"pass_threshold": True}, "grader.pass_threshold"),
    ({"refrence": "x"}, "grader.refrence"),
    ({"name": 3}, "grader.name"),
])
def test_bad_config_raises_spec_error(change, field):
    with pytest.raises(SpecError) as err:
        from_config({**BASE, **change})
    assert err.value.field == field


def test_missing_reference_names_the_field():
    config = {k: v for k, v in BASE.items() if k != "reference"}
    with pytest.raises(SpecError) as err:
        from_config(config)
    assert err.value.field == "grader.reference"


def test_unknown_metric_message_lists_the_known_ones():
    with pytest.raises(SpecError, match="fuzzy_match, bleu, gleu, meteor, cosine, rouge_1"):
        from_config({**BASE, "evaluation_metric": "jaccard"})


@pytest.mark.parametrize("threshold", [0, 1, 0.5, None])
def test_good_thresholds(threshold):
    config = {**BASE, "pass_threshold": threshold}
    g = from_config(config)
    assert g.pass_threshold == (None if threshold is None else float(threshold))
