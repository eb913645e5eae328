"""Hostile programs against the strong sandbox: each is blocked or contained.

Every program runs in "strong" (bubblewrap, seccomp and the audit hook) and "strong-no-hook"
(the operating-system layer alone, which must contain everything by itself). A secret file
with random contents sits in a 0700 folder on the host, next to a project database holding
the same secret; each program tries to reach them (or the host) and ends by asserting that
its attack worked, so containment shows up as a non-pass. Each test then checks that the
secret appears nowhere in the output, nothing is left running, and the host side.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sandbox_helpers import (
    STRONG,
    assert_secret_kept,
    contained,
    extension_loader,
    limits_for,
    modes,
    secret_file,
)

from lorabench.sandbox import Outcome, SandboxResult

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux"),
    modes(*STRONG),
]

# x86_64 system call numbers, for the C extension's evil.call (skipped elsewhere).
_SYSCALLS = {"open": 2, "mount": 165, "ptrace": 101, "unshare": 272, "setns": 308}
_SYSCALLS |= {"mknodat": 259, "process_vm_readv": 310, "chroot": 161, "pivot_root": 155}


class Secrets:
    def __init__(self, tmp_path: Path) -> None:
        self.path, self.text = secret_file(tmp_path)
        self.db = tmp_path / "lorabench.db"  # a stand-in for the project's database
        with sqlite3.connect(self.db) as db:
            db.execute("CREATE TABLE secrets (value TEXT)")
            db.execute("INSERT INTO secrets VALUES (?)", (self.text,))
        db.close()
        self.db_bytes = self.db.read_bytes()

    def prelude(self) -> str:
        """Program text: the paths, and `found` to collect whatever was read."""
        return (
            "import os, sys\n"
            f"SECRET = {str(self.path)!r}\nDB = {str(self.db)!r}\n"
            "found = []\n"
            "def read(path, **kw):\n"
            "    try:\n"
            "        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK, **kw)\n"
            "        data = os.read(fd, 65536)\n"
            "        os.close(fd)\n"
            "    except OSError as error:\n"
            "        print(path, error)\n"
            "        return b''\n"
            "    print(path, data[:200])\n"
            "    found.append(data)\n"
            "    return data\n"
            "def leaked():\n"
            "    return any(b's3cr3t-' in data for data in found)\n"
        )

    def check(self, result: SandboxResult) -> None:
        assert_secret_kept(result, self.text)
        assert self.path.read_text() == self.text
        assert self.db.read_bytes() == self.db_bytes


@pytest.fixture
def secrets(tmp_path) -> Secrets:
    return Secrets(tmp_path)


def need_extension() -> str:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("the C extension's system call numbers are x86_64's")
    return extension_loader()


# --- reading host files ----------------------------------------------------------------


def test_plain_open_of_the_secret(mode, secrets):
    source = secrets.prelude() + (
        "try:\n    print(open(SECRET).read())\nexcept OSError as e:\n    print(e)\n"
        "read(SECRET)\nread(DB)\nassert leaked()\n"
    )
    secrets.check(contained(source, mode))


def test_dir_fd_walk_out_of_the_working_dir(mode, secrets):
    """A working-dir descriptor, a deeper cwd and '../' * n: the hook resolves against the cwd."""
    source = secrets.prelude() + (
        "wfd = os.open('.', os.O_RDONLY)\n"
        "os.makedirs('a/b/c/d/e/f/g/h/i/j')\nos.chdir('a/b/c/d/e/f/g/h/i/j')\n"
        # Against the cwd this is the working dir (the hook lets it by); against wfd, '/'.
        "root = os.open('../' * 10, os.O_RDONLY | os.O_DIRECTORY, dir_fd=wfd)\n"
        "print(os.listdir(root))\n"
        "for path in (SECRET, DB, '/etc/shadow', '/etc/passwd', '/proc/1/environ'):\n"
        "    read(path.lstrip('/'), dir_fd=root)\n"
        "os.fchdir(root)\n"
        "for path in (SECRET, DB, '/etc/shadow'):\n"
        "    read(path.lstrip('/'))\n"
        "assert leaked() or any(b'root:' in data for data in found)\n"
    )
    secrets.check(contained(source, mode))


def test_proc_root_links(mode, secrets):
    source = secrets.prelude() + (
        "for pid in ('self', 1, os.getppid()):\n"
        "    for path in (SECRET, DB, '/etc/shadow'):\n"
        "        read(f'/proc/{pid}/root{path}')\n"
        "        read(f'/proc/{pid}/cwd/../../..{path}')\n"
        "assert leaked()\n"
    )
    secrets.check(contained(source, mode))


def test_every_visible_process_files_and_environment(mode, secrets):
    """The parent's cwd and descriptors, and /proc/*/fd, /proc/*/environ of every pid seen."""
    source = secrets.prelude() + (
        "ppid = os.getppid()\n"
        "try:\n    print(os.listdir(f'/proc/{ppid}/cwd'))\nexcept OSError as e:\n    print(e)\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "print('pids', pids)\n"
        "for pid in pids:\n"
        "    read(f'/proc/{pid}/environ')\n"
        "    read(f'/proc/{pid}/cmdline')\n"
        "    try:\n        fds = os.listdir(f'/proc/{pid}/fd')\n"
        "    except OSError as e:\n        print(e)\n        continue\n"
        "    for fd in fds:\n"
        "        try:\n            link = os.readlink(f'/proc/{pid}/fd/{fd}')\n"
        "        except OSError as e:\n            print(e)\n            continue\n"
        "        print(pid, fd, link)\n"
        # Reopening a pipe there would read the program's own output before the parent does.
        "        if not link.startswith(('pipe:', 'anon_inode:')):\n"
        "            read(f'/proc/{pid}/fd/{fd}')\n"
        "assert leaked() or len(pids) > 2\n"
    )
    result = contained(source, mode)
    secrets.check(result)
    assert str(secrets.path) not in result.stdout  # no descriptor of the host's files


def test_system_files(mode, secrets):
    source = secrets.prelude() + (
        "for path in ('/etc/shadow', '/etc/passwd', '/etc/hostname', '/root/.bashrc'):\n"
        "    read(path)\n"
        "for folder in ('/root', '/home', '/tmp', '/etc', '/', '/sandbox'):\n"
        "    try:\n        print(folder, os.listdir(folder))\n"
        "    except OSError as e:\n        print(e)\n"
        "assert any(b'root:' in data for data in found)\n"
    )
    result = contained(source, mode)
    secrets.check(result)
    assert "root:x:0:0" not in result.stdout


def test_hard_and_symbolic_links_to_the_secret(mode, secrets):
    source = secrets.prelude() + (
        "for make, name, target in ((os.link, 'hard', SECRET), (os.symlink, 'soft', SECRET),\n"
        "                           (os.symlink, 'db', DB), (os.symlink, 'top', '/')):\n"
        "    try:\n        make(target, name)\n    except OSError as e:\n        print(e)\n"
        "for name in ('hard', 'soft', 'db', 'top' + SECRET):\n"
        "    read(name)\n"
        "assert leaked()\n"
    )
    secrets.check(contained(source, mode))


def test_sqlite_attach_and_vacuum_into(mode, secrets, tmp_path):
    stolen = tmp_path / "stolen.db"
    source = secrets.prelude() + (
        "import sqlite3\n"
        "db = sqlite3.connect(':memory:')\n"
        "db.execute('CREATE TABLE t (x)')\n"
        "rows = []\n"
        "for sql in (f\"ATTACH DATABASE '{DB}' AS project\", 'SELECT value FROM project.secrets',\n"
        f"            \"VACUUM INTO '{stolen}'\"):\n"
        "    try:\n        rows += db.execute(sql).fetchall()\n"
        "    except sqlite3.Error as e:\n        print(sql, e)\n"
        "try:\n    rows += sqlite3.connect(DB).execute('SELECT value FROM secrets').fetchall()\n"
        "except Exception as e:\n    print(e)\n"
        "print(rows)\n"
        f"assert rows or os.path.exists({str(stolen)!r})\n"
    )
    secrets.check(contained(source, mode))
    assert not stolen.exists()


# --- native code -----------------------------------------------------------------------


def test_c_extension_reads_the_secret_and_runs_a_shell(mode, secrets):
    """Native code is past the audit hook: only the operating system is left to stop it."""
    source = (
        secrets.prelude()
        + need_extension()
        + (
            "for path in (SECRET, DB, '/etc/shadow'):\n"
            f"    fd, error = evil.call({_SYSCALLS['open']}, path.encode() + b'\\0', 0)\n"
            "    print(path, fd, error)\n"
            "    if fd >= 0:\n        found.append(os.read(fd, 65536))\n"
            "status = evil.system(f'cat {SECRET} {DB}; echo shell-ran')\n"
            "print('system', status)\n"
            "assert leaked() or status[0] == 0\n"
        )
    )
    result = contained(source, mode)
    secrets.check(result)
    assert "shell-ran" not in result.stdout


_PRIVILEGED = {
    "mknod /dev/mem": (
        "import stat\n"
        "ok = []\n"
        "for name, kind, dev in (('mem', stat.S_IFCHR, (1, 1)), ('disk', stat.S_IFBLK, (8, 0))):\n"
        "    try:\n"
        "        os.mknod(name, kind | 0o600, os.makedev(*dev))\n        ok.append(name)\n"
        "    except OSError as e:\n        print(e)\n"
        "    read(name)\n"
        "assert ok\n"
    ),
    "mount tmpfs": (
        "os.mkdir('m')\n"
        "try:\n    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    print('ctypes mount', libc.mount(b'none', b'm', b'tmpfs', 0, None),"
        " ctypes.get_errno())\n"
        "    print('ctypes unshare', libc.unshare(0x10000000), ctypes.get_errno())\n"
        "except Exception as e:\n    print(e)\n"
        "import subprocess\n"
        "try:\n    subprocess.run(['/bin/mount', '-t', 'tmpfs', 'none', 'm'], check=True)\n"
        "except Exception as e:\n    print(e)\n"
        "assert os.path.ismount('m')\n"
    ),
    "ptrace and /proc/1/mem": (
        "read('/proc/1/mem')\n"
        "try:\n    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    print('ptrace', libc.ptrace(16, 1, 0, 0), ctypes.get_errno())\n"
        "except Exception as e:\n    print(e)\n"
        "with open('/proc/self/status') as f:\n"
        "    assert [l for l in f if l.startswith('TracerPid')] != ['TracerPid:\\t0\\n']\n"
    ),
}


@pytest.mark.parametrize("attack", list(_PRIVILEGED))
def test_privileged_calls_from_python(mode, secrets, attack):
    """mknod, mount, ptrace, unshare through the routes Python offers (ctypes without hook)."""
    secrets.check(contained(secrets.prelude() + _PRIVILEGED[attack], mode))


def test_privileged_system_calls_from_a_c_extension(mode, secrets):
    """mount, ptrace, process_vm_readv, unshare, setns, mknod, chroot: each refused."""
    n = _SYSCALLS
    source = (
        secrets.prelude()
        + need_extension()
        + (
            "os.mkdir('m')\n"
            "attempts = {\n"
            f"    'mount': ({n['mount']}, b'none\\0', b'm\\0', b'tmpfs\\0', 0, 0),\n"
            f"    'bind /': ({n['mount']}, b'/\\0', b'm\\0', b'\\0', 0x1000 | 0x4000, 0),\n"
            f"    'ptrace attach 1': ({n['ptrace']}, 16, 1, 0, 0),\n"
            f"    'ptrace traceme': ({n['ptrace']}, 0, 0, 0, 0),\n"
            f"    'process_vm_readv': ({n['process_vm_readv']}, 1, 0, 0, 0, 0, 0),\n"
            f"    'unshare user': ({n['unshare']}, 0x10000000),\n"
            f"    'unshare mount': ({n['unshare']}, 0x00020000),\n"
            f"    'setns': ({n['setns']}, evil.call({n['open']}, b'/proc/1/ns/mnt\\0', 0)[0], 0),\n"
            f"    'mknod': ({n['mknodat']}, -100, b'mem\\0', 0o20600, (1 << 8) | 1),\n"
            f"    'chroot': ({n['chroot']}, b'm\\0'),\n"
            "}\n"
            "worked = []\n"
            "for name, args in attempts.items():\n"
            "    result, error = evil.call(*args)\n"
            "    print(name, result, error)\n"
            "    if result == 0:\n        worked.append(name)\n"
            "print('worked', worked)\n"
            "assert worked\n"
        )
    )
    result = contained(source, mode)
    secrets.check(result)
    if mode == "strong":  # the hook refuses native code outside the installation first
        assert "loading native code" in result.reason, result
    else:  # the kernel alone: seccomp refuses every call
        assert "worked []" in result.stdout, result.stdout


# --- processes -------------------------------------------------------------------------


def test_fork_bomb_through_os_fork(mode):
    source = (
        "import os, time\nchildren = 0\n"
        "for _ in range(6):\n"
        "    try:\n        if os.fork() == 0:\n            time.sleep(60)\n        children += 1\n"
        "    except OSError as e:\n        print(e)\n"
        "assert children\n"
    )
    result = contained(source, mode)
    assert result.outcome is Outcome.FAILED


def test_fork_bomb_through_a_c_extension(mode):
    source = need_extension() + (
        "started, error = evil.forks(64)\nprint('forked', started, error)\nassert started\n"
    )
    result = contained(source, mode)
    if mode == "strong":
        assert "loading native code" in result.reason, result
    else:
        assert "forked 0 1" in result.stdout  # none started: EPERM


def test_kill_everything(mode):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        source = (
            "import os, signal, time\n"
            "for call in (lambda: os.kill(-1, signal.SIGKILL),"
            f" lambda: os.kill({victim.pid}, signal.SIGKILL), lambda: os.killpg(1, 9)):\n"
            "    try:\n        call()\n    except OSError as e:\n        print(e)\n"
            "time.sleep(0.2)\n"
        )
        # Inside its namespace the program may well "succeed": only the host side tells.
        contained(source, mode, must_fail=False)
        time.sleep(0.1)
        assert victim.poll() is None
        os.kill(os.getpid(), 0)  # and this test process lives on
    finally:
        victim.kill()
        victim.wait()


# --- the network -----------------------------------------------------------------------


def test_connecting_to_a_host_listener(mode):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        source = (
            "import socket\n"
            "sent = False\n"
            "for host in ('127.0.0.1', 'localhost', '::1'):\n"
            "    try:\n"
            f"        s = socket.create_connection((host, {port}), timeout=1)\n"
            "        s.sendall(b'pwned')\n        sent = True\n"
            "    except OSError as e:\n        print(host, e)\n"
            "assert sent\n"
        )
        result = contained(source, mode)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.outcome is Outcome.FAILED


# --- the host's disk -------------------------------------------------------------------


def _free(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_writing_to_shared_memory_and_tmp(mode):
    name = f"lorabench-hostile-{os.urandom(6).hex()}"
    source = (
        "written = []\n"
        f"for path in ('/dev/shm/{name}', '/tmp/{name}', '/var/tmp/{name}'):\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n            f.write('pwned')\n"
        "        written.append(path)\n"
        "    except OSError as e:\n        print(e)\n"
        "print('written', written)\n"
        "assert '/tmp/' + " + repr(name) + " in written\n"
    )
    result = contained(source, mode)
    for folder in ("/dev/shm", "/tmp", "/var/tmp"):
        assert not Path(folder, name).exists(), result
    if mode == "strong":  # the hook refuses both; without it, /dev/shm is a private tmpfs
        assert "written []" in result.stdout


def test_filling_the_disk(mode):
    """15 MiB files into the working dir and /dev/shm stop at the tmpfs cap (disk_bytes)."""
    limits = limits_for(mode, disk_bytes=48 << 20, timeout_s=20.0, memory_bytes=1 << 30)
    free_before = {path: _free(path) for path in ("/tmp", "/dev/shm")}
    source = (
        "import os\nchunk = b'x' * (15 << 20)\ntotals = {}\n"
        "for folder in ('.', '/dev/shm'):\n"
        "    total = 0\n"
        "    for i in range(16):\n"
        "        try:\n"
        "            with open(os.path.join(folder, f'fill{i}'), 'wb') as f:\n"
        "                total += f.write(chunk)\n"
        "        except OSError as e:\n"
        "            print(folder, i, e)\n            break\n"
        "    totals[folder] = total\n"
        "print('totals', totals)\n"
        "assert sum(totals.values()) >= 16 * (15 << 20)\n"
    )
    result = contained(source, mode, limits)
    line = next(x for x in result.stdout.splitlines() if x.startswith("totals"))
    totals = eval(line.removeprefix("totals "))  # noqa: S307 - a dict of ints we printed
    assert all(0 <= total <= limits.disk_bytes for total in totals.values()), totals
    assert totals["."] >= 15 << 20  # the working dir itself is usable
    for path, before in free_before.items():
        assert _free(path) > before - (64 << 20), path


def test_files_left_in_the_working_dir_never_reach_the_host(mode):
    """Whatever the program leaves behind goes with its tmpfs: no host folder is involved."""
    name = f"left-{os.urandom(6).hex()}.txt"
    temp = Path(tempfile.gettempdir())
    before = set(temp.iterdir())
    contained(f"open({name!r}, 'w').write('x')\nassert False\n", mode)
    for folder in set(temp.iterdir()) - before:  # new folders (others' tests may make some)
        assert not (folder / name).exists()
    assert not list(temp.glob(f"*/{name}"))
