"""User-facing errors: each names the file, the line/example and the fix, and maps to an exit code.

The CLI catches `ShipError` subclasses and prints their lines without a traceback; anything else is a bug
in shipsft and keeps its traceback.
"""
from __future__ import annotations


class ShipError(Exception):
    """A problem with the user's input. `lines` are printed one per line; `exit_code` is the process status."""

    exit_code = 2

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(ShipError):
    """Invalid run configuration."""


class DataError(ShipError):
    """Invalid training or eval data (file:line named in every line)."""


class TemplateError(ShipError):
    """The chat template is missing, raises, or cannot be trained on safely."""


class AuditFailed(ShipError):
    """The pre-flight audit found errors; training refuses to start."""

    exit_code = 1


class NotPromoted(ShipError):
    """No checkpoint passed every gate."""

    exit_code = 3


class TrainingDiverged(ShipError):
    """The loss or gradient stayed non-finite for several optimizer steps in a row."""

    exit_code = 4


class HubError(ShipError):
    """A Hugging Face Hub repository could not be read or written (not cached while offline, unreachable, gated,
    private or missing, no token)."""


def hub_error(exc: BaseException, key: str, repo_id: str, repo_type: str, revision: str | None, cache: str,
              offline: bool) -> HubError:
    """One line with the fix for what huggingface_hub raised while resolving `repo_id` (`repo_type` "model" or
    "dataset") named by the config key `key`."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    what = f"{repo_type} {repo_id}" + (f" (revision {revision})" if revision else "")
    url = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    login = "log in with `hf auth login` or set HF_TOKEN"
    get = f"hf download {repo_id}" + (" --repo-type dataset" if repo_type == "dataset" else "") + \
        (f" --revision {revision}" if revision else "")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{key}: {what}: no such revision on the Hub. Fix: a branch, tag or commit listed at {url}")
    if isinstance(exc, GatedRepoError):
        return HubError(f"{key}: {what} is gated. Fix: accept its terms at {url}, then {login} (a token of the "
                        "account that accepted)")
    if isinstance(exc, RepositoryNotFoundError) or (
            isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", None) in (401, 403)):
        return HubError(f"{key}: {what} is not on the Hub, or it is private, and no local folder has that name. Fix: "
                        f"check the id ({url}) or the path; for a private repository {login} with an account that can "
                        "read it")
    if isinstance(exc, LocalEntryNotFoundError) or isinstance(exc, (ConnectionError, TimeoutError)):
        if offline:
            return HubError(f"{key}: {what} is not in the Hugging Face cache (searched {cache}), no local folder has "
                            "that name, and HF_HUB_OFFLINE=1 forbids downloading it. Fix: run once with network "
                            f"access (unset HF_HUB_OFFLINE), or `{get}` where there is one, or check the path")
        return HubError(f"{key}: {what} is not in the Hugging Face cache (searched {cache}) and the Hub cannot be "
                        f"reached ({type(exc).__name__}). Fix: connect to the network (or set HF_ENDPOINT to a "
                        f"mirror), or `{get}` where there is one")
    return HubError(f"{key}: {what}: the Hub refused it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
