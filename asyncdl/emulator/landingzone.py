"""The Data Landing Zone destination's credentials call, as AEP's Connectors service answers it:
``GET /data/foundation/connectors/landingzone/credentials?type=dlz_destination`` (behind the
gateway's usual checks) gives the Azure shape (``containerName``, ``SASToken``,
``storageAccountName``, ``SASUri``) or the AWS one (``credentials``, ``dlzPath``,
``dlzProvider: "Amazon S3"``, ``expiryTime``), as configured; a sandbox without a landing zone
answers 404. The refresh action is refused here: a client must never rotate everyone's SAS.
"""

from __future__ import annotations

from aiohttp import web

from asyncdl.emulator.answers import json_answer, problem_answer
from asyncdl.emulator.config import AwsLandingZone, EmulatorConfig

__all__ = ["credentials"]


def credentials(request: web.Request, *, config: EmulatorConfig) -> web.Response:
    """``GET .../landingzone/credentials?type=dlz_destination``."""
    kind = request.query.get("type")
    if kind != "dlz_destination":
        detail = f"type must be dlz_destination (or user_drop_zone), got {kind!r}"
        return problem_answer(400, "Bad Request", detail, "CONN-400")
    if "action" in request.query:
        detail = "the emulator never rotates the landing zone's credentials (action=refresh)"
        return problem_answer(400, "Bad Request", detail, "CONN-400-ACTION")
    zone = config.landing_zone
    if zone is None:
        detail = "no landing zone of type dlz_destination is provisioned for this sandbox"
        return problem_answer(404, "Not Found", detail, "CONN-404")
    if isinstance(zone, AwsLandingZone):
        return json_answer(
            200,
            {
                "credentials": {
                    "awsAccessKeyId": zone.access_key_id,
                    "awsSecretAccessKey": zone.secret_access_key,
                    "awsSessionToken": zone.session_token,
                },
                "dlzPath": {"bucketName": zone.bucket, "dlzFolder": zone.folder},
                "dlzProvider": "Amazon S3",
                "expiryTime": int(zone.expiry_s),
            },
        )
    token = zone.sas_uri.partition("?")[2]
    return json_answer(
        200,
        {
            "containerName": zone.container,
            "SASToken": token,
            "storageAccountName": zone.account,
            "SASUri": zone.sas_uri,
        },
    )
