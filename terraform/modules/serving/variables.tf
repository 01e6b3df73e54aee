variable "overlay_path" {
  type        = string
  description = "Path of the kustomize overlay to apply (manifests/overlays/<env>)."
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "MLflow server the predictors resolve models:/ URIs from (written into mlops-serving-config)."

  validation {
    condition     = can(regex("^https?://", var.mlflow_tracking_uri))
    error_message = "mlflow_tracking_uri must be an http(s):// URL of an MLflow tracking server."
  }
}

variable "serving_image" {
  type        = string
  description = "Project image (`make image`, serving/Dockerfile) for the predictors, replacing the overlay's default: repository:tag, or repository@sha256:digest to pin the exact image. Only this repository's images pass the InferenceService admission policy."

  validation {
    condition     = can(regex("^[^:@]+(:[0-9]+)?/[^:@]+(:[^:@/]+)?(@sha256:[0-9a-f]{64})?$", var.serving_image))
    error_message = "serving_image must be registry/repository:tag or registry/repository@sha256:<digest>."
  }
}

variable "inference_log_sample_rate" {
  type        = number
  default     = 1
  description = "Share of requests whose rows the predictors' inference log keeps, chosen by request id (1: every request); written into mlops-serving-config as MLOPS_INFERENCE_LOG_SAMPLE. Each record carries it, so monitoring's counts stand for every request."

  validation {
    condition     = var.inference_log_sample_rate > 0 && var.inference_log_sample_rate <= 1
    error_message = "inference_log_sample_rate must be more than 0 and at most 1."
  }
}
