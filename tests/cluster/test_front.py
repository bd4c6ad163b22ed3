"""The cluster seen from outside: the OpenAI-compatible gateway, /api/cluster, /metrics,
the web UI's component file and ``shoal cluster status``, on a real uvicorn and real llama.cpp servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from ..server.conftest import SERVER_CONFIG, LiveServer, Site, auth, make_site
from .conftest import SmallLlamaServer, llama_entry

Pair = tuple[SmallLlamaServer, SmallLlamaServer]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, llama_pair: Pair, model_path: Path) -> Iterator[tuple[LiveServer, Site]]:
    a, _ = llama_pair
    text = SERVER_CONFIG + "\n" + llama_entry("a", a, model_path) + '\n[cluster]\ngateway = ["admins"]\nhealth_interval = 0\n'
    site = make_site(tmp_path_factory.mktemp("gateway-home"), text)
    live = LiveServer(site.env).start()
    yield live, site
    live.stop()


def client(live: LiveServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=token, max_retries=0, timeout=60)


def test_gateway_users_see_and_use_the_clusters_models_by_name(gateway: tuple[LiveServer, Site]) -> None:
    live, site = gateway
    with client(live, site.tokens["root"]) as c:
        ids = {m.id for m in c.models.list()}
        assert {"conversation", "primary", "thinker", "memory", "smollm2-135m"} <= ids
        out = c.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=4,
            extra_body={"server": "a"},
        )
        assert out.choices[0].message.content and (out.model_extra or {}).get("served_by") == "a"
    with client(live, site.tokens["bob"]) as c:
        assert [m.id for m in c.models.list()] == ["conversation"]
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "hi"}])


def test_a_bot_request_streams_through_the_cluster_to_the_server_asked_for(gateway: tuple[LiveServer, Site]) -> None:
    live, site = gateway
    body = {"model": "conversation", "messages": [{"role": "user", "content": "Say hello."}], "stream": True, "max_tokens": 6}
    headers = {**auth(site.tokens["bob"]), "X-Shoal-Server": "a"}
    events = []
    with httpx.Client(base_url=live.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:") and line != "data: [DONE]":
                    events.append(json.loads(line[5:]))
    finish = [e for e in events if e["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["served_by"] == "a"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events).strip()


def test_api_cluster_shows_every_server_and_hides_addresses_from_non_admins(gateway: tuple[LiveServer, Site]) -> None:
    live, site = gateway
    with httpx.Client(base_url=live.url, timeout=30) as http:
        root = http.get("/api/cluster", headers=auth(site.tokens["root"])).json()
        bob = http.get("/api/cluster", headers=auth(site.tokens["bob"])).json()
        assert http.get("/api/cluster").status_code == 401
    by_name = {s["name"]: s for s in root["servers"]}
    assert set(by_name) == {"local", "a"}
    assert by_name["a"]["health"] == "up" and by_name["a"]["url"].startswith("http://127.0.0.1:")
    assert by_name["a"]["loaded"] and by_name["a"]["max_concurrent"] == 1
    assert {"depth", "max"} <= set(root["queue"]) and root["strategy"] == "affinity"
    assert all(s["url"] is None for s in bob["servers"])


def test_metrics_are_served_for_prometheus_to_admins(gateway: tuple[LiveServer, Site]) -> None:
    live, site = gateway
    r = httpx.get(live.url + "/metrics", headers=auth(site.tokens["root"]), timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'shoal_cluster_server_up{server="a",kind="llamacpp"} 1' in r.text.splitlines()
    assert httpx.get(live.url + "/metrics", timeout=30).status_code == 401
    assert httpx.get(live.url + "/metrics", headers=auth(site.tokens["bob"]), timeout=30).status_code == 403


def test_the_cluster_view_component_is_served(gateway: tuple[LiveServer, Site]) -> None:
    live, _ = gateway
    r = httpx.get(live.url + "/static/cluster.js", timeout=30)
    assert r.status_code == 200 and "ClusterView" in r.text and "/api/cluster" in r.text


def run_shoal(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOAL_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cluster_status_prints_health_models_and_load(tmp_path: Path, llama_pair: Pair, model_path: Path) -> None:
    a, _ = llama_pair
    dead = "[[servers]]\nname = \"gone\"\nkind = \"llamacpp\"\nurl = \"http://127.0.0.1:9\"\n"
    (tmp_path / "shoal.toml").write_text(llama_entry("a", a, model_path) + "\n" + dead + "\n[cluster]\nhealth_timeout = 2\n")
    out = run_shoal(tmp_path, "cluster", "status")
    assert out.returncode == 0, out.stderr
    row_a = next(l for l in out.stdout.splitlines() if "│ a " in l)
    row_gone = next(l for l in out.stdout.splitlines() if "│ gone " in l)
    assert "up" in row_a and "SmolLM2" in row_a and "0/1" in row_a
    assert "down" in row_gone
    data = json.loads(run_shoal(tmp_path, "cluster", "status", "--json").stdout)
    assert {s["name"]: s["health"] for s in data["servers"]} == {"a": "up", "gone": "down"}


def test_cluster_status_reports_a_bad_config_with_file_line_and_field(tmp_path: Path) -> None:
    text = '[[servers]]\nname = "x"\nkind = "llamacpp"\nurl = "http//127.0.0.1:8080"\n'
    (tmp_path / "shoal.toml").write_text(text)
    out = run_shoal(tmp_path, "cluster", "status")
    assert out.returncode == 2
    assert f"{tmp_path / 'shoal.toml'}:4" in out.stderr and "servers.0.url" in out.stderr


def test_cluster_status_asks_a_running_server_for_its_live_numbers(gateway: tuple[LiveServer, Site], tmp_path: Path) -> None:
    live, site = gateway
    out = run_shoal(tmp_path, "cluster", "status", "--url", live.url, "--token", site.tokens["root"], "--json")
    assert out.returncode == 0, out.stderr
    assert {s["name"] for s in json.loads(out.stdout)["servers"]} == {"local", "a"}
    refused = run_shoal(tmp_path, "cluster", "status", "--url", live.url)
    assert refused.returncode == 1 and "token" in refused.stderr
