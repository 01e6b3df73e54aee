"""One Kubeflow pipeline per project, composed from the shared components with the project's spec."""
