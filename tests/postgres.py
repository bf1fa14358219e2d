"""Start a throwaway PostgreSQL server on localhost for the several-workers tests.

One piece of code for both callers: `.ci/run` runs `python3 tests/postgres.py start DIR` (and
exports the URL it prints as AUTOCLF_TEST_POSTGRES_URL), and the `postgres_url` fixture calls
`start()` itself when that variable is missing. Standard library only: `.ci/run` calls it before
the virtual environment exists. Needs Debian's `postgresql` package (initdb, pg_ctl); as root,
the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DATABASE = "autoclf_test"


def _binary(name: str) -> str:
    """`initdb` from PATH, else from Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as `postgres` then."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


def start(folder: Path) -> str:
    """Initialise a cluster in `folder`, start it on a free localhost port, create the test
    database; returns its SQLAlchemy URL. Raises RuntimeError saying what failed."""
    folder.mkdir(parents=True, exist_ok=True)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    steps = [
        [_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        [
            _binary("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        [_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE],
    ]
    for step in steps:
        done = subprocess.run(_as_server_user(step), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(step[0]).name} failed: {done.stderr.strip()[-500:]}")
    (folder / "url").write_text(f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}")
    return (folder / "url").read_text()


def stop(folder: Path) -> None:
    if (folder / "data").is_dir():
        subprocess.run(
            _as_server_user(
                [_binary("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            check=False,
        )


def wait_until_reachable(url: str, timeout: float = 30.0) -> None:
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(start(where))
    else:
        stop(where)
