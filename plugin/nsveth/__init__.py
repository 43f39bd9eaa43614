"""nsveth: a CNI plugin that wires a pod into the host with a veth pair.

Importing the package is free on purpose: the executable starts once per pod
operation, so everything heavy is imported by the module that needs it.
"""

__version__ = "0.1.0"
