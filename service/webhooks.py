"""Webhooks: signing (Standard Webhooks), the per-app secret, and the dispatcher that sends the outbox.

A job created with `webhook` (and `webhook_events_filter` within "start" and "completed") gets a
POST for each event: body `{"type": "job.started" | "job.completed", "timestamp", "data": <job>}`
(the job as GET /v1/jobs/{id} returns it at sending time), headers `webhook-id`,
`webhook-timestamp`, `webhook-signature` (Standard Webhooks: `v1,` + base64 HMAC-SHA256 of
`id.timestamp.body` under the secret's base64-decoded key). Each API key's owner has its own secret
(GET /v1/webhooks/secret), derived from the server's. A 2xx answer is success; anything
else, a timeout or a connection error is retried with backoff up to `webhook_max_attempts`;
410 Gone stops at once. Webhooks are hints: GET /v1/jobs/{id} stays the source of truth.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

from service.errors import ProblemError
from service.settings import Settings
from store import Job, JobStore, WebhookDelivery, WebhookStore, utcnow

logger = logging.getLogger("nfrecon.webhooks")

EVENT_TYPES = {"start": "job.started", "completed": "job.completed"}
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048


def check_url(url: str, *, allow_private: bool = True) -> str:
    """The webhook URL as given, or a 422 naming what is wrong with it."""
    try:
        parsed = httpx.URL(url) if len(url) <= MAX_URL_LENGTH else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ProblemError(422, "invalid_webhook", f"webhook must be an http(s) URL of at most {MAX_URL_LENGTH} "
                           f"characters with a host, got {url[:100]!r}",
                           errors=[{"loc": ["body", "webhook"], "msg": "not an absolute http(s) URL"}])
    if not allow_private and (reason := private_host(parsed.host, parsed.port)):
        raise ProblemError(422, "invalid_webhook", f"webhook host {parsed.host!r} {reason}; this server only calls "
                           "public addresses", errors=[{"loc": ["body", "webhook"], "msg": "private address"}])
    return url


def private_host(host: str, port: int | None) -> str | None:
    """Why `host` is not a public address (it is, or resolves to, a non-global IP), or None."""
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except OSError:
        return "does not resolve"
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global:
            return f"resolves to the non-public address {ip}"
    return None


def load_secret(configured: str | None, data_dir: Path) -> str:
    """The signing secret: the configured one, else one generated on first use and kept in the data dir."""
    if configured:
        _key(configured)  # fail early on a malformed secret
        return configured
    path = data_dir / "webhook_secret"
    if not path.exists():
        secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        try:  # O_EXCL: two processes starting together keep one secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret)
        except FileExistsError:
            pass
    return path.read_text().strip()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as exc:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from exc


def owner_secret(master: str, owner: str) -> str:
    """The secret of one API key's owner, derived from the server's: a client cannot forge another's webhooks."""
    key = hmac.new(_key(master), f"nfrecon-webhook-secret:{owner}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature header value for one message."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers, body: bytes) -> bool:
    """Whether `headers` carry a valid signature of `body` (what a receiver does; used by the tests)."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, sig) for sig in headers["webhook-signature"].split())


def delivery_public(d: WebhookDelivery) -> dict:
    return {"id": d.id, "event": d.event, "url": d.url, "status": d.status, "attempts": d.attempts,
            "last_status_code": d.last_status_code, "last_error": d.last_error, "created_at": d.created_at,
            "next_attempt_at": d.next_attempt_at if d.status == "pending" else None, "delivered_at": d.delivered_at}


class WebhookDispatcher:
    """Queues the events that happened and POSTs the due deliveries; `run_once` is one pass."""

    def __init__(self, settings: Settings, jobs: JobStore, store: WebhookStore, secret: str,
                 render_job: Callable[[Job], dict], client: httpx.Client | None = None):
        """`render_job`: the job as JSON, as GET /v1/jobs/{id} shows it (the API's representation)."""
        self.settings = settings
        self.jobs = jobs
        self.store = store
        self.secret = secret
        self.render_job = render_job
        self.client = client or httpx.Client(timeout=self.settings.webhook_timeout_s, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def run_once(self) -> int:
        """Queue new events, then send what is due; returns the number of POSTs made."""
        self.store.enqueue_events()
        lease = self.settings.webhook_timeout_s * 2 + 5
        due = self.store.claim_due(lease)
        for delivery in due:
            self._send(delivery)
        return len(due)

    def _body(self, delivery: WebhookDelivery) -> tuple[bytes, str] | None:
        """The JSON body and the job's owner, or None when the job is gone."""
        job = self.jobs.get_job(delivery.job_id)
        if job is None:
            return None
        data = self.render_job(job)
        envelope = {"type": EVENT_TYPES[delivery.event], "timestamp": utcnow().isoformat(), "data": data}
        return json.dumps(envelope, separators=(",", ":")).encode(), job.owner

    def _send(self, delivery: WebhookDelivery) -> None:
        built = self._body(delivery)
        if built is None:
            self.store.record_attempt(delivery.id, status="failed", status_code=None, error="the job was deleted")
            return
        body, owner = built
        if not self.settings.webhook_allow_private:
            url = httpx.URL(delivery.url)
            if reason := private_host(url.host, url.port):
                self.store.record_attempt(delivery.id, status="failed", status_code=None,
                                          error=f"host {url.host} {reason}: not called")
                return
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "nfrecon-webhooks",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(owner_secret(self.secret, owner), delivery.id, timestamp, body),
        }
        code, error = None, None
        try:
            resp = self.client.post(delivery.url, content=body, headers=headers)
            code = resp.status_code
            if 200 <= code < 300:
                self.store.record_attempt(delivery.id, status="delivered", status_code=code, error=None)
                return
            error = f"receiver answered HTTP {code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = delivery.attempts + 1
        if code == 410 or attempts >= self.settings.webhook_max_attempts:
            logger.warning("webhook %s for job %s failed for good after %d attempts: %s", delivery.event,
                           delivery.job_id, attempts, error)
            self.store.record_attempt(delivery.id, status="failed", status_code=code, error=error)
            return
        wait = min(self.settings.webhook_retry_base_s * 4 ** (attempts - 1), 3600.0)
        self.store.record_attempt(delivery.id, status="pending", status_code=code, error=error,
                                  next_attempt_at=utcnow() + timedelta(seconds=wait))
