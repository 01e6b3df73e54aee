"""Finding, verifying, loading and checking a project model: an MLflow sklearn model directory.
The model server and the batch scoring steps load through here, so both check the same things.

The directory is what the pipelines' register step writes and what a KServe storage URI downloads
into /mnt/models: the fitted pipeline (cloudpickle) and, as the input example, 50 raw training
rows that serve as the SHAP background. `models:/NAME@ALIAS` and `models:/NAME/VERSION` are read
from the registry at MLFLOW_TRACKING_URI.

Unpickling runs whatever code the file names, so the model file's sha256 is checked first,
against `--model_sha256` and the registry version's `model_file_sha256` tag (set by the register
step). A file that matches neither is never unpickled; one that nobody vouches for is refused
unless the caller allows it (`Verification.require`). The compiled graph, which answers in the
model's place, is checked the same way: against `--compiled_sha256` and the version's
`compiled_model_sha256` tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core import compiled as compiled_graph
from components.core import model_uri
from components.core.compiled import CompiledModel
from components.core.lineage import file_sha256
from components.core.spec import ProjectSpec
from components.core.train import single_threaded

UNKNOWN = "unknown"
FETCHED_NOTE = "registered-version.json"
"""Written by the storage initializer (`serving.fetch`) beside the model it fetched: which
registered version it is, so that the server checks the file against that version's tags."""
DIGEST_TAG = "model_file_sha256"
"""The model version tag holding the model file's sha256 (the register step's
`components.core.registry.MODEL_FILE_DIGEST_TAG`)."""
COMPILED_DIGEST_TAG = "compiled_model_sha256"
"""The model version tag holding the ONNX graph's sha256 (set by the register step)."""
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SKLEARN_FLAVOR = "sklearn"

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model at the URI cannot be served; the message names the URI and the cause."""


class ModelVerificationError(ModelLoadError):
    """The model file is not the one expected, or nothing says which one is."""


@dataclass(frozen=True)
class Verification:
    """How the model file is checked before it is unpickled."""

    expected_sha256: str | None = None
    """The digest the file must have (`--model_sha256`), besides the registry version's tag."""
    require: bool = False
    """Refuse a model when no digest is known (no `expected_sha256`, no tag); else warn."""
    expected_from: str = "--model_sha256"
    """Where `expected_sha256` comes from, as errors and log lines name it."""
    expected_compiled_sha256: str | None = None
    """The digest the compiled graph must have (`--compiled_sha256`), besides the version's
    tag; with it, a model without its graph is refused too."""


UNCHECKED_WHEN_UNKNOWN = Verification()
"""The library default: verify when a digest is known, warn when none is (the server's command
line refuses that case unless --allow-unverified-model)."""


@dataclass(frozen=True)
class Provenance:
    uri: str
    version: str
    run_id: str


@dataclass
class LoadedModel:
    model: Any
    background: pd.DataFrame
    provenance: Provenance
    threshold: float | None
    """Decision threshold of a binary model (P(positive) >= threshold predicts the positive class)."""
    single_threaded: int
    """How many estimators had `n_jobs` set to 1."""
    reference_class_share: dict[str, float] | None = None
    """Class shares the model predicted on its held-out test split, when the register step
    stored them (models registered before that have none)."""
    model_file_sha256: str = ""
    """sha256 of the model file that was unpickled."""
    compiled: CompiledModel | None = None
    """The version's verified ONNX graph, when registration produced one: `output` runs it."""
    compiled_note: str = "no compiled graph"
    """Why the compiled graph serves, or why it does not."""

    def output(self, spec: ProjectSpec, frame: pd.DataFrame) -> np.ndarray:
        """The task's output of the model: through the compiled graph when there is one."""
        if self.compiled is not None:
            return self.compiled.output(frame)
        return spec.task.model_output(self.model, frame)


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import mlflow.sklearn

    return mlflow


def registry_version(uri: str) -> Any:
    """The MLflow ModelVersion that `models:/NAME@ALIAS` or `models:/NAME/VERSION` names now."""
    parts = model_uri.parse(uri)
    if parts is None:
        raise ModelLoadError(f"cannot load model from {uri}: {model_uri.EXPECTED}")
    client = _mlflow().MlflowClient()
    if parts.alias:
        return client.get_model_version_by_alias(parts.name, parts.alias)
    return client.get_model_version(parts.name, parts.version)


def registry_provenance(uri: str) -> tuple[str, str]:
    """(version, run id) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    found = registry_version(uri)
    return str(found.version), str(found.run_id or UNKNOWN)


def resolve(uri: str, version: str | None) -> tuple[Path, Provenance, dict[str, str]]:
    """A local model directory for the URI (downloaded for registry URIs), where it came from,
    and its registry version's tags ({} for a directory)."""
    mlflow = _mlflow()
    if uri.startswith(model_uri.MODELS_SCHEME):
        found = registry_version(uri)
        name, resolved = str(found.name), str(found.version)
        # the version resolved above, not the alias again: it may have moved meanwhile
        pinned = f"{model_uri.MODELS_SCHEME}{name}/{resolved}"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned))
        return (
            local,
            Provenance(uri, resolved, str(found.run_id or UNKNOWN)),
            dict(found.tags or {}),
        )
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"cannot load model from {uri}: no such directory")
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(
            f"cannot load model from {uri}: no MLmodel file there (expected an MLflow model directory)"
        )
    fetched = fetched_version(path)
    if fetched is not None:
        # What the storage initializer fetched: the registry, not the note, vouches for it.
        name, number = fetched
        try:
            found = _mlflow().MlflowClient().get_model_version(name, number)
        except Exception as exc:  # the version's tags are the digests the file must have
            raise ModelLoadError(
                f"cannot load model from {uri}: it was fetched as version {number} of {name}, "
                f"whose registry entry cannot be read: {type(exc).__name__}: {exc}"
            ) from exc
        fetched_from = f"{model_uri.MODELS_SCHEME}{name}/{number} in {uri}"
        provenance = Provenance(fetched_from, number, str(found.run_id or UNKNOWN))
        return path, provenance, dict(found.tags or {})
    run_id = mlflow.models.Model.load(str(path)).run_id
    return path, Provenance(uri, version or UNKNOWN, run_id or UNKNOWN), {}


def fetched_version(path: Path) -> tuple[str, str] | None:
    """(registered name, version) of a model directory the storage initializer
    (`serving.fetch`) wrote, from its FETCHED_NOTE; None for any other directory."""
    note = path / FETCHED_NOTE
    if not note.is_file():
        return None
    try:
        fetched = json.loads(note.read_text())
        name, number = str(fetched["name"]), str(fetched["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot load model from {path}: {FETCHED_NOTE} is unreadable: {exc}"
        ) from exc
    if not number.isdigit() or not name:
        raise ModelLoadError(
            f"cannot load model from {path}: {FETCHED_NOTE} names version {number!r} of {name!r}"
        )
    return name, number


def model_file(path: Path, description: Any, uri: str) -> Path:
    """The file `mlflow.sklearn.load_model` unpickles. A model that would also put code of its
    own on the import path is refused: the digest covers the model file, not that code."""
    flavor = (description.flavors or {}).get(SKLEARN_FLAVOR)
    if not isinstance(flavor, dict) or not flavor.get("pickled_model"):
        raise ModelLoadError(f"cannot load model from {uri}: its MLmodel has no sklearn flavor")
    if flavor.get("code"):
        raise ModelVerificationError(
            f"cannot serve model from {uri}: its MLmodel adds code paths ({flavor['code']!r}) "
            "to the import path, which this server does not run"
        )
    return path / str(flavor["pickled_model"])


def verify(
    uri: str, file: Path, provenance: Provenance, tagged: str | None, verification: Verification
) -> str:
    """Checks the model file against every digest known for it; returns the file's digest."""
    found = file_sha256(file)
    expected = [
        (verification.expected_from, verification.expected_sha256),
        (f"the {DIGEST_TAG} tag of version {provenance.version}", tagged),
    ]
    known = [(source, digest.strip().lower()) for source, digest in expected if digest]
    for source, digest in known:
        if digest != found:
            raise ModelVerificationError(
                f"cannot serve model from {uri}: {file.name} has sha256 {found}, expected "
                f"{digest} ({source}); a file that is not the one expected is never unpickled"
            )
    if known:
        logger.info(
            "model file %s of %s verified: sha256 %s (%s)",
            file.name,
            uri,
            found,
            ", ".join(source for source, _ in known),
        )
    elif verification.require:
        unknown = (
            f"version {provenance.version} has no {DIGEST_TAG} tag"
            if uri.startswith(model_uri.MODELS_SCHEME)
            else "a model directory has no registry tag"
        )
        raise ModelVerificationError(
            f"cannot serve model from {uri}: no sha256 to check {file.name} against (no "
            f"--model_sha256, and {unknown}; the file's is {found}): pass the digest recorded "
            "when it was registered as --model_sha256, or --allow-unverified-model to serve "
            "it unchecked"
        )
    else:
        logger.warning(
            "serving model from %s UNVERIFIED: no sha256 to check %s against; its sha256 is %s",
            uri,
            file.name,
            found,
        )
    return found


def decision_threshold(spec: ProjectSpec, model: Any, uri: str) -> float | None:
    if not spec.task.probabilistic:
        return None
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError(
            f"cannot serve model from {uri}: {spec.name} is a binary task but "
            f"{type(model).__name__} has no predict_proba"
        )
    classes = [int(c) for c in getattr(model, "classes_", [])]
    if classes != [0, 1]:
        raise ModelLoadError(
            f"cannot serve model from {uri}: expected classes [0, 1], got {classes}"
        )
    return compiled_graph.threshold_of(model)


def load(
    spec: ProjectSpec,
    uri: str,
    version: str | None = None,
    verification: Verification = UNCHECKED_WHEN_UNKNOWN,
    threads: int = 1,
) -> LoadedModel:
    """Verifies, loads and checks the model (and its compiled graph, run on `threads` cores: one
    for a server answering a request at a time); any problem is a ModelLoadError naming the URI
    and cause (a ModelVerificationError when the model file is not the expected one)."""
    mlflow = _mlflow()
    try:
        path, provenance, tags = resolve(uri, version)
        description = mlflow.models.Model.load(str(path))
        tagged = tags.get(DIGEST_TAG) or None
        digest = verify(uri, model_file(path, description, uri), provenance, tagged, verification)
        model = mlflow.sklearn.load_model(str(path))
        background = description.load_input_example(str(path))
        reference = (description.metadata or {}).get("reference_class_share")
    except ModelLoadError:
        raise
    except Exception as exc:  # whatever broke while reading the model, the server cannot start
        raise ModelLoadError(
            f"cannot load model for {spec.name} from {uri}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(background, pd.DataFrame):
        raise ModelLoadError(
            f"cannot serve model from {uri}: the model has no input example; the register step "
            "stores 50 raw training rows there as the SHAP background"
        )
    missing = [c for c in spec.input_columns if c not in background.columns]
    if missing:
        raise ModelLoadError(
            f"cannot serve model from {uri} as {spec.name}: its input example lacks the "
            f"columns {missing} (is it another project's model?)"
        )
    threshold = decision_threshold(spec, model, uri)
    changed = single_threaded(model)
    background = background[spec.input_columns]
    graph, note = load_compiled(
        spec,
        uri,
        path,
        model,
        background,
        tags.get(COMPILED_DIGEST_TAG),
        threads,
        verification.expected_compiled_sha256,
    )
    return LoadedModel(
        model, background, provenance, threshold, changed, reference, digest, graph, note
    )


def load_compiled(
    spec: ProjectSpec,
    uri: str,
    path: Path,
    model: Any,
    background: pd.DataFrame,
    tagged: str | None,
    threads: int = 1,
    pinned: str | None = None,
) -> tuple[CompiledModel | None, str]:
    """The version's ONNX graph, checked: its sha256 against `pinned` (`--compiled_sha256`) and
    the version's tag, or, when neither is known (a directory served unpinned), against its
    record; a mismatch refuses the whole model, as for the model file. Then its outputs against
    the sklearn pipeline's on the background rows: a graph that fails that check is not used
    (logged), and the sklearn pipeline serves."""
    graph_path = f"{compiled_graph.FOLDER}/{compiled_graph.GRAPH_FILE}"
    try:
        found = compiled_graph.read(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot serve model from {uri}: its {compiled_graph.FOLDER}/"
            f"{compiled_graph.RECORD_FILE} is unreadable: {type(exc).__name__}: {exc}"
        ) from exc
    if found is None:
        if pinned:
            raise ModelVerificationError(
                f"cannot serve model from {uri}: --compiled_sha256 names a compiled graph, but "
                f"the model has no {graph_path}: it is not the model that was pinned"
            )
        return None, "no compiled graph: the sklearn pipeline serves"
    graph, record = found
    digest = hashlib.sha256(graph).hexdigest()
    vouched = [("--compiled_sha256", pinned), (f"the {COMPILED_DIGEST_TAG} tag", tagged)]
    known = [(source, value.strip().lower()) for source, value in vouched if value]
    for source, expected in known or [("its compiled.json", record.graph_sha256.strip().lower())]:
        if digest != expected:
            raise ModelVerificationError(
                f"cannot serve model from {uri}: {graph_path} has sha256 {digest}, expected "
                f"{expected} ({source})"
            )
    try:
        candidate = CompiledModel(spec, model, graph, threads)
        check = compiled_graph.agreement(spec, model, candidate, background)
    except Exception as exc:  # the graph is an accelerator: without it the pipeline still serves
        logger.warning("compiled graph of %s not used: %s: %s", uri, type(exc).__name__, exc)
        return None, f"compiled graph not used: {type(exc).__name__}: {exc}"
    if not check.matches:
        logger.warning("compiled graph of %s not used: %s", uri, check.text())
        return None, f"compiled graph not used: {check.text()}"
    return candidate, f"{record.runtime} graph ({record.input_dtype} inputs), {check.text()}"
