"""policies/scrub.py: LiteLLM's error text as clients may read it.

The table holds real texts: answered by LiteLLM 1.108.7's proxy (tests/e2e/litellm-test.yaml's
models), or str() of LiteLLM's exceptions as its exception mapping builds them
(litellm/exceptions.py, litellm_core_utils/exception_mapping_utils.py, router_utils/common_utils.py,
types/router.py), and older LiteLLM's router suffixes ("Received Model Group=").
"""

from __future__ import annotations

import orjson
import pytest

from policies.scrub import MAX_MESSAGE, REDACTED, clean, event_status, relayed

pytestmark = pytest.mark.unit

BOOKKEEPING = ("litellm.", "LiteLLM", "Exception -", "model group", "fallback", "Retried", "Retries", "cooldown")

CLEANED = [
    # the real proxy: a backend that refuses connections (tests/e2e broken-backend)
    ("litellm.InternalServerError: InternalServerError: OpenAIException - Connection error.\n\nLiteLLM: model group "
     "'broken-backend' failed with the error above. No fallback was attempted.",
     "Connection error."),
    # the real proxy: `messages` that is not a list
    ("Invalid request format: litellm.APIConnectionError: APIConnectionError: OpenAIException - 'str' object has no "
     "attribute 'get'\n\nLiteLLM: model group 'gpt-4o-mini' failed with the error above. No fallback was attempted.",
     "Invalid request format: 'str' object has no attribute 'get'"),
    # the real proxy: a missing parameter, and a model it does not serve (nothing to remove)
    ("/chat/completions: Missing required parameter: 'messages'.", "/chat/completions: Missing required parameter: 'messages'."),
    ("/chat/completions: Invalid model name passed in model=not-served. Call `/v1/models` to view available models for your key.",
     "/chat/completions: Invalid model name passed in model=not-served. Call `/v1/models` to view available models for your key."),
    # LiteLLM's exceptions, str() as the proxy sends them
    ("litellm.BadRequestError: BadRequestError: OpenAIException - Invalid type for 'temperature': expected a decimal, but "
     "got a string instead.",
     "Invalid type for 'temperature': expected a decimal, but got a string instead."),
    ("litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: OpenAIException - This "
     "model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
     "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."),
    ("litellm.BadRequestError: litellm.ContentPolicyViolationError: ContentPolicyViolationError: OpenAIException - Your "
     "request was rejected as a result of our safety system.",
     "Your request was rejected as a result of our safety system."),
    ("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for gpt-4o in organization org-x on "
     "tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s. LiteLLM Retried: 2 times, "
     "LiteLLM Max Retries: 2",
     "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested "
     "2000. Please try again in 2s."),
    ("litellm.NotFoundError: NotFoundError: OpenAIException - The model `gpt-5-turbo` does not exist or you do not have "
     "access to it.",
     "The model `gpt-5-turbo` does not exist or you do not have access to it."),
    ("litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided: "
     "sk-provi****************5f1c. You can find your API key at https://platform.openai.com/account/api-keys.",
     f"Incorrect API key provided: {REDACTED}. You can find your API key at {REDACTED}"),
    ("litellm.APIConnectionError: APIConnectionError: Hosted_vllmException - Cannot connect to host "
     "vllm-llama.models.svc.cluster.local:8000 ssl:default [Connect call failed ('10.96.0.12', 8000)]",
     f"Cannot connect to host {REDACTED} ssl:default [Connect call failed {REDACTED}]"),
    ("litellm.Timeout: APITimeoutError - Request timed out. Error_str: Request timed out.",
     "Request timed out. Error_str: Request timed out."),
    ("litellm.ServiceUnavailableError: ServiceUnavailableError: AnthropicException - Overloaded. Handle with "
     "`litellm.ServiceUnavailableError`.",
     "Overloaded."),
    # the router, when every deployment of a model is cooling down (a 429)
    ("No deployments available for selected model, Try again in 5 seconds. Passed model=broken-backend. "
     "pre-call-checks=False, cooldown_list=['263ff16dbee8']",
     "No deployments available for selected model, Try again in 5 seconds. Passed model=broken-backend"),
    # fallbacks that were tried
    ("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached.\n\nLiteLLM: model group 'gpt-4o' "
     "failed with the error above. Fallback to gpt-4o-mini also failed: litellm.APIConnectionError: at "
     "http://10.0.0.7:8000/v1",
     "Rate limit reached."),
    # older LiteLLM's router suffixes and debug lines
    ("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests\nReceived Model "
     "Group=gpt-4o\nAvailable Model Group Fallbacks=None LiteLLM Retried: 2 times, LiteLLM Max Retries: 2",
     "Rate limit reached for requests"),
    ("litellm.BadRequestError: OpenAIException - Unsupported value: 'messages[0].role' does not support 'wizard'.\n"
     "Model: gpt-4o\nAPI Base: `https://inference.corp.example:8443/v1`\nMessages: `[{'role': 'wizard', 'content': "
     "'secret prompt'}]`\nmodel_group: `gpt-4o`\n",
     "Unsupported value: 'messages[0].role' does not support 'wizard'."),
    # the openai SDK's text for a provider's answer: the provider's own message is kept
    ("litellm.BadRequestError: OpenAIException - Error code: 400 - {'error': {'message': \"Invalid value for "
     "'response_format': 'bogus'.\", 'type': 'invalid_request_error', 'param': 'response_format', 'code': None}}",
     "Invalid value for 'response_format': 'bogus'."),
    # a traceback, and keys and tokens of several providers
    ("litellm.APIConnectionError: boom\nTraceback (most recent call last):\n  File \"/usr/lib/python3.11/site-packages"
     "/litellm/main.py\", line 1, in completion\nValueError: sk-live-abcdefghijkl",
     "boom"),
    ("Provider said: bad key AKIAABCDEFGHIJKLMNOP, AIzaSyA1234567890abcdefghijklmnopqrstuv, hf_abcdefghijklmnop, "
     "Bearer eyJhbGciOi.eyJzdWIiOi.sig and api_key='prov-secret-123'",
     f"Provider said: bad key {REDACTED}, {REDACTED}, {REDACTED}, {REDACTED} and api_key='{REDACTED}'"),
    ("Upstream error at 192.168.1.20:8080, [fd00::1]:9000, vllm:8000 and /var/run/secrets/token",
     f"Upstream error at {REDACTED}, {REDACTED}, {REDACTED} and {REDACTED}"),
]


@pytest.mark.parametrize(("text", "expected"), CLEANED)
def test_clean_keeps_what_to_fix_and_drops_the_internals(text, expected):
    cleaned = clean(text)
    assert cleaned == expected
    for word in BOOKKEEPING:
        assert word not in cleaned


@pytest.mark.parametrize("text", ["max_tokens:4096 is too many", "The model `llama3:70b` and qwen:72b-chat", "at 12:30:45 UTC"])
def test_clean_leaves_words_that_only_look_like_addresses(text):
    assert clean(text) == text


def test_a_cleaned_message_is_bounded():
    assert len(clean("x" * 10_000)) == MAX_MESSAGE


def body(message, type_="invalid_request_error", param=None, code="400", **extra) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code, **extra}})


def test_a_bad_request_keeps_its_shape_and_loses_litellms_extras():
    raw = ("Invalid request format: litellm.APIConnectionError: APIConnectionError: OpenAIException - bad 'n'\n\n"
           "LiteLLM: model group 'gpt-4o-mini' failed with the error above. No fallback was attempted.")
    answer = relayed(400, body(raw, provider_specific_fields={"error": raw}))
    assert answer == {"error": {"message": "Invalid request format: bad 'n'", "type": "invalid_request_error",
                                "param": None, "code": "400"}}


def test_a_missing_parameter_keeps_its_param():
    raw = body("/embeddings: Missing required parameter: 'input'.", param="input")
    assert relayed(400, raw) == {"error": {"message": "/embeddings: Missing required parameter: 'input'.",
                                           "type": "invalid_request_error", "param": "input", "code": "400"}}


def test_litellms_none_strings_and_odd_fields_become_defaults():
    raw = body("litellm.RateLimitError: RateLimitError: OpenAIException - slow down", type_="None", param="None",
               code={"nested": 1})
    assert relayed(429, raw) == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                           "code": "429"}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"upstream went away at http://10.0.0.7:8000", f"upstream went away at {REDACTED}"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"error": "model x not found"}', "model x not found"),
        (b'{"error": {"message": "litellm.NotFoundError: Traceback (most recent call last): ..."}}',
         "The model service does not know what the request names."),
        (b"[1, 2]", "The model service does not know what the request names."),
    ],
)
def test_bodies_that_are_not_openai_shaped_are_made_so(raw, message):
    assert relayed(404, raw) == {"error": {"message": message, "type": "not_found_error", "param": None, "code": "404"}}


@pytest.mark.parametrize("status", [401, 403, 407, 408, 500, 502, 503, 504, 418, 302])
def test_statuses_the_user_cannot_act_on_are_not_relayed(status):
    assert relayed(status, body("litellm.InternalServerError: boom", code=str(status))) is None


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"error": {"code": "400"}}, 400),
        ({"error": {"code": 429}}, 429),
        ({"error": {"code": "500"}}, 500),
        ({"error": {"code": "context_length_exceeded"}}, 500),
        ({"error": {"code": "200"}}, 500),
        ({"error": {"code": True}}, 500),
        ({"error": "text"}, 500),
        (None, 500),
    ],
)
def test_a_stream_error_events_status_is_its_code(payload, status):
    assert event_status(payload) == status
