"""`python -m serving --model_name telecom [--model_uri /mnt/models] [--http_port 8080]
[--grpc-port PORT] [--inference_log DIR_OR_URL [--inference_log_sample RATE]]
[--refresh_interval SECONDS] [--serving_stage champion|canary]
[--model_sha256 HEX [--compiled_sha256 HEX] | --allow-unverified-model]
[--api-token-file PATH] [--max_request_bytes BYTES]`.

KServe's own flags (`--http_port`, `--enable_grpc`, ...) are accepted as well. Unlike KServe,
gRPC is off unless a port is given (`--grpc-port`, or KServe's `--grpc_port`): two servers on
one machine would otherwise both try to bind KServe's default 8081.

The model file is checked against its sha256 before it is unpickled (`components.core.loading`); a
model nothing vouches for is refused unless `--allow-unverified-model`; its compiled graph is
checked against `--compiled_sha256` and its version's tag. With an API token
($MLOPS_API_TOKEN or `--api-token-file`), predict, explain and infer need it (`serving.auth`). A
body over `--max_request_bytes` is refused before it is parsed (`serving.limits`).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys

from kserve import model_server
from kserve.logging import logger as kserve_logger
from threadpoolctl import threadpool_limits

from components.core import loading
from components.core.inference_log import ROOT_ENV, SAMPLE_ENV, check_sample_rate
from components.core.loading import SHA256_HEX, ModelLoadError, Verification
from components.core.projects import PROJECTS, get_spec
from serving import metrics
from serving.auth import TOKEN_ENV, TOKEN_FILE_FLAG, TokenError, log_setting, read_token
from serving.inference_log import DEFAULT_MAX_QUEUED, InferenceLogWriter
from serving.limits import DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_FLAG
from serving.predictor import CHAMPION_STAGE, ProjectPredictor
from serving.server import ModelServer

DEFAULT_MODEL_URI = "/mnt/models"
"""Where KServe's storage initializer (serving.fetch on a cluster) puts the model."""
SERVING_STAGES = (CHAMPION_STAGE, "canary")


def _share_kserve_log(name: str) -> None:
    """A library logger's lines (the model loader's) in the server's log, in KServe's format."""
    shared = logging.getLogger(name)
    shared.handlers = list(kserve_logger.handlers)
    shared.setLevel(kserve_logger.level)
    shared.propagate = False


# A copy, so that changing the gRPC defaults leaves KServe's own parser as it is.
parser = argparse.ArgumentParser(
    prog="python -m serving",
    parents=[copy.deepcopy(model_server.parser)],
    description=f"Serve a project's model. --model_name is the project: {', '.join(sorted(PROJECTS))}.",
)
# None: not given. gRPC runs only when a port is.
parser.set_defaults(grpc_port=None, enable_grpc=None)
parser.add_argument(
    "--grpc-port",
    dest="grpc_port",
    type=int,
    help="also serve the v2 protocol over gRPC on this port (default: no gRPC); "
    "the same as --grpc_port",
)
parser.add_argument(
    "--model_uri",
    default=DEFAULT_MODEL_URI,
    help="MLflow model directory, or models:/NAME@ALIAS or models:/NAME/VERSION "
    "(read from MLFLOW_TRACKING_URI)",
)
parser.add_argument(
    "--model_version",
    default=None,
    help="version to report in mlops_model_info for a model directory "
    "(registry URIs carry their own; default: unknown)",
)
parser.add_argument(
    "--inference_log",
    default=os.environ.get(ROOT_ENV, ""),
    help="folder or fsspec URL (s3://...) where every answered prediction row is logged "
    f"(default: ${ROOT_ENV}; empty: no log)",
)
parser.add_argument(
    "--inference_log_sample",
    type=float,
    default=os.environ.get(SAMPLE_ENV) or "1",
    metavar="RATE",
    help="share of requests whose rows the inference log keeps, chosen by request id; each "
    f"record carries it (default: ${SAMPLE_ENV}, else 1: every request)",
)
parser.add_argument(
    "--inference_log_queue",
    type=int,
    default=DEFAULT_MAX_QUEUED,
    help="rows the log may hold in memory before it drops new ones (default: %(default)s)",
)
parser.add_argument(
    "--serving_stage",
    choices=SERVING_STAGES,
    default=CHAMPION_STAGE,
    help="what this server's model is in a rollout, as its log rows and metrics name it: "
    "the champion, or a canary KServe routes a share of the requests to (default: %(default)s)",
)
parser.add_argument(
    "--refresh_interval",
    type=float,
    default=0.0,
    help="with models:/NAME@ALIAS, seconds between registry checks; a new version the alias "
    "names is loaded and swapped in (default: 0, never)",
)

parser.add_argument(
    "--model_sha256",
    default=None,
    metavar="HEX",
    help="sha256 the model file must have (the registration's model_file_sha256); "
    "checked before it is unpickled, as is a registry version's model_file_sha256 tag",
)
parser.add_argument(
    "--compiled_sha256",
    default=None,
    metavar="HEX",
    help="sha256 the model's compiled graph must have (the registration's "
    "compiled_model_sha256); a model without that graph is refused",
)
parser.add_argument(
    "--allow-unverified-model",
    dest="allow_unverified_model",
    action="store_true",
    help="serve a model whose file no digest vouches for (no --model_sha256 and no registry "
    "tag), with a warning; a digest that does not match is refused all the same",
)
parser.add_argument(
    MAX_REQUEST_FLAG,
    dest="max_request_bytes",
    type=int,
    default=DEFAULT_MAX_REQUEST_BYTES,
    metavar="BYTES",
    help="largest request body read; a larger one is answered 413 before it is parsed "
    "(default: %(default)s)",
)
parser.add_argument(
    TOKEN_FILE_FLAG,
    dest="api_token_file",
    default=None,
    metavar="PATH",
    help="file holding the bearer token that predict, explain and infer require (its content, "
    f"stripped); or set ${TOKEN_ENV}. Without either, no token is required",
)


def _grpc_wanted(args: argparse.Namespace) -> bool:
    """gRPC on when a port is given; contradictory or incomplete flags are an error."""
    if args.grpc_port is None:
        if args.enable_grpc:
            parser.error("--enable_grpc true needs a port: add --grpc-port PORT")
        return False
    if args.enable_grpc is False:
        parser.error("--grpc-port and --enable_grpc false contradict each other: drop one")
    if not 0 < args.grpc_port < 65536:
        parser.error(f"--grpc-port must be a TCP port (1-65535), got {args.grpc_port}")
    if args.grpc_port == args.http_port:
        parser.error(f"--grpc-port and --http_port are both {args.http_port}: give two ports")
    return True


def _pinned_digest(flag: str, given: str | None) -> str | None:
    """The digest a flag pins, in lower case, or None without the flag; anything but 64
    hexadecimal digits stops the server."""
    if not given:
        return None
    digest = given.strip().lower()
    if not SHA256_HEX.match(digest):
        parser.error(f"{flag} must be 64 hexadecimal digits, got {given!r}")
    return digest


def main(argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    if args.model_name not in PROJECTS:
        parser.error(
            f"unknown project {args.model_name!r}; --model_name is one of {sorted(PROJECTS)}"
        )
    if args.inference_log_queue < 1:
        parser.error("--inference_log_queue must be at least 1")
    try:
        check_sample_rate(args.inference_log_sample, "--inference_log_sample")
    except ValueError as exc:
        parser.error(str(exc))
    if args.max_request_bytes < 1:
        parser.error(f"{MAX_REQUEST_FLAG} must be a positive number of bytes")
    if args.refresh_interval < 0:
        parser.error("--refresh_interval must be 0 (off) or a number of seconds")
    if args.serving_stage != CHAMPION_STAGE and args.refresh_interval > 0:
        parser.error(
            f"--serving_stage {args.serving_stage} serves one version: it follows no alias "
            "(drop --refresh_interval)"
        )
    grpc = _grpc_wanted(args)
    metrics.watch_gc()
    # One request at a time: OpenMP's thread team (histogram boosting in sklearn, which
    # explanations call) would only spin against itself on the core or two a server is given.
    threadpool_limits(1)
    try:
        token = read_token(args.api_token_file)
    except TokenError as exc:
        parser.error(str(exc))
    if token is not None:
        if grpc:
            parser.error(
                "--grpc-port with an API token: the gRPC port would answer without it; "
                "serve HTTP only (drop --grpc-port)"
            )
        if "authorization" in (args.access_log_format or "").lower():
            parser.error("--access_log_format would write the Authorization header to the log")
    expected = _pinned_digest("--model_sha256", args.model_sha256)
    compiled = _pinned_digest("--compiled_sha256", args.compiled_sha256)
    log = None
    if args.inference_log:
        whole = [c.name for c in get_spec(args.model_name).columns if c.dtype == "int"]
        log = InferenceLogWriter(
            args.inference_log,
            args.model_name,
            whole_columns=whole,
            max_queued=args.inference_log_queue,
            sample_rate=args.inference_log_sample,
        ).start()
    model = ProjectPredictor(
        args.model_name,
        args.model_uri,
        args.model_version,
        inference_log=log,
        refresh_interval=args.refresh_interval,
        serving_stage=args.serving_stage,
        verification=Verification(
            expected,
            require=not args.allow_unverified_model,
            expected_compiled_sha256=compiled,
        ),
    )
    server = ModelServer(
        http_port=args.http_port,
        **({"grpc_port": args.grpc_port} if grpc else {}),
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    )
    try:
        log_setting(token, args.api_token_file)  # after ModelServer() has set up the logging
        _share_kserve_log(loading.__name__)
        server.serve_while_loading(model, token, args.max_request_bytes)
    except ModelLoadError as exc:
        print(f"error: cannot serve {args.model_name}: {exc}", file=sys.stderr)
        return 1
    finally:
        model.close()  # KServe's stop() usually has; what the log still holds is written
    return 0


if __name__ == "__main__":
    sys.exit(main())
