"""Rate limits, quotas and budgets as the hot path counts them, and the usage they record.

limiter (one Redis round trip: check and charge around policies/limits.py), pipelining (its
script calls coalesced into pipelines), local (its counters in-process, without Redis),
quota_seeds (lost counters from Postgres), usage (token counts from LiteLLM's answers),
usage_recorder (usage rows batched to Postgres, flushed on drain).

May import: policies, gateway.config, gateway.errors, gateway.ops.
"""
