# Production: KServe and monitoring, then manifests/overlays/prod (2 to 6 replicas, alerts, dashboard).

provider "helm" {
  kubernetes {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context
  }
}

provider "kustomization" {
  kubeconfig_path = pathexpand(var.kubeconfig_path)
  context         = var.kube_context
}

locals {
  # The overlay's namespace: manifests/overlays/prod/kustomization.yaml.
  serving_namespace = "kubeflow-mlops"
}

module "platform" {
  source                 = "../../modules/platform"
  install_cert_manager   = var.install_cert_manager
  grafana_admin_password = var.grafana_admin_password
}

module "serving" {
  source                    = "../../modules/serving"
  overlay_path              = "${path.module}/../../../manifests/overlays/prod"
  mlflow_tracking_uri       = var.mlflow_tracking_uri
  serving_image             = var.serving_image
  inference_log_sample_rate = var.inference_log_sample_rate
  depends_on                = [module.platform]
}
