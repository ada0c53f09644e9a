"""The development environment of modeldeploy: images, the local control plane and its real node."""
