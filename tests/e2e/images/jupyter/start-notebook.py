#!/usr/bin/env python3
"""Start JupyterLab the way the jupyter role expects of its image.

The hooks in /usr/local/bin/before-notebook.d/ run first (in name order, *.sh sourced
by one shell so that what they export reaches the server), then `jupyter lab` replaces
that shell with the arguments given to this script. The token comes from $JUPYTER_TOKEN,
which Jupyter Server reads itself.
"""

import os
import shlex
import sys
from pathlib import Path

HOOKS = Path("/usr/local/bin/before-notebook.d")


def main() -> None:
    hooks = sorted(p for p in HOOKS.glob("*.sh") if p.is_file()) if HOOKS.is_dir() else []
    server = ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", *sys.argv[1:]]
    script = "".join(f". {shlex.quote(str(hook))}\n" for hook in hooks)
    script += "exec " + shlex.join(server) + "\n"
    os.execvp("bash", ["bash", "-euc", script])


if __name__ == "__main__":
    main()
