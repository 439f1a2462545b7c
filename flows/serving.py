"""The long-running process of ``motioncast up``: Ray, the forecast service and the scheduled
flows (the forecast cycle, store maintenance, inbox ingest) served from this one process.

    python -m flows.serving [--config FILE] [--set section.key=value]...

``motioncast up`` starts Prefect's server first and points PREFECT_API_URL at it;
``motioncast down`` sends SIGTERM: the flows stop being served, the Serve app and Ray shut down.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile

from pipelines.config import load_config

log = logging.getLogger("motioncast.system")


def _stop(signum, frame):
    raise KeyboardInterrupt  # prefect.serve and the finally below handle it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--clock", help="a simulated clock's file: cycles follow its time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    signal.signal(signal.SIGTERM, _stop)

    import prefect
    import ray
    from ray import serve

    from flows.forecast import deployments
    from flows.ingest import inbox_deployment
    from flows.verify import deployment as verify_deployment
    from pipelines.serve.app import start
    from pipelines.simulate.clock import SimClock

    clock = SimClock.load(args.clock) if args.clock else None
    # under /tmp, short: Ray's socket paths must stay under 107 bytes
    ray_dir = tempfile.mkdtemp(prefix="motioncast-ray-", dir="/tmp")
    log.info("Ray's session (its own logs) in %s until the system stops", ray_dir)
    ray.init(
        address="local",  # its own instance, never a cluster some other program started
        num_cpus=cfg.system.ray_cpus,
        include_dashboard=False,
        _temp_dir=ray_dir,
    )
    try:
        try:
            start(cfg)
            log.info("forecast service at %s", cfg.serve.client_url())
        except Exception as exc:  # the flows run without it: the cycle issues its fallback
            log.error("the forecast service did not start (%s: %s)", type(exc).__name__, exc)
        cfg.system.inbox.mkdir(parents=True, exist_ok=True)
        prefect.serve(
            *deployments(cfg, args.config, args.overrides, clock, args.clock),
            inbox_deployment(cfg, args.config, args.overrides, clock.speed if clock else 1.0),
            verify_deployment(cfg, args.config, args.overrides),
            print_starting_message=False,
        )
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        serve.shutdown()
        ray.shutdown()
        # what its processes printed is in the system's log; a system killed keeps the folder
        shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
