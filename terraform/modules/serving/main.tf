# Applies a kustomize overlay of manifests/ as it is, with two site settings patched in: the
# MLflow server and the model server image. Resources go in three waves (namespaces and CRDs
# first), as the kustomization provider recommends.

data "kustomization_overlay" "serving" {
  resources = [var.overlay_path]

  patches {
    target {
      kind = "ConfigMap"
      name = "mlops-serving-config"
    }
    patch = jsonencode([
      { op = "replace", path = "/data/MLFLOW_TRACKING_URI", value = var.mlflow_tracking_uri },
    ])
  }

  patches {
    target {
      group = "serving.kserve.io"
      kind  = "InferenceService"
    }
    patch = jsonencode([
      { op = "replace", path = "/spec/predictor/containers/0/image", value = var.serving_image },
    ])
  }
}

resource "kustomization_resource" "first" {
  for_each = data.kustomization_overlay.serving.ids_prio[0]
  manifest = data.kustomization_overlay.serving.manifests[each.value]
}

resource "kustomization_resource" "second" {
  for_each   = data.kustomization_overlay.serving.ids_prio[1]
  manifest   = data.kustomization_overlay.serving.manifests[each.value]
  depends_on = [kustomization_resource.first]
}

resource "kustomization_resource" "third" {
  for_each   = data.kustomization_overlay.serving.ids_prio[2]
  manifest   = data.kustomization_overlay.serving.manifests[each.value]
  depends_on = [kustomization_resource.second]
}
