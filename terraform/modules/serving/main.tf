# Applies a kustomize overlay of manifests/ as it is, with three site settings patched in: the
# MLflow server, the inference log's sample rate and the model server image (into the
# InferenceServices and the storage initializer, and its repository into the parameters of the
# InferenceService admission policy, which refuses any other image).
# Resources go in three waves (namespaces and CRDs first), as the kustomization provider
# recommends.

locals {
  # registry/path/image of "registry/path/image:tag" or "registry/path/image@sha256:...".
  image_repository = replace(split("@", var.serving_image)[0], "/:[^:/]+$/", "")
}

data "kustomization_overlay" "serving" {
  resources = [var.overlay_path]

  patches {
    target {
      kind = "ConfigMap"
      name = "mlops-serving-config"
    }
    patch = jsonencode([
      { op = "replace", path = "/data/MLFLOW_TRACKING_URI", value = var.mlflow_tracking_uri },
      { op = "replace", path = "/data/MLOPS_INFERENCE_LOG_SAMPLE", value = tostring(var.inference_log_sample_rate) },
    ])
  }

  patches {
    target {
      kind = "ConfigMap"
      name = "mlops-admission-params"
    }
    patch = jsonencode([
      { op = "replace", path = "/data/imageRepository", value = local.image_repository },
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

  # The storage initializer that fetches and verifies the models runs the same image.
  patches {
    target {
      group = "serving.kserve.io"
      kind  = "ClusterStorageContainer"
    }
    patch = jsonencode([
      { op = "replace", path = "/spec/container/image", value = var.serving_image },
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
