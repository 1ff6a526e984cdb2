"""Process lifetime of a real ``pbrf run``: Ctrl-C, SIGTERM, SIGKILL and a lost server.

Each test starts ``pbrf run`` (smoke scale, two variants) as a subprocess in a session of its
own, as a terminal would, and signals it the way a user, ``timeout``/``kill`` or a batch
scheduler does. Every wait is a bounded poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pipeline_fixtures import smoke_config
from repo_root import REPO

from tasks.engine import manifest
from tasks.engine.plan import build_plan

VARIANTS = "retrain.variants=[warm,pbrf]"
ARGV = ["run", "digits-mlp", "--scale", "smoke", "--set", VARIANTS]
LONG = ["--set", "train.epochs=100000"]  # base training takes minutes: still running when hit

pytestmark = [
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc"),
    pytest.mark.slow,  # real pbrf processes and Prefect servers, interrupted
]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture
def start(prefect_home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``pbrf run … --out OUT`` in a new session; whatever is left is killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def run(out: Path, *extra: str, argv: list[str] = ARGV) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(prefect_home),
            "PBRF_PROGRESS": "0",
            "PBRF_THREADS": "1",
        }
        env.pop("PREFECT_API_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *argv, *extra, "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        left = [*children(proc.pid), *([proc.pid] if proc.poll() is None else [])]
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        proc.communicate()


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as ended)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] == str(pid):
            out.append(int(entry.name))
    return out


def group_empties(pgid: int, seconds: float = 3.0) -> bool:
    """The process group has no live member within ``seconds``: a member SIGKILLed or reading
    EOF (the resource tracker) as ``pbrf`` exits may take a few milliseconds to be gone."""
    deadline = time.monotonic() + seconds
    while group(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group(pgid)


def group(pgid: int) -> list[int]:
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit()
        and (stat := _stat(int(e.name)))
        and stat[2] == str(pgid)
        and stat[0] != "Z"
    ]


def server_of(proc: subprocess.Popen[str]) -> int | None:
    for pid in children(proc.pid):
        try:
            if b"flows.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def wait_for(what: str, ready: Callable[[], object], proc: subprocess.Popen[str], limit: float):
    """Poll ``ready`` every 0.1 s for ``limit`` seconds; fail if ``proc`` ends first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if value := ready():
            return value
        if proc.poll() is not None:
            pytest.fail(f"pbrf exited ({proc.returncode}) before {what}: {proc.communicate()[1]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {limit} s")


def ended(proc: subprocess.Popen[str], limit: float) -> tuple[int, float, list[str], str]:
    """Exit status, seconds until exit, the non-empty stderr lines and stdout."""
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=limit)
    lines = [x for x in err.splitlines() if x.strip()]
    return proc.returncode, time.monotonic() - t0, lines, out


def finished(out: Path, node: str) -> Callable[[], bool]:
    return lambda: (out / ".pbrf" / "nodes" / f"{node}.json").is_file()


def test_ctrl_c_exits_130_at_once_leaves_no_process_and_a_rerun_resumes(start, tmp_path):
    out = tmp_path / "run"
    proc = start(out)
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    wait_for("a finished step", finished(out, "prepare"), proc, 240)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground group
    code, seconds, lines, _ = ended(proc, 20)
    assert code == 130 and seconds < 10, (code, seconds, lines)
    assert lines[-1].startswith("pbrf: interrupted by SIGINT: "), lines
    assert "steps finished (prepare" in lines[-1] and "rerun the same command" in lines[-1]
    assert len(lines) == 2, lines  # the start banner and this line
    assert group_empties(proc.pid) and not alive(server)
    # what the line calls finished is what a rerun reuses; the rest was cancelled
    plan = build_plan(smoke_config(retrain__variants=["warm", "pbrf"]).model_dump(mode="json"))
    done = lines[-1].split("finished (", 1)[1].split(")", 1)[0].split(", ")
    assert all(manifest.status(out, plan[n]).current for n in done), done
    # and nothing more: the line is counted after the steps that were finishing are done
    assert sorted(n.id for n in plan if manifest.status(out, n).current) == sorted(done), done
    assert "report" not in done and len(done) < len(plan.nodes)
    # the rerun reuses them, finishes, and stops its own server on a normal exit
    again = start(out)
    server = wait_for("temporary server", lambda: server_of(again), again, 240)
    code, _, lines, table = ended(again, 600)
    assert code == 0, lines
    node_table = table.strip().split("\n\n")[0]  # the node table, before the summary's tables
    rows = [row.split() for row in node_table.splitlines()]
    states = {r[0]: r[1] for r in rows if len(r) > 1 and r[0] in plan.nodes}
    assert all(states[n] == "Cached" for n in done), (done, table)
    assert states["report"] == "Completed", table
    assert not alive(server) and group_empties(again.pid)


def holder(out: Path) -> int | None:
    try:
        return json.loads((out / ".pbrf" / "lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_sigterm_ends_run_and_server_and_a_second_run_is_refused(start, tmp_path):
    out = tmp_path / "run"
    proc = start(out, *LONG)
    wait_for("the run directory's lock", lambda: holder(out) == proc.pid, proc, 240)
    second = subprocess.run(
        [sys.executable, "-m", "flows.cli", *ARGV, *LONG, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert second.returncode == 1, second.stderr
    assert second.stderr.strip().count("\n") == 0, second.stderr
    assert f"{out} is being written by pid {proc.pid}" in second.stderr
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    wait_for("a finished step", finished(out, "prepare"), proc, 240)
    os.kill(proc.pid, signal.SIGTERM)  # what kill, timeout and batch schedulers send
    code, seconds, lines, _ = ended(proc, 20)
    assert code == 143 and seconds < 10, (code, seconds, lines)
    assert lines[-1].startswith("pbrf: interrupted by SIGTERM: "), lines
    assert "train_base" not in lines[-1].split("finished")[1], lines  # it was running
    assert not alive(server) and group_empties(proc.pid)


@pytest.mark.parametrize(
    "argv",
    [
        ["grade", "digits-mlp", "--scale", "smoke", "--estimators", "grad_dot"],
        ["hessian", "digits-mlp", "--scale", "smoke"],
        ["sweep", "fig5-damping", "--scale", "smoke"],
    ],
    ids=["grade", "hessian", "sweep"],
)
def test_ctrl_c_stops_grade_hessian_and_sweep_as_it_stops_run(start, tmp_path, argv):
    out = tmp_path / "run"
    proc = start(out, *LONG, argv=argv)
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    wait_for("the run directory's lock", lambda: holder(out) == proc.pid, proc, 240)
    # the flow has started once it wrote a run's config (out, out/gnh or out/points/ID)
    wait_for("a run's config", lambda: any(out.rglob("config.json")), proc, 240)
    os.killpg(proc.pid, signal.SIGINT)
    code, seconds, lines, _ = ended(proc, 20)
    assert code == 130 and seconds < 10, (code, seconds, lines)
    assert lines[-1].startswith("pbrf: interrupted by SIGINT: "), lines
    assert "rerun the same command to resume" in lines[-1], lines
    assert group_empties(proc.pid) and not alive(server)


def test_sigkill_takes_the_server_with_it_and_its_record_is_swept(
    start, tmp_path, prefect_home, monkeypatch
):
    from flows.server import sweep_orphans

    proc = start(tmp_path / "run", *LONG)
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server), "the temporary server outlived pbrf"
    record = prefect_home / "pbrf-servers" / f"{server}.json"
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    sweep_orphans()
    assert not record.exists()


def test_a_lost_server_is_one_line_and_a_prompt_exit(start, tmp_path):
    out = tmp_path / "run"
    proc = start(out, *LONG)
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    wait_for("a finished step", finished(out, "prepare"), proc, 240)
    os.killpg(server, signal.SIGKILL)
    code, seconds, lines, _ = ended(proc, 20)
    assert code == 1 and seconds < 10, (code, seconds, lines)
    assert len(lines) == 2, lines
    assert f"the temporary Prefect server (pid {server}) exited with status -9" in lines[-1]
    assert "rerun the same command to resume" in lines[-1]
    assert group_empties(proc.pid)


def test_sweep_ends_a_server_whose_pbrf_is_gone_and_spares_a_live_ones(tmp_path, monkeypatch):
    """The fallback for systems without a parent-death signal: a record whose owner is dead."""
    from flows.server import MARKER, sweep_orphans

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    records = tmp_path / "pbrf-servers"
    records.mkdir()
    servers = {}
    for owner in (gone.pid, os.getpid()):
        servers[owner] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; time.sleep(120)",
                "-m",
                MARKER,
                "--parent",
                str(owner),
                "--port",
                "1",
            ],
            start_new_session=True,
        )
        pid = servers[owner].pid
        (records / f"{pid}.json").write_text(json.dumps({"pid": pid, "owner": owner, "port": 1}))
    try:
        assert sweep_orphans() == [servers[gone.pid].pid]
        assert servers[gone.pid].wait(timeout=10) is not None
        assert servers[os.getpid()].poll() is None
        assert [p.name for p in records.iterdir()] == [f"{servers[os.getpid()].pid}.json"]
    finally:
        for s in servers.values():
            s.kill()
            s.wait()


def test_a_configured_server_that_stops_answering_is_reported_lost() -> None:
    """With ``PREFECT_API_URL`` set, the run watches that server: three failed health checks in
    a row make it lost (one line, exit 1 in ``pbrf run``); one answer resets the count."""
    import http.server
    import threading

    from flows.server import ConfiguredServer, ServerError

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/api"
    watch = ConfiguredServer(url, interval=0.0)
    watch.check()
    assert [watch.problem() for _ in range(5)] == [None] * 5
    httpd.shutdown()
    httpd.server_close()
    lost = [watch.problem() for _ in range(3)]
    assert lost[:2] == [None, None] and lost[2] is not None
    assert f"the Prefect server at PREFECT_API_URL={url} stopped answering" in lost[2]
    with pytest.raises(ServerError, match="no Prefect server answers"):
        watch.check()


def workers_of(proc: subprocess.Popen[str]) -> list[int]:
    """The process pool's workers: children of pbrf that are not its server."""
    server = server_of(proc)
    return [pid for pid in children(proc.pid) if pid != server and alive(pid)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_worker_processes_end_with_pbrf_however_it_ends(start, tmp_path, sig):
    """With ``--workers 2`` the nodes run in worker processes: SIGTERM to pbrf alone, Ctrl-C
    to the terminal's group and SIGKILL each end every worker (SIGKILL within a second or two,
    when the workers notice they were re-parented); Ctrl-C prints no worker traceback."""
    out = tmp_path / "run"
    proc = start(out, *LONG, "--workers", "2")
    server = wait_for("temporary server", lambda: server_of(proc), proc, 240)
    workers = wait_for(
        "two worker processes", lambda: len(workers_of(proc)) == 2 and workers_of(proc), proc, 240
    )
    wait_for("a finished step", finished(out, "prepare"), proc, 240)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    code, seconds, lines, _ = ended(proc, 20)
    want = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    assert code == want and seconds < 10, (code, seconds, lines)
    if sig != signal.SIGKILL:
        assert lines[-1].startswith(f"pbrf: interrupted by {sig.name}: "), lines
        assert len(lines) == 2, lines  # the start banner and this line: no worker traceback
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "a worker process outlived pbrf"
    deadline = time.monotonic() + 10
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server)
