"""Step logic on DataFrames, paths and estimators. Nothing here imports KFP."""
