"""`lorabench slurm`: the sbatch script's lines, its shell syntax and signal forwarding, and
the refusals."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.slurm import SlurmOptions, sbatch_script

PG = "postgresql+psycopg://user:pw@db.example/sweeps"


def invoke(*args: str):
    return CliRunner().invoke(app, ["slurm", *args])


def test_script_lines(tmp_path: Path):
    result = invoke(
        "--workers-per-node", "4", "--nodes", "3", "--db", PG, "--sweep", "lr",
        "--partition", "gpu", "--time", "12:00:00", "--runs-dir", str(tmp_path / "runs"),
        "--python-env", "source ~/venv/bin/activate",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ("#SBATCH --array=0-2", "#SBATCH --gres=gpu:4", "#SBATCH --partition=gpu",
                     "#SBATCH --time=12:00:00", "#SBATCH --signal=B:TERM@120",
                     "source ~/venv/bin/activate", "trap forward_term TERM INT"):  # fmt: skip
        assert expected in lines, expected
    work = [line for line in lines if line.startswith("lorabench work")]
    assert work == [
        f"lorabench work --gpu {i} --exit-when-empty --db {PG} --sweep lr "
        f"--runs-dir {tmp_path / 'runs'} &"
        for i in range(4)
    ]


def test_fewer_gpus_than_workers_share_them_and_values_are_quoted():
    script = sbatch_script(
        SlurmOptions(db=PG, workers_per_node=4, gpus_per_node=2, sweep="my sweep")
    )
    assert "#SBATCH --gres=gpu:2" in script.splitlines()
    gpus = [line.split()[3] for line in script.splitlines() if line.startswith("lorabench work")]
    assert gpus == ["0", "1", "0", "1"]
    assert "--sweep 'my sweep'" in script


def test_output_file_passes_bash_syntax_check(tmp_path: Path):
    out = tmp_path / "sweep.sbatch"
    result = invoke("--workers-per-node", "2", "--db", PG, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert subprocess.run(["bash", "-n", str(out)], capture_output=True).returncode == 0


def test_sigterm_reaches_every_worker_once(tmp_path: Path):
    """Run the script with a stand-in `lorabench` that records the signals it gets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "lorabench"
    stub.write_text(
        "#!/bin/bash\n"
        f"log={tmp_path}/worker-$3.log\n"
        "trap 'echo TERM >> $log; exit 130' TERM\n"
        'echo started >> "$log"\n'
        "while true; do sleep 0.05; done\n"
    )
    stub.chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(sbatch_script(SlurmOptions(db=PG, workers_per_node=2)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    shell = subprocess.Popen([shutil.which("bash"), str(script)], env=env, stderr=subprocess.PIPE)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    deadline = time.monotonic() + 10
    while not all(log.exists() for log in logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    shell.send_signal(signal.SIGTERM)
    _, stderr = shell.communicate(timeout=10)
    assert [log.read_text().split() for log in logs] == [["started", "TERM"]] * 2
    assert b"stopping 2 worker(s)" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers-per-node", "2"], "postgresql+psycopg://user:password@host/dbname"),
        (["--workers-per-node", "2", "--db", "x.db"], "SQLite"),
        (["--workers-per-node", "0", "--db", PG], "--workers-per-node must be at least 1"),
        (["--workers-per-node", "1", "--nodes", "0", "--db", PG], "--nodes must be at least 1"),
        (["--workers-per-node", "1", "--time", "90", "--db", PG], "--time must look like"),
        (["--workers-per-node", "1", "--time", "1:61:00", "--db", PG], "--time must look like"),
    ],
)
def test_refusals_exit_2_with_one_message(args, message, monkeypatch):
    monkeypatch.delenv("LORABENCH_DB", raising=False)
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
