"""`shipsft sync RUN`: send a finished run's trackers what they did not receive (a tracking server still down when
the run ended): the metrics.jsonl records from the first one each missed (trackers.json `pending`), the run's files
as artifacts, and the run's end status, into the same tracker runs.

    lines, ok = sync(RunFolder(Path("runs/quickstart")), load_config(folder.config).track)
"""
from __future__ import annotations

from shipsft.config import TrackConfig
from shipsft.runs.jsonio import jsonl_records, read_json
from shipsft.runs.layout import RunFolder
from shipsft.runs.trackers import Resume, build_trackers, run_files


def pending_of(folder: RunFolder) -> dict[str, dict]:
    recorded = read_json(folder.trackers) if folder.trackers.exists() else {}
    return {name: state["pending"] for name, state in recorded.items()
            if isinstance(state, dict) and state.get("pending")}


def sync(folder: RunFolder, track: TrackConfig) -> tuple[list[str], bool]:
    """(lines saying what was sent, True when every tracker received everything)."""
    pending = pending_of(folder)
    if not pending:
        return [f"{folder.root}: every tracker received the whole run; nothing to send"], True
    trackers = build_trackers(track.model_copy(update={"sinks": [n for n in track.sinks if n in pending]}), folder,
                              resumed=True)
    end = folder.metrics.stat().st_size if folder.metrics.exists() else 0
    trackers.start(Resume(offset=end))  # queues the records from each tracker's first missed one to the end
    files = run_files(folder)
    for box in trackers.boxes:
        if pending[box.name].get("artifacts"):
            box.put("artifacts", files)
    status = next((p["status"] for p in pending.values() if p.get("status")), "FINISHED")
    trackers.close(status)
    failed = {line.split()[1] for line in trackers.problems}
    lines = [f"tracking: {name} received what it missed: {what(folder, p)}; status {status}"
             for name, p in pending.items() if name not in failed]
    return lines + trackers.problems, not trackers.problems


def what(folder: RunFolder, pending: dict) -> str:
    parts = []
    if pending.get("from") is not None:
        records = jsonl_records(folder.metrics, pending["from"])
        steps = [r["step"] for _, r in records if isinstance(r.get("step"), int)]
        parts.append(f"{len(records)} metric records (steps {min(steps)}-{max(steps)})" if steps else "no metrics")
    if pending.get("artifacts"):
        parts.append("the run's files")
    return ", ".join(parts) or "its end of run"
