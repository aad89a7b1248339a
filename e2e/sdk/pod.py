"""A pod of a user's, with the official Python SDK of one cloud: it takes its
credentials only from the environment the cloud's workload identity webhook
injects, gets a token as any application would, and says what it got.

    python pod.py azure|gcp|aws

Exit 0 and a line starting `token acquired` on success; the SDK's own error
otherwise. TLS trust comes from REQUESTS_CA_BUNDLE / AWS_CA_BUNDLE, as in a
pod whose image trusts a private CA.
"""

import sys


def azure():
    # AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE and
    # AZURE_AUTHORITY_HOST, as azure-workload-identity injects them. MSAL
    # reads the authority's discovery document before the token endpoint.
    # Instance discovery asks login.microsoftonline.com whether the
    # authority host is Microsoft's; for any other host (a sovereign cloud,
    # a private authority, this fake) it is turned off, as their docs say.
    from azure.identity import WorkloadIdentityCredential

    credential = WorkloadIdentityCredential(disable_instance_discovery=True)
    token = credential.get_token("https://management.azure.com/.default")
    print(f"token acquired (azure-identity), expires_on={token.expires_on}")


def gcp():
    # GOOGLE_APPLICATION_CREDENTIALS: an external_account configuration
    # (STS exchange of the projected token, then impersonation), loaded as
    # identity_pool credentials; google.auth.default() would also look the
    # project up in Resource Manager, which the fake does not serve.
    import os

    import google.auth.transport.requests
    from google.auth import identity_pool

    credentials = identity_pool.Credentials.from_file(
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"],
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    credentials.refresh(google.auth.transport.requests.Request())
    print(f"token acquired (google-auth), expiry={credentials.expiry.isoformat()}")


def aws():
    # AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, as EKS's webhook injects
    # them for IRSA, or AWS_CONTAINER_CREDENTIALS_FULL_URI and
    # AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, as it injects them for EKS Pod
    # Identity; AWS_ENDPOINT_URL points the SDK (and its STS call) at the fake.
    import boto3

    identity = boto3.client("sts").get_caller_identity()
    print(f"token acquired (boto3), arn={identity['Arn']}")


if __name__ == "__main__":
    {"azure": azure, "gcp": gcp, "aws": aws}[sys.argv[1]]()
