output "kserve_version" {
  description = "KServe chart version installed."
  value       = helm_release.kserve.version
}

output "grafana_service" {
  description = "Grafana's Service (namespace/name), when monitoring is installed here."
  value       = var.install_monitoring ? "${var.monitoring_namespace}/kube-prometheus-stack-grafana" : null
}
