"""A local, envtest-style Kubernetes control plane built from upstream sources.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local
processes on loopback; ``python -m tests.controlplane up|down|status|build`` drives it.
"""
