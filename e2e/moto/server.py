"""moto's server, plus the two IAM OIDC provider actions moto does not serve:
AddClientIDToOpenIDConnectProvider and RemoveClientIDFromOpenIDConnectProvider,
as the IAM API reference describes them (an existing client ID is not added
twice, an absent one is removed silently, 100 client IDs at most, each at
most 255 characters); and held latency for tests: `POST /wib-faults` with
`{"action": "AttachRolePolicy", "latencyMs": 3000, "times": 1}` holds the
next calls of that action, `GET /wib-faults` says how many were held, so a
test knows it killed the operator mid-reconcile. Run with the virtualenv's
python in place of `moto_server`; arguments are moto_server's."""

import io
import json
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
_faults = []  # [{"action", "latencyMs", "times"}]
_held = {}  # action -> calls held so far


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


_dispatch = DomainDispatcherApplication.__call__


def _with_faults(self, environ, start_response):
    if environ.get("PATH_INFO") == "/wib-faults":
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            fault = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with _faults_lock:
                _faults.append(fault)
            return _json(start_response, "204 No Content", {})
        with _faults_lock:
            return _json(start_response, "200 OK", {"held": dict(_held)})
    action = _action(environ)
    delay = 0
    with _faults_lock:
        for fault in _faults:
            if fault.get("action") == action and fault.get("times", 1) > 0:
                fault["times"] = fault.get("times", 1) - 1
                delay = fault.get("latencyMs", 0) / 1000
                _held[action] = _held.get(action, 0) + 1
                break
    if delay:
        time.sleep(delay)
    return _dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _with_faults

if __name__ == "__main__":
    sys.exit(main())
