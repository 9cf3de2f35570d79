"""``edx-agent enrol``: register this agent's public keys with the hub using a one-time token."""

from __future__ import annotations

import socket
from typing import Any

from .. import envelope
from .. import audit
from ..client import HubClient, NO_RETRY
from ..config import load
from ..errors import HubProtocolError, KeyFileError
from ..i18n import N_, _
from ..state import Enrolment, StateDir, now_iso


def register(sub: Any) -> None:
    p = sub.add_parser("enrol", aliases=["enroll"], help="enrol with the platform using a one-time token")
    p.add_argument("--token", required=True, help="one-time enrolment token from the platform")
    p.add_argument("--hub", default="", help="URL of the platform's agent API (default: hub.url)")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    cfg = load(args.config)
    state = StateDir(cfg.state_dir)
    kid = state.pending_key_id()
    if not kid:
        raise KeyFileError(f"no key in {state.keys_dir}", remedy=N_("Run `edx-agent init` first."))
    keys = state.load_keys(kid)
    url = args.hub or cfg.hub.url
    if not url:
        raise HubProtocolError("no hub URL", remedy=N_("Pass --hub URL or set hub.url in the configuration."))
    client = HubClient.from_config(cfg, base_url=url, retry=NO_RETRY)
    with audit.for_config(cfg).action("enrolment", hub=url, key_id=kid) as extra:
        ans = client.enrol(args.token.strip(), socket.gethostname(), keys.public().to_dict())
        try:
            hub_keys = [envelope.VerifyKey.from_dict(k).to_dict() for k in ans["hub_keys"]]
            enr = Enrolment(agent_id=ans["agent_id"], unit=ans["unit"], hub_url=url, hub_keys=hub_keys,
                            key_id=kid, previous_key_ids=[], enrolled_at=now_iso(),
                            api_version=str(ans.get("api_version", "1")))
        except (KeyError, TypeError, ValueError) as e:
            raise HubProtocolError(f"enrolment answer is incomplete: {e}") from None
        state.save_enrolment(enr)
        extra.update(agent_id=enr.agent_id, unit=enr.unit, hub_keys=len(hub_keys))
    state.save_grants(ans.get("grants", []))
    datasets = ", ".join(g["dataset"] for g in ans.get("grants", [])) or _("(none yet)")
    print(_("enrolled as {agent_id} for unit {unit}").format(agent_id=enr.agent_id, unit=enr.unit))
    print(_("pinned {count} platform signing key(s); granted datasets: {datasets}").format(
        count=len(hub_keys), datasets=datasets))
    return 0
