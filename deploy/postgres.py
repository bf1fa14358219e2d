"""A throwaway PostgreSQL server on localhost, from Debian's server binaries (no Docker, no root
set-up, no system service): what `deploy/local-cluster.sh` runs its workers against, and what the
tests use for their PostgreSQL study storage (`tests/postgres.py` imports this file).

    python3 deploy/postgres.py start DIR [DATABASE]   # prints the SQLAlchemy URL
    python3 deploy/postgres.py stop DIR

`start` initialises a cluster in DIR/data (once: a second `start` on the same DIR restarts it
with its studies, on a new port), starts it on a free 127.0.0.1 port with its log in
DIR/server.log, creates DATABASE (default `autoclf`) and writes the URL to DIR/url. It trusts
every local connection and runs with `fsync=off`: a disposable server for one machine, never one
to keep data you cannot recompute. Standard library only, so that it runs before any virtual
environment exists. Needs Debian's `postgresql` package (initdb, pg_ctl, createdb, on PATH or
under /usr/lib/postgresql/<version>/bin); as root, the server runs as the `postgres` user, so DIR
and the folders above it must be reachable by that user (a folder under /tmp is).
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

DATABASE = "autoclf"


def binary(name: str) -> str:
    """`name` (initdb, pg_ctl, …) from PATH, else the newest of Debian's
    /usr/lib/postgresql/<version>/bin. Raises RuntimeError saying how to install it."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} not found on PATH or under /usr/lib/postgresql/*/bin: "
            "install Debian's server package (apt-get install postgresql)"
        )
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


def _run(step: list[str], *, tolerate: str | None = None) -> None:
    done = subprocess.run(_as_server_user(step), capture_output=True, text=True, check=False)
    if done.returncode != 0 and not (tolerate and tolerate in done.stderr):
        said = (done.stderr or done.stdout).strip()[-500:]
        raise RuntimeError(f"{Path(step[0]).name} failed (exit {done.returncode}): {said}")


def start(folder: Path, database: str = DATABASE) -> str:
    """Start the server of `folder` (initialising it first if new) and create `database`;
    returns its SQLAlchemy URL. Raises RuntimeError saying which step failed and why."""
    folder.mkdir(parents=True, exist_ok=True)
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    if not (data / "PG_VERSION").exists():
        _run([binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
    port = _free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = folder / "server.log"
    _run([binary("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"])
    host = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    _run([binary("createdb"), *host, database], tolerate="already exists")
    url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
    (folder / "url").write_text(url)
    return url


def stop(folder: Path) -> None:
    """Stop the server of `folder` if it runs (a fast shutdown: sessions are ended, the data
    is left consistent, and `start` can bring it back)."""
    if (folder / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user(
                [binary("pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]
            ),
            capture_output=True,
            check=False,
        )


def running(folder: Path) -> bool:
    """Whether the server of `folder` is up (`pg_ctl status`)."""
    if not (folder / "data").is_dir():
        return False
    done = subprocess.run(
        _as_server_user([binary("pg_ctl"), "-D", str(folder / "data"), "status"]),
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def wait_until_reachable(url: str, timeout: float = 30.0) -> None:
    """Block until the server of `url` accepts TCP connections; OSError after `timeout` s."""
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


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in ("start", "stop"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    folder = Path(argv[1]).resolve()
    try:
        if argv[0] == "start":
            print(start(folder, *argv[2:]))
        else:
            stop(folder)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
