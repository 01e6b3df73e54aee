variable "kubeconfig_path" {
  type        = string
  description = "kubeconfig file of the target cluster."
  default     = "~/.kube/config"
}

variable "kube_context" {
  type        = string
  description = "kubeconfig context of the target cluster."
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "MLflow server the predictors read models from, e.g. http://mlflow.mlflow.svc:5000."
}

variable "serving_image" {
  type        = string
  description = "Project image (`make image`, serving/Dockerfile), pushed to your registry."
}

variable "grafana_admin_password" {
  type        = string
  description = "Initial Grafana admin password."
  sensitive   = true
}

variable "install_cert_manager" {
  type        = bool
  description = "Install cert-manager; false on a Kubeflow cluster, which already runs it."
  default     = false
}
