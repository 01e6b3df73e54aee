variable "monitoring_namespace" {
  type        = string
  description = "Namespace of Prometheus, Alertmanager and Grafana."
  default     = "monitoring"
}

variable "cert_manager_version" {
  type        = string
  description = "cert-manager chart version; KServe's webhooks need its certificates."
  default     = "v1.16.2"
}

variable "kserve_version" {
  type        = string
  description = "KServe chart version (charts kserve-crd and kserve-resources); v0.20.0 or later: the InferenceServices' canaries need spec.canary."
  default     = "v0.21.0"
}

variable "kube_prometheus_stack_version" {
  type        = string
  description = "prometheus-community/kube-prometheus-stack chart version (Prometheus operator, Grafana)."
  default     = "66.3.1"
}

variable "install_cert_manager" {
  type        = bool
  description = "Install cert-manager; false when the cluster already runs it (Kubeflow installs it)."
  default     = true
}

variable "install_monitoring" {
  type        = bool
  description = "Install kube-prometheus-stack; false when the cluster already has a Prometheus operator."
  default     = true
}

variable "install_pushgateway" {
  type        = bool
  description = "Install the Prometheus Pushgateway that the monitoring runs push their figures to."
  default     = true
}

variable "pushgateway_version" {
  type        = string
  description = "prometheus-community/prometheus-pushgateway chart version."
  default     = "2.15.0"
}

variable "pushgateway_persistence" {
  type        = bool
  description = "Keep the pushed figures on a PersistentVolume (needs a default StorageClass) so that a Pushgateway restart does not forget them."
  default     = false
}

variable "grafana_admin_password" {
  type        = string
  description = "Initial Grafana admin password; required when install_monitoring is true. Pass it as TF_VAR_grafana_admin_password (from a secret manager), never in a tfvars file."
  sensitive   = true
  default     = null

  validation {
    condition     = !var.install_monitoring || try(length(var.grafana_admin_password) >= 8, false)
    error_message = "grafana_admin_password of at least 8 characters is required when install_monitoring is true."
  }
}
