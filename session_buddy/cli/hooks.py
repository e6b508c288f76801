"""``session-buddy hooks install|uninstall``: session-buddy's entries in Claude Code's
settings (:mod:`session_buddy.cli.claude_settings`). What the hooks run,
``session-buddy hook <Event>``, is :mod:`session_buddy.cli.hook_runtime` (kept free of typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from session_buddy.cli import claude_settings
from session_buddy.cli.hook_runtime import _settings_values, hook_command, run_hook

__all__ = ["hook_command", "hooks_app", "run_hook"]

hooks_app = typer.Typer(
    name="hooks",
    help="Install or remove session-buddy's Claude Code hooks (SessionStart → start + brief, "
    "UserPromptSubmit → recall, PreCompact → checkpoint, SessionEnd → end).",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        help="Project folder: hooks go to DIR/.claude/settings.local.json (this machine only, "
        "git-ignored)",
        file_okay=False,
    ),
]
UserOpt = Annotated[
    bool, typer.Option("--user", help="All projects: hooks go to ~/.claude/settings.json")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the change as a diff; write nothing")
]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Remove old hook entries from the shared settings.json without asking"
    ),
]


def _target(project: Path | None, user: bool) -> Path:
    try:
        return claude_settings.settings_file(project, user)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _show(plan: claude_settings.HookPlan, dry_run: bool) -> None:
    verb = "install" if plan.action == "install" else "remove"
    if not plan.changed:
        what = "already installed" if plan.action == "install" else "not installed"
        typer.echo(f"session-buddy hooks are {what} in {plan.path}; nothing to do.")
        return
    if dry_run:
        typer.echo(f"Would {verb} hooks for {', '.join(plan.events)} in {plan.path}:")
        typer.echo(plan.diff() or "(no textual change)")
        return
    done = "Installed" if plan.action == "install" else "Removed"
    extra = " (restored the file as it was before install)" if plan.restored_exactly else ""
    typer.echo(f"{done} session-buddy hooks for {', '.join(plan.events)} in {plan.path}{extra}.")


def _migrate(project: Path, state_dir: Path, dry_run: bool, yes: bool) -> bool:
    """Offer to remove the hook entries older versions wrote to the shared
    ``.claude/settings.json``. Returns False when they stay there (and so still run)."""
    shared = claude_settings.shared_settings_file(project)
    if not claude_settings.has_our_hooks(shared):
        return True
    plan = claude_settings.plan_uninstall(shared, state_dir)
    typer.echo(
        f"{shared} holds session-buddy hooks with this machine's paths (written by an older "
        "version); that file is shared with everyone who clones the project."
    )
    if dry_run:
        typer.echo(f"Would offer to remove them:\n{plan.diff()}")
        return True
    try:
        agreed = yes or typer.confirm("Remove them from the shared settings.json?", default=False)
    except typer.Abort:  # no answer (end of input)
        agreed = False
    if not agreed:
        typer.echo(f"Kept them in {shared.name}.")
        return False
    claude_settings.apply_plan(plan, state_dir)
    _show(plan, False)
    return True


@hooks_app.command("install")
def install(
    project: ProjectOpt = None,
    user: UserOpt = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Add the hooks to settings.local.json (--project) or ~/.claude/settings.json (--user),
    keeping every hook already there. Running it twice changes nothing."""
    path = _target(project, user)
    ignored_by = None
    try:
        data_dir = _settings_values().data_dir
        if project is not None and not _migrate(project, data_dir / "hooks", dry_run, yes):
            typer.echo("They still run, so nothing is added to settings.local.json.")
            return
        plan = claude_settings.plan_install(path)
        if not dry_run:
            claude_settings.apply_plan(plan, data_dir / "hooks")
            if project is not None:
                ignored_by = claude_settings.ensure_git_ignored(path)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(plan, dry_run)
    if ignored_by is not None:
        typer.echo(f"git now ignores {path.name} (a line in {ignored_by}).")


@hooks_app.command("uninstall")
def uninstall(
    project: ProjectOpt = None,
    user: UserOpt = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Remove exactly the hooks install added (the file is restored byte for byte when it was
    not edited since); with --project, also offer to remove those an older version wrote
    to the shared settings.json."""
    path = _target(project, user)
    try:
        data_dir = _settings_values().data_dir
        plan = claude_settings.plan_uninstall(path, data_dir / "hooks")
        if not dry_run:
            claude_settings.apply_plan(plan, data_dir / "hooks")
        _show(plan, dry_run)
        if project is not None:
            _migrate(project, data_dir / "hooks", dry_run, yes)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
