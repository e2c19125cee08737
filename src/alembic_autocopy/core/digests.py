"""Content digests: the SHA-256 that names a migration's content, the id git gives a blob.

Apart from the parser: a run that re-reads a file whose content the index already knows
(racily clean) needs its blob id, not the parser (ast, tokenize).
"""

from __future__ import annotations

import hashlib


def sha256_hex(source: bytes) -> str:
    """The SHA-256 of ``source`` as 64 lowercase hex digits (the content's identity)."""
    return hashlib.sha256(source).hexdigest()


def blob_id(content: bytes, algorithm: str = "sha1") -> str:
    """The id git gives ``content`` as a blob, computed without running git."""
    digest = hashlib.new(algorithm)
    digest.update(b"blob %d\0" % len(content))
    digest.update(content)
    return digest.hexdigest()
