"""The real node's network: a bridge of its own on a /24 that no interface of the machine uses
(inside 10.123.0.0/16, apart from kwok's 10.244.0.0/16 and the Service range 10.0.0.0/16), the
CNI configuration that puts pods on it (bridge + host-local IPAM), and the route from pods to the
API server.

The node's IP is the bridge's gateway address (the kubelet refuses a loopback node IP). No
kube-proxy runs here, so the API server's Service address, which in-cluster clients use, is
DNAT-ed to the API server on loopback for traffic entering from this bridge only
(``route_localnet`` on the bridge lets the kernel route it there).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

NODE_SUPERNET = ipaddress.IPv4Network("10.123.0.0/16")
NODE_PREFIX = 24
# The API server's ClusterIP: the first address of its --service-cluster-ip-range.
APISERVER_SERVICE = ("10.0.0.1", 443)
ALLOCATION_LOCK = Path("/run/lock/modeldeploy-node-network.lock")
CNI_RESULTS_DIR = Path("/var/lib/cni/results")


class NodeNetworkError(RuntimeError):
    """The node's network could not be set up; the message names the command."""


@dataclass(frozen=True)
class NodeNetwork:
    bridge: str
    subnet: str
    gateway: str
    cni_network: str

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> NodeNetwork:
        return cls(**data)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeNetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _used_networks() -> list[ipaddress.IPv4Network]:
    interfaces = json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]")
    return [
        ipaddress.IPv4Network(f"{address['local']}/{address['prefixlen']}", strict=False)
        for interface in interfaces
        for address in interface.get("addr_info", [])
    ]


def free_subnet(used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first /24 of the node supernet that overlaps none of ``used``."""
    for candidate in NODE_SUPERNET.subnets(new_prefix=NODE_PREFIX):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise NodeNetworkError(f"every /{NODE_PREFIX} of {NODE_SUPERNET} is in use on this machine")


@contextmanager
def _allocation_lock() -> Iterator[None]:
    ALLOCATION_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with ALLOCATION_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def apiserver_dnat_rule(network: NodeNetwork, apiserver_port: int) -> list[str]:
    """iptables arguments (after ``-t nat -A|-D``) sending the API server's Service address,
    seen from this bridge, to the API server on loopback."""
    service_ip, service_port = APISERVER_SERVICE
    return [
        "PREROUTING", "-i", network.bridge, "-d", f"{service_ip}/32", "-p", "tcp", "--dport", str(service_port),
        "-m", "comment", "--comment", f"modeldeploy {network.cni_network}",
        "-j", "DNAT", "--to-destination", f"127.0.0.1:{apiserver_port}",
    ]  # fmt: skip


def build_cni_conflist(network: NodeNetwork, ipam_dir: Path) -> dict[str, object]:
    """The CNI configuration of the node's pods: pure, from the network and the IPAM state dir."""
    return {
        "cniVersion": "1.0.0",
        "name": network.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.subnet, "gateway": network.gateway}]],
                    # Pods route only their subnet and the API server's Service address, no default.
                    "routes": [{"dst": f"{APISERVER_SERVICE[0]}/32"}],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }


def create_network(node_id: str, apiserver_port: int) -> NodeNetwork:
    """Pick a free subnet and create the bridge on it (under a machine-wide lock, so two clusters
    starting together get different subnets), then route the API server's Service address."""
    bridge = f"mdbr-{node_id[:8]}"
    with _allocation_lock():
        _ip("link", "del", bridge, check=False)  # a leftover of a crashed run with this id
        subnet = free_subnet(_used_networks())
        gateway = str(next(subnet.hosts()))
        _ip("link", "add", "name", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/{NODE_PREFIX}", "dev", bridge)
        _ip("link", "set", bridge, "up")
    network = NodeNetwork(
        bridge=bridge, subnet=str(subnet), gateway=gateway, cni_network=f"modeldeploy-{node_id[:8]}"
    )
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").write_text("1")
    rule = apiserver_dnat_rule(network, apiserver_port)
    result = subprocess.run(
        ["iptables", "-t", "nat", "-A", *rule], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise NodeNetworkError(
            f"iptables could not route the API server's Service address: {result.stderr.strip()}"
        )
    return network


def delete_network(network: NodeNetwork, apiserver_port: int) -> None:
    """Undo ``create_network`` and the CNI result cache of the node's pods; safe to repeat."""
    rule = apiserver_dnat_rule(network, apiserver_port)
    while (
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True, check=False).returncode
        == 0
    ):
        pass
    _ip("link", "del", network.bridge, check=False)
    for cached in CNI_RESULTS_DIR.glob(f"{network.cni_network}-*"):
        cached.unlink(missing_ok=True)
