output "serving_namespace" {
  description = "Namespace of the InferenceServices."
  value       = local.serving_namespace
}

output "applied_resources" {
  description = "Resources applied from the kustomize overlay."
  value       = module.serving.resources
}

output "grafana_service" {
  description = "Grafana's Service (namespace/name)."
  value       = module.platform.grafana_service
}

output "pushgateway_address" {
  description = "Pushgateway host:port for the monitoring pipelines' `pushgateway` parameter."
  value       = module.platform.pushgateway_address
}
