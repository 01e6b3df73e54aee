"""Dashboards over a project's listings, registered champion and running predictor."""
