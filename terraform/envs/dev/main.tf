# A shared development cluster: KServe and monitoring, then manifests/overlays/dev.

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
  # The overlay's namespace: manifests/overlays/dev/kustomization.yaml.
  serving_namespace = "kubeflow-mlops-dev"
}

module "platform" {
  source               = "../../modules/platform"
  install_cert_manager = var.install_cert_manager
  # The dev overlay has no monitoring component.
  install_monitoring  = false
  install_pushgateway = false
}

module "serving" {
  source                    = "../../modules/serving"
  overlay_path              = "${path.module}/../../../manifests/overlays/dev"
  mlflow_tracking_uri       = var.mlflow_tracking_uri
  serving_image             = var.serving_image
  inference_log_sample_rate = var.inference_log_sample_rate
  depends_on                = [module.platform]
}
