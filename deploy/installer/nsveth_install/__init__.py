"""nsveth-install: puts the nsveth bundle and its conflist onto a Kubernetes node.

Runs in the DaemonSet pod (deploy/nsveth-daemonset.yaml) with the node's CNI
directories mounted from the host. Standard library only, so the image needs
nothing but a Python interpreter.
"""

__version__ = "0.1.0"


class InstallError(Exception):
    """A failure the operator must act on; the CLI prints it without a traceback."""
