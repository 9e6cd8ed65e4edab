"""``som k8s``: Kubernetes manifests generated from the worker set (Strimzi topics, KEDA scalers)."""

from __future__ import annotations

from typing import Annotated

import typer

from som.common import EXIT_FAILED, console, fail

app = typer.Typer(help="Kubernetes manifests generated from the worker set.", no_args_is_help=True)


@app.command()
def generate(
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if any.")] = False,
) -> None:
    """Write Strimzi KafkaTopics (the topics of `som topics`) and KEDA ScaledObjects into k8s/overlays/strimzi-keda."""
    from som import k8s

    if check:
        stale = k8s.drift()
        if stale:
            fail(
                f"k8s/overlays/strimzi-keda is out of date: {', '.join(stale)} (run `som k8s generate`)",
                EXIT_FAILED,
            )
        console.print("k8s/overlays/strimzi-keda matches the worker set")
        return
    for name in k8s.write():
        console.print(f"wrote k8s/overlays/strimzi-keda/{name}")
