"""Accounts: register, log in, log out, and the settings page where API tokens are made."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from web import throttle, users

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class RegisterForm(FlaskForm):
    """A new account."""

    username = StringField("Username", validators=[
        DataRequired(), Length(min=3, max=32, message="Usernames have 3 to 32 characters.")])
    password = PasswordField("Password", validators=[DataRequired(), Length(
        min=users.MIN_PASSWORD, max=256,
        message=f"The password needs at least {users.MIN_PASSWORD} characters.")])
    confirm = PasswordField("Repeat the password",
                            validators=[DataRequired(), EqualTo("password", "The passwords differ.")])


class TokenForm(FlaskForm):
    """A name for a new API token."""

    name = StringField("Token name", validators=[DataRequired(), Length(max=80)])


class EmptyForm(FlaskForm):
    """Buttons that only need CSRF protection (log out, revoke)."""


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would let a link send users elsewhere after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("clips.index")


def _start_session(user: users.User) -> None:
    session.clear()  # a fresh session for the new identity
    session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME
    login_user(user)


@bp.route("/register", methods=["GET", "POST"])
def register():
    """Create an account and sign in."""
    if current_user.is_authenticated:
        return redirect(url_for("clips.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = users.create(form.username.data, form.password.data)
        except users.AccountError as e:
            form.username.errors.append(str(e))
        else:
            _start_session(user)
            flash(f"Welcome, {user.username}.")
            return redirect(url_for("clips.index"), 303)
    status = 400 if form.errors else 200
    return render_template("auth/register.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with username and password."""
    form = LoginForm()
    if form.validate_on_submit():
        wait = throttle.wait_seconds(form.username.data, request.remote_addr)
        if wait:
            minutes = max(1, -(-wait // 60))
            form.password.errors.append(
                f"Too many failed logins for this account or from this address: try again in "
                f"{minutes} minute{'s' if minutes > 1 else ''}.")
            return render_template("auth/login.html", form=form), 429
        user = users.authenticate(form.username.data, form.password.data)
        if user is None:
            throttle.failed(form.username.data, request.remote_addr)
            form.password.errors.append("Unknown username or wrong password.")
        else:
            throttle.succeeded(form.username.data)
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")), 303)
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End the session (a POST, so another site cannot log you out)."""
    if EmptyForm().validate_on_submit():
        logout_user()
        session.clear()
        flash("You are logged out.")
    return redirect(url_for("auth.login"), 303)


@bp.get("/settings")
@login_required
def settings():
    """The account page: API tokens."""
    return render_template("auth/settings.html", tokens=users.list_tokens(current_user.id),
                           form=TokenForm(), empty=EmptyForm(), new_token=None)


@bp.post("/settings/tokens")
@login_required
def create_token():
    """Make an API token; its value is shown once and only its hash is kept."""
    form = TokenForm()
    if not form.validate_on_submit():
        return render_template("auth/settings.html", tokens=users.list_tokens(current_user.id),
                               form=form, empty=EmptyForm(), new_token=None), 400
    token, doc = users.create_token(current_user.id, form.name.data)
    resp = render_template("auth/settings.html", tokens=users.list_tokens(current_user.id),
                           form=TokenForm(formdata=None), empty=EmptyForm(), new_token=token,
                           new_token_name=doc["name"])
    return resp, 201, {"Cache-Control": "no-store"}


@bp.post("/settings/tokens/<token_id>/revoke")
@login_required
def revoke_token(token_id):
    """Revoke one of your tokens."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    if not users.revoke_token(current_user.id, token_id):
        abort(404)
    flash("The token is revoked.")
    return redirect(url_for("auth.settings"), 303)
