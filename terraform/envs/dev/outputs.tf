output "serving_namespace" {
  description = "Namespace of the InferenceServices."
  value       = local.serving_namespace
}

output "applied_resources" {
  description = "Resources applied from the kustomize overlay."
  value       = module.serving.resources
}
