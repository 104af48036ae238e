"""``KubernetesProvider``: one pod per block, through ``kubectl``.

The pod manifest (``render_manifest``) runs the configured ``image`` with the manager
command under ``/bin/bash -c`` (after ``worker_init``), asks for ``cores_per_node``
CPUs, ``mem_per_node`` MB and ``gpus_per_node`` ``nvidia.com/gpu`` (requests equal to
limits), never restarts, and carries labels naming the endpoint and the block. A
walltime becomes the pod's ``activeDeadlineSeconds``. Pods are created with
``kubectl create -f -``, watched with ``kubectl get pods -l ... -o json`` (a pod that is
gone was deleted: ``CANCELLED``) and deleted with ``kubectl delete pod``.

The managers connect back to the interchange's ``manager_host``: it must be reachable
from the pods. No Kubernetes cluster runs on the machines the tests run on: the tests
check the manifests and the exact ``kubectl`` invocations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fabric.config import ProviderConfig
from interchange.providers.base import (CommandResult, CommandRunner, JobState, JobStatus, Provider, ProviderError,
                                        drain_at_line, run_command, safe_name)

logger = logging.getLogger(__name__)

PHASES = {"Pending": JobState.PENDING, "Running": JobState.RUNNING, "Succeeded": JobState.COMPLETED,
          "Failed": JobState.FAILED, "Unknown": JobState.PENDING}

LABEL_ENDPOINT = "fabric.endpoint"
LABEL_BLOCK = "fabric.block"


def pod_status(pod: dict[str, Any]) -> JobStatus:
    """A pod of ``kubectl get pods -o json`` as a ``JobStatus``."""
    status = pod.get("status", {})
    phase, reason = status.get("phase", "Unknown"), status.get("reason", "")
    if phase == "Failed" and reason == "DeadlineExceeded":
        return JobStatus(JobState.TIMEOUT, "activeDeadlineSeconds exceeded")
    waiting = [c.get("state", {}).get("waiting", {}) for c in status.get("containerStatuses", [])]
    messages = [f"{w['reason']}: {w.get('message', '')}".strip(": ") for w in waiting if w.get("reason")]
    terminated = [c.get("state", {}).get("terminated", {}) for c in status.get("containerStatuses", [])]
    messages += [f"exit code {t['exitCode']} ({t.get('reason', '')})" for t in terminated if "exitCode" in t]
    return JobStatus(PHASES.get(phase, JobState.PENDING), "; ".join(filter(None, [reason, *messages])))


class KubernetesProvider(Provider):
    kind = "kubernetes"

    def __init__(self, config: ProviderConfig, *, label: str, runner: CommandRunner = run_command) -> None:
        super().__init__(config, label=label)
        self.runner = runner

    def kubectl(self, *args: str) -> list[str]:
        return ["kubectl", f"--namespace={self.config.namespace}", *args]

    def render_manifest(self, command: str, block_id: str) -> dict[str, Any]:
        c = self.config
        resources: dict[str, str] = {}
        if c.cores_per_node:
            resources["cpu"] = str(c.cores_per_node)
        if c.mem_per_node:
            resources["memory"] = f"{c.mem_per_node}Mi"
        if c.gpus_per_node:
            resources["nvidia.com/gpu"] = str(c.gpus_per_node)
        script = "".join(f"{line}\n" for line in c.worker_init) + drain_at_line(c) + command
        container: dict[str, Any] = {
            "name": "manager", "image": c.image, "imagePullPolicy": c.pull_policy,
            "command": ["/bin/bash", "-c", script],
            "env": [{"name": "FABRIC_BLOCK_ID", "value": block_id}],
        }
        if resources:
            container["resources"] = {"requests": dict(resources), "limits": dict(resources)}
        spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        if c.walltime is not None:
            spec["activeDeadlineSeconds"] = int(c.walltime)
        if c.service_account:
            spec["serviceAccountName"] = c.service_account
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.job_name(block_id), "namespace": c.namespace,
                         "labels": {LABEL_ENDPOINT: safe_name(self.label), LABEL_BLOCK: safe_name(block_id),
                                    "app": "fabric-manager"}},
            "spec": spec,
        }

    def _run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        result = self.runner(argv, stdin)
        if result.exit_code != 0:
            raise ProviderError(argv, result.exit_code, result.stderr or result.stdout)
        return result

    def submit(self, command: str, block_id: str) -> str:
        manifest = self.render_manifest(command, block_id)
        self._run(self.kubectl("create", "-f", "-", "-o", "name"), json.dumps(manifest))
        logger.info("block %s is pod %s", block_id, manifest["metadata"]["name"])
        return str(manifest["metadata"]["name"])

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        result = self._run(self.kubectl("get", "pods", "-l", f"{LABEL_ENDPOINT}={safe_name(self.label)}", "-o", "json"))
        try:
            pods = {p["metadata"]["name"]: p for p in json.loads(result.stdout).get("items", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(["kubectl", "get", "pods"], 0, f"unexpected output: {exc}") from exc
        return {job_id: pod_status(pods[job_id]) if job_id in pods else JobStatus(JobState.CANCELLED, "pod deleted")
                for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._run(self.kubectl("delete", "pod", "--ignore-not-found", "--wait=false", *job_ids))
