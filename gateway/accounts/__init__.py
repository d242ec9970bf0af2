"""Users, subscriptions, keys and their LiteLLM side: the service layer behind admin API, CLI and console.

service (Accounts: every management flow), issuance (a new key, minted and made in LiteLLM
or taken back), validation and views (what rows must look like and
how they are shown), quotas and usage_report (limits and usage as admins set and read them),
litellm (LiteLLM's management API), usersync, keymirror and outbox (LiteLLM kept in step,
never inside a transaction), reconciler (the background pass that heals drift).

May import: policies, gateway.config, gateway.errors, gateway.ops, gateway.store and
gateway.serving.breaker (the management client's breaker). Never the request path's proxy,
admin, console, runtime or app.
"""
