"""Step logic on DataFrames, paths and estimators. Nothing here imports KFP."""

from components.core import failure

# Every step's body imports this package first: a step that raises leaves its failure for the
# run's notice (a no-op outside KFP's executor).
failure.install()
