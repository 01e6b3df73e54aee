output "kserve_version" {
  description = "KServe chart version installed."
  value       = helm_release.kserve.version
}

output "grafana_service" {
  description = "Grafana's Service (namespace/name), when monitoring is installed here."
  value       = var.install_monitoring ? "${var.monitoring_namespace}/kube-prometheus-stack-grafana" : null
}

output "pushgateway_address" {
  description = "host:port that the monitoring pipelines push to (their `pushgateway` parameter), when installed here."
  value       = var.install_pushgateway ? "prometheus-pushgateway.${var.monitoring_namespace}.svc:9091" : null
}
