"""Deleting your own account from the settings page (password confirmation, CSRF)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, Length

from shared import retention
from web import accounts, privacy, throttle, users
from web.views.auth import EmptyForm, TokenForm

bp = Blueprint("account", __name__)


class DeleteAccountForm(FlaskForm):
    """The password, again: a session left open must not be enough to delete everything."""

    password = PasswordField("Your password", validators=[DataRequired(), Length(max=256)])


def _settings_page(error: str, status: int):
    return render_template("auth/settings.html", tokens=users.list_tokens(current_user.id), form=TokenForm(),
                           empty=EmptyForm(), new_token=None, delete_error=error), status


@bp.post("/settings/retention")
@login_required
def set_retention():
    """How long this account's new uploads are kept, and whether only their footage is deleted then."""
    try:
        days = privacy.parse_days(request.form.get("retention_days"))
        if request.form.get("use_default"):
            retention.clear_for_account(current_user.id)
        else:
            retention.set_for_account(current_user.id, days, bool(request.form.get("keep_statistics")))
        flash("Saved: clips you upload from now on are kept as set here (each clip's page can change it).")
    except ValueError as e:
        flash(str(e))
    return redirect(url_for("auth.settings") + "#retention", 303)


@bp.post("/settings/delete")
@login_required
def delete():
    """Delete the account with every clip and token, then log out."""
    form = DeleteAccountForm()
    if not form.validate_on_submit():  # (a missing CSRF token is refused before: web/errors.py)
        return _settings_page("Enter your password to delete your account.", 400)
    # Counted as failed logins: this form must not become a way around the login throttle.
    wait = throttle.wait_seconds(current_user.username, request.remote_addr)
    if wait:
        return _settings_page("Too many wrong passwords: try again in a few minutes.", 429)
    if users.authenticate(current_user.username, form.password.data) is None:
        throttle.failed(current_user.username, request.remote_addr)
        return _settings_page("That is not your password; nothing was deleted.", 400)
    try:
        n = accounts.delete_account(current_user._get_current_object())
    except accounts.StillRunning as e:
        return _settings_page(str(e), 409)
    logout_user()
    session.clear()
    flash(f"Your account is deleted, with {n} clip{'s' if n != 1 else ''} and all their data.")
    return redirect(url_for("auth.login"), 303)
