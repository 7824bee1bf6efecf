"""Where the NeMo Gym servers are: the head server's config tree and server instances.

``GET /global_config_dict_yaml`` answers the config YAML encoded as a JSON string;
``GET /server_instances`` lists ``{name, server_type, host, port, url, ...}``. The config tree is
``top_name -> resources_servers | responses_api_agents | responses_api_models -> impl -> {...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ftcore.errors import FtcoreError

SERVER_TYPES = ("resources_servers", "responses_api_agents", "responses_api_models")


@dataclass
class GymServers:
    """The servers a head server knows, by top-level name."""

    config: dict[str, Any]
    urls: dict[str, str] = field(default_factory=dict)

    def kind(self, name: str) -> str | None:
        entry = self.config.get(name)
        if isinstance(entry, dict):
            return next((k for k in SERVER_TYPES if k in entry), None)
        return None

    def names(self, kind: str) -> list[str]:
        return [name for name in self.config if self.kind(name) == kind]

    def url(self, name: str) -> str:
        if name in self.urls:
            return self.urls[name]
        kind = self.kind(name)
        if kind is None:
            known = ", ".join(sorted(n for n in self.config if self.kind(n))) or "none"
            raise FtcoreError(f"NeMo Gym has no server named '{name}' (servers: {known})")
        impl = next(iter(self.config[name][kind].values()))
        if not impl.get("port"):
            raise FtcoreError(f"NeMo Gym server '{name}' has no known address")
        return f"http://{impl.get('host', '127.0.0.1')}:{impl['port']}"

    def resources_server_of_agent(self, agent: str) -> str:
        if self.kind(agent) != "responses_api_agents":
            raise FtcoreError(f"agent_ref names '{agent}', which is not a NeMo Gym agent")
        impl = next(iter(self.config[agent]["responses_api_agents"].values()))
        reference = impl.get("resources_server") or {}
        if not reference.get("name"):
            raise FtcoreError(f"NeMo Gym agent '{agent}' names no resources_server")
        return reference["name"]


def parse_config(text: str) -> dict[str, Any]:
    import yaml

    payload = json.loads(text)
    tree = yaml.safe_load(payload) if isinstance(payload, str) else payload
    if not isinstance(tree, dict):
        raise FtcoreError("the NeMo Gym head server answered a config that is not a mapping")
    return tree


def discover(host: str, port: int, timeout: float = 10.0) -> GymServers:
    """Ask the head server at ``host:port``; an unreachable one is an error saying what to do."""
    import httpx

    base = f"http://{host}:{port}"
    try:
        with httpx.Client(timeout=timeout) as client:
            config = parse_config(
                client.get(f"{base}/global_config_dict_yaml").raise_for_status().text
            )
            instances = client.get(f"{base}/server_instances").raise_for_status().json()
    except (httpx.HTTPError, ValueError) as error:
        raise FtcoreError(
            f"no NeMo Gym head server answered at {base} ({error}); start the servers "
            "(gym env start) or set nemo_gym_auto_start, and check nemo_gym_head_port"
        ) from None
    urls = {
        item["name"]: item["url"].rstrip("/")
        for item in instances
        if item.get("url") and item.get("name")
    }
    return GymServers(config, urls)
