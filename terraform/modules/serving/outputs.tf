output "resources" {
  description = "Ids of every resource applied from the overlay."
  value       = sort(keys(data.kustomization_overlay.serving.manifests))
}
