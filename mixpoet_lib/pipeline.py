"""The reproduction runner: every numbered notebook in order with papermill, resumable, then a report.

``mixpoet reproduce`` executes ``notebooks/NN_*.ipynb`` into a run folder (never over the source notebooks),
injecting ``PROFILE``, ``RUN_DIR`` (relative to the notebooks' folder, so no machine path is stored),
``OVERRIDES`` (settings changed with ``--set``, in the text form of :func:`mixpoet_lib.overrides.parse_overrides`)
and ``TRAIN=True``: a reproduction trains from scratch, while a student's "run all" loads the published weights
(``MIXPOET_PUBLISHED=1`` makes the pipeline load them too). Executed copies are cleaned of widget state and
frozen progress bars (:func:`clean_notebook`). A user's run goes to ``runs/<run>-local/`` (not tracked by
git), with its figures inside it, so the committed reference run ``runs/<run>/`` and ``figures/`` stay as
published; ``reference=True`` (or that folder as ``out_dir``) regenerates the reference deliberately.

A notebook is skipped when its *inputs* are unchanged since its last successful run: its own file, the library
code, the profile with its overrides, and the outputs of the notebooks before it (chained through their input
hashes). Each notebook executes into a temporary copy that replaces ``NN_name.ipynb`` only when it succeeds:
a failure (or an interrupt) keeps the last good copy, leaves the partial one as ``NN_name.failed.ipynb``,
records the status in ``state.json``, rewrites the report and stops, naming the notebook and the cell.
The kernels talk over IPC sockets (POSIX) and write their own log to ``kernel_logs/`` instead of the terminal.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixpoet_lib._util import default_device, write_json_atomic
from mixpoet_lib.checkpoints import PRETRAINED_PHASES, checkpoint_path, use_published_default
from mixpoet_lib.config import FIRST_STAGE_OF, Profile, get_profile, resolve_profile_name
from mixpoet_lib.overrides import run_name
from mixpoet_lib.paths import ENV_FIGURES, ENV_PROFILE, figures_dir, repo_root, run_path
from mixpoet_lib.run_report import failed_copy, write_report
from mixpoet_lib.train.logs import log_path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar, e.g. " 40%|████      | 2/5"


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


class PipelineInterrupted(PipelineError):
    """The run was interrupted (Ctrl-C) while a notebook executed; the message names it."""


@dataclass
class NotebookRun:
    """What happened to one notebook in a pipeline run."""

    name: str
    status: str  # "ran", "skipped" (inputs unchanged), "failed"
    seconds: float
    input_hash: str


def default_profile_name() -> str:
    """$MIXPOET_PROFILE when set (as for every command), else 'full' with a CUDA device, else 'tutorial'."""
    if os.environ.get(ENV_PROFILE):
        return resolve_profile_name()
    return "full" if default_device().type == "cuda" else "tutorial"


def reference_dir(profile: str, overrides: str = "") -> Path:
    """The committed reference run of a profile (and overrides): ``runs/<run>/`` (not created here)."""
    return run_path(run_name(profile, overrides))


def local_run_dir(profile: str, overrides: str = "") -> Path:
    """Where a user's ``mixpoet reproduce`` writes by default: ``runs/<run>-local/`` (ignored by git; not created
    here)."""
    return run_path(f"{run_name(profile, overrides)}-local")


def _copy_timing_row(src: Path, out: Path, key: str) -> None:
    """Append ``key``'s row of ``src``'s logs/timing.csv to ``out``'s (with the header where it is new)."""
    source, target = src / "logs" / "timing.csv", out / "logs" / "timing.csv"
    if not source.exists():
        return
    lines = source.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines[1:] if line.split(",", 1)[0] == key]
    if not rows:
        return
    if not target.exists():
        target.write_text(lines[0] + "\n", encoding="utf-8")
    with target.open("a", encoding="utf-8") as f:
        f.write(rows[-1] + "\n")


def adopt_first_stage(profile_name: str, out: Path, sources: list[Path] | None = None) -> list[str]:
    """Copy the pre-trained phases (DAE, classifiers) a profile shares with another (``config.FIRST_STAGE_OF``) into
    the run folder ``out``: checkpoint, logs and timing row, from that profile's own run (``runs/<base>-local/``,
    else its reference run ``runs/<base>/``). Phases ``out`` already has are left alone, and training still checks
    every checkpoint's signature, so a copy from another seed or recipe is trained again. Returns the phases copied.
    """
    base = FIRST_STAGE_OF.get(profile_name)
    if base is None:
        return []
    found = sources if sources is not None else [local_run_dir(base), reference_dir(base)]
    copied = []
    for name, phase in PRETRAINED_PHASES:
        src = next((d for d in found if checkpoint_path(d, name, phase).exists()), None)
        if src is None or checkpoint_path(out, name, phase).exists():
            continue
        for a, b in (
            (checkpoint_path(src, name, phase), checkpoint_path(out, name, phase)),
            (log_path(src, name, phase), log_path(out, name, phase)),
            (log_path(src, name, phase, valid=True), log_path(out, name, phase, valid=True)),
        ):
            if a.exists():
                b.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(a, b)
        _copy_timing_row(src, out, f"{name}_{phase}")
        copied.append(f"{name}_{phase} from {src}")
    return copied


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """Return the numbered notebooks (``NN_*.ipynb``) in execution order."""
    folder = folder or repo_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def library_hash() -> str:
    """Return a hash of the library's source files (a change re-runs every notebook)."""
    root = repo_root() / "mixpoet_lib"
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):  # every sub-package too: an edit anywhere re-runs the notebooks
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def input_hash(notebook: Path, profile: Profile, upstream: str, lib: str, overrides: str = "") -> str:
    """Return the hash of everything a notebook's outputs depend on (``overrides`` counts only when given, so
    runs without overrides keep their hashes)."""
    h = hashlib.sha256()
    for part in (notebook.read_bytes(), profile.digest().encode(), upstream.encode(), lib.encode()):
        h.update(part)
    if overrides:
        h.update(b"overrides\0" + overrides.encode())
    return h.hexdigest()[:16]


def notebook_parameters(notebook: Path) -> set[str]:
    """The names assigned in a notebook's cell tagged ``parameters`` (what papermill can inject)."""
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(notebook, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return set()
    return set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", cell.source, flags=re.MULTILINE))


def _relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (with ``..`` where needed), or absolute when no relative path exists."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path)


def notebook_inputs(notebook: Path, profile: Profile, out: Path, overrides: str) -> dict[str, Any]:
    """The parameters to inject: ``PROFILE`` and ``RUN_DIR`` always, ``OVERRIDES`` and ``TRAIN`` where the notebook
    declares them.

    ``RUN_DIR`` is given relative to the notebook's folder (papermill runs there). ``TRAIN`` is True unless
    $MIXPOET_PUBLISHED asks for the published weights. A notebook without an ``OVERRIDES`` parameter runs as before
    when there are no overrides; asked to apply some, it raises :class:`PipelineError` instead of ignoring them.
    """
    params: dict[str, Any] = {"PROFILE": profile.name, "RUN_DIR": _relative_to(out, notebook.parent)}
    declared = notebook_parameters(notebook)
    if "TRAIN" in declared:
        params["TRAIN"] = not use_published_default()
    if "OVERRIDES" in declared:
        params["OVERRIDES"] = overrides
    elif overrides:
        raise PipelineError(
            f"{notebook.name} has no OVERRIDES parameter, so it cannot apply the settings "
            f"{overrides!r}; run it without --set or add OVERRIDES to its parameters cell"
        )
    return params


def clean_notebook(nb: Any) -> Any:
    """Drop what must not be stored in a notebook (in place; returns it): widget state in the metadata, widget
    views among the outputs (a progress bar or an ``interact`` form that shows nothing once the kernel is gone) and
    progress-bar text printed to stderr."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        cell.outputs = [
            out
            for out in cell.outputs
            if WIDGET_VIEW not in out.get("data", {})
            and not (out.get("output_type") == "stream" and out.get("name") == "stderr" and PROGRESS.search(out.text))
        ]
    return nb


def clean_notebook_file(path: Path) -> None:
    """:func:`clean_notebook` on a notebook file, rewritten only when something was dropped."""
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    if nbformat.writes(clean_notebook(nb)) != before:
        nbformat.write(nb, path)


def _failing_cell(nb_path: Path) -> str:
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(nb_path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
                return f"cell {index} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


def _kernel_manager(log_path: Path, env: dict[str, str]) -> type:
    """A kernel manager class for one notebook: IPC sockets on POSIX (no "Kernel is running over TCP without
    encryption" warning), the kernel's own stderr in ``log_path`` instead of the terminal, ``env`` added to its
    environment. (nbclient takes a class, so the settings live on it.)"""
    from jupyter_client.manager import AsyncKernelManager  # optional dependency (notebooks extra), like papermill
    from traitlets import CaselessStrEnum

    class RunKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc" if os.name == "posix" else "tcp", config=True)

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**kw.get("env", os.environ), **env}
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                kw.setdefault("stderr", log)
                await AsyncKernelManager.start_kernel(self, **kw)

    return RunKernelManager


def run_pipeline(
    profile_name: str | None = None,
    force: bool = False,
    out_dir: Path | None = None,
    notebooks: list[Path] | None = None,
    log: Callable[[str], Any] = print,
    progress: bool = True,
    overrides: str = "",
    reference: bool = False,
    watch: Callable[[str, Path], AbstractContextManager[Any]] | None = None,
) -> list[NotebookRun]:
    """Execute the notebooks in order (skipping unchanged ones unless ``force``) and write the report.

    ``overrides`` (e.g. ``"model.latent_size=64"``) changes settings of the profile; it is checked here, passed
    to every notebook as ``OVERRIDES`` and is part of each notebook's input hash. The run goes to ``out_dir``,
    else the reference folder when ``reference``, else :func:`local_run_dir`. ``watch(notebook name, path of
    the copy being executed)``, when given, is entered around each execution (the live status line of
    ``mixpoet reproduce``) and replaces papermill's progress bar.
    """
    profile = get_profile(profile_name or default_profile_name(), overrides)  # bad overrides fail before any run
    ref = reference_dir(profile.name, overrides)
    out = Path(out_dir) if out_dir else ref if reference else local_run_dir(profile.name, overrides)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()  # papermill runs the kernel (and its own writes) from the notebooks folder
    is_ref = out.resolve() == ref.resolve()
    for copied in adopt_first_stage(profile.name, out) if not overrides else []:
        log(f"reusing the pre-trained phase {copied} (config.FIRST_STAGE_OF)")
    figures = figures_dir(run_name(profile.name, overrides)) if is_ref else out / "figures"
    state_path = out / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    books = notebooks if notebooks is not None else notebook_paths()
    if not books:
        raise PipelineError("no notebooks found to run")
    lib, upstream, runs = library_hash(), "", []
    try:
        for i, nb in enumerate(books, start=1):
            key = input_hash(nb, profile, upstream, lib, overrides)
            previous = state.get(nb.name, {})
            if (
                not force
                and previous.get("input_hash") == key
                and previous.get("status") == "ok"
                and (out / nb.name).exists()
            ):
                log(f"[{i}/{len(books)}] {nb.name}: inputs unchanged, skipped")
                runs.append(NotebookRun(nb.name, "skipped", previous.get("seconds", 0.0), key))
            else:
                log(f"[{i}/{len(books)}] {nb.name}: running (profile {profile.name})")
                params = notebook_inputs(nb, profile, out, overrides)
                job = _Job(nb, out, params, key, {ENV_FIGURES: str(figures)}, progress and watch is None)
                with watch(nb.name, job.running) if watch is not None else contextlib.nullcontext():
                    seconds = _execute(job, state)
                runs.append(NotebookRun(nb.name, "ran", seconds, key))
                log(f"[{i}/{len(books)}] {nb.name}: done in {seconds:.0f} s")
            upstream = key
    finally:  # also after a failure: the report must not keep saying "ok" for a notebook that just failed
        write_report(profile, out, state, books, overrides, figures, None if is_ref else ref)
    return runs


@dataclass
class _Job:
    """One notebook to execute: source, run folder, parameters, input hash, kernel environment, progress bar."""

    nb: Path
    out: Path
    params: dict[str, Any]
    key: str
    env: dict[str, str]
    progress: bool

    @property
    def target(self) -> Path:
        """The executed notebook, replaced only by a successful run."""
        return self.out / self.nb.name

    @property
    def running(self) -> Path:
        """The copy papermill writes while the notebook executes."""
        return self.out / f"{self.nb.stem}.running{self.nb.suffix}"

    @property
    def kernel_log(self) -> Path:
        """The kernel's own log (its stderr: start-up messages, crashes), not the notebook's output."""
        return self.out / "kernel_logs" / f"{self.nb.stem}.log"


def _execute(job: _Job, state: dict[str, Any]) -> float:
    """Run one notebook with papermill into a temporary copy, move it into place on success, record the outcome
    in ``state.json``; return its seconds. A failure or an interrupt keeps the partial copy as ``*.failed.ipynb``.
    """
    import papermill as pm  # optional dependency (notebooks extra), heavy; only ``reproduce`` runs notebooks

    state_path, name = job.out / "state.json", job.nb.name
    t0 = time.perf_counter()
    try:
        with _quiet_libraries():
            pm.execute_notebook(
                str(job.nb),
                str(job.running),
                parameters=job.params,
                kernel_name="python3",
                cwd=str(job.nb.parent),
                progress_bar=job.progress,
                log_output=False,
                kernel_manager_class=_kernel_manager(job.kernel_log, job.env),
            )
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        partial = _keep_partial(job)
        state[name] = {
            "input_hash": job.key,
            "status": "interrupted" if interrupted else "failed",
            "seconds": round(time.perf_counter() - t0, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **_earlier_attempts(state.get(name, {})),
        }
        write_json_atomic(state_path, state, sort_keys=False)
        if interrupted:
            raise PipelineInterrupted(f"interrupted while running {name}; partial notebook kept at {partial}") from None
        if not isinstance(exc, Exception):
            raise
        failed = isinstance(exc, pm.PapermillExecutionError)
        where = _failing_cell(Path(partial)) if failed else _kernel_failure(exc, job)
        raise PipelineError(f"{name} failed at {where}; partial notebook kept at {partial}") from None
    clean_notebook_file(job.running)
    os.replace(job.running, job.target)
    failed_copy(job.target).unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    state[name] = {
        "input_hash": job.key,
        "status": "ok",
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        **_earlier_attempts(state.get(name, {})),
    }
    write_json_atomic(state_path, state, sort_keys=False)
    return seconds


def _earlier_attempts(previous: dict[str, Any]) -> dict[str, Any]:
    """``{"earlier_attempts": [...]}`` when the notebook's previous outcome was a failure or an interrupt: the time
    spent in attempts that did not finish stays in ``state.json`` (and the report) after a re-run succeeds."""
    if previous.get("status") not in ("failed", "interrupted"):
        return {}
    attempt = {k: previous[k] for k in ("status", "seconds", "finished") if k in previous}
    return {"earlier_attempts": [*previous.get("earlier_attempts", []), attempt]}


def _keep_partial(job: _Job) -> str:
    """Move the partially executed copy to ``*.failed.ipynb`` (the last good ``NN_name.ipynb`` stays); say where."""
    partial = failed_copy(job.target)
    if not job.running.exists():
        return "nowhere (the kernel did not start)"
    clean_notebook_file(job.running)
    os.replace(job.running, partial)
    return str(partial)


def _kernel_failure(exc: Exception, job: _Job) -> str:
    """What to say when the kernel itself failed (died, would not start) rather than a cell raising."""
    text = str(exc).strip().splitlines()
    return f"the kernel ({type(exc).__name__}: {text[0] if text else ''}; kernel log: {job.kernel_log})"


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep library chatter off the terminal while a notebook runs: asyncio's "Task exception was never
    retrieved" (left by a kernel torn down mid-message on an interrupt; reported when the orphaned tasks are
    collected) and papermill's warnings about the parameters cell (typed parameters it cannot parse)."""
    quiet = {"asyncio": logging.CRITICAL, "papermill": logging.ERROR}  # papermill's errors still show
    loggers = [logging.getLogger(name) for name in quiet]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(quiet[lg.name])
    try:
        yield
    finally:
        gc.collect()  # let the orphaned tasks report while the loggers are quiet
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
