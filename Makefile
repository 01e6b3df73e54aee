# Entry points. `make run` and `make test` are all a new user needs: both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.9.5
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PROJECT ?= all
DATA ?=
DATA_DIR ?=
MODEL ?= models:/$(PROJECT)@champion
PORT ?= 8080
HOST ?=
SOURCE ?= synthetic
DEPLOY_MODE ?= manifest
NO_CACHE ?=
PYTEST_ARGS ?=

export MLFLOW_DISABLE_TELEMETRY := true
, := ,

# STACK=1 points every target at `make stack`'s parts (its MLflow server, its object store for
# the inference log, its Pushgateway): the environment it wrote when it started.
STACK ?=
STACK_DIR ?= .state/stack
ifeq ($(STACK),1)
ifeq ($(wildcard $(STACK_DIR)/stack.mk),)
$(error STACK=1 but no stack has started in $(STACK_DIR): run make stack first)
endif
include $(STACK_DIR)/stack.mk
endif

.PHONY: help install lock run test coverage-check test-all lint format compile-pipelines generate check-compiled check-manifests \
	submit schedule serve traffic monitor score compile-champions prometheus pushgateway \
	bench-pipelines bench-quality bench-serving bench-monitoring bench-batch bench-cost bench-scale bench-tree-shapes bench-rollout bench-shadow check-cards screenshots image \
	app app-screenshots \
	check-image stack stack-down stack-status stage rollout-status rollout-manifest judge approve reject clean

help:
	@echo "make run [PROJECT=telecom] [DATA=path/or/url | DATA_DIR=../shared/data] [NO_CACHE=1] [JOBS=1] [PROMOTION=staged]"
	@echo "    (NOTIFY_URL=<webhook URL> in the environment: each run posts its outcome there as JSON; docs/operations.md, Notices)"
	@echo "make test | coverage-check | lint | compile-pipelines | generate | check-compiled | check-manifests"
	@echo "make serve PROJECT=telecom [MODEL=models:/telecom@champion] [PORT=8080] [GRPC_PORT=8081] [INFERENCE_LOG=dir|s3://...|] [INFERENCE_LOG_SAMPLE=1] [REFRESH=30] [TOKEN=...|TOKEN_FILE=path] [ALLOW_UNVERIFIED=1]"
	@echo "make traffic PROJECT=telecom [PORT=8080] [DATA=csv] [ROWS=500] [BATCH=1] [SHIFT=col:factor,...] [LABELS=out.csv] [TOKEN=...|TOKEN_FILE=path]"
	@echo "    (TOKEN: the bearer token; MLOPS_API_TOKEN in the environment instead keeps it out of ps)"
	@echo "make monitor PROJECT=telecom [DATA=served.csv] [LABELS=labels.csv] [HOURS=24] [RETENTION_DAYS=30] [DRIFT_SAMPLE_ROWS=20000] [PUSHGATEWAY=127.0.0.1:9091] [RETRAIN=0] [TRIALS=N] [RETRAIN_SOURCE=<moved data>] [APPROVAL=required] [ROLLOUT_POLICY=<json>] [PROMOTION=staged]"
	@echo "make prometheus PROJECT=telecom [PORT=8080] [PUSHGATEWAY=127.0.0.1:9091]   (scrapes make serve, alert rules loaded)"
	@echo "make pushgateway   (Pushgateway on 127.0.0.1:9091 for the monitoring runs' figures)"
	@echo "make alert-receiver [RECEIVER_PORT=9095] [TOKEN_FILE=path] [COOLDOWN_S=21600] [DAILY_BUDGET=4] [MONITOR_ARGS='--retrain 0'] [PUSHGATEWAY=127.0.0.1:9091]   (Alertmanager's webhook: its action alerts start make monitor's run, gated per project)"
	@echo "make score PROJECT=bankchurn DATA=<path or URL, .csv|.parquet> OUT=<path or URL, .csv|.parquet> [SHARD_ROWS=1000000] [MAX_REJECTED=0.1] [DRIFT_GATE=warn|stop|off] [DRIFT_MIN_ROWS=500] [VERSION=N] [REASONS=0|1] [ALLOW_UNVERIFIED=1]"
	@echo "make stage PROJECT=telecom VERSION=N TO=shadow|canary|champion|rolled_back [SHARE=0.1] [REASON=...] | rollout-status PROJECT=telecom"
	@echo "make rollout-manifest PROJECT=telecom [OUT=isvc.yaml] [DEPLOY_MODE=apply]  (the rollout as an InferenceService with spec.canary)"
	@echo "    (servers following @champion serve a staged version beside it: docs/operations.md, Safe rollout)"
	@echo "make judge PROJECT=telecom [LABELS=labels.csv] [EVERY=60] [APPROVAL=required] | approve PROJECT= VERSION= | reject PROJECT= VERSION=   (the rollout judge)"
	@echo "make compile-champions [PROJECT=all] [DATA=path] [ALLOW_UNVERIFIED=1]   (the compiled serving path for champions registered before it)"
	@echo "make submit HOST=https://<kfp-endpoint> PROJECT=telecom MLFLOW=<uri> [SOURCE=<uri>] [DEPLOY_MODE=apply] [PARAMS='{\"seed\": 7}']"
	@echo "    (PIPELINE=batch-scoring submits the batch scoring pipeline: SOURCE=<.csv|.parquet URI> required)"
	@echo "make schedule HOST=https://<kfp-endpoint> PROJECT=telecom MLFLOW=<uri> CRON='0 0 * * * *' [LOG_ROOT=s3://...] [PUSHGATEWAY=...] [PARAMS='{...}']"
	@echo "    (MLFLOW: the MLflow server the cluster's pods reach; default \$$MLFLOW_TRACKING_URI)"
	@echo "make bench-pipelines | bench-quality | bench-serving | bench-batch [DATA_DIR=../shared/data]"
	@echo "make bench-scale [DATA_DIR=../shared/data] [SIZES=1000000,3000000,10000000]   (monitoring windows and batches at production volume, every step's time and peak memory: .state/bench/scale.md)"
	@echo "make bench-rollout [DATA_DIR=../shared/data] [REPLAYS=50]   (the rollout judge's false rollback and promotion rates over replays: .state/bench/rollout.md)"
	@echo "make bench-shadow [DATA_DIR=../shared/data]   (a shadow's cost to the champion's p50, after make run: .state/bench/shadow.md)"
	@echo "make bench-tree-shapes [DATA_DIR=../shared/data] [PROJECT=carvision]   (speed and accuracy of the champion's tree shapes: .state/bench/tree_shapes.md)"
	@echo "make bench-cost [DATA_DIR=../shared/data] [PROJECT=all|bankchurn|telecom|carvision]   (CPU and memory per step, per 1M predictions and batch rows: .state/bench/cost.md)"
	@echo "make check-cards | screenshots   (after make run DATA_DIR=../shared/data)"
	@echo "make app [APP_PORT=8501] [PORT=8080] [DATA=listings.csv | DATA_DIR=../shared/data] [TOKEN=...|TOKEN_FILE=path]   (beside make serve PROJECT=carvision)"
	@echo "make app-screenshots [DATA=... | DATA_DIR=...] [ALLOW_UNVERIFIED=1]   (the dashboard's tabs for docs/images)"
	@echo "make image [BASE_IMAGE=localhost/debian:bookworm] | check-image [STACK=1]"
	@echo "make stack [SCRAPE='telecom=127.0.0.1:8080 telecom=127.0.0.1:8082'] [PORTS=mlflow=5000,s3=9000,...] [COOLDOWN_S=21600] [DAILY_BUDGET=4] | stack-status | stack-down"
	@echo "    (then STACK=1 on run, serve, traffic, monitor, score, app: the stack's MLflow server, s3:// log, Pushgateway)"

# The venv is rebuilt whenever the lock file or the project metadata changes. Its packages are
# compiled to bytecode once, here: every pipeline step and server is a new interpreter, and
# where PYTHONDONTWRITEBYTECODE is set (as in the image) none would cache what it compiles, so
# each would compile pandas, scikit-learn and MLflow again (2-3 s of every step's start).
$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	uv venv -q --allow-existing --python 3.11 $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install -q --require-hashes -r requirements.lock
	VIRTUAL_ENV=$(VENV) uv pip install -q --no-deps -e .
	$(PY) -m compileall -q -j 0 $(VENV)/lib/python3.11/site-packages >/dev/null
	@touch $(STAMP)

install: $(STAMP)

# Both locks from pyproject.toml, with hashes: requirements.lock for the venv (development tools
# included), requirements-runtime.lock for the image (the same versions, no test or lint tools).
lock:
	uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		-o requirements.lock
	uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes \
		--constraint requirements.lock -o requirements-runtime.lock

# PROMOTION=staged: a model that beats the champion goes to shadow beside it, for the rollout
# judge (make judge, or the monitoring runs' rollout step), instead of becoming the champion.
PROMOTION ?= direct
run: $(STAMP)
	$(PY) -m pipelines.local --project $(PROJECT) $(if $(DATA),--data "$(DATA)") \
		$(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(if $(NO_CACHE),--no-cache) \
		--promotion $(PROMOTION)

# Line and branch coverage of the product packages, in the test process and in the processes it
# starts (pyproject.toml [tool.coverage.run]); a table per package, the JSON report in .state/.
# `make coverage-check` then fails under a package's floor (.ci/coverage_packages.py): run it
# after a whole `make test`, not after a PYTEST_ARGS subset.
# TEST_WORKERS processes share the tests (pytest-xdist); groups in tests/conftest.py keep tests
# that share servers or a module's fixtures on one worker, and hand the longest groups out first
# (in collection order: --no-loadscope-reorder). TEST_WORKERS=0 runs in this process.
COVERAGE_JSON := .state/coverage/coverage.json
TEST_WORKERS ?= 2
test: $(STAMP)
	@mkdir -p $(dir $(COVERAGE_JSON))
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --cov --cov-report=json:$(COVERAGE_JSON) $(PYTEST_ARGS)
	@$(PY) .ci/coverage_packages.py $(COVERAGE_JSON)

coverage-check: $(STAMP)
	$(PY) .ci/coverage_packages.py --check $(COVERAGE_JSON)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy components pipelines serving grafana benchmarks apps .ci/coverage_packages.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

compile-pipelines: $(STAMP)
	$(PY) -m pipelines.compile

# Every generated file: compiled pipelines, InferenceServices, dashboard and alert rules.
GENERATED := pipelines/compiled manifests grafana/dashboards grafana/alerts
generate: compile-pipelines
	$(PY) -m components.core.deploy manifests/base
	$(PY) -m grafana

# Generated files are checked in: regenerate and fail on any difference or new file.
check-compiled: generate
	@git diff --exit-code -- $(GENERATED)
	@test -z "$$(git ls-files --others --exclude-standard -- $(GENERATED))" || \
		{ git ls-files --others --exclude-standard -- $(GENERATED); \
		  echo "generated files above are not in git"; exit 1; }

# The cluster checks' own tools (checkov, cel-python, kubernetes-validate), pinned with hashes in
# tests/cluster/tools.lock, in their own venv: checkov's dependencies clash with the project's.
TOOLS := .state/tools
TOOLS_STAMP := $(TOOLS)/.installed
CHECKOV := $(TOOLS)/bin/checkov --config-file tests/cluster/checkov.yaml
BUILT := .state/manifests
$(TOOLS_STAMP): tests/cluster/tools.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	uv venv -q --allow-existing --python 3.11 $(TOOLS)
	VIRTUAL_ENV=$(TOOLS) uv pip install -q --require-hashes -r tests/cluster/tools.lock
	$(TOOLS)/bin/python -m compileall -q -j 0 $(TOOLS)/lib/python3.11/site-packages >/dev/null
	@touch $@

# Offline checks of the cluster side: the kustomize builds (and each predictor as the Deployment
# KServe makes of it) against their API schemas and scanned by checkov, the admission policy's
# CEL against sample InferenceServices, the Terraform scanned (with the helm_release policies),
# promtool's alert unit tests, Terraform formatting (`terraform validate` needs the provider
# registry). The optional components are checked in the overlays with them
# (tests/cluster/with-app: dev and prod with the CarVision dashboard), and prod once more with
# every InferenceService mid-rollout, a canary beside the champion (tests/cluster/with_canary.py).
check-manifests: $(STAMP) $(TOOLS_STAMP)
	@rm -rf $(BUILT) && mkdir -p $(BUILT)/dev $(BUILT)/prod $(BUILT)/deployer $(BUILT)/app $(BUILT)/canary
	kubectl kustomize manifests/overlays/dev > $(BUILT)/dev/overlay.yaml
	kubectl kustomize manifests/overlays/prod > $(BUILT)/prod/overlay.yaml
	kubectl kustomize manifests/deployer > $(BUILT)/deployer/deployer.yaml
	kubectl kustomize tests/cluster/with-app/dev > $(BUILT)/app/dev-overlay.yaml
	kubectl kustomize tests/cluster/with-app/prod > $(BUILT)/app/prod-overlay.yaml
	$(PY) -m tests.cluster.render $(BUILT)/dev/overlay.yaml > $(BUILT)/dev/predictors.yaml
	$(PY) -m tests.cluster.render $(BUILT)/prod/overlay.yaml > $(BUILT)/prod/predictors.yaml
	$(PY) -m tests.cluster.render $(BUILT)/app/prod-overlay.yaml > $(BUILT)/app/prod-predictors.yaml
	$(PY) -m tests.cluster.with_canary $(BUILT)/prod/overlay.yaml > $(BUILT)/canary/overlay.yaml
	$(PY) -m tests.cluster.render $(BUILT)/canary/overlay.yaml > $(BUILT)/canary/predictors.yaml
	$(TOOLS)/bin/python tests/cluster/validate_schemas.py $(BUILT)/*/*.yaml
	$(TOOLS)/bin/python tests/cluster/admission_cel.py $(BUILT)/dev/overlay.yaml
	$(TOOLS)/bin/python tests/cluster/admission_cel.py $(BUILT)/prod/overlay.yaml
	$(TOOLS)/bin/python tests/cluster/admission_cel.py $(BUILT)/canary/overlay.yaml
	@for target in dev prod deployer app canary; do echo "checkov: $$target"; \
		$(CHECKOV) -d $(BUILT)/$$target --framework kubernetes || exit 1; done
	@for target in modules envs; do echo "checkov: terraform/$$target"; \
		$(CHECKOV) -d terraform/$$target --framework terraform \
			--external-checks-dir tests/cluster/checkov_policies || exit 1; done
	promtool check rules grafana/alerts/*.rules.yml
	promtool test rules tests/cluster/alerts_test.yml
	terraform fmt -check -recursive terraform

# Submitting and scheduling send MLFLOW (else $MLFLOW_TRACKING_URI; one of them is required) and
# PARAMS, a JSON object of further pipeline parameters; every name is checked against the
# compiled pipeline before anything is sent. A run with DEPLOY_MODE=apply runs as mlops-deployer
# (manifests/deployer) unless SERVICE_ACCOUNT names another.
SERVICE_ACCOUNT ?=
PIPELINE ?=
MLFLOW ?=
PARAMS ?=
CLUSTER_ARGS = $(if $(MLFLOW),--mlflow-tracking-uri "$(MLFLOW)") $(if $(PARAMS),--params '$(PARAMS)')
submit: $(STAMP)
	@test -n "$(HOST)" || { echo "HOST=<KFP endpoint> is required"; exit 2; }
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	$(PY) -m pipelines.submit --host "$(HOST)" --project $(PROJECT) --source "$(SOURCE)" \
		--deploy-mode $(DEPLOY_MODE) $(if $(SERVICE_ACCOUNT),--service-account $(SERVICE_ACCOUNT)) \
		$(if $(PIPELINE),--pipeline $(PIPELINE)) $(CLUSTER_ARGS)

# A KFP recurring run of PROJECT's monitoring pipeline on CRON (6 fields, seconds first, or 5).
CRON ?=
LOG_ROOT ?=
schedule: $(STAMP)
	@test -n "$(HOST)" || { echo "HOST=<KFP endpoint> is required"; exit 2; }
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	@test -n "$(CRON)" || { echo "CRON='0 0 * * * *' (hourly; seconds first) is required"; exit 2; }
	$(PY) -m pipelines.schedule --host "$(HOST)" --project $(PROJECT) --cron "$(CRON)" \
		$(if $(LOG_ROOT),--log-root "$(LOG_ROOT)") $(if $(PUSHGATEWAY),--pushgateway "$(PUSHGATEWAY)") \
		$(CLUSTER_ARGS)

# Prometheus on 127.0.0.1:9090 scraping `make serve` on PORT, with the alert rules loaded, and
# the Pushgateway at PUSHGATEWAY when given (honor_labels, as on a cluster).
PUSHGATEWAY ?=
prometheus: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	$(PY) -m grafana.local $(PROJECT)=127.0.0.1:$(PORT) --pushgateway "$(PUSHGATEWAY)"

# Debian's Pushgateway on 127.0.0.1:9091 in the foreground, for the monitoring runs to push to
# (PUSHGATEWAY=127.0.0.1:9091); it keeps their figures in .state/pushgateway/ across restarts.
pushgateway:
	@command -v prometheus-pushgateway >/dev/null || \
		{ echo "prometheus-pushgateway is not installed: apt-get install prometheus-pushgateway"; exit 2; }
	@mkdir -p .state/pushgateway
	prometheus-pushgateway --web.listen-address=127.0.0.1:9091 \
		--persistence.file=.state/pushgateway/pushgateway.data --persistence.interval=1m

# The Alertmanager webhook receiver on 127.0.0.1:RECEIVER_PORT (docs/operations.md, "From an alert
# to a monitoring run"): an action alert posted to /alerts starts `make monitor`'s run of its
# project, behind a gate per project (a repeated alert deduplicated, COOLDOWN_S seconds after a
# start, DAILY_BUDGET runs a UTC day, one at a time). Its state, decision log and each run's
# output are in .state/alert-receiver/. MONITOR_ARGS go to every run; TOKEN_FILE holds the bearer
# token Alertmanager must send. The runs get MLflow, the inference log and PUSHGATEWAY as make
# monitor's do.
.PHONY: alert-receiver
RECEIVER_PORT ?= 9095
COOLDOWN_S ?=
DAILY_BUDGET ?=
MONITOR_ARGS ?=
alert-receiver: $(STAMP)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
	MLOPS_INFERENCE_LOG=$${MLOPS_INFERENCE_LOG:-$(INFERENCE_LOG)} \
	$(if $(PUSHGATEWAY),PUSHGATEWAY="$(PUSHGATEWAY)") \
		$(PY) -m pipelines.alert_receiver --port $(RECEIVER_PORT) \
		--state-dir "$(CURDIR)/.state/alert-receiver" $(if $(TOKEN_FILE),--token-file "$(TOKEN_FILE)") \
		$(if $(COOLDOWN_S),--cooldown-s $(COOLDOWN_S)) $(if $(DAILY_BUDGET),--daily-budget $(DAILY_BUDGET)) \
		$(if $(MONITOR_ARGS),--monitor-args="$(MONITOR_ARGS)")

# The server logs what it answers under INFERENCE_LOG (empty: no log), the share
# INFERENCE_LOG_SAMPLE of the requests (1: all; each record carries the rate), and, when MODEL is a
# registry alias, checks it every REFRESH seconds and serves the version it moves to (0: never).
# GRPC_PORT also serves the v2 protocol over gRPC there (empty, the default: no gRPC port).
# TOKEN (given on make's command line) or MLOPS_API_TOKEN (in its environment) is the bearer token
# that predict, explain and infer then require, and that traffic sends; TOKEN_FILE names a file
# holding it. The token reaches the processes through their environment, never their arguments.
# ALLOW_UNVERIFIED=1 serves a model whose file no sha256 vouches for (a version registered before
# the register step recorded one).
INFERENCE_LOG ?= $(CURDIR)/.state/inference
INFERENCE_LOG_SAMPLE ?= 1
REFRESH ?= $(if $(findstring @,$(MODEL)),30,0)
GRPC_PORT ?=
TOKEN_FILE ?=
ALLOW_UNVERIFIED ?=
ifeq ($(origin TOKEN),command line)
ifneq ($(TOKEN),)
serve traffic app: export MLOPS_API_TOKEN := $(TOKEN)
endif
endif
serve: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m serving --model_name $(PROJECT) --model_uri "$(MODEL)" --http_port $(PORT) \
		--inference_log "$(INFERENCE_LOG)" --inference_log_sample $(INFERENCE_LOG_SAMPLE) \
		--refresh_interval $(REFRESH) \
		$(if $(GRPC_PORT),--grpc-port $(GRPC_PORT)) \
		$(if $(TOKEN_FILE),--api-token-file "$(TOKEN_FILE)") \
		$(if $(ALLOW_UNVERIFIED),--allow-unverified-model)

# ROWS rows of PROJECT (from DATA, else synthetic; SHIFT=col:factor,... plants a drift) sent to
# `make serve` on 127.0.0.1:PORT, BATCH per request. The answered rows' targets are appended to
# LABELS, which joins the inference log on request_id and row.
ROWS ?= 500
BATCH ?= 1
SHIFT ?=
LABELS ?= $(CURDIR)/.state/traffic/$(PROJECT)-labels.csv
traffic: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	$(PY) -m pipelines.traffic --project $(PROJECT) --port $(PORT) --rows $(ROWS) --batch $(BATCH) \
		$(if $(DATA),--data "$(DATA)") $(if $(SHIFT),--shift "$(SHIFT)") \
		$(if $(LABELS),--labels "$(LABELS)") $(if $(TOKEN_FILE),--api-token-file "$(TOKEN_FILE)")

# Benchmarks (benchmarks/, not in the image). The real data: DATA_DIR when given, else
# ../shared/data next to the repository (tests/support/data.py).
# The monitoring pipeline over the local server's inference log (or DATA, a file of served
# inputs): it compacts the log's closed hours into Parquet and prunes hours older than
# RETENTION_DAYS (0: keep all), reads the last HOURS in bounded memory and compares a sample of
# DRIFT_SAMPLE_ROWS with the champion's reference; when its policy calls for it, it retrains (RETRAIN=0: report only; TRIALS search trials
# per candidate, 0 = the project's default; RETRAIN_SOURCE where the champion's data is now, if it
# moved). It also gives the version being rolled out, if any, one look of the rollout judge
# (APPROVAL=required holds a promotion; ROLLOUT_POLICY='{"canary_share": 0.2}' changes the judge's
# policy). Writes .state/monitor/<project>/latest.json.
ROLLOUT_POLICY ?=
HOURS ?= 24
RETENTION_DAYS ?= 30
DRIFT_SAMPLE_ROWS ?= 20000
RETRAIN ?= 1
TRIALS ?= 0
RETRAIN_SOURCE ?=
# The labels `make traffic` wrote join the log when they exist; LABELS given by hand must exist.
MONITOR_LABELS = $(if $(DATA),,$(if $(filter file,$(origin LABELS)),$(wildcard $(LABELS)),$(LABELS)))
monitor: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.monitor --project $(PROJECT) $(if $(DATA),--data "$(DATA)") \
		$(if $(MONITOR_LABELS),--labels "$(MONITOR_LABELS)") --hours $(HOURS) --retrain $(RETRAIN) \
		--retention-days $(RETENTION_DAYS) --drift-sample-rows $(DRIFT_SAMPLE_ROWS) \
		--trials $(TRIALS) $(if $(RETRAIN_SOURCE),--retrain-source "$(RETRAIN_SOURCE)") \
		$(if $(PUSHGATEWAY),--pushgateway "$(PUSHGATEWAY)") --approval $(APPROVAL) \
		--promotion $(PROMOTION) \
		$(if $(ROLLOUT_POLICY),--rollout-policy '$(ROLLOUT_POLICY)')

# A registered VERSION moved along its rollout by hand (components.core.rollout): TO=shadow|canary
# (SHARE of the requests, 0.1 by default)|champion|rolled_back, REASON recorded on the version;
# rollout-status shows the version being rolled out.
SHARE ?=
REASON ?=
stage: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	@test -n "$(TO)" -a -n "$(STAGE_VERSION)" || { echo "VERSION=<registered version> TO=<stage> are required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.stage --project $(PROJECT) --version "$(STAGE_VERSION)" --to $(TO) \
		$(if $(SHARE),--share $(SHARE)) $(if $(REASON),--reason "$(REASON)")

# The rollout judge (components/core/judge.py): one look at the staged version on INFERENCE_LOG
# and LABELS, acted on in the registry; EVERY=<seconds> looks again until the rollout ends;
# APPROVAL=required holds a promotion for approve (or reject) PROJECT= VERSION=.
EVERY ?= 0
APPROVAL ?= automatic
judge: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.judge --project $(PROJECT) --log-root "$(INFERENCE_LOG)" \
		$(if $(wildcard $(LABELS)),--labels "$(LABELS)") --approval $(APPROVAL) --every $(EVERY)

approve reject: $(STAMP)
	@test "$(PROJECT)" != all -a -n "$(STAGE_VERSION)" || { echo "PROJECT= and VERSION= are required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.stage --project $(PROJECT) --version "$(STAGE_VERSION)" --$@ \
		$(if $(REASON),--reason "$(REASON)")

rollout-status: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.stage --project $(PROJECT)

# The rollout as KServe's InferenceService (the champion, a canary's share as spec.canary) in
# OUT (default: stdout); DEPLOY_MODE=apply also creates or patches it with the in-cluster API.
rollout-manifest: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	@MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.stage --project $(PROJECT) --manifest "$(or $(OUT),-)" \
		$(if $(filter apply,$(DEPLOY_MODE)),--apply)

# PROJECT's batch scoring pipeline through kfp.local on DATA (a .csv or .parquet path or URL),
# with the champion (or VERSION) pinned for every shard; the predictions go to OUT (its extension
# sets the format), the rejected rows beside it as <stem>.rejected.<ext>. SHARD_ROWS rows per
# shard, MAX_REJECTED the largest share of bad rows, DRIFT_GATE warn|stop|off (DRIFT_MIN_ROWS: fewer
# valid rows are "not enough data"), REASONS 0|1.
# VERSION counts only on make's command line: the name is too common in environments.
OUT ?=
SHARD_ROWS ?=
MAX_REJECTED ?=
DRIFT_GATE ?=
DRIFT_MIN_ROWS ?=
REASONS ?=
SCORE_VERSION = $(if $(filter command line,$(origin VERSION)),$(VERSION))
STAGE_VERSION = $(SCORE_VERSION)
# The ONNX graph of champions registered before registration produced one, checked on their own
# test split rebuilt from the source their run recorded (DATA= where it moved).
compile-champions: $(STAMP)
	$(PY) -m pipelines.compile_champions --project $(PROJECT) $(if $(DATA),--source "$(DATA)") \
		$(if $(ALLOW_UNVERIFIED),--allow-unverified)

score: $(STAMP)
	@test "$(PROJECT)" != all || { echo "PROJECT=<bankchurn|carvision|telecom> is required"; exit 2; }
	@test -n "$(DATA)" || { echo "DATA=<path or URL of a .csv or .parquet file> is required"; exit 2; }
	@test -n "$(OUT)" || { echo "OUT=<output path or URL, .csv or .parquet> is required"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
		$(PY) -m pipelines.score --project $(PROJECT) --data "$(DATA)" --out "$(OUT)" \
		$(if $(SHARD_ROWS),--shard-rows $(SHARD_ROWS)) \
		$(if $(MAX_REJECTED),--max-rejected-share $(MAX_REJECTED)) \
		$(if $(DRIFT_GATE),--drift-gate $(DRIFT_GATE)) $(if $(DRIFT_MIN_ROWS),--drift-min-rows $(DRIFT_MIN_ROWS)) \
		$(if $(SCORE_VERSION),--model-version $(SCORE_VERSION)) \
		$(if $(REASONS),--reasons $(REASONS)) $(if $(ALLOW_UNVERIFIED),--allow-unverified-model)

bench-pipelines: $(STAMP)
	$(PY) -m benchmarks.pipelines pipelines $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

bench-quality: $(STAMP)
	$(PY) -m benchmarks.pipelines quality $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

# Each registered champion (PROJECT=all: the three) in process, compiled, served (v1, v2, 8
# clients) and by MLServer, on the real rows, with its answers checked on every row; writes
# .state/bench/serving.md.
bench-serving: $(STAMP)
	$(PY) -m benchmarks.serving --project $(PROJECT) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

# Rows per second of the batch scoring step next to each champion's own predict call, on the
# real data; writes .state/bench/batch.md.
bench-batch: $(STAMP)
	$(PY) -m benchmarks.batch $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		$(if $(filter all,$(PROJECT)),,--project $(PROJECT))

bench-monitoring: $(STAMP)
	$(PY) -m benchmarks.monitoring $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		$(if $(filter all,$(PROJECT)),,--project $(PROJECT))

# The monitoring and batch scoring pipelines at a day of traffic (1M, 3M, 10M logged rows) and at
# 1M, 3M, 10M batch rows made from the real files: every step's wall time, rows/s and peak
# memory against its declared limit (docs/monitoring.md, docs/batch.md). About 20 minutes.
bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		$(if $(SIZES),--sizes $(SIZES))

# CPU-seconds and peak memory of every step of a training, a monitoring and a batch scoring run,
# of a million single-row predictions over HTTP and of a million batch rows, per project, on the
# real data with the registered champions (docs/finops.md); writes .state/bench/cost.md.
bench-cost: $(STAMP)
	$(PY) -m benchmarks.cost $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		$(if $(filter all,$(PROJECT)),,--project $(PROJECT))

# The rollout judge over replays of iid traffic on the real telecom split: how often an equal
# challenger is rolled back or promoted (the stated rates), and how fast the planted faults go;
# writes .state/bench/rollout.md. REPLAYS per challenger (50).
REPLAYS ?= 50
bench-rollout: $(STAMP)
	$(PY) -m benchmarks.rollout $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") --replays $(REPLAYS)

# What a shadow costs the champion's p50: the registered telecom champion served alone and with
# a copy of itself in shadow, in alternating blocks of paced requests; .state/bench/shadow.md.
bench-shadow: $(STAMP)
	$(PY) -m benchmarks.shadow $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

# The champion's tree shape beside others (PROJECT, carvision when all): more and smaller trees,
# fewer and larger ones, ordinal-coded categories; in CV on its training split, on its test split
# and in rows/s compiled and sklearn; writes .state/bench/tree_shapes.md.
bench-tree-shapes: $(STAMP)
	$(PY) -m benchmarks.tree_shapes $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") \
		--project $(if $(filter all,$(PROJECT)),carvision,$(PROJECT))

# The project image with podman (no Docker engine here). BASE_IMAGE must exist locally: see
# docs/serving.md for a Debian base made with debootstrap when no image registry is reachable.
BASE_IMAGE ?= docker.io/library/debian:bookworm-slim
PODMAN := podman --runtime runc --cgroup-manager cgroupfs
image: $(STAMP)
	$(PODMAN) build -f serving/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg CODE_VERSION=$$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown) \
		--build-arg BASE_DIGEST=$$($(PODMAN) image inspect --format '{{.Digest}}' $(BASE_IMAGE) 2>/dev/null || echo unknown) \
		$(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--secret id=ca_bundle$(,)src=/etc/ssl/certs/ca-certificates.crt) \
		--network host -t $$($(PY) -c 'from components.image import IMAGE; print(IMAGE)') .
	$(PY) -m benchmarks.sbom

# After `make run DATA_DIR=../shared/data`: every README quality figure against the champions'
# model cards, and screenshots of their evaluation reports for docs/images.
check-cards: $(STAMP)
	$(PY) -m benchmarks.cards

screenshots: $(STAMP)
	$(PY) -m benchmarks.screenshots

# The CarVision dashboard (apps/carvision, docs/app.md) on 127.0.0.1:APP_PORT: the champion from
# MLflow (the local store unless MLFLOW_TRACKING_URI says otherwise), the listings from APP_DATA,
# estimates from the predictor `make serve PROJECT=carvision` runs on PORT, with TOKEN or
# TOKEN_FILE when it requires one (handed over in the environment, as for serve).
APP_PORT ?= 8501
APP_DATA ?= $(if $(DATA),$(DATA),$(or $(DATA_DIR),../shared/data)/vehicles_us.csv)
app: $(STAMP)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/.state/mlflow/mlflow.db} \
	CARVISION_PREDICTOR_URL=$${CARVISION_PREDICTOR_URL:-http://127.0.0.1:$(PORT)} \
	CARVISION_DATA="$(APP_DATA)" $(if $(TOKEN_FILE),MLOPS_API_TOKEN_FILE="$(TOKEN_FILE)") \
		$(PY) -m streamlit run apps/carvision/app.py --server.port $(APP_PORT) \
		--server.address 127.0.0.1 --server.headless true --server.fileWatcherType none \
		--browser.gatherUsageStats false

# Each tab of the dashboard on APP_DATA, with the carvision champion served beside it, as
# docs/images/carvision-app-<tab>.png (ALLOW_UNVERIFIED=1: a champion registered without its
# model file's sha256).
app-screenshots: $(STAMP)
	$(PY) -m benchmarks.screenshots --app --data "$(APP_DATA)" \
		$(if $(ALLOW_UNVERIFIED),--allow-unverified-model)

# A compiled step and the server's entrypoint, run inside the built image; with STACK=1, an
# inference log part written and read back in the image on the stack's s3:// store.
check-image: $(STAMP)
	$(PY) -m benchmarks.image_check $(if $(filter 1,$(STACK)),--stack-dir "$(STACK_DIR)")

# The parts a cluster has, on 127.0.0.1 (benchmarks/stack.py, docs/operations.md): PostgreSQL,
# an S3 API, an MLflow server, Pushgateway, Alertmanager, the alert receiver and Prometheus,
# their data in .state/stack, which a second start reuses. SCRAPE: the servers Prometheus scrapes
# (PROJECT=HOST:PORT, replicas repeat the project; default PROJECT on PORT when PROJECT is given).
SCRAPE ?= $(if $(filter-out all,$(PROJECT)),$(PROJECT)=127.0.0.1:$(PORT))
PORTS ?=
stack: $(STAMP)
	$(PY) -m benchmarks.stack up --root "$(STACK_DIR)" $(SCRAPE) $(if $(PORTS),--ports "$(PORTS)") \
		$(if $(COOLDOWN_S),--cooldown-s $(COOLDOWN_S)) $(if $(DAILY_BUDGET),--daily-budget $(DAILY_BUDGET)) \
		$(if $(MONITOR_ARGS),--monitor-args "$(MONITOR_ARGS)")

stack-down: $(STAMP)
	$(PY) -m benchmarks.stack down --root "$(STACK_DIR)"

stack-status: $(STAMP)
	$(PY) -m benchmarks.stack status --root "$(STACK_DIR)"

clean:
	@if [ -x $(PY) ]; then $(PY) -m benchmarks.stack down; fi
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
