"""A Mathpix-compatible PDF API server (``POST /v3/pdf``, status, ``/stream``, ``.mmd``, DELETE).

Backends: ``local`` converts uploads with the local converter; ``replay`` plays recorded Mathpix
streams back at a chosen pace. Starts without torch, chromadb or llama_index.
"""

from __future__ import annotations

from .app import create_app
from .embedded import EmbeddedServer
from .run import serve

__all__ = ["EmbeddedServer", "create_app", "serve"]
