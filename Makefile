# maas-gateway: `make run` serves a demo gateway, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run run-litemaas test test-unit test-integration test-e2e bench config-schema system-deps venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,litellm]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

NODE_DEPS := tests/deploy/node_modules/.package-lock.json

# Schema validators for the Prometheus Operator resources (tests/deploy), from the npm registry.
$(NODE_DEPS): tests/deploy/package-lock.json
	npm ci --prefix tests/deploy --no-audit --no-fund --loglevel=error

OIDC_DEPS := scripts/oidc/node_modules/.package-lock.json

# The local OpenID Connect provider (panva's oidc-provider) of `make run` and the console's browser tests.
$(OIDC_DEPS): scripts/oidc/package-lock.json
	npm ci --prefix scripts/oidc --no-audit --no-fund --loglevel=error

venv: $(STAMP) $(NODE_DEPS) $(OIDC_DEPS)

system-deps:
	./scripts/system-deps.sh

## make run: Postgres, LiteLLM (mock models), a local OIDC provider and the gateway on 127.0.0.1:8080,
## with a demo key and the console at /console (demo / demo).
run: system-deps venv
	$(VENV)/bin/maas-gateway dev

## make run-litemaas: the same on a LiteMaaS-shaped database (database.schema litemaas, docs/litemaas.md).
run-litemaas: system-deps venv
	$(VENV)/bin/maas-gateway dev --litemaas

## make test: unit + integration + e2e (starts its own Postgres, Redis and LiteLLM on free ports).
test: system-deps venv
	$(PY) -m pytest

test-unit: venv
	$(PY) -m pytest -m unit

test-integration: system-deps venv
	$(PY) -m pytest -m integration

test-e2e: system-deps venv
	$(PY) -m pytest -m e2e

## make config-schema: regenerate docs/config.schema.json from gateway/config/ (a test checks it is current).
config-schema:
	$(PY) -m gateway.config.schema > docs/config.schema.json

## make bench: the side-by-side benchmark (wrk); results in bench-results/.
bench: venv
	BENCH_TOOLS=1 ./scripts/system-deps.sh
	$(PY) -m tests.perf.bench

clean:
	rm -rf $(VENV) bench-results .run
