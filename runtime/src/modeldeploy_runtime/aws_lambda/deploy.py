"""Creating or updating the Lambda function for a deployment zip, and publishing a version.

Uses boto3 with the standard AWS chain for region and credentials (``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL_LAMBDA``, ...). Each step waits with boto3's own waiters
(``function_active_v2`` after create, ``function_updated_v2`` after every update) before the
next, because Lambda refuses changes while an update is in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, WaiterError

TAG_MODEL_NAME = "modeldeploy/model-name"
TAG_MODEL_VERSION = "modeldeploy/model-version"
_WAIT = {"Delay": 1, "MaxAttempts": 300}


class DeployError(Exception):
    """The deployment failed; the message is one line for the user."""


@dataclass(frozen=True)
class DeployRequest:
    function_name: str
    role_arn: str
    zip_bytes: bytes
    handler: str
    runtime: str
    model_name: str
    model_version: str
    layer_arns: tuple[str, ...] = ()
    memory_mb: int | None = None
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class DeployResult:
    created: bool
    function_arn: str
    version: str
    version_arn: str
    code_sha256: str


def _tags(request: DeployRequest) -> dict[str, str]:
    return {TAG_MODEL_NAME: request.model_name, TAG_MODEL_VERSION: request.model_version}


def _function_settings(request: DeployRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "Role": request.role_arn,
        "Handler": request.handler,
        "Runtime": request.runtime,
    }
    if request.layer_arns:
        settings["Layers"] = list(request.layer_arns)
    if request.memory_mb is not None:
        settings["MemorySize"] = request.memory_mb
    if request.timeout_seconds is not None:
        settings["Timeout"] = request.timeout_seconds
    return settings


def _error_details(error: ClientError) -> tuple[str, str]:
    details: dict[str, Any] = dict(error.response.get("Error") or {})
    return str(details.get("Code", "Error")), str(details.get("Message", error))


def _exists(client: Any, name: str) -> bool:
    try:
        client.get_function(FunctionName=name)
    except ClientError as error:
        if _error_details(error)[0] == "ResourceNotFoundException":
            return False
        raise
    return True


def _wait(client: Any, waiter: str, name: str) -> None:
    try:
        client.get_waiter(waiter).wait(FunctionName=name, WaiterConfig=_WAIT)
    except WaiterError as error:
        last: dict[str, Any] = dict(error.last_response or {})
        state: dict[str, Any] = dict(last.get("Configuration") or last)
        reason = state.get("LastUpdateStatusReason") or state.get("StateReason") or str(error)
        raise DeployError(f"function {name} did not become ready ({waiter}): {reason}") from None


def deploy_function(request: DeployRequest, client: Any | None = None) -> DeployResult:
    """Create the function (or update its code and settings), wait, tag it and publish a version."""
    name = request.function_name
    description = f"model {request.model_name} version {request.model_version}"
    try:
        # A fresh session: the chain is read now, not from a default session cached earlier.
        lambda_client = client if client is not None else boto3.session.Session().client("lambda")
        created = not _exists(lambda_client, name)
        if created:
            lambda_client.create_function(
                FunctionName=name,
                Code={"ZipFile": request.zip_bytes},
                Description=description,
                Tags=_tags(request),
                Publish=False,
                **_function_settings(request),
            )
            _wait(lambda_client, "function_active_v2", name)
        else:
            lambda_client.update_function_code(FunctionName=name, ZipFile=request.zip_bytes, Publish=False)
            _wait(lambda_client, "function_updated_v2", name)
            lambda_client.update_function_configuration(
                FunctionName=name, Description=description, **_function_settings(request)
            )
            _wait(lambda_client, "function_updated_v2", name)
        function = lambda_client.get_function(FunctionName=name)["Configuration"]
        lambda_client.tag_resource(Resource=function["FunctionArn"], Tags=_tags(request))
        published = lambda_client.publish_version(
            FunctionName=name, Description=description, CodeSha256=function["CodeSha256"]
        )
    except ClientError as error:
        code, message = _error_details(error)
        raise DeployError(f"{error.operation_name} on {name} failed: {code}: {message}") from None
    except NoRegionError:
        raise DeployError("no AWS region configured: set AWS_DEFAULT_REGION or a profile's region") from None
    except NoCredentialsError:
        raise DeployError("no AWS credentials found in the environment, profile or instance role") from None
    except BotoCoreError as error:  # e.g. an unreachable endpoint
        raise DeployError(f"cannot reach AWS Lambda: {error}") from None
    return DeployResult(
        created=created,
        function_arn=function["FunctionArn"],
        version=str(published["Version"]),
        version_arn=str(published["FunctionArn"]),
        code_sha256=str(published["CodeSha256"]),
    )
