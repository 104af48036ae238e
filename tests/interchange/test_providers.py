"""Providers and launchers: rendered scripts and manifests, exact command lines, parsing
of what the schedulers answer, and the local provider with real processes.

No Slurm, PBS Pro or Kubernetes command runs here: a ``Runner`` records each command
line and answers with canned output taken from the real tools. ``tests/slurm`` runs the
Slurm provider against a real cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fabric.config import InterchangeConfig, ManagerConfig, ProviderConfig, ScalingConfig
from fabric.errors import ConfigError
from interchange.providers.base import (CommandResult, JobState, JobStatus, ProviderError, format_walltime,
                                        run_command, safe_name)
from interchange.providers.kubernetes import KubernetesProvider, pod_status
from interchange.providers.launchers import block_command, launcher_for, manager_command, mpiexec, single, srun
from interchange.providers.local import LocalProvider
from interchange.providers.pbspro import PBSProProvider, pbs_status
from interchange.providers.slurm import SlurmProvider, slurm_state


class Runner:
    """Records ``(argv, stdin)`` and answers from ``replies`` (program name -> results, in turn)."""

    def __init__(self, **replies: Any) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.replies = {name: list(answers) if isinstance(answers, list) else [answers]
                        for name, answers in replies.items()}

    def __call__(self, argv: Sequence[str], stdin: str | None) -> CommandResult:
        self.calls.append((list(argv), stdin))
        answers = self.replies.get(argv[0], [])
        if not answers:
            return CommandResult(0, "", "")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def commands(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout, "")


def err(stderr: str, code: int = 1) -> CommandResult:
    return CommandResult(code, "", stderr)


def interchange_config(**provider: Any) -> InterchangeConfig:
    return InterchangeConfig(upstream_address="tcp://127.0.0.1:1", endpoint_id="ep", workers_per_manager=2,
                             provider=ProviderConfig(**provider))


# --- helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(1, "00:00:01"), (59.2, "00:01:00"), (3600, "01:00:00"),
                                               (90061, "25:01:01")])
def test_walltimes_render_as_hours_minutes_seconds(seconds: float, text: str) -> None:
    assert format_walltime(seconds) == text


@pytest.mark.parametrize(("text", "name"), [("local-AB12_x", "local-ab12-x"), ("--", "fabric"), ("a" * 80, "a" * 63)])
def test_safe_names_are_dns_labels(text: str, name: str) -> None:
    assert safe_name(text) == name


def test_run_command_reports_missing_programs_like_a_shell() -> None:
    assert run_command(["/nonexistent/sbatch"]).exit_code == 127
    assert run_command(["cat"], "hello") == CommandResult(0, "hello", "")


def test_provider_errors_carry_the_command_and_what_it_said() -> None:
    error = ProviderError(["sbatch", "--parsable", "x.sbatch"], 1, "sbatch: error: invalid partition specified\n")
    assert (error.exit_code, error.command[0]) == (1, "sbatch")
    assert "invalid partition specified" in str(error)


# --- configuration the providers read ---------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    {"kind": "lsf"}, {"launcher": "aprun"}, {"nodes_per_block": 0}, {"walltime": 0},
    {"walltime": 60, "drain_margin": 60},
    {"drain_margin": 5}, {"cores_per_node": 0}, {"poll_period": 0}, {"kind": "kubernetes"},
    {"kind": "kubernetes", "image": "python:3.11", "nodes_per_block": 2}, {"worker_init": "module load x"},
], ids=repr)
def test_invalid_provider_settings_fail_where_written(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ProviderConfig(**settings)


@pytest.mark.parametrize("settings", [
    {"min_blocks": 2, "max_blocks": 1}, {"init_blocks": 3, "max_blocks": 2}, {"parallelism": 1.5},
    {"parallelism": -0.1}, {"max_idletime": -1}, {"strategy_period": 0}, {"max_block_failures": 0},
    {"min_blocks": -1},
], ids=repr)
def test_invalid_scaling_settings_fail_where_written(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ScalingConfig(**settings)


def test_drain_margin_defaults_to_a_tenth_of_the_walltime_at_most_two_minutes() -> None:
    assert ProviderConfig().effective_drain_margin == 0
    assert ProviderConfig(walltime=600).effective_drain_margin == 60
    assert ProviderConfig(walltime=7200).effective_drain_margin == 120
    assert ProviderConfig(walltime=600, drain_margin=5).effective_drain_margin == 5


def test_without_scaling_settings_an_endpoint_keeps_a_fixed_pool_of_local_managers() -> None:
    settings = InterchangeConfig(upstream_address="tcp://x:1", endpoint_id="e", local_managers=3).scaling_settings
    assert (settings.init_blocks, settings.min_blocks, settings.max_blocks) == (3, 3, 3)


def test_interchange_config_with_provider_and_scaling_round_trips_through_json() -> None:
    config = InterchangeConfig(
        upstream_address="tcp://x:1", endpoint_id="e",
        provider=ProviderConfig(kind="slurm", partition="debug", walltime=3600, worker_init=["module load py"]),
        scaling=ScalingConfig(min_blocks=0, max_blocks=8, max_idletime=30))
    again = InterchangeConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.provider, ProviderConfig) and isinstance(again.scaling, ScalingConfig)
    with pytest.raises(ConfigError):
        InterchangeConfig.from_dict({"upstream_address": "x", "endpoint_id": "e", "provider": {"kind": "slurm",
                                                                                             "queue": "q"}})


# --- launchers -----------------------------------------------------------------------------------------


def expand(command: str, **env: str) -> ManagerConfig:
    """What ``python -m manager --config ...`` would receive, after a real shell expands it."""
    probe = command.replace(" -m manager --config ", " -c 'import sys; print(sys.argv[1])' ", 1)
    done = subprocess.run(["/bin/bash", "-c", probe], capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"], **env})
    return ManagerConfig.from_json(done.stdout)


def test_one_manager_command_serves_every_node_of_a_block() -> None:
    config = interchange_config(kind="slurm", nodes_per_block=4)
    command = manager_command(config, "tcp://10.0.0.1:54001", "b7")
    assert command.startswith(f"{shlex.quote(sys.executable)} -m manager --config ")
    first = expand(command)
    assert (first.manager_id, first.block_id, first.drain_at) == ("ep-b7-0", "b7", None)
    assert (first.interchange_address, first.workers) == ("tcp://10.0.0.1:54001", 2)
    third = expand(command, FABRIC_NODE_RANK="2", FABRIC_DRAIN_AT="1700000000")
    assert (third.manager_id, third.drain_at) == ("ep-b7-2", 1700000000)


def test_manager_commands_survive_hostile_values() -> None:
    config = InterchangeConfig(upstream_address="x", endpoint_id="it's $HOME `id` \"q\"", cpu_affinity="list:0,1")
    assert expand(manager_command(config, "tcp://h:1", "b1")).manager_id == "it's $HOME `id` \"q\"-b1-0"


def test_single_node_launcher_execs_the_manager() -> None:
    assert single("CMD", 1) == "export FABRIC_NODE_RANK=0; exec CMD"


def test_single_launcher_runs_one_manager_per_rank_on_this_node() -> None:
    script = single('echo "$FABRIC_NODE_RANK"', 3)
    done = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, check=True)
    assert sorted(done.stdout.split()) == ["0", "1", "2"]


def test_srun_launcher_starts_one_manager_per_node_ranked_by_slurm() -> None:
    assert srun("CMD", 2) == ("srun --ntasks=2 --ntasks-per-node=1 --nodes=2 --kill-on-bad-exit=0 /bin/bash -c "
                              "'export FABRIC_NODE_RANK=$SLURM_PROCID; exec CMD'")


def test_mpiexec_launcher_starts_one_manager_per_node() -> None:
    command = mpiexec("CMD", 3)
    assert command.startswith("mpiexec -n 3 -ppn 1 /bin/bash -c ")
    inner = shlex.split(command)[-1]
    done = subprocess.run(["/bin/bash", "-c", inner.replace("exec CMD", 'echo "$FABRIC_NODE_RANK"')],
                          capture_output=True, text=True, env={"PMI_RANK": "2"}, check=True)
    assert done.stdout.strip() == "2"


@pytest.mark.parametrize(("kind", "name", "expected"), [
    ("local", "auto", single), ("slurm", "auto", srun), ("pbspro", "auto", mpiexec), ("kubernetes", "auto", single),
    ("slurm", "single", single), ("local", "srun", srun),
])
def test_launcher_choice(kind: str, name: str, expected: Any) -> None:
    assert launcher_for(kind, name) is expected


def test_unknown_launchers_are_refused() -> None:
    with pytest.raises(ConfigError):
        launcher_for("slurm", "aprun")


def test_block_commands_use_the_configured_python() -> None:
    command = block_command(interchange_config(python="/opt/py/bin/python"), "a", "b1")
    assert " /opt/py/bin/python -m manager " in f" {command}"
    k8s = block_command(interchange_config(kind="kubernetes", image="img"), "tcp://h:1", "b1")
    assert k8s.startswith("export FABRIC_NODE_RANK=0; exec python3 -m manager ")


# --- Slurm ----------------------------------------------------------------------------------------------


def slurm(tmp_path: Path, runner: Runner | None = None, **settings: Any) -> SlurmProvider:
    config = ProviderConfig(kind="slurm", script_dir=str(tmp_path), **settings)
    return SlurmProvider(config, label="ep", runner=runner or Runner())


def test_the_slurm_script_has_a_directive_per_setting(tmp_path: Path) -> None:
    provider = slurm(tmp_path, partition="gpu", account="proj42", qos="high", walltime=5400, nodes_per_block=2,
                     cores_per_node=32, mem_per_node=64000, gpus_per_node=4, exclusive=True, drain_margin=120,
                     worker_init=["module load python", "source venv/bin/activate"],
                     scheduler_options=["--constraint=a100", "#SBATCH --reservation=r1"])
    assert provider.render_script("srun ... manager", "b3") == f"""#!/bin/bash
#SBATCH --job-name=ep-b3
#SBATCH --output={tmp_path}/ep-b3.out
#SBATCH --error={tmp_path}/ep-b3.err
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --partition=gpu
#SBATCH --account=proj42
#SBATCH --qos=high
#SBATCH --cpus-per-task=32
#SBATCH --gpus-per-node=4
#SBATCH --mem=64000M
#SBATCH --time=01:30:00
#SBATCH --exclusive
#SBATCH --constraint=a100
#SBATCH --reservation=r1

module load python
source venv/bin/activate
export FABRIC_BLOCK_ID=b3
export FABRIC_DRAIN_AT=$(( $(date +%s) + 5280 ))
srun ... manager
"""


def test_a_minimal_slurm_script_leaves_everything_else_to_the_site(tmp_path: Path) -> None:
    script = slurm(tmp_path).render_script("CMD", "b1")
    assert "--time" not in script and "--partition" not in script and "FABRIC_DRAIN_AT" not in script
    assert script.endswith("export FABRIC_BLOCK_ID=b1\nCMD\n")


def test_slurm_submission_runs_sbatch_on_the_written_script(tmp_path: Path) -> None:
    runner = Runner(sbatch=ok("4242;cluster-a\n"))
    provider = slurm(tmp_path, runner)
    assert provider.submit("CMD", "b1") == "4242"
    script = tmp_path / "ep-b1.sbatch"
    assert runner.commands() == [["sbatch", "--parsable", str(script)]]
    assert script.read_text() == provider.render_script("CMD", "b1")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


@pytest.mark.parametrize("reply", [err("sbatch: error: Batch job submission failed: Invalid partition name"),
                                   ok("Submitted batch job\n")])
def test_failed_slurm_submissions_raise_provider_error(tmp_path: Path, reply: CommandResult) -> None:
    with pytest.raises(ProviderError):
        slurm(tmp_path, Runner(sbatch=reply)).submit("CMD", "b1")


SQUEUE = "11|R|None\n12|PD|Resources\n13|CD|None\n14|F|NonZeroExitCode\n15|CA|None\n16|TO|TimeLimit\n"


def test_slurm_states_come_from_squeue(tmp_path: Path) -> None:
    runner = Runner(squeue=ok(SQUEUE))
    statuses = slurm(tmp_path, runner).status(["11", "12", "13", "14", "15", "16"])
    assert runner.commands() == [["squeue", "--noheader", "--states=all", "--format=%i|%t|%r",
                                  "--jobs=11,12,13,14,15,16"]]
    assert {j: s.state for j, s in statuses.items()} == {
        "11": JobState.RUNNING, "12": JobState.PENDING, "13": JobState.COMPLETED, "14": JobState.FAILED,
        "15": JobState.CANCELLED, "16": JobState.TIMEOUT}
    assert statuses["12"].message == "Resources"


def test_a_failed_slurm_job_reports_the_end_of_its_stderr(tmp_path: Path) -> None:
    provider = slurm(tmp_path, Runner(sbatch=ok("14\n"), squeue=ok("14|F|NonZeroExitCode\n")))
    provider.submit("CMD", "b1")
    (tmp_path / "ep-b1.err").write_text("Traceback ...\nModuleNotFoundError: No module named 'manager'\n")
    assert provider.status(["14"])["14"] == JobStatus(
        JobState.FAILED, "NonZeroExitCode; Traceback ... | ModuleNotFoundError: No module named 'manager'")


def test_jobs_squeue_forgot_are_asked_of_sacct(tmp_path: Path) -> None:
    runner = Runner(squeue=ok("11|R|None\n"), sacct=ok("FAILED|1:0\n"))
    statuses = slurm(tmp_path, runner).status(["11", "12"])
    assert statuses["12"] == JobStatus(JobState.FAILED, "exit code 1:0")
    assert runner.commands()[1] == ["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", "12",
                                    "--format=State,ExitCode"]


def test_without_accounting_slurm_falls_back_to_scontrol_and_stops_asking_sacct(tmp_path: Path) -> None:
    scontrol = ok("JobId=12 JobName=ep-b2\n   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)\n"
                  "   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0\n")
    runner = Runner(squeue=err("slurm_load_jobs error: Invalid job id specified"),
                    sacct=err("Slurm accounting storage is disabled"), scontrol=scontrol)
    provider = slurm(tmp_path, runner)
    assert provider.status(["12"])["12"] == JobStatus(JobState.FAILED, "Reason=NonZeroExitCode ExitCode=3:0")
    assert provider.status(["12"])["12"].state is JobState.FAILED
    assert [argv[0] for argv in runner.commands()] == ["squeue", "sacct", "scontrol", "squeue", "scontrol"]


def test_a_job_no_slurm_command_knows_has_ended(tmp_path: Path) -> None:
    runner = Runner(squeue=err("slurm_load_jobs error: Invalid job id specified"),
                    sacct=err("Slurm accounting storage is disabled"),
                    scontrol=err("slurm_load_jobs error: Invalid job id specified"))
    assert slurm(tmp_path, runner).status(["99"]) == {"99": JobStatus(JobState.COMPLETED, "no longer known to Slurm")}


def test_an_unreachable_slurm_controller_is_a_provider_error(tmp_path: Path) -> None:
    runner = Runner(squeue=err("squeue: error: Unable to contact slurm controller (connect failure)"))
    with pytest.raises(ProviderError, match="Unable to contact"):
        slurm(tmp_path, runner).status(["11"])


def test_slurm_cancel_runs_scancel_once_for_all_jobs(tmp_path: Path) -> None:
    runner = Runner()
    provider = slurm(tmp_path, runner)
    provider.cancel(["11", "12"])
    provider.cancel([])
    assert runner.commands() == [["scancel", "11", "12"]]


def test_slurm_cancel_of_finished_jobs_is_not_an_error_but_other_failures_are(tmp_path: Path) -> None:
    slurm(tmp_path, Runner(scancel=err("scancel: error: Kill job error on job id 11: Job/step already "
                                       "completing or completed"))).cancel(["11"])
    with pytest.raises(ProviderError):
        slurm(tmp_path, Runner(scancel=err("scancel: error: Unable to contact slurm controller"))).cancel(["11"])


@pytest.mark.parametrize(("name", "state"), [
    ("PD", JobState.PENDING), ("R", JobState.RUNNING), ("CG", JobState.RUNNING), ("CD", JobState.COMPLETED),
    ("CANCELLED by 0", JobState.CANCELLED), ("NODE_FAIL", JobState.FAILED), ("OUT_OF_MEMORY", JobState.FAILED),
    ("COMPLETED+", JobState.COMPLETED), ("S", JobState.HELD), ("WEIRD", JobState.FAILED), ("", JobState.PENDING),
])
def test_slurm_state_names(name: str, state: JobState) -> None:
    assert slurm_state(name) is state


# --- PBS Pro --------------------------------------------------------------------------------------------


def pbs(tmp_path: Path, runner: Runner | None = None, **settings: Any) -> PBSProProvider:
    return PBSProProvider(ProviderConfig(kind="pbspro", script_dir=str(tmp_path), **settings), label="ep",
                          runner=runner or Runner())


def test_the_pbs_script_asks_for_chunks_walltime_queue_and_account(tmp_path: Path) -> None:
    provider = pbs(tmp_path, nodes_per_block=3, cores_per_node=64, mem_per_node=200000, gpus_per_node=4,
                   walltime=3600, partition="prod", account="proj", exclusive=True, drain_margin=60,
                   scheduler_options=["-l filesystems=home:eagle"], worker_init=["module load conda"])
    assert provider.render_script("mpiexec ...", "b2") == f"""#!/bin/bash
#PBS -N ep-b2
#PBS -o {tmp_path}/ep-b2.out
#PBS -e {tmp_path}/ep-b2.err
#PBS -l select=3:ncpus=64:ngpus=4:mem=200000mb
#PBS -l place=scatter:excl
#PBS -V
#PBS -l walltime=01:00:00
#PBS -q prod
#PBS -A proj
#PBS -l filesystems=home:eagle

module load conda
export FABRIC_BLOCK_ID=b2
export FABRIC_DRAIN_AT=$(( $(date +%s) + 3540 ))
mpiexec ...
"""


def test_pbs_submission_runs_qsub(tmp_path: Path) -> None:
    runner = Runner(qsub=ok("8123.pbs-server\n"))
    assert pbs(tmp_path, runner).submit("CMD", "b1") == "8123.pbs-server"
    assert runner.commands() == [["qsub", str(tmp_path / "ep-b1.pbs")]]
    with pytest.raises(ProviderError):
        pbs(tmp_path, Runner(qsub=err("qsub: Unknown queue"))).submit("CMD", "b1")


QSTAT = {"pbs_version": "2022.1.1", "pbs_server": "pbs-server", "Jobs": {
    "1.pbs-server": {"job_state": "Q", "comment": "Not Running: Insufficient amount of resource: ncpus"},
    "2.pbs-server": {"job_state": "R"},
    "3.pbs-server": {"job_state": "F", "Exit_status": 0},
    "4.pbs-server": {"job_state": "F", "Exit_status": 2},
    "5.pbs-server": {"job_state": "F", "Exit_status": -29},
    "6.pbs-server": {"job_state": "F", "Exit_status": 271},
    "7.pbs-server": {"job_state": "H"},
}}


def test_pbs_states_come_from_qstat_json(tmp_path: Path) -> None:
    runner = Runner(qstat=CommandResult(35, json.dumps(QSTAT), "qstat: Unknown Job Id 9.pbs-server"))
    ids = [f"{n}.pbs-server" for n in range(1, 8)] + ["9.pbs-server"]
    statuses = pbs(tmp_path, runner).status(ids)
    assert runner.commands() == [["qstat", "-f", "-x", "-F", "json", *ids]]
    assert [statuses[i].state for i in ids] == [
        JobState.PENDING, JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT,
        JobState.CANCELLED, JobState.HELD, JobState.COMPLETED]
    assert "Insufficient amount of resource" in statuses["1.pbs-server"].message


def test_pbs_status_when_qstat_knows_none_of_the_jobs(tmp_path: Path) -> None:
    runner = Runner(qstat=err("qstat: Unknown Job Id 9.pbs-server", 153))
    assert pbs(tmp_path, runner).status(["9.pbs-server"])["9.pbs-server"].state is JobState.COMPLETED
    with pytest.raises(ProviderError):
        pbs(tmp_path, Runner(qstat=err("Connection refused", 15010))).status(["1.x"])


def test_pbs_cancel_runs_qdel(tmp_path: Path) -> None:
    runner = Runner(qdel=err("qdel: Unknown Job Id 3.pbs-server"))
    pbs(tmp_path, runner).cancel(["2.pbs-server", "3.pbs-server"])
    assert runner.commands() == [["qdel", "2.pbs-server", "3.pbs-server"]]


def test_pbs_short_and_long_job_ids_match() -> None:
    assert pbs_status({"job_state": "R"}).state is JobState.RUNNING


# --- Kubernetes --------------------------------------------------------------------------------------------


def kubernetes(runner: Runner | None = None, **settings: Any) -> KubernetesProvider:
    config = ProviderConfig(kind="kubernetes", image="ghcr.io/example/fabric:1", namespace="science", **settings)
    return KubernetesProvider(config, label="ep-42", runner=runner or Runner())


def test_the_pod_manifest_runs_the_manager_with_its_resources() -> None:
    provider = kubernetes(cores_per_node=4, mem_per_node=8192, gpus_per_node=1, walltime=3600, drain_margin=60,
                          worker_init=["pip list"], service_account="fabric", pull_policy="Always")
    manifest = provider.render_manifest("exec python3 -m manager ...", "b5")
    resources = {"cpu": "4", "memory": "8192Mi", "nvidia.com/gpu": "1"}
    assert manifest == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ep-42-b5", "namespace": "science",
                     "labels": {"fabric.endpoint": "ep-42", "fabric.block": "b5", "app": "fabric-manager"}},
        "spec": {
            "restartPolicy": "Never", "activeDeadlineSeconds": 3600, "serviceAccountName": "fabric",
            "containers": [{
                "name": "manager", "image": "ghcr.io/example/fabric:1", "imagePullPolicy": "Always",
                "command": ["/bin/bash", "-c", "pip list\nexport FABRIC_DRAIN_AT=$(( $(date +%s) + 3540 ))\n"
                                               "exec python3 -m manager ..."],
                "env": [{"name": "FABRIC_BLOCK_ID", "value": "b5"}],
                "resources": {"requests": resources, "limits": resources},
            }],
        },
    }


def test_a_minimal_pod_has_no_resources_or_deadline() -> None:
    spec = kubernetes().render_manifest("CMD", "b1")["spec"]
    assert "activeDeadlineSeconds" not in spec and "resources" not in spec["containers"][0]


def test_kubernetes_submission_creates_the_pod_from_stdin() -> None:
    runner = Runner(kubectl=ok("pod/ep-42-b1\n"))
    provider = kubernetes(runner)
    assert provider.submit("CMD", "b1") == "ep-42-b1"
    [(argv, stdin)] = runner.calls
    assert argv == ["kubectl", "--namespace=science", "create", "-f", "-", "-o", "name"]
    assert json.loads(stdin or "") == provider.render_manifest("CMD", "b1")
    with pytest.raises(ProviderError, match="forbidden"):
        kubernetes(Runner(kubectl=err('pods is forbidden: User "x" cannot create resource'))).submit("CMD", "b1")


def pod(name: str, phase: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, **status}}


def test_kubernetes_states_come_from_the_pods_of_this_endpoint() -> None:
    pods = {"items": [
        pod("p1", "Pending", containerStatuses=[{"state": {"waiting": {"reason": "ErrImagePull",
                                                                       "message": "not found"}}}]),
        pod("p2", "Running"), pod("p3", "Succeeded"),
        pod("p4", "Failed", containerStatuses=[{"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
        pod("p5", "Failed", reason="DeadlineExceeded"),
    ]}
    runner = Runner(kubectl=ok(json.dumps(pods)))
    statuses = kubernetes(runner).status(["p1", "p2", "p3", "p4", "p5", "p6"])
    assert runner.commands() == [["kubectl", "--namespace=science", "get", "pods", "-l", "fabric.endpoint=ep-42",
                                  "-o", "json"]]
    assert statuses == {
        "p1": JobStatus(JobState.PENDING, "ErrImagePull: not found"), "p2": JobStatus(JobState.RUNNING),
        "p3": JobStatus(JobState.COMPLETED), "p4": JobStatus(JobState.FAILED, "exit code 1 (Error)"),
        "p5": JobStatus(JobState.TIMEOUT, "activeDeadlineSeconds exceeded"),
        "p6": JobStatus(JobState.CANCELLED, "pod deleted")}


def test_kubernetes_status_with_unexpected_output_is_a_provider_error() -> None:
    with pytest.raises(ProviderError):
        kubernetes(Runner(kubectl=ok("<html>"))).status(["p1"])
    assert pod_status({}) == JobStatus(JobState.PENDING)


def test_kubernetes_cancel_deletes_the_pods_without_waiting() -> None:
    runner = Runner()
    kubernetes(runner).cancel(["p1", "p2"])
    assert runner.commands() == [["kubectl", "--namespace=science", "delete", "pod", "--ignore-not-found",
                                  "--wait=false", "p1", "p2"]]


# --- local (real processes) -------------------------------------------------------------------------------


@pytest.fixture
def local() -> Any:
    provider = LocalProvider(ProviderConfig(), label="ep")
    yield provider
    provider.close(timeout=1.0)


def test_local_blocks_are_child_processes_with_their_exit_reported(local: LocalProvider) -> None:
    ok_job, failing, sleeping = (local.submit(c, f"b{i}") for i, c in enumerate(["exit 0", "exit 3", "exec sleep 30"]))
    local.processes[ok_job].wait()
    local.processes[failing].wait()
    assert local.status([ok_job, failing, sleeping]) == {
        ok_job: JobStatus(JobState.COMPLETED), failing: JobStatus(JobState.FAILED, "exit code 3"),
        sleeping: JobStatus(JobState.RUNNING)}
    assert local.status([ok_job]) == {ok_job: JobStatus(JobState.COMPLETED)}  # reaped, then unknown: ended
    local.cancel([sleeping])
    local.processes[sleeping].wait(10)
    assert local.status([sleeping]) == {sleeping: JobStatus(JobState.CANCELLED)}


def test_a_killed_local_block_is_a_failure_naming_the_signal(local: LocalProvider) -> None:
    job = local.submit("exec sleep 30", "b1")
    local.processes[job].kill()
    local.processes[job].wait()
    assert local.status([job]) == {job: JobStatus(JobState.FAILED, "killed by SIGKILL")}


def test_local_blocks_see_worker_init_and_their_block_id(local: LocalProvider, tmp_path: Path) -> None:
    provider = LocalProvider(ProviderConfig(worker_init=["export GREETING=hello"]), label="ep")
    out = tmp_path / "out"
    job = provider.submit(f'echo "$GREETING $FABRIC_BLOCK_ID" > {out}', "b9")
    provider.processes[job].wait(10)
    assert out.read_text() == "hello b9\n"


def test_closing_the_local_provider_ends_what_is_left(local: LocalProvider) -> None:
    job = local.submit("trap '' TERM; sleep 30", "b1")
    process = local.processes[job]
    local.close(timeout=0.2)
    assert process.poll() is not None
