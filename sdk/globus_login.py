"""``fabric login --globus``: a Globus Auth access token for the service, by one of two flows.

* Unattended (a robot, a CI job, a workflow system): with ``FABRIC_GLOBUS_CLIENT_ID`` and
  ``FABRIC_GLOBUS_CLIENT_SECRET`` in the environment, the token is the confidential
  client's own, from a client-credentials grant.
* Interactive: the native-app flow of the public client ``native_client_id``: the user
  opens the printed authorize URL, logs in, consents, and pastes the code shown back here;
  it is exchanged (with its PKCE verifier) for the token.

Either way the token is for ``scope``, the scope the service requires (its operator
publishes it: ``https://auth.globus.org/scopes/<service client id>/all`` by default).
Only the access token is kept (no refresh token): when it expires, log in again.
globus-sdk finds Globus Auth through ``GLOBUS_SDK_ENVIRONMENT`` and
``GLOBUS_SDK_SERVICE_URL_AUTH``. Globus errors become fabric errors here, at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import globus_sdk

from fabric.errors import AuthError, ConfigError, ServiceUnavailable

CLIENT_ID_VARIABLE = "FABRIC_GLOBUS_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "FABRIC_GLOBUS_CLIENT_SECRET"
NATIVE_CLIENT_VARIABLE = "FABRIC_GLOBUS_NATIVE_CLIENT_ID"
SCOPE_VARIABLE = "FABRIC_GLOBUS_SCOPE"


def globus_token(scope: str, *, environ: Mapping[str, str], native_client_id: str | None,
                 read_code: Callable[[str], str], say: Callable[[str], None]) -> str:
    """An access token for ``scope``: client credentials if the environment has them, else the
    native-app flow (``say`` shows the authorize URL, ``read_code(prompt)`` returns the code)."""
    client_id, secret = environ.get(CLIENT_ID_VARIABLE), environ.get(CLIENT_SECRET_VARIABLE)
    try:
        tokens: globus_sdk.OAuthTokenResponse
        if client_id and secret:
            tokens = globus_sdk.ConfidentialAppAuthClient(client_id, secret).oauth2_client_credentials_tokens(
                requested_scopes=scope)
        else:
            if not native_client_id:
                raise ConfigError(f"give --globus-client-id (or set {NATIVE_CLIENT_VARIABLE}) for an interactive "
                                  f"login, or set {CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE}")
            tokens = _native_app_flow(native_client_id, scope, read_code, say)
        return str(tokens.by_scopes[scope]["access_token"])
    except globus_sdk.GlobusAPIError as exc:
        raise AuthError(f"Globus Auth refused the login: {exc.code} {exc.message or ''}".strip(),
                        status=exc.http_status) from exc
    except globus_sdk.GlobusError as exc:
        raise ServiceUnavailable(f"cannot reach Globus Auth: {exc}") from exc
    except KeyError as exc:
        raise AuthError(f"Globus Auth gave no token for the scope {scope}") from exc


def _native_app_flow(client_id: str, scope: str, read_code: Callable[[str], str],
                     say: Callable[[str], None]) -> globus_sdk.OAuthTokenResponse:
    client = globus_sdk.NativeAppAuthClient(client_id)
    client.oauth2_start_flow(requested_scopes=scope)
    say(f"Log in with Globus at this address, then paste the code it shows:\n\n  {client.oauth2_get_authorize_url()}\n")
    code = read_code("code: ").strip()
    if not code:
        raise ConfigError("no authorization code given")
    return client.oauth2_exchange_code_for_tokens(code)
