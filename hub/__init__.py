"""The reference platform hub: catalog, grants, enrolment, publishing, per-agent sealed delivery, status intake, fleet view.

It speaks the protocol of docs/protocol.md (``hub.api``), keeps every state that matters in its store
(``hub.store``: SQLite or PostgreSQL) and blob store (``hub.blobs``), and is administered with ``edx-hub``
(``hub.cli``).
"""
