"""modeldeploy's Kubernetes operator."""
