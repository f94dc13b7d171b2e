"""Beam's pipeline flags as the list TFX passes on: reading a flag, and the flags both runners
add unless the user's own flags already say it (the local runner's and the compiled Kubeflow
spec's, one rule for the two)."""

from __future__ import annotations

# The flags by which Beam is told what its workers run in. TFX's Beam executors build an sdist of
# TFX for the workers unless one of these (or a package flag) is set: seconds of every Beam
# component, for DirectRunner workers that are the same Python.
WORKER_ENVIRONMENT_FLAGS = (
    "--sdk_container_image",
    "--worker_harness_container_image",
    "--environment_type",
    "--environment_config",
)


def flag_value(args: list, flag: str):
    """The value of `flag` in Beam's argument list (`--flag=value` or `--flag value`), else None."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def runner(args: list) -> str:
    """The Beam runner the flags name (DirectRunner unless given)."""
    return flag_value(args, "--runner") or "DirectRunner"


def is_direct(args: list) -> bool:
    """Whether Beam runs in this process's machine (DirectRunner), not on a runner of its own."""
    return runner(args).lower() in ("directrunner", "direct")


def with_worker_environment(args: list, image: str) -> list:
    """`args` naming `image` as the workers' environment, unless they already name one."""
    if any(flag_value(args, flag) for flag in WORKER_ENVIRONMENT_FLAGS):
        return list(args)
    return [*args, f"--sdk_container_image={image}"]


def with_missing(args: list, flags: list) -> list:
    """`args` with each of `flags` the user's flags do not already set (`--beam_plugins` may be
    given once per plugin: added unless that plugin is named)."""
    args = list(args)
    for flag in flags:
        name = flag.split("=")[0]
        if flag not in args and (name == "--beam_plugins" or not flag_value(args, name)):
            args.append(flag)
    return args
