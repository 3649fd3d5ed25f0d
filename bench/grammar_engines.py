"""Compare grammar engines for constrained JSON decoding on this CPU: xgrammar, llguidance,
outlines-core, with the bundled model's tokenizer (SmolLM2, vocabulary 49,152).

For each engine and schema it measures, in one run:
- tokenizer setup: building the engine's view of the vocabulary (once per tokenizer);
- compile: a JSON schema into the engine's grammar for that vocabulary (once per schema);
- mask: filling one row's allowed-token mask, per token, along random valid documents
  (the cost added to every decode step of a constrained row);
- ended / valid: of N documents sampled under the mask with random logits (a stand-in for a
  random model, the hardest case), how many reached the stop token within --max-tokens
  (random tokens make long strings and numbers, so not all do), and how many of those parse
  as JSON and validate against the schema (the correctness figure: it must be all of them).

    python bench/grammar_engines.py [--samples 20] [--max-tokens 200]

Needs `xgrammar` (installed with --no-deps: its wheel asks for triton), `llguidance` and
`outlines-core` next to torch; an engine that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import json
import time

import jsonschema
import torch

SCHEMAS = {
    "judge": {"type": "object", "properties": {"result": {"type": "number"}},
              "required": ["result"], "additionalProperties": False},
    "record": {
        "type": "object",
        "properties": {
            "company": {"type": "string", "maxLength": 12},
            "year": {"type": "integer", "minimum": 1990, "maximum": 2030},
            "unit": {"enum": ["USD", "EUR", "percent"]},
            "quarters": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4},
                         "maxItems": 4},
            "audited": {"type": "boolean"},
        },
        "required": ["company", "year", "unit", "quarters", "audited"],
        "additionalProperties": False,
    },
}


def _bytes_of_tokens(tok) -> list[bytes]:
    """Each id's bytes for a byte-level BPE vocabulary (GPT-2's byte-to-unicode alphabet)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    alphabet, extra = {}, 0
    for b in range(256):
        if b in printable:
            alphabet[chr(b)] = b
        else:
            alphabet[chr(256 + extra)] = b
            extra += 1
    out = []
    for i in range(len(tok)):
        piece = tok.convert_ids_to_tokens(i)
        out.append(bytes(alphabet[c] for c in piece) if all(c in alphabet for c in piece) else b"")
    return out


_BITS = 1 << torch.arange(32, dtype=torch.int32)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """-inf where a packed 32-bit mask (B, V/32) has a 0 bit; the same code for both bitmask
    engines (llguidance's own helper is torch.compile'd: seconds on its first call)."""
    allowed = ((bitmask[:, :, None] & _BITS) != 0).reshape(bitmask.shape[0], -1)
    logits.masked_fill_(~allowed[:, :logits.shape[1]], float("-inf"))


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok, eos: int):
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok), stop_token_ids=[eos])
        self.compiler = xgr.GrammarCompiler(self.info, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, len(tok))

    def compile(self, schema):  # compact JSON, as the others write it
        return self.compiler.compile_json_schema(json.dumps(schema), strict_mode=True,
                                                 any_whitespace=False)

    def matcher(self, grammar):
        return self.xgr.GrammarMatcher(grammar)

    def mask(self, m, logits):
        m.fill_next_token_bitmask(self.bitmask, 0)
        apply_bitmask(logits, self.bitmask)

    def accept(self, m, t):
        return m.accept_token(t)

    def done(self, m):
        return m.is_terminated()


class LLGuidance:
    name = "llguidance"

    def __init__(self, tok, eos: int):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.ll, self.llt = llguidance, llguidance.torch
        self.tok = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok), eos_token=eos)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, len(tok))

    def compile(self, schema):
        grammar = self.ll.LLMatcher.grammar_from_json_schema(
            schema, overrides={"whitespace_flexible": False})
        m = self.ll.LLMatcher(self.tok, grammar)  # validates and builds the lexer
        if m.is_error():
            raise ValueError(m.get_error())
        return grammar

    def matcher(self, grammar):
        return self.ll.LLMatcher(self.tok, grammar)

    def mask(self, m, logits):
        self.llt.fill_next_token_bitmask(m, self.bitmask, 0)
        apply_bitmask(logits, self.bitmask)

    def accept(self, m, t):
        return m.consume_token(t)

    def done(self, m):
        return m.is_stopped()


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, tok, eos: int):
        from outlines_core import Vocabulary

        self.oc = __import__("outlines_core")
        pieces: dict[bytes, list[int]] = {}
        for i, b in enumerate(_bytes_of_tokens(tok)):
            if b and i != eos and i not in tok.all_special_ids:
                pieces.setdefault(b, []).append(i)
        self.vocab = Vocabulary(eos, pieces)
        self.eos = eos
        self.V = len(tok)

    def compile(self, schema):
        from outlines_core.json_schema import build_regex_from_schema

        return self.oc.Index(build_regex_from_schema(json.dumps(schema)), self.vocab)

    def matcher(self, index):
        return self.oc.Guide(index)

    def mask(self, g, logits):
        allowed = torch.tensor(g.get_tokens(), dtype=torch.long)
        keep = torch.full_like(logits, float("-inf"))
        keep[0, allowed] = 0.0
        logits += keep

    def accept(self, g, t):
        g.advance(t)
        return True

    def done(self, g):
        return g.is_finished()


def sample_documents(engine, grammar, V, eos, n, max_tokens, tok):
    """n documents sampled under the mask from random logits: (texts that ended with the stop
    token, per-mask seconds)."""
    times, texts = [], []
    for seed in range(n):
        g = torch.Generator().manual_seed(seed)
        m = engine.matcher(grammar)
        ids = []
        for _ in range(max_tokens):
            logits = torch.randn((1, V), generator=g) * 3
            t0 = time.perf_counter()
            engine.mask(m, logits)
            times.append(time.perf_counter() - t0)
            t = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            if t == eos:
                texts.append(tok.decode(ids))
                break
            if not engine.accept(m, t):
                break
            ids.append(t)
    return texts, times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from agentrft.models.loading import load_tokenizer

    tok = load_tokenizer("bundled:smollm2-135m-instruct")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    V = len(tok)
    rows = []
    for cls in (XGrammar, LLGuidance, OutlinesCore):
        try:
            t0 = time.perf_counter()
            engine = cls(tok, eos)
            setup = time.perf_counter() - t0
        except ImportError as e:
            print(f"{cls.name}: not installed ({e})")
            continue
        for sname, schema in SCHEMAS.items():
            t0 = time.perf_counter()
            try:
                grammar = engine.compile(schema)
            except Exception as e:  # noqa: BLE001 - a bench row, not a crash
                rows.append((cls.name, sname, setup, None, None, None, "-",
                             f"compile failed: {e}"[:60]))
                continue
            compile_s = time.perf_counter() - t0
            texts, times = sample_documents(engine, grammar, V, eos, args.samples,
                                            args.max_tokens, tok)
            ok = 0
            for text in texts:
                try:
                    jsonschema.validate(json.loads(text), schema)
                    ok += 1
                except (ValueError, jsonschema.ValidationError) as e:
                    print(f"{cls.name} {sname}: invalid {text!r}: {str(e).splitlines()[0]}")
            times.sort()
            rows.append((cls.name, sname, setup, compile_s, 1e6 * times[len(times) // 2],
                         1e6 * times[-1], f"{len(texts)}/{args.samples}", f"{ok}/{len(texts)}"))
    print(f"\nvocabulary {V}, {args.samples} random-logit documents per schema, "
          f"<= {args.max_tokens} tokens each, 1 thread\n")
    print("| engine | schema | tokenizer setup (s) | compile (ms) | mask per token, median (µs) "
          "| slowest mask (µs) | ended | valid of ended |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sname, setup, comp, mask, worst, ended, valid in rows:
        comp_s = "-" if comp is None else f"{1e3 * comp:.1f}"
        mask_s = "-" if mask is None else f"{mask:.0f}"
        worst_s = "-" if worst is None else f"{worst:.0f}"
        print(f"| {name} | {sname} | {setup:.2f} | {comp_s} | {mask_s} | {worst_s} | {ended} "
              f"| {valid} |")


if __name__ == "__main__":
    main()
