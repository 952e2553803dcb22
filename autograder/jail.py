"""The OS sandbox student code runs in: bubblewrap namespaces, an unprivileged user, rlimits.

A student's notebook is executed by ``autograder/sandbox_runner/run_notebook.py`` inside a
`bubblewrap <https://github.com/containers/bubblewrap>`_ sandbox (Debian's ``bubblewrap``):

* **own PID namespace** (``--unshare-pid``): everything the notebook starts, double-forked or
  not, dies with the sandbox; ``--die-with-parent`` ties the sandbox to the grading worker;
* **no network** (``--unshare-net``: only a loopback of its own; the kernel talks to the
  runner over Unix sockets), own IPC and UTS namespaces, a new session (no terminal);
* **a filesystem view of its own**: read-only system folders (``/usr``, ``/etc``), the Python
  installation and virtual environment, the ``featurelab`` package and the runner; read-only
  data, weights and shared feature cache; one writable scratch folder (``/scratch``), a
  private ``/tmp`` and ``/dev/shm`` (memory: size-capped), a read-only ``/dev``. Not visible: the repository (``solutions/``, ``autograder/``), the output
  folder, the gradebook, other submissions, the user's home;
* **an unprivileged user**: when the grader runs as root, the sandbox drops to a dedicated uid
  (``setpriv``; one uid per concurrent sandbox) with no capabilities and ``no_new_privs``; a
  non-root grader runs the sandbox in a user namespace as itself;
* **limits on every descendant**: ``RLIMIT_NPROC`` (per uid: the whole sandbox when it has its
  own uid), ``RLIMIT_FSIZE``, ``RLIMIT_CORE`` = 0; memory and wall clock are enforced by the
  grader's watchdog on the whole process tree (:mod:`autograder.sandbox`).

Where bubblewrap cannot run (not installed, namespaces disabled) grading untrusted code is
refused unless the instructor passes ``--insecure`` (then the runner runs unconfined, loudly).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_DIR = Path(__file__).resolve().parent / "sandbox_runner"
SANDBOX_RUNNER = "/opt/featurelab-runner"
SCRATCH = "/scratch"
TMP_SIZE_MB = 512  # the private /tmp of a sandbox (a tmpfs: memory)
SHM_SIZE_MB = 256  # its /dev/shm (the rest of its /dev is read-only)
BASE_UID = 64000  # + slot: the uid of a sandbox when the grader runs as root


class JailUnavailable(RuntimeError):
    """The OS sandbox cannot run here (the message says why and what to do)."""


@dataclass(frozen=True)
class JailSpec:
    """One sandbox: what it sees, who it runs as, its limits."""

    scratch: Path  # host folder, mounted read-write at /scratch
    ro_binds: tuple[tuple[str, str], ...] = ()  # (host path, path in the sandbox), read-only
    env: dict[str, str] = field(default_factory=dict)
    slot: int = 1  # concurrent sandboxes get different slots (and uids when root)
    max_processes: int = 256
    max_file_mb: int = 4096
    insecure: bool = False  # no sandbox at all (instructor's explicit choice)

    @property
    def uid(self) -> int | None:
        return BASE_UID + self.slot if os.geteuid() == 0 else None


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when bubblewrap works here, else why not (checked once by running ``true``)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return (
            "bubblewrap (bwrap) is not installed: `sudo apt-get install bubblewrap` "
            "(Debian/Ubuntu; `make setup` does it when run as root)"
        )
    probe = [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--unshare-pid",
        "--unshare-net",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "true",
    ]
    if os.geteuid() != 0:
        probe.insert(1, "--unshare-user")
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start: {error}"
    if done.returncode != 0:
        return (
            f"bubblewrap cannot create namespaces here ({done.stderr.strip()[:200]}); "
            "enable unprivileged user namespaces or run the grader as root"
        )
    return None


def require_jail(insecure: bool) -> None:
    """Raise :class:`JailUnavailable` unless the sandbox works or ``insecure`` is asked for."""
    reason = unavailable_reason()
    if reason and not insecure:
        raise JailUnavailable(
            f"refusing to run untrusted student code without a sandbox: {reason}. "
            "Pass --insecure to grade anyway (only for code you trust)."
        )


def unreadable_for_sandbox(paths: list[str]) -> list[str]:
    """The folders among ``paths`` that a sandbox with a uid of its own cannot read (not
    world-readable and traversable): it would see them mounted but empty-handed."""
    if os.geteuid() != 0:
        return []  # a user namespace runs as the grader's own user
    bad = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & 0o005 != 0o005:
            bad.append(path)
    return bad


def python_binds() -> list[tuple[str, str]]:
    """Read-only mounts the sandbox's Python needs: the installation, the virtual environment
    and the ``featurelab`` package (an editable install points outside site-packages)."""
    import featurelab

    paths = {
        Path(sys.base_prefix).resolve(),
        Path(sys.prefix).resolve(),
        Path(featurelab.__file__).resolve().parent,
    }
    # the interpreter a venv's bin/python links to may live outside base_prefix
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    binds = []
    for path in sorted(paths):
        if any(path != other and other in path.parents for other in paths):
            continue  # inside another bind
        binds.append((str(path), str(path)))
    return binds


def python_path() -> str | None:
    """The folder the grader imports ``featurelab`` from, when it is not in the environment's
    site-packages (an editable install, or the checkout's ``src`` the grader runs from): the
    sandbox's ``PYTHONPATH``, so the kernel imports the very package the grader bound, hashed
    into its resume key and judges with. Without it a venv installed from another checkout
    points the kernel at a folder the sandbox does not see (``No module named 'featurelab'``
    in every notebook)."""
    import featurelab

    folder = Path(featurelab.__file__).resolve().parent.parent
    inside_env = Path(sys.prefix).resolve() in folder.parents
    return None if inside_env else str(folder)


def _parents(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[: i + 1])) for i in range(1, len(parts) - 1)]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "lib", "lib64", "sbin", "lib32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return args


def command(spec: JailSpec, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` inside the sandbox described by ``spec``."""
    if spec.insecure:
        return list(argv)
    args = _namespace_args()
    args += _system_binds()
    args += _memory_filesystem_args()
    args += _bind_args(spec)
    args += [
        "--bind",
        str(spec.scratch),
        SCRATCH,
        "--chdir",
        SCRATCH,
        "--clearenv",
    ]
    for key, value in sorted(spec.env.items()):
        args += ["--setenv", key, value]
    args.append("--")
    args += _privilege_args(spec)
    return args + list(argv)


def _namespace_args() -> list[str]:
    """bubblewrap and its new namespaces (user namespace unless the grader is root)."""
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap]
    if os.geteuid() != 0:
        args.append("--unshare-user")
    args += [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]
    return args


def _memory_filesystem_args() -> list[str]:
    """/proc, /dev, a capped /dev/shm and a capped /tmp."""
    # Memory filesystems are size-capped: tmpfs pages are memory that no process's RSS shows.
    # /dev is bubblewrap's own tmpfs (half the machine's memory, owned by the sandbox's user
    # when the grader is not root): read-only but for a capped /dev/shm (POSIX shared memory,
    # e.g. DataLoader workers); device nodes still work.
    args = ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(SHM_SIZE_MB << 20), "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]
    # /tmp before the binds: a checkout, a venv or data under /tmp are bound on top of it
    args += ["--perms", "1777", "--size", str(TMP_SIZE_MB << 20), "--tmpfs", "/tmp"]
    return args


def _bind_args(spec: JailSpec) -> list[str]:
    """The read-only binds of ``spec`` and the runner, with the folders they need made first."""
    args: list[str] = []
    binds = [*spec.ro_binds, (str(RUNNER_DIR), SANDBOX_RUNNER)]
    made = {"/usr", "/etc", "/bin", "/lib", "/lib64", "/sbin", "/lib32", "/tmp", "/proc", "/dev"}
    for _host, inside in binds:
        for parent in _parents(inside):
            if parent not in made:
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
    for host, inside in binds:
        if Path(host).exists():
            args += ["--ro-bind", host, inside]
    return args


def _privilege_args(spec: JailSpec) -> list[str]:
    """``setpriv`` to the sandbox's user without capabilities (nothing when ``spec.uid`` is None)."""
    uid = spec.uid
    if uid is None:
        return []
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]


def prepare_scratch(spec: JailSpec) -> None:
    """Create the scratch folder, owned by the sandbox's user (when it has one of its own)."""
    spec.scratch.mkdir(parents=True, exist_ok=True)
    if spec.uid is not None:
        # never follow a link: on a retry the scratch holds what the student's code left there
        # (a link to a host file must not hand that file to the sandbox's user)
        for root, dirs, files in os.walk(spec.scratch):
            os.chown(root, spec.uid, spec.uid, follow_symlinks=False)
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                os.chown(os.path.join(root, name), spec.uid, spec.uid, follow_symlinks=False)
        os.chmod(spec.scratch, 0o700)


def preexec(spec: JailSpec):
    """``preexec_fn`` for the sandbox process: rlimits inherited by every descendant."""

    def apply() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        size = spec.max_file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        if spec.uid is not None:  # counted per uid: the sandbox's own uid
            resource.setrlimit(resource.RLIMIT_NPROC, (spec.max_processes, spec.max_processes))

    return apply
