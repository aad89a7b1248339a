"""moto's server, plus the two IAM OIDC provider actions moto does not serve:
AddClientIDToOpenIDConnectProvider and RemoveClientIDFromOpenIDConnectProvider,
as the IAM API reference describes them (an existing client ID is not added
twice, an absent one is removed silently, 100 client IDs at most, each at
most 255 characters). Run with the virtualenv's python in place of
`moto_server`; arguments are moto_server's."""

import sys

from moto.core.responses import EmptyResult
from moto.iam.exceptions import InvalidInput, LimitExceededException
from moto.iam.responses import IamResponse
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

if __name__ == "__main__":
    sys.exit(main())
