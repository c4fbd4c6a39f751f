"""promtool from Debian's `prometheus` package, fetched and unpacked into `.cache/promtool/`
of the checkout (git ignores it): `apt-get download` (after `apt-get update` if the package
is unknown), then `dpkg-deb -x`. Nothing is installed or started. Run as a module to use it
by hand: `python -m tests.monitoring.promtool check rules deploy/monitoring/prometheus/rules/*`.
"""

import fcntl
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "promtool"
BINARY = CACHE / "root" / "usr" / "bin" / "promtool"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)


def _download() -> Path:
    """The package file in the cache, downloaded if it is not there yet."""
    for attempt in range(2):
        done = _run("apt-get", "download", "prometheus", cwd=CACHE)
        if done.returncode == 0:
            break
        if attempt == 0:
            # A fresh machine has no package lists yet.
            _run("apt-get", "update")
    else:
        raise RuntimeError(f"apt-get download prometheus failed:\n{done.stderr[-2000:]}")
    found = sorted(CACHE.glob("prometheus_*.deb"))
    if not found:
        raise RuntimeError("apt-get download prometheus left no package file")
    return found[-1]


def promtool() -> Path:
    """The promtool binary, unpacked on first use; safe when several processes ask at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not BINARY.is_file():
            package = next(iter(sorted(CACHE.glob("prometheus_*.deb"))), None) or _download()
            unpacked = _run("dpkg-deb", "-x", str(package), str(CACHE / "root"))
            if unpacked.returncode != 0 or not BINARY.is_file():
                raise RuntimeError(f"dpkg-deb -x {package.name} failed:\n{unpacked.stderr}")
    return BINARY


if __name__ == "__main__":
    sys.exit(subprocess.run([str(promtool()), *sys.argv[1:]], check=False).returncode)
