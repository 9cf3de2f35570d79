"""The platform team's web surface: the fleet dashboard (server-rendered HTML), its JSON twin, and /metrics."""
