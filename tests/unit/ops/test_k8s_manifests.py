"""The strimzi-keda overlay: generated KafkaTopics and ScaledObjects match the worker set (drift test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.registry import SPECS, all_topics
from shared.settings import Settings
from som import k8s

ROOT = Path(__file__).resolve().parents[3]
OVERLAY = ROOT / "k8s/overlays/strimzi-keda"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_generated_manifests_match_the_registry() -> None:
    assert k8s.drift() == [], "run `som k8s generate`"


def test_kafka_topics_are_the_topics_som_topics_creates() -> None:
    settings = Settings(topic_namespace="", default_partitions=k8s.PARTITIONS)
    expected = {s.name: s.partitions for s in all_topics("", settings.default_partitions, settings.group)}
    docs = load_all(OVERLAY / k8s.TOPICS_FILE)
    assert {d["kind"] for d in docs} == {"KafkaTopic"}
    assert {d["spec"]["topicName"]: d["spec"]["partitions"] for d in docs} == expected
    names = [d["metadata"]["name"] for d in docs]
    assert len(names) == len(set(names)), "two topics map to one Kubernetes name"
    for d in docs:
        assert d["metadata"]["labels"]["strimzi.io/cluster"]
        assert all(c.islower() or c.isdigit() or c in ".-" for c in d["metadata"]["name"])
    # Both the retry and the DLQ topic of every consumed topic of every group are there.
    for spec in SPECS:
        group = settings.group(spec.name)
        for topic in spec.consumes:
            assert f"{topic}.retry.{group}" in expected
            assert f"{topic}.dlq.{group}" in expected


def test_one_scaled_object_per_worker_on_its_group() -> None:
    docs = load_all(OVERLAY / k8s.SCALERS_FILE)
    settings = Settings(topic_namespace="")
    by_target = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs}
    assert set(by_target) == {f"som-{s.name}" for s in SPECS}
    base = {
        d["metadata"]["name"]
        for p in (ROOT / "k8s/base").glob("*.yaml")
        for d in load_all(p)
        if d.get("kind") == "Deployment"
    }
    assert set(by_target) <= base, "a ScaledObject targets a Deployment the base does not have"
    for spec in SPECS:
        so = by_target[f"som-{spec.name}"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == settings.group(spec.name)
        assert so["spec"]["maxReplicaCount"] <= k8s.PARTITIONS


def test_kustomizations_list_existing_files() -> None:
    for kustomization in (OVERLAY / "kustomization.yaml", OVERLAY / "topics/kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        for resource in doc["resources"]:
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_overlay() -> None:
    def build(path: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    workers = build(OVERLAY)
    scaled = [d for d in workers if d["kind"] == "ScaledObject"]
    deployments = {d["metadata"]["name"] for d in workers if d["kind"] == "Deployment"}
    assert len(scaled) == len(SPECS)
    assert {d["spec"]["scaleTargetRef"]["name"] for d in scaled} == deployments
    assert {d["metadata"]["namespace"] for d in scaled} == {"som-prod"}
    topics = build(OVERLAY / "topics")
    assert len(topics) == len(load_all(OVERLAY / k8s.TOPICS_FILE))
