"""What both HTTP apps share (`agentrft.server`, the jobs API and dashboard, and
`agentrft.serving`, inference): the web layer under their routes.

    request ─► middleware.py   API key (bearer or dashboard session cookie), body size cap
            ─► encoding.py     strict JSON in (no NaN, no lone surrogates), finite JSON out
            ─► route
            ◄─ errors.py       every failure in OpenAI's error shape; domain errors mapped once

`LOOPBACK`: the hosts a server without an API key may bind to.
"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")
