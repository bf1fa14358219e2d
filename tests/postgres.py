"""The tests' throwaway PostgreSQL server: deploy/postgres.py, the server the local-cluster recipe
starts, so the tests and the recipe run one piece of code.

Two callers: `.ci/run` runs `python3 tests/postgres.py start DIR` (and exports the URL it prints
as AUTOCLF_TEST_POSTGRES_URL), and the `postgres_url` fixture calls `start()` itself when that
variable is missing. Standard library only: `.ci/run` calls it before the virtual environment
exists.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_FILE = Path(__file__).resolve().parents[1] / "deploy" / "postgres.py"
_spec = importlib.util.spec_from_file_location("autoclf_deploy_postgres", _FILE)
assert _spec is not None and _spec.loader is not None, _FILE
server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(server)

binary = server.binary
start = server.start
stop = server.stop
running = server.running
wait_until_reachable = server.wait_until_reachable

if __name__ == "__main__":
    sys.exit(server.main(sys.argv[1:]))
