"""The exception tree. Core code raises these; only `cli.py` turns them into a
message, an optional hint and an exit code.

    LlmdeployError                 exit 1   anything we raise on purpose
    ├── InputError                 exit 2   bad input the user can fix
    │   └── ProfileError                    ... located at file:line field.path
    ├── StartError                 exit 3   the engine did not become ready
    ├── PreflightError             exit 4   refused before anything started
    ├── StopError                  exit 5   something survived `down`
    ├── NotFoundError              exit 6   no such deployment / model file
    ├── ConflictError              exit 7   the deployment is already running
    ├── CheckError                 exit 8   a smoke check failed
    ├── HubError                   exit 9   a download failed (network, hub, integrity)
    │   └── IntegrityError                  ... a file never matched its published hash
    └── GateError                  exit 10  a `bench --fail-if` gate failed (made for CI)
"""

from __future__ import annotations


class LlmdeployError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Multi-line context (e.g. the engine's last log lines), printed before the message.
        self.details = details


class InputError(LlmdeployError):
    exit_code = 2


class ProfileError(InputError):
    """A problem located in a profile file: rendered as `file:line field.path: message`."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.file = file
        self.line = line
        self.field = field
        self.reason = message
        where = file if line is None else f"{file}:{line}"
        prefix = f"{where} {field}" if field else where
        super().__init__(f"{prefix}: {message}", hint=hint)


class StartError(LlmdeployError):
    exit_code = 3


class PreflightError(LlmdeployError):
    exit_code = 4


class StopError(LlmdeployError):
    exit_code = 5


class NotFoundError(LlmdeployError):
    exit_code = 6


class ConflictError(LlmdeployError):
    exit_code = 7


class CheckError(LlmdeployError):
    exit_code = 8


class HubError(LlmdeployError):
    exit_code = 9


class IntegrityError(HubError):
    pass


class GateError(LlmdeployError):
    """A benchmark figure crossed a `--fail-if` threshold; the message names the figure."""

    exit_code = 10
