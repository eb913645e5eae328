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
        f'lorabench work --gpu {i} --threads "$threads" --exit-when-empty --db {PG} --sweep lr '
        f"--runs-dir {tmp_path / 'runs'} &"
        for i in range(4)
    ]
    # No --cpus-per-task: the workers divide the CPUs the task got.
    assert "threads=$(( $(nproc) / 4 ))" in lines


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


# --- Site options, CPU shares, submission ---------------------------------------------------------

SITE = ["--workers-per-node", "4", "--nodes", "2", "--db", PG, "--partition", "gpu",
        "--time", "1-00:00:00", "--account", "proj42", "--qos", "high", "--mem", "256G",
        "--cpus-per-task", "32", "--constraint", "a100|h100",
        "--sbatch-line", "--mail-type=END", "--sbatch-line", "#SBATCH --exclusive"]  # fmt: skip


def test_site_options_are_exact_sbatch_lines_and_workers_share_the_cpus(tmp_path: Path):
    result = invoke(*SITE, "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name=lorabench", "#SBATCH --array=0-1", "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1", "#SBATCH --gres=gpu:4", "#SBATCH --partition=gpu",
        "#SBATCH --time=1-00:00:00", "#SBATCH --account=proj42", "#SBATCH --qos=high",
        "#SBATCH --mem=256G", "#SBATCH --cpus-per-task=32", "#SBATCH --constraint=a100|h100",
        "#SBATCH --mail-type=END", "#SBATCH --exclusive", "#SBATCH --signal=B:TERM@120",
        "#SBATCH --output=lorabench-%A_%a.out",
    ]  # fmt: skip
    assert "threads=8  # --cpus-per-task=32 / 4 worker(s)" in lines
    script = tmp_path / "site.sbatch"
    script.write_text(result.output)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def _run_with_recording_workers(script_text: str, tmp_path: Path) -> list[list[str]]:
    """Run the script with a stand-in `lorabench` that records its arguments and exits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "lorabench"
    stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/args-$3\n')
    stub.chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(script_text)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [p.read_text().splitlines() for p in sorted(tmp_path.glob("args-*"))]


def test_each_worker_gets_its_share_of_the_task_cpus(tmp_path: Path):
    options = SlurmOptions(db=PG, workers_per_node=3, cpus_per_task=20)
    args = _run_with_recording_workers(sbatch_script(options), tmp_path)
    assert [a[:4] for a in args] == [["work", "--gpu", str(i), "--threads"] for i in range(3)]
    assert [a[4] for a in args] == ["6"] * 3  # 20 CPUs / 3 workers, rounded down


def test_without_cpus_per_task_workers_divide_what_the_task_got(tmp_path: Path):
    args = _run_with_recording_workers(sbatch_script(SlurmOptions(db=PG, workers_per_node=2)),
                                       tmp_path)  # fmt: skip
    expected = str(max(1, len(os.sched_getaffinity(0)) // 2))  # what nproc counts
    assert [a[3:5] for a in args] == [["--threads", expected]] * 2


def _fake_sbatch(tmp_path: Path, reply: str = "Submitted batch job 4242", code: int = 0) -> Path:
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/bash\n"
        f'for a in "$@"; do echo "$a"; done > {tmp_path}/sbatch-args\n'
        f"cat > {tmp_path}/sbatch-stdin\n"
        f'echo "{reply}"\n'
        f"exit {code}\n"
    )
    sbatch.chmod(0o755)
    return bin_dir


def test_submit_runs_sbatch_and_prints_the_job_id(tmp_path: Path):
    bin_dir = _fake_sbatch(tmp_path)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = tmp_path / "sweep.sbatch"
    result = CliRunner().invoke(app, ["slurm", *SITE, "--output", str(out), "--submit"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "4242\n"
    assert "submitted Slurm job 4242; follow it with: squeue -j 4242" in result.stderr
    assert (tmp_path / "sbatch-args").read_text().splitlines() == [str(out)]
    assert out.read_text().startswith("#!/bin/bash\n")
    # Without --output the script goes to sbatch's standard input.
    piped = CliRunner().invoke(app, ["slurm", *SITE, "--submit"], env=env)
    assert piped.exit_code == 0 and piped.stdout == "4242\n"
    assert (tmp_path / "sbatch-args").read_text() == ""
    assert (tmp_path / "sbatch-stdin").read_text() == out.read_text()


def test_submit_without_sbatch_or_refused_says_why(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["slurm", *SITE, "--submit"], env={"PATH": str(empty)})
    assert result.exit_code == 2
    assert "--submit: sbatch is not on PATH" in " ".join(result.output.split())
    refusing = _fake_sbatch(tmp_path, reply="sbatch: error: Invalid account", code=1)
    env = {"PATH": f"{refusing}:{os.environ['PATH']}"}
    result = CliRunner().invoke(app, ["slurm", *SITE, "--submit"], env=env)
    assert result.exit_code == 2
    assert "sbatch refused the script (exit 1): sbatch: error: Invalid account" in " ".join(
        result.output.split()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mem", "64GB"], "--mem must be a size like 64G, 500M or 1T, got '64GB'"),
        (["--account", "a b"], "--account must be one word"),
        (["--qos", ""], "--qos must be one word"),
        (["--cpus-per-task", "0"], "--cpus-per-task must be at least 1, got 0"),
        (["--sbatch-line", "exclusive"], "--sbatch-line must be one sbatch option"),
    ],
)
def test_site_option_refusals(args, message):
    result = invoke("--workers-per-node", "2", "--db", PG, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
