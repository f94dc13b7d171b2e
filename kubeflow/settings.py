"""Kubeflow runner settings: the `kubeflow:` section of the config file, as checked data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from components import beam_flags, files
from components.contract import ConfigError
from components.settings import unknown_options

TARGETS = ("kfp", "vertex")
# Accelerator type names each backend understands.
DEFAULT_ACCELERATOR = {"kfp": "nvidia.com/gpu", "vertex": "NVIDIA_TESLA_T4"}
# Beam in the pod: DirectRunner workers as processes, as many as the pod's CPU request. With 0
# (one per core) a worker started per core of the node: dozens of TensorFlow-loading processes in
# an 8 GB pod on a large node.
DEFAULT_DIRECT_RUNNING_MODE = "--direct_running_mode=multi_processing"


@dataclass
class KubeflowSettings:
    target: str = "kfp"  # kfp: open-source Kubeflow Pipelines; vertex: Vertex AI Pipelines
    image: str = "graft:latest"  # built from kubeflow/Dockerfile
    trainer_accelerator_type: Optional[str] = None  # default per target (DEFAULT_ACCELERATOR)
    trainer_accelerator_count: int = 1  # 0: no accelerator
    trainer_cpu: float = 8
    trainer_memory_gb: float = 32
    component_cpu: float = 2  # every other component
    component_memory_gb: float = 8
    trainer_node_selector: dict = field(
        default_factory=dict
    )  # e.g. {cloud.google.com/gke-accelerator: nvidia-tesla-t4}
    trainer_tolerations: list = field(
        default_factory=list
    )  # e.g. [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    beam_pipeline_args: Optional[list] = None  # DirectRunner multi-processing unless given; passed through untouched
    # s3:// storage (S3, or Kubeflow's MinIO): what every executor needs to reach it.
    s3_endpoint: Optional[str] = None  # e.g. minio-service.kubeflow:9000 (KFP's MinIO); unset: AWS S3
    s3_use_https: bool = True  # false for KFP's in-cluster MinIO
    s3_region: str = "us-east-1"
    s3_credentials_secret: Optional[str] = None  # a Kubernetes secret, e.g. mlpipeline-minio-artifact (KFP's own)
    s3_access_key_key: str = "accesskey"  # its key holding the access key id (KFP's MinIO secret: accesskey)
    s3_secret_key_key: str = "secretkey"  # its key holding the secret access key
    # Where runs go (submit / schedule).
    host: Optional[str] = None
    namespace: str = "kubeflow"
    experiment: str = "graft"
    pipeline_name: Optional[str] = None  # default: the GraftConfig pipeline_name
    output: str = "graft_pipeline.yaml"

    @property
    def accelerator_type(self) -> str:
        return self.trainer_accelerator_type or DEFAULT_ACCELERATOR[self.target]

    @property
    def beam_runner(self) -> str:
        """The Beam runner the compiled flags name (DirectRunner unless given)."""
        return beam_flags.runner(list(self.beam_pipeline_args or []))

    @property
    def beam_beyond_the_pod(self) -> bool:
        """Whether the Beam stages run on a runner outside the task's pod (Dataflow, Flink, Spark)."""
        return not beam_flags.is_direct(list(self.beam_pipeline_args or []))

    @property
    def beam_args(self) -> list:
        """The compiled Beam flags: as given, else the DirectRunner with a worker per CPU the
        components' pods request (`component_cpu`, at least 1). Beam's workers run the image,
        which holds Graft's code and Beam's boot (kubeflow/Dockerfile), unless the flags already
        name a worker environment: a runner beyond the pod (Dataflow, Flink, Spark) starts them
        from it, and the DirectRunner ignores the flag, which tells TFX that the code is there
        (without one, every Beam task's pod built an sdist of TFX to ship to workers that are
        the pod's own Python: seconds of each task). With an S3 endpoint, Beam's own S3
        filesystem is pointed at it too, unless the flags already do."""
        if self.beam_pipeline_args is None:
            args = [DEFAULT_DIRECT_RUNNING_MODE, f"--direct_num_workers={max(1, int(self.component_cpu))}"]
        else:
            args = list(self.beam_pipeline_args)
        args = beam_flags.with_worker_environment(args, self.image)
        if self.s3_endpoint:
            args = beam_flags.with_missing(
                args,
                [
                    f"--s3_endpoint_url={files.s3_endpoint_url(self.s3_endpoint, self.s3_use_https)}",
                    f"--s3_region_name={self.s3_region}",
                    "--beam_plugins=components.beam_s3",  # empty files on S3 (components/beam_s3.py)
                ],
            )
        return args

    @property
    def s3_env(self) -> dict:
        """The environment tensorflow-io's S3 filesystem reads (the credentials come from the secret)."""
        if not self.s3_endpoint:
            return {}
        https = "1" if self.s3_use_https else "0"
        return {
            "S3_ENDPOINT": self.s3_endpoint,
            "S3_USE_HTTPS": https,
            "S3_VERIFY_SSL": https,
            "AWS_REGION": self.s3_region,
        }

    @property
    def s3_secret_env(self) -> Optional[dict]:
        """The kfp-kubernetes `secretAsEnv` entry putting the S3 credentials in every executor's env."""
        if not self.s3_credentials_secret:
            return None
        return {
            "secretName": self.s3_credentials_secret,
            "keyToEnv": [
                {"secretKey": self.s3_access_key_key, "envVar": "AWS_ACCESS_KEY_ID"},
                {"secretKey": self.s3_secret_key_key, "envVar": "AWS_SECRET_ACCESS_KEY"},
            ],
        }

    @classmethod
    def from_dict(cls, values: dict) -> KubeflowSettings:
        values = {k.replace("-", "_"): v for k, v in (values or {}).items()}
        unknown = unknown_options(cls, values, "kubeflow")
        if unknown:
            raise ConfigError(unknown)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if self.target not in TARGETS:
            problems.append(f"kubeflow.target must be one of {TARGETS} (got {self.target!r})")
        if self.trainer_accelerator_count < 0:
            problems.append("kubeflow.trainer_accelerator_count must be >= 0")
        for name in ("trainer_cpu", "trainer_memory_gb", "component_cpu", "component_memory_gb"):
            if getattr(self, name) <= 0:
                problems.append(f"kubeflow.{name} must be > 0")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.trainer_node_selector.items()):
            problems.append("kubeflow.trainer_node_selector must map label names to label values (strings)")
        for i, toleration in enumerate(self.trainer_tolerations):
            if not isinstance(toleration, dict) or not set(toleration) <= {
                "key",
                "operator",
                "value",
                "effect",
                "tolerationSeconds",
            }:
                problems.append(
                    f"kubeflow.trainer_tolerations[{i}] must be a Kubernetes toleration "
                    "(key, operator, value, effect, tolerationSeconds)"
                )
        if self.s3_credentials_secret and self.target != "kfp":
            problems.append(
                "kubeflow.s3_credentials_secret: a Kubernetes secret reaches the pods of open-source Kubeflow "
                "(target kfp) only; Vertex AI runs on GCS (gs://) with its service account"
            )
        if problems:
            raise ConfigError("invalid kubeflow settings:\n  - " + "\n  - ".join(problems))
