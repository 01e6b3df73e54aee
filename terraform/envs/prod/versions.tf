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
  # Keep state remote in a shared setup, for example:
  # backend "s3" { bucket = "<bucket>", key = "kubeflow-mlops/prod.tfstate", region = "<region>" }
}
