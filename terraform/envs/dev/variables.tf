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
  description = "MLflow server the predictors read models from, over TLS on a cluster, e.g. https://mlflow.mlflow.svc.cluster.local."
}

variable "serving_image" {
  type        = string
  description = "Project image (`make image`, serving/Dockerfile), pushed to your registry."
}

variable "install_cert_manager" {
  type        = bool
  description = "Install cert-manager; false on a Kubeflow cluster, which already runs it."
  default     = false
}

variable "inference_log_sample_rate" {
  type        = number
  default     = 1
  description = "Share of requests the predictors' inference log keeps (1: every request)."

  validation {
    condition     = var.inference_log_sample_rate > 0 && var.inference_log_sample_rate <= 1
    error_message = "inference_log_sample_rate must be more than 0 and at most 1."
  }
}
