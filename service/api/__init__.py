"""The REST API's blueprints, one per resource, all mounted under ``/v1``."""

from __future__ import annotations

from flask import Blueprint

from service.api.auth import blueprint as auth
from service.api.batches import blueprint as batches
from service.api.endpoint_groups import blueprint as endpoint_groups
from service.api.blobs import blueprint as blobs
from service.api.endpoints import blueprint as endpoints
from service.api.functions import blueprint as functions
from service.api.groups import blueprint as groups
from service.api.memo import blueprint as memo
from service.api.results import blueprint as results
from service.api.task_groups import blueprint as task_groups
from service.api.triggers import blueprint as triggers

BLUEPRINTS: tuple[Blueprint, ...] = (auth, functions, endpoints, endpoint_groups, groups, batches, task_groups,
                                     results, memo, blobs, triggers)
