"""``session-buddy key generate``: a new key for encryption at rest (storage.encryption).

The key is written to an owner-only file (mode 0600, never overwritten); the settings then
name the file (``storage.key_file``) or the key goes into ``$SESSION_BUDDY_KEY``. Nothing
here opens the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from session_buddy.cli._common import out, print_error
from session_buddy.errors import SessionBuddyError

key_app = typer.Typer(no_args_is_help=True, add_completion=False)


@key_app.command("generate")
def generate(
    path: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Where to write the key (default: storage.key in the user's config folder, "
            "~/.config/session-buddy); an existing file is never overwritten",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a new random 256-bit key (base64) to an owner-only file and say how to use it."""
    from session_buddy.adapters.storage._cipher import generate_key_file
    from session_buddy.settings import user_config_dir

    try:
        written = generate_key_file(path or (user_config_dir() / "storage.key"))
    except (SessionBuddyError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    out.print(
        f"wrote a new key to {written} (mode 0600). Use it with\n"
        "  storage:\n"
        "    encryption: aes-gcm\n"
        f"    key_file: {written}\n"
        "in a settings file (or SESSION_BUDDY_STORAGE__ENCRYPTION=aes-gcm and "
        f"SESSION_BUDDY_STORAGE__KEY_FILE={written}). Keep a copy somewhere safe: the "
        "memories encrypted with it cannot be read without it.",
        markup=False,
        highlight=False,
    )
