"""The hot path: one request read, decided and forwarded, its answer streamed back.

listeners (sockets, read deadlines) -> proxy (orchestrates) -> reader (the request as LiteLLM
will read it) -> store.keys (the key) -> policies (the decision) -> limits (counting) ->
upstream (LiteLLM through the breakers) -> relay / streamusage (the answer as clients get it).

May import: policies, gateway.config, gateway.errors, gateway.ops, gateway.store,
gateway.limits, and gateway.state (the typed components it is handed). Never accounts, admin,
console, runtime or app.
"""
