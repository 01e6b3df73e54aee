"""KFP v2 components: typed wrappers that import the project package inside their bodies.

They run unchanged under `kfp.local.SubprocessRunner(use_venv=False)`, where the package is
installed in the running venv, and on a cluster, where the component image carries it.
"""

from components.steps.deploy import deploy
from components.steps.drift import drift
from components.steps.evaluate import evaluate
from components.steps.explain import explain
from components.steps.features import features
from components.steps.ingest import ingest
from components.steps.market import market
from components.steps.monitor import check, collect, compact_log, publish, rollout
from components.steps.notify import notify
from components.steps.register import register
from components.steps.retrain import prepare_retraining
from components.steps.score import drift_check, merge, resolve, score, split, validate_rows
from components.steps.train import train
from components.steps.validate import validate

__all__ = [
    "check",
    "collect",
    "compact_log",
    "deploy",
    "drift",
    "drift_check",
    "evaluate",
    "explain",
    "features",
    "ingest",
    "market",
    "merge",
    "notify",
    "prepare_retraining",
    "publish",
    "register",
    "resolve",
    "rollout",
    "score",
    "split",
    "train",
    "validate",
    "validate_rows",
]
