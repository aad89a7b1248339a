"""moto's server, plus the two IAM OIDC provider actions moto does not serve:
AddClientIDToOpenIDConnectProvider and RemoveClientIDFromOpenIDConnectProvider,
as the IAM API reference describes them (an existing client ID is not added
twice, an absent one is removed silently, 100 client IDs at most, each at
most 255 characters); and held latency for tests: `POST /wib-faults` with
`{"action": "AttachRolePolicy", "latencyMs": 3000, "times": 1}` holds the
next calls of that action, `GET /wib-faults` says how many were held, so a
test knows it killed the operator mid-reconcile; a fault with `"error":
{"status": 400, "code": "Throttling", "message": "Rate exceeded"}` answers
those calls with that IAM error instead of serving them (`GET /wib-faults`
counts them under `failed`); and a clock: `POST
/wib-clock` with `{"advanceSeconds": n}` moves it, after which
AssumeRoleWithWebIdentity refuses a token past its `exp` (or before its
`nbf`) with ExpiredTokenException, and any call signed with a session it
issued that has expired gets ExpiredToken, as AWS answers them (moto itself
checks neither). Run with the virtualenv's python in place of
`moto_server`; arguments are moto_server's."""

import base64
import http
import io
import json
import re
import sys
import threading
import time
import urllib.parse

from moto.core.responses import EmptyResult
from moto.iam.exceptions import InvalidInput, LimitExceededException
from moto.iam.responses import IamResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

MAX_CLIENT_IDS = 100
MAX_CLIENT_ID_CHARS = 255


def add_client_id_to_open_id_connect_provider(self):
    provider = self.backend.get_open_id_connect_provider(
        self._get_param("OpenIDConnectProviderArn")
    )
    client_id = self._get_param("ClientID") or ""
    if not client_id or len(client_id) > MAX_CLIENT_ID_CHARS:
        raise InvalidInput(
            f"ClientID must be 1 to {MAX_CLIENT_ID_CHARS} characters long"
        )
    if client_id not in provider.client_id_list:
        if len(provider.client_id_list) >= MAX_CLIENT_IDS:
            raise LimitExceededException(
                f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}"
            )
        provider.client_id_list.append(client_id)
    return EmptyResult()


def remove_client_id_from_open_id_connect_provider(self):
    provider = self.backend.get_open_id_connect_provider(
        self._get_param("OpenIDConnectProviderArn")
    )
    client_id = self._get_param("ClientID") or ""
    if client_id in provider.client_id_list:
        provider.client_id_list.remove(client_id)
    return EmptyResult()


IamResponse.add_client_id_to_open_id_connect_provider = (
    add_client_id_to_open_id_connect_provider
)
IamResponse.remove_client_id_from_open_id_connect_provider = (
    remove_client_id_from_open_id_connect_provider
)

_faults_lock = threading.Lock()
_faults = []  # [{"action", "latencyMs", "times", "error"}]
_held = {}  # action -> calls held so far
_failed = {}  # action -> calls answered with an injected error


def _json(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


def _action(environ):
    """The Query API action of a request, leaving its body readable."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    form = urllib.parse.parse_qs(body.decode(errors="replace"))
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    return (form.get("Action") or query.get("Action") or [""])[0]


_clock = {"offset": 0}
_sessions = {}  # access key ID -> expiry (the fake clock)
_refused = {"expiredTokensRefused": 0, "expiredAssertionsRefused": 0}


def _now():
    return time.time() + _clock["offset"]


def _error(start_response, status, namespace, code, message):
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>wib-fake</RequestId></ErrorResponse>"
    ).encode()
    start_response(status, [("Content-Type", "text/xml")])
    return [body]


def _claims(token):
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def _form(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return urllib.parse.parse_qs(body.decode(errors="replace"))


def _with_clock(self, environ, start_response, action):
    """Expiry by the fake clock: refuses what AWS would, records sessions."""
    now = _now()
    if action == "AssumeRoleWithWebIdentity":
        form = _form(environ)
        claims = _claims((form.get("WebIdentityToken") or [""])[0])
        if claims.get("exp", now + 1) <= now or claims.get("nbf", now) > now:
            with _faults_lock:
                _refused["expiredAssertionsRefused"] += 1
            return _error(
                start_response,
                "400 Bad Request",
                "https://sts.amazonaws.com/doc/2011-06-15/",
                "ExpiredTokenException",
                "Token expired: current date/time must be before the expiration date/time.",
            )
        seconds = int((form.get("DurationSeconds") or ["3600"])[0])
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            return start_response(status, headers, exc_info)

        body = b"".join(_dispatch(self, environ, capture))
        found = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", body)
        if found and captured.get("status", "").startswith("200"):
            with _faults_lock:
                _sessions[found.group(1).decode()] = now + seconds
        return [body]
    signed = re.search(r"Credential=([A-Z0-9]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    expiry = _sessions.get(signed.group(1)) if signed else None
    if expiry is not None and expiry <= now:
        with _faults_lock:
            _refused["expiredTokensRefused"] += 1
        return _error(
            start_response,
            "403 Forbidden",
            "https://iam.amazonaws.com/doc/2010-05-08/",
            "ExpiredToken",
            "The security token included in the request is expired",
        )
    return None


_dispatch = DomainDispatcherApplication.__call__


def _with_faults(self, environ, start_response):
    if environ.get("PATH_INFO") == "/wib-clock":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        _clock["offset"] += int(body.get("advanceSeconds", 0))
        return _json(start_response, "200 OK", {"now": _now()})
    if environ.get("PATH_INFO") == "/wib-faults":
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            fault = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with _faults_lock:
                _faults.append(fault)
            return _json(start_response, "204 No Content", {})
        with _faults_lock:
            return _json(
                start_response,
                "200 OK",
                {"held": dict(_held), "failed": dict(_failed), **_refused},
            )
    action = _action(environ)
    delay = 0
    error = None
    with _faults_lock:
        for fault in _faults:
            if fault.get("action") == action and fault.get("times", 1) > 0:
                fault["times"] = fault.get("times", 1) - 1
                delay = fault.get("latencyMs", 0) / 1000
                error = fault.get("error")
                counter = _failed if error else _held
                counter[action] = counter.get(action, 0) + 1
                break
    if delay:
        time.sleep(delay)
    if error:
        status = int(error.get("status", 400))
        return _error(
            start_response,
            f"{status} {http.HTTPStatus(status).phrase}",
            "https://iam.amazonaws.com/doc/2010-05-08/",
            error.get("code", "ServiceFailure"),
            error.get("message", "injected by the test"),
        )
    answered = _with_clock(self, environ, start_response, action)
    if answered is not None:
        return answered
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _with_faults

if __name__ == "__main__":
    sys.exit(main())
