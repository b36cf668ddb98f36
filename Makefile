# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11) and install the project with its test extras when missing.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

DEMO_DIR       ?= demo
DEMO_CUSTOMERS ?= 20000
DEMO_SEED      ?= 7
DEMO_START     ?= 2024-01-01
DEMO_AS_OF     ?= 2026-01-01

.PHONY: venv demo test test-fast lint format bench clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Retain needs Python 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	# requirements.lock pins every transitive version (uv pip compile), so a fresh clone installs what CI tested.
	# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set nothing is cached at run time, and
	# every `retain` command would compile MLflow, Evidently and pandas again (about 9 s).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e '.[test,bench]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest

# The unit tier only (hand-computed frames, no trained world, no server): about a minute.
test-fast: $(STAMP)
	$(BIN)/pytest -m unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/retain generate --out $(DEMO_DIR)/data --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED) --start $(DEMO_START)
	$(BIN)/retain validate --data $(DEMO_DIR)/data
	$(BIN)/retain features --data $(DEMO_DIR)/data --as-of $(DEMO_AS_OF) --out $(DEMO_DIR)/features.parquet
	$(BIN)/retain train --data $(DEMO_DIR)/data
	$(BIN)/retain models
	$(BIN)/retain score --data $(DEMO_DIR)/data --as-of $(DEMO_AS_OF) --out $(DEMO_DIR)/at_risk.csv
	$(BIN)/retain outreach run --data $(DEMO_DIR)/data --as-of $(DEMO_AS_OF)
	$(BIN)/retain outreach status --data $(DEMO_DIR)/data
	$(BIN)/retain ingest --data $(DEMO_DIR)/data configs/demo/feedback_moments.csv configs/demo/events_moments.csv
	$(BIN)/retain cases list --data $(DEMO_DIR)/data --kind recovery
	$(BIN)/retain monitor --data $(DEMO_DIR)/data --as-of $(DEMO_AS_OF) --out $(DEMO_DIR)/monitoring || test $$? -eq 3
	@# A lead of the CX workspace (a demo run again gives them a new token instead).
	@$(BIN)/retain users add cx-lead --role lead --data $(DEMO_DIR)/data 2>/dev/null || $(BIN)/retain users token cx-lead --data $(DEMO_DIR)/data
	@echo
	@echo "Demo done. Outputs:"
	@echo "  $(DEMO_DIR)/data/                 synthetic contract tables (customers, events, feedback, churn)"
	@echo "  $(DEMO_DIR)/data/quarantine/      rows that broke the contract, with a reason (none expected here)"
	@echo "  $(DEMO_DIR)/features.parquet      one row of features per customer as of $(DEMO_AS_OF)"
	@echo "  mlruns/mlflow.db                  MLflow runs and the model registry (churn, clv; aliases champion/challenger)"
	@echo "  $(DEMO_DIR)/at_risk.csv            every customer ranked by value at risk, with reasons for the top 1,000"
	@echo "  $(DEMO_DIR)/data/scores/           the scored snapshot the HTTP service reads"
	@echo "  $(DEMO_DIR)/data/outreach/drop/    the outreach CSV file drop for the CX team"
	@echo "  $(DEMO_DIR)/data/store/            the store (retain.db: outreach outbox, inbox, moments, recovery and retention cases) and cases-drop/"
	@echo "  $(DEMO_DIR)/monitoring/            drift.html (Evidently), report.html (CX KPIs, outreach effect), summary.json"
	@echo "Open the MLflow UI with: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
	@echo "Start the scoring service: $(BIN)/retain serve --data $(DEMO_DIR)/data   (prints an API key once, then a sample call)"
	@echo "CX workspace: with the service running, open http://localhost:3000/ui and sign in with cx-lead's token printed above"
	@echo "  (add agents with: $(BIN)/retain users add NAME --role agent --data $(DEMO_DIR)/data)"
	@echo "  curl -s -X POST http://localhost:3000/at_risk -H \"Authorization: Bearer \$$(cat ~/.config/retain/api_key)\" -H 'Content-Type: application/json' -d '{\"n\": 5}'"
	@echo "Look at them with: $(BIN)/python -c \"import pandas as pd; print(pd.read_parquet('$(DEMO_DIR)/features.parquet').describe().T)\""

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .hypothesis
