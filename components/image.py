"""The one project image, tagged with the package version: every KFP step runs in it (KFP sets
the command) and so does the model server (its entrypoint). Built from serving/Dockerfile
(`make image`)."""

from components import __version__

IMAGE_REPOSITORY = "ghcr.io/kubeflow-mlops/mlops-python"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
