terraform {
  required_version = ">= 1.5"
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9"
    }
  }
  # Local state by default. On a shared cluster keep it remote and encrypted, as prod does:
  # uncomment the block and run `terraform init -backend-config=backend.hcl`, with a
  # backend.hcl made from ../prod/backend.hcl.example (key kubeflow-mlops/dev.tfstate).
  # backend "s3" {}
}
