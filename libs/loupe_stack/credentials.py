"""Secrets of one local installation, made on first start and kept in the data folder."""

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from loupe_shared.kit.auth import new_token


@dataclass(frozen=True)
class Credentials:
    pg_password: str
    nats_password: str
    s3_access_key: str
    s3_secret_key: str
    admin_token: str


def load_or_create(data_dir: Path) -> Credentials:
    path = data_dir / "credentials.json"
    if path.exists():
        return Credentials(**json.loads(path.read_text()))
    creds = Credentials(
        pg_password=secrets.token_urlsafe(24),
        nats_password=secrets.token_urlsafe(24),
        s3_access_key="LOUPE" + secrets.token_hex(8).upper(),
        s3_secret_key=secrets.token_urlsafe(30),
        admin_token=new_token()[2],
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(creds), handle, indent=2)
    return creds
