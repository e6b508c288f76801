"""``python -m tests.import_paused POINT:N claude-code ...``: the ``import`` CLI, paused for
good after the N-th stored batch: ``store:N`` before its offset is saved, ``batch:N`` after.
It writes "import paused at POINT:N" to stderr and sleeps, so a test can kill it at a known
point. The pause is patched in here: production code carries no test hook."""

from __future__ import annotations

import sys
import time
from typing import Any

from session_buddy.core.capture import CaptureService


def main() -> None:
    point, _, number = sys.argv.pop(1).partition(":")
    wanted = int(number)
    save = CaptureService._save

    def pause(at: str) -> None:
        sys.stderr.write(f"import paused at {at}:{wanted}\n")
        sys.stderr.flush()
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
    from session_buddy.cli.imports import import_app

    import_app()


if __name__ == "__main__":
    main()
