"""The Kubernetes bindings of the pipelines' tasks: which Secrets a task reads, as environment
variables. Every one is optional, so the same compiled pipeline runs where they are absent."""

from kfp import kubernetes
from kfp.dsl import PipelineTask

from components.core.deploy import (
    MLFLOW_SECRET,
    MLFLOW_SECRET_KEYS,
    NOTIFY_SECRET,
    NOTIFY_SECRET_KEY,
)
from components.core.notice import URL_ENV


def use_mlflow_credentials(task: PipelineTask) -> None:
    """On a cluster, the MLflow credentials Secret as environment variables (optional: a store
    without credentials needs none)."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=MLFLOW_SECRET,
        secret_key_to_env={key: key for key in MLFLOW_SECRET_KEYS},
        optional=True,
    )


def use_notify_url(task: PipelineTask) -> None:
    """On a cluster, the webhook URL from its Secret (optional: without it no notice is sent).
    A Secret, not a pipeline parameter: parameters show in the KFP UI, and the URL carries a
    token."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=NOTIFY_SECRET,
        secret_key_to_env={NOTIFY_SECRET_KEY: URL_ENV},
        optional=True,
    )
