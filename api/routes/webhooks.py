"""Webhooks: the signing secret receivers verify `webhook-signature` with."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OwnerDep, ServicesDep
from api.schemas import WebhookSecret, problems

router = APIRouter(tags=["webhooks"])


@router.get("/webhooks/secret", response_model=WebhookSecret, responses=problems(401),
            summary="The secret that signs your jobs' webhooks (Standard Webhooks)")
def webhook_secret(services: ServicesDep, owner: OwnerDep) -> dict:
    """Verify a delivery: base64 HMAC-SHA256, keyed by the base64-decoded part after `whsec_`, of
    `{webhook-id}.{webhook-timestamp}.{body}` must equal a `v1,`-prefixed entry of `webhook-signature`."""
    from service.webhooks import owner_secret

    return {"key": owner_secret(services.webhook_secret, owner)}
