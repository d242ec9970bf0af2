"""The one query that loads everything a decision needs about one key, in one round trip.

One template for both schemas: the gateway's own (`native`) and LiteMaaS's, whose readings
differ only where its types do (gateway/store/litemaas.py says why for each): UUID ids read
as text, nullable flags read as false, a quota or budget of 0 read as none set, a key bound
to one subscription instead of api_key_models rows, no per-user concurrency limit.
The subscriptions come back whole (status, expiry, limits); which of them grant access is
policies.access.subscription_lapse's to say, never the query's.
"""

from __future__ import annotations

# A key's models (api_key_models), as the admin views list them too (gateway/accounts/service.py).
KEY_MODELS = "ARRAY(SELECT m.model_id FROM api_key_models m WHERE m.api_key_id = k.id ORDER BY m.model_id)"

_TEMPLATE = """
SELECT {key_id} AS id, {user_id} AS user_id, {key_active} AS is_active, k.key_hash,
       extract(epoch FROM k.revoked_at)::float8 AS revoked_at,
       extract(epoch FROM k.expires_at)::float8 AS expires_at,
       {user_active} AS user_active,
       k.rpm_limit, k.tpm_limit, k.max_parallel_requests,{key_extras}
       u.rpm_limit AS user_rpm_limit, u.tpm_limit AS user_tpm_limit,
       {user_parallel} AS user_max_parallel_requests, u.max_budget::float8 AS user_max_budget,
       u.budget_duration{text} AS user_budget_duration,
       {models} AS models,
       ARRAY(SELECT s.model_id{text} FROM subscriptions s WHERE s.user_id = k.user_id ORDER BY s.model_id) AS sub_models,
       ARRAY(SELECT s.status{text} FROM subscriptions s WHERE s.user_id = k.user_id ORDER BY s.model_id) AS sub_statuses,
       ARRAY(SELECT extract(epoch FROM s.expires_at)::float8 FROM subscriptions s
             WHERE s.user_id = k.user_id ORDER BY s.model_id) AS sub_expiries,
       ARRAY(SELECT array[{quota_requests}::float8, {quota_tokens}::float8, {max_budget}::float8,
                          extract(epoch FROM s.reset_at)::float8{sub_rates}]
             FROM subscriptions s WHERE s.user_id = k.user_id ORDER BY s.model_id) AS sub_limits,
       ARRAY(SELECT s.budget_duration::text FROM subscriptions s WHERE s.user_id = k.user_id ORDER BY s.model_id)
           AS sub_durations
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.key_hash = $1
"""

# LiteMaaS keys' budget and per-model JSON limits, read into text arrays so that a malformed value is
# ignored rather than failing the key's query (db._model_limits).
_LITEMAAS_KEY_LIMITS = """
       k.max_budget::float8 AS key_max_budget, k.budget_duration::text AS key_budget_duration,
       ARRAY(SELECT array[m.model,
                          CASE WHEN jsonb_typeof(j.rpm -> m.model) = 'number' THEN j.rpm ->> m.model END,
                          CASE WHEN jsonb_typeof(j.tpm -> m.model) = 'number' THEN j.tpm ->> m.model END,
                          CASE WHEN jsonb_typeof(j.budget -> m.model -> 'budgetLimit') = 'number'
                               THEN j.budget -> m.model ->> 'budgetLimit'
                               WHEN jsonb_typeof(j.budget -> m.model -> 'budget_limit') = 'number'
                               THEN j.budget -> m.model ->> 'budget_limit' END,
                          CASE WHEN jsonb_typeof(j.budget -> m.model -> 'timePeriod') = 'string'
                               THEN j.budget -> m.model ->> 'timePeriod'
                               ELSE j.budget -> m.model ->> 'time_period' END]
             FROM (SELECT CASE WHEN jsonb_typeof(k.model_rpm_limit::jsonb) = 'object' THEN k.model_rpm_limit::jsonb
                               ELSE '{}' END AS rpm,
                          CASE WHEN jsonb_typeof(k.model_tpm_limit::jsonb) = 'object' THEN k.model_tpm_limit::jsonb
                               ELSE '{}' END AS tpm,
                          CASE WHEN jsonb_typeof(k.model_max_budget::jsonb) = 'object' THEN k.model_max_budget::jsonb
                               ELSE '{}' END AS budget) j,
                  LATERAL (SELECT jsonb_object_keys(j.rpm) UNION SELECT jsonb_object_keys(j.tpm)
                           UNION SELECT jsonb_object_keys(j.budget)) AS m(model)
             ORDER BY m.model) AS key_model_limits,"""

_READINGS = {
    "native": {
        "key_id": "k.id", "user_id": "k.user_id", "key_active": "k.is_active", "user_active": "u.is_active",
        "user_parallel": "u.max_parallel_requests", "models": KEY_MODELS, "text": "",
        "quota_requests": "s.quota_requests", "quota_tokens": "s.quota_tokens", "max_budget": "s.max_budget",
        "sub_rates": "", "key_extras": "",
    },
    "litemaas": {
        "key_id": "k.id::text", "user_id": "k.user_id::text", "key_active": "coalesce(k.is_active, false)",
        "user_active": "coalesce(u.is_active, false)", "user_parallel": "NULL::int",
        "models": """CASE WHEN EXISTS (SELECT 1 FROM api_key_models m WHERE m.api_key_id = k.id)
            THEN ARRAY(SELECT m.model_id::text FROM api_key_models m WHERE m.api_key_id = k.id ORDER BY m.model_id)
            ELSE ARRAY(SELECT s.model_id::text FROM subscriptions s WHERE s.id = k.subscription_id)
       END""",
        "text": "::text",
        "quota_requests": "nullif(s.quota_requests, 0)", "quota_tokens": "nullif(s.quota_tokens, 0)",
        "max_budget": "nullif(s.max_budget, 0)",
        # a subscription's own rates per user and model (0: none set, as LiteMaaS writes `tpmLimit || null`)
        "sub_rates": ", nullif(s.rpm_limit, 0)::float8, nullif(s.tpm_limit, 0)::float8",
        # a key's own budget and its per-model JSON limits (gateway/store/litemaas.py says how each is read)
        "key_extras": _LITEMAAS_KEY_LIMITS,
    },
}


def key_query(schema: str) -> str:
    """The key query for `database.schema` (native | litemaas); $1 is the key's SHA-256 hex."""
    return _TEMPLATE.format(**_READINGS[schema])
