"""Bad inputs, as a hostile but realistic user gives them: each is one line on stderr naming the
problem, exit status 2 (configuration) or 1 (environment, data, I/O), and no file that existed
before the command — a finished part of a run, the parameter files, the data — has changed.

Most cases call the command line's ``main`` in this process (what the ``pbrf`` script runs);
those that depend on the process environment (Prefect's settings, a full file system) run the
real ``pbrf`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pipeline_fixtures import smoke_config
from repo_root import REPO

from flows.cli import main
from tasks.engine.plan import build_plan
from tasks.engine.runner import run_node, write_run_config

PIMA = "pima-indians-diabetes.data.csv"
GOOD_ROWS = [f"{i % 5},{100 + i},70,30,0,30.5,0.5,{20 + i % 30},{i % 2}" for i in range(200)]


@dataclass
class Work:
    root: Path  # everything below existed before the case ran
    run: Path  # a run directory with its first four nodes finished
    params: Path  # its params.yaml
    files: Path  # parameter files, a plain file, CSV data directories

    def argv(self, text: str) -> list[str]:
        """``text`` split on spaces, with {run}, {params}, {files} filled in."""
        return [
            part.format(run=self.run, params=self.params, files=self.files, root=self.root)
            for part in text.split()
        ]


def _write_files(files: Path, params: Path) -> None:
    files.mkdir()
    (files / "empty.yaml").write_text("")
    (files / "list.yaml").write_text("- train\n- epochs\n")
    (files / "broken.yaml").write_text("train: [unclosed\n  epochs: 3\n")
    (files / "a-file").write_text("not a directory\n")
    (files / "epochs4.yaml").write_text(params.read_text().replace("epochs: 3", "epochs: 4", 1))
    (files / "dup.yaml").write_text(
        params.read_text().replace("  epochs: 3\n", "  epochs: 3\n  epochs: 30\n", 1)
    )
    (files / "empty-run").mkdir()
    rows = list(GOOD_ROWS)
    csvs = {
        "empty": "",
        "header": "Pregnancies,Glucose,BloodPressure,SkinThickness,Insulin,BMI,DPF,Age,Outcome\n",
        "nan": "\n".join([*rows[:7], rows[7].replace(",70,", ",nan,"), *rows[8:]]) + "\n",
        "inf": "\n".join([*rows[:2], rows[2].replace(",30.5,", ",inf,"), *rows[3:]]) + "\n",
        "ragged": "\n".join([*rows[:11], rows[11].rsplit(",", 1)[0], *rows[12:]]) + "\n",
    }
    for name, text in csvs.items():
        (files / "csv" / name).mkdir(parents=True)
        (files / "csv" / name / PIMA).write_text(text)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("bad-inputs")
    run, params, files = root / "run", root / "params.yaml", root / "files"
    cfg = smoke_config()
    plan = build_plan(cfg.model_dump(mode="json"))
    write_run_config(run, cfg)
    for node in ("prepare", "train_base", "select", "spectrum"):
        run_node(run, cfg, node, plan=plan)
    assert main(["params", "digits-mlp", "--scale", "smoke", "-o", str(params)]) == 0
    _write_files(files, params)
    return Work(root, run, params, files)


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (lock files hold only who wrote last)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@dataclass
class Case:
    argv: str
    code: int
    needles: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


RUN = "run digits-mlp --scale smoke --out {run}"
STEP = "step {node} --params {params} --out {run}"

CASES: dict[str, Case] = {
    # configuration: exit 2
    "params-empty": Case(
        "step prepare --params {files}/empty.yaml --out {run}", 2, ("empty.yaml holds no config",)
    ),
    "params-not-a-mapping": Case(
        "step prepare --params {files}/list.yaml --out {run}", 2, ("list.yaml holds no config",)
    ),
    "params-malformed-yaml": Case(
        "step prepare --params {files}/broken.yaml --out {run}",
        2,
        ("broken.yaml is not valid YAML", "line 2"),
    ),
    "params-missing": Case(
        "step prepare --params {root}/nope.yaml --out {run}", 2, ("nope.yaml not found",)
    ),
    "params-duplicate-key": Case(
        "step prepare --params {files}/dup.yaml --out {run}",
        2,
        ("dup.yaml: key 'epochs' is given twice (lines ", "keep one"),
    ),
    "override-duplicate-key": Case(
        f'{RUN} --set train={{{{"epochs":1,"epochs":2}}}}', 2, ("key 'epochs' is given twice",)
    ),
    "value-infinite": Case(f"{RUN} --set damping=inf", 2, ("damping: Input should be a finite",)),
    "value-overflows": Case(
        f"{RUN} --set damping=1e400", 2, ("damping: Input should be a finite", "'1e400'")
    ),
    "nested-value-infinite": Case(
        f"{RUN} --set train.optimizer.lr=.inf", 2, ("train.optimizer.lr: Input should be a finite",)
    ),
    "value-huge": Case(
        f"{RUN} --set damping={'x' * 100_000}", 2, ("damping:", "'… (100000 chars)")
    ),
    "train-seed-negative": Case(f"{RUN} --set train.seed=-1", 2, ("train.seed: Input should be",)),
    "select-seed-negative": Case(
        f"{RUN} --set select.seed=-1", 2, ("select.seed: Input should be",)
    ),
    "model-seed-negative": Case(f"{RUN} --set model.seed=-1", 2, ("model.seed: Input should be",)),
    "estimate-over-budget": Case(
        f"{RUN} --set train.epochs=1000000000",
        2,
        ("estimate: ≈ ", " h of training", "above --max-hours 2", "pass --yes"),
    ),
    "max-hours-not-positive": Case(f"{RUN} --max-hours 0", 2, ("--max-hours must be a posit",)),
    "grade-estimate-over-budget": Case(
        "grade digits-mlp --scale smoke --estimators grad_dot --out {run} "
        "--set train.epochs=1000000000",
        2,
        ("estimate: ≈ ", "above --max-hours 2", "pass --yes"),
    ),
    "hessian-estimate-over-budget": Case(
        "hessian digits-mlp --scale smoke --out {run} --set train.epochs=1000000000",
        2,
        ("estimate: ≈ ", "above --max-hours 2", "pass --yes"),
    ),
    "value-out-of-range": Case(f"{RUN} --set damping=-1", 2, ("damping: Input should be greater",)),
    "unknown-key": Case(f"{RUN} --set train.no_such_key=1", 2, ("train.no_such_key: Extra",)),
    "override-without-value": Case(f"{RUN} --set train.epochs", 2, ("key.path=value",)),
    "override-malformed-yaml": Case(
        f"{RUN} --set retrain.variants=[cold", 2, ("retrain.variants=[cold", "not valid YAML")
    ),
    "empty-study": Case(f"{RUN} --set retrain.variants=[]", 2, ("an empty study",)),
    "unknown-preset": Case("run no-such-preset --out {run}", 2, ("unknown preset 'no-such",)),
    "unknown-scale": Case("run digits-mlp --scale huge --out {run}", 2, ("no scale 'huge'",)),
    "more-removals-than-data": Case(
        f"{RUN} --set select.num_removals=1000", 2, ("exceeds the 100 training examples",)
    ),
    "cuda-absent": Case(f"{RUN} --device cuda", 2, ("device 'cuda'", "--device cpu")),
    "step-cuda-absent": Case(
        "step prepare --params {params} --device cuda:3 --out {run}", 2, ("device 'cuda:3'",)
    ),
    "unknown-node": Case(STEP.replace("{node}", "retrain-banana"), 2, ("unknown node",)),
    "data-fetch-unknown-set": Case("data fetch no-such-set --root {root}/data", 2, ("no-such",)),
    # input artifacts: exit 1, naming the file and the step that rebuilds it
    "missing-input-artifact": Case(
        "step influence --params {params} --out {files}/empty-run",
        1,
        ("empty-run/prepare/dataset.pt: missing", "Rerun step 'prepare'"),
    ),
    "input-of-another-config": Case(
        "step influence --params {files}/epochs4.yaml --out {run}",
        1,
        ("theta_s.pt: made with a different configuration", "Rerun step 'train_base'"),
    ),
    "report-of-a-non-run": Case("report {files}/empty-run", 1, ("not a pbrf run directory",)),
    # environment and I/O: exit 1, naming the path or variable and the fix
    "out-is-a-file": Case(
        "run digits-mlp --scale smoke --out {files}/a-file", 1, ("a-file exists and is not a dir",)
    ),
    "out-under-a-file": Case(
        "run digits-mlp --scale smoke --out {files}/a-file/run", 1, ("a-file exists and is not",)
    ),
    "step-out-is-a-file": Case(
        "step prepare --params {params} --out {files}/a-file", 1, ("a-file exists and is not",)
    ),
    "out-name-too-long": Case(
        "run digits-mlp --scale smoke --out {root}/new/" + "n" * 300 + "/run",
        1,
        ("is 300 bytes, over this file system's limit of 255", "shorter --out", "… (3"),
    ),
    "out-path-too-long": Case(
        "run digits-mlp --scale smoke --out {root}/new/" + "/".join(["p" * 200] * 21),
        1,
        ("exceeds this system's limit of 4096", "shorter --out"),
    ),
    "threads-zero": Case(
        RUN, 1, ("PBRF_THREADS must be a positive integer, got '0'",), {"PBRF_THREADS": "0"}
    ),
    "threads-not-a-number": Case(
        STEP.replace("{node}", "select"),
        1,
        ("got 'two'", "PBRF_THREADS=2"),
        {"PBRF_THREADS": "two"},
    ),
    # data files: exit 1 with file, row and column — before anything is written
    "csv-empty": Case(
        f"{RUN} --set data.name=pima_diabetes --set data.root={{files}}/csv/empty",
        1,
        (f"csv/empty/{PIMA}: is empty",),
    ),
    "csv-header-only": Case(
        f"{RUN} --set data.name=pima_diabetes --set data.root={{files}}/csv/header",
        1,
        (f"{PIMA}, row 1, column 1: bad value 'Pregnancies'",),
    ),
    "csv-nan": Case(
        f"{RUN} --set data.name=pima_diabetes --set data.root={{files}}/csv/nan",
        1,
        (f"{PIMA}, row 8, column 3: non-finite value 'nan'",),
    ),
    "csv-inf": Case(
        f"{RUN} --set data.name=pima_diabetes --set data.root={{files}}/csv/inf",
        1,
        (f"{PIMA}, row 3, column 6: non-finite value 'inf'",),
    ),
    "csv-ragged-row": Case(
        f"{RUN} --set data.name=pima_diabetes --set data.root={{files}}/csv/ragged",
        1,
        (f"{PIMA}, row 12, column 9: has 8 fields, expected 9",),
    ),
    "data-files-missing": Case(
        f"{RUN} --set data.name=mnist --set data.root={{root}}/no-data",
        1,
        ("'mnist' is missing 4 file(s)", "train-images-idx3-ubyte", "pbrf data fetch mnist"),
    ),
    "step-data-files-missing": Case(
        "step prepare --params {params} --set data.name=wdbc "
        "--set data.root={root}/no-data --out {run}",
        1,
        ("'wdbc' is missing 1 file(s)", "pbrf data fetch wdbc"),
    ),
}


@pytest.fixture
def checked(work: Work) -> Iterator[Callable[[], None]]:
    """Yields a check that nothing under the work directory changed since the case began."""
    before = snapshot(work.root)

    def check() -> None:
        after = snapshot(work.root)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"changed: {changed}"

    yield check


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, one_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(
    name: str, work: Work, checked, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    if "cuda" in name:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    code, line = _run(work.argv(case.argv), capsys)
    assert code == case.code, line
    assert line.startswith("pbrf: error: "), line
    for needle in case.needles:
        assert needle in line, line
    assert len(line) < 1000, f"{len(line)} characters"
    assert not (work.root / "new").exists()  # no directory made for an --out refused
    checked()


@pytest.mark.slow
def test_a_run_directory_being_written_is_refused_naming_the_writer(
    work: Work, checked, capsys
) -> None:
    """``pbrf run`` and ``pbrf step`` on a directory another process holds exit 1 at once."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom tasks.engine.lock import run_lock\n"
            f"with run_lock({str(work.run)!r}, 'pbrf run digits-mlp'):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for argv in (RUN, STEP.replace("{node}", "select")):
            code, line = _run(work.argv(argv), capsys)
            assert code == 1, line
            assert f"is being written by pid {holder.pid}" in line, line
            assert "`pbrf run digits-mlp`" in line and "--out" in line, line
    finally:
        holder.kill()
        holder.wait()
    checked()


def _pbrf(argv: list[str], env: dict[str, str], timeout: float = 240) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "PBRF_PROGRESS": "0", **env},
        timeout=timeout,
    )
    return proc.returncode, proc.stderr


@pytest.mark.slow
def test_an_unreachable_prefect_api_is_one_line(work: Work, checked) -> None:
    with socket_nobody_listens() as url:
        code, err = _pbrf(work.argv(RUN), {"PREFECT_API_URL": url})
    line = one_line(err)
    assert code == 1, err
    assert f"PREFECT_API_URL={url}: no Prefect server answers" in line, line
    assert "prefect server start" in line, line
    checked()


class socket_nobody_listens:
    """A loopback URL whose port was just free (nothing answers there)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/api"

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_old_artifact(work: Work, tmp_path: Path) -> None:
    """A write that meets a full file system (a 4 MiB tmpfs in a private mount namespace) fails
    with one line naming the file; the artifact it would have replaced is intact."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private tmpfs")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    mnt, res = tmp_path / "mnt", tmp_path / "result"
    mnt.mkdir()
    res.mkdir()
    script = f"""
set -e
mount -t tmpfs -o size=4m tmpfs {mnt}
cp -a {work.run} {mnt}/run
dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null || true
(cd {mnt}/run && find . -type f ! -name lock -exec sha256sum {{}} + | sort) > {res}/before
set +e
{sys.executable} -m flows.cli step prepare --params {work.params} --out {mnt}/run \\
    2> {res}/stderr
echo $? > {res}/code
(cd {mnt}/run && find . -type f ! -name lock -exec sha256sum {{}} + | sort) > {res}/after
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PBRF_PROGRESS": "0"}
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO,
        env=env,
        timeout=240,
        check=True,
    )
    line = one_line((res / "stderr").read_text())
    assert (res / "code").read_text().strip() == "1", line
    assert f"cannot write {mnt}/run/prepare/dataset.pt: No space left on device" in line, line
    assert "free space" in line, line
    assert (res / "before").read_text() == (res / "after").read_text()
    assert "prepare/dataset.pt" in (res / "before").read_text()


def _readonly(dirs: list[Path], command: str, tmp_path: Path) -> tuple[int, str] | None:
    """``command`` in a shell where ``dirs`` are read-only bind mounts (a private mount
    namespace: root would write through a mere ``chmod``); ``None`` where that is unavailable."""
    if shutil.which("unshare") is None:
        return None
    binds = "\n".join(f"mount --bind -o ro {d} {d} && mount -o remount,bind,ro {d}" for d in dirs)
    script = f"set -e\n{binds}\nset +e\n{command} 2> {tmp_path}/stderr\necho $? > {tmp_path}/code"
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "PBRF_PROGRESS": "0"},
        capture_output=True,
        timeout=240,
    )
    if done.returncode != 0 or not (tmp_path / "code").is_file():
        return None
    return int((tmp_path / "code").read_text()), (tmp_path / "stderr").read_text()


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("var", ["PREFECT_HOME", "HOME"])
def test_a_read_only_prefect_home_is_one_line_before_the_run_directory(
    var: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".prefect").mkdir(parents=True)
    out = tmp_path / "out" / "run"
    env = f"PREFECT_HOME={home / '.prefect'}" if var == "PREFECT_HOME" else f"HOME={home}"
    unset = "" if var == "PREFECT_HOME" else "env -u PREFECT_HOME "
    command = (
        f"{unset}env -u PREFECT_API_URL {env} {sys.executable} -m flows.cli run digits-mlp "
        f"--scale smoke --out {out}"
    )
    result = _readonly([home], command, tmp_path)
    if result is None:
        pytest.skip("needs unshare(1) with user and mount namespaces")
    code, err = result
    line = one_line(err)
    assert code == 1, line
    assert f"{var}={home}" in line and "not writable" in line, line
    assert "set PREFECT_HOME to a writable directory" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a subprocess
def test_a_failing_run_exits_within_seconds_of_its_error_line(tmp_path: Path) -> None:
    """Prefect's queued logs are sent before the temporary server stops; left for exit, its log
    worker retried the stopped server for about 70 s (``--- Error logging to API ---``)."""
    import threading
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            *RUN.replace("{run}", str(tmp_path / "run")).split(),
            *("--set", "train.optimizer.lr=1e30"),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
            "PYTHONPATH": str(REPO),
            "PBRF_PROGRESS": "0",
            "PREFECT_HOME": str(tmp_path / "prefect"),
        },
    )
    assert proc.stderr is not None
    lines: list[str] = []
    errored: list[float] = []

    def read() -> None:  # the main thread times the exit, not the end of the pipe
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("pbrf: error: "):
                errored.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=240)
        exited = time.monotonic()
    finally:
        proc.kill()
    reader.join(10)
    assert errored, lines
    assert proc.returncode == 1, lines
    assert exited - errored[0] < 10, (exited - errored[0], lines)
    assert "non-finite" in lines[-1] and "Error logging" not in "".join(lines), lines
