"""Run the sandbox: python -m onboarding.sandbox --host 127.0.0.1 --port 8090 --api-key sk-sandbox."""

from __future__ import annotations

import argparse
import signal

from . import serve


def _interrupt(signum: int, frame: object) -> None:
    """Stop serving: werkzeug treats KeyboardInterrupt as a clean shutdown."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Parse flags, bind, announce the address on stdout and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m onboarding.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--api-key", default="sk-sandbox")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before every api and crm answer")
    parser.add_argument("--hubspot-token", default="pat-na1-sandbox", help="the bearer token /hubspot accepts")
    parser.add_argument("--pipedrive-token", default="pd-sandbox-token", help="the x-api-token /pipedrive accepts")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.api_key, args.latency_ms, args.hubspot_token, args.pipedrive_token)
    # SIGINT too: a shell starting us in the background leaves SIGINT ignored, so Python would not handle it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _interrupt)
    # Launchers wait for this exact line to learn the port.
    print(f"SANDBOX_READY http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
