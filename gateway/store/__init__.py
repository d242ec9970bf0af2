"""Keys and their cache: Postgres (the truth), Redis and the in-process L1, kept coherent.

db (pool, migrations, the hot path's one key query), keys (KeyStore: L1 -> Redis -> Postgres),
invalidation (Postgres NOTIFY and Redis pub/sub), litemaas (the same on a LiteMaaS database),
redis_client (the one Redis client a process shares: its pool waits for a connection rather than failing).

May import: policies, gateway.config, gateway.errors, gateway.ops. Nothing above it.
"""
