"""Providers start blocks of managers: local processes, or jobs of a batch scheduler.

``base`` defines the interface; ``launchers`` the commands that start one manager per node.
"""

from interchange.providers.base import JobState, JobStatus, Provider, ProviderError
from interchange.providers.kubernetes import KubernetesProvider
from interchange.providers.local import LocalProvider
from interchange.providers.pbspro import PBSProProvider
from interchange.providers.slurm import SlurmProvider

__all__ = ["JobState", "JobStatus", "KubernetesProvider", "LocalProvider", "PBSProProvider", "Provider",
           "ProviderError", "SlurmProvider"]
