"""How a transformers forward takes and hands back its key/value cache, across versions.

transformers 5.x renamed the cache argument and output field from `past_key_values` to
`cache` (the old name warns with a FutureWarning per call and goes away in 5.40). Our engines,
the shared-prefix trainer and the streaming server all pass a cache in and read it back out;
they do it through these two helpers, so they use whichever name the installed transformers
reads, with no warning on the new versions and no break on the older ones we still allow:

    out = model(input_ids=ids, use_cache=True, **cache_kwarg(cache))   # model or decoder layer
    cache = cache_of(out)
"""

from __future__ import annotations

from transformers.modeling_outputs import BaseModelOutputWithPast

# The name the installed transformers uses: its model outputs declare that field.
CACHE_ARG = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def cache_kwarg(cache) -> dict:
    """`cache` as the keyword argument a model's (or decoder layer's) forward takes."""
    return {CACHE_ARG: cache}


def cache_of(output):
    """The cache a forward run with `use_cache=True` returned."""
    return getattr(output, CACHE_ARG)
