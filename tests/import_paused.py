"""``python -m tests.import_paused POINT:N``: the shared service (``session-buddy service``),
its imports paused for good after the N-th stored batch: ``store:N`` before its offset is
saved, ``batch:N`` after. It writes "import paused at POINT:N" to its original stderr (the
service sends its own output to its log) and sleeps, so a test can kill the writer at a known
point while ``import claude-code`` waits on it. The pause is patched in here: production code
carries no test hook."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from session_buddy.core.capture import CaptureService


def main() -> None:
    point, _, number = sys.argv.pop(1).partition(":")
    wanted = int(number)
    save = CaptureService._save
    told = os.fdopen(os.dup(2), "w")  # still the test's pipe once the service logs to a file

    def pause(at: str) -> None:
        told.write(f"import paused at {at}:{wanted}\n")
        told.flush()
        time.sleep(3600)

    async def paused_save(self: CaptureService, *args: Any, **kwargs: Any) -> None:
        # _store_batch counts the batch, then saves its offset
        at_batch = self._batches_done == wanted
        if at_batch and point == "store":
            pause(point)
        await save(self, *args, **kwargs)
        if at_batch and point == "batch":
            pause(point)

    CaptureService._save = paused_save  # type: ignore[method-assign]
    from session_buddy.server.http import run_service
    from session_buddy.settings import load_settings

    raise SystemExit(run_service(load_settings().settings))


if __name__ == "__main__":
    main()
