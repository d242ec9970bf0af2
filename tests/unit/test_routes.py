"""gateway/serving/routes.py: the allow-list, matched on the raw path byte for byte."""

from __future__ import annotations

import pytest

from gateway.config import RouteConfig
from gateway.serving.routes import INFERENCE_ROUTES, PATH_MODEL_ROUTES, Route, RouteTable, model_id_from_models_path

pytestmark = pytest.mark.unit

TABLE = RouteTable()

ALLOWED = {
    "/v1/chat/completions": "body",
    "/v1/completions": "body",
    "/v1/embeddings": "body",
    "/v1/responses": "body",
    "/v1/images/generations": "body",
    "/v1/audio/speech": "body",
    "/v1/audio/transcriptions": "multipart",
    "/v1/moderations": "body",
    "/v1/rerank": "body",
}


def test_the_table_is_the_contract() -> None:
    assert dict(INFERENCE_ROUTES) == ALLOWED


@pytest.mark.parametrize("prefix", ["/v1", ""], ids=["v1", "bare"])
@pytest.mark.parametrize(("path", "source"), list(ALLOWED.items()), ids=list(ALLOWED))
def test_allowed_routes(path: str, source: str, prefix: str) -> None:
    raw = (prefix + path.removeprefix("/v1")).encode()
    assert TABLE.match(raw) == (Route(path, source), None)  # the metrics name is the /v1 path


@pytest.mark.parametrize(
    ("raw", "route", "model"),
    [
        (b"/openai/deployments/gpt-4o/chat/completions", "/openai/deployments/{model}/chat/completions", "gpt-4o"),
        (b"/openai/deployments/gpt-4o/completions", "/openai/deployments/{model}/completions", "gpt-4o"),
        (b"/openai/deployments/text-embedding-3/embeddings", "/openai/deployments/{model}/embeddings", "text-embedding-3"),
        (b"/engines/gpt-4o/chat/completions", "/engines/{model}/chat/completions", "gpt-4o"),
        (b"/engines/davinci/completions", "/engines/{model}/completions", "davinci"),
        (b"/engines/ada/embeddings", "/engines/{model}/embeddings", "ada"),
        (b"/openai/deployments/my_model-1.5:latest@v2/chat/completions", "/openai/deployments/{model}/chat/completions", "my_model-1.5:latest@v2"),
        (b"/openai/deployments/.../chat/completions", "/openai/deployments/{model}/chat/completions", "..."),
        (b"/openai/deployments/.x/chat/completions", "/openai/deployments/{model}/chat/completions", ".x"),
    ],
    ids=lambda v: v.decode() if isinstance(v, bytes) else None,
)
def test_path_model_routes(raw: bytes, route: str, model: str) -> None:
    found, name = TABLE.match(raw)
    assert found is not None
    assert (found.name, found.model_source, found.methods, name) == (route, "path", frozenset({"POST"}), model)
    assert raw.split(b"/")[found.path_model_index].decode() == model


def test_every_path_model_template_is_reachable() -> None:
    for template in PATH_MODEL_ROUTES:
        route, model = TABLE.match(template.replace("{model}", "m").encode())
        assert route is not None and route.name == template and model == "m"


NOT_ROUTES = [
    # LiteLLM management endpoints
    b"/key/generate", b"/v1/key/generate", b"/key/update", b"/key/delete", b"/key/info", b"/key/list",
    b"/user/new", b"/user/info", b"/v1/user/new", b"/model/new", b"/model/info", b"/v1/model/info",
    b"/model/delete", b"/spend/logs", b"/spend/calculate", b"/team/new", b"/team/member_add",
    b"/global/spend", b"/config/update", b"/health", b"/routes", b"/v1/files", b"/v1/batches",
    b"/v1/fine_tuning/jobs", b"/v1/assistants", b"/v1/threads", b"/v1/realtime", b"/ui", b"/",
    b"", b"/sso/key/generate", b"/budget/new", b"/customer/new", b"/organization/new",
    # pass-through routes
    b"/openai/v1/chat/completions", b"/openai/chat/completions", b"/anthropic/v1/messages",
    b"/v1/messages", b"/bedrock/model/x/invoke", b"/vertex-ai/x", b"/vertex_ai/x", b"/gemini/v1beta/models/x:generateContent",
    b"/azure/chat/completions", b"/cohere/v1/chat", b"/langfuse/api", b"/assemblyai/v2/transcript",
    # dot segments, encodings, doubled and trailing slashes, case, NULs
    b"/v1/../key/generate", b"/v1/./chat/completions", b"/v1/%2e%2e/key/generate", b"/v1/%2E%2E/key/generate",
    b"/v1/chat/completions/../../key/generate", b"/v1/chat/../chat/completions",
    b"//v1/chat/completions", b"/v1//chat/completions", b"/v1/chat//completions", b"/v1/chat/completions/",
    b"/chat/completions/", b"/V1/chat/completions", b"/v1/Chat/Completions", b"/CHAT/COMPLETIONS",
    b"/v1%2Fchat%2Fcompletions", b"/v1/chat%2Fcompletions", b"/v1/chat%2fcompletions", b"%2Fv1/chat/completions",
    b"/v1/chat/completions%00", b"/v1/chat/completions\x00", b"/v1/chat/completions%20", b"/v1/chat/completions ",
    b"/v1/chat/completions;x", b"/v1/chat/completions?x=1", b"/v1/chat/completions#x", b"v1/chat/completions",
    b"/v1/chat/completions\\", b"\\v1\\chat\\completions", b"/v1/chat/complet%69ons", b"/%76%31/chat/completions",
    b"/v2/chat/completions", b"/v1/v1/chat/completions", b"/api/v1/chat/completions", b"/v1/chat/completionsx",
    # models paths are not inference routes
    b"/v1/models", b"/models",
    # path-model routes with bad model segments
    b"/openai/deployments//chat/completions", b"/openai/deployments/../chat/completions",
    b"/openai/deployments/./chat/completions", b"/openai/deployments/%2e%2e/chat/completions",
    b"/openai/deployments/a%2Fb/chat/completions", b"/openai/deployments/a%2fb/chat/completions",
    b"/openai/deployments/gpt 4o/chat/completions", b"/openai/deployments/gpt%204o/chat/completions",
    b"/openai/deployments/a\x00/chat/completions", b"/openai/deployments/caf\xc3\xa9/chat/completions",
    b"/openai/deployments/a/b/chat/completions", b"/openai/deployments/gpt-4o/chat/completions/",
    b"/openai/deployments/gpt-4o", b"/openai/deployments/gpt-4o/", b"/openai/deployments/gpt-4o/images/generations",
    b"/OpenAI/deployments/gpt-4o/chat/completions", b"/v1/openai/deployments/gpt-4o/chat/completions",
    b"//openai/deployments/gpt-4o/chat/completions", b"/openai/deployments/gpt-4o//chat/completions",
    b"/engines//completions", b"/engines/../completions", b"/engines/%2e%2e/completions", b"/engines/x/y/completions",
    b"/openai/deployments/{model}/chat/completions",
]


@pytest.mark.parametrize("raw", NOT_ROUTES, ids=lambda v: repr(v)[2:-1] or "empty")
def test_not_routes(raw: bytes) -> None:
    assert TABLE.match(raw) == (None, None)


def test_extra_routes_from_config() -> None:
    table = RouteTable(
        [RouteConfig("/v1/custom", "none", ("get", "Post")), RouteConfig("/v1/other/thing", "multipart")]
    )
    assert table.match(b"/v1/custom") == (Route("/v1/custom", "none", frozenset({"GET", "POST"})), None)
    assert table.match(b"/v1/other/thing") == (Route("/v1/other/thing", "multipart", frozenset({"POST"})), None)
    # extra routes are exact: no /v1-less twin, no trailing slash
    assert table.match(b"/custom") == (None, None)
    assert table.match(b"/v1/custom/") == (None, None)
    # the built-in routes are still there
    assert table.match(b"/chat/completions") == (Route("/v1/chat/completions", "body"), None)


# -- /v1/models/{id} ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/v1/models", None),
        (b"/models", None),
        (b"/v1/models/gpt-4o", "gpt-4o"),
        (b"/models/gpt-4o", "gpt-4o"),
        (b"/v1/models/openai/gpt-4o", "openai/gpt-4o"),
        (b"/v1/models/openai/eu/gpt-4o", "openai/eu/gpt-4o"),
        (b"/v1/models/a:b@c_d-e.f", "a:b@c_d-e.f"),
        (b"/v1/models/...", "..."),
        (b"/v1/models/", False),
        (b"/models/", False),
        (b"/v1/models/gpt-4o/", False),
        (b"/v1/models//gpt-4o", False),
        (b"/v1/models/openai//gpt-4o", False),
        (b"/v1/models/..", False),
        (b"/v1/models/.", False),
        (b"/v1/models/../key/generate", False),
        (b"/v1/models/openai/../../key/generate", False),
        (b"/v1/models/%2e%2e", False),
        (b"/v1/models/openai%2Fgpt-4o", False),
        (b"/v1/models/gpt 4o", False),
        (b"/v1/models/gpt-4o\x00", False),
        (b"/v1/models/caf\xc3\xa9", False),
        (b"/v1/modelsx", False),
        (b"/v1/models-x/y", False),
        (b"/V1/models", False),
        (b"/v1/Models", False),
        (b"//v1/models", False),
        (b"/v1//models", False),
        (b"/v1/models?x", False),
        (b"/v1/chat/completions", False),
        (b"/key/generate", False),
        (b"", False),
    ],
    ids=lambda v: repr(v)[2:-1] if isinstance(v, bytes) else None,
)
def test_model_id_from_models_path(raw: bytes, expected) -> None:
    assert model_id_from_models_path(raw) == expected
    if expected is False:
        assert model_id_from_models_path(raw) is False
    elif expected is None:
        assert model_id_from_models_path(raw) is None
