"""Runs in the bundle before PyInstaller's bootstrap script (build.sh puts it there).

The bootstrap imports ctypes on every start to install PyInstaller's
library-lookup hooks (pyimod03_ctypes), ~3 ms of CPU, and a plugin-mode
client that hands its request to a warm server never uses ctypes. While
ctypes is marked unimportable here, that installer skips itself (it does so
whenever ctypes cannot be imported). nsveth.main lifts the mark first thing
and installs the hooks before anything that may use ctypes runs (the
in-process path, the CLI, the server).
"""

import sys

sys.modules["ctypes"] = None
