# What the serving side needs from the cluster: KServe (raw deployments, no Knative), the
# Prometheus operator with Grafana, whose dashboard sidecar loads the dashboard ConfigMap of
# manifests/components/monitoring, and the Pushgateway that the monitoring runs push to. The
# serving namespace itself belongs to the kustomize overlay.
#
# Every release pins its chart version and fetches it over TLS, and no secret goes through
# `values` or `set` (plan output and logs show them): secrets use `set_sensitive`. Checkov's
# own checks do not look into helm_release; tests/cluster/checkov_policies checks these rules
# (`make check-manifests`).

resource "helm_release" "cert_manager" {
  count            = var.install_cert_manager ? 1 : 0
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.cert_manager_version
  namespace        = "cert-manager"
  create_namespace = true

  set {
    name  = "crds.enabled"
    value = "true"
  }
}

resource "helm_release" "kserve_crd" {
  name             = "kserve-crd"
  repository       = "oci://ghcr.io/kserve/charts"
  chart            = "kserve-crd"
  version          = var.kserve_version
  namespace        = "kserve"
  create_namespace = true
  depends_on       = [helm_release.cert_manager]
}

# KServe publishes two charts (v0.17.0 to v0.21.0 at least), kserve-crd and kserve-resources (the controller);
# there is no chart named `kserve`.
resource "helm_release" "kserve" {
  name       = "kserve"
  repository = "oci://ghcr.io/kserve/charts"
  chart      = "kserve-resources"
  version    = var.kserve_version
  namespace  = "kserve"

  # Plain Deployments, no Knative (KServe's Standard mode; the InferenceServices ask for it too).
  set {
    name  = "kserve.controller.deploymentMode"
    value = "Standard"
  }

  depends_on = [helm_release.kserve_crd]
}

resource "helm_release" "kube_prometheus_stack" {
  count            = var.install_monitoring ? 1 : 0
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_version
  namespace        = var.monitoring_namespace
  create_namespace = true

  values = [yamlencode({
    prometheus = {
      prometheusSpec = {
        # Pick up the PodMonitor and PrometheusRule of every namespace, not only the release's.
        podMonitorSelectorNilUsesHelmValues     = false
        ruleSelectorNilUsesHelmValues           = false
        serviceMonitorSelectorNilUsesHelmValues = false
      }
    }
    alertmanager = {
      alertmanagerSpec = {
        # The AlertmanagerConfig of the alert receiver (manifests/components/alert-receiver)
        # routes alerts aggregated by project, which carry no `namespace` label: the default
        # strategy (OnNamespace) would route only alerts labelled with the config's namespace.
        alertmanagerConfigMatcherStrategy = { type = "None" }
      }
    }
    grafana = {
      sidecar = {
        dashboards = {
          enabled         = true
          label           = "grafana_dashboard"
          searchNamespace = "ALL"
        }
      }
    }
  })]

  # Kept out of `values`, which plans and logs print; it still lands in the Terraform state,
  # hence the encrypted remote backend (terraform/envs/prod/versions.tf).
  set_sensitive {
    name  = "grafana.adminPassword"
    value = var.grafana_admin_password
  }
}

# The Pushgateway the monitoring runs push their figures to (job mlops-monitoring, one group per
# project). The release name makes the Service `prometheus-pushgateway`, port `http`, which the
# ServiceMonitor of manifests/components/monitoring scrapes with honorLabels; the chart's own
# ServiceMonitor stays off so that nothing scrapes it twice.
resource "helm_release" "pushgateway" {
  count            = var.install_pushgateway ? 1 : 0
  name             = "prometheus-pushgateway"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "prometheus-pushgateway"
  version          = var.pushgateway_version
  namespace        = var.monitoring_namespace
  create_namespace = true

  values = [yamlencode({
    serviceMonitor = { enabled = false }
    # Without a volume a restart forgets every push until each project's next run.
    persistentVolume = { enabled = var.pushgateway_persistence }
  })]
}
