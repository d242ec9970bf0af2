"""Local, throwaway set-ups: `maas-gateway dev` (`make run`), its LiteMaaS variant, and the
Postgres, Redis, LiteLLM and OIDC servers that it and the tests start.

An entry point like gateway.cli: may import anything; nothing in the gateway imports it.
"""
