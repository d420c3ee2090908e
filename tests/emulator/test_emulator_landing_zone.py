"""The emulator's Data Landing Zone credentials call: either shape, behind the gateway's checks,
404 without a landing zone, and the refresh action refused."""

from __future__ import annotations

import aiohttp

from asyncdl.emulator import AwsLandingZone, AzureLandingZone, running_emulator
from asyncdl.models import LANDING_ZONE_CREDENTIALS_PATH
from tests.helpers import EmulatorFactory

SAS = "sv=2022-09-11&si=dlz-ed86&sr=c&sp=racwdlm&sig=4yTba8voU3L0wlcLAv9mZLdZ7NlMahbfYYPTMkQ6ZGU%3D"


async def test_the_emulator_answers_either_shape_behind_the_gateway(
    emulator_config: EmulatorFactory,
) -> None:
    azure = AzureLandingZone(sas_uri=f"http://127.0.0.1:1/devstoreaccount1/dlz-destination?{SAS}")
    aws = AwsLandingZone(
        access_key_id="AK", secret_access_key="SK", session_token="ST", bucket="b", expiry_s=1.0
    )
    for zone in (azure, aws, None):
        async with (
            running_emulator(emulator_config(landing_zone=zone)) as emu,
            aiohttp.ClientSession() as session,
        ):
            url = emu.base_url + LANDING_ZONE_CREDENTIALS_PATH
            headers = {
                "Authorization": f"Bearer {emu.config.static_tokens[0]}",
                "x-api-key": emu.config.api_key,
                "x-gw-ims-org-id": emu.config.org_id,
            }
            async with session.get(url, params={"type": "dlz_destination"}) as bare:
                assert bare.status == 403  # the gateway first: no token
                assert (await bare.json())["error_code"] == "403010"
            params = {"type": "dlz_destination", "action": "refresh"}
            async with session.get(url, params=params, headers=headers) as refresh:
                assert refresh.status == 400
            async with session.get(url, params={"type": "dlz_destination"}, headers=headers) as ok:
                body = await ok.json()
                if zone is None:
                    assert ok.status == 404
                elif zone is azure:
                    assert body["SASUri"] == azure.sas_uri
                    assert body["SASToken"] == SAS
                    assert body["containerName"] == "dlz-destination"
                else:
                    assert body["dlzProvider"] == "Amazon S3"
                    assert body["dlzPath"] == {"bucketName": "b", "dlzFolder": "dlz-destination"}
                    assert body["credentials"]["awsSessionToken"] == "ST"
                    assert body["expiryTime"] == 1
