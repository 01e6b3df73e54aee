"""KServe's storage initializer for registry URIs: `python -m serving.fetch URI DEST [URI DEST...]`.

KServe runs it as the init container of a predictor whose STORAGE_URI is `models:/NAME@ALIAS` or
`models:/NAME/VERSION` (the ClusterStorageContainer `mlops-model-registry`, written by
components/core/deploy.py), with the URI and /mnt/models as arguments. It resolves the URI to one
version, downloads that version's model into DEST, and checks the model file against the
version's `model_file_sha256` tag before the server ever sees it: a file that is not the one
registered stops the pod here, and DEST is left empty. Beside the model it writes which version
it is (`components.core.loading.FETCHED_NOTE`), so that the server checks the file again against
that version's tags, read from the registry, not from the note.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from components.core import loading, model_uri
from components.core.loading import (
    DIGEST_TAG,
    FETCHED_NOTE,
    ModelLoadError,
    Provenance,
    Verification,
)


class FetchError(RuntimeError):
    """A registry URI that cannot be fetched; the message names the URI and the cause."""


def _empty(directory: Path) -> None:
    """What a failed fetch leaves: the directory, with nothing in it the server could load."""
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def fetch(uri: str, dest: Path) -> Provenance:
    """Downloads the version `uri` names into `dest` and verifies its model file against the
    version's digest tag; returns what was fetched. Raises FetchError, leaving `dest` empty."""
    parts = model_uri.parse(uri)
    if parts is None:
        raise FetchError(f"cannot fetch {uri!r}: {model_uri.EXPECTED}")
    try:
        found = loading.registry_version(uri)
    except Exception as exc:  # the registry's own error names what is missing
        raise FetchError(
            f"cannot fetch {uri}: the registry at {os.environ.get('MLFLOW_TRACKING_URI') or '?'} "
            f"does not resolve it: {type(exc).__name__}: {exc}"
        ) from exc
    name, version = str(found.name), str(found.version)
    pinned = f"{model_uri.MODELS_SCHEME}{name}/{version}"
    tags = dict(found.tags or {})
    dest.mkdir(parents=True, exist_ok=True)
    if any(child.name != ".download" for child in dest.iterdir()):
        raise FetchError(f"cannot fetch {uri} into {dest}: it is not empty")
    import mlflow

    try:
        mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(dest))
        description = mlflow.models.Model.load(str(dest))
        provenance = Provenance(uri, version, str(found.run_id or loading.UNKNOWN))
        # Only a version whose digest was recorded when it was registered is fetched.
        loading.verify(
            uri,
            loading.model_file(dest, description, uri),
            provenance,
            tags.get(DIGEST_TAG) or None,
            Verification(require=True),
        )
    except ModelLoadError as exc:
        _empty(dest)
        raise FetchError(str(exc)) from exc
    except Exception as exc:  # a download or a model directory that did not arrive whole
        _empty(dest)
        raise FetchError(
            f"cannot fetch {pinned} ({uri}) into {dest}: {type(exc).__name__}: {exc}"
        ) from exc
    (dest / FETCHED_NOTE).write_text(json.dumps({"name": name, "version": version, "uri": uri}))
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.fetch", description=__doc__)
    parser.add_argument("pairs", nargs="+", metavar="URI DEST", help="registry URI, directory")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error(f"expected pairs of URI and directory, got {len(args.pairs)} arguments")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    scratch = os.environ.get("TMPDIR")
    if scratch:  # KServe's volume is empty at first: the temporary files' folder must exist
        Path(scratch).mkdir(parents=True, exist_ok=True)
    for uri, dest in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        try:
            got = fetch(uri, Path(dest))
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(Path(dest) / ".download", ignore_errors=True)
        print(f"fetched {uri}: version {got.version} (run {got.run_id}) into {dest}, verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
