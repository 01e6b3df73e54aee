"""The kinds of pipeline a project has, by name (what compiling, submitting and scheduling use)."""

TRAINING, MONITORING, BATCH_SCORING = "training", "monitoring", "batch-scoring"
KINDS = (TRAINING, MONITORING, BATCH_SCORING)
"""A training pipeline compiles to `<project>.yaml`, any other kind to `<project>-<kind>.yaml`."""
