"""What one stage run hands back to the flow, wherever it ran (JSON-able: also a deployment parameter)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from flows.runner import CommandResult

Status = Literal["ran", "up to date", "restored from run-cache"]


class StageOutcome(BaseModel):
    stage: str
    status: Status
    seconds: float = 0.0
    # The stage's dvc.lock entry: the hashes `dvc pull` needs on another machine.
    lock: dict[str, Any] = Field(default_factory=dict)
    # Small files the DVC remote does not carry: `cache: false` outputs (metrics) and runs/<stage>.json.
    files: dict[str, str] = Field(default_factory=dict)
    where: str = "in-process"  # or the deployment that ran it
    flow_run_id: str | None = None  # the deployment's flow run, when dispatched


def status_from_output(stage: str, output: str) -> Status:
    """What `dvc repro` did, from its own words."""
    if f"Stage '{stage}' is cached - skipping run" in output:
        return "restored from run-cache"
    if f"Running stage '{stage}'" in output:
        return "ran"
    return "up to date"


class StageFailed(RuntimeError):
    """A DVC command or stage exited non-zero; the message ends with the command's last output lines."""

    def __init__(self, what: str, result: CommandResult, lines: int = 15) -> None:
        tail = "\n".join(result.tail[-lines:])
        super().__init__(f"{what} failed (exit {result.returncode}):\n{tail}")
        self.what, self.result, self.lines = what, result, lines

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with its constructor arguments (Prefect or Dask may move it between processes).
        return type(self), (self.what, self.result, self.lines)


class StageUserError(StageFailed):
    """The stage rejected its input (exit 2 with a one-line `error:`): retrying cannot help."""


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    return not isinstance(getattr(state, "data", None), StageUserError)
