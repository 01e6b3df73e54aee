"""Monitoring as code: the serving dashboard and the alerting rules (`python -m grafana`)."""
