"""A store in an S3 bucket (or any S3-compatible one: set AWS_ENDPOINT_URL, which boto3 reads, for MinIO,
Garage, R2, …). Objects are marked cacheable forever; the channel manifest is not."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from deploy.stores import StoreError

FOREVER = "public, max-age=31536000, immutable"
NEVER = "no-cache"


class S3Store:
    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise StoreError(f"{url}: give the bucket, as in s3://bucket/prefix")
        self.url, self.bucket, self.prefix = url, parts.netloc, parts.path.strip("/")
        self.client = boto3.client("s3", config=Config(connect_timeout=10, retries={"max_attempts": 3}))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, function, **arguments):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(Bucket=self.bucket, **arguments)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"{what} s3://{self.bucket}: {error.response['Error'].get('Message') or error}") from None
        except BotoCoreError as error:
            raise StoreError(f"{what} s3://{self.bucket}: {error}") from None

    def has(self, key: str) -> bool:
        return self._call("reading", self.client.head_object, Key=self._key(key)) is not None

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as body:    # one PUT is atomic in S3: readers see the old object or the new one
            self._call("writing to", self.client.put_object, Key=self._key(key), Body=body, CacheControl=FOREVER)

    def put_bytes(self, key: str, data: bytes, *, cache: bool) -> None:
        self._call("writing to", self.client.put_object, Key=self._key(key), Body=data,
                   CacheControl=FOREVER if cache else NEVER, ContentType="application/json")

    def get_bytes(self, key: str) -> bytes | None:
        answer = self._call("reading", self.client.get_object, Key=self._key(key))
        return None if answer is None else answer["Body"].read()

    def close(self) -> None:
        self.client.close()
