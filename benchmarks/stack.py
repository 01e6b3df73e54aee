"""The parts a cluster has, on 127.0.0.1: `make stack`, `make stack-down`, `make stack-status`.

- PostgreSQL (Debian `postgresql`) holding MLflow's runs and registry;
- an S3 API standing in for S3 or MinIO: moto's server mode (PyPI `moto[server]`, in the dev
  lock), since no MinIO server installs here. moto keeps objects in memory, so the stack has it
  journal every request to `s3/requests.jsonl` and replays the journal at the next start;
- `mlflow server` on PostgreSQL, its artifacts proxied into `s3://mlflow` (clients hold no key);
- Pushgateway, Alertmanager and Prometheus (Debian packages), Prometheus loading the project's
  alert rules and sending its alerts to Alertmanager, which routes the action alerts to
- the alert receiver (pipelines/alert_receiver.py), which starts `<project>-monitoring`.

Everything lives under one folder (`.state/stack` by default): a second `up` reuses what is
there and leaves running services alone. `up` writes `stack.mk` and `env.sh`, the environment
that points the product at the stack (`make ... STACK=1` reads the first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import yaml

from grafana import local
from grafana.alertmanager import alertmanager_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO_ROOT / ".state" / "stack"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REGION = "us-east-1"
PLACEHOLDER_KEY = "stack-placeholder"
"""moto checks no signature: the keys only have to exist, and nothing real is in them."""
MLFLOW_BUCKET = "mlflow"
DATA_BUCKET = "mlops"
INFERENCE_LOG = f"s3://{DATA_BUCKET}/inference"
DATABASE = "mlflow"


@dataclass(frozen=True)
class Ports:
    postgres: int = 5433
    s3: int = 9000
    mlflow: int = 5000
    pushgateway: int = 9091
    alertmanager: int = 9093
    receiver: int = 9095
    prometheus: int = 9090

    @classmethod
    def parse(cls, text: str, base: Ports | None = None) -> Ports:
        """`name=port,...` over `base`: `mlflow=5001,s3=9001`."""
        given: dict[str, int] = {}
        names = {f.name for f in fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, port = item.partition("=")
            if not sep or name not in names or not port.isdigit():
                raise ValueError(
                    f"ports: expected NAME=PORT with NAME one of {', '.join(sorted(names))}, "
                    f"got {item!r}"
                )
            given[name] = int(port)
        return cls(**(asdict(base or cls()) | given))


@dataclass(frozen=True)
class Receiver:
    """How the stack's alert receiver gates and starts monitoring runs."""

    cooldown_s: float = 6 * 3600.0
    daily_budget: int = 4
    monitor_args: str = ""
    command: str = ""
    """Replaces `python -m pipelines.monitor` (tests only)."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    command: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], None] | None = None
    started: Callable[[], None] | None = None
    """Runs once the service is ready after a fresh start (not when it was already running)."""
    package: str = ""
    """The Debian package of its binary, named when the binary is missing at start."""

    @property
    def url(self) -> str:
        scheme = "postgresql" if self.name == "postgres" else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


class StackError(RuntimeError):
    pass


def _http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is no service: its parent (a test's process) has not reaped it yet.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


class Stack:
    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        ports: Ports | None = None,
        rules: Path = local.RULES,
        interval: str = "5s",
        receiver: Receiver | None = None,
        postgres_root: Path | None = None,
        mlflow_workers: int = 2,
    ) -> None:
        self.root = root.resolve()
        # The `postgres` user must reach it: as root, not under a folder only root may enter.
        self.postgres_root = postgres_root or self.root / "postgres"
        self.mlflow_workers = mlflow_workers
        saved = self._saved()
        self.ports = ports or Ports(**saved.get("ports", {}))
        self.rules = rules
        self.interval = interval
        self.receiver = receiver or Receiver(**saved.get("receiver", {}))

    # -- what the product is given ------------------------------------------------------

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports.mlflow}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def pushgateway(self) -> str:
        return f"127.0.0.1:{self.ports.pushgateway}"

    def s3_env(self) -> dict[str, str]:
        """What an S3 client (botocore, so s3fs too) reads to reach the object store."""
        return {
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": PLACEHOLDER_KEY,
            "AWS_SECRET_ACCESS_KEY": PLACEHOLDER_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client_env(self) -> dict[str, str]:
        """The environment that points `make run`, `serve`, `monitor`, `score` at the stack."""
        return self.s3_env() | {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLOPS_INFERENCE_LOG": INFERENCE_LOG,
            "PUSHGATEWAY": self.pushgateway,
        }

    # -- the services -------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def services(self) -> list[Service]:
        """In start order; each needs only those before it."""
        return [
            self._postgres(),
            self._object_store(),
            self._mlflow(),
            self._pushgateway(),
            self._alert_receiver(),
            self._alertmanager(),
            self._prometheus(),
        ]

    def service(self, name: str) -> Service:
        for service in self.services():
            if service.name == name:
                return service
        raise StackError(f"no service {name!r}: one of {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [f.name for f in fields(Ports)]

    def _postgres(self) -> Service:
        folder, data = self.postgres_root, self.postgres_root / "data"
        port = self.ports.postgres

        def prepare() -> None:
            if not (PG_BIN / "postgres").is_file():
                raise StackError("PostgreSQL is not installed: apt-get install postgresql")
            folder.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres", "postgres")
            if not (data / "PG_VERSION").is_file():
                _run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                   "-A", "trust"]))  # fmt: skip

        def ready() -> bool:
            return (
                subprocess.run(
                    [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            )

        def started() -> None:
            exists = subprocess.run(
                [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            if not exists:
                _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                      "postgres", DATABASE])  # fmt: skip

        command = _as_postgres(
            [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
             "-k", str(folder)]
        )  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM waits for every client to leave.
        return Service("postgres", port, command, ready, {}, signal.SIGINT, prepare, started)

    def backend_uri(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.ports.postgres}/{DATABASE}"

    def _object_store(self) -> Service:
        journal = self._path("s3", "requests.jsonl")
        port = self.ports.s3

        def prepare() -> None:
            journal.parent.mkdir(parents=True, exist_ok=True)

        def started() -> None:
            if journal.is_file() and journal.stat().st_size:
                answer = httpx.post(
                    f"{self.s3_url}/moto-api/recorder/replay-recording", timeout=600.0
                )
                if answer.status_code != 200:
                    raise StackError(f"the object store's journal did not replay: {answer.text}")
            existing = {bucket["Name"] for bucket in self.s3_client().list_buckets()["Buckets"]}
            for bucket in {MLFLOW_BUCKET, DATA_BUCKET} - existing:
                self.s3_client().create_bucket(Bucket=bucket)

        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        env = {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(journal)}
        return Service(
            "s3", port, command, _http_ok(self.s3_url), env, signal.SIGTERM, prepare, started
        )

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=REGION,
            aws_access_key_id=PLACEHOLDER_KEY,
            aws_secret_access_key=PLACEHOLDER_KEY,
        )

    def _mlflow(self) -> Service:
        command = [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", self.backend_uri(),
            "--artifacts-destination", f"s3://{MLFLOW_BUCKET}",
            "--host", "127.0.0.1", "--port", str(self.ports.mlflow),
            "--workers", str(self.mlflow_workers),
        ]  # fmt: skip
        env = self.s3_env() | {"MLFLOW_S3_ENDPOINT_URL": self.s3_url}
        return Service(
            "mlflow", self.ports.mlflow, command, _http_ok(f"{self.tracking_uri}/health"), env
        )

    def _pushgateway(self) -> Service:
        folder = self._path("pushgateway")
        port = self.ports.pushgateway
        command = [
            "prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={folder / 'pushgateway.data'}",
            "--persistence.interval=30s",
        ]
        return Service(
            "pushgateway", port, command, _http_ok(f"http://127.0.0.1:{port}/-/ready"),
            prepare=lambda: folder.mkdir(parents=True, exist_ok=True),
            package="prometheus-pushgateway",
        )  # fmt: skip

    def _alert_receiver(self) -> Service:
        folder = self._path("receiver")
        port = self.ports.receiver
        command = [
            sys.executable, "-m", "pipelines.alert_receiver",
            "--host", "127.0.0.1", "--port", str(port),
            "--state-dir", str(folder), "--mode", "local",
            "--cooldown-s", f"{self.receiver.cooldown_s:g}",
            "--daily-budget", str(self.receiver.daily_budget),
        ]  # fmt: skip
        if self.receiver.monitor_args:
            command.append(f"--monitor-args={self.receiver.monitor_args}")
        if self.receiver.command:
            command.append(f"--command={self.receiver.command}")
        env = self.client_env() | {"MLOPS_STATE_DIR": str(self._path("state"))}
        return Service(
            "receiver", port, command, _http_ok(f"http://127.0.0.1:{port}/healthz"), env,
            prepare=lambda: folder.mkdir(parents=True, exist_ok=True),
        )  # fmt: skip

    def _alertmanager(self) -> Service:
        folder = self._path("alertmanager")
        port = self.ports.alertmanager
        config = folder / "alertmanager.yml"

        def prepare() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            receiver_url = f"http://127.0.0.1:{self.ports.receiver}/alerts"
            config.write_text(
                yaml.safe_dump(
                    alertmanager_config(receiver_url, group_wait="5s", group_interval="30s")
                )
            )

        command = [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # A lone Alertmanager: no cluster peers to gossip with.
            "--cluster.listen-address=",
        ]
        return Service(
            "alertmanager", port, command, _http_ok(f"http://127.0.0.1:{port}/-/ready"),
            prepare=prepare, package="prometheus-alertmanager",
        )  # fmt: skip

    def _prometheus(self) -> Service:
        folder = self._path("prometheus")
        port = self.ports.prometheus
        config = folder / "prometheus.yml"

        def prepare() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            targets = folder / "targets.json"
            if not targets.is_file():
                targets.write_text("[]")
            config.write_text(
                yaml.safe_dump(
                    local.prometheus_config(
                        {},
                        interval=self.interval,
                        pushgateway=self.pushgateway,
                        targets_file=targets,
                        alertmanager=f"127.0.0.1:{self.ports.alertmanager}",
                        rules=self.rules,
                    )
                )
            )

        command = local.command(config, folder / "data", f"127.0.0.1:{port}")
        return Service(
            "prometheus", port, command, _http_ok(f"http://127.0.0.1:{port}/-/ready"),
            prepare=prepare, package="prometheus",
        )  # fmt: skip

    def scrape(self, targets: Iterable[tuple[str, str]]) -> Path:
        """Has Prometheus scrape `targets` ((project, host:port), replicas repeat the project)
        from now on; it rereads the file by itself."""
        path = self._path("prometheus", "targets.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole, then renamed: Prometheus may read the file at any moment
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(local.file_targets(list(targets)), indent=2))
        partial.replace(path)
        return path

    # -- running them -------------------------------------------------------------------

    def _saved(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.root / "stack.json").read_text()))
        except FileNotFoundError:
            return {}

    def _save(self, pids: dict[str, int]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"ports": asdict(self.ports), "receiver": asdict(self.receiver), "pids": pids}
        (self.root / "stack.json").write_text(json.dumps(record, indent=2))

    def _pids(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._saved().get("pids", {}).items()}

    def running(self, name: str) -> int | None:
        """The pid of `name` when the stack started it and it still runs."""
        pid = self._pids().get(name)
        return pid if pid is not None and _alive(pid) else None

    def up(self, only: Sequence[str] = (), timeout: float = 120.0) -> None:
        """Starts what does not run yet (all, or `only`), each ready before the next."""
        pids = self._pids()
        self._save(pids)
        for service in self.services():
            if only and service.name not in only:
                continue
            if self.running(service.name) is not None and service.ready():
                continue
            pids[service.name] = self._start(service, timeout)
            self._save(pids)
        self._write_env()

    def _start(self, service: Service, timeout: float) -> int:
        # Checked here, not where the commands are built: stopping or listing the stack must
        # work where a part it does not use is not installed.
        if service.package and shutil.which(service.command[0]) is None:
            raise StackError(
                f"{service.command[0]} is not installed: apt-get install {service.package}"
            )
        if _listening(service.port):
            raise StackError(
                f"{service.name}: port {service.port} is taken by another process "
                f"(choose another: PORTS={service.name}=<port>)"
            )
        if service.prepare is not None:
            service.prepare()
        log_path = self._path("logs", f"{service.name}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | {"MLFLOW_DISABLE_TELEMETRY": "true"} | service.env
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO_ROOT), env.get("PYTHONPATH"))))
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                service.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not service.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self._signal(process.pid, signal.SIGKILL)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise StackError(f"{service.name} did not start (log {log_path}):\n{tail}")
            time.sleep(0.2)
        if service.started is not None:
            service.started()
        return process.pid

    @staticmethod
    def _signal(pid: int, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, number)

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """Stops `name` (its whole process group); False when it was not running."""
        pid = self.running(name)
        if pid is None:
            return False
        self._signal(pid, self.service(name).stop_signal)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            self._signal(pid, signal.SIGKILL)
        pids = self._pids()
        pids.pop(name, None)
        self._save(pids)
        return True

    def down(self) -> list[str]:
        """Stops every service, last started first; the data stays. Returns what it stopped."""
        return [s.name for s in reversed(self.services()) if self.stop(s.name)]

    def restart(self, name: str) -> None:
        self.stop(name)
        self.up(only=[name])

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for service in self.services():
            pid = self.running(service.name)
            state = "down" if pid is None else ("up" if service.ready() else "not ready")
            rows.append({"service": service.name, "url": service.url, "pid": pid, "state": state})
        return rows

    def _write_env(self) -> None:
        env = self.client_env()
        (self.root / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
        make = [f"export {k} := {v}" for k, v in env.items()]
        # The make variables that default from these, set before the Makefile's own defaults.
        make += [f"INFERENCE_LOG := {INFERENCE_LOG}", f"PUSHGATEWAY := {self.pushgateway}"]
        (self.root / "stack.mk").write_text("\n".join(make) + "\n")


def _as_postgres(command: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"{' '.join(command[:3])} failed: {done.stderr.strip()}")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _print_status(stack: Stack) -> None:
    rows = stack.status()
    print(f"{'service':<14}{'state':<11}{'pid':<9}url")
    for row in rows:
        print(f"{row['service']:<14}{row['state']:<11}{row['pid'] or '-'!s:<9}{row['url']}")
    print(f"\ndata under {stack.root}; the product's environment: {stack.root / 'env.sh'}")
    print("make run|serve|traffic|monitor|score|app STACK=1 uses it")


def _parse_target(text: str) -> tuple[str, str]:
    project, sep, address = text.partition("=")
    if not sep or ":" not in address:
        raise argparse.ArgumentTypeError(f"expected PROJECT=HOST:PORT, got {text!r}")
    return project, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status", "scrape"))
    parser.add_argument("targets", nargs="*", type=_parse_target, help="scrape: PROJECT=HOST:PORT")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--ports", default="", help="NAME=PORT,... (up: saved for the others)")
    parser.add_argument("--cooldown-s", type=float, default=None)
    parser.add_argument("--daily-budget", type=int, default=None)
    parser.add_argument("--monitor-args", default=None)
    args = parser.parse_args(argv)
    stack = Stack(args.root)
    try:
        if args.action == "up":
            stack.ports = Ports.parse(args.ports, stack.ports)
            stack.receiver = Receiver(
                cooldown_s=stack.receiver.cooldown_s
                if args.cooldown_s is None
                else args.cooldown_s,
                daily_budget=stack.receiver.daily_budget
                if args.daily_budget is None
                else args.daily_budget,
                monitor_args=stack.receiver.monitor_args
                if args.monitor_args is None
                else args.monitor_args,
            )
            if args.targets:
                stack.scrape(args.targets)
            stack.up()
            _print_status(stack)
        elif args.action == "down":
            stopped = stack.down()
            print(f"stopped {', '.join(stopped) or 'nothing'}; the data stays in {stack.root}")
        elif args.action == "scrape":
            print(f"Prometheus scrapes {args.targets} ({stack.scrape(args.targets)})")
        else:
            _print_status(stack)
    except (StackError, ValueError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
