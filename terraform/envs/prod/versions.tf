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
  # The state holds the Grafana admin password: it lives in an encrypted, access-controlled
  # bucket, never on a laptop or in git. Partial configuration: the settings come at init time,
  #   cp backend.hcl.example backend.hcl   # then edit it (git ignores backend.hcl)
  #   terraform init -backend-config=backend.hcl
  backend "s3" {}
}
