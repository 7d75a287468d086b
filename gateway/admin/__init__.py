"""The operator surface, each operation written once (operations.py) and called by:

- commands.py: `gateway blocks ...`, `gateway events ...`, `gateway report`, `gateway migrate`
  (text, CSV and JSON lines on the console);
- api.py: the admin HTTP API on the gateway's HTTP port (JSON, RFC 9457 problems), with
  auth.py (bearer tokens with a role) and models.py (request and response models, OpenAPI).

`from gateway import admin` keeps giving the console commands, as before the package.
"""

from gateway.admin.commands import (
    blocks_add,
    blocks_export,
    blocks_import,
    blocks_list,
    blocks_remove,
    events_export,
    events_purge,
    migrate,
    report,
    run,
)
from gateway.admin_rows import InputError

__all__ = [
    "InputError", "blocks_add", "blocks_export", "blocks_import", "blocks_list", "blocks_remove",
    "events_export", "events_purge", "migrate", "report", "run",
]
