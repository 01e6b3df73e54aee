"""The model server: one KServe predictor for every project, parameterised by its spec.

`python -m serving --model_name telecom --model_uri /mnt/models` serves the MLflow model directory
(or `models:/telecom@champion`) on KServe's v1 and v2 HTTP routes, with schema validation, SHAP
explanations, readiness that waits for the model, and Prometheus metrics. See docs/serving.md.
"""
