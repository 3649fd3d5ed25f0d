"""`text_similarity`: score how close the rendered `input` is to the rendered `reference`.

    {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
     "reference": "{{item.answer}}", "evaluation_metric": "rouge_l", "pass_threshold": 0.5}

Both texts are NFC-normalised and stripped of leading/trailing whitespace first. Then:
identical texts (both empty included) score 1.0 under every metric, and exactly one empty
text scores 0.0. Otherwise (`input` is the hypothesis):

    fuzzy_match  rapidfuzz `fuzz.ratio` / 100: 1 - indel distance / (len a + len b),
                 on characters, case-sensitive. (Not WRatio: its partial-match heuristics
                 give a bare substring ~0.9, and it is harder to reason about.)
    bleu         sacrebleu sentence BLEU / 100: 13a tokens, case-sensitive, "exp"
                 smoothing, effective order (a 2-word answer is not 0 for lacking 4-grams)
    gleu         nltk `sentence_gleu`, n-grams 1..4, over word/punctuation tokens, case-sensitive
    meteor       nltk `meteor_score` (alpha .9, beta 3, gamma .5), lower-cased word/punctuation
                 tokens; exact, Porter-stem and WordNet-synonym matches. Without WordNet
                 (see `_wordnet`) only exact and stem matches; scores["meteor_synonyms"] says which
    rouge_1..5   rouge-score F-measure with the Porter stemmer (as in the ROUGE papers and the
    rouge_l      rouge-score README), over lower-cased runs of letters/digits in any script
                 (the package's own tokenizer drops every non-ASCII letter). Token sequences
                 that are equal score 1.0, even when shorter than n.
    cosine       cosine of the all-MiniLM-L6-v2 embeddings (`embeddings.embed`), clipped at 0

Every score is in [0, 1]. The heavy ones run in a worker thread. Rendering errors score 0
with `invalid_variable_error` (a fact about the sample, as in `string_check`); a metric that
crashes gives `other_error`, which discards the rollout rather than scoring it 0.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import re
import threading
import time
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import BeforeValidator

from agentrft.errors import SpecError
from agentrft.graders.base import Grader, GraderResult
from agentrft.graders.config import GraderConfig, invalid, one_of, read_config
from agentrft.templates import TemplateVariableError, render_template

logger = logging.getLogger(__name__)

METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "cosine",
           "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")

_WORDS = re.compile(r"\w+|[^\w\s]")  # gleu/meteor tokens: words and single punctuation marks
_ALNUM = re.compile(r"[^\W_]+")      # rouge tokens: runs of letters/digits, any script


def normalize(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def similarity(metric: str, text: str, reference: str) -> float:
    """The `metric` score of `text` against `reference`, in [0, 1] (blocking; see module doc)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    text, reference = normalize(text), normalize(reference)
    if text == reference:
        return 1.0
    if not text or not reference:
        return 0.0
    value = float(_SCORERS[metric](text, reference))
    if not math.isfinite(value):
        raise ValueError(f"{metric} gave {value}")
    return min(max(value, 0.0), 1.0)


def _fuzzy(text: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(text, reference) / 100.0


def _bleu(text: str, reference: str) -> float:
    return _bleu_metric().sentence_score(text, [reference]).score / 100.0


@lru_cache(maxsize=1)
def _bleu_metric() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)


def _gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return sentence_gleu([_WORDS.findall(reference)], _WORDS.findall(text))


def _meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    wordnet, _ = _wordnet()
    # nltk's WordNet reader seeks and reads shared file handles: one scorer at a time.
    with _wordnet_lock:
        return meteor_score([_WORDS.findall(reference)], _WORDS.findall(text), wordnet=wordnet)


def _rouge(n: int | str) -> Callable[[str, str], float]:
    key = f"rouge{n.upper() if isinstance(n, str) else n}"

    def score(text: str, reference: str) -> float:
        tokens = _rouge_tokenizer().tokenize(text)
        if tokens == _rouge_tokenizer().tokenize(reference):
            return 1.0 if tokens else 0.0  # also for texts shorter than n tokens
        return _rouge_scorer(key).score(reference, text)[key].fmeasure

    return score


@lru_cache(maxsize=None)
def _rouge_scorer(key: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([key], tokenizer=_rouge_tokenizer())


@lru_cache(maxsize=1)
def _rouge_tokenizer() -> Any:
    from nltk.stem.porter import PorterStemmer

    stemmer = PorterStemmer()

    class Tokenizer:
        """rouge-score's DefaultTokenizer(use_stemmer=True), but keeping non-ASCII letters."""

        def tokenize(self, text: str) -> list[str]:
            # Like rouge-score, stem only words longer than 3 characters.
            return [stemmer.stem(t) if len(t) > 3 else t for t in _ALNUM.findall(text.lower())]

    return Tokenizer()


def _cosine(text: str, reference: str) -> float:
    from agentrft.graders.embeddings import embed

    vecs = embed([text, reference])
    return float(vecs[0] @ vecs[1])


_SCORERS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": _fuzzy, "bleu": _bleu, "gleu": _gleu, "meteor": _meteor, "cosine": _cosine,
    **{f"rouge_{n}": _rouge(n) for n in range(1, 6)}, "rouge_l": _rouge("l"),
}


# --- WordNet for METEOR ------------------------------------------------------------------
#
# No run-time downloads, so nltk's usual `nltk.download("wordnet")` is not an option. We use,
# in order: a WordNet nltk already finds in its data path; the WordNet 3.0 database in
# $WNSEARCHDIR or /usr/share/wordnet (Debian/Ubuntu `wordnet-base`, installed by
# scripts/setup.sh); else a stand-in with no synonyms, with one logged warning.

_WORDNET_DIRS = [d for d in (os.environ.get("WNSEARCHDIR"), "/usr/share/wordnet") if d]
_wordnet_lock = threading.Lock()
_wordnet_state: tuple[Any, bool] | None = None  # (reader, has synonyms)

# WordNet's `lexnames` file (lexnames(5WN)), which nltk's reader needs and wordnet-base lacks.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()


class NoSynonyms:
    """Stands in for a WordNet reader: no word has synsets, so METEOR matches exact and stems."""

    def synsets(self, *args: Any, **kwargs: Any) -> list:
        return []


def _wordnet() -> tuple[Any, bool]:
    """(reader, True) for a real WordNet, (NoSynonyms(), False) when there is none."""
    global _wordnet_state
    if _wordnet_state is None:
        with _wordnet_lock:
            if _wordnet_state is None:
                reader = _load_wordnet(_WORDNET_DIRS)
                if reader is None:
                    logger.warning(
                        "WordNet not found (looked in nltk's data path and %s): METEOR matches "
                        "exact words and stems only, no synonyms; install the wordnet-base "
                        "package (scripts/setup.sh does, as root)", ", ".join(_WORDNET_DIRS))
                _wordnet_state = (reader, True) if reader is not None else (NoSynonyms(), False)
    return _wordnet_state


def _load_wordnet(dirs: list[str]) -> Any | None:
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no multilingual data: not needed here
            wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        pass
    for folder in dirs:
        if (Path(folder) / "data.noun").is_file() and (Path(folder) / "index.noun").is_file():
            try:
                return _open_wordnet_dir(str(Path(folder).resolve()))
            except Exception as exc:  # a damaged install: fall back, but say why
                logger.warning("cannot read WordNet in %s: %s", folder, exc)
    return None


def _open_wordnet_dir(folder: str) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNetDir(WordNetCorpusReader):
        """nltk's reader over a bare WordNet 3.0 `dict` folder (no nltk_data layout)."""

        def open(self, fileid: str) -> Any:
            if fileid == "lexnames" and not (Path(folder) / "lexnames").is_file():
                kind = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
                return io.StringIO("".join(f"{i:02d}\t{n}\t{kind[n.split('.')[0]]}\n"
                                           for i, n in enumerate(_LEXNAMES)))
            return super().open(fileid)

        def map_wn(self, version: str = "wordnet") -> None:
            return None  # this is WordNet 3.0: no mapping to nltk's copy (which is absent)

    # nltk only opens corpus files under its data path (nltk.pathsec); this is how a
    # folder is authorised.
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return WordNetDir(folder, None)


# --- the grader --------------------------------------------------------------------------

class TextSimilarityGrader(Grader):
    type = "text_similarity"

    def __init__(self, name: str, input: str, reference: str, evaluation_metric: str,
                 pass_threshold: float | None = None):
        if evaluation_metric not in METRICS:
            raise SpecError(f"unknown evaluation_metric {evaluation_metric!r} (expected one of "
                            f"{', '.join(METRICS)})", field="grader.evaluation_metric")
        if pass_threshold is not None and (
                isinstance(pass_threshold, bool) or not isinstance(pass_threshold, (int, float))
                or not 0.0 <= pass_threshold <= 1.0):
            raise SpecError(f"expected a number in [0, 1], got {pass_threshold!r}",
                            field="grader.pass_threshold")
        self.name, self.input, self.reference = name, input, reference
        self.evaluation_metric = evaluation_metric
        self.pass_threshold = None if pass_threshold is None else float(pass_threshold)

    async def grade(self, sample: dict[str, Any], item: dict[str, Any], trace_id: str) -> GraderResult:
        start = time.perf_counter()
        metric = self.evaluation_metric
        try:
            text = render_template(self.input, sample, item)
            reference = render_template(self.reference, sample, item)
        except TemplateVariableError:
            return GraderResult.make(0.0, name=self.name, type=self.type,
                                     errors={"invalid_variable_error": True},
                                     passed=self._passed(0.0),
                                     execution_time=time.perf_counter() - start)
        try:
            value = await asyncio.to_thread(similarity, metric, text, reference)
            scores: dict[str, Any] = {metric: value}
            if metric == "meteor":
                scores["meteor_synonyms"] = _wordnet()[1]
        except Exception as exc:  # a bug or a broken install, not the sample's fault
            detail = f"{metric}: {type(exc).__name__}: {exc}"
            logger.warning("text_similarity grader %r failed: %s", self.name, detail)
            return GraderResult.error("other_error", name=self.name, type=self.type,
                                      detail=detail, execution_time=time.perf_counter() - start)
        return GraderResult.make(value, name=self.name, type=self.type, scores=scores,
                                 passed=self._passed(value),
                                 execution_time=time.perf_counter() - start)

    def _passed(self, value: float) -> bool | None:
        return None if self.pass_threshold is None else value >= self.pass_threshold


def _fraction(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0.0 <= value <= 1.0):
        invalid(f"expected a number in [0, 1], got {value!r}")
    return None if value is None else float(value)


class TextSimilarityConfig(GraderConfig):
    """OpenAI's JSON shape; `pass_threshold` is optional (a number in [0, 1], not a string)."""

    name: str
    input: str
    reference: str
    evaluation_metric: Annotated[str, one_of(METRICS, "unknown evaluation_metric {value!r} "
                                                      "(expected one of {allowed})")]
    pass_threshold: Annotated[float | None, BeforeValidator(_fraction)] = None


def from_config(config: dict[str, Any]) -> Grader:
    typed = read_config(TextSimilarityConfig, config)
    return TextSimilarityGrader(name=typed.name, input=typed.input, reference=typed.reference,
                                evaluation_metric=typed.evaluation_metric,
                                pass_threshold=typed.pass_threshold)
