"""The inference route table: which paths exist, and where each finds its model.

Only these routes exist on the proxy; any other path is 404 ROUTE_NOT_FOUND and is
never forwarded (LiteLLM's /key/*, /user/*, /model/*, /spend/*, pass-through routes).
Paths are matched on the raw request path, byte for byte, so dot segments, encoded
characters and doubled slashes never match anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

from gateway.config import RouteConfig

ModelSource = Literal["body", "multipart", "none", "path"]


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the canonical path, used as the metrics label
    model_source: ModelSource
    methods: frozenset[str] = frozenset({"POST"})
    path_model_index: int = -1  # for model_source == "path": the segment that holds the model
    labels: tuple[str] = field(init=False, repr=False, compare=False)  # (name,): the metrics labels, made once

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", (self.name,))


# (path, where the model is). Each is also served without the /v1 prefix, as LiteLLM does.
INFERENCE_ROUTES: tuple[tuple[str, ModelSource], ...] = (
    ("/v1/chat/completions", "body"),
    ("/v1/completions", "body"),
    ("/v1/embeddings", "body"),
    ("/v1/responses", "body"),
    ("/v1/images/generations", "body"),
    ("/v1/audio/speech", "body"),
    ("/v1/audio/transcriptions", "multipart"),
    ("/v1/moderations", "body"),
    ("/v1/rerank", "body"),
)

# Routes whose path names the model (Azure-style deployments, legacy engines).
PATH_MODEL_ROUTES: tuple[str, ...] = (
    "/openai/deployments/{model}/chat/completions",
    "/openai/deployments/{model}/completions",
    "/openai/deployments/{model}/embeddings",
    "/engines/{model}/chat/completions",
    "/engines/{model}/completions",
    "/engines/{model}/embeddings",
)

MODELS_PATHS = ("/v1/models", "/models")

_SEGMENT_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")


class RouteTable:
    """Raw path -> Route, built once at start."""

    def __init__(self, extra: Iterable[RouteConfig] = ()) -> None:
        self._exact: dict[bytes, Route] = {}
        for path, source in INFERENCE_ROUTES:
            route = Route(path, source)
            self._exact[path.encode()] = route
            self._exact[path.removeprefix("/v1").encode()] = route
        for extra_route in extra:
            self._exact[extra_route.path.encode()] = Route(
                extra_route.path, extra_route.model, frozenset(m.upper() for m in extra_route.methods)
            )
        # templates by segment count: [(segments, index of {model}, Route)]
        self._templates: dict[int, list[tuple[tuple[bytes, ...], int, Route]]] = {}
        for template in PATH_MODEL_ROUTES:
            segments = tuple(template.encode().split(b"/"))
            index = segments.index(b"{model}")
            route = Route(template, "path", path_model_index=index)
            self._templates.setdefault(len(segments), []).append((segments, index, route))

    def match(self, raw_path: bytes) -> tuple[Route | None, str | None]:
        """(route, model named by the path) or (None, None) when the path is not a route."""
        route = self._exact.get(raw_path)
        if route is not None:
            return route, None
        segments = raw_path.split(b"/")
        for template, index, route in self._templates.get(len(segments), ()):
            if all(t == s for i, (t, s) in enumerate(zip(template, segments)) if i != index):
                model = segments[index]
                if model and model not in (b".", b"..") and all(c in _SEGMENT_BYTES for c in model):
                    return route, model.decode()
        return None, None


def model_id_from_models_path(raw_path: bytes) -> str | None | bool:
    """For /v1/models/{id}: the id; None for the list itself; False when not a models path.

    Model ids may contain "/" ("openai/gpt-4o"), as in LiteLLM, so everything after
    the prefix is the id; dot segments and empty segments are refused.
    """
    for prefix in MODELS_PATHS:
        encoded = prefix.encode()
        if raw_path == encoded:
            return None
        if raw_path.startswith(encoded + b"/"):
            rest = raw_path[len(encoded) + 1 :]
            parts = rest.split(b"/")
            if rest and all(p and p not in (b".", b"..") and all(c in _SEGMENT_BYTES for c in p) for p in parts):
                return rest.decode()
            return False
    return False
