"""The one component image every KFP step runs in, derived from the package version."""

from components import __version__

IMAGE_REPOSITORY = "ghcr.io/kubeflow-mlops/mlops-python"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
