"""Upload, run and schedule the compiled pipeline on a KFP v2 server, through kfp.Client.

Each action is first described as a plan (what would be sent); `--dry-run` prints the plan
and contacts nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Optional

import kfp

from kubeflow import cron


@dataclass
class Plan:
    action: str  # submit | schedule
    host: Optional[str]
    namespace: str
    package: str
    pipeline_name: str
    version_name: str
    experiment: str
    pipeline_root: Optional[str]
    enable_caching: bool
    run_name: str
    cron_expression: Optional[str] = None
    max_concurrency: int = 1
    catchup: bool = False
    next_fire_times: Optional[list] = None

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def make_plan(
    action: str,
    package: str,
    pipeline_name: str,
    host: Optional[str],
    namespace: str,
    experiment: str,
    pipeline_root: Optional[str],
    enable_caching: bool,
    cron_expression: Optional[str] = None,
    max_concurrency: int = 1,
    catchup: bool = False,
    now: Optional[dt.datetime] = None,
) -> Plan:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plan = Plan(
        action,
        host,
        namespace,
        package,
        pipeline_name,
        f"{pipeline_name}-{stamp}",
        experiment,
        pipeline_root,
        enable_caching,
        f"{pipeline_name}-{'retrain' if cron_expression else 'run'}-{stamp}",
        cron_expression,
        max_concurrency,
        catchup,
    )
    if cron_expression is not None:
        if max_concurrency < 1:
            raise ValueError("max concurrency must be >= 1")
        now = now or dt.datetime.now(dt.timezone.utc)
        plan.next_fire_times = [t.isoformat() for t in cron.next_fire_times(cron_expression, now, 3)]
    return plan


def _upload(client, plan: Plan) -> tuple[str, str]:
    """(pipeline id, version id): a new pipeline, or a new version of the existing one."""
    pipeline_id = client.get_pipeline_id(plan.pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(plan.package, pipeline_name=plan.pipeline_name)
        pipeline_id = pipeline.pipeline_id
    version = client.upload_pipeline_version(
        plan.package, pipeline_version_name=plan.version_name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def execute(plan: Plan, client=None) -> dict:
    """Carries out the plan against the server; returns the ids created."""
    if client is None:
        client = kfp.Client(host=plan.host, namespace=plan.namespace)
    pipeline_id, version_id = _upload(client, plan)
    experiment = client.create_experiment(plan.experiment, namespace=plan.namespace)
    result = {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": experiment.experiment_id}
    if plan.action == "submit":
        run = client.run_pipeline(
            experiment.experiment_id,
            plan.run_name,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=plan.pipeline_root,
            enable_caching=plan.enable_caching,
        )
        result["run_id"] = run.run_id
    else:
        recurring = client.create_recurring_run(
            experiment.experiment_id,
            plan.run_name,
            cron_expression=plan.cron_expression,
            max_concurrency=plan.max_concurrency,
            no_catchup=not plan.catchup,
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=plan.pipeline_root,
            enable_caching=plan.enable_caching,
        )
        result["recurring_run_id"] = recurring.recurring_run_id
    return result
