"""The agent as a long-running service (``edx-agent run``): schedule, backoff, heartbeats, health, systemd.

- ``service``: start-up checks, the APScheduler schedule, signals, reload and stop;
- ``datasets``: per-dataset sync runs, capped backoff, stop on terminal errors;
- ``heartbeat``: the heartbeat body and the platform's commands (resync, doctor, diagnostics);
- ``housekeeping``: freshness, retention (用而不存), spool and audit clean-up, summary lines;
- ``readiness``, ``health``, ``metrics``: /readyz, /healthz, /metrics;
- ``sdnotify``: READY/WATCHDOG/STATUS to systemd without a dependency.
"""
