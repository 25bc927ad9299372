"""Create an admin from the command line: `flask --app web.app create-admin NAME` or
`python -m web.admin create NAME` (asks for the password, or reads it with --password-stdin)."""

from __future__ import annotations

import sys

import click

from web import users


def _read_password(from_stdin: bool, needed: bool) -> str | None:
    """The password from stdin's first line or a hidden prompt (twice); None to keep the old one."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not needed:
        return click.prompt("New password (empty keeps the current one)", hide_input=True,
                            confirmation_prompt=True, default="", show_default=False) or None
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def make_admin(username: str, password_stdin: bool) -> None:
    """Create the admin, or promote an existing user; exits 1 with the reason when refused."""
    from shared.db import get_db

    exists = get_db().users.find_one({"username": users.normalize(username)}) is not None
    password = _read_password(password_stdin, needed=not exists)
    try:
        user, created = users.make_admin(username, password)
    except users.AccountError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{'created admin' if created else 'made admin'} {user.username} (id {user.id})")


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin_command(username: str, password_stdin: bool) -> None:
    """Create an admin user (or promote an existing one)."""
    make_admin(username, password_stdin)


@click.group()
def cli() -> None:
    """Maskwatch web administration."""


@cli.command("create")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create(username: str, password_stdin: bool) -> None:
    """Create an admin user (or promote an existing one)."""
    make_admin(username, password_stdin)


if __name__ == "__main__":
    cli()
