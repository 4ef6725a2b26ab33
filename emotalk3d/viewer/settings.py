"""Default limits of the viewer server (light: the CLI reads them without importing torch)."""

DEFAULT_MAX_UPLOAD_MB = 20.0
"""Upload size limit in MB (2**20 bytes)."""
DEFAULT_MAX_QUEUE = 4
"""Generation jobs waiting or running before the server answers 429."""
DEFAULT_CACHE_MB = 512.0
"""MB of finished clips kept before the least recently used are evicted."""
DEFAULT_MAX_SECONDS = 120.0
"""Longest accepted audio in seconds."""
DECODE_SLOTS = 2
"""Uploads decoded at the same time (each stops at the length limit); more wait their turn."""
DEFAULT_MAX_LIVE = 1
"""Live-mode sessions (microphone streams) at the same time; more are refused (0: off)."""
