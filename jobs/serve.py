"""Serve one model (a teacher, the judge, a trained student) as an OpenAI-compatible endpoint on Ray Serve.

    python -m jobs.serve --config FILE
    python -m jobs.serve --config FILE --print-deploy-config configs/serve_deploy.yaml

FILE (see configs/serve.yaml): `model` (local path, Hugging Face id, s3:// URI, a `jobs.train` output folder whose
`model/` is served under the folder's name, or `smollm2-135m-instruct`), `engine` (vLLM settings, as for a
teacher), `autoscaling` (min_replicas, max_replicas, target_ongoing_requests, upscale/downscale delays: Ray Serve's
names), `http` (host, port), `ray`.

The job joins the cluster it runs on (or starts a local one), deploys the model, prints the base URL
(http://HOST:PORT/v1) and the model name, and serves until interrupted; Ctrl-C deletes the application and stops
Serve. Point a teacher or judge at it with `engine: {kind: openai, base_url: URL}` and `model: NAME`.

--print-deploy-config OUT writes the equivalent `serve deploy` YAML (`-` for stdout) and exits without starting Ray:
`serve deploy OUT` then runs the same application on a running cluster whose nodes have distillery installed.
Exit code 2: a bad config or a missing model path, reported before Ray starts.
"""

import argparse
import sys

import yaml

from pipeline.checks import check_model
from pipeline.models import trained_model_source
from pipeline.config import ConfigError, load_config
from pipeline.config import ServeConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML: model, engine, autoscaling, http, ray")
    parser.add_argument("--print-deploy-config", metavar="OUT", help="write the `serve deploy` YAML to OUT and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(ServeConfig, args.config)
        check_model(config.model, config.storage_options)
        trained = trained_model_source(config.model, config.storage_options)
        if trained != config.model:  # a jobs.train output folder: its model/, under the folder's name
            config = config.model_copy(update={"model": trained, "served_model_name": config.model_name})
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    from actors.serve_app import deploy_config

    if args.print_deploy_config:
        text = (
            f"# `serve deploy` config written by `python -m jobs.serve --config {args.config}`.\n"
            "# Run `serve deploy THIS_FILE` against a running cluster whose nodes can import distillery.\n"
        )
        text += yaml.safe_dump(deploy_config(config), sort_keys=False)
        if args.print_deploy_config == "-":
            sys.stdout.write(text)
        else:
            with open(args.print_deploy_config, "w") as f:
                f.write(text)
        return 0
    return serve_until_interrupted(config)


def serve_until_interrupted(config: ServeConfig) -> int:
    import signal
    import threading

    from actors.cluster import connect_ray
    from actors.serve_app import deploy, shutdown
    from pipeline.resources import local_cluster_cpus

    autoscaling = config.autoscaling
    replica_cpus = config.engine.num_cpus * autoscaling.max_replicas
    connect_ray(config.ray, local_cluster_cpus(replica_cpus, config.ray))
    stop = threading.Event()
    try:
        url = deploy(config)
        # Both set by hand: a job started in the background by a shell inherits SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print(f"[distillery] serving {config.model_name} at {url} "
              f"({autoscaling.min_replicas}-{autoscaling.max_replicas} replicas); Ctrl-C stops", flush=True)
        while not stop.wait(1.0):  # a timed wait lets the main thread run the signal handlers
            pass
    except KeyboardInterrupt:  # Ctrl-C while deploying
        pass
    finally:
        print("[distillery] shutting the endpoint down", flush=True)
        shutdown(config.app_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
