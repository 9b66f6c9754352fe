"""Start the test suite's Neo4j: Neo4j Community (``pom.xml``) embedded in a JVM, Bolt on
127.0.0.1, authentication on, a throw-away home folder, a bounded heap.

    python tests/neo4j/launch.py serve             # `make neo4j`: print the URI, run until Ctrl-C
    python tests/neo4j/launch.py run -- CMD ...    # `make test`: CMD with the server's URI set

``run`` starts a server only when ``LINEAGEHUB_TEST_NEO4J_URI`` is unset and Java is present,
exports ``LINEAGEHUB_TEST_NEO4J_URI`` / ``_USER`` / ``_PASSWORD`` for CMD, and stops the
server afterwards. Under ``CI=true`` a server that cannot start is an error, not a skip.

Maven fetches Neo4j once (cached in ``~/.m2``); the classpath and the compiled launcher are
kept in ``target/`` and rebuilt when ``pom.xml`` or the Java source changes. The tests also
import :class:`Neo4jServer` to run servers of their own (restarts, outages).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
SOURCE = HERE / "src" / "main" / "java" / "lineagehub" / "TestNeo4j.java"
TARGET = HERE / "target"
CLASSPATH_FILE = TARGET / "classpath.txt"
CLASSES = TARGET / "classes"
MAIN_CLASS = "lineagehub.TestNeo4j"
HEAP = os.environ.get("LINEAGEHUB_TEST_NEO4J_HEAP", "1g")
# A cold JVM on a loaded 2-core machine takes tens of seconds to open the stores.
START_TIMEOUT_S = float(os.environ.get("LINEAGEHUB_TEST_NEO4J_START_TIMEOUT", "300"))
USER = "neo4j"


class LaunchError(RuntimeError):
    """The server could not be built or started; the message says why."""


def java_missing() -> str | None:
    """Why no server can be started here, or None when Java and Maven are present."""
    for program in ("java", "javac", "mvn"):
        if shutil.which(program) is None:
            return f"`{program}` is not on PATH (the bundled Neo4j needs Java 17 and Maven)"
    return None


def _stale(output: Path, *inputs: Path) -> bool:
    return not output.exists() or any(i.stat().st_mtime > output.stat().st_mtime for i in inputs)


def build() -> str:
    """Resolve Neo4j with Maven and compile the launcher when needed; return the classpath."""
    missing = java_missing()
    if missing:
        raise LaunchError(missing)
    TARGET.mkdir(exist_ok=True)
    if _stale(CLASSPATH_FILE, POM):
        print("neo4j: resolving Neo4j with Maven (cached in ~/.m2) ...", file=sys.stderr)
        proc = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(POM), "dependency:build-classpath",
                f"-Dmdep.outputFile={CLASSPATH_FILE}",
            ],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            CLASSPATH_FILE.unlink(missing_ok=True)
            raise LaunchError(
                "Maven could not resolve Neo4j (see pom.xml for the coordinates):\n"
                + (proc.stdout + proc.stderr)[-4000:]
            )
    classpath = CLASSPATH_FILE.read_text().strip()
    compiled = CLASSES / "lineagehub" / "TestNeo4j.class"
    if _stale(compiled, SOURCE, CLASSPATH_FILE):
        proc = subprocess.run(
            ["javac", "-d", str(CLASSES), "-cp", classpath, str(SOURCE)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LaunchError("javac failed:\n" + proc.stdout + proc.stderr)
    return f"{CLASSES}{os.pathsep}{classpath}"


class Neo4jServer:
    """One Neo4j JVM. ``start()`` returns when Bolt accepts logins; ``stop()`` shuts it down
    cleanly, ``kill()`` as ``kill -9`` would. ``home`` and ``port`` may be given so a stopped
    server can be started again on the same data and address."""

    def __init__(
        self,
        *,
        home: Path | None = None,
        port: int = 0,
        password: str | None = None,
        heap: str = HEAP,
        pagecache_mib: int = 256,
    ) -> None:
        self.password = password or secrets.token_urlsafe(18)
        self.port = port
        self.heap = heap
        self.pagecache_mib = pagecache_mib
        self._own_home = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="lineagehub-neo4j-"))
        self.uri: str | None = None
        self.log_path = self.home.parent / f"{self.home.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def user(self) -> str:
        return USER

    def start(self) -> str:
        """Start the JVM and wait for its Bolt URI; raise :class:`LaunchError` if it dies or
        is not ready within the start timeout."""
        classpath = build()
        uri_file = self.home.parent / f"{self.home.name}.uri"
        uri_file.unlink(missing_ok=True)
        cmd = [
            "java", f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseParallelGC",
            "-cp", classpath, MAIN_CLASS,
            "--home", str(self.home / "neo4j"), "--password", "-",
            "--port", str(self.port), "--uri-file", str(uri_file),
            "--pagecache", str(self.pagecache_mib), "--keep",
        ]  # fmt: skip
        env = {**os.environ, "NEO4J_TEST_PASSWORD": self.password}
        log = self.log_path.open("ab")
        # stdin is a pipe we hold: when this process ends, the server sees EOF and stops.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not uri_file.exists():
            if self._proc.poll() is not None:
                raise LaunchError(
                    f"Neo4j exited with {self._proc.returncode} before it was ready:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            if time.monotonic() > deadline:
                self.kill()
                raise LaunchError(f"Neo4j was not ready within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.2)  # polling for the file the server writes when ready
        self.uri = uri_file.read_text().strip()
        self.port = int(self.uri.rsplit(":", 1)[1])
        return self.uri

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 120) -> None:
        """Shut down cleanly (standard input closed); kill if it does not stop in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stdin:
            proc.stdin.close()

    def cleanup(self) -> None:
        """Stop, and delete the home folder and log if this server made them."""
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
            (self.home.parent / f"{self.home.name}.uri").unlink(missing_ok=True)

    def __enter__(self) -> Neo4jServer:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def _run(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: launch.py run -- CMD ...", file=sys.stderr)
        return 2
    if os.environ.get("LINEAGEHUB_TEST_NEO4J_URI"):
        print("neo4j: using LINEAGEHUB_TEST_NEO4J_URI from the environment", file=sys.stderr)
        return subprocess.call(argv)
    missing = java_missing()
    if missing:
        if os.environ.get("CI"):
            print(f"neo4j: cannot start the test server under CI: {missing}", file=sys.stderr)
            return 1
        print(f"neo4j: not started, {missing}; its tests will skip", file=sys.stderr)
        return subprocess.call(argv)
    server = Neo4jServer()
    try:
        started = time.monotonic()
        uri = server.start()
        print(f"neo4j: {uri} ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        env = {
            **os.environ,
            "LINEAGEHUB_TEST_NEO4J_URI": uri,
            "LINEAGEHUB_TEST_NEO4J_USER": server.user,
            "LINEAGEHUB_TEST_NEO4J_PASSWORD": server.password,
        }
        return subprocess.call(argv, env=env)
    except LaunchError as e:
        print(f"neo4j: {e}", file=sys.stderr)
        return 1
    finally:
        server.cleanup()


def _serve() -> int:
    with Neo4jServer() as server:
        print(f"export LINEAGEHUB_TEST_NEO4J_URI={server.uri}")
        print(f"export LINEAGEHUB_TEST_NEO4J_USER={server.user}")
        print(f"export LINEAGEHUB_TEST_NEO4J_PASSWORD={server.password}")
        print("# Neo4j is running; Ctrl-C stops it and deletes its data.", flush=True)
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return _serve()
    if argv[:1] == ["run"]:
        return _run(argv[1:])
    if argv[:1] == ["build"]:
        build()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
